//! Pods created before their credential existed recover by themselves: on the node, a
//! Deployment's pod stuck in ImagePullBackOff is evicted once its secret appears and comes back
//! Running with it; a bare pod is only told; a PodDisruptionBudget's refusal holds.
//!
//! Recovery runs in a second `serve` with `--recover-stuck-pods` and a Lease of its own, so the
//! suite's process (controller on, recovery off) shows that nothing is evicted without the
//! switch.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::harness::{
    Serve, Suite, deployment_pod, event_messages, metric, poll, pull_secrets, replacement, secret,
    wait_pull_failure, wait_running,
};
use crate::node::{NO_CREDENTIALS, Registry};
use crate::scenarios::Outcome;

pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// A serve process that leads a Lease of its own and recovers stuck pods.
pub fn recovering_serve(s: &Suite, name: &str) -> Result<Serve> {
    let identity = format!("e2e-{}-{name}", s.run_id);
    let args: Vec<String> = [
        "--enable-controller",
        "--recover-stuck-pods",
        "--lease-namespace",
        s.lease_namespace(),
        "--lease-name",
        &format!("{}-{name}", s.lease_name()),
        "--lease-identity",
        &identity,
        "--lease-duration",
        "6s",
    ]
    .map(str::to_owned)
    .to_vec();
    s.start_extra_serve(name, &args)
}

fn recoveries(serve: &Serve, outcome: &str) -> Result<f64> {
    Ok(metric(
        &serve.metrics()?,
        &format!("pullsecret_injector_pod_recoveries_total{{outcome=\"{outcome}\"}}"),
    )
    .unwrap_or(0.0))
}

/// A Deployment applied before its secret: stuck on the registry's authorization error; with
/// recovery off nothing happens once the secret exists; with it on the pod is evicted (Events
/// on the pod and its ReplicaSet) and the replacement runs with the secret.
pub fn deployment_before_secret(s: &Suite) -> Result<Outcome> {
    let registry = Registry::start(s, "late")?;
    let image = registry.push_busybox("team/app:1")?;
    let ns = s.node_namespace("recover-deploy", &[])?;
    s.kubectl(&[
        "create",
        "deployment",
        "api",
        "-n",
        &ns,
        &format!("--image={image}"),
    ])?;
    let (stuck, uid) = deployment_pod(s, &ns, "api", RECOVERY_TIMEOUT)?;
    let message = wait_pull_failure(s, &ns, &stuck, "app")?;
    ensure!(
        message.contains(NO_CREDENTIALS),
        "unexpected pull failure: {message}"
    );

    // The secret arrives late. The suite's serve (controller on, recovery off) sees it — a new
    // pod would get it — and leaves the stuck pod alone.
    registry.secret(s, &ns, "late-registry")?;
    s.wait_cache_synced()?;
    ensure!(
        s.dry_run_pull_secrets(&ns, &image)? == ["late-registry"],
        "the webhook does not inject the late secret"
    );
    let (same, same_uid) = deployment_pod(s, &ns, "api", RECOVERY_TIMEOUT)?;
    ensure!(
        same == stuck && same_uid == uid,
        "the stuck pod was replaced without recovery"
    );
    let suite_metrics = s.metrics()?;
    ensure!(
        metric(
            &suite_metrics,
            "pullsecret_injector_pod_recoveries_total{outcome=\"evicted\"}"
        ) == Some(0.0),
        "the suite's serve (recovery off) evicted pods"
    );

    // `explain pod/NAME` on the live cluster says what recovery would do, and why.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"))
        .args(["explain", "-n", &ns, &format!("pod/{stuck}")])
        .env("KUBECONFIG", s.kubeconfig_path())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success()
            && text.contains("would get now: late-registry")
            && text.contains("recovery: evict")
            && text.contains("owner: ReplicaSet/"),
        "explain pod/{stuck} ({}): {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let started = Instant::now();
    let serve = recovering_serve(s, "recovery")?;
    let pod = replacement(s, &ns, "api", &stuck, RECOVERY_TIMEOUT)?;
    println!(
        "  stuck pod replaced by a Running one {:.1}s after recovery started",
        started.elapsed().as_secs_f64()
    );
    ensure!(
        pull_secrets(&pod) == ["late-registry"],
        "the replacement has {:?}",
        pull_secrets(&pod)
    );
    let on_pod = event_messages(s, &ns, &stuck, "PullSecretRecovery")?;
    ensure!(
        on_pod
            .iter()
            .any(|m| m.contains("evicted") && m.contains("late-registry")),
        "no recovery Event on the evicted pod: {on_pod:?}"
    );
    let owner = s.get_json(&["pods", "-n", &ns, "-l", "app=api"])?["items"][0]["metadata"]
        ["ownerReferences"][0]["name"]
        .as_str()
        .context("no owner")?
        .to_owned();
    let on_owner = event_messages(s, &ns, &owner, "PullSecretRecovery")?;
    ensure!(
        !on_owner.is_empty(),
        "no recovery Event on ReplicaSet {owner}"
    );
    ensure!(
        recoveries(&serve, "evicted")? >= 1.0,
        "pod_recoveries{{evicted}} did not count"
    );
    let log = std::fs::read_to_string(&serve.log)?;
    ensure!(
        log.contains("evicted a pod stuck on a pull"),
        "the recovery is not in the log"
    );
    Ok(Outcome::Passed)
}

