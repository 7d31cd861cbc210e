//! Short-lived registry tokens on the node: a credential provider plugin written here mints a
//! fresh password for a real distribution registry on every run and rotates the registry's
//! htpasswd with it (the registry re-reads the file when it changes), so a stale credential
//! really stops working. The suite's serve process (the Lease holder) runs the plugin from its
//! `--image-credential-provider-bin-dir`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::harness::{
    Suite, all_events_json, condition, expect_secrets, metric, minted_cluster_pull_secret_manifest,
    poll, secret, secret_password, wait_running,
};
use crate::node::Registry;
use crate::scenarios::Outcome;

/// The lifetime the plugin states (refresh at 75–85 % of it).
const LIFETIME_SECONDS: u64 = 30;
/// Longer than a refresh cycle plus its backoff: a bound, not a timing check.
const CYCLE: Duration = Duration::from_secs(120);

/// The plugin: refuses while FAIL exists (printing the current token to stderr, which must
/// never be shown), else mints a password, rotates the htpasswd and answers.
fn plugin_script(registry: &Registry, dir: &std::path::Path) -> String {
    let htpasswd = registry.htpasswd_path();
    let tokens = dir.join("tokens");
    let fail = dir.join("fail");
    format!(
        r#"#!/bin/sh
set -eu
request=$(cat)
case "$request" in *'"kind":"CredentialProviderRequest"'*) ;; *) echo "bad request" >&2; exit 9 ;; esac
if [ -e '{fail}' ]; then
  echo "token service unavailable (current token $(tail -n 1 '{tokens}'))" >&2
  exit 7
fi
password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
hash=$(python3 -W ignore -c 'import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))' "$password")
printf 'minted:%s\n' "$hash" > '{htpasswd}.new'
mv '{htpasswd}.new' '{htpasswd}'
echo "$password" >> '{tokens}'
printf '{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"{LIFETIME_SECONDS}s","auth":{{"{host}":{{"username":"minted","password":"%s"}}}}}}' "$password"
"#,
        fail = fail.display(),
        tokens = tokens.display(),
        htpasswd = htpasswd.display(),
        host = registry.host,
    )
}

/// The registry's answer to `GET /v2/` with `minted:password` (200 or 401).
fn registry_status(host: &str, password: &str) -> Result<u16> {
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = BASE64.encode(format!("minted:{password}"));
    write!(
        stream,
        "GET /v2/ HTTP/1.0\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no HTTP status")
}

