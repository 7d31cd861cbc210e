//! Shadow mode and the pull audit: a namespace in shadow mode is decided but not changed (the
//! apiserver's audit log and the metric say what would have been injected), one label switches
//! it on; `serve --shadow` does the same for every namespace without the label; `audit` finds
//! each kind of problem on purpose-built workloads and nothing on healthy ones.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::client::{WebhookClient, expect_allowed, pod_review};
use crate::harness::{
    Suite, manifests, metric, minted_cluster_pull_secret_manifest, poll, pull_secrets,
};
use crate::scenarios::Outcome;

const MODE_LABEL: &str = "pullsecret-injector.io/mode";
const REGISTRY: &str = "registry.shadow.e2e.example";
/// Within how long a label change or a new secret reaches the webhook's cache.
const PROPAGATION: Duration = Duration::from_secs(20);
/// The apiserver writes its audit log in batches; this bounds a hang, it is not a timing check.
const AUDIT_LOG_WAIT: Duration = Duration::from_secs(30);

/// A namespace labelled `pullsecret-injector.io/mode: shadow`: no patch, an audit annotation
/// in the apiserver's audit log, the metric and a log line; `mode: on` injects the next pod.
pub fn shadow_namespace(s: &Suite) -> Result<Outcome> {
    let ns = s.namespace("shadow", &[(MODE_LABEL, "shadow")])?;
    s.registry_secret(&ns, "shadowcred", REGISTRY)?;
    s.wait_cache_synced()?;
    let image = format!("{REGISTRY}/team/app:1");
    let series = format!(
        "pullsecret_injector_shadow_reviews_total{{namespace=\"{ns}\",outcome=\"would_inject\"}}"
    );
    let before = metric(&s.metrics()?, &series).unwrap_or(0.0);

    // The secret may reach the cache after the namespace: wait until the webhook would inject
    // it (a server-side dry run is admitted like any pod, and changes nothing either).
    poll(
        "the shadow namespace's secret in the cache",
        PROPAGATION,
        || {
            let counted = metric(&s.metrics()?, &series).unwrap_or(0.0);
            if counted > before {
                return Ok(Some(()));
            }
            s.dry_run_pull_secrets(&ns, &image)?;
            Ok(None)
        },
    )?;
    s.run_pod(&ns, "shadowed", &image, &[])?;
    let pod = s.pod(&ns, "shadowed")?;
    ensure!(
        pull_secrets(&pod).is_empty()
            && pod["metadata"]["annotations"]
                .get("pullsecret-injector.io/injected")
                .is_none(),
        "a pod in a shadow namespace was changed: {}",
        pod["spec"]["imagePullSecrets"]
    );
    let annotations = audit_annotations(s, &ns, "shadowed")?;
    let would = annotations
        .iter()
        .find(|(key, _)| key.ends_with("/shadow-would-inject-secrets"))
        .map(|(_, value)| value.as_str());
    let injected_keys = annotations
        .iter()
        .filter(|(key, _)| key.ends_with("/injected-secrets"))
        .count();
    ensure!(
        would == Some("shadowcred") && injected_keys == 0,
        "the apiserver's audit event for the pod has annotations {annotations:?}"
    );
    let metrics = s.metrics()?;
    ensure!(
        metric(&metrics, &series).unwrap_or(0.0) >= before + 2.0,
        "{series} did not count the dry run and the pod"
    );
    // Every serve log of the suite: other scenarios start serve processes of their own.
    let mut log = String::new();
    for path in s.serve_logs() {
        log.push_str(&std::fs::read_to_string(path)?);
    }
    ensure!(
        log.lines()
            .any(|line| line.contains("shadow mode: pod left unchanged")
                && line.contains(&ns)
                && line.contains("shadowcred")),
        "no shadow log line for namespace {ns}"
    );

    // explain on the live pod says which mode applies.
    let out = Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"))
        .args(["explain", "-n", &ns, "pod/shadowed"])
        .env("KUBECONFIG", s.kubeconfig_path())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success()
            && text.contains("mode: shadow (namespace label pullsecret-injector.io/mode)")
            && text.contains("would get now: shadowcred"),
        "explain pod/shadowed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One label change, and the next pod is injected.
    s.kubectl(&[
        "label",
        "namespace",
        &ns,
        &format!("{MODE_LABEL}=on"),
        "--overwrite",
    ])?;
    poll("the namespace's new mode in the cache", PROPAGATION, || {
        Ok((s.dry_run_pull_secrets(&ns, &image)? == ["shadowcred"]).then_some(()))
    })?;
    s.run_pod(&ns, "switched-on", &image, &[])?;
    s.expect_pod(
        &ns,
        "switched-on",
        &["shadowcred"],
        Some(&format!("shadowcred ({REGISTRY}/team/app)")),
    )?;
    let annotations = audit_annotations(s, &ns, "switched-on")?;
    ensure!(
        annotations
            .iter()
            .any(|(key, value)| key.ends_with("/injected-secrets") && value == "shadowcred")
            && !annotations.iter().any(|(key, _)| key.contains("shadow")),
        "after switching on, the audit event has annotations {annotations:?}"
    );
    Ok(Outcome::Passed)
}

