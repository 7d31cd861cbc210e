//! The ClusterPullSecret controller: keeps a managed copy of each source Secret in every
//! namespace the resource selects, on the replica that holds the Lease.
//!
//! Which namespaces are selected comes from the same snapshot and the same code the admission
//! decision uses ([`ClusterState::selects`]), so what the webhook promises is what gets copied.
//! Copies carry `app.kubernetes.io/managed-by: pullsecret-injector` and the owner label; they
//! are updated in place (same UID), deleted when a namespace stops matching, and removed with
//! the resource through a finalizer. A Secret the controller does not manage is never touched:
//! it is reported as a conflict in the status, an Event and the log.
//!
//! Reconciles are triggered by the resource itself, by metadata-only watches of registry
//! Secrets (a source rotated, a copy edited or deleted) and by the snapshot publisher whenever
//! namespaces change (after the new snapshot is visible, so the reconcile sees them).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use crate::cluster::watch::ClusterCache;
use crate::controller::leader::{Elector, LeaseConfig};
use crate::kubelet::dockerconfig::{DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE};
use crate::state::crd::{
    ClusterPullSecret, ClusterPullSecretStatus, Condition, Conflict, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE, OWNER_LABEL,
};
use crate::state::snapshot::ClusterState;
use crate::telemetry::Metrics;

const FINALIZER: &str = "pullsecret-injector.io/copies";
const FIELD_MANAGER: &str = "pullsecret-injector";
/// Annotation on each copy naming the source it was made from.
const SOURCE_ANNOTATION: &str = "pullsecret-injector.io/source";
/// Status lists are capped so the object stays small in large clusters.
const STATUS_LIST_LIMIT: usize = 50;
/// Every resource is checked again this often even without a trigger.
const RESYNC: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

struct Context {
    client: Client,
    cache: Arc<ClusterCache>,
    metrics: Metrics,
    recorder: Recorder,
}

/// Runs the election and, while this replica leads, the controller; ends when `stop` turns
/// true (the leader then releases the Lease). Leadership is published on `leader_tx` for the
/// other writers of the Lease holder.
pub async fn run(
    client: Client,
    cache: Arc<ClusterCache>,
    metrics: Metrics,
    lease: LeaseConfig,
    leader_tx: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
) {
    let mut leader = leader_tx.subscribe();
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: Some(lease.identity.clone()),
    };
    let elector = Elector::new(client.clone(), lease);
    let election = tokio::spawn(elector.run(leader_tx, stop.clone(), metrics.clone()));
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        cache,
        metrics,
    });
    let mut stopping = stop.clone();
    loop {
        tokio::select! {
            result = leader.wait_for(|leading| *leading) => if result.is_err() { break },
            _ = stopping.wait_for(|stop| *stop) => break,
        }
        // Decisions about namespaces need the complete picture first.
        let mut changes = context.cache.namespace_changes();
        while !context.cache.is_synced() {
            let _ = tokio::time::timeout(Duration::from_millis(500), changes.changed()).await;
        }
        tracing::info!("leading: starting the ClusterPullSecret controller");
        let mut lost = leader.clone();
        run_controller(Arc::clone(&context), async move {
            let _ = lost.wait_for(|leading| !*leading).await;
        })
        .await;
        tracing::info!("ClusterPullSecret controller stopped");
    }
    let _ = election.await;
}

async fn run_controller(
    context: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let resources: Api<ClusterPullSecret> = Api::all(context.client.clone());
    let controller = Controller::new(resources, watcher::Config::default());
    let store = controller.store();
    let secret_triggers = |secret_type: &str| {
        let config = watcher::Config::default().fields(&format!("type={secret_type}"));
        watcher(
            Api::<PartialObjectMeta<Secret>>::all(context.client.clone()),
            config,
        )
        .default_backoff()
        .touched_objects()
    };
    let namespace_triggers = {
        let store = store.clone();
        stream::unfold(
            context.cache.namespace_changes(),
            |mut changes| async move {
                changes.changed().await.ok()?;
                Some(((), changes))
            },
        )
        .flat_map(move |()| stream::iter(all_refs(&store)))
    };
    controller
        .watches_stream(
            secret_triggers(DOCKER_CONFIG_JSON_TYPE),
            secret_mapper(store.clone()),
        )
        .watches_stream(
            secret_triggers(DOCKERCFG_TYPE),
            secret_mapper(store.clone()),
        )
        .reconcile_on(namespace_triggers)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile did not complete");
            }
        })
        .await;
}

