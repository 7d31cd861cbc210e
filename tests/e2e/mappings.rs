//! Scenarios for PullSecretRules, ClusterPullSecrets, their controller and its Lease.
//!
//! The suite's serve process runs with `--enable-controller` on a Lease of its own run, so it
//! is the leader; `cluster-pull-secret-lifecycle` starts a second process on the same Lease
//! and checks that it never writes.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::client::{WebhookClient, expect_allowed, pod_review};
use crate::harness::{
    Suite, condition, events, metric, metric_sum, poll, secret, secret_data, wait_secret_copy,
    wait_secret_gone,
};
use crate::scenarios::Outcome;

/// Within how long the controller must have acted on a change.
pub(crate) const CONVERGENCE: Duration = Duration::from_secs(30);
const CORP: &str = "registry.corp.e2e.example";
pub(crate) const OWNER_LABEL: &str = "pullsecret-injector.io/cluster-pull-secret";
pub(crate) const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Server-side dry-run pods until the webhook gives one exactly `expected`: rules and
/// ClusterPullSecrets reach its snapshot asynchronously.
fn wait_injection(s: &Suite, ns: &str, image: &str, expected: &[&str]) -> Result<()> {
    poll(
        &format!("the webhook to inject {expected:?} for {image} in {ns}"),
        CONVERGENCE,
        || Ok((s.dry_run_pull_secrets(ns, image)? == expected).then_some(())),
    )
}

/// What `serve` at `client` answers for a pod with `image` in `namespace`: the secrets its
/// patch appends, and its warnings.
fn answer_of(
    client: &WebhookClient,
    namespace: &str,
    image: &str,
) -> Result<(Vec<String>, Vec<String>)> {
    let uid = format!("no-controller-{namespace}");
    let answer = expect_allowed(
        &client.post_once(&pod_review(&uid, namespace, &[image]), None)?,
        &uid,
    )?;
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item.as_str().or_else(|| item["name"].as_str()))
            .map(str::to_owned)
            .collect()
    };
    let mut injected = Vec::new();
    if let Some(patch) = answer["patch"].as_str() {
        let patch: Value = serde_json::from_slice(&BASE64.decode(patch)?)?;
        for operation in patch.as_array().into_iter().flatten() {
            if operation["path"]
                .as_str()
                .is_some_and(|path| path.starts_with("/spec/imagePullSecrets"))
            {
                match &operation["value"] {
                    list @ Value::Array(_) => injected.extend(strings(list)),
                    single => injected.extend(single["name"].as_str().map(str::to_owned)),
                }
            }
        }
    }
    Ok((injected, strings(&answer["warnings"])))
}

/// A ClusterPullSecret with and without the controller: a `serve` without
/// `--enable-controller` injects the copy only where one exists (a hand-made one included, no
/// conflict warning), and warns in a selected namespace without one, where the suite's serve
/// (controller on) counts the copy it is about to write.
pub fn cluster_pull_secret_without_controller(s: &Suite) -> Result<Outcome> {
    let plain = s.start_extra_serve("no-controller", &[])?;
    s.record_serve_log(plain.log.clone());
    let source_ns = s.namespace("manual-source", &[])?;
    let registry = "registry.manual.e2e.example";
    s.registry_secret(&source_ns, "manual-source", registry)?;
    // Copied by hand before the resource exists: the suite's controller reports it as a
    // conflict and leaves it alone. "Ghost" is selected but never created, so nobody can
    // write a copy there.
    let by_hand = s.namespace("manual-copy", &[])?;
    s.registry_secret(&by_hand, "manual-pull", registry)?;
    let ghost = format!("e2e-{}-manual-ghost", s.run_id);
    let cps = format!("e2e-manual-{}", s.run_id);
    s.apply(&format!(
        "apiVersion: pullsecret-injector.io/v1alpha1
kind: ClusterPullSecret
metadata: {{name: {cps}}}
spec:
  source: {{namespace: {source_ns}, name: manual-source}}
  namespaceSelector:
    matchExpressions:
      - {{key: kubernetes.io/metadata.name, operator: In, values: [{by_hand}, {ghost}]}}
  targetName: manual-pull
"
    ))?;
    let image = format!("{registry}/team/app:1");
    let without = WebhookClient::new(plain.webhook, &[&s.cert_path("ca.crt")])?;
    let with = WebhookClient::new(s.webhook_addr()?, &[&s.cert_path("ca.crt")])?;
    let missing = format!(
        "ClusterPullSecret \"{cps}\": no secret \"manual-pull\" in namespace \"{ghost}\", and no controller copies it"
    );
    poll(
        "the serve without a controller to see the ClusterPullSecret",
        CONVERGENCE,
        || {
            let (injected, warnings) = answer_of(&without, &ghost, &image)?;
            Ok(
                (injected.is_empty() && warnings.iter().any(|w| w.starts_with(&missing)))
                    .then_some(()),
            )
        },
    )?;
    let (injected, warnings) = answer_of(&without, &by_hand, &image)?;
    ensure!(
        injected == ["manual-pull"] && warnings.is_empty(),
        "without the controller, the hand-made copy: injected {injected:?}, warnings {warnings:?}"
    );
    poll(
        "the suite's serve (controller on) to count the copy it will write",
        CONVERGENCE,
        || Ok((answer_of(&with, &ghost, &image)?.0 == ["manual-pull"]).then_some(())),
    )?;
    s.delete_cluster_pull_secret(&cps)?;
    drop(plain);
    Ok(Outcome::Passed)
}