/// `serve --shadow`: every namespace without the label is in shadow mode, one labelled
/// `mode: on` injects. Checked on the webhook's own answers and metrics.
pub fn shadow_global(s: &Suite) -> Result<Outcome> {
    let shadow = s.start_extra_serve("shadow", &["--shadow".to_owned()])?;
    s.record_serve_log(shadow.log.clone());
    let plain = s.namespace("global-shadow", &[])?;
    let on = s.namespace("global-on", &[(MODE_LABEL, "on")])?;
    s.registry_secret(&plain, "cred", REGISTRY)?;
    s.registry_secret(&on, "cred", REGISTRY)?;
    let image = format!("{REGISTRY}/team/app:1");
    let client = WebhookClient::new(shadow.webhook, &[&s.cert_path("ca.crt")])?;
    let answer = |ns: &str| -> Result<Value> {
        let uid = format!("shadow-{ns}");
        expect_allowed(
            &client.post_once(&pod_review(&uid, ns, &[&image]), None)?,
            &uid,
        )
    };
    // Both secrets reach the extra server's cache: the labelled namespace gets a patch.
    let labelled = poll(
        "the --shadow server to see both namespaces",
        PROPAGATION,
        || {
            let unlabelled = answer(&plain)?;
            let labelled = answer(&on)?;
            let ready = unlabelled["auditAnnotations"]["shadow-would-inject-secrets"] == "cred"
                && labelled.get("patch").is_some();
            Ok(ready.then_some((unlabelled, labelled)))
        },
    )?;
    let (unlabelled, labelled) = labelled;
    ensure!(
        unlabelled.get("patch").is_none() && unlabelled.get("patchType").is_none(),
        "serve --shadow patched a pod of an unlabelled namespace: {unlabelled}"
    );
    ensure!(
        labelled["auditAnnotations"]["injected-secrets"] == "cred",
        "namespace labelled mode=on under serve --shadow: {labelled}"
    );
    let metrics = shadow.metrics()?;
    let counted = |ns: &str| {
        metric(
            &metrics,
            &format!(
                "pullsecret_injector_shadow_reviews_total{{namespace=\"{ns}\",outcome=\"would_inject\"}}"
            ),
        )
    };
    ensure!(
        counted(&plain).is_some_and(|n| n >= 1.0) && counted(&on).is_none(),
        "shadow counter: {:?} for the unlabelled namespace, {:?} for the one switched on",
        counted(&plain),
        counted(&on)
    );
    drop(shadow);
    Ok(Outcome::Passed)
}

