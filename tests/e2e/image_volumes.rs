//! Image volumes on the node: `volumes[].image.reference` is pulled by the kubelet with the
//! pod's pull secrets, so the webhook injects for it as for a container image. The content is
//! an OCI image of files pushed with crane to an authenticated registry; the container is the
//! node's preloaded busybox (`imagePullPolicy: Never`), so the image volume is the pod's only
//! private image, and a readiness probe run in the container reads the volume's file.

use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::harness::{
    INJECT_LABEL, Suite, deployment_pod, event_messages, expect_secrets, injected_annotation,
    is_ready, manifests, poll, pull_secrets, replacement, wait_pull_failure, wait_running,
};
use crate::node::{NO_CREDENTIALS, Registry};
use crate::recovery::{RECOVERY_TIMEOUT, recovering_serve};
use crate::scenarios::Outcome;

/// The node's preloaded image (tests/controlplane/node.sh), pulled from no registry.
const LOCAL_BUSYBOX: &str = "pullsecret-injector.local/busybox:1";
/// Where the containers mount the image volume, and the file they print from it.
const MOUNT: &str = "/data";
const FILE: &str = "greeting";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The spec of pods whose container `app` mounts the image volume and is Ready only while
/// the volume's file holds `content`.
fn reader_spec(container_image: &str, reference: &str, content: &str) -> Value {
    let pull_policy = if container_image == LOCAL_BUSYBOX {
        "Never"
    } else {
        "IfNotPresent"
    };
    json!({
        "containers": [{
            "name": "app",
            "image": container_image,
            "imagePullPolicy": pull_policy,
            "volumeMounts": [{ "name": "data", "mountPath": MOUNT }],
            "readinessProbe": {
                "exec": {
                    "command": [
                        "/bin/sh",
                        "-c",
                        format!("[ \"$(cat {MOUNT}/{FILE})\" = {content} ]"),
                    ],
                },
                "periodSeconds": 1,
            },
        }],
        "volumes": [
            { "name": "scratch", "emptyDir": {} },
            {
                "name": "data",
                "image": { "reference": reference, "pullPolicy": "IfNotPresent" },
            },
        ],
    })
}

/// A bare pod reading the image volume.
fn reader_pod(
    name: &str,
    labels: &[(&str, &str)],
    container_image: &str,
    reference: &str,
    content: &str,
) -> String {
    let mut spec = reader_spec(container_image, reference, content);
    spec["restartPolicy"] = json!("Never");
    manifests::labelled(manifests::pod(name, spec), labels).to_string()
}

fn expect_file_read(s: &Suite, ns: &str, pod: &str, content: &str) -> Result<()> {
    poll(
        &format!("{ns}/{pod} to read {content:?} from its image volume (Ready)"),
        READY_TIMEOUT,
        || Ok(is_ready(&s.pod(ns, pod)?).then_some(())),
    )
}

fn expect_annotation(pod: &Value, expected: &str) -> Result<()> {
    let annotation = injected_annotation(pod);
    ensure!(
        annotation.as_deref() == Some(expected),
        "pod {} has the annotation {annotation:?}, expected {expected:?}",
        pod["metadata"]["name"]
    );
    Ok(())
}

