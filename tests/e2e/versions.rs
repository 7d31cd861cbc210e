//! What differs between the Kubernetes versions the suite runs on (README "Supported Kubernetes
//! versions"): which minor the cluster serves, and the kubelet's check of cached private images.

use anyhow::{Context, Result, ensure};

use crate::harness::{INJECT_LABEL, Suite, expect_secrets, wait_pull_failure, wait_running};
use crate::node::{NO_CREDENTIALS, Registry};
use crate::scenarios::Outcome;

/// The first minor whose kubelet, by default, makes a pod present credentials of its own for a
/// private image another pod pulled (KubeletEnsureSecretPulledImages, beta and on in 1.35).
pub const PULL_CHECK_MINOR: u32 = 35;

/// The minor version the apiserver reports (`kubectl version`), e.g. 37 for v1.37.2.
pub fn server_minor(s: &Suite) -> Result<u32> {
    let out = s.kubectl(&["version", "-o", "json"])?;
    let version: serde_json::Value =
        serde_json::from_str(&out.stdout).context("kubectl version printed no JSON")?;
    let minor = version["serverVersion"]["minor"]
        .as_str()
        .context("kubectl version printed no serverVersion.minor")?;
    // Some distributions append `+` to the minor.
    minor
        .trim_end_matches('+')
        .parse()
        .with_context(|| format!("the server's minor version {minor:?} is not a number"))
}

/// A pod in namespace B using a private image that a pod in namespace A pulled with A's secret.
/// With the injector B's pod gets B's own secret and runs on every version. Opted out, it has no
/// secret: from 1.35 the kubelet refuses it although the image is on the node; before, it runs
/// from the cached image.
pub fn cached_image_check(s: &Suite) -> Result<Outcome> {
    let minor = server_minor(s)?;
    let registry = Registry::start(s, "cached")?;
    let image = registry.push_busybox("team/cached:1")?;
    let a = s.node_namespace("cached-a", &[])?;
    let b = s.node_namespace("cached-b", &[])?;
    registry.secret(s, &a, "registry-a")?;
    registry.secret(s, &b, "registry-b")?;
    s.wait_cache_synced()?;

    s.run_pod(&a, "first", &image, &[])?;
    expect_secrets(&wait_running(s, &a, "first")?, &["registry-a"])?;

    s.run_pod(&b, "injected", &image, &[])?;
    expect_secrets(&wait_running(s, &b, "injected")?, &["registry-b"])?;

    let opted_out = format!("--labels={INJECT_LABEL}=false");
    s.run_pod(&b, "opted-out", &image, &[&opted_out])?;
    if minor >= PULL_CHECK_MINOR {
        let message = wait_pull_failure(s, &b, "opted-out", "opted-out")?;
        ensure!(
            message.contains(NO_CREDENTIALS),
            "on 1.{minor} the opted-out pod failed, but not for lack of credentials: {message}"
        );
    } else {
        wait_running(s, &b, "opted-out").with_context(|| {
            format!("on 1.{minor} the kubelet should start the opted-out pod from the cached image")
        })?;
    }
    expect_secrets(&s.pod(&b, "opted-out")?, &[])?;
    Ok(Outcome::Passed)
}
