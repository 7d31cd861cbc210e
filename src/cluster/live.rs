//! Cluster state read once from the live cluster (read-only), fed to the same `StateBuilder` the
//! watches feed, so the answer is the webhook's: one namespace for `explain` on an existing pod,
//! the whole cluster and its workloads for `audit`.
//!
//! Read: the namespace, its Secrets of the two pull-secret types, its PullSecretRules, every
//! ClusterPullSecret and the source Secret of each (a custom resource whose CRD is not installed
//! counts as none; a source that cannot be read counts as missing, as in the webhook).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::admission::audit::{self, Finding, Workload, WorkloadRef};
use crate::admission::pod::PodView;
use crate::admission::recovery::failing_images;

use crate::kubelet::dockerconfig::{DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE};
use crate::state::crd::{ClusterPullSecret, PullSecretRule};
use crate::state::snapshot::{ClusterState, Copies, Mode, StateBuilder};

/// The pod and the state of its namespace, as the webhook would see them now.
pub async fn load_pod(
    client: &Client,
    namespace: &str,
    pod: &str,
    own_namespace: Option<&str>,
) -> Result<(Pod, Arc<ClusterState>), kube::Error> {
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get(pod)
        .await?;
    let state = load_namespace(client, namespace, own_namespace).await?;
    Ok((pod, state))
}

