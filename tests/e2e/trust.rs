//! Who may make the injector run what. A ClusterPullSecret names a provider of the admin's
//! CredentialProviderConfig and the images to ask about, nothing more: the apiserver refuses
//! every field that would change how a plugin runs (loader and interpreter variables, cloud
//! credential endpoints, arguments, image patterns), and minting into system namespaces; a
//! provider the admin did not define is reported, never run; the admin's provider runs with
//! exactly the admin's arguments and environment, none of the server's. Minted Secrets belong
//! to their resource by owner reference and leave with it, also when `spec.source` changes,
//! `credentialProvider` is removed or the resource is force-deleted; a foreign Secret at the
//! source is never copied. Shadow namespaces get no copies.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::harness::{Suite, cluster_pull_secret_manifest, condition, events, poll, secret};
use crate::scenarios::Outcome;

/// Longer than a reconcile with its first retries: a bound, not a timing check.
const CONVERGENCE: Duration = Duration::from_secs(60);
const REFUSED: &str = "come only from the injector's CredentialProviderConfig";

/// A plugin that records its arguments and environment in `dir`, then answers for `host`.
fn recorder_script(dir: &Path, host: &str, password: &str) -> String {
    format!(
        r#"#!/bin/sh
cat >/dev/null
printf '%s\n' "$@" > '{dir}/args.new' && mv '{dir}/args.new' '{dir}/args'
env > '{dir}/env.new' && mv '{dir}/env.new' '{dir}/env'
printf '{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"1h","auth":{{"{host}":{{"username":"minted","password":"{password}"}}}}}}'
"#,
        dir = dir.display()
    )
}

/// Reasons of the Events about a ClusterPullSecret.
fn event_reasons(s: &Suite, name: &str) -> Result<Vec<String>> {
    let selector = format!("involvedObject.kind=ClusterPullSecret,involvedObject.name={name}");
    Ok(events(s, None, Some(&selector))?
        .iter()
        .filter_map(|event| event["reason"].as_str().map(str::to_owned))
        .collect())
}

