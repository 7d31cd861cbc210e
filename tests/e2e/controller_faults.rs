//! Faults for the ClusterPullSecret controller, its Lease and the watches, on the real control
//! plane: namespaces that refuse the copy (an admission policy, a ResourceQuota) and a source
//! recreated with another type; a Secret deleted and recreated with the other registry type
//! over and over; the namespace watch losing access while the rest works; the leader killed.
//!
//! Each runs its own `serve` processes with a Lease of its own (the suite's serve is gone by
//! then, so nothing else reconciles their ClusterPullSecrets), and deletes its
//! ClusterPullSecrets while a controller still runs, so their finalizers complete.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::faults::{ExtraServe, Registration, cluster_script, fault_namespace};
use crate::harness::{
    Suite, cluster_pull_secret_manifest, condition, events, http_get, metric, metric_sum, poll,
    secret, secret_data, wait_secret_copy,
};
use crate::mappings::{CONVERGENCE, MANAGED_BY, OWNER_LABEL};
use crate::scenarios::Outcome;

const CORP: &str = "registry.corp.e2e.example";
const TARGET: &str = "corp-pull";
const DOCKERCFG: &str = "kubernetes.io/dockercfg";
const DOCKERCONFIGJSON: &str = "kubernetes.io/dockerconfigjson";
/// The controller's retries back off up to minutes; a change to the resource reconciles at once.
const POKE_ANNOTATION: &str = "e2e.pullsecret-injector.io/poke";

// ---------------------------------------------------------------------------------------------
// Helpers

/// These scenarios run after `shutdown-and-webhook-down`; when a filter left the suite's own
/// serve running, it is stopped here, since its controller would reconcile their
/// ClusterPullSecrets too.
fn without_the_suites_controller(s: &Suite) {
    drop(s.take_serve());
}

/// Cluster-scoped objects of a scenario, deleted on drop (ClusterPullSecrets waiting for their
/// finalizer, so declare the guard after the controller that must still run then).
struct ClusterObjects<'a> {
    s: &'a Suite,
    objects: Vec<(String, String)>,
}

impl<'a> ClusterObjects<'a> {
    fn new(s: &'a Suite) -> ClusterObjects<'a> {
        ClusterObjects {
            s,
            objects: Vec::new(),
        }
    }

    /// Applies `manifest`, whose objects (`kind/name` in `objects`) this guard then deletes.
    fn apply(&mut self, manifest: &str, objects: &[(&str, &str)]) -> Result<()> {
        self.objects.extend(
            objects
                .iter()
                .map(|(kind, name)| ((*kind).to_owned(), (*name).to_owned())),
        );
        self.s.apply(manifest)?;
        Ok(())
    }

    fn delete(&mut self, kind: &str, name: &str) -> Result<()> {
        self.objects
            .retain(|(k, n)| (k.as_str(), n.as_str()) != (kind, name));
        self.s
            .kubectl(&["delete", kind, name, "--ignore-not-found", "--timeout=60s"])?;
        Ok(())
    }
}

impl Drop for ClusterObjects<'_> {
    fn drop(&mut self) {
        for (kind, name) in std::mem::take(&mut self.objects).into_iter().rev() {
            let _ = self.s.kubectl_raw(
                &[
                    "delete",
                    &kind,
                    &name,
                    "--ignore-not-found",
                    "--timeout=60s",
                ],
                None,
            );
        }
    }
}

fn controller_args<'a>(lease_namespace: &'a str, identity: &'a str) -> Vec<&'a str> {
    vec![
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "--enable-controller",
        "--lease-namespace",
        lease_namespace,
        "--lease-name",
        identity,
        "--lease-identity",
        identity,
    ]
}

/// The Ready condition and the whole status of a ClusterPullSecret.
fn readiness(s: &Suite, name: &str) -> Result<(String, String, Value)> {
    let resource = s.get_json(&["clusterpullsecret", name])?;
    let (ready, reason, _) = condition(&resource, "Ready").unwrap_or_default();
    Ok((ready, reason, resource["status"].clone()))
}

fn listed(status: &Value, field: &str, namespace: &str) -> Option<String> {
    status[field].as_array()?.iter().find_map(|entry| {
        let matches = entry == namespace || entry["namespace"] == namespace;
        matches.then(|| entry["reason"].as_str().unwrap_or_default().to_owned())
    })
}

