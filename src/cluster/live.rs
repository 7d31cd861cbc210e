//! One namespace's cluster state read once from the live cluster (read-only), for `explain` on
//! an existing pod: the same `StateBuilder` the watches feed, so the answer is the webhook's.
//!
//! Read: the namespace, its Secrets of the two pull-secret types, its PullSecretRules, every
//! ClusterPullSecret and the source Secret of each (a custom resource whose CRD is not installed
//! counts as none; a source that cannot be read counts as missing, as in the webhook).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::kubelet::dockerconfig::{DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE};
use crate::state::crd::{ClusterPullSecret, PullSecretRule};
use crate::state::snapshot::{ClusterState, StateBuilder};

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
