//! The ClusterPullSecret controller: keeps a managed copy of each source Secret in every
//! namespace the resource selects, on the replica that holds the Lease.
//!
//! Which namespaces are selected comes from the same snapshot and the same code the admission
//! decision uses ([`ClusterState::selects`]), so what the webhook promises is what gets copied.
//! Copies carry `app.kubernetes.io/managed-by: pullsecret-injector` and the owner label; they
//! are updated in place (same UID) — or replaced, delete then create, when the source's type
//! changed, which the API server refuses in place — deleted when a namespace stops matching,
//! and removed with the resource through a finalizer. A Secret the controller does not manage
//! is never touched: it is reported as a conflict in the status, an Event and the log.
//!
//! Each namespace is handled on its own: a namespace whose copy cannot be written (a
//! ResourceQuota, an admission policy, a namespace being deleted) never keeps the others from
//! theirs. Every such failure is counted, listed in the status (Ready=False, reason
//! CopyFailed) with an Event, and retried with exponential backoff.
//!
//! Deleting a copy because its namespace no longer matches is the one decision the cache could
//! get wrong: it is deferred while the namespace watch is out of sync, and otherwise confirmed
//! with a fresh read of the namespace first.
//!
//! Everything a reconcile writes happens inside the current leadership term
//! ([`Leadership::while_leading`]): when the term ends the reconcile is dropped, whatever call
//! it was making. Status writes carry the resource's resourceVersion, so a stale view never
//! overwrites a newer status. On shutdown the Lease is released only once every reconcile has
//! finished.
//!
//! In namespaced mode (`--namespaces`) copies are made, listed and deleted only in the listed
//! namespaces, a source outside them is never read, and the status says so.
//!
//! Reconciles are triggered by the resource itself, by metadata-only watches of registry
//! Secrets (a source rotated, a copy edited or deleted) and by the snapshot publisher whenever
//! namespaces change (after the new snapshot is visible, so the reconcile sees them).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Secret};
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

use crate::cluster::watch::{ClusterCache, WatchKind};
use crate::controller::credential_provider::Plugins;
use crate::controller::leader::{Elector, Leadership, LeaseConfig, Term};
use crate::controller::minting::{self, MINTED_FOR_LABEL, MintReport, MintState};
use crate::controller::rate_limit::RateLimiter;
use crate::kubelet::dockerconfig::{DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE};
use crate::state::crd::{
    ClusterPullSecret, ClusterPullSecretStatus, Condition, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    NamespaceProblem, OWNER_LABEL,
};
use crate::state::snapshot::{ClusterState, MODE_LABEL, Mode};
use crate::telemetry::Metrics;

mod copies;
mod status;
mod targets;

use crate::controller::backoff::retry_delay;
use copies::{
    Copied, Failed, create_copy, delete_copy, list_copies, list_minted, remove_stale_minted,
    update_copy,
};
use status::{Report, minted_readiness, report_new_problems, update_status};
pub use targets::target_namespaces;
use targets::{copies_selector, may_still_be_selected};

const FINALIZER: &str = "pullsecret-injector.io/copies";
const FIELD_MANAGER: &str = "pullsecret-injector";
/// Annotation on each copy naming the source it was made from.
const SOURCE_ANNOTATION: &str = "pullsecret-injector.io/source";
/// Status lists are capped so the object stays small in large clusters.
const STATUS_LIST_LIMIT: usize = 50;
/// At most this many Events per reconcile (one per new conflict or failure); the log has all.
const EVENT_LIMIT: usize = 10;
/// Every resource is checked again this often even without a trigger.
const RESYNC: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("this replica's leadership term ended")]
    NotLeader,
}

struct Context {
    client: Client,
    cache: Arc<ClusterCache>,
    metrics: Metrics,
    recorder: Recorder,
    leadership: Leadership,
    /// The credential provider plugins a ClusterPullSecret may mint its source with.
    plugins: Plugins,
    /// Consecutive reconciles of each resource that left it not Ready.
    retries: Mutex<HashMap<String, u32>>,
    /// Paces the calls made once per namespace (copies written, deleted, namespaces re-read).
    limiter: RateLimiter,
}

impl Context {
    /// When to reconcile `name` again: after the resync period once it is Ready, else after
    /// an exponential backoff.
    fn next_attempt(&self, name: &str, ready: bool) -> Duration {
        let mut retries = self
            .retries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if ready {
            retries.remove(name);
            return RESYNC;
        }
        let attempt = retries.entry(name.to_owned()).or_insert(0);
        *attempt = attempt.saturating_add(1);
        retry_delay(*attempt)
    }
}