/// The same when a ClusterPullSecret starts selecting the namespace after the pod is stuck.
pub fn cluster_pull_secret_selects_later(s: &Suite) -> Result<Outcome> {
    let registry = Registry::start(s, "corp-late")?;
    let image = registry.push_busybox("team/app:1")?;
    let source = s.node_namespace("recover-source", &[])?;
    registry.secret(s, &source, "corp-source")?;
    let select = "e2e.pullsecret-injector.io/recover-corp";
    let cps = format!("e2e-recover-{}", s.run_id);
    s.cluster_pull_secret(
        &cps,
        (&source, "corp-source"),
        (select, &s.run_id),
        "corp-late",
    )?;
    let ns = s.node_namespace("recover-cps", &[])?;
    s.kubectl(&[
        "create",
        "deployment",
        "api",
        "-n",
        &ns,
        &format!("--image={image}"),
    ])?;
    let (stuck, _) = deployment_pod(s, &ns, "api", RECOVERY_TIMEOUT)?;
    wait_pull_failure(s, &ns, &stuck, "app")?;

    let _serve = recovering_serve(s, "recovery-cps")?;
    s.kubectl(&["label", "namespace", &ns, &format!("{select}={}", s.run_id)])?;
    let pod = replacement(s, &ns, "api", &stuck, RECOVERY_TIMEOUT)?;
    ensure!(
        pull_secrets(&pod) == ["corp-late"],
        "the replacement has {:?}",
        pull_secrets(&pod)
    );
    s.kubectl(&["delete", "clusterpullsecret", &cps, "--wait=false"])?;
    Ok(Outcome::Passed)
}

