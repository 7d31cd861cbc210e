use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::cluster::statefile::state_from_str;

use crate::admission::fixtures;

/// A dockerconfigjson Secret document with the given `auths` keys, as text.
fn secret(namespace: &str, name: &str, keys: &[&str]) -> String {
    fixtures::secret(namespace, name, keys).to_string()
}

fn namespace(name: &str, labels: Value) -> String {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": labels } })
        .to_string()
}

fn state(documents: &[String]) -> Arc<ClusterState> {
    state_from_str("test", &documents.join("\n")).expect("valid test state")
}

fn waiting(name: &str, image: &str, reason: &str) -> Value {
    json!({ "name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0,
            "state": { "waiting": { "reason": reason, "message": "..." } } })
}

fn running(name: &str, image: &str) -> Value {
    json!({ "name": name, "image": image, "imageID": "", "ready": true, "restartCount": 0,
            "state": { "running": { "startedAt": "2026-11-25T00:00:00Z" } } })
}

/// A pod in `namespace` with containers `images`, whose statuses are `statuses`.
fn pod(namespace: &str, images: &[&str], statuses: Vec<Value>, extra_meta: Value) -> Pod {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(index, image)| json!({ "name": format!("c{index}"), "image": image }))
        .collect();
    let mut metadata = json!({ "name": "web-1", "namespace": namespace, "uid": "uid-1" });
    if let (Some(meta), Some(extra)) = (metadata.as_object_mut(), extra_meta.as_object()) {
        meta.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "metadata": metadata,
        "spec": { "containers": containers },
        "status": { "phase": "Pending", "containerStatuses": statuses },
    }))
    .expect("pod")
}

fn replica_set_owner() -> Value {
    json!({ "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8",
                                  "uid": "rs-uid", "controller": true }] })
}

fn stuck(pod: &Pod) -> StuckPod {
    StuckPod::from_pod(pod).expect("the pod waits on a pull")
}

#[test]
fn only_pods_waiting_on_a_failed_pull_are_kept() {
    let image = "registry.example.com:5000/team/app:1";
    let failing = pod(
        "shop",
        &[image],
        vec![waiting("c0", image, "ImagePullBackOff")],
        json!({}),
    );
    let kept = stuck(&failing);
    assert_eq!(kept.failing, vec![image.to_owned()]);
    assert_eq!(
        (
            kept.namespace.as_str(),
            kept.name.as_str(),
            kept.uid.as_str()
        ),
        ("shop", "web-1", "uid-1")
    );

    let err = pod(
        "shop",
        &[image],
        vec![waiting("c0", image, "ErrImagePull")],
        json!({}),
    );
    assert!(StuckPod::from_pod(&err).is_some());
    let ok = pod("shop", &[image], vec![running("c0", image)], json!({}));
    assert!(
        StuckPod::from_pod(&ok).is_none(),
        "a running pod is not stuck"
    );
    let crash = pod(
        "shop",
        &[image],
        vec![waiting("c0", image, "CrashLoopBackOff")],
        json!({}),
    );
    assert!(StuckPod::from_pod(&crash).is_none(), "not a pull failure");
    let going = pod(
        "shop",
        &[image],
        vec![waiting("c0", image, "ImagePullBackOff")],
        json!({ "deletionTimestamp": "2026-11-25T00:00:00Z" }),
    );
    assert!(
        StuckPod::from_pod(&going).is_none(),
        "a terminating pod is left to go"
    );
}

#[test]
fn init_containers_waiting_on_a_pull_count() {
    let image = "registry.example.com/init:1";
    let mut value = serde_json::to_value(pod("shop", &["nginx"], vec![], json!({}))).unwrap();
    value["spec"]["initContainers"] = json!([{ "name": "init", "image": image }]);
    value["status"]["initContainerStatuses"] = json!([waiting("init", image, "ErrImagePull")]);
    let pod: Pod = serde_json::from_value(value).unwrap();
    let kept = stuck(&pod);
    assert_eq!(kept.failing, vec![image.to_owned()]);
    assert_eq!(
        kept.view.containers().count(),
        2,
        "init and regular containers both kept"
    );
}