fn all_refs(store: &Store<ClusterPullSecret>) -> Vec<ObjectRef<ClusterPullSecret>> {
    store
        .state()
        .iter()
        .map(|resource| ObjectRef::from_obj(&**resource))
        .collect()
}

/// A registry Secret changed: reconcile the resource owning it (a copy) and every resource
/// using it as source.
fn secret_mapper(
    store: Store<ClusterPullSecret>,
) -> impl Fn(PartialObjectMeta<Secret>) -> Vec<ObjectRef<ClusterPullSecret>> {
    move |secret| {
        let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
        let owner = secret
            .labels()
            .get(OWNER_LABEL)
            .filter(|_| is_managed(secret.labels()))
            .map(|owner| ObjectRef::new(owner));
        let users = store
            .state()
            .into_iter()
            .filter(|resource| {
                resource.spec.source.namespace == namespace && resource.spec.source.name == name
            })
            .map(|resource| ObjectRef::from_obj(&*resource));
        owner.into_iter().chain(users).collect()
    }
}

fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

fn error_policy(
    resource: Arc<ClusterPullSecret>,
    error: &ReconcileError,
    context: Arc<Context>,
) -> Action {
    context.metrics.observe_reconcile_error();
    tracing::warn!(cluster_pull_secret = %resource.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(
    resource: Arc<ClusterPullSecret>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let api: Api<ClusterPullSecret> = Api::all(context.client.clone());
    finalizer(&api, FINALIZER, resource, |event| async {
        match event {
            finalizer::Event::Apply(resource) => apply(&resource, &context).await,
            finalizer::Event::Cleanup(resource) => cleanup(&resource, &context).await,
        }
    })
    .await
    .or_else(|error| match error {
        // A second cleanup raced the first to the end: the object is gone, as wanted.
        finalizer::Error::RemoveFinalizer(kube::Error::Api(status)) if status.is_not_found() => {
            Ok(Action::await_change())
        }
        finalizer::Error::ApplyFailed(error) | finalizer::Error::CleanupFailed(error) => Err(error),
        other => Err(ReconcileError::Finalizer(other.to_string())),
    })
}

fn copies_selector(name: &str) -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{OWNER_LABEL}={name}")
}

/// The namespaces that should hold a copy, by the same rules the admission decision uses.
pub fn target_namespaces(state: &ClusterState, resource: &ClusterPullSecret) -> BTreeSet<String> {
    let selector = resource.spec.namespace_selector.clone().unwrap_or_default();
    let target = resource.target_name();
    state
        .existing_namespaces()
        .filter(|namespace| state.selects(&selector, namespace))
        .filter(|namespace| {
            !(*namespace == resource.spec.source.namespace && target == resource.spec.source.name)
        })
        .map(str::to_owned)
        .collect()
}

async fn apply(resource: &ClusterPullSecret, context: &Context) -> Result<Action, ReconcileError> {
    let name = resource.name_any();
    let target = resource.target_name();
    let state = context.cache.snapshot();
    let wanted = target_namespaces(&state, resource);
    let all_secrets: Api<Secret> = Api::all(context.client.clone());
    let copies = all_secrets
        .list(&ListParams::default().labels(&copies_selector(&name)))
        .await?;
    let mut existing: BTreeMap<String, Secret> = BTreeMap::new();
    for copy in copies {
        let namespace = copy.namespace().unwrap_or_default();
        if wanted.contains(&namespace) && copy.name_any() == target {
            existing.insert(namespace, copy);
        } else {
            delete_copy(context, &copy).await?;
        }
    }

    let source_api: Api<Secret> =
        Api::namespaced(context.client.clone(), &resource.spec.source.namespace);
    let source = source_api
        .get_opt(&resource.spec.source.name)
        .await?
        .filter(|secret| {
            matches!(
                secret.type_.as_deref(),
                Some(DOCKER_CONFIG_JSON_TYPE | DOCKERCFG_TYPE)
            )
        });
    let mut served = Vec::new();
    let mut conflicts = Vec::new();
    let ready = match &source {
        None => (
            false,
            "SourceNotFound",
            format!(
                "source Secret {}/{} does not exist or is not a registry-credential Secret",
                resource.spec.source.namespace, resource.spec.source.name
            ),
        ),
        Some(source) => {
            for namespace in &wanted {
                match existing.remove(namespace) {
                    Some(copy) => {
                        update_copy(context, resource, source, copy).await?;
                        served.push(namespace.clone());
                    }
                    None => match create_copy(context, resource, source, namespace).await? {
                        Created::Yes => served.push(namespace.clone()),
                        Created::Conflict(reason) => conflicts.push(Conflict {
                            namespace: namespace.clone(),
                            reason,
                        }),
                        Created::Skipped => {}
                    },
                }
            }
            if conflicts.is_empty() {
                (
                    true,
                    "Synced",
                    format!("copy {target} is up to date in {} namespaces", served.len()),
                )
            } else {
                (
                    false,
                    "Conflict",
                    format!(
                        "{} namespaces have a Secret named {target} that this resource does not manage",
                        conflicts.len()
                    ),
                )
            }
        }
    };
    report_new_conflicts(context, resource, &conflicts).await;
    update_status(context, resource, served, conflicts, ready).await?;
    context.metrics.observe_reconcile_completed();
    Ok(Action::requeue(RESYNC))
}

async fn cleanup(
    resource: &ClusterPullSecret,
    context: &Context,
) -> Result<Action, ReconcileError> {
    let all_secrets: Api<Secret> = Api::all(context.client.clone());
    let copies = all_secrets
        .list(&ListParams::default().labels(&copies_selector(&resource.name_any())))
        .await?;
    for copy in copies {
        delete_copy(context, &copy).await?;
    }
    tracing::info!(cluster_pull_secret = %resource.name_any(), "deleted; copies removed");
    Ok(Action::await_change())
}

/// The labels, annotation, type and data a copy must have.
fn desired_copy(resource: &ClusterPullSecret, source: &Secret, namespace: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(resource.target_name()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
                (OWNER_LABEL.to_owned(), resource.name_any()),
            ])),
            annotations: Some(BTreeMap::from([(
                SOURCE_ANNOTATION.to_owned(),
                format!(
                    "{}/{}",
                    resource.spec.source.namespace, resource.spec.source.name
                ),
            )])),
            ..ObjectMeta::default()
        },
        type_: source.type_.clone(),
        data: source.data.clone(),
        ..Secret::default()
    }
}

