//! `audit`: every workload of the live cluster (read-only, KUBECONFIG or in-cluster) checked for
//! what its next pod would lack that the kubelet needs, as a table or JSON, with an exit code
//! for CI gates (`--fail-on`).

use std::collections::BTreeMap;
use std::io::Write;

use clap::{Args, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::admission::audit::{Finding, Severity};
use crate::cli::commands::{CommandError, ServerArgs};
use crate::cli::explain::describe_mode;
use crate::cluster::live;
use crate::state::snapshot::{Mode, ModeSource};

/// Exit code of `audit` when findings at or above `--fail-on` exist.
pub const EXIT_FINDINGS: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditOutput {
    /// A table for people.
    Table,
    /// The table with the mode, image and message of each finding.
    Wide,
    /// One JSON document for scripts.
    Json,
}

/// The severities `--fail-on` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Info,
    Warning,
    Error,
}

impl FailOn {
    fn severity(self) -> Severity {
        match self {
            FailOn::Info => Severity::Info,
            FailOn::Warning => Severity::Warning,
            FailOn::Error => Severity::Error,
        }
    }
}

/// `audit`: workloads whose next pod would not get what the kubelet needs.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Only the workloads of this namespace (the state read is still the whole cluster's:
    /// credentials of other namespaces are findings too). Default: every namespace.
    #[arg(short = 'n', long = "namespace", value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = AuditOutput::Table)]
    pub output: AuditOutput,
    /// Exit with code 3 when a finding of this severity or a higher one exists (for CI gates).
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<FailOn>,
    /// `--own-namespace`, `--enable-controller` and `--shadow` as the server runs with them
    /// (the audit reads the live cluster, never state files).
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    /// Workloads read, by kind.
    workloads: BTreeMap<&'static str, usize>,
    /// Findings, by severity.
    summary: BTreeMap<&'static str, usize>,
    /// The mode of each namespace with a workload read, and where it comes from.
    modes: BTreeMap<&'a str, NamespaceMode>,
    findings: &'a [Finding],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NamespaceMode {
    mode: Mode,
    source: ModeSource,
}

/// Runs the audit; `Ok(true)` when findings at or above `--fail-on` exist.
pub fn run(args: &AuditArgs) -> Result<bool, CommandError> {
    let cluster = |error: &dyn std::fmt::Display| CommandError::Cluster(error.to_string());
    let own = args.server.own_namespace.as_deref();
    // One TLS provider for the kube client, as `serve` installs it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| cluster(&e))?;
    let (state, workloads) = runtime.block_on(async {
        let client = kube::Client::try_default().await.map_err(|e| cluster(&e))?;
        let (copies, mode) = (args.server.copies(), args.server.default_mode());
        let state = live::load_cluster(&client, own, copies, mode)
            .await
            .map_err(|e| cluster(&e))?;
        let workloads = live::list_workloads(&client, args.namespace.as_deref())
            .await
            .map_err(|e| cluster(&e))?;
        Ok::<_, CommandError>((state, workloads))
    })?;
    let findings = live::audit_workloads(&workloads, &state, Timestamp::now());
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for workload in &workloads {
        *counts.entry(workload.kind).or_default() += 1;
    }
    let mut summary: BTreeMap<&'static str, usize> = ["error", "warning", "info"]
        .into_iter()
        .map(|severity| (severity, 0))
        .collect();
    for finding in &findings {
        *summary.entry(finding.severity.as_str()).or_default() += 1;
    }
    let modes: BTreeMap<&str, NamespaceMode> = workloads
        .iter()
        .map(|workload| {
            let (mode, source) = state.mode(&workload.namespace);
            (workload.namespace.as_str(), NamespaceMode { mode, source })
        })
        .collect();
    let mut out = std::io::stdout().lock();
    match args.output {
        AuditOutput::Json => {
            let report = Report {
                workloads: counts,
                summary,
                modes,
                findings: &findings,
            };
            serde_json::to_writer_pretty(&mut out, &report)
                .map_err(|e| CommandError::Encode(e.to_string()))?;
            writeln!(out)?;
        }
        AuditOutput::Table | AuditOutput::Wide => {
            write_table(&mut out, &findings, args.output == AuditOutput::Wide)?;
            let read: usize = counts.values().sum();
            writeln!(
                out,
                "{} finding(s): {} error, {} warning, {} info, in {read} workload(s) read",
                findings.len(),
                summary["error"],
                summary["warning"],
                summary["info"]
            )?;
            if let Some(namespace) = &args.namespace {
                let (mode, source) = state.mode(namespace);
                writeln!(
                    out,
                    "namespace {namespace}: {}",
                    describe_mode(mode, source)
                )?;
            } else {
                let shadow: Vec<&str> = modes
                    .iter()
                    .filter(|(_, m)| m.mode == Mode::Shadow)
                    .map(|(namespace, _)| *namespace)
                    .collect();
                if !shadow.is_empty() {
                    writeln!(out, "in shadow mode: {}", shadow.join(", "))?;
                }
            }
        }
    }
    out.flush()?;
    Ok(args
        .fail_on
        .is_some_and(|threshold| findings.iter().any(|f| f.severity >= threshold.severity())))
}

fn write_table(out: &mut dyn Write, findings: &[Finding], wide: bool) -> std::io::Result<()> {
    let mut rows = vec![{
        let mut header = vec!["SEVERITY", "KIND", "NAMESPACE", "WORKLOAD", "SECRETS"];
        if wide {
            header.extend(["MODE", "IMAGE", "MESSAGE"]);
        }
        header.into_iter().map(str::to_owned).collect::<Vec<_>>()
    }];
    for finding in findings {
        let mut row = vec![
            finding.severity.as_str().to_owned(),
            finding.kind.as_str().to_owned(),
            finding.workload.namespace.clone(),
            finding.workload.to_string(),
            if finding.secrets.is_empty() {
                "-".to_owned()
            } else {
                finding.secrets.join(",")
            },
        ];
        if wide {
            row.push(finding.mode.as_str().to_owned());
            row.push(finding.image.clone().unwrap_or_else(|| "-".to_owned()));
            row.push(finding.message.clone());
        }
        rows.push(row);
    }
    if findings.is_empty() {
        return Ok(());
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
