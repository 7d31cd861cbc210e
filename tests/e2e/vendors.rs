//! The vendor plugins on the node: JD Cloud JCR and Huawei Cloud SWR. A local stand-in of the
//! vendor's token API (tests/vendors/standin.py, checking signatures with the vendor's own
//! signer code) issues a fresh password per call and makes it the only login of a real
//! registry, so a pod pulls only with what the plugin minted. The suite's serve process (the
//! Lease holder) runs our plugin binaries as a ClusterPullSecret's provider; the token is
//! refreshed before the vendor's `expiresAt`; a revoked key is reported with the vendor's error,
//! never the key. Also: Rancher's projects as a ClusterPullSecret's namespaceSelector.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::harness::{
    Suite, all_events_json, condition, expect_secrets, minted_cluster_pull_secret_manifest, poll,
    secret, secret_password, wait_running,
};
use crate::node::Registry;
use crate::plugins_support::{StandIn, StandInOptions};
use crate::scenarios::Outcome;

/// The vendor's token lifetime in these scenarios: the plugin keeps a fifth as margin and the
/// controller refreshes at 75–85 % of the rest, well before the vendor's expiry.
const LIFETIME_SECONDS: u64 = 40;
/// Longer than a refresh cycle plus its backoff: a bound, not a timing check.
const CYCLE: Duration = Duration::from_secs(120);
const ACCESS_KEY: &str = "AKE2E0123456789STANDIN";

struct Vendor {
    /// The stand-in's mode.
    api: &'static str,
    plugin: &'static str,
    /// The plugin as cargo built it.
    binary: &'static str,
    /// The plugin's arguments, given the stand-in's endpoint.
    args: fn(&str) -> Vec<String>,
    access_key_var: &'static str,
    secret_key_var: &'static str,
    /// What the vendor's authentication error says.
    refusal: &'static str,
}

const JCR: Vendor = Vendor {
    api: "jdcloud",
    plugin: "jdcloud-jcr-credential-provider",
    binary: env!("CARGO_BIN_EXE_jdcloud-jcr-credential-provider"),
    args: |endpoint| {
        [
            "--registry-name",
            "e2e",
            "--region-id",
            "cn-north-1",
            "--endpoint",
            endpoint,
        ]
        .map(String::from)
        .to_vec()
    },
    access_key_var: "JDCLOUD_ACCESS_KEY",
    secret_key_var: "JDCLOUD_SECRET_KEY",
    refusal: "UNAUTHENTICATED",
};

const SWR: Vendor = Vendor {
    api: "huaweicloud",
    plugin: "huaweicloud-swr-credential-provider",
    binary: env!("CARGO_BIN_EXE_huaweicloud-swr-credential-provider"),
    args: |endpoint| ["--endpoint", endpoint].map(String::from).to_vec(),
    access_key_var: "HUAWEICLOUD_SDK_AK",
    secret_key_var: "HUAWEICLOUD_SDK_SK",
    refusal: "APIGW.0301",
};

pub fn jdcloud_jcr(s: &Suite) -> Result<Outcome> {
    vendor_plugin_on_the_node(s, &JCR)
}

pub fn huaweicloud_swr(s: &Suite) -> Result<Outcome> {
    vendor_plugin_on_the_node(s, &SWR)
}

