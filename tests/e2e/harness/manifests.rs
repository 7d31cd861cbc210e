//! The manifests the scenarios apply, built as JSON (which kubectl reads as YAML): the
//! envelope of each kind is written here once, and a scenario passes only its pod spec, names
//! and labels.

use serde_json::{Value, json};

/// A container `name` running `image`.
pub fn container(name: &str, image: &str) -> Value {
    json!({ "name": name, "image": image })
}

/// A bare Pod `name` with `spec`, in the namespace of the command that applies it.
pub fn pod(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": spec,
    })
}

/// A workload `name` of `kind` (Deployment, DaemonSet, StatefulSet, Job, CronJob) whose pods
/// have `pod_spec` and the label `app: name`.
pub fn workload(kind: &str, name: &str, pod_spec: Value) -> Value {
    let template = json!({ "metadata": { "labels": { "app": name } }, "spec": pod_spec });
    let selector = json!({ "matchLabels": { "app": name } });
    let (api, spec) = match kind {
        "Deployment" | "DaemonSet" => (
            "apps/v1",
            json!({ "selector": selector, "template": template }),
        ),
        "StatefulSet" => (
            "apps/v1",
            json!({ "serviceName": name, "selector": selector, "template": template }),
        ),
        "Job" => ("batch/v1", json!({ "template": template })),
        "CronJob" => (
            "batch/v1",
            json!({
                "schedule": "0 0 1 1 *",
                "jobTemplate": { "spec": { "template": template } },
            }),
        ),
        other => panic!("no manifest for {other}"),
    };
    json!({
        "apiVersion": api,
        "kind": kind,
        "metadata": { "name": name },
        "spec": spec,
    })
}

/// `manifest` placed in namespace `ns`.
pub fn in_namespace(mut manifest: Value, ns: &str) -> Value {
    manifest["metadata"]["namespace"] = json!(ns);
    manifest
}

/// `manifest` with these labels on the object itself.
pub fn labelled(mut manifest: Value, labels: &[(&str, &str)]) -> Value {
    for (key, value) in labels {
        manifest["metadata"]["labels"][*key] = json!(value);
    }
    manifest
}