/// What reconciles run with besides the cluster: the credential provider plugins a
/// ClusterPullSecret may mint its source with, and the pace of the per-namespace calls.
pub struct Options {
    pub plugins: Plugins,
    pub limiter: RateLimiter,
}

/// Runs the election and, while this replica leads, the controller; ends when `stop` turns
/// true. The Lease is released only after every reconcile has finished.
pub async fn run(
    client: Client,
    cache: Arc<ClusterCache>,
    metrics: Metrics,
    lease: LeaseConfig,
    options: Options,
    terms: watch::Sender<Term>,
    stop: watch::Receiver<bool>,
) {
    let Options { plugins, limiter } = options;
    let term = terms.subscribe();
    let (release, released) = watch::channel(false);
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: Some(lease.identity.clone()),
    };
    let elector = Elector::new(client.clone(), lease);
    let election = tokio::spawn(elector.run(terms, released, metrics.clone()));
    let mut leadership = Leadership::new(term);
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        cache,
        metrics,
        leadership: leadership.clone(),
        plugins,
        retries: Mutex::default(),
        limiter,
    });
    let mut stopping = stop.clone();
    loop {
        tokio::select! {
            biased;
            _ = stopping.wait_for(|stop| *stop) => break,
            acquired = leadership.acquired() => if !acquired { break },
        }
        // Decisions about namespaces need the complete picture first.
        let synced = async {
            let mut changes = context.cache.namespace_changes();
            while !context.cache.is_synced() {
                let _ = tokio::time::timeout(Duration::from_millis(500), changes.changed()).await;
            }
        };
        tokio::select! {
            () = synced => {}
            () = term_or_stop(&leadership, &stop) => continue,
        }
        tracing::info!("leading: starting the ClusterPullSecret controller");
        // Returns once every reconcile has finished (or was dropped with the term).
        run_controller(Arc::clone(&context), term_or_stop(&leadership, &stop)).await;
        tracing::info!("ClusterPullSecret controller stopped");
    }
    // Nothing writes any more: another replica may take over at once.
    let _ = release.send(true);
    let _ = election.await;
}