fn vendor_plugin_on_the_node(s: &Suite, vendor: &Vendor) -> Result<Outcome> {
    let registry = Registry::start(s, vendor.api)?;
    // Pushed while the registry's own login still works: from the first token on, the
    // stand-in's password is its only login.
    let image = registry.push_busybox("team/app:1")?;
    let secret_key = s.new_password(&format!("{} secret key", vendor.api));
    let dir = s.work_path().join(format!("{}-{}", vendor.api, s.unique()));
    std::fs::create_dir_all(&dir)?;
    let stand_in = StandIn::start(&StandInOptions {
        vendor: vendor.api,
        access_key: ACCESS_KEY,
        secret_key: &secret_key,
        registry: &registry.host,
        lifetime_seconds: LIFETIME_SECONDS as i64,
        htpasswd: Some(&registry.htpasswd_path()),
        dir: &dir,
    })
    .map_err(anyhow::Error::msg)?;

    // The plugin as an admin installs it: our binary in the plugin directory, its arguments and
    // keys in the admin's CredentialProviderConfig.
    let built = PathBuf::from(vendor.binary);
    let installed = s.credential_plugin_dir().join(vendor.plugin);
    std::fs::copy(&built, &installed).with_context(|| format!("copying {}", built.display()))?;
    s.configure_credential_provider(
        vendor.plugin,
        &[&registry.host],
        serde_json::json!({
            "args": (vendor.args)(&stand_in.endpoint),
            "env": [
                {"name": vendor.access_key_var, "value": ACCESS_KEY},
                {"name": vendor.secret_key_var, "value": secret_key},
            ],
        }),
    )?;

    let source_ns = s.namespace(&format!("{}-source", vendor.api), &[])?;
    let label = "e2e.pullsecret-injector.io/vendor";
    let target_ns = s.node_namespace(vendor.api, &[(label, vendor.api)])?;
    let cps = format!("e2e-{}-{}", vendor.api, s.run_id);
    let target = format!("{}-pull", vendor.api);
    s.apply(&minted_cluster_pull_secret_manifest(
        &cps,
        (&source_ns, "minted"),
        (vendor.plugin, &image),
        (label, vendor.api),
        &target,
    ))?;

    // The first token reaches the copy, and a kubectl pod pulls with it.
    poll("the copy of the first token", CYCLE, || {
        let issued = stand_in.issued();
        Ok(secret_password(s, &target_ns, &target, &registry.host)?
            .filter(|p| issued.last().is_some_and(|(last, _, _)| last == p))
            .map(|_| ()))
    })?;
    s.run_pod(&target_ns, "first", &image, &["--image-pull-policy=Always"])?;
    expect_secrets(&wait_running(s, &target_ns, "first")?, &[&target])?;

    // Refreshed before the vendor's expiry: the second token is issued while the first is
    // still valid, the copy follows, and a new pod pulls with it.
    let issued = poll("a refresh", CYCLE, || {
        let issued = stand_in.issued();
        Ok((issued.len() >= 2).then_some(issued))
    })?;
    let (_, refreshed_at, _) = issued[1];
    let (_, _, first_expiry) = issued[0];
    ensure!(
        refreshed_at < first_expiry,
        "the token was refreshed at {refreshed_at}, after the vendor's expiry {first_expiry}"
    );
    poll("the copy of the refreshed token", CYCLE, || {
        let issued = stand_in.issued();
        Ok(secret_password(s, &target_ns, &target, &registry.host)?
            .filter(|p| issued.len() >= 2 && issued.last().is_some_and(|(last, _, _)| last == p))
            .map(|_| ()))
    })?;
    s.run_pod(
        &target_ns,
        "refreshed",
        &image,
        &["--image-pull-policy=Always"],
    )?;
    expect_secrets(&wait_running(s, &target_ns, "refreshed")?, &[&target])?;

    // A revoked key: the status carries the vendor's error and the plugin's exit code.
    stand_in.revoke()?;
    let message = poll("the vendor's refusal in the status", CYCLE, || {
        let resource = s.get_json(&["clusterpullsecret", &cps])?;
        Ok(condition(&resource, "CredentialMinted")
            .filter(|(status, _, message)| status == "False" && message.contains(vendor.refusal))
            .map(|(_, _, message)| message))
    })?;
    ensure!(
        message.contains("code 4") && message.contains("The access key is disabled"),
        "{message}"
    );

    // No key and no token outside the Secrets: status, Events, serve logs.
    let status = s.get_json(&["clusterpullsecret", &cps])?.to_string();
    let events = all_events_json(s)?;
    let mut logs = String::new();
    for log in s.serve_logs() {
        logs.push_str(&std::fs::read_to_string(log).unwrap_or_default());
    }
    let mut needles = vec![secret_key.clone()];
    needles.extend(
        stand_in
            .issued()
            .into_iter()
            .map(|(password, _, _)| password),
    );
    for (place, text) in [
        ("the status", &status),
        ("the events", &events),
        ("the serve logs", &logs),
    ] {
        for needle in &needles {
            ensure!(
                !text.contains(needle.as_str()),
                "a key or token appeared in {place}"
            );
        }
    }
    s.delete_cluster_pull_secret(&cps)?;
    std::fs::remove_file(&installed)?;
    Ok(Outcome::Passed)
}

/// Rancher's registry credentials are scoped to a project, whose namespaces carry the label
/// `field.cattle.io/projectId`: a ClusterPullSecret selecting that label serves exactly the
/// project's namespaces, following namespaces moved into and out of the project.
pub fn rancher_project(s: &Suite) -> Result<Outcome> {
    const PROJECT_LABEL: &str = "field.cattle.io/projectId";
    let project = format!("p-{}", &s.run_id[..s.run_id.len().min(8)]);
    let source_ns = s.namespace("rancher-source", &[])?;
    let registry = "registry.rancher-project.example";
    s.registry_secret(&source_ns, "project-registry", registry)?;
    let frontend = s.namespace("rancher-frontend", &[(PROJECT_LABEL, &project)])?;
    let backend = s.namespace("rancher-backend", &[(PROJECT_LABEL, &project)])?;
    let other = s.namespace("rancher-other", &[(PROJECT_LABEL, "p-other")])?;
    let cps = format!("e2e-rancher-{}", s.run_id);
    s.cluster_pull_secret(
        &cps,
        (&source_ns, "project-registry"),
        (PROJECT_LABEL, &project),
        "project-registry",
    )?;

    let image = format!("{registry}/team/app:1");
    let injected = |ns: &str| -> Result<bool> {
        Ok(s.dry_run_pull_secrets(ns, &image)?
            .iter()
            .any(|name| name == "project-registry"))
    };
    for ns in [&frontend, &backend] {
        poll(
            &format!("the project's secret injected in {ns}"),
            CYCLE,
            || Ok(injected(ns)?.then_some(())),
        )?;
    }
    let copy_in = |ns: &str| secret(s, ns, "project-registry");
    ensure!(
        copy_in(&other)?.is_none() && !injected(&other)?,
        "a namespace of another project was served"
    );

    // Moved into the project, then out of it.
    s.kubectl(&[
        "label",
        "namespace",
        &other,
        &format!("{PROJECT_LABEL}={project}"),
        "--overwrite",
    ])?;
    poll("the moved namespace served", CYCLE, || {
        Ok(injected(&other)?.then_some(()))
    })?;
    s.kubectl(&[
        "label",
        "namespace",
        &backend,
        &format!("{PROJECT_LABEL}=p-other"),
        "--overwrite",
    ])?;
    poll("the namespace moved out no longer served", CYCLE, || {
        Ok((copy_in(&backend)?.is_none() && !injected(&backend)?).then_some(()))
    })?;
    s.delete_cluster_pull_secret(&cps)?;
    Ok(Outcome::Passed)
}
