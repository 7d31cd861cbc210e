//! The chart's Grafana dashboard and alerts against a real Prometheus (built from the Go module
//! proxy by tests/controlplane/build-tool.sh) scraping the suite's running `serve`, the
//! Lease holder: the scenario moves every metric it can without a node — an injection, an
//! image no secret matches, an invalid image (a warning), a ClusterPullSecret copy, copies a
//! ResourceQuota refuses, a credential minted by a provider plugin, a TLS client that hangs
//! up — then evaluates every panel's expression through Prometheus' HTTP API. A panel whose
//! query returns no series, or that names a metric `/metrics` does not export, fails it.
//!
//! Not moved here, their series present at 0 from the start (the panels still must return
//! them): stuck pods and recoveries (pods waiting on a failed pull need the node:
//! `node-recovery-*`), audit findings (`pull-audit-controller`), certificate reloads
//! (`fault-cert-rotation-under-load`), watch errors (`fault-namespace-watch-lost`).
//!
//! The chart's alerting rules are loaded too (rendered from the chart, as shipped): every
//! rule must evaluate without error against the real series, the copy-failure alert must go
//! pending on the refused copies, and the alerts of a healthy injector must stay inactive.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::harness::{
    Suite, cluster_pull_secret_manifest, http_get, manifests, metric, metric_sum,
    minted_cluster_pull_secret_manifest, poll, pull_secrets, repo_root, secret,
};
use crate::scenarios::Outcome;

/// How often Prometheus scrapes and evaluates: the scenario waits for samples, not minutes.
const SCRAPE_INTERVAL: &str = "1s";
/// A bound on a hang (a first scrape, a rule evaluation, a controller retry), not a timing
/// check.
const DEADLINE: Duration = Duration::from_secs(90);
/// What Grafana would put in `$__rate_interval` and `$__range` for the scenario's minutes.
const RATE_INTERVAL: &str = "30s";
const RANGE: &str = "10m";