#[test]
fn only_the_decisions_inputs_are_kept() {
    let image = "registry.example.com/app:1";
    let pod = pod(
        "shop",
        &[image],
        vec![waiting("c0", image, "ErrImagePull")],
        json!({ "labels": { "app": "web", INJECT_LABEL: "true" },
                "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "{...}" } }),
    );
    let kept = stuck(&pod);
    let labels = kept.view.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.len(), 1, "only the opt-out label: {labels:?}");
    assert!(kept.view.metadata.annotations.is_none());
}

#[test]
fn a_secret_created_after_the_pod_makes_an_owned_pod_evictable() {
    let image = "registry.example.com:5000/team/app:1";
    let stuck_pod = stuck(&pod(
        "shop",
        &[image, "nginx:1.25"],
        vec![
            waiting("c0", image, "ImagePullBackOff"),
            running("c1", "nginx:1.25"),
        ],
        replica_set_owner(),
    ));
    let before = state(&[namespace("shop", json!({}))]);
    assert_eq!(
        assess(&stuck_pod, &before, None),
        Verdict::Skip(SkipReason::NoNewSecret)
    );

    let after = state(&[
        namespace("shop", json!({})),
        secret("shop", "regcred", &["registry.example.com:5000"]),
    ]);
    assert_eq!(
        assess(&stuck_pod, &after, None),
        Verdict::Recover {
            secrets: vec!["regcred".into()],
            images: vec![image.into()],
            evict: true,
        }
    );
}

#[test]
fn bare_pods_and_unknown_owners_are_reported_not_evicted() {
    let image = "registry.example.com/app:1";
    let after = state(&[
        namespace("shop", json!({})),
        secret("shop", "regcred", &["registry.example.com"]),
    ]);
    let bare = stuck(&pod(
        "shop",
        &[image],
        vec![waiting("c0", image, "ErrImagePull")],
        json!({}),
    ));
    assert!(matches!(
        assess(&bare, &after, None),
        Verdict::Recover { evict: false, .. }
    ));

    let custom = stuck(&pod(
        "shop",
        &[image],
        vec![waiting("c0", image, "ErrImagePull")],
        json!({ "ownerReferences": [{ "apiVersion": "example.com/v1", "kind": "Runner", "name": "r",
                                      "uid": "u", "controller": true }] }),
    ));
    assert!(matches!(
        assess(&custom, &after, None),
        Verdict::Recover { evict: false, .. }
    ));

    for kind in RECREATING_OWNERS {
        let owned = stuck(&pod(
            "shop",
            &[image],
            vec![waiting("c0", image, "ErrImagePull")],
            json!({ "ownerReferences": [{ "apiVersion": "apps/v1", "kind": kind, "name": "o",
                                          "uid": "u", "controller": true }] }),
        ));
        assert!(
            matches!(
                assess(&owned, &after, None),
                Verdict::Recover { evict: true, .. }
            ),
            "{kind}"
        );
    }
}

#[test]
fn a_secret_the_pod_has_or_that_serves_only_a_working_image_does_not_count() {
    let failing = "registry.example.com/app:1";
    let working = "quay.io/team/tool:1";
    let has_it = {
        let mut value = serde_json::to_value(pod(
            "shop",
            &[failing],
            vec![waiting("c0", failing, "ErrImagePull")],
            replica_set_owner(),
        ))
        .unwrap();
        value["spec"]["imagePullSecrets"] = json!([{ "name": "regcred" }]);
        stuck(&serde_json::from_value(value).unwrap())
    };
    let with_regcred = state(&[
        namespace("shop", json!({})),
        secret("shop", "regcred", &["registry.example.com"]),
    ]);
    assert_eq!(
        assess(&has_it, &with_regcred, None),
        Verdict::Skip(SkipReason::NoNewSecret)
    );

    let other = stuck(&pod(
        "shop",
        &[failing, working],
        vec![
            waiting("c0", failing, "ErrImagePull"),
            running("c1", working),
        ],
        replica_set_owner(),
    ));
    let quay_only = state(&[
        namespace("shop", json!({})),
        secret("shop", "quay", &["quay.io/team"]),
    ]);
    assert_eq!(
        assess(&other, &quay_only, None),
        Verdict::Skip(SkipReason::NoNewSecret)
    );
}

#[test]
fn protected_and_opted_out_pods_are_left_alone() {
    let image = "registry.example.com/app:1";
    let documents = |ns: &str, labels: Value| {
        state(&[
            namespace(ns, labels),
            secret(ns, "regcred", &["registry.example.com"]),
        ])
    };
    let in_ns = |ns: &str, meta: Value| {
        stuck(&pod(
            ns,
            &[image],
            vec![waiting("c0", image, "ErrImagePull")],
            meta,
        ))
    };
    assert_eq!(
        assess(
            &in_ns("kube-system", replica_set_owner()),
            &documents("kube-system", json!({})),
            None
        ),
        Verdict::Skip(SkipReason::ProtectedNamespace)
    );
    assert_eq!(
        assess(
            &in_ns("injector", replica_set_owner()),
            &documents("injector", json!({})),
            Some("injector")
        ),
        Verdict::Skip(SkipReason::ProtectedNamespace)
    );
    assert_eq!(
        assess(
            &in_ns("shop", json!({ "labels": { INJECT_LABEL: "false" } })),
            &documents("shop", json!({})),
            None
        ),
        Verdict::Skip(SkipReason::OptedOut)
    );
    assert_eq!(
        assess(
            &in_ns("shop", replica_set_owner()),
            &documents("shop", json!({ INJECT_LABEL: "false" })),
            None
        ),
        Verdict::Skip(SkipReason::OptedOut)
    );
}

#[test]
fn a_cluster_pull_secret_selecting_the_namespace_counts_before_its_copy_exists() {
    let image = "registry.corp.example/base/app:1";
    let stuck_pod = stuck(&pod(
        "shop",
        &[image],
        vec![waiting("c0", image, "ErrImagePull")],
        replica_set_owner(),
    ));
    let cluster_pull_secret = json!({
        "apiVersion": "pullsecret-injector.io/v1alpha1", "kind": "ClusterPullSecret",
        "metadata": { "name": "corp" },
        "spec": { "source": { "namespace": "infra", "name": "corp-source" },
                  "namespaceSelector": { "matchLabels": { "corp": "true" } },
                  "targetName": "corp-pull" },
    })
    .to_string();
    let state = state(&[
        namespace("shop", json!({ "corp": "true" })),
        namespace("infra", json!({})),
        secret("infra", "corp-source", &["registry.corp.example"]),
        cluster_pull_secret,
    ]);
    assert_eq!(
        assess(&stuck_pod, &state, None),
        Verdict::Recover {
            secrets: vec!["corp-pull".into()],
            images: vec![image.into()],
            evict: true,
        }
    );
}

#[test]
fn the_failing_image_is_the_specs_not_the_status_one() {
    let old = "registry.example.com/app:1";
    let new = "quay.io/team/app:2";
    // The image was changed in place; the status still names the one that ran.
    let pod = pod(
        "shop",
        &[new],
        vec![waiting("c0", old, "ErrImagePull")],
        replica_set_owner(),
    );
    assert_eq!(stuck(&pod).failing, vec![new.to_owned()]);
}

#[test]
fn a_shadow_namespace_is_left_alone() {
    let image = "registry.example.com:5000/team/app:1";
    let state = state(&[
        namespace("quiet", json!({ "pullsecret-injector.io/mode": "shadow" })),
        secret("quiet", "reg", &["registry.example.com:5000"]),
        namespace("shop", json!({})),
        secret("shop", "reg", &["registry.example.com:5000"]),
    ]);
    for (ns, expected) in [
        ("quiet", Verdict::Skip(SkipReason::Shadow)),
        (
            "shop",
            Verdict::Recover {
                secrets: vec!["reg".to_owned()],
                images: vec![image.to_owned()],
                evict: true,
            },
        ),
    ] {
        let failing = pod(
            ns,
            &[image],
            vec![waiting("c0", image, "ErrImagePull")],
            replica_set_owner(),
        );
        assert_eq!(assess(&stuck(&failing), &state, None), expected, "{ns}");
    }
    assert_eq!(SkipReason::Shadow.label(), "shadow");
}

/// A Deployment's pod whose container `c0` (image `nginx:1.25`) mounts the image volume
/// `weights` and waits on a failed pull with the kubelet's `message`; `unmounted` is an image
/// volume no container mounts.
fn pod_with_image_volume(namespace: &str, message: &str) -> Pod {
    let mut value =
        serde_json::to_value(pod(namespace, &["nginx:1.25"], vec![], replica_set_owner()))
            .expect("pod");
    value["spec"]["containers"][0]["volumeMounts"] =
        json!([{ "name": "weights", "mountPath": "/models" }]);
    value["spec"]["volumes"] = json!([
        { "name": "scratch", "emptyDir": {} },
        { "name": "weights", "image": { "reference": "models.example.com:5000/llm:7", "pullPolicy": "IfNotPresent" } },
        { "name": "unmounted", "image": { "reference": "other.example.com/data:1" } },
    ]);
    value["status"]["containerStatuses"] = json!([{
        "name": "c0", "image": "nginx:1.25", "imageID": "", "ready": false, "restartCount": 0,
        "state": { "waiting": { "reason": "ImagePullBackOff", "message": message } },
    }]);
    serde_json::from_value(value).expect("pod")
}

#[test]
fn a_pod_stuck_on_its_image_volume_recovers_like_one_stuck_on_its_container() {
    // What the kubelet reports on the container when the pull of an image volume it mounts
    // fails: the volume's reference, as the pod named it and as containerd normalized it.
    let volume = "models.example.com:5000/llm:7";
    let message = format!(
        "Back-off pulling image \"{volume}\": ErrImagePull: failed to pull and unpack image \"{volume}\": failed to resolve image: authorization failed: no basic auth credentials"
    );
    let stuck_pod = stuck(&pod_with_image_volume("shop", &message));
    assert_eq!(stuck_pod.failing, vec![volume.to_owned()]);
    assert_eq!(
        stuck_pod
            .view
            .images()
            .map(|image| image.image)
            .collect::<Vec<_>>(),
        ["nginx:1.25", volume, "other.example.com/data:1"],
        "the decision sees the image volumes"
    );

    let before = state(&[namespace("shop", json!({}))]);
    assert_eq!(
        assess(&stuck_pod, &before, None),
        Verdict::Skip(SkipReason::NoNewSecret)
    );
    // A secret for an image that is not failing does not count.
    let unrelated = state(&[
        namespace("shop", json!({})),
        secret("shop", "hub", &["docker.io"]),
        secret("shop", "other", &["other.example.com"]),
    ]);
    assert_eq!(
        assess(&stuck_pod, &unrelated, None),
        Verdict::Skip(SkipReason::NoNewSecret)
    );
    let after = state(&[
        namespace("shop", json!({})),
        secret("shop", "models", &["models.example.com:5000"]),
    ]);
    assert_eq!(
        assess(&stuck_pod, &after, None),
        Verdict::Recover {
            secrets: vec!["models".into()],
            images: vec![volume.into()],
            evict: true,
        }
    );
}

#[test]
fn the_kubelets_message_tells_the_container_image_from_the_volume() {
    let volume = "models.example.com:5000/llm:7";
    let own = "failed to pull and unpack image \"docker.io/library/nginx:1.25\": not found";
    assert_eq!(
        stuck(&pod_with_image_volume("shop", own)).failing,
        ["nginx:1.25"]
    );
    // A message that names no image of the container: both may be the one.
    for message in [
        "",
        "Back-off pulling image",
        "\"unbalanced",
        "\"registry.example.com/else\"",
    ] {
        assert_eq!(
            stuck(&pod_with_image_volume("shop", message)).failing,
            ["nginx:1.25", volume],
            "{message:?}"
        );
    }
}