/// The audit annotations of the apiserver's audit event for creating `ns/pod`.
fn audit_annotations(s: &Suite, ns: &str, pod: &str) -> Result<Vec<(String, String)>> {
    let (_, _, cluster_dir) = s.cluster_env();
    let state = std::fs::read_to_string(cluster_dir.join("cluster.state-dir"))
        .context("the cluster's state directory")?;
    let log = std::path::Path::new(state.trim()).join("audit.log");
    poll(
        &format!("the audit event of pod {ns}/{pod}"),
        AUDIT_LOG_WAIT,
        || {
            let text = std::fs::read_to_string(&log)
                .with_context(|| format!("{}: the cluster has no audit log", log.display()))?;
            Ok(text
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|event| {
                    event["verb"] == "create"
                        && event["stage"] == "ResponseComplete"
                        && event["objectRef"]["namespace"] == ns
                        && event["objectRef"]["name"] == pod
                        && event["objectRef"]["subresource"].is_null()
                })
                .map(|event| {
                    event["annotations"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                }))
        },
    )
}

/// `pullsecret-injector audit` against the live cluster, with the suite's kubeconfig.
fn audit(s: &Suite, args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"))
        .arg("audit")
        .args(args)
        .env("KUBECONFIG", s.kubeconfig_path())
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A workload manifest with a pod template.
fn workload(kind: &str, ns: &str, name: &str, image: &str, secrets: &[&str]) -> String {
    let refs: Vec<Value> = secrets.iter().map(|s| json!({ "name": s })).collect();
    let restart = if matches!(kind, "Job" | "CronJob") {
        "Never"
    } else {
        "Always"
    };
    let pod_spec = json!({
        "containers": [manifests::container("app", image)],
        "imagePullSecrets": refs,
        "restartPolicy": restart,
    });
    manifests::in_namespace(manifests::workload(kind, name, pod_spec), ns).to_string()
}

/// The audit finds each kind of finding on a workload built for it, nothing on healthy ones;
/// its exit code follows `--fail-on`; its JSON parses; no credential in any output.
pub fn pull_audit(s: &Suite) -> Result<Outcome> {
    let healthy = s.namespace("audit-healthy", &[])?;
    let errors = s.namespace("audit-errors", &[])?;
    let warnings = s.namespace("audit-warnings", &[])?;
    let other = s.namespace("audit-other", &[])?;
    let private = "registry.audit.e2e.example";
    let elsewhere = "registry.elsewhere.e2e.example";
    let late = "registry.late.e2e.example";
    // No credential for it anywhere: the broken references are the only findings there.
    let nocred = "registry.nocred.e2e.example/team/app:1";
    s.registry_secret(&healthy, "auditcred", private)?;
    s.registry_secret(&errors, "broken", private)?;
    // Replaced by one the kubelet cannot decode: `auth` is not base64.
    s.kubectl(&["delete", "secret", "broken", "-n", &errors])?;
    s.pull_secret_from_file(
        &errors,
        "broken",
        "kubernetes.io/dockerconfigjson",
        ".dockerconfigjson",
        &format!(
            r#"{{"auths":{{"{private}":{{"username":"u","password":"{}","auth":"%%not*base64%%"}}}}}}"#,
            s.new_password(&format!("secret {errors}/broken"))
        ),
    )?;
    s.registry_secret(&other, "elsewhere", elsewhere)?;
    s.wait_cache_synced()?;

    let app = format!("{private}/team/app:1");
    for (kind, name) in [
        ("Deployment", "web"),
        ("CronJob", "nightly"),
        ("Job", "once"),
    ] {
        s.apply(&workload(kind, &healthy, name, &app, &[]))?;
    }
    s.apply(&workload(
        "StatefulSet",
        &healthy,
        "db",
        &app,
        &["auditcred"],
    ))?;
    s.run_pod(&healthy, "bare", &app, &[])?;
    // Errors: a missing secret, an undecodable one.
    s.apply(&workload(
        "Deployment",
        &errors,
        "missing",
        nocred,
        &["gone"],
    ))?;
    s.apply(&workload(
        "StatefulSet",
        &errors,
        "undecodable",
        nocred,
        &["broken"],
    ))?;
    // A pod created before its registry's secret: a pod created now would get it.
    let late_image = format!("{late}/team/app:1");
    s.run_pod(&errors, "early", &late_image, &[])?;
    ensure!(
        pull_secrets(&s.pod(&errors, "early")?).is_empty(),
        "pod early got a secret"
    );
    s.registry_secret(&errors, "latecred", late)?;
    // Warnings only: the registry's credential lives in another namespace.
    s.apply(&workload(
        "DaemonSet",
        &warnings,
        "agent",
        &format!("{elsewhere}/agent:1"),
        &[],
    ))?;

    let expected = [
        ("error", "missing_secret", "Deployment/missing", "gone"),
        (
            "error",
            "undecodable_secret",
            "StatefulSet/undecodable",
            "broken",
        ),
        ("info", "secrets_differ", "Pod/early", "latecred"),
    ];
    // The late secret must have reached the API (the audit reads it directly).
    let report = poll("the audit of the errors namespace", PROPAGATION, || {
        let (code, stdout, stderr) = audit(s, &["-n", &errors, "-o", "json"])?;
        ensure!(code == 0, "audit -o json exited {code}: {stderr}");
        let report: Value = serde_json::from_str(&stdout).context("audit -o json")?;
        let found = findings(&report);
        Ok((found.len() == expected.len()).then_some((report, stdout, stderr)))
    });
    let (report, json_out, json_err) = report.with_context(|| {
        format!(
            "{:?}",
            audit(s, &["-n", &errors, "-o", "wide"]).map(|(_, out, _)| out)
        )
    })?;
    let found = findings(&report);
    for (severity, kind, workload, secret) in expected {
        ensure!(
            found.iter().any(|f| f.0 == severity
                && f.1 == kind
                && f.2 == workload
                && f.3.contains(&secret.to_owned())),
            "no {severity} {kind} on {workload} ({secret}) in {found:?}"
        );
    }
    ensure!(
        report["summary"]["error"] == 2 && report["summary"]["info"] == 1,
        "summary: {}",
        report["summary"]
    );
    ensure!(
        report["modes"][&errors] == serde_json::json!({ "mode": "on", "source": "default" }),
        "modes: {}",
        report["modes"]
    );
    let (code, warn_json, _) = audit(s, &["-n", &warnings, "-o", "json"])?;
    let warn_found = findings(&serde_json::from_str(&warn_json)?);
    ensure!(
        code == 0
            && warn_found.len() == 1
            && warn_found[0].0 == "warning"
            && warn_found[0].1 == "credential_elsewhere"
            && warn_found[0].2 == "DaemonSet/agent"
            && warn_found[0]
                .3
                .iter()
                .any(|x| x == &format!("{other}/elsewhere")),
        "warnings namespace: {warn_found:?}"
    );
    let (code, healthy_out, healthy_err) = audit(s, &["-n", &healthy, "--fail-on", "info"])?;
    ensure!(
        code == 0 && healthy_out.starts_with("0 finding(s)"),
        "healthy namespace (exit {code}): {healthy_out}{healthy_err}"
    );

    // The exit code follows --fail-on.
    for (ns, fail_on, want) in [
        (&errors, "error", 3),
        (&warnings, "error", 0),
        (&warnings, "warning", 3),
        (&warnings, "info", 3),
        (&healthy, "info", 0),
    ] {
        let (code, _, stderr) = audit(s, &["-n", ns, "--fail-on", fail_on])?;
        ensure!(
            code == want,
            "audit -n {ns} --fail-on {fail_on}: exit {code}, expected {want} ({stderr})"
        );
    }
    let (_, table, _) = audit(s, &["-n", &errors])?;
    let (_, wide, _) = audit(s, &["-n", &errors, "-o", "wide"])?;
    ensure!(
        table.starts_with("SEVERITY")
            && !table.contains("MESSAGE")
            && wide.contains("MESSAGE")
            && wide.contains("cannot be decoded by the kubelet"),
        "table:\n{table}\nwide:\n{wide}"
    );
    let (minted_json, minted_wide) = minted_expiry(s)?;
    // Never a credential: none of the suite's passwords in any output.
    let outputs = [
        json_out,
        json_err,
        warn_json,
        healthy_out,
        table,
        wide,
        minted_json,
        minted_wide,
    ];
    for (description, needle) in s.secret_needles() {
        ensure!(
            !outputs.iter().any(|out| out.contains(&needle)),
            "the audit printed the password of {description}"
        );
    }
    Ok(Outcome::Passed)
}

/// A provider mints a credential for two seconds, then every refresh fails: the audit reports
/// the workload pulling with it as `credential_expired` (error), naming the ClusterPullSecret,
/// the expiry and the failure, never the token. Returns the JSON and wide outputs.
fn minted_expiry(s: &Suite) -> Result<(String, String)> {
    use std::os::unix::fs::PermissionsExt;
    let host = "registry.minted-audit.e2e.example";
    let token = s.new_password("the audit's minted credential");
    let plugin = format!("e2e-expiring-{}", s.unique());
    let marker = s.work_path().join(format!("{plugin}.minted"));
    let plugin_path = s.credential_plugin_dir().join(&plugin);
    // Mints once; every later call fails (printing the token to stderr, which must never be
    // shown).
    std::fs::write(
        &plugin_path,
        format!(
            r#"#!/bin/sh
cat >/dev/null
if [ -e '{marker}' ]; then echo "token service down (last token {token})" >&2; exit 7; fi
touch '{marker}'
printf '{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"2s","auth":{{"{host}":{{"username":"minted","password":"{token}"}}}}}}'
"#,
            marker = marker.display()
        ),
    )?;
    std::fs::set_permissions(&plugin_path, std::fs::Permissions::from_mode(0o755))?;
    let source_ns = s.namespace("audit-minted-source", &[])?;
    let label = "e2e.pullsecret-injector.io/audit-minted";
    let target_ns = s.namespace("audit-minted", &[(label, &s.run_id)])?;
    let cps = format!("e2e-audit-minted-{}", s.run_id);
    let image = format!("{host}/team/app:1");
    s.configure_credential_provider(&plugin, &[host], serde_json::json!({}))?;
    s.apply(&minted_cluster_pull_secret_manifest(
        &cps,
        (&source_ns, "minted"),
        (&plugin, &image),
        (label, &s.run_id),
        "minted-pull",
    ))?;
    s.apply(&workload(
        "Deployment",
        &target_ns,
        "uses-minted",
        &image,
        &[],
    ))?;
    // Minted, expired two seconds later, its refresh failed: one error on the Deployment.
    let report = poll(
        "the expired minted credential in the audit",
        Duration::from_secs(120),
        || {
            let (code, stdout, stderr) = audit(s, &["-n", &target_ns, "-o", "json"])?;
            ensure!(code == 0, "audit -o json exited {code}: {stderr}");
            let report: Value = serde_json::from_str(&stdout).context("audit -o json")?;
            let failed = report["findings"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("token service down"));
            Ok(failed.then_some((report, stdout)))
        },
    )?;
    let (report, json) = report;
    let found = findings(&report);
    ensure!(
        found
            == [(
                "error".to_owned(),
                "credential_expired".to_owned(),
                "Deployment/uses-minted".to_owned(),
                vec!["minted-pull".to_owned()]
            )],
        "{found:?}"
    );
    let message = report["findings"][0]["message"]
        .as_str()
        .unwrap_or_default();
    ensure!(
        message.contains(&format!("ClusterPullSecret \"{cps}\"")) && message.contains("expired at"),
        "{message}"
    );
    let (code, wide, _) = audit(s, &["-n", &target_ns, "-o", "wide", "--fail-on", "error"])?;
    ensure!(
        code == 3 && wide.contains("credential_expired"),
        "audit --fail-on error exited {code}:\n{wide}"
    );
    s.delete_cluster_pull_secret(&cps)?;
    Ok((json, wide))
}

/// `(severity, kind, workload, secrets)` of each finding of an `audit -o json` report.
fn findings(report: &Value) -> Vec<(String, String, String, Vec<String>)> {
    report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                text(&f["severity"]),
                text(&f["kind"]),
                format!(
                    "{}/{}",
                    text(&f["workload"]["kind"]),
                    text(&f["workload"]["name"])
                ),
                f["secrets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text)
                    .collect(),
            )
        })
        .collect()
}