pub fn credential_provider_trust(s: &Suite) -> Result<Outcome> {
    let host = "registry.trust.e2e.example";
    let image = format!("{host}/team/app:1");
    let password = s.new_password("the recorder plugin's credential");
    let plugin = format!("e2e-recorder-{}", s.unique());
    let record = s.work_path().join(&plugin);
    std::fs::create_dir_all(&record)?;
    let plugin_path = s.credential_plugin_dir().join(&plugin);
    std::fs::write(&plugin_path, recorder_script(&record, host, &password))?;
    std::fs::set_permissions(&plugin_path, std::fs::Permissions::from_mode(0o755))?;
    s.configure_credential_provider(
        &plugin,
        &[host],
        serde_json::json!({
            "args": ["get-credentials"],
            "env": [{"name": "PLUGIN_REGION", "value": "eu-west-1"}],
        }),
    )?;
    let source_ns = s.namespace("trust-source", &[])?;
    let label = "e2e.pullsecret-injector.io/trust";
    let target_ns = s.namespace("trust", &[(label, &s.run_id)])?;
    let manifest = |name: &str, source: (&str, &str), provider: &str, extra: &str| {
        format!(
            "{}  credentialProvider:\n    name: {provider}\n    images: [\"{image}\"]\n{extra}",
            cluster_pull_secret_manifest(
                name,
                source,
                (label, &s.run_id),
                &format!("{}-pull", source.1)
            )
        )
    };

    // Every field that would change how the plugin runs is refused by the apiserver.
    let hostile = [
        (
            "BASH_ENV",
            "    env: [{name: BASH_ENV, value: '$(id > /tmp/pwned)'}]\n",
        ),
        (
            "LD_PRELOAD",
            "    env: [{name: LD_PRELOAD, value: /tmp/evil.so}]\n",
        ),
        ("PATH", "    env: [{name: PATH, value: /tmp/evil}]\n"),
        (
            "AWS credential endpoint",
            "    env:\n    - {name: AWS_CONTAINER_CREDENTIALS_FULL_URI, value: 'http://127.0.0.1:9/'}\n    - {name: AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, value: /var/run/secrets/kubernetes.io/serviceaccount/token}\n",
        ),
        (
            "GCP metadata host",
            "    env: [{name: GCE_METADATA_HOST, value: '127.0.0.1:9'}]\n",
        ),
        (
            "Azure identity endpoint",
            "    env: [{name: IDENTITY_ENDPOINT, value: 'http://127.0.0.1:9/'}]\n",
        ),
        ("args", "    args: [--exfiltrate]\n"),
        ("matchImages", "    matchImages: ['*']\n"),
        (
            "defaultCacheDuration",
            "    defaultCacheDuration: 1000000h\n",
        ),
        (
            "apiVersion",
            "    apiVersion: credentialprovider.kubelet.k8s.io/v1alpha1\n",
        ),
    ];
    let hostile_name = format!("e2e-trust-hostile-{}", s.run_id);
    for (what, extra) in hostile {
        let out = s.kubectl_raw(
            &["apply", "-f", "-"],
            Some(&manifest(
                &hostile_name,
                (&source_ns, "hostile"),
                &plugin,
                extra,
            )),
        )?;
        ensure!(
            !out.status.success() && out.stderr.contains(REFUSED),
            "a ClusterPullSecret setting {what} was not refused: {}",
            out.stderr.trim()
        );
    }
    // A minted Secret is never written into a system namespace.
    let out = s.kubectl_raw(
        &["apply", "-f", "-"],
        Some(&manifest(
            &hostile_name,
            ("kube-system", "squat"),
            &plugin,
            "",
        )),
    )?;
    ensure!(
        !out.status.success() && out.stderr.contains("never written into kube-system"),
        "minting into kube-system was not refused: {}",
        out.stderr.trim()
    );

    // A provider the admin did not define is reported in the status and an Event, never run.
    let undefined = format!("e2e-trust-undefined-{}", s.run_id);
    s.apply(&manifest(&undefined, (&source_ns, "undefined"), "sh", ""))?;
    let (_, reason, message) = poll("the undefined provider reported", CONVERGENCE, || {
        let resource = s.get_json(&["clusterpullsecret", &undefined])?;
        Ok(condition(&resource, "CredentialMinted").filter(|(status, _, _)| status == "False"))
    })?;
    ensure!(
        reason == "NotMinted"
            && message.contains("is not defined in the injector's CredentialProviderConfig"),
        "{reason}: {message}"
    );
    poll("the RefreshFailed Event", CONVERGENCE, || {
        Ok(event_reasons(s, &undefined)?
            .iter()
            .any(|r| r == "RefreshFailed")
            .then_some(()))
    })?;
    ensure!(
        !record.join("env").exists(),
        "the plugin ran for a resource that was refused"
    );

    // The admin's provider runs with the admin's args and env, and nothing of the server's.
    let trusted = format!("e2e-trust-{}", s.run_id);
    s.apply(&manifest(&trusted, (&source_ns, "minted"), &plugin, ""))?;
    let resource = poll("the trusted credential minted", CONVERGENCE, || {
        let resource = s.get_json(&["clusterpullsecret", &trusted])?;
        Ok(condition(&resource, "CredentialMinted")
            .filter(|(status, _, _)| status == "True")
            .map(|_| resource))
    })?;
    let args = std::fs::read_to_string(record.join("args"))?;
    ensure!(
        args == "get-credentials\n",
        "the plugin got arguments {args:?}"
    );
    let env = std::fs::read_to_string(record.join("env"))?;
    ensure!(
        env.lines().any(|line| line == "PLUGIN_REGION=eu-west-1"),
        "the provider's env did not arrive: {env}"
    );
    for inherited in ["KUBECONFIG=", "HOME=", "CARGO"] {
        ensure!(
            !env.lines().any(|line| line.starts_with(inherited)),
            "the plugin inherited {inherited} from the server: {env}"
        );
    }
    let minted = s
        .get_json(&["secret", "minted", "-n", &source_ns])
        .context("the minted Secret")?;
    ensure!(
        minted["metadata"]["ownerReferences"][0]["uid"] == resource["metadata"]["uid"],
        "the minted Secret has no owner reference to its ClusterPullSecret: {}",
        minted["metadata"]
    );
    poll("the copy of the minted credential", CONVERGENCE, || {
        Ok(secret(s, &target_ns, "minted-pull")?
            .is_some()
            .then_some(()))
    })?;

    // A Secret at the source that was not minted for the resource is never copied.
    s.registry_secret(&source_ns, "foreign", host)?;
    let foreign = format!("e2e-trust-foreign-{}", s.run_id);
    s.apply(&manifest(&foreign, (&source_ns, "foreign"), &plugin, ""))?;
    poll("SourceNotMinted", CONVERGENCE, || {
        let resource = s.get_json(&["clusterpullsecret", &foreign])?;
        Ok(condition(&resource, "Ready").filter(|(_, reason, _)| reason == "SourceNotMinted"))
    })?;
    // The status is written after the copies: had it copied, the copy would be there now.
    ensure!(
        secret(s, &target_ns, "foreign-pull")?.is_none(),
        "a foreign Secret at the source was copied"
    );

    // A changed source takes the old minted Secret away; so does removing the provider.
    s.kubectl(&[
        "patch",
        "clusterpullsecret",
        &trusted,
        "--type=merge",
        "-p",
        r#"{"spec":{"source":{"name":"minted-2"}}}"#,
    ])?;
    poll(
        "the credential minted at the new source",
        CONVERGENCE,
        || {
            Ok((secret(s, &source_ns, "minted-2")?.is_some()
                && secret(s, &source_ns, "minted")?.is_none())
            .then_some(()))
        },
    )?;
    s.kubectl(&[
        "patch",
        "clusterpullsecret",
        &trusted,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/credentialProvider"}]"#,
    ])?;
    poll(
        "the minted Secret deleted with its provider",
        CONVERGENCE,
        || Ok(secret(s, &source_ns, "minted-2")?.is_none().then_some(())),
    )?;

    // A force-deleted resource (its finalizer removed by hand) leaves no credential behind.
    let forced = format!("e2e-trust-forced-{}", s.run_id);
    s.apply(&manifest(&forced, (&source_ns, "forced"), &plugin, ""))?;
    poll("the credential to force away minted", CONVERGENCE, || {
        Ok(secret(s, &source_ns, "forced")?.is_some().then_some(()))
    })?;
    s.kubectl(&[
        "patch",
        "clusterpullsecret",
        &forced,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])?;
    s.kubectl(&[
        "delete",
        "clusterpullsecret",
        &forced,
        "--wait=true",
        "--timeout=60s",
    ])?;
    poll(
        "the force-deleted resource's credential removed",
        CONVERGENCE,
        || Ok(secret(s, &source_ns, "forced")?.is_none().then_some(())),
    )?;

    for name in [&undefined, &trusted, &foreign] {
        s.delete_cluster_pull_secret(name)?;
    }
    ensure!(
        secret(s, &source_ns, "foreign")?.is_some(),
        "the foreign Secret at a source was deleted"
    );
    std::fs::remove_file(&plugin_path)?;
    Ok(Outcome::Passed)
}

