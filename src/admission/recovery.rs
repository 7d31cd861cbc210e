//! What recovery would do with a pod stuck on a pull, given the cluster as it is now: the
//! webhook's own decision applied to an existing pod. Pure (no I/O, no clock); the controller
//! acts on it (`controller::pod_recovery`) and `explain pod/NAME` shows it.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;

use crate::admission::decision::decide;
use crate::admission::pod::{ContainerView, PodMeta, PodSpecView, PodView, SecretReference};
use crate::kubelet::reference::ImageRef;
use crate::state::snapshot::{ClusterState, INJECT_LABEL, Mode};

/// Owners that create a new pod when one is evicted.
pub const RECREATING_OWNERS: [&str; 4] = ["ReplicaSet", "StatefulSet", "DaemonSet", "Job"];

/// The controller that owns a pod (`ownerReferences` with `controller: true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    /// Whether evicting the pod makes this owner create a replacement.
    pub fn recreates(&self) -> bool {
        RECREATING_OWNERS.contains(&self.kind.as_str())
    }
}

/// What recovery keeps of a pod that waits on a failed pull: the decision's inputs (opt-out
/// label, containers, pull secrets) and the failing images. Nothing else of the pod is held.
#[derive(Debug, Clone)]
pub struct StuckPod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub owner: Option<Owner>,
    pub view: PodView,
    /// Images of the containers waiting on a failed pull.
    pub failing: Vec<String>,
}

impl StuckPod {
    /// `None` unless some container of the pod waits on a failed pull.
    pub fn from_pod(pod: &Pod) -> Option<StuckPod> {
        let spec = pod.spec.as_ref()?;
        let failing = failing_images(pod);
        if failing.is_empty() || pod.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let containers = |list: &[k8s_openapi::api::core::v1::Container]| {
            Some(
                list.iter()
                    .map(|c| ContainerView {
                        name: Some(c.name.clone()),
                        image: c.image.clone(),
                    })
                    .collect(),
            )
        };
        let opt_out = pod
            .labels()
            .get(INJECT_LABEL)
            .map(|value| [(INJECT_LABEL.to_owned(), value.clone())].into());
        let view = PodView {
            metadata: PodMeta {
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                labels: opt_out,
                ..PodMeta::default()
            },
            spec: Some(PodSpecView {
                init_containers: containers(spec.init_containers.as_deref().unwrap_or_default()),
                containers: containers(&spec.containers),
                ephemeral_containers: None,
                image_pull_secrets: spec.image_pull_secrets.as_ref().map(|list| {
                    list.iter()
                        .map(|reference| SecretReference {
                            name: Some(reference.name.clone()),
                        })
                        .collect()
                }),
            }),
        };
        let owner = pod
            .owner_references()
            .iter()
            .find(|reference| reference.controller == Some(true))
            .map(|reference| Owner {
                api_version: reference.api_version.clone(),
                kind: reference.kind.clone(),
                name: reference.name.clone(),
                uid: reference.uid.clone(),
            });
        Some(StuckPod {
            uid: pod.metadata.uid.clone()?,
            namespace: pod.namespace()?,
            name: pod.name_any(),
            owner,
            view,
            failing,
        })
    }
}

/// The images (the spec's) of the pod's containers, init containers too, that wait on a
/// failed pull.
pub fn failing_images(pod: &Pod) -> Vec<String> {
    let (Some(status), Some(spec)) = (pod.status.as_ref(), pod.spec.as_ref()) else {
        return Vec::new();
    };
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    // The image the kubelet is trying to pull is the spec's (a status may still name the
    // image the container ran before its image was changed).
    let spec_image = |name: &str| {
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .find(|container| container.name == name)
            .and_then(|container| container.image.clone())
    };
    statuses
        .filter(|status| waits_on_pull(status))
        .filter_map(|status| spec_image(&status.name))
        .collect()
}

fn waits_on_pull(status: &ContainerStatus) -> bool {
    let reason = status
        .state
        .as_ref()
        .and_then(|state| state.waiting.as_ref())
        .and_then(|waiting| waiting.reason.as_deref());
    matches!(reason, Some("ErrImagePull" | "ImagePullBackOff"))
}

/// Why a stuck pod is left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// kube-system or the injector's own namespace.
    ProtectedNamespace,
    /// The pod or its namespace carries `pullsecret-injector.io/inject: "false"`.
    OptedOut,
    /// No secret it lacks would serve a failing image.
    NoNewSecret,
    /// Its namespace is in shadow mode: a replacement would not get the secret either.
    Shadow,
}

impl SkipReason {
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::ProtectedNamespace => "protected_namespace",
            SkipReason::OptedOut => "opted_out",
            SkipReason::NoNewSecret => "no_new_secret",
            SkipReason::Shadow => "shadow",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::ProtectedNamespace => {
                "its namespace is kube-system or the injector's own, which are never touched"
            }
            SkipReason::OptedOut => "the pod or its namespace opted out of injection",
            SkipReason::NoNewSecret => {
                "no secret it lacks would serve a failing image: the fix is not a pull secret (or the secret is not there yet)"
            }
            SkipReason::Shadow => {
                "its namespace is in shadow mode: a replacement pod would not get the secret either"
            }
        }
    }
}

/// What recovery would do with a stuck pod, given the cluster as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Skip(SkipReason),
    /// `secrets` (lacking) would serve `images` (failing). `evict` when an owner recreates
    /// the pod; otherwise an Event tells how to recreate it.
    Recover {
        secrets: Vec<String>,
        images: Vec<String>,
        evict: bool,
    },
}

/// The pure part: the webhook's decision applied to an existing pod.
pub fn assess(pod: &StuckPod, state: &ClusterState, own_namespace: Option<&str>) -> Verdict {
    if pod.namespace == "kube-system" || own_namespace == Some(pod.namespace.as_str()) {
        return Verdict::Skip(SkipReason::ProtectedNamespace);
    }
    let decision = decide(&pod.view, &pod.namespace, state);
    if decision.opt_out.is_some() {
        return Verdict::Skip(SkipReason::OptedOut);
    }
    if decision.mode == Mode::Shadow {
        return Verdict::Skip(SkipReason::Shadow);
    }
    let failing: Vec<(&str, String)> = pod
        .failing
        .iter()
        .filter_map(|image| Some((image.as_str(), ImageRef::parse(image).ok()?.lookup_key())))
        .collect();
    let mut secrets = Vec::new();
    let mut images = Vec::new();
    for injection in &decision.injected {
        let served: Vec<&str> = failing
            .iter()
            .filter(|(_, lookup)| injection.registries.contains(lookup))
            .map(|(image, _)| *image)
            .collect();
        if served.is_empty() {
            continue;
        }
        secrets.push(injection.secret.clone());
        for image in served {
            if !images.iter().any(|known| known == image) {
                images.push(image.to_owned());
            }
        }
    }
    if secrets.is_empty() {
        return Verdict::Skip(SkipReason::NoNewSecret);
    }
    Verdict::Recover {
        secrets,
        images,
        evict: pod.owner.as_ref().is_some_and(Owner::recreates),
    }
}

#[cfg(test)]
mod tests;