/// `serve --audit-interval` on the Lease holder: the metric and one `PullAudit` Event per new
/// finding on its workload, not repeated by later audits.
pub fn pull_audit_controller(s: &Suite) -> Result<Outcome> {
    let identity = format!("e2e-{}-audit", s.run_id);
    let args: Vec<String> = [
        "--enable-controller",
        "--lease-namespace",
        s.lease_namespace(),
        "--lease-name",
        &format!("pullsecret-injector-e2e-audit-{}", s.run_id),
        "--lease-identity",
        &identity,
        "--audit-interval",
        "1s",
    ]
    .map(str::to_owned)
    .to_vec();
    let auditor = s.start_extra_serve("audit", &args)?;
    s.record_serve_log(auditor.log.clone());
    let ns = s.namespace("audit-scheduled", &[])?;
    s.apply(&workload(
        "Deployment",
        &ns,
        "missing",
        "registry.nocred.e2e.example/team/app:1",
        &["gone"],
    ))?;
    let metrics = || auditor.metrics();
    let events = || -> Result<Vec<Value>> {
        let list = s.get_json(&["events.events.k8s.io", "-n", &ns])?;
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|event| {
                event["reason"] == "PullAudit"
                    && event["regarding"]["kind"] == "Deployment"
                    && event["regarding"]["name"] == "missing"
            })
            .cloned()
            .collect())
    };
    let event = poll(
        "a PullAudit Event on Deployment/missing",
        PROPAGATION,
        || Ok(events()?.into_iter().next()),
    )?;
    let note = event["note"].as_str().unwrap_or_default();
    ensure!(
        event["type"] == "Warning"
            && note.starts_with("missing_secret (error): ")
            && note.contains("\"gone\""),
        "the Event: {event}"
    );
    let missing = "pullsecret_injector_audit_findings{kind=\"missing_secret\",severity=\"error\"}";
    ensure!(
        metric(&metrics()?, missing).is_some_and(|n| n >= 1.0),
        "{missing} after the Event"
    );
    // Two more complete audits: the finding is still there, its Event is not repeated.
    let last_run = "pullsecret_injector_audit_last_run_timestamp_seconds";
    let first = metric(&metrics()?, last_run).unwrap_or(0.0);
    poll("two more audits", PROPAGATION, || {
        Ok((metric(&metrics()?, last_run).unwrap_or(0.0) >= first + 1.5).then_some(()))
    })?;
    ensure!(
        events()?.len() == 1,
        "the Event was repeated: {:?}",
        events()?
    );
    // The finding goes away: the gauge follows (other workloads of the cluster keep theirs).
    let with = metric(&metrics()?, missing).unwrap_or(0.0);
    s.kubectl(&["delete", "deployment", "missing", "-n", &ns, "--wait=true"])?;
    poll("the finding to leave the metric", PROPAGATION, || {
        Ok((metric(&metrics()?, missing) == Some(with - 1.0)).then_some(()))
    })?;
    drop(auditor);
    Ok(Outcome::Passed)
}