enum Created {
    Yes,
    Conflict(String),
    /// The namespace is going away, or some other transient refusal: tried again later.
    Skipped,
}

async fn create_copy(
    context: &Context,
    resource: &ClusterPullSecret,
    source: &Secret,
    namespace: &str,
) -> Result<Created, ReconcileError> {
    let api: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
    let copy = desired_copy(resource, source, namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api.create(&params, &copy).await {
        Ok(_) => {
            context.metrics.observe_write("create");
            tracing::info!(cluster_pull_secret = %resource.name_any(), namespace, secret = %resource.target_name(), "copy created");
            Ok(Created::Yes)
        }
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            let owner = api
                .get_opt(&resource.target_name())
                .await?
                .and_then(|secret| {
                    is_managed(secret.labels())
                        .then(|| secret.labels().get(OWNER_LABEL).cloned())
                        .flatten()
                });
            let reason = match owner {
                Some(owner) if owner == resource.name_any() => return Ok(Created::Skipped),
                Some(owner) => format!(
                    "Secret {} is managed for ClusterPullSecret {owner}",
                    resource.target_name()
                ),
                None => format!(
                    "Secret {} exists and is not managed by pullsecret-injector",
                    resource.target_name()
                ),
            };
            Ok(Created::Conflict(reason))
        }
        Err(kube::Error::Api(status)) if status.code == 403 || status.is_not_found() => {
            tracing::debug!(namespace, reason = %status.message, "copy not created (namespace going away?)");
            Ok(Created::Skipped)
        }
        Err(error) => Err(error.into()),
    }
}

