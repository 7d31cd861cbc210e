//! End-to-end tests: the real `pullsecret-injector serve` behind a real kube-apiserver.
//!
//! `cargo test --test e2e` starts a local control plane (tests/controlplane/cluster.sh, in
//! `target/e2e-cluster`), generates a serving certificate with `pullsecret-injector certs`,
//! installs the Helm chart (for its ServiceAccount and RBAC; its own webhook matches nothing),
//! runs one `serve` process as that ServiceAccount (a `kubectl create token` kubeconfig),
//! registers it as a MutatingWebhookConfiguration limited to this run's namespaces, and then drives everything through `kubectl` as a user would.
//!
//! Environment:
//!   PULLSECRET_INJECTOR_E2E_REUSE_CLUSTER=DIR   use the running cluster whose cluster.env,
//!                                               kubeconfig and bin/ are in DIR; it is left
//!                                               running (only this run's objects are deleted).
//!   PULLSECRET_INJECTOR_E2E_KEEP=1              keep the temporary directory (serve log,
//!                                               certificates) even when everything passed.
//! Arguments: optional substrings; only scenarios whose name contains one of them run. A
//! substring that matches no scenario is an error (exit 1, before any cluster starts), so a
//! typo never reads as a green run.
//!
//! Output: one `ok NAME (1.2s)` / `FAILED NAME: reason` line per scenario and finally
//! `N passed, M failed`. There is no "skipped": a scenario that cannot run here fails and says
//! why. The exit status is 1 when anything failed or nothing ran.

mod client;
mod controller_faults;
mod dashboard;
mod daytwo;
#[path = "../support/ecr.rs"]
mod ecr_stand_in;
mod failpolicy;
mod faults;
mod harness;
mod hostile;
mod image_volumes;
mod incluster;
mod mappings;
mod node;
mod nsmode;
// The vendor stand-ins, shared with tests/vendor_credential_providers.rs (its runner parts are
// not used here).
#[allow(dead_code)]
#[path = "../support/plugins.rs"]
mod plugins_support;
mod recovery;
mod release;
mod scenarios;
mod shadow;
mod tokens;
mod trust;
mod vendors;
mod versions;

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::Instant;

use harness::{Cluster, Suite};

fn main() -> ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let selected = match select(&ordered_scenarios(), &filters) {
        Ok(selected) => selected,
        Err(error) => {
            println!("FAILED: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (passed, failed) = run(&selected);
    println!("{passed} passed, {failed} failed");
    let _ = std::io::stdout().flush();
    if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The scenarios the filters ask for, in suite order (all without filters); an error naming
/// the filters that match nothing, or when nothing is selected.
fn select<'a>(
    all: &[&'a scenarios::Scenario],
    filters: &[String],
) -> Result<Vec<&'a scenarios::Scenario>, String> {
    let unmatched: Vec<&str> = filters
        .iter()
        .filter(|filter| !all.iter().any(|s| s.name.contains(filter.as_str())))
        .map(String::as_str)
        .collect();
    if !unmatched.is_empty() {
        let names: Vec<&str> = all.iter().map(|s| s.name).collect();
        return Err(format!(
            "no scenario matches {unmatched:?}; the scenarios are: {}",
            names.join(", ")
        ));
    }
    let selected: Vec<_> = all
        .iter()
        .copied()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| s.name.contains(f.as_str())))
        .collect();
    if selected.is_empty() {
        return Err("no scenario selected".to_owned());
    }
    Ok(selected)
}

/// Runs setup and the scenarios; every guard (serve process, webhook configuration, cluster)
/// is dropped before this returns, also when a scenario or the setup panics.
fn run(selected: &[&scenarios::Scenario]) -> (usize, usize) {
    let started = Instant::now();
    let cluster = match catch_unwind(Cluster::start) {
        Ok(Ok(cluster)) => cluster,
        Ok(Err(error)) => return setup_failed(&format!("{error:#}")),
        Err(panic) => return setup_failed(&panic_message(&*panic)),
    };
    println!("cluster ready ({:.1}s)", started.elapsed().as_secs_f64());
    let suite = match catch_unwind(AssertUnwindSafe(|| Suite::start(&cluster))) {
        Ok(Ok(suite)) => suite,
        Ok(Err(error)) => return setup_failed(&format!("{error:#}")),
        Err(panic) => return setup_failed(&panic_message(&*panic)),
    };
    println!(
        "webhook ready ({:.1}s since start; run id {}, serve log {})",
        started.elapsed().as_secs_f64(),
        suite.run_id,
        suite.serve_log().display()
    );

    let (mut passed, mut failed) = (0, 0);
    for scenario in selected {
        let clock = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| (scenario.run)(&suite)));
        let seconds = clock.elapsed().as_secs_f64();
        match result {
            Ok(Ok(scenarios::Outcome::Passed)) => {
                passed += 1;
                println!("ok {} ({seconds:.1}s)", scenario.name);
            }
            Ok(Err(error)) => {
                failed += 1;
                println!(
                    "FAILED {}: {}",
                    scenario.name,
                    one_line(&format!("{error:#}"))
                );
            }
            Err(panic) => {
                failed += 1;
                println!(
                    "FAILED {}: panicked: {}",
                    scenario.name,
                    one_line(&panic_message(&*panic))
                );
            }
        }
        let _ = std::io::stdout().flush();
    }
    if failed > 0 {
        suite.keep_workdir();
    }
    println!("suite finished in {:.1}s", started.elapsed().as_secs_f64());
    drop(suite);
    // A cluster the suite started must go without a trace (processes, mounts, network).
    if cluster.owned() {
        match cluster.stop_and_check() {
            Ok(()) => {
                passed += 1;
                println!("ok cluster-down-leaves-nothing");
            }
            Err(error) => {
                failed += 1;
                println!(
                    "FAILED cluster-down-leaves-nothing: {}",
                    one_line(&format!("{error:#}"))
                );
            }
        }
    }
    (passed, failed)
}

/// The suite's scenarios with the hardening ones placed around the scenario that stops the
/// suite's webhook: hostile input while it runs, faults (with their own webhooks) after.
fn ordered_scenarios() -> Vec<&'static scenarios::Scenario> {
    let mut ordered = Vec::new();
    for scenario in scenarios::ALL {
        if scenario.name == "shutdown-and-webhook-down" {
            ordered.extend(hostile::SCENARIOS);
        }
        ordered.push(scenario);
        if scenario.name == "shutdown-and-webhook-down" {
            ordered.extend(faults::SCENARIOS);
        }
    }
    ordered
}

fn setup_failed(reason: &str) -> (usize, usize) {
    println!("FAILED setup: {}", one_line(reason));
    (0, 1)
}

fn one_line(text: &str) -> String {
    text.trim().replace('\n', " | ")
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}