fn poke(s: &Suite, name: &str, round: u64) -> Result<()> {
    s.kubectl(&[
        "annotate",
        "clusterpullsecret",
        name,
        &format!("{POKE_ANNOTATION}={round}"),
        "--overwrite",
    ])?;
    Ok(())
}

/// Creates a throwaway Secret in `ns` until the API server refuses it with a message that
/// contains `refusal` (admission policies and quotas take effect asynchronously).
fn wait_refused(s: &Suite, ns: &str, refusal: &str) -> Result<()> {
    poll(
        &format!("Secrets in {ns} to be refused ({refusal})"),
        Duration::from_secs(60),
        || {
            let name = format!("probe-{}", s.unique());
            let out = s.kubectl_raw(
                &[
                    "create",
                    "secret",
                    "generic",
                    &name,
                    "-n",
                    ns,
                    "--from-literal=k=v",
                ],
                None,
            )?;
            if out.status.success() {
                s.kubectl(&["delete", "secret", &name, "-n", ns])?;
                return Ok(None);
            }
            Ok(out.stderr.contains(refusal).then_some(()))
        },
    )
}

/// Creates a throwaway Secret in `ns` until the API server accepts it.
fn wait_accepted(s: &Suite, ns: &str) -> Result<()> {
    poll(
        &format!("Secrets in {ns} to be accepted"),
        Duration::from_secs(60),
        || {
            let name = format!("probe-{}", s.unique());
            let out = s.kubectl_raw(
                &[
                    "create",
                    "secret",
                    "generic",
                    &name,
                    "-n",
                    ns,
                    "--from-literal=k=v",
                ],
                None,
            )?;
            if !out.status.success() {
                return Ok(None);
            }
            s.kubectl(&["delete", "secret", &name, "-n", ns])?;
            Ok(Some(()))
        },
    )
}

fn dockercfg_secret(s: &Suite, ns: &str, name: &str, registry: &str) -> Result<()> {
    let password = s.new_password(&format!("dockercfg secret {ns}/{name}"));
    let auth = BASE64.encode(format!("e2e-user:{password}"));
    s.pull_secret_from_file(
        ns,
        name,
        DOCKERCFG,
        ".dockercfg",
        &json!({ registry: { "auth": auth } }).to_string(),
    )
}

fn lease_holder(s: &Suite, namespace: &str, name: &str) -> Result<Option<String>> {
    let lease = s.get_json(&["lease", name, "-n", namespace])?;
    Ok(lease["spec"]["holderIdentity"].as_str().map(str::to_owned))
}

// ---------------------------------------------------------------------------------------------
// #18 item 1: each namespace on its own; a source whose type changed

