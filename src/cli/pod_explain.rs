//! `explain -n NS pod/NAME`: an existing pod against the live cluster (read-only, KUBECONFIG or
//! in-cluster): per image what the pod has, what it would get now, and whether the recovery of
//! stuck pods would act on it and why not.

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use crate::admission::decision::{OptOut, decide};
use crate::admission::pod::{ImageUser, PodView};
use crate::admission::recovery::{StuckPod, Verdict, assess};
use crate::cli::explain::{ImageExplanation, describe_mode, explain_image};
use crate::state::snapshot::{ClusterState, Mode, ModeSource};

#[derive(Debug, Serialize)]
pub struct PodExplanation {
    pub namespace: String,
    pub pod: String,
    /// `Kind/name` of the controller that owns it, if any.
    pub owner: Option<String>,
    /// `spec.imagePullSecrets` as it is (it cannot change on an existing pod).
    pub has: Vec<String>,
    /// Why the webhook leaves this pod alone whatever its images, if so: `pod` (labelled
    /// `pullsecret-injector.io/inject: "false"`), `namespace` (the namespace is), `notServed`.
    pub opted_out: Option<&'static str>,
    /// The mode of the pod's namespace now (`shadow`: `would_get` is only recorded).
    pub mode: Mode,
    pub mode_source: ModeSource,
    /// What the webhook would append if the pod were created now.
    pub would_get: Vec<WouldGet>,
    /// The images of containers waiting on a failed pull (or of the image volumes they wait on).
    pub failing_images: Vec<String>,
    pub recovery: RecoveryAnswer,
    /// Every image the kubelet pulls for the pod: its containers', then its image volumes'.
    pub images: Vec<PodImageExplanation>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodImageExplanation {
    /// `{"container": NAME}` or `{"imageVolume": NAME}`.
    pub pulled_for: ImageUser<'static>,
    #[serde(flatten)]
    pub explanation: ImageExplanation,
}

#[derive(Debug, Serialize)]
pub struct WouldGet {
    pub secret: String,
    /// Lookup strings it was chosen for.
    pub registries: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RecoveryAnswer {
    /// `evict`, `report` (a bare pod gets an Event), `none`.
    pub action: &'static str,
    pub why: String,
}

/// Everything `explain` says about an existing pod, given the state of its namespace.
pub fn explain_pod(
    pod: &Pod,
    state: &Arc<ClusterState>,
    own_namespace: Option<&str>,
) -> PodExplanation {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let view: PodView = serde_json::to_value(pod)
        .ok()
        .and_then(|value| serde_json::from_value(value).ok())
        .unwrap_or_default();
    let decision = decide(&view, &namespace, state);
    let (mode, mode_source) = state.mode(&namespace);
    let stuck = StuckPod::from_pod(pod);
    let recovery = match &stuck {
        None => RecoveryAnswer {
            action: "none",
            why: "no container waits on a failed pull (ErrImagePull/ImagePullBackOff) of its image or of an image volume".to_owned(),
        },
        Some(stuck) => match assess(stuck, state, own_namespace) {
            Verdict::Skip(reason) => RecoveryAnswer {
                action: "none",
                why: reason.describe().to_owned(),
            },
            Verdict::Recover {
                secrets,
                images,
                evict: true,
            } => RecoveryAnswer {
                action: "evict",
                why: format!(
                    "{} would now be injected for {}; its owner recreates it (with --recover-stuck-pods on the controller's Lease holder)",
                    secrets.join(", "),
                    images.join(", ")
                ),
            },
            Verdict::Recover {
                secrets, images, ..
            } => RecoveryAnswer {
                action: "report",
                why: format!(
                    "{} would now be injected for {}, but no controller recreates this pod: it gets an Event; recreate it yourself",
                    secrets.join(", "),
                    images.join(", ")
                ),
            },
        },
    };
    PodExplanation {
        pod: pod.metadata.name.clone().unwrap_or_default(),
        owner: stuck
            .as_ref()
            .and_then(|s| s.owner.as_ref())
            .map(|owner| format!("{}/{}", owner.kind, owner.name)),
        has: view.pull_secret_names().map(str::to_owned).collect(),
        opted_out: decision.opt_out.map(|opt_out| match opt_out {
            OptOut::Pod => "pod",
            OptOut::Namespace => "namespace",
            OptOut::NotServed => "notServed",
        }),
        mode,
        mode_source,
        would_get: decision
            .injected
            .iter()
            .map(|injection| WouldGet {
                secret: injection.secret.clone(),
                registries: injection.registries.clone(),
            })
            .collect(),
        failing_images: stuck.map(|s| s.failing).unwrap_or_default(),
        recovery,
        images: view
            .images()
            .map(|image| {
                let mut explanation = explain_image(image.image, &namespace, state);
                explanation.pod_opted_out = decision.opt_out == Some(OptOut::Pod);
                explanation.withhold_if_nothing_is_injected();
                PodImageExplanation {
                    explanation,
                    pulled_for: image.user.into_owned(),
                }
            })
            .collect(),
        namespace,
    }
}

impl fmt::Display for PodExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "pod {}/{}", self.namespace, self.pod)?;
        if let Some(owner) = &self.owner {
            writeln!(f, "  owner: {owner}")?;
        }
        let list = |items: &[String]| {
            if items.is_empty() {
                "(none)".to_owned()
            } else {
                items.join(", ")
            }
        };
        writeln!(f, "  has imagePullSecrets: {}", list(&self.has))?;
        match self.opted_out {
            Some("pod") => writeln!(
                f,
                "  mode: none: the pod is labelled pullsecret-injector.io/inject=false: the webhook injects nothing"
            )?,
            Some("namespace") => writeln!(
                f,
                "  mode: none: the namespace is labelled pullsecret-injector.io/inject=false: the webhook injects nothing"
            )?,
            Some(_) => writeln!(
                f,
                "  mode: none: the server serves only other namespaces (--namespaces): the webhook injects nothing"
            )?,
            None => writeln!(f, "  mode: {}", describe_mode(self.mode, self.mode_source))?,
        }
        if self.would_get.is_empty() {
            writeln!(f, "  would get now: nothing more")?;
        }
        for item in &self.would_get {
            writeln!(
                f,
                "  would get now: {} (for {})",
                item.secret,
                item.registries.join(", ")
            )?;
        }
        writeln!(f, "  failing to pull: {}", list(&self.failing_images))?;
        writeln!(
            f,
            "  recovery: {}: {}",
            self.recovery.action, self.recovery.why
        )?;
        for image in &self.images {
            writeln!(f)?;
            write!(f, "{}: {}", image.pulled_for, image.explanation)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::statefile::state_from_str;

    const STATE: &str = r#"
apiVersion: v1
kind: Secret
type: kubernetes.io/dockerconfigjson
metadata: {namespace: shop, name: models}
stringData: {.dockerconfigjson: '{"auths": {"models.example.com:5000": {}}}'}
"#;

    #[test]
    fn an_image_volume_is_listed_and_explained_like_a_container_image() {
        let state = state_from_str("test", STATE).expect("state");
        let volume = "models.example.com:5000/llm:7";
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "server", "namespace": "shop", "uid": "u",
                          "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                "name": "server-1", "uid": "rs", "controller": true }] },
            "spec": {
                "containers": [{ "name": "app", "image": "nginx:1.25",
                                 "volumeMounts": [{ "name": "weights", "mountPath": "/models" }] }],
                "volumes": [{ "name": "weights", "image": { "reference": volume, "pullPolicy": "Always" } }],
            },
            "status": { "containerStatuses": [{
                "name": "app", "image": "nginx:1.25", "imageID": "", "ready": false, "restartCount": 0,
                "state": { "waiting": { "reason": "ErrImagePull",
                                        "message": format!("failed to pull and unpack image \"{volume}\": no basic auth credentials") } },
            }] },
        }))
        .expect("pod");
        let explained = explain_pod(&pod, &state, None);
        assert_eq!(explained.failing_images, [volume]);
        assert_eq!(explained.would_get[0].secret, "models");
        assert_eq!(
            explained.would_get[0].registries,
            ["models.example.com:5000/llm"]
        );
        assert_eq!(explained.recovery.action, "evict");
        let listed: Vec<(String, &str)> = explained
            .images
            .iter()
            .map(|image| {
                (
                    image.pulled_for.to_string(),
                    image.explanation.image.as_str(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("container \"app\"".to_owned(), "nginx:1.25"),
                ("image volume \"weights\"".to_owned(), volume),
            ]
        );
        assert_eq!(explained.images[1].explanation.result, ["models"]);
        let text = explained.to_string();
        assert!(
            text.contains(&format!(
                "image volume \"weights\": image \"{volume}\" in namespace \"shop\""
            )),
            "{text}"
        );
        let json = serde_json::to_value(&explained).expect("json");
        assert_eq!(
            json["images"][1]["pulledFor"],
            json!({ "imageVolume": "weights" })
        );
        assert_eq!(json["images"][1]["image"], volume);
    }
}