/// A pod whose only private image is an image volume gets the registry's secret and reads the
/// volume's file; its opted-out twin fails on the volume's pull with the registry's
/// authorization error. A pod whose container image and image volume come from two registries
/// gets both secrets and runs.
pub fn private_image_volume(s: &Suite) -> Result<Outcome> {
    let data = Registry::start(s, "data")?;
    let content = format!("image-volume-content-{}", s.run_id);
    let reference = data.push_files(s, "team/models:1", &[(FILE, &content)])?;
    let apps = Registry::start(s, "apps")?;
    let app_image = apps.push_busybox("team/server:1")?;
    let ns = s.node_namespace("node-image-volume", &[])?;
    data.secret(s, &ns, "registry-data")?;
    apps.secret(s, &ns, "registry-apps")?;
    s.wait_cache_synced()?;

    s.kubectl_raw(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&reader_pod(
            "reader",
            &[],
            LOCAL_BUSYBOX,
            &reference,
            &content,
        )),
    )?;
    let running = wait_running(s, &ns, "reader")?;
    expect_secrets(&running, &["registry-data"])?;
    let lookup = reference.trim_end_matches(":1");
    expect_annotation(&running, &format!("registry-data ({lookup})"))?;
    expect_file_read(s, &ns, "reader", &content)?;

    s.kubectl_raw(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&reader_pod(
            "reader-opted-out",
            &[(INJECT_LABEL, "false")],
            LOCAL_BUSYBOX,
            &reference,
            &content,
        )),
    )?;
    let message = wait_pull_failure(s, &ns, "reader-opted-out", "app")?;
    ensure!(
        message.contains(NO_CREDENTIALS) && message.contains(&reference),
        "the opted-out pod did not fail on its image volume's pull for lack of credentials: {message}"
    );
    expect_secrets(&s.pod(&ns, "reader-opted-out")?, &[])?;

    s.kubectl_raw(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&reader_pod(
            "two-registries",
            &[],
            &app_image,
            &reference,
            &content,
        )),
    )?;
    let running = wait_running(s, &ns, "two-registries")?;
    expect_secrets(&running, &["registry-apps", "registry-data"])?;
    expect_file_read(s, &ns, "two-registries", &content)?;
    Ok(Outcome::Passed)
}

/// A Deployment whose image volume's secret appears after its pod got stuck: `explain pod/NAME`
/// names the volume and what recovery would do, and recovery evicts the pod; the replacement
/// gets the secret and reads the volume's file.
pub fn image_volume_recovery(s: &Suite) -> Result<Outcome> {
    let registry = Registry::start(s, "late-data")?;
    let content = format!("late-image-volume-content-{}", s.run_id);
    let reference = registry.push_files(s, "team/weights:2", &[(FILE, &content)])?;
    let ns = s.node_namespace("recover-image-volume", &[])?;
    s.kubectl_raw(
        &["apply", "-n", &ns, "-f", "-"],
        Some(
            &manifests::workload(
                "Deployment",
                "models",
                reader_spec(LOCAL_BUSYBOX, &reference, &content),
            )
            .to_string(),
        ),
    )?;
    let (stuck, _) = deployment_pod(s, &ns, "models", RECOVERY_TIMEOUT)?;
    let message = wait_pull_failure(s, &ns, &stuck, "app")?;
    ensure!(
        message.contains(NO_CREDENTIALS),
        "unexpected pull failure: {message}"
    );

    registry.secret(s, &ns, "late-data")?;
    s.wait_cache_synced()?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"))
        .args(["explain", "-n", &ns, &format!("pod/{stuck}")])
        .env("KUBECONFIG", s.kubeconfig_path())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success()
            && text.contains(&format!("failing to pull: {reference}"))
            && text.contains("would get now: late-data")
            && text.contains("recovery: evict")
            && text.contains(&format!("image volume \"data\": image \"{reference}\"")),
        "explain pod/{stuck} ({}): {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let _serve = recovering_serve(s, "recovery-image-volume")?;
    let pod = replacement(s, &ns, "models", &stuck, RECOVERY_TIMEOUT).map_err(|error| {
        // What the kubelet said about the replacement, for whoever reads the failure.
        let said = s
            .kubectl(&[
                "get",
                "events",
                "-n",
                &ns,
                "-o",
                "custom-columns=OBJ:.involvedObject.name,REASON:.reason,MSG:.message",
            ])
            .map(|out| out.stdout)
            .unwrap_or_default();
        error.context(format!("events of {ns}: {said}"))
    })?;
    ensure!(
        pull_secrets(&pod) == ["late-data"],
        "the replacement has {:?}",
        pull_secrets(&pod)
    );
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    expect_file_read(s, &ns, name, &content)?;
    let on_pod = event_messages(s, &ns, &stuck, "PullSecretRecovery")?;
    ensure!(
        on_pod
            .iter()
            .any(|m| m.contains("evicted") && m.contains("late-data")),
        "no recovery Event on the evicted pod: {on_pod:?}"
    );
    Ok(Outcome::Passed)
}