pub fn metrics_dashboard(s: &Suite) -> Result<Outcome> {
    let dashboard = read_dashboard()?;
    let targets = panel_targets(&dashboard);
    ensure!(targets.len() >= 20, "only {} panel queries", targets.len());

    // Prometheus first, so the counters move while it scrapes (rates see the change).
    let prometheus = Prometheus::start(s)?;

    let ns = s.namespace(
        "dashboard",
        &[("e2e.pullsecret-injector.io/dashboard", &s.run_id)],
    )?;
    let traffic = drive_traffic(s, &ns)?;

    // Scraped after the traffic: Prometheus holds the reviews /metrics counts now.
    let reviews = metric_sum(&s.metrics()?, "pullsecret_injector_reviews_total");
    poll(
        "Prometheus to scrape the scenario's reviews",
        DEADLINE,
        || {
            let result = prometheus.query(&format!(
                "sum(pullsecret_injector_reviews_total{{job=\"{}\"}})",
                prometheus.job
            ))?;
            Ok(result
                .first()
                .and_then(sample_value)
                .filter(|value| *value >= reviews)
                .map(|_| ()))
        },
    )?;

    let exported = exported_names(&s.metrics()?);
    let mut failures = Vec::new();
    for (title, expr) in &targets {
        for name in metric_names(expr) {
            if !exported.contains(&name) {
                failures.push(format!(
                    "panel {title:?} reads {name}, which /metrics does not export"
                ));
            }
        }
        for namespace in [".*", ns.as_str()] {
            let query = substitute(expr, namespace);
            // A per-namespace panel must show the scenario's namespace, not merely some
            // series: its counters are new, and a rate needs two scrapes of them.
            let per_namespace = expr.contains("$namespace");
            let series = poll(&format!("panel {title:?}: {query}"), DEADLINE, || {
                let result = prometheus.query(&query)?;
                let shown = if per_namespace {
                    result
                        .iter()
                        .any(|one| one["metric"]["pod_namespace"] == ns)
                } else {
                    !result.is_empty()
                };
                Ok(shown.then_some(()))
            });
            if let Err(error) = series {
                failures.push(format!(
                    "panel {title:?} with namespace {namespace:?} shows no series{}: {error:#}",
                    if per_namespace {
                        format!(" of {ns}")
                    } else {
                        String::new()
                    }
                ));
            }
            if !per_namespace {
                break;
            }
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {} panel queries failed: {}",
        failures.len(),
        targets.len(),
        failures.join("; ")
    );

    // The metrics behind the panels moved, as Prometheus saw them.
    let moved = [
        format!("pullsecret_injector_secrets_injected_total{{pod_namespace=\"{ns}\"}} > 0"),
        format!("pullsecret_injector_images_without_match_total{{pod_namespace=\"{ns}\"}} > 0"),
        "pullsecret_injector_review_warnings_total > 0".to_owned(),
        "pullsecret_injector_invalid_images_total > 0".to_owned(),
        "pullsecret_injector_controller_writes_total{operation=\"create\"} > 0".to_owned(),
        "pullsecret_injector_controller_copy_failures_total{reason=\"quota\"} > 0".to_owned(),
        "pullsecret_injector_credential_refreshes_total{outcome=\"success\"} > 0".to_owned(),
        format!(
            "pullsecret_injector_credential_expiry_timestamp_seconds{{cluster_pull_secret=\"{}\"}} > time()",
            traffic.minted
        ),
        "pullsecret_injector_tls_handshake_failures_total{reason=\"eof\"} > 0".to_owned(),
        "pullsecret_injector_leader == 1".to_owned(),
        "pullsecret_injector_ready == 1".to_owned(),
    ];
    for query in &moved {
        poll(&format!("Prometheus to see {query}"), DEADLINE, || {
            Ok((!prometheus.query(query)?.is_empty()).then_some(()))
        })?;
    }

    check_alerts(&prometheus)?;

    for name in [&traffic.copied, &traffic.minted] {
        s.delete_cluster_pull_secret(name)?;
    }
    std::fs::remove_file(&traffic.plugin)?;
    drop(prometheus);
    Ok(Outcome::Passed)
}

/// The chart's rules evaluate against the real series: no rule in error, the copy-failure
/// alert pending (or firing) on the refused copies, a healthy injector's alerts inactive.
fn check_alerts(prometheus: &Prometheus) -> Result<()> {
    let states = poll("the copy-failure alert to go pending", DEADLINE, || {
        let rules = prometheus.api("/api/v1/rules?type=alert")?;
        let mut states = Vec::new();
        for group in rules["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                let name = rule["name"].as_str().unwrap_or_default().to_owned();
                let health = rule["health"].as_str().unwrap_or_default().to_owned();
                let state = rule["state"].as_str().unwrap_or_default().to_owned();
                let error = rule["lastError"].as_str().unwrap_or_default().to_owned();
                states.push((name, health, state, error));
            }
        }
        let copy_failing = states.iter().any(|(name, health, state, _)| {
            name == "PullSecretInjectorControllerCopyFailing"
                && health == "ok"
                && state != "inactive"
        });
        Ok(copy_failing.then_some(states))
    })?;
    ensure!(states.len() >= 13, "Prometheus loaded only {states:?}");
    for (name, health, state, error) in &states {
        ensure!(health == "ok", "{name} does not evaluate: {health} {error}");
        // What no scenario of the suite changes for its serve (earlier ones fail plugins and
        // copies on purpose, so those alerts may be pending in a whole-suite run).
        let healthy_injector = [
            "PullSecretInjectorDown",
            "PullSecretInjectorNotReady",
            "PullSecretInjectorCertificateExpiresSoon",
            "PullSecretInjectorControllerNoLeader",
        ];
        if healthy_injector.contains(&name.as_str()) {
            ensure!(
                state == "inactive",
                "{name} is {state} on a healthy injector"
            );
        }
    }
    Ok(())
}

/// What the traffic left behind: the ClusterPullSecrets and the plugin to remove.
struct Traffic {
    copied: String,
    minted: String,
    plugin: std::path::PathBuf,
}