pub async fn load_namespace(
    client: &Client,
    namespace: &str,
    own_namespace: Option<&str>,
) -> Result<Arc<ClusterState>, kube::Error> {
    let mut builder = StateBuilder::new();
    builder.set_own_namespace(own_namespace);
    if let Some(ns) = Api::<Namespace>::all(client.clone())
        .get_opt(namespace)
        .await?
    {
        builder.apply_namespace(&ns);
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    for secret_type in [DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE] {
        let selector = ListParams::default().fields(&format!("type={secret_type}"));
        for secret in secrets.list(&selector).await? {
            builder.apply_secret(&secret);
        }
    }
    let rules = Api::<PullSecretRule>::namespaced(client.clone(), namespace);
    for rule in absent_as_empty(rules.list(&ListParams::default()).await)? {
        builder.apply_rule(&rule);
    }
    let resources = Api::<ClusterPullSecret>::all(client.clone());
    for resource in absent_as_empty(resources.list(&ListParams::default()).await)? {
        let source = &resource.spec.source;
        let api = Api::<Secret>::namespaced(client.clone(), &source.namespace);
        match api.get_opt(&source.name).await {
            Ok(Some(secret)) => builder.apply_secret(&secret),
            Ok(None) => {}
            // Another namespace's Secret the reader may not see: counted as missing.
            Err(kube::Error::Api(status)) if status.code == 403 => {}
            Err(error) => return Err(error),
        }
        if let Some(ns) = Api::<Namespace>::all(client.clone())
            .get_opt(&source.namespace)
            .await?
        {
            builder.apply_namespace(&ns);
        }
        tracing::debug!(resource = %resource.name_any(), "read ClusterPullSecret");
        builder.apply_cluster_pull_secret(&resource);
    }
    Ok(builder.snapshot())
}

/// The whole cluster's state, as the webhook's watches would hold it: every Namespace, every
/// Secret of the two pull-secret types, every PullSecretRule and ClusterPullSecret; `copies`
/// and `default_mode` as the server runs with them.
pub async fn load_cluster(
    client: &Client,
    own_namespace: Option<&str>,
    copies: Copies,
    default_mode: Mode,
) -> Result<Arc<ClusterState>, kube::Error> {
    let mut builder = StateBuilder::new();
    builder.set_own_namespace(own_namespace);
    builder.set_copies(copies);
    builder.set_default_mode(default_mode);
    for namespace in Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await?
    {
        builder.apply_namespace(&namespace);
    }
    let secrets = Api::<Secret>::all(client.clone());
    for secret_type in [DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE] {
        let selector = ListParams::default().fields(&format!("type={secret_type}"));
        for secret in secrets.list(&selector).await? {
            builder.apply_secret(&secret);
        }
    }
    let rules = Api::<PullSecretRule>::all(client.clone());
    for rule in absent_as_empty(rules.list(&ListParams::default()).await)? {
        builder.apply_rule(&rule);
    }
    let resources = Api::<ClusterPullSecret>::all(client.clone());
    for resource in absent_as_empty(resources.list(&ListParams::default()).await)? {
        builder.apply_cluster_pull_secret(&resource);
    }
    Ok(builder.snapshot())
}

/// One object with a pod template (or a Pod), reduced to what the audit reads as its page
/// arrives: the object itself is dropped, so a cluster's workloads are held as pod views, not
/// as JSON trees (at 10,000 pods, the difference is most of the controller's memory).
#[derive(Debug, Clone)]
pub struct LiveWorkload {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Owned by a controller (`ownerReferences` with `controller: true`).
    pub controlled: bool,
    /// The pod template (or the Pod) as the decision reads it; `None` for a pod that finished
    /// or is being deleted (it pulls nothing more) and for a template that cannot be read.
    pub pod: Option<PodView>,
    /// An existing Pod's images whose pulls are failing now.
    pub failing_pulls: Vec<String>,
}

/// Every Pod, Deployment, StatefulSet, DaemonSet, Job and CronJob of `namespace` (all
/// namespaces when `None`).
pub async fn list_workloads(
    client: &Client,
    namespace: Option<&str>,
) -> Result<Vec<LiveWorkload>, kube::Error> {
    let mut workloads = Vec::new();
    list_kind::<Pod>(client, namespace, &mut workloads).await?;
    list_kind::<Deployment>(client, namespace, &mut workloads).await?;
    list_kind::<StatefulSet>(client, namespace, &mut workloads).await?;
    list_kind::<DaemonSet>(client, namespace, &mut workloads).await?;
    list_kind::<Job>(client, namespace, &mut workloads).await?;
    list_kind::<CronJob>(client, namespace, &mut workloads).await?;
    Ok(workloads)
}

async fn list_kind<K>(
    client: &Client,
    namespace: Option<&str>,
    into: &mut Vec<LiveWorkload>,
) -> Result<(), kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    // In pages, so a cluster's pods are never all held twice (decoded and as JSON) at once.
    let mut params = ListParams::default().limit(LIST_PAGE);
    loop {
        let page = api.list(&params).await?;
        let next = page
            .metadata
            .continue_
            .clone()
            .filter(|token| !token.is_empty());
        for object in page {
            into.push(live_workload(object));
        }
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// Objects per list call of the audit (the page kube's watcher and client-go's reflector ask
/// for).
const LIST_PAGE: u32 = 500;

fn live_workload<K>(mut object: K) -> LiveWorkload
where
    K: Resource<DynamicType = ()> + k8s_openapi::Resource + Serialize,
{
    let kind = K::KIND;
    // Never read by the audit, and often the largest part of an object: managedFields, and a
    // workload's own annotations (kubectl's last-applied copy of it; its pods' are in the
    // template).
    object.meta_mut().managed_fields = None;
    if kind != "Pod" {
        object.meta_mut().annotations = None;
    }
    let meta: &ObjectMeta = object.meta();
    let (namespace, name, uid) = (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
        meta.uid.clone().unwrap_or_default(),
    );
    let controlled = meta
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true));
    let json = serde_json::to_value(&object).unwrap_or_default();
    let existing_pod = kind == "Pod";
    let pod = if existing_pod && !is_live_pod(&json) {
        None
    } else {
        template(kind, &json)
    };
    let failing_pulls = match &pod {
        Some(_) if existing_pod => Pod::deserialize(&json)
            .map(|pod| failing_images(&pod))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    LiveWorkload {
        kind,
        api_version: K::API_VERSION,
        namespace,
        name,
        uid,
        controlled,
        pod,
        failing_pulls,
    }
}

/// Every finding of every workload at `now`, most severe first. Pods that finished or are
/// being deleted pull nothing more and are left out.
pub fn audit_workloads(
    workloads: &[LiveWorkload],
    state: &ClusterState,
    now: Timestamp,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for workload in workloads {
        let Some(view) = &workload.pod else {
            continue;
        };
        findings.extend(audit::audit(
            &Workload {
                workload: WorkloadRef {
                    kind: workload.kind.to_owned(),
                    namespace: workload.namespace.clone(),
                    name: workload.name.clone(),
                },
                pod: view,
                existing_pod: workload.kind == "Pod",
                controlled: workload.controlled,
                failing_pulls: &workload.failing_pulls,
            },
            state,
            now,
        ));
    }
    findings.sort_by(|a, b| {
        (b.severity, &a.workload, a.kind, &a.image).cmp(&(
            a.severity,
            &b.workload,
            b.kind,
            &b.image,
        ))
    });
    findings
}

/// The pod template (or the Pod) as the decision reads it.
fn template(kind: &str, object: &serde_json::Value) -> Option<PodView> {
    let pointer = match kind {
        "Pod" => "",
        "CronJob" => "/spec/jobTemplate/spec/template",
        _ => "/spec/template",
    };
    PodView::deserialize(object.pointer(pointer)?).ok()
}

/// A pod that is still there to pull: not finished, not being deleted.
fn is_live_pod(pod: &serde_json::Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(|v| v.as_str());
    pod.pointer("/metadata/deletionTimestamp").is_none()
        && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// A custom resource whose CRD is not installed answers 404: none of them.
fn absent_as_empty<T: Clone>(
    result: Result<kube::core::ObjectList<T>, kube::Error>,
) -> Result<Vec<T>, kube::Error> {
    match result {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}