/// Shadow mode changes nothing in a namespace: no copy is written there until it is switched
/// on, and switching back takes the copy away.
pub fn shadow_namespaces_get_no_copies(s: &Suite) -> Result<Outcome> {
    let label = "e2e.pullsecret-injector.io/shadow-copies";
    let source_ns = s.namespace("shadow-copies-source", &[])?;
    s.registry_secret(&source_ns, "source", "registry.shadow-copies.e2e.example")?;
    let on_ns = s.namespace("copies-on", &[(label, &s.run_id)])?;
    let shadow_ns = s.namespace(
        "copies-shadow",
        &[
            (label, &s.run_id),
            ("pullsecret-injector.io/mode", "shadow"),
        ],
    )?;
    let name = format!("e2e-shadow-copies-{}", s.run_id);
    s.cluster_pull_secret(
        &name,
        (&source_ns, "source"),
        (label, &s.run_id),
        "shadow-pull",
    )?;
    let status = poll("Ready with the namespace in mode on", CONVERGENCE, || {
        let resource = s.get_json(&["clusterpullsecret", &name])?;
        Ok(condition(&resource, "Ready")
            .filter(|(status, _, _)| status == "True")
            .map(|_| resource["status"].clone()))
    })?;
    ensure!(
        status["namespaces"] == serde_json::json!([on_ns]),
        "copies in {}: a shadow namespace got one",
        status["namespaces"]
    );
    ensure!(
        secret(s, &shadow_ns, "shadow-pull")?.is_none(),
        "a copy was written into the shadow namespace"
    );
    let set_mode = |mode: &str| {
        s.kubectl(&[
            "label",
            "namespace",
            &shadow_ns,
            &format!("pullsecret-injector.io/mode={mode}"),
            "--overwrite",
        ])
    };
    set_mode("on")?;
    poll("the copy once the namespace is on", CONVERGENCE, || {
        Ok(secret(s, &shadow_ns, "shadow-pull")?
            .is_some()
            .then_some(()))
    })?;
    set_mode("shadow")?;
    poll(
        "the copy gone once back in shadow mode",
        CONVERGENCE,
        || {
            Ok(secret(s, &shadow_ns, "shadow-pull")?
                .is_none()
                .then_some(()))
        },
    )?;
    s.delete_cluster_pull_secret(&name)?;
    Ok(Outcome::Passed)
}