/// An admission policy (422) and a ResourceQuota (403) refuse the copy in two namespaces that
/// sort before a third: the third still gets its copy, both failures are listed in the status
/// with Ready=False, as Events and in the metrics; the source recreated with another type
/// replaces the copies; once the namespaces accept Secrets, every one has its copy.
pub fn namespace_failures(s: &Suite) -> Result<Outcome> {
    without_the_suites_controller(s);
    let run = s.run_id.clone();
    let home = s.namespace("cpsf", &[])?;
    let identity = format!("cpsf-{run}");
    let serve = ExtraServe::start(
        s,
        "cpsf",
        &s.cert_path(""),
        &controller_args(&home, &identity),
    )?;
    let mut objects = ClusterObjects::new(s);

    let label = "e2e.pullsecret-injector.io/cpsf";
    let deny = "e2e.pullsecret-injector.io/deny-secrets";
    let source_ns = s.namespace("cpsf-source", &[])?;
    dockercfg_secret(s, &source_ns, "corp-source", CORP)?;
    // Namespaces are handled in name order: the two that refuse come first.
    let policy_ns = s.namespace("cpsf-a-policy", &[(label, &run), (deny, &run)])?;
    let quota_ns = s.namespace("cpsf-b-quota", &[(label, &run)])?;
    let ok_ns = s.namespace("cpsf-c-ok", &[(label, &run)])?;
    let policy = format!("e2e-deny-secrets-{run}");
    objects.apply(
        &format!(
            "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {policy}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [\"\"]
        apiVersions: [\"v1\"]
        operations: [\"CREATE\", \"UPDATE\"]
        resources: [\"secrets\"]
  validations:
    - expression: \"false\"
      message: no Secrets in this namespace
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {policy}}}
spec:
  policyName: {policy}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {{{deny}: \"{run}\"}}
"
        ),
        &[
            ("validatingadmissionpolicy", &policy),
            ("validatingadmissionpolicybinding", &policy),
        ],
    )?;
    s.apply(&format!(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {{name: no-secrets, namespace: {quota_ns}}}\nspec:\n  hard: {{secrets: \"0\"}}\n"
    ))?;
    wait_refused(s, &policy_ns, "denied request")?;
    wait_refused(s, &quota_ns, "exceeded quota")?;

    let cps = format!("e2e-cpsf-{run}");
    objects.apply(
        &cluster_pull_secret_manifest(&cps, (&source_ns, "corp-source"), (label, &run), TARGET),
        &[("clusterpullsecret", &cps)],
    )?;
    let status = poll(
        "both failures in the status, the third namespace served",
        CONVERGENCE,
        || {
            let (ready, reason, status) = readiness(s, &cps)?;
            let done = ready == "False"
                && reason == "CopyFailed"
                && listed(&status, "failures", &policy_ns).is_some()
                && listed(&status, "failures", &quota_ns).is_some()
                && listed(&status, "namespaces", &ok_ns).is_some();
            Ok(done.then_some(status))
        },
    )?;
    let policy_reason = listed(&status, "failures", &policy_ns).unwrap_or_default();
    let quota_reason = listed(&status, "failures", &quota_ns).unwrap_or_default();
    ensure!(
        policy_reason.contains("422") && quota_reason.contains("ResourceQuota"),
        "failure reasons: {policy_reason:?}, {quota_reason:?}"
    );
    ensure!(
        status["failureCount"] == 2,
        "failureCount {}",
        status["failureCount"]
    );
    let copy = wait_secret_copy(s, &ok_ns, TARGET, (&source_ns, "corp-source"), CONVERGENCE)?;
    ensure!(copy["type"] == DOCKERCFG, "copy type {}", copy["type"]);

    let notes: Vec<String> = events(s, None, Some("reason=CopyFailed"))?
        .iter()
        .filter(|event| event["involvedObject"]["name"] == cps.as_str())
        .filter_map(|event| event["message"].as_str().map(str::to_owned))
        .collect();
    for ns in [&policy_ns, &quota_ns] {
        ensure!(
            notes.iter().any(|note| note.contains(ns.as_str())),
            "no CopyFailed Event for {ns}: {notes:?}"
        );
    }
    let metrics = serve.metrics(s)?;
    for reason in ["invalid", "quota"] {
        let series =
            format!("pullsecret_injector_controller_copy_failures_total{{reason=\"{reason}\"}}");
        ensure!(
            metric(&metrics, &series).is_some_and(|count| count >= 1.0),
            "{series} not counted"
        );
    }

    // The source deleted and recreated as dockerconfigjson: the copy is replaced.
    s.kubectl(&["delete", "secret", "corp-source", "-n", &source_ns])?;
    s.registry_secret(&source_ns, "corp-source", CORP)?;
    let replaced = poll(
        "the copy to take the source's new type",
        CONVERGENCE,
        || {
            let source = s.get_json(&["secret", "corp-source", "-n", &source_ns])?;
            Ok(secret(s, &ok_ns, TARGET)?.filter(|copy| {
                copy["type"] == DOCKERCONFIGJSON && secret_data(copy) == secret_data(&source)
            }))
        },
    )?;
    ensure!(
        replaced["metadata"]["uid"] != copy["metadata"]["uid"],
        "the copy kept its UID although its type changed"
    );

    // The namespaces accept Secrets again: every one gets its copy.
    objects.delete("validatingadmissionpolicybinding", &policy)?;
    s.kubectl(&["delete", "resourcequota", "no-secrets", "-n", &quota_ns])?;
    wait_accepted(s, &policy_ns)?;
    wait_accepted(s, &quota_ns)?;
    poke(s, &cps, 1)?;
    poll("Ready with every namespace served", CONVERGENCE, || {
        let (ready, _, status) = readiness(s, &cps)?;
        let served = [&policy_ns, &quota_ns, &ok_ns]
            .iter()
            .all(|ns| listed(&status, "namespaces", ns).is_some());
        Ok((ready == "True" && served && status["failureCount"] == 0).then_some(()))
    })?;
    for ns in [&policy_ns, &quota_ns] {
        wait_secret_copy(s, ns, TARGET, (&source_ns, "corp-source"), CONVERGENCE)?;
    }
    objects.delete("clusterpullsecret", &cps)?;
    drop(serve);
    println!(
        "  422 ({policy_reason}) and 403 ({quota_reason}) listed and evented, the third \
         namespace served; the copy replaced on the source's type change; all served after"
    );
    Ok(Outcome::Passed)
}

// ---------------------------------------------------------------------------------------------
// #18 item 4: a Secret recreated with the other registry type

/// `regcred` deleted and created again with the other type, round after round: the two watches
/// deliver independently, and whatever order the old Secret's Delete and the new one's Apply
/// arrive in, the webhook ends up with the new Secret.
pub fn secret_type_flip(s: &Suite) -> Result<Outcome> {
    const ROUNDS: usize = 8;
    let value = format!("{}-flip", s.run_id);
    let serve = ExtraServe::start(
        s,
        "flip",
        &s.cert_path(""),
        &["--log-format", "json", "--log-level", "info"],
    )?;
    let _registration = Registration::new(s, &value, &serve, "Ignore")?;
    let ns = fault_namespace(s, "type-flip", &value)?;
    for round in 0..ROUNDS {
        let cfg = round % 2 == 0;
        let registry = if cfg {
            "cfg.flip.e2e.example"
        } else {
            "json.flip.e2e.example"
        };
        if round > 0 {
            s.kubectl(&["delete", "secret", "regcred", "-n", &ns])?;
        }
        if cfg {
            dockercfg_secret(s, &ns, "regcred", registry)?;
        } else {
            s.registry_secret(&ns, "regcred", registry)?;
        }
        let image = format!("{registry}/app:1");
        poll(
            &format!("round {round}: the webhook to hold the new regcred and nothing stale"),
            CONVERGENCE,
            || {
                let cached = metric(&serve.metrics(s)?, "pullsecret_injector_cached_secrets");
                let expected = s.pull_secret_count()? as f64;
                Ok((cached == Some(expected)
                    && s.dry_run_pull_secrets(&ns, &image)? == ["regcred"])
                .then_some(()))
            },
        )?;
    }
    println!("  {ROUNDS} type flips of one Secret name, each ending with the new Secret cached");
    Ok(Outcome::Passed)
}

// ---------------------------------------------------------------------------------------------
// #18 item 5: a watch out of sync

/// The namespace watch loses its access (and, with an apiserver restart, its connection) while
/// everything else keeps working: the watch reports out of sync, /readyz stays 200 and names
/// it, and the controller keeps a copy in a namespace its stale cache does not know — where a
/// previous leader put it — instead of deleting it; once the watch has listed again, the
/// namespace is served and the copy kept.
pub fn namespace_watch_lost(s: &Suite) -> Result<Outcome> {
    without_the_suites_controller(s);
    let run = s.run_id.clone();
    let home = s.namespace("nswatch", &[])?;
    let account = "e2e-nswatch";
    let user = format!("system:serviceaccount:{home}:{account}");
    let (controller_role, namespace_role) = (
        format!("e2e-{run}-nswatch"),
        format!("e2e-{run}-nswatch-namespaces"),
    );
    let mut rbac = ClusterObjects::new(s);
    let binding = |role: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {role}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}
subjects: [{{kind: ServiceAccount, name: {account}, namespace: {home}}}]
"
        )
    };
    rbac.apply(
        &format!(
            "apiVersion: v1
kind: ServiceAccount
metadata: {{name: {account}, namespace: {home}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {controller_role}}}
rules:
  - apiGroups: [\"\"]
    resources: [secrets]
    verbs: [get, list, watch, create, update, patch, delete]
  - apiGroups: [pullsecret-injector.io]
    resources: [pullsecretrules, clusterpullsecrets, clusterpullsecrets/status]
    verbs: [get, list, watch, update, patch]
  - apiGroups: [events.k8s.io]
    resources: [events]
    verbs: [create, patch]
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, create, update]
---
{}---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {namespace_role}}}
rules:
  - apiGroups: [\"\"]
    resources: [namespaces]
    verbs: [get, list, watch]
---
{}",
            binding(&controller_role),
            binding(&namespace_role)
        ),
        &[
            ("clusterrole", &controller_role),
            ("clusterrolebinding", &controller_role),
            ("clusterrole", &namespace_role),
            ("clusterrolebinding", &namespace_role),
        ],
    )?;
    let can = |verb: &str, resource: &str| -> Result<bool> {
        let out = s.kubectl_raw(
            &["auth", "can-i", verb, resource, "-A", "--as", &user],
            None,
        )?;
        Ok(out.stdout.trim() == "yes")
    };
    poll("the ServiceAccount's RBAC", Duration::from_secs(30), || {
        Ok((can("watch", "namespaces")? && can("create", "secrets")?).then_some(()))
    })?;
    let kubeconfig = s.token_kubeconfig(&home, account, "nswatch.kubeconfig")?;
    let identity = format!("nswatch-{run}");
    let serve = ExtraServe::start_as(
        s,
        "nswatch",
        &s.cert_path(""),
        &kubeconfig,
        &controller_args(&home, &identity),
    )?;
    let mut objects = ClusterObjects::new(s);

    let label = "e2e.pullsecret-injector.io/nswatch";
    let source_ns = s.namespace("nswatch-source", &[])?;
    s.registry_secret(&source_ns, "corp-source", CORP)?;
    let known_ns = s.namespace("nswatch-known", &[(label, &run)])?;
    let cps = format!("e2e-nswatch-{run}");
    objects.apply(
        &cluster_pull_secret_manifest(&cps, (&source_ns, "corp-source"), (label, &run), TARGET),
        &[("clusterpullsecret", &cps)],
    )?;
    wait_secret_copy(
        s,
        &known_ns,
        TARGET,
        (&source_ns, "corp-source"),
        CONVERGENCE,
    )?;

    // Revoke the namespace access; restart the apiserver so every watch must start over.
    s.kubectl(&["delete", "clusterrolebinding", &namespace_role])?;
    poll("namespace access revoked", Duration::from_secs(30), || {
        Ok((!can("watch", "namespaces")?).then_some(()))
    })?;
    cluster_script(s, &["stop-component", "kube-apiserver"])?;
    cluster_script(s, &["start-component", "kube-apiserver"])?;
    let in_sync = |watch: &str| -> Result<Option<f64>> {
        Ok(metric(
            &serve.metrics(s)?,
            &format!("pullsecret_injector_watch_in_sync{{watch=\"{watch}\"}}"),
        ))
    };
    poll(
        "the namespace watch out of sync, the Secret watches back",
        Duration::from_secs(90),
        || {
            Ok((in_sync("namespaces")? == Some(0.0)
                && in_sync("dockerconfigjson_secrets")? == Some(1.0))
            .then_some(()))
        },
    )?;
    let (code, body) = http_get(serve.admin, "/readyz")?;
    ensure!(
        code == 200 && body.contains("namespaces"),
        "/readyz answered {code} {body:?} with the namespace watch out of sync"
    );

    // A selected namespace the stale cache cannot know, with the copy a previous leader wrote.
    let unknown_ns = s.namespace("nswatch-unknown", &[(label, &run)])?;
    let source = s.get_json(&["secret", "corp-source", "-n", &source_ns])?;
    let copy = json!({
        "apiVersion": "v1", "kind": "Secret", "type": source["type"], "data": source["data"],
        "metadata": {
            "name": TARGET, "namespace": unknown_ns,
            "labels": { MANAGED_BY: "pullsecret-injector", OWNER_LABEL: cps },
            "annotations": { "pullsecret-injector.io/source": format!("{source_ns}/corp-source") },
        },
    });
    s.apply(&copy.to_string())?;
    let kept = s.get_json(&["secret", TARGET, "-n", &unknown_ns])?;
    poke(s, &cps, 1)?;
    let (_, _, status) = poll(
        "the controller to report the namespace cache out of sync",
        CONVERGENCE,
        || {
            let readiness = readiness(s, &cps)?;
            Ok(
                (readiness.0 == "False" && readiness.1 == "NamespacesOutOfSync")
                    .then_some(readiness),
            )
        },
    )?;
    let still = secret(s, &unknown_ns, TARGET)?
        .context("the copy in a namespace the stale cache does not know was deleted")?;
    ensure!(
        still["metadata"]["uid"] == kept["metadata"]["uid"],
        "the copy was replaced"
    );

    // Access back: the watch lists again, the namespace is served, the copy kept.
    s.apply(&binding(&namespace_role))?;
    poll(
        "the namespace watch back in sync",
        Duration::from_secs(90),
        || Ok((in_sync("namespaces")? == Some(1.0)).then_some(())),
    )?;
    poke(s, &cps, 2)?;
    poll("Ready with the new namespace served", CONVERGENCE, || {
        let (ready, _, status) = readiness(s, &cps)?;
        Ok((ready == "True" && listed(&status, "namespaces", &unknown_ns).is_some()).then_some(()))
    })?;
    let after = s.get_json(&["secret", TARGET, "-n", &unknown_ns])?;
    ensure!(
        after["metadata"]["uid"] == kept["metadata"]["uid"],
        "the copy was replaced"
    );
    objects.delete("clusterpullsecret", &cps)?;
    drop(serve);
    println!(
        "  namespace watch out of sync: /readyz 200 naming it, the copy in an unknown namespace \
         kept ({}), served once the watch listed again",
        status["conditions"][0]["message"]
            .as_str()
            .unwrap_or_default()
    );
    Ok(Outcome::Passed)
}

// ---------------------------------------------------------------------------------------------
// #21: Lease failover end to end

/// The leader killed: the other replica takes the Lease over once it has run out, and writes;
/// that one stopped with SIGTERM releases the Lease, so a third takes it over at once.
pub fn lease_failover(s: &Suite) -> Result<Outcome> {
    without_the_suites_controller(s);
    let run = s.run_id.clone();
    let home = s.namespace("failover", &[])?;
    let lease = format!("failover-{run}");
    let args = |identity: &'static str| {
        vec![
            "--enable-controller".to_owned(),
            "--lease-namespace".to_owned(),
            home.clone(),
            "--lease-name".to_owned(),
            lease.clone(),
            "--lease-identity".to_owned(),
            identity.to_owned(),
            "--lease-duration".to_owned(),
            "6s".to_owned(),
        ]
    };
    let start = |identity: &'static str| {
        let args = args(identity);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ExtraServe::start(s, &format!("failover-{identity}"), &s.cert_path(""), &args)
    };
    let holder_is = |identity: &str| -> Result<Option<()>> {
        Ok((lease_holder(s, &home, &lease)?.as_deref() == Some(identity)).then_some(()))
    };
    let writes = |serve: &ExtraServe| -> Result<f64> {
        Ok(metric_sum(
            &serve.metrics(s)?,
            "pullsecret_injector_controller_writes_total",
        ))
    };

    let mut a = start("a")?;
    poll("a to hold the Lease", CONVERGENCE, || holder_is("a"))?;
    let mut b = start("b")?;
    poll("b to see the Lease held", CONVERGENCE, || {
        let log = std::fs::read_to_string(&b.log)?;
        Ok(log.contains("lease held by another replica").then_some(()))
    })?;
    let mut c: Option<ExtraServe> = None;
    let mut objects = ClusterObjects::new(s);
    let label = "e2e.pullsecret-injector.io/failover";
    let source_ns = s.namespace("failover-source", &[])?;
    s.registry_secret(&source_ns, "corp-source", CORP)?;
    let cps = format!("e2e-failover-{run}");
    objects.apply(
        &cluster_pull_secret_manifest(&cps, (&source_ns, "corp-source"), (label, &run), TARGET),
        &[("clusterpullsecret", &cps)],
    )?;
    let first = s.namespace("failover-1", &[(label, &run)])?;
    wait_secret_copy(s, &first, TARGET, (&source_ns, "corp-source"), CONVERGENCE)?;
    ensure!(
        writes(&a)? > 0.0 && writes(&b)? == 0.0,
        "only a writes while it leads"
    );

    a.signal("KILL")?;
    a.wait_exit(Duration::from_secs(10))?;
    poll("b to take the Lease over", Duration::from_secs(60), || {
        holder_is("b")
    })?;
    let second = s.namespace("failover-2", &[(label, &run)])?;
    wait_secret_copy(s, &second, TARGET, (&source_ns, "corp-source"), CONVERGENCE)?;
    ensure!(writes(&b)? > 0.0, "b took the Lease over but never wrote");
    ensure!(
        metric(&b.metrics(s)?, "pullsecret_injector_leader") == Some(1.0),
        "b does not report itself leader"
    );

    b.signal("TERM")?;
    let status = b.wait_exit(Duration::from_secs(60))?;
    ensure!(status.success(), "b exited with {status}");
    ensure!(
        lease_holder(s, &home, &lease)?.is_none(),
        "b exited without releasing the Lease"
    );
    let third = c.insert(start("c")?);
    poll("c to take the released Lease", CONVERGENCE, || {
        holder_is("c")
    })?;
    ensure!(
        metric(&third.metrics(s)?, "pullsecret_injector_leader") == Some(1.0),
        "c does not report itself leader"
    );
    objects.delete("clusterpullsecret", &cps)?;
    drop(objects);
    drop(c);
    println!("  a killed: b took over and wrote; b stopped: Lease released, c took it over");
    Ok(Outcome::Passed)
}