/// Returns when this replica's term ends or the process stops.
fn term_or_stop(
    leadership: &Leadership,
    stop: &watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
    let (leadership, mut stop) = (leadership.clone(), stop.clone());
    async move {
        tokio::select! {
            () = leadership.lost() => {}
            _ = stop.wait_for(|stop| *stop) => {}
        }
    }
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
        let watches = context
            .cache
            .scope()
            .apis::<PartialObjectMeta<Secret>>(&context.client)
            .into_iter()
            .map(move |(_, secrets)| {
                watcher(secrets, config.clone())
                    .default_backoff()
                    .touched_objects()
                    .boxed()
            });
        stream::select_all(watches)
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
    let shutdown = shutdown.shared();
    let running = controller
        .watches_stream(
            secret_triggers(DOCKER_CONFIG_JSON_TYPE),
            secret_mapper(store.clone()),
        )
        .watches_stream(
            secret_triggers(DOCKERCFG_TYPE),
            secret_mapper(store.clone()),
        )
        .reconcile_on(namespace_triggers)
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile did not complete");
            }
        });
    // kube holds every reconcile until its store has listed, and a graceful shutdown before
    // then never completes (the list it waits for was stopped): with no reconcile to wait for,
    // the controller is simply dropped.
    let never_listed = async {
        shutdown.await;
        if store.wait_until_ready().now_or_never().is_some() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = running => {}
        () = never_listed => {}
    }
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
    if let ReconcileError::NotLeader = error {
        return Action::await_change();
    }
    context.metrics.observe_reconcile_error();
    let name = resource.name_any();
    let delay = context.next_attempt(&name, false);
    tracing::warn!(cluster_pull_secret = %name, %error, retry_in = ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

/// Everything a reconcile does happens within the current term: when it ends, the reconcile
/// is dropped with whatever call it was making.
async fn reconcile(
    resource: Arc<ClusterPullSecret>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let leadership = context.leadership.clone();
    leadership
        .while_leading(reconcile_leading(resource, context))
        .await
        .unwrap_or(Err(ReconcileError::NotLeader))
}

async fn reconcile_leading(
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

async fn apply(resource: &ClusterPullSecret, context: &Context) -> Result<Action, ReconcileError> {
    let name = resource.name_any();
    let target = resource.target_name();
    let state = context.cache.snapshot();
    let scope = context.cache.scope();
    let mut report = Report {
        namespaces_in_sync: context.cache.is_in_sync(WatchKind::Namespaces),
        namespaced: scope.is_namespaced(),
        source_out_of_scope: !scope.contains(&resource.spec.source.namespace),
        ..Report::default()
    };

    // In namespaced mode the source's namespace may be out of reach: nothing is minted there.
    let minted = match &resource.spec.credential_provider {
        Some(block) if !report.source_out_of_scope => Some(
            minting::refresh(
                &context.client,
                &context.recorder,
                &context.metrics,
                &context.plugins,
                resource,
                block,
                state.own_namespace(),
            )
            .await?,
        ),
        _ => None,
    };
    remove_stale_minted(context, resource, &mut report).await?;
    // A Secret at the source that is not this resource's to copy takes every copy with it.
    let withdrawn = minted
        .as_ref()
        .is_some_and(|minted| minted.state.withdraws_copies());
    let mut wanted = if withdrawn {
        BTreeSet::new()
    } else {
        target_namespaces(&state, resource)
    };
    wanted.retain(|namespace| scope.contains(namespace));

    let copies = list_copies(context, &name).await?;
    let mut existing: BTreeMap<String, Secret> = BTreeMap::new();
    for copy in copies {
        let namespace = copy.namespace().unwrap_or_default();
        if copy.name_any() == target && wanted.contains(&namespace) {
            existing.insert(namespace, copy);
            continue;
        }
        // A copy under an old targetName, or of a withdrawn source, goes whatever the cache
        // says; one in a namespace that no longer matches only once that is certain.
        if copy.name_any() == target
            && !withdrawn
            && may_still_be_selected(
                context,
                &state,
                resource,
                &namespace,
                report.namespaces_in_sync,
            )
            .await
        {
            report.deferred.push(namespace);
            continue;
        }
        if let Err(failed) = delete_copy(context, &copy).await {
            report.failed(context, resource, &namespace, failed);
        }
    }
    if !report.deferred.is_empty() {
        tracing::warn!(
            cluster_pull_secret = %name,
            namespaces = ?report.deferred,
            "not deleting copies while the namespace cache cannot confirm their namespaces stopped matching"
        );
    }

    let source_api: Api<Secret> =
        Api::namespaced(context.client.clone(), &resource.spec.source.namespace);
    let source = if report.source_out_of_scope || withdrawn {
        None
    } else {
        source_api.get_opt(&resource.spec.source.name).await?
    };
    let source = source.filter(|secret| {
        matches!(
            secret.type_.as_deref(),
            Some(DOCKER_CONFIG_JSON_TYPE | DOCKERCFG_TYPE)
        )
    });
    if let Some(source) = &source {
        for namespace in &wanted {
            let copied = match existing.remove(namespace) {
                Some(copy) => update_copy(context, resource, source, copy)
                    .await
                    .map(|()| Copied::Served),
                None => create_copy(context, resource, source, namespace).await,
            };
            match copied {
                Ok(Copied::Served) => report.served.push(namespace.clone()),
                Ok(Copied::Conflict(reason)) => report.conflicts.push(NamespaceProblem {
                    namespace: namespace.clone(),
                    reason,
                }),
                Err(failed) => report.failed(context, resource, namespace, failed),
            }
        }
    }
    let ready = match &minted {
        Some(minted) => {
            minted_readiness(minted).unwrap_or_else(|| report.readiness(resource, source.is_some()))
        }
        None => report.readiness(resource, source.is_some()),
    };
    report_new_problems(context, resource, &report).await;
    update_status(context, resource, report, ready.clone(), minted.as_ref()).await?;
    context.metrics.observe_reconcile_completed();
    let next = context.next_attempt(&name, ready.0);
    Ok(Action::requeue(
        minted.map_or(next, |minted| next.min(minted.next)),
    ))
}

async fn cleanup(
    resource: &ClusterPullSecret,
    context: &Context,
) -> Result<Action, ReconcileError> {
    let copies = list_copies(context, &resource.name_any()).await?;
    let mut report = Report::default();
    for copy in copies {
        if let Err(failed) = delete_copy(context, &copy).await {
            report.failed(
                context,
                resource,
                &copy.namespace().unwrap_or_default(),
                failed,
            );
        }
    }
    // Every credential this resource minted goes with it, wherever it was minted (in the
    // namespaces this injector serves: in namespaced mode nothing was minted elsewhere).
    for minted in list_minted(context, resource).await? {
        if let Err(failed) = delete_copy(context, &minted).await {
            report.failed(
                context,
                resource,
                &minted.namespace().unwrap_or_default(),
                failed,
            );
        }
    }
    context
        .metrics
        .set_credential_expiry(&resource.name_any(), None);
    if !report.failures.is_empty() {
        // Keeps the finalizer: the resource goes once every copy has.
        report_new_problems(context, resource, &report).await;
        let delay = context.next_attempt(&resource.name_any(), false);
        return Ok(Action::requeue(delay));
    }
    context.next_attempt(&resource.name_any(), true);
    let scope = context.cache.scope();
    match scope.namespaces() {
        None => {
            tracing::info!(cluster_pull_secret = %resource.name_any(), "deleted; copies and minted credentials removed");
        }
        // Copies made while this injector served more namespaces are beyond its reach now.
        Some(served) => {
            tracing::warn!(cluster_pull_secret = %resource.name_any(), served = ?served, "deleted; copies and minted credentials removed in the served namespaces only: any outside them (made before a change to namespaced mode) are left, labelled app.kubernetes.io/managed-by=pullsecret-injector");
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::copies::CopyFailure;
    use super::status::status_patch;
    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code,
            message: message.to_owned(),
            ..Status::default()
        }))
    }

    /// What the API server answers, and what the status says, without its message.
    #[test]
    fn failures_are_classified_without_repeating_the_api_servers_message() {
        let cases = [
            (
                api_error(
                    403,
                    "secrets \"corp\" is forbidden: exceeded quota: q, requested: secrets=1",
                ),
                CopyFailure::Quota,
            ),
            (
                api_error(
                    403,
                    "secrets \"corp\" is forbidden: unable to create new content in namespace x because it is being terminated",
                ),
                CopyFailure::Terminating,
            ),
            (
                api_error(403, "User cannot create secrets"),
                CopyFailure::Forbidden,
            ),
            (
                api_error(404, "namespaces \"x\" not found"),
                CopyFailure::NamespaceNotFound,
            ),
            (
                api_error(409, "the object has been modified"),
                CopyFailure::Conflict,
            ),
            (
                api_error(
                    422,
                    "ValidatingAdmissionPolicy denied request: password e2e-S3cr3t",
                ),
                CopyFailure::Invalid,
            ),
            (
                api_error(500, "etcdserver: leader changed"),
                CopyFailure::Other(Some(500)),
            ),
        ];
        for (error, expected) in cases {
            let failure = CopyFailure::classify(&error);
            assert_eq!(failure, expected, "{error}");
            let reason = Failed {
                action: "create",
                failure,
            }
            .reason();
            assert!(reason.starts_with("create: "), "{reason}");
            assert!(
                !reason.contains("S3cr3t") && !reason.contains("etcdserver"),
                "{reason}"
            );
        }
    }

    fn resource() -> ClusterPullSecret {
        ClusterPullSecret::new(
            "corp",
            crate::state::crd::ClusterPullSecretSpec {
                source: crate::state::crd::SourceSecret {
                    namespace: "infra".to_owned(),
                    name: "corp".to_owned(),
                },
                credential_provider: None,
                namespace_selector: None,
                registries: None,
                target_name: Some("corp-pull".to_owned()),
            },
        )
    }

    fn problem(namespace: &str) -> NamespaceProblem {
        NamespaceProblem {
            namespace: namespace.to_owned(),
            reason: "create: the namespace does not exist (404)".to_owned(),
        }
    }

    #[test]
    fn status_writes_are_conditional_on_the_version_read() {
        let mut read = resource();
        read.metadata.resource_version = Some("41".to_owned());
        let patch = status_patch(&read, &ClusterPullSecretStatus::default());
        assert_eq!(patch["metadata"]["resourceVersion"], "41");
        assert!(patch["status"].is_object());
    }

    /// Never "up to date" while anything is left undone.
    #[test]
    fn ready_only_when_nothing_is_left_undone() {
        let resource = resource();
        let synced = || Report {
            served: vec!["a".to_owned(), "b".to_owned()],
            namespaces_in_sync: true,
            ..Report::default()
        };
        assert_eq!(synced().readiness(&resource, true).1, "Synced");
        assert!(synced().readiness(&resource, true).0);
        assert_eq!(synced().readiness(&resource, false).1, "SourceNotFound");

        let failed = Report {
            failures: vec![problem("c")],
            conflicts: vec![problem("d")],
            ..synced()
        };
        let (ready, reason, message) = failed.readiness(&resource, true);
        assert_eq!((ready, reason), (false, "CopyFailed"));
        assert!(message.contains("1 namespaces"), "{message}");

        let out_of_sync = Report {
            namespaces_in_sync: false,
            ..synced()
        };
        let (ready, reason, _) = out_of_sync.readiness(&resource, true);
        assert_eq!((ready, reason), (false, "NamespacesOutOfSync"));
        let deferred = Report {
            deferred: vec!["e".to_owned()],
            ..synced()
        };
        assert_eq!(deferred.readiness(&resource, true).1, "NamespacesOutOfSync");
        let conflict = Report {
            conflicts: vec![problem("d")],
            ..synced()
        };
        assert_eq!(conflict.readiness(&resource, true).1, "Conflict");
    }
}