/// ClusterPullSecret end to end: copy into a new namespace and injection, rotation in place,
/// a conflict with an unmanaged Secret, a namespace labelled out, deletion, and a second
/// replica that never writes while the suite's process holds the Lease.
pub fn cluster_pull_secret_lifecycle(s: &Suite) -> Result<Outcome> {
    let follower_identity = format!("e2e-{}-follower", s.run_id);
    let follower = s.start_extra_serve("follower", &s.controller_args(&follower_identity))?;
    poll(
        "the second replica to see the Lease held by the first",
        CONVERGENCE,
        || {
            let log = std::fs::read_to_string(&follower.log)?;
            Ok(log.contains("lease held by another replica").then_some(()))
        },
    )?;

    let source_ns = s.namespace("cps-source", &[])?;
    s.registry_secret(&source_ns, "corp-source", CORP)?;
    let select_label = "e2e.pullsecret-injector.io/corp";
    let cps = format!("e2e-corp-{}", s.run_id);
    let target = "corp-pull";
    s.apply(&format!(
        "apiVersion: pullsecret-injector.io/v1alpha1
kind: ClusterPullSecret
metadata:
  name: {cps}
spec:
  source: {{namespace: {source_ns}, name: corp-source}}
  namespaceSelector:
    matchLabels: {{{select_label}: \"{run}\"}}
  targetName: {target}
",
        run = s.run_id
    ))?;

    // A namespace created after the resource: the copy appears, and a pod is injected.
    let ns_a = s.namespace("cps-a", &[(select_label, &s.run_id)])?;
    let image = format!("{CORP}/team/app:1");
    let annotation = format!("{target} ({CORP}/team/app)");
    wait_injection(s, &ns_a, &image, &[target])?;
    s.run_pod(&ns_a, "app", &image, &[])?;
    s.expect_pod(&ns_a, "app", &[target], Some(&annotation))?;
    let copy = wait_secret_copy(s, &ns_a, target, (&source_ns, "corp-source"), CONVERGENCE)?;
    let labels = &copy["metadata"]["labels"];
    ensure!(
        labels[MANAGED_BY] == "pullsecret-injector" && labels[OWNER_LABEL] == cps.as_str(),
        "copy labels {labels}"
    );
    let uid = copy["metadata"]["uid"].clone();

    // Rotation of the source: the copy follows in place.
    s.rotate_registry_secret(&source_ns, "corp-source", CORP)?;
    let rotated = wait_secret_copy(s, &ns_a, target, (&source_ns, "corp-source"), CONVERGENCE)?;
    ensure!(
        rotated["metadata"]["uid"] == uid,
        "the copy was recreated (uid {} -> {}) instead of updated in place",
        uid,
        rotated["metadata"]["uid"]
    );
    ensure!(
        secret_data(&rotated) != secret_data(&copy),
        "the copy's data did not change"
    );

    // An unmanaged Secret with the target name is never overwritten, and is reported.
    let ns_b = s.namespace("cps-b", &[])?;
    s.registry_secret(&ns_b, target, "other.e2e.example")?;
    let unmanaged = s.get_json(&["secret", target, "-n", &ns_b])?;
    s.kubectl(&[
        "label",
        "namespace",
        &ns_b,
        &format!("{select_label}={}", s.run_id),
    ])?;
    let resource = poll("the conflict in the status", CONVERGENCE, || {
        let resource = s.get_json(&["clusterpullsecret", &cps])?;
        let conflicts = resource["status"]["conflicts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(conflicts
            .iter()
            .any(|conflict| conflict["namespace"] == ns_b.as_str())
            .then_some(resource.clone()))
    })?;
    let status = &resource["status"];
    let ready = condition(&resource, "Ready").context("no Ready condition")?;
    ensure!(
        ready.0 == "False" && ready.1 == "Conflict",
        "Ready condition {ready:?}"
    );
    ensure!(
        status["namespaces"]
            .as_array()
            .is_some_and(|list| list.iter().any(|n| n == ns_a.as_str())),
        "status namespaces {} lack {ns_a}",
        status["namespaces"]
    );
    let after = s.get_json(&["secret", target, "-n", &ns_b])?;
    ensure!(
        after["metadata"]["resourceVersion"] == unmanaged["metadata"]["resourceVersion"]
            && after["metadata"]["labels"][MANAGED_BY].is_null(),
        "the unmanaged secret in {ns_b} was modified"
    );
    let log = std::fs::read_to_string(s.serve_log())?;
    ensure!(
        log.contains("conflict: not overwriting"),
        "the serve log does not report the conflict"
    );
    // ... and a Warning Event on the resource names the namespace.
    poll("the conflict Event", CONVERGENCE, || {
        let selector = format!(
            "involvedObject.kind=ClusterPullSecret,involvedObject.name={cps},reason=Conflict"
        );
        Ok(events(s, None, Some(&selector))?
            .iter()
            .any(|event| {
                event["type"] == "Warning"
                    && event["message"]
                        .as_str()
                        .is_some_and(|message| message.contains(ns_b.as_str()))
            })
            .then_some(()))
    })?;
    // `kubectl get cps` shows readiness, namespaces served and conflicts; `kubectl explain`
    // documents the spec.
    let listed = s.kubectl(&["get", "cps", &cps])?.stdout;
    for column in ["READY", "NAMESPACES", "CONFLICTS"] {
        ensure!(
            listed.contains(column),
            "`kubectl get cps` has no {column} column: {listed}"
        );
    }
    let explained = s.kubectl(&["explain", "clusterpullsecret.spec"])?.stdout;
    for field in ["source", "namespaceSelector", "registries", "targetName"] {
        ensure!(
            explained.contains(field),
            "`kubectl explain clusterpullsecret.spec` lacks {field}: {explained}"
        );
    }

    // A namespace labelled out loses its copy.
    s.kubectl(&["label", "namespace", &ns_a, &format!("{select_label}-")])?;
    wait_secret_gone(s, &ns_a, target, CONVERGENCE)?;

    // Only the leader wrote: the Lease names it, and the second replica counts no writes.
    let lease = s.get_json(&["lease", &s.lease_name(), "-n", s.lease_namespace()])?;
    ensure!(
        lease["spec"]["holderIdentity"] == s.serve_identity().as_str(),
        "Lease holder is {}, expected {}",
        lease["spec"]["holderIdentity"],
        s.serve_identity()
    );
    let leader_metrics = s.metrics()?;
    ensure!(
        metric(&leader_metrics, "pullsecret_injector_leader") == Some(1.0),
        "the suite's serve does not report itself leader"
    );
    let leader_writes = metric_sum(
        &leader_metrics,
        "pullsecret_injector_controller_writes_total",
    );
    ensure!(
        leader_writes >= 3.0,
        "the leader counted only {leader_writes} writes"
    );
    let follower_metrics = follower.metrics()?;
    ensure!(
        metric(&follower_metrics, "pullsecret_injector_leader") == Some(0.0),
        "the second replica reports itself leader"
    );
    let follower_writes = metric_sum(
        &follower_metrics,
        "pullsecret_injector_controller_writes_total",
    );
    ensure!(
        follower_writes == 0.0,
        "the second replica wrote {follower_writes} times"
    );
    println!("  leader wrote {leader_writes} times, the second replica 0");

    // Deleting the resource removes every copy (finalizer) but not the unmanaged Secret.
    let ns_c = s.namespace("cps-c", &[(select_label, &s.run_id)])?;
    wait_secret_copy(s, &ns_c, target, (&source_ns, "corp-source"), CONVERGENCE)?;
    s.kubectl(&["delete", "clusterpullsecret", &cps, "--timeout=60s"])?;
    wait_secret_gone(s, &ns_c, target, CONVERGENCE)?;
    let left = s.kubectl(&[
        "get",
        "secrets",
        "-A",
        "-l",
        &format!("{OWNER_LABEL}={cps}"),
        "-o",
        "name",
    ])?;
    ensure!(
        left.stdout.trim().is_empty(),
        "copies left: {}",
        left.stdout.trim()
    );
    ensure!(
        secret(s, &ns_b, target)?.is_some(),
        "the unmanaged secret in {ns_b} was deleted"
    );

    let follower_log = std::fs::read_to_string(&follower.log)?;
    for (description, needle) in s.secret_needles() {
        ensure!(
            !follower_log.contains(needle.as_str()),
            "{description} in the second replica's log"
        );
    }
    drop(follower);
    Ok(Outcome::Passed)
}

/// PullSecretRules: `exclusive` overrides discovery for its registry, `add` adds, and a rule
/// naming a missing secret only warns.
pub fn pull_secret_rules(s: &Suite) -> Result<Outcome> {
    let ns = s.namespace("rules", &[])?;
    let registry = "registry.rules.e2e.example";
    s.registry_secret(&ns, "discovered", registry)?;
    s.registry_secret(&ns, "mirror", "mirror.rules.e2e.example:5000")?;
    s.registry_secret(&ns, "extra", "extra.rules.e2e.example")?;
    s.apply(&format!(
        "apiVersion: pullsecret-injector.io/v1alpha1
kind: PullSecretRule
metadata: {{name: mirror-only, namespace: {ns}}}
spec:
  registries: [\"{registry}\"]
  secrets: [mirror]
  mode: exclusive
---
apiVersion: pullsecret-injector.io/v1alpha1
kind: PullSecretRule
metadata: {{name: quay-extra, namespace: {ns}}}
spec:
  registries: [\"quay.io/rules-team\"]
  secrets: [extra, ghost]
  mode: add
"
    ))?;
    s.wait_cache_synced()?;
    let image = format!("{registry}/team/app:1");
    wait_injection(s, &ns, &image, &["mirror"])?;
    s.run_pod(&ns, "excl", &image, &[])?;
    s.expect_pod(
        &ns,
        "excl",
        &["mirror"],
        Some(&format!("mirror ({registry}/team/app)")),
    )?;

    wait_injection(s, &ns, "quay.io/rules-team/app:1", &["extra"])?;
    let out = s.run_pod(&ns, "added", "quay.io/rules-team/app:1", &[])?;
    s.expect_pod(
        &ns,
        "added",
        &["extra"],
        Some("extra (quay.io/rules-team/app)"),
    )?;
    let warnings = out.warnings();
    ensure!(
        warnings
            .iter()
            .any(|w| w.contains("\"ghost\"") && w.contains("quay-extra")),
        "no warning about the missing secret ghost: {warnings:?}"
    );

    // `kubectl get psr -A` lists them with their mode; `kubectl explain` documents the spec.
    let listed = s.kubectl(&["get", "psr", "-n", &ns])?.stdout;
    for expected in ["mirror-only", "exclusive", "quay-extra", "add"] {
        ensure!(
            listed.contains(expected),
            "`kubectl get psr` lacks {expected}: {listed}"
        );
    }
    let explained = s.kubectl(&["explain", "pullsecretrule.spec"])?.stdout;
    for field in ["registries", "secrets", "mode"] {
        ensure!(
            explained.contains(field),
            "`kubectl explain pullsecretrule.spec` lacks {field}: {explained}"
        );
    }
    rules_that_can_never_match_are_refused(s, &ns)?;
    Ok(Outcome::Passed)
}

/// The CRDs' validation: a pattern or a name that could never take effect is refused by the
/// apiserver with a message saying what to write instead, rather than stored and ignored.
fn rules_that_can_never_match_are_refused(s: &Suite, ns: &str) -> Result<()> {
    let cases: &[(&str, &str, &str)] = &[
        (r#"[""]"#, "[mirror]", "should be at least 1 chars long"),
        (
            r#"["https://registry.example.com/v2/"]"#,
            "[mirror]",
            "a registry pattern has no scheme",
        ),
        (
            r#"["registry.example.com/v2/"]"#,
            "[mirror]",
            "names images, not the registry API",
        ),
        (r#"["registry example.com"]"#, "[mirror]", "no whitespace"),
        (
            r#"["registry.example.com"]"#,
            "[Mirror_Secret]",
            "should match",
        ),
        (
            r#"["registry.example.com"]"#,
            "[]",
            "should have at least 1 items",
        ),
    ];
    for (registries, secrets, expected) in cases {
        let out = s.kubectl_raw(
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: pullsecret-injector.io/v1alpha1
kind: PullSecretRule
metadata: {{name: never-matches, namespace: {ns}}}
spec: {{registries: {registries}, secrets: {secrets}}}
"
            )),
        )?;
        ensure!(
            !out.status.success() && out.stderr.contains(expected),
            "a PullSecretRule with registries {registries} and secrets {secrets} was not refused \
             with {expected:?}: {}",
            out.stderr.trim()
        );
    }
    let out = s.kubectl_raw(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: pullsecret-injector.io/v1alpha1
kind: ClusterPullSecret
metadata: {name: e2e-never-matches}
spec:
  source: {namespace: Infra, name: corp}
  registries: [\"http://registry.example.com\"]
  targetName: corp_pull
",
        ),
    )?;
    let refused = out.stderr.trim();
    ensure!(
        !out.status.success()
            && refused.contains("spec.source.namespace")
            && refused.contains("spec.targetName")
            && refused.contains("a registry pattern has no scheme"),
        "an invalid ClusterPullSecret was not refused field by field: {refused}"
    );
    Ok(())
}
