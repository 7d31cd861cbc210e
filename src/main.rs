use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pullsecret_injector::cli::{apply, audit, certs, chart_hooks, commands};
use pullsecret_injector::state::crd;
use pullsecret_injector::{server, telemetry};

/// `--version`: the release and the git revision it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("PULLSECRET_INJECTOR_REVISION"),
    ")"
);

/// Injects the imagePullSecrets the kubelet would use into every Pod, at admission time.
///
/// `serve` runs the webhook. `review`, `apply` and `explain` answer offline from cluster state
/// files with the same decision code (how to dump them: `explain --help`).
///
/// Exit codes: 0 done (warnings on stderr); 1 could not finish for a reason other than the
/// input; 2 usage or input error; 3 `audit --fail-on` findings.
#[derive(Debug, Parser)]
#[command(name = "pullsecret-injector", version = VERSION, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTPS admission webhook (POST /mutate) and the admin listener.
    Serve(Box<server::ServeArgs>),
    /// Answer one AdmissionReview (stdin or -f), exactly as the webhook would, on stdout.
    #[command(after_long_help = commands::STATE_RECIPE)]
    Review(commands::ReviewArgs),
    /// Print manifests (Pods and workload pod templates) with the injection applied.
    #[command(after_long_help = commands::STATE_RECIPE)]
    Apply(apply::ApplyArgs),
    /// Show, for each image, which secrets and keys match and why, in kubelet order.
    #[command(after_long_help = commands::STATE_RECIPE)]
    Explain(commands::ExplainArgs),
    /// Check every workload of the live cluster (read-only) for what its next pod would lack
    /// that the kubelet needs: missing or undecodable pull secrets, credentials only in other
    /// namespaces, pods that would get other secrets now.
    Audit(audit::AuditArgs),
    /// Write a development CA and serving certificate (ECDSA P-256).
    Certs(certs::CertsArgs),
    /// Write the CustomResourceDefinitions (PullSecretRule, ClusterPullSecret) as YAML.
    Crds(CrdsArgs),
    /// The Helm chart's hooks: enable failurePolicy Fail after a rollout, delete the
    /// release's ClusterPullSecrets before an uninstall.
    ChartHook(chart_hooks::HookArgs),
}

#[derive(Debug, clap::Args)]
struct CrdsArgs {
    /// Directory to write one file per CRD into; without it, all are printed to stdout.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Review(args) => offline(commands::review(&args)),
        Command::Apply(args) => offline(apply::apply(&args)),
        Command::Explain(args) => offline(commands::explain(&args)),
        Command::Audit(args) => match audit::run(&args) {
            Ok(false) => ExitCode::SUCCESS,
            Ok(true) => ExitCode::from(audit::EXIT_FINDINGS),
            Err(error) => fail(&error, error.exit_code()),
        },
        Command::ChartHook(args) => chart_hook(&args),
        Command::Crds(args) => match write_crds(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&error, commands::EXIT_FAILURE),
        },
        Command::Certs(args) => match certs::generate(&args) {
            Ok(files) => {
                println!(
                    "wrote {}, {}, {}, {}",
                    files.ca_cert.display(),
                    files.ca_key.display(),
                    files.cert.display(),
                    files.key.display()
                );
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error, error.exit_code()),
        },
    }
}

fn serve(args: server::ServeArgs) -> ExitCode {
    if let Err(error) = args.validate() {
        return fail(&error, 2);
    }
    if let Err(error) = telemetry::init_logging(args.log_format, &args.log_level) {
        return fail(&*error, commands::EXIT_INPUT);
    }
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        tracing::debug!("a rustls crypto provider was already installed");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error, commands::EXIT_FAILURE),
    };
    match runtime.block_on(server::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "serve failed");
            eprintln!("pullsecret-injector: {error:#}");
            ExitCode::from(commands::EXIT_FAILURE)
        }
    }
}

fn chart_hook(args: &chart_hooks::HookArgs) -> ExitCode {
    // Kubernetes API calls over rustls; a provider already installed is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error, 1),
    };
    match runtime.block_on(chart_hooks::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error, 1),
    }
}

fn write_crds(args: &CrdsArgs) -> anyhow::Result<()> {
    let crds = crd::crd_yaml()?;
    match &args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|error| anyhow::anyhow!("{}: cannot create: {error}", dir.display()))?;
            for (file, yaml) in crds {
                let path = dir.join(file);
                std::fs::write(&path, yaml).map_err(|error| {
                    anyhow::anyhow!("{}: cannot write: {error}", path.display())
                })?;
            }
        }
        None => {
            let documents: Vec<String> = crds.into_iter().map(|(_, yaml)| yaml).collect();
            let mut out = std::io::stdout().lock();
            out.write_all(documents.join("---\n").as_bytes())
                .and_then(|()| out.flush())
                .map_err(|error| anyhow::anyhow!("cannot write output: {error}"))?;
        }
    }
    Ok(())
}

fn offline(result: Result<(), commands::CommandError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is_broken_pipe() => ExitCode::SUCCESS,
        Err(error) => fail(&error, error.exit_code()),
    }
}

fn fail(error: &dyn std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("pullsecret-injector: {error}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