/// Reviews (an injection, an image without a match, an invalid image), a ClusterPullSecret
/// copied into `ns` and refused by a quota elsewhere, a minted credential, a TLS client that
/// hangs up.
fn drive_traffic(s: &Suite, ns: &str) -> Result<Traffic> {
    let label = ("e2e.pullsecret-injector.io/dashboard", s.run_id.as_str());
    s.registry_secret(ns, "regcred", "registry-a.example.com")?;
    s.wait_cache_synced()?;
    s.run_pod(ns, "injected", "registry-a.example.com/team/app:1", &[])?;
    let secrets = pull_secrets(&s.pod(ns, "injected")?);
    ensure!(secrets == ["regcred"], "pod injected got {secrets:?}");
    s.run_pod(ns, "no-match", "elsewhere.example.com/team/app:1", &[])?;
    // kubectl run refuses the image itself; apply sends it to the apiserver (and the webhook).
    let invalid = manifests::pod(
        "invalid",
        json!({ "containers": [manifests::container("app", "Registry-A.example.com/Team/App:1")] }),
    );
    let invalid = s.apply(&manifests::in_namespace(invalid, ns).to_string())?;
    ensure!(
        invalid
            .warnings()
            .iter()
            .any(|w| w.contains("not a valid image reference")),
        "no warning for the invalid image: {:?}",
        invalid.warnings()
    );

    // Copies: one namespace takes it, one refuses every Secret (a quota of 0).
    let quota_ns = s.namespace("dashboard-quota", &[label])?;
    s.apply(&format!(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {{name: no-secrets, namespace: {quota_ns}}}\nspec:\n  hard: {{secrets: \"0\"}}\n"
    ))?;
    let source_ns = s.namespace("dashboard-source", &[])?;
    s.registry_secret(&source_ns, "corp", "corp.example.com")?;
    let copied = format!("e2e-dashboard-{}", s.run_id);
    s.apply(&cluster_pull_secret_manifest(
        &copied,
        (&source_ns, "corp"),
        label,
        "corp-pull",
    ))?;
    poll("the ClusterPullSecret's copy", DEADLINE, || {
        Ok(secret(s, ns, "corp-pull")?.map(|_| ()))
    })?;
    poll("a copy refused by the quota", DEADLINE, || {
        let failures = metric(
            &s.metrics()?,
            "pullsecret_injector_controller_copy_failures_total{reason=\"quota\"}",
        );
        Ok(failures.filter(|count| *count >= 1.0).map(|_| ()))
    })?;

    // A credential minted by a provider plugin (no registry needed: nothing pulls it).
    let host = "minted.dashboard.example.com";
    let plugin_name = format!("e2e-dashboard-{}", s.unique());
    let plugin = s.credential_plugin_dir().join(&plugin_name);
    let password = s.new_password("the dashboard scenario's minted credential");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\ncat >/dev/null\nprintf '%s' '{{\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"kind\":\"CredentialProviderResponse\",\"cacheKeyType\":\"Registry\",\"cacheDuration\":\"1h\",\"auth\":{{\"{host}\":{{\"username\":\"minted\",\"password\":\"{password}\"}}}}}}'\n"
        ),
    )?;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755))?;
    s.configure_credential_provider(&plugin_name, &[host], serde_json::json!({}))?;
    let minted = format!("e2e-dashboard-minted-{}", s.run_id);
    s.apply(&minted_cluster_pull_secret_manifest(
        &minted,
        (&source_ns, "minted"),
        (&plugin_name, &format!("{host}/app:1")),
        label,
        "minted-pull",
    ))?;
    poll("the minted credential's copy", DEADLINE, || {
        Ok(secret(s, ns, "minted-pull")?.map(|_| ()))
    })?;

    // A client that connects to the webhook port and hangs up before the handshake.
    let before = metric(
        &s.metrics()?,
        "pullsecret_injector_tls_handshake_failures_total{reason=\"eof\"}",
    )
    .unwrap_or(0.0);
    drop(TcpStream::connect(s.webhook_addr()?)?);
    poll("the hung-up handshake counted", DEADLINE, || {
        let now = metric(
            &s.metrics()?,
            "pullsecret_injector_tls_handshake_failures_total{reason=\"eof\"}",
        )
        .unwrap_or(0.0);
        Ok((now > before).then_some(()))
    })?;
    Ok(Traffic {
        copied,
        minted,
        plugin,
    })
}

// ---------------------------------------------------------------------------------------------
// The dashboard

fn read_dashboard() -> Result<Value> {
    let path = repo_root().join("charts/pullsecret-injector/dashboards/pullsecret-injector.json");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// (panel title, expression) of every query of every panel, rows' nested panels included.
pub fn panel_targets(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.to_owned(), expr.to_owned()));
            }
        }
    }
    out.reverse();
    out
}