pub fn minted_credentials_rotate(s: &Suite) -> Result<Outcome> {
    let registry = Registry::start(s, "minted")?;
    let image = registry.push_busybox("team/app:1")?;
    let plugin_dir = s.work_path().join(format!("minted-{}", s.unique()));
    std::fs::create_dir_all(&plugin_dir)?;
    let plugin = format!("e2e-rotating-{}", s.unique());
    let plugin_path = s.credential_plugin_dir().join(&plugin);
    std::fs::write(&plugin_path, plugin_script(&registry, &plugin_dir))?;
    std::fs::set_permissions(&plugin_path, std::fs::Permissions::from_mode(0o755))?;
    let tokens = || -> Vec<String> {
        std::fs::read_to_string(plugin_dir.join("tokens"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };

    let source_ns = s.namespace("minted-source", &[])?;
    let label = "e2e.pullsecret-injector.io/minted";
    let target_ns = s.node_namespace("minted", &[(label, &s.run_id)])?;
    let cps = format!("e2e-minted-{}", s.run_id);
    s.configure_credential_provider(&plugin, &[&registry.host], serde_json::json!({}))?;
    s.apply(&minted_cluster_pull_secret_manifest(
        &cps,
        (&source_ns, "minted"),
        (&plugin, &image),
        (label, &s.run_id),
        "minted-pull",
    ))?;

    // Minted, copied, and a pod pulls with it.
    let first = poll("the first mint", CYCLE, || {
        let resource = s.get_json(&["clusterpullsecret", &cps])?;
        let minted = condition(&resource, "CredentialMinted");
        Ok(minted
            .filter(|(status, _, _)| status == "True")
            .and_then(|_| {
                resource["status"]["credential"]["mintedAt"]
                    .as_str()
                    .map(str::to_owned)
            }))
    })?;
    poll("the copy of the first token", CYCLE, || {
        Ok(
            secret_password(s, &target_ns, "minted-pull", &registry.host)?
                .filter(|p| tokens().last() == Some(p))
                .map(|_| ()),
        )
    })?;
    s.run_pod(&target_ns, "first", &image, &["--image-pull-policy=Always"])?;
    expect_secrets(&wait_running(s, &target_ns, "first")?, &["minted-pull"])?;

    // The refresh rotates the registry's password: the first token stops working, the copy
    // follows, and a pod created now pulls with the new one.
    poll("a refresh", CYCLE, || {
        let resource = s.get_json(&["clusterpullsecret", &cps])?;
        let minted = resource["status"]["credential"]["mintedAt"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok((minted != first && tokens().len() >= 2).then_some(()))
    })?;
    let all = tokens();
    ensure!(
        registry_status(&registry.host, &all[0])? == 401,
        "the first token still works after the rotation"
    );
    poll("the copy of the new token", CYCLE, || {
        let current = tokens();
        Ok(
            secret_password(s, &target_ns, "minted-pull", &registry.host)?
                .filter(|p| current.last() == Some(p))
                .map(|_| ()),
        )
    })?;
    s.run_pod(
        &target_ns,
        "after-rotation",
        &image,
        &["--image-pull-policy=Always"],
    )?;
    expect_secrets(
        &wait_running(s, &target_ns, "after-rotation")?,
        &["minted-pull"],
    )?;

    // The plugin fails: the status says why, a pod gets a warning and still pulls with the
    // last good credential; past its expiry the status says Expired.
    std::fs::write(plugin_dir.join("fail"), "")?;
    let last_good = tokens().last().cloned().context("no token")?;
    let failing = poll("the failed refresh in the status", CYCLE, || {
        let resource = s.get_json(&["clusterpullsecret", &cps])?;
        Ok(condition(&resource, "CredentialMinted")
            .filter(|(status, _, _)| status == "False")
            .map(|(_, reason, message)| (reason, message, resource)))
    })?;
    let (reason, message, resource) = failing;
    ensure!(
        ["RefreshFailed", "Expired"].contains(&reason.as_str()),
        "reason {reason}"
    );
    ensure!(
        message.contains("code 7") && message.contains("token service unavailable"),
        "{message}"
    );
    ensure!(
        resource["status"]["credential"]["lastFailure"]
            .as_str()
            .is_some_and(|f| f.contains("[redacted]")),
        "the plugin's stderr token was not redacted: {}",
        resource["status"]["credential"]
    );
    poll("the webhook to see the failing refresh", CYCLE, || {
        let out = s.run_pod(
            &target_ns,
            "probe",
            &image,
            &["--dry-run=server", "-o", "json"],
        )?;
        Ok(out
            .warnings()
            .iter()
            .any(|w| w.contains("refresh is failing"))
            .then_some(()))
    })?;
    let out = s.run_pod(
        &target_ns,
        "while-failing",
        &image,
        &["--image-pull-policy=Always"],
    )?;
    ensure!(
        out.warnings()
            .iter()
            .any(|w| w.contains(&cps) && w.contains("refresh is failing")),
        "no warning: {:?}",
        out.warnings()
    );
    let warnings = out.stderr.clone();
    expect_secrets(
        &wait_running(s, &target_ns, "while-failing")?,
        &["minted-pull"],
    )?;
    ensure!(
        secret_password(s, &target_ns, "minted-pull", &registry.host)?.as_deref()
            == Some(last_good.as_str()),
        "the last good credential was not kept"
    );
    poll("the Expired status", CYCLE, || {
        let resource = s.get_json(&["clusterpullsecret", &cps])?;
        let ready = condition(&resource, "Ready");
        Ok(ready
            .filter(|(status, reason, _)| status == "False" && reason == "CredentialExpired")
            .map(|_| ()))
    })?;

    // Metrics and Events say it; no token anywhere.
    let metrics = s.metrics()?;
    let refreshes = |outcome: &str| {
        metric(
            &metrics,
            &format!("pullsecret_injector_credential_refreshes_total{{outcome=\"{outcome}\"}}"),
        )
        .unwrap_or(0.0)
    };
    ensure!(
        refreshes("success") >= 2.0 && refreshes("exit") >= 1.0,
        "refresh metrics"
    );
    ensure!(
        metric(
            &metrics,
            &format!(
                "pullsecret_injector_credential_expiry_timestamp_seconds{{cluster_pull_secret=\"{cps}\"}}"
            ),
        )
        .is_some(),
        "no expiry gauge for {cps}"
    );
    let events = all_events_json(s)?;
    let parsed: Value = serde_json::from_str(&events)?;
    let reasons: Vec<&str> = parsed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == cps.as_str())
        .filter_map(|e| e["reason"].as_str())
        .collect();
    ensure!(
        reasons.contains(&"CredentialMinted") && reasons.contains(&"RefreshFailed"),
        "events {reasons:?}"
    );
    let status = s.get_json(&["clusterpullsecret", &cps])?.to_string();
    let mut logs = String::new();
    for log in s.serve_logs() {
        logs.push_str(&std::fs::read_to_string(log).unwrap_or_default());
    }
    let everything = [
        ("the status", status),
        ("the events", events.to_string()),
        ("the serve logs", logs),
        ("/metrics", metrics),
        ("the admission warnings", warnings),
    ];
    for token in tokens() {
        for (place, text) in &everything {
            ensure!(!text.contains(&token), "a minted token appeared in {place}");
        }
    }
    s.delete_cluster_pull_secret(&cps)?;
    ensure!(
        secret(s, &source_ns, "minted")?.is_none(),
        "the minted source Secret outlived its ClusterPullSecret"
    );
    std::fs::remove_file(&plugin_path)?;
    Ok(Outcome::Passed)
}

const ECR_REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// The real ecr-credential-provider run by the suite's serve process for two
/// ClusterPullSecrets: one without AWS credentials (the status and an Event say what the plugin
/// said), one with fake static keys and a token endpoint on 127.0.0.1 (the Secret is minted
/// and a pod's image from that registry gets its copy).
pub fn ecr_credential_provider(s: &Suite) -> Result<Outcome> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/controlplane/build-ecr-provider.sh");
    let built = std::process::Command::new("bash").arg(script).output()?;
    ensure!(
        built.status.success(),
        "build-ecr-provider.sh: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let binary = String::from_utf8_lossy(&built.stdout).trim().to_owned();
    // Two providers of the admin's file, one binary: the kubelet's provider name is the
    // executable's. Everything about how they run — args, the endpoint override, the keys —
    // comes from that file; the ClusterPullSecrets only name them.
    let (working_provider, failing_provider) =
        ("ecr-credential-provider", "ecr-credential-provider-no-keys");
    for name in [working_provider, failing_provider] {
        let plugin = s.credential_plugin_dir().join(name);
        if !plugin.exists() {
            std::fs::copy(&binary, &plugin)?;
        }
    }
    let password = s.new_password("the ECR stand-in's token");
    let (endpoint, _) = crate::ecr_stand_in::start(ECR_REGISTRY, &password)?;
    let no_instance_credentials = serde_json::json!([
        {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"},
        {"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "/nonexistent"},
        {"name": "AWS_CONFIG_FILE", "value": "/nonexistent"},
    ]);
    let mut with_keys = no_instance_credentials.clone();
    if let Some(env) = with_keys.as_array_mut() {
        env.extend([
            serde_json::json!({"name": "AWS_ACCESS_KEY_ID", "value": "AKIAIOSFODNN7EXAMPLE"}),
            serde_json::json!({"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"}),
            serde_json::json!({"name": "AWS_ENDPOINT_URL_ECR", "value": endpoint}),
        ]);
    }
    for (name, env) in [
        (working_provider, with_keys),
        (failing_provider, no_instance_credentials),
    ] {
        s.configure_credential_provider(
            name,
            &["*.dkr.ecr.*.amazonaws.com"],
            serde_json::json!({"defaultCacheDuration": "12h", "args": ["get-credentials"], "env": env}),
        )?;
    }
    let source_ns = s.namespace("ecr-source", &[])?;
    let label = "e2e.pullsecret-injector.io/ecr";
    let target_ns = s.namespace("ecr", &[(label, &s.run_id)])?;
    let manifest = |name: &str, provider: &str| {
        format!(
            "apiVersion: pullsecret-injector.io/v1alpha1
kind: ClusterPullSecret
metadata: {{name: {name}}}
spec:
  source: {{namespace: {source_ns}, name: {name}}}
  credentialProvider:
    name: {provider}
    images: [\"{ECR_REGISTRY}/app:1\"]
  namespaceSelector:
    matchLabels: {{{label}: \"{run}\"}}
  targetName: {name}-pull
",
            run = s.run_id
        )
    };
    let failing = format!("e2e-ecr-none-{}", s.run_id);
    let working = format!("e2e-ecr-{}", s.run_id);
    s.apply(&manifest(&failing, failing_provider))?;
    s.apply(&manifest(&working, working_provider))?;

    let (_, reason, message) = poll("the failure without AWS credentials", CYCLE, || {
        let resource = s.get_json(&["clusterpullsecret", &failing])?;
        Ok(condition(&resource, "CredentialMinted").filter(|(status, _, _)| status == "False"))
    })?;
    ensure!(
        reason == "NotMinted"
            && message.contains("code 1")
            && message.contains("no EC2 IMDS role found"),
        "{reason}: {message}"
    );

    let resource = poll("the ECR credential minted", CYCLE, || {
        let resource = s.get_json(&["clusterpullsecret", &working])?;
        Ok(condition(&resource, "CredentialMinted")
            .filter(|(status, _, _)| status == "True")
            .map(|_| resource))
    })?;
    ensure!(
        resource["status"]["credential"]["cacheKeyType"] == "Registry"
            && resource["status"]["credential"]["expiresAt"].is_string(),
        "{}",
        resource["status"]
    );
    ensure!(
        secret_password(s, &source_ns, &working, ECR_REGISTRY)?.as_deref()
            == Some(password.as_str()),
        "the minted Secret does not hold the stand-in's token"
    );
    let target = format!("{working}-pull");
    poll("the ECR credential's copy", CYCLE, || {
        Ok(secret_password(s, &target_ns, &target, ECR_REGISTRY)?.map(|_| ()))
    })?;
    let injected = s.dry_run_pull_secrets(&target_ns, &format!("{ECR_REGISTRY}/app:1"))?;
    ensure!(injected == [target.clone()], "injected {injected:?}");
    let status = s.get_json(&["clusterpullsecret", &working])?.to_string();
    ensure!(
        !status.contains(&password),
        "the token appeared in the status"
    );
    for name in [&failing, &working] {
        s.kubectl(&[
            "delete",
            "clusterpullsecret",
            name,
            "--wait=true",
            "--timeout=60s",
        ])?;
    }
    Ok(Outcome::Passed)
}