/// A bare pod gets an Event and is left alone; a PodDisruptionBudget that forbids the eviction
/// holds, and the refusal is reported.
///
/// The Eviction API ignores budgets for Pending pods, and a pod whose containers never started
/// is Pending; budgets matter for a running pod whose container must pull again. The guarded
/// pod runs first, then its image is changed in place to one of a second registry it has no
/// secret for.
pub fn bare_pod_and_budget(s: &Suite) -> Result<Outcome> {
    let registry = Registry::start(s, "held")?;
    let image = registry.push_busybox("team/app:1")?;
    let moved = Registry::start(s, "moved")?;
    let moved_image = moved.push_busybox("team/app:2")?;
    let ns = s.node_namespace("recover-held", &[])?;
    s.run_pod(&ns, "bare", &moved_image, &[])?;
    let bare_uid = s.pod(&ns, "bare")?["metadata"]["uid"].clone();

    registry.secret(s, &ns, "held-registry")?;
    s.wait_cache_synced()?;
    s.kubectl(&[
        "create",
        "deployment",
        "guarded",
        "-n",
        &ns,
        &format!("--image={image}"),
    ])?;
    s.kubectl(&[
        "create",
        "poddisruptionbudget",
        "guarded",
        "-n",
        &ns,
        "--selector=app=guarded",
        "--min-available=1",
    ])?;
    let (guarded, guarded_uid) = deployment_pod(s, &ns, "guarded", RECOVERY_TIMEOUT)?;
    wait_running(s, &ns, &guarded)?;
    s.kubectl(&[
        "set",
        "image",
        &format!("pod/{guarded}"),
        &format!("app={moved_image}"),
        "-n",
        &ns,
    ])?;
    wait_pull_failure(s, &ns, "bare", "bare")?;
    wait_pull_failure(s, &ns, &guarded, "app")?;
    ensure!(
        s.pod(&ns, &guarded)?["status"]["phase"] == "Running",
        "the guarded pod is not in phase Running, so its budget would not apply"
    );
    moved.secret(s, &ns, "moved-registry")?;
    s.wait_cache_synced()?;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"))
        .args(["explain", "-n", &ns, "pod/bare", "-o", "json"])
        .env("KUBECONFIG", s.kubeconfig_path())
        .output()?;
    let answer: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("explain -o json: {}", String::from_utf8_lossy(&out.stderr)))?;
    ensure!(
        answer["recovery"]["action"] == "report"
            && answer["would_get"][0]["secret"] == "moved-registry"
            && answer["has"].as_array().is_some_and(Vec::is_empty),
        "explain pod/bare: {answer}"
    );

    let serve = recovering_serve(s, "recovery-held")?;
    let told = poll("the Event on the bare pod", RECOVERY_TIMEOUT, || {
        let messages = event_messages(s, &ns, "bare", "PullSecretAvailable")?;
        Ok(messages.into_iter().find(|m| m.contains("moved-registry")))
    })?;
    ensure!(
        told.contains("kubectl replace --force"),
        "the Event does not say how to recreate the pod: {told}"
    );
    let refused = poll("the PDB's refusal to be reported", RECOVERY_TIMEOUT, || {
        let messages = event_messages(s, &ns, &guarded, "PullSecretRecoveryRefused")?;
        Ok(messages.into_iter().next())
    })?;
    ensure!(refused.contains("retrying"), "refusal Event: {refused}");
    ensure!(
        recoveries(&serve, "refused_by_pdb")? >= 1.0 && recoveries(&serve, "evicted")? == 0.0,
        "metrics: refused {} evicted {}",
        recoveries(&serve, "refused_by_pdb")?,
        recoveries(&serve, "evicted")?
    );
    ensure!(
        s.pod(&ns, "bare")?["metadata"]["uid"] == bare_uid,
        "the bare pod was deleted"
    );
    let (still, still_uid) = deployment_pod(s, &ns, "guarded", RECOVERY_TIMEOUT)?;
    ensure!(
        still == guarded && still_uid == guarded_uid,
        "the guarded pod was evicted despite its PodDisruptionBudget"
    );
    Ok(Outcome::Passed)
}

/// What a ClusterPullSecret whose finalizer was removed by hand leaves behind: managed copies
/// naming a resource that no longer exists. The Lease holder's sweep (the suite's serve, every
/// 2 s) deletes them, and neither the copy of a live resource nor an unmanaged Secret.
pub fn orphaned_copies_swept(s: &Suite) -> Result<Outcome> {
    let source = s.namespace("orphan-source", &[])?;
    s.registry_secret(&source, "corp-source", "orphans.e2e.example")?;
    let select = "e2e.pullsecret-injector.io/orphans";
    let cps = format!("e2e-orphans-{}", s.run_id);
    s.cluster_pull_secret(
        &cps,
        (&source, "corp-source"),
        (select, &s.run_id),
        "live-pull",
    )?;
    let ns = s.namespace("orphans", &[(select, &s.run_id)])?;
    let exists = |name: &str| -> Result<bool> { Ok(secret(s, &ns, name)?.is_some()) };
    poll("the live resource's copy", RECOVERY_TIMEOUT, || {
        Ok(exists("live-pull")?.then_some(()))
    })?;
    // The leftovers: one labelled as the copy of a resource that is gone, one unmanaged.
    s.registry_secret(&ns, "orphan-pull", "orphans.e2e.example")?;
    s.kubectl(&[
        "label",
        "secret",
        "orphan-pull",
        "-n",
        &ns,
        "app.kubernetes.io/managed-by=pullsecret-injector",
        &format!(
            "pullsecret-injector.io/cluster-pull-secret=gone-{}",
            s.run_id
        ),
    ])?;
    s.registry_secret(&ns, "bystander", "orphans.e2e.example")?;

    poll("the orphaned copy to be swept", RECOVERY_TIMEOUT, || {
        Ok((!exists("orphan-pull")?).then_some(()))
    })?;
    ensure!(exists("bystander")?, "the unmanaged Secret was swept");
    ensure!(exists("live-pull")?, "the live resource's copy was swept");
    // The suite's serve swept it (other scenarios' processes may have logged since).
    let swept = s.serve_logs().iter().any(|log| {
        std::fs::read_to_string(log)
            .is_ok_and(|text| text.contains("deleted a copy whose ClusterPullSecret is gone"))
    });
    ensure!(swept, "the sweep is in no serve log");
    s.kubectl(&["delete", "clusterpullsecret", &cps, "--wait=false"])?;
    Ok(Outcome::Passed)
}