/// Brings a copy in line with the source in place: same object, same UID.
async fn update_copy(
    context: &Context,
    resource: &ClusterPullSecret,
    source: &Secret,
    mut copy: Secret,
) -> Result<(), ReconcileError> {
    let namespace = copy.namespace().unwrap_or_default();
    let desired = desired_copy(resource, source, &namespace);
    let labels = copy.metadata.labels.get_or_insert_with(BTreeMap::new);
    let annotations = copy.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let metadata_current = desired
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && desired
            .metadata
            .annotations
            .iter()
            .flatten()
            .all(|(k, v)| annotations.get(k) == Some(v));
    if metadata_current && copy.data == desired.data && copy.type_ == desired.type_ {
        return Ok(());
    }
    labels.extend(desired.metadata.labels.unwrap_or_default());
    annotations.extend(desired.metadata.annotations.unwrap_or_default());
    copy.data = desired.data;
    copy.string_data = None;
    let api: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    api.replace(&copy.name_any(), &params, &copy).await?;
    context.metrics.observe_write("update");
    tracing::info!(cluster_pull_secret = %resource.name_any(), namespace, secret = %copy.name_any(), "copy updated in place");
    Ok(())
}

async fn delete_copy(context: &Context, copy: &Secret) -> Result<(), ReconcileError> {
    let namespace = copy.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    // Only the very object listed: never a Secret someone created since under that name.
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: copy.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&copy.name_any(), &params).await {
        Ok(_) => {
            context.metrics.observe_write("delete");
            tracing::info!(namespace, secret = %copy.name_any(), "copy deleted");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.is_not_found() || status.is_conflict() => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// An Event and a log line for each conflict the status does not list yet.
async fn report_new_conflicts(
    context: &Context,
    resource: &ClusterPullSecret,
    conflicts: &[Conflict],
) {
    let known: Vec<&Conflict> = resource
        .status
        .iter()
        .flat_map(|status| &status.conflicts)
        .collect();
    for conflict in conflicts.iter().filter(|c| !known.contains(c)) {
        tracing::warn!(
            cluster_pull_secret = %resource.name_any(),
            namespace = %conflict.namespace,
            reason = %conflict.reason,
            "conflict: not overwriting a Secret this resource does not manage"
        );
        let event = Event {
            type_: EventType::Warning,
            reason: "Conflict".to_owned(),
            note: Some(format!(
                "namespace {}: {}",
                conflict.namespace, conflict.reason
            )),
            action: "CopySecret".to_owned(),
            secondary: None,
        };
        if let Err(error) = context
            .recorder
            .publish(&event, &resource.object_ref(&()))
            .await
        {
            tracing::warn!(%error, "cannot publish the conflict Event");
        }
    }
}

async fn update_status(
    context: &Context,
    resource: &ClusterPullSecret,
    served: Vec<String>,
    mut conflicts: Vec<Conflict>,
    (ready, reason, message): (bool, &str, String),
) -> Result<(), ReconcileError> {
    let previous = resource.status.clone().unwrap_or_default();
    let status_text = if ready { "True" } else { "False" };
    let previous_ready = previous.conditions.iter().find(|c| c.type_ == "Ready");
    // The transition time moves only when the status does.
    let last_transition_time = previous_ready
        .filter(|c| c.status == status_text)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| {
            k8s_openapi::jiff::Timestamp::now()
                .round(k8s_openapi::jiff::Unit::Second)
                .map(|t| t.to_string())
                .unwrap_or_default()
        });
    let generation = resource.metadata.generation;
    let conflict_count = i32::try_from(conflicts.len()).unwrap_or(i32::MAX);
    conflicts.truncate(STATUS_LIST_LIMIT);
    let status = ClusterPullSecretStatus {
        observed_generation: generation,
        conditions: vec![Condition {
            type_: "Ready".to_owned(),
            status: status_text.to_owned(),
            reason: reason.to_owned(),
            message,
            last_transition_time,
            observed_generation: generation,
        }],
        namespace_count: i32::try_from(served.len()).unwrap_or(i32::MAX),
        namespaces: served.into_iter().take(STATUS_LIST_LIMIT).collect(),
        conflict_count,
        conflicts,
    };
    if status == previous {
        return Ok(());
    }
    let api: Api<ClusterPullSecret> = Api::all(context.client.clone());
    api.patch_status(
        &resource.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    context.metrics.observe_write("status");
    Ok(())
}