/// The expression as Grafana sends it, with the dashboard's variables set.
fn substitute(expr: &str, namespace: &str) -> String {
    expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", RANGE)
        .replace("$namespace", namespace)
}

/// The metric names an expression reads (the injector's and the process collector's).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for c in expr.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if word.starts_with("pullsecret_injector_") || word.starts_with("process_") {
            names.insert(std::mem::take(&mut word));
        }
        word.clear();
    }
    names
}

/// Every series name `/metrics` declares or samples: a counter's `_total`, a histogram's
/// `_bucket`, `_sum` and `_count`, as Prometheus stores them.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let mut words = declaration.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
        } else if !line.starts_with('#') {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

fn sample_value(series: &Value) -> Option<f64> {
    series["value"][1].as_str()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Prometheus

/// A Prometheus on 127.0.0.1 scraping the suite's serve with the labels the chart's
/// ServiceMonitor gives its series (job = the metrics Service's name, the release namespace,
/// the pod), with the chart's alerting rules. Stopped by its pid on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    job: String,
}

impl Prometheus {
    fn start(s: &Suite) -> Result<Prometheus> {
        let built = Command::new("bash")
            .arg(repo_root().join("tests/controlplane/build-tool.sh"))
            .arg("prometheus")
            .stdin(Stdio::null())
            .output()?;
        ensure!(
            built.status.success(),
            "build-tool.sh prometheus: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        let binary = String::from_utf8_lossy(&built.stdout).trim().to_owned();
        let dir = s.work_path().join(format!("prometheus-{}", s.unique()));
        std::fs::create_dir_all(&dir)?;
        write_rules(s, &dir.join("rules.json"))?;
        let job = format!("{}-metrics", s.chart.service_account);
        let config = serde_json::json!({
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "rule_files": ["rules.json"],
            "scrape_configs": [{
                "job_name": job,
                "static_configs": [{
                    "targets": [s.admin_addr()?.to_string()],
                    "labels": {"namespace": s.chart.namespace, "pod": s.serve_identity()},
                }],
            }],
        });
        // JSON is YAML: Prometheus reads it as its configuration file.
        std::fs::write(dir.join("prometheus.yml"), config.to_string())?;
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = File::create(dir.join("prometheus.log"))?;
        let child = Command::new(&binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {binary}"))?;
        let mut prometheus = Prometheus { child, addr, job };
        let log_path = dir.join("prometheus.log");
        poll("Prometheus /-/ready", DEADLINE, || {
            if let Some(status) = prometheus.child.try_wait()? {
                bail!(
                    "Prometheus exited with {status}: {}",
                    crate::harness::tail(&std::fs::read_to_string(&log_path)?, 10)
                );
            }
            Ok(http_get(prometheus.addr, "/-/ready")
                .ok()
                .filter(|(code, _)| *code == 200)
                .map(|_| ()))
        })?;
        poll("Prometheus' first scrape of serve", DEADLINE, || {
            let up = prometheus.query(&format!("up{{job=\"{}\"}} == 1", prometheus.job))?;
            Ok((!up.is_empty()).then_some(()))
        })?;
        Ok(prometheus)
    }

    /// A GET of the HTTP API: its `data`, when the status is success.
    fn api(&self, path: &str) -> Result<Value> {
        let (code, body) = http_get(self.addr, path)?;
        let answer: Value =
            serde_json::from_str(&body).with_context(|| format!("{path}: {code} {body}"))?;
        ensure!(
            code == 200 && answer["status"] == "success",
            "{path}: {code} {body}"
        );
        Ok(answer["data"].clone())
    }

    /// An instant query's series.
    fn query(&self, query: &str) -> Result<Vec<Value>> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(query)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("warning: Prometheus (pid {pid}) ignored SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The chart's PrometheusRule (controller on), rendered by helm, as a plain rule file.
fn write_rules(s: &Suite, path: &Path) -> Result<()> {
    let chart = repo_root().join("charts/pullsecret-injector");
    let out = s.helm(&[
        "template",
        &s.chart.release,
        &chart.to_string_lossy(),
        "-n",
        &s.chart.namespace,
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "controller.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ])?;
    let rule: Value = serde_yaml::from_str(&out.stdout).context("the PrometheusRule")?;
    let file = serde_json::json!({"groups": rule["spec"]["groups"]});
    std::fs::write(path, file.to_string())?;
    Ok(())
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
