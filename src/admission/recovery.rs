//! What recovery would do with a pod stuck on a pull, given the cluster as it is now: the
//! webhook's own decision applied to an existing pod. Pure (no I/O, no clock); the controller
//! acts on it (`controller::pod_recovery`) and `explain pod/NAME` shows it.

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodSpec};
use kube::ResourceExt;

use crate::admission::decision::decide;
use crate::admission::pod::{
    ContainerView, ImageVolumeView, PodMeta, PodSpecView, PodView, SecretReference, VolumeView,
};
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
/// label, containers, image volumes, pull secrets) and the failing images. Nothing else of the
/// pod is held.
#[derive(Debug, Clone)]
pub struct StuckPod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub owner: Option<Owner>,
    pub view: PodView,
    /// Images the containers waiting on a failed pull wait on: their own, or their image
    /// volumes'.
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
        let image_volumes = image_volumes(spec);
        let containers = |list: &[Container]| {
            Some(
                list.iter()
                    .map(|c| ContainerView {
                        name: Some(c.name.clone()),
                        image: c.image.clone(),
                    })
                    .collect(),
            )
        };
        let volumes = image_volumes
            .iter()
            .map(|(name, reference)| VolumeView {
                name: Some((*name).to_owned()),
                image: Some(ImageVolumeView {
                    reference: Some((*reference).to_owned()),
                }),
            })
            .collect();
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
                volumes: Some(volumes),
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

/// The images (the spec's) that the pod's containers, init containers too, wait on after a
/// failed pull: their own, or their image volumes'.
pub fn failing_images(pod: &Pod) -> Vec<String> {
    let (Some(status), Some(spec)) = (pod.status.as_ref(), pod.spec.as_ref()) else {
        return Vec::new();
    };
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    // The images the kubelet is trying to pull are the spec's (a status may still name the
    // image the container ran before its image was changed).
    let spec_container = |name: &str| {
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .find(|container| container.name == name)
    };
    let image_volumes = image_volumes(spec);
    let mut failing: Vec<String> = Vec::new();
    for (status, message) in statuses.filter_map(|status| Some((status, waits_on_pull(status)?))) {
        let Some(container) = spec_container(&status.name) else {
            continue;
        };
        for image in waited_on(container, &image_volumes, message) {
            if !failing.iter().any(|known| known == image) {
                failing.push(image.to_owned());
            }
        }
    }
    failing
}

/// The pod's image volumes with a reference: (volume name, reference).
fn image_volumes(spec: &PodSpec) -> Vec<(&str, &str)> {
    spec.volumes
        .iter()
        .flatten()
        .filter_map(|volume| {
            let reference = volume.image.as_ref()?.reference.as_deref()?;
            Some((volume.name.as_str(), reference)).filter(|_| !reference.is_empty())
        })
        .collect()
}

/// The kubelet's message when the container waits on a failed pull.
fn waits_on_pull(status: &ContainerStatus) -> Option<&str> {
    let waiting = status.state.as_ref()?.waiting.as_ref()?;
    matches!(
        waiting.reason.as_deref(),
        Some("ErrImagePull" | "ImagePullBackOff")
    )
    .then(|| waiting.message.as_deref().unwrap_or_default())
}

/// What a container waiting on a failed pull waits on: its own image or that of an image volume
/// it mounts (the kubelet pulls those first and reports their failure as the container's). The
/// kubelet's message quotes the image it failed on, normalized or not; when it quotes none of
/// them, all count.
fn waited_on<'a>(
    container: &'a Container,
    volumes: &[(&str, &'a str)],
    message: &str,
) -> Vec<&'a str> {
    let mounted = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|mount| volumes.iter().find(|(name, _)| *name == mount.name))
        .map(|(_, reference)| *reference);
    let candidates: Vec<&str> = container
        .image
        .as_deref()
        .into_iter()
        .chain(mounted)
        .collect();
    let lookup = |image: &str| ImageRef::parse(image).ok().map(|r| r.lookup_key());
    // Quoted text sits between the odd and even quotes.
    let quoted: Vec<String> = message
        .split('"')
        .skip(1)
        .step_by(2)
        .filter_map(lookup)
        .collect();
    let named: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|image| lookup(image).is_some_and(|key| quoted.contains(&key)))
        .collect();
    if named.is_empty() { candidates } else { named }
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
