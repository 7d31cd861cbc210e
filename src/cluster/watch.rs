//! Cluster I/O: watches of pull secrets, namespaces, PullSecretRules and ClusterPullSecrets
//! feeding the published snapshot.
//!
//! One task owns the [`StateBuilder`]; it applies watch events in batches and publishes a new
//! immutable [`ClusterState`] only when something changed. Handlers just load the snapshot, so
//! they never call the API server. A relist applies objects as they stream in (no buffering
//! of full Secrets) and removes what it did not see when it completes.
//!
//! Each watch's health is tracked: it is *in sync* once a complete list has been applied and
//! until its next error. After an error the watch starts over with a complete list (after a
//! backoff), so being in sync again means the cache has caught up, not merely that a
//! connection was re-established. Readiness needs each watch's first list only; the
//! controller defers deleting copies while the namespace watch is out of sync.
//!
//! In namespaced mode ([`Scope::Namespaces`]) each Secret watch is one watch per namespace; a
//! kind of Secret is in sync only while every one of them is.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, DefaultBackoff, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::cluster::scope::Scope;
use crate::kubelet::dockerconfig::{DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE};
use crate::state::crd::{ClusterPullSecret, PullSecretRule};
use crate::state::snapshot::{ClusterState, Copies, Mode, SecretType, StateBuilder};
use crate::telemetry::Metrics;

/// The watches the server runs; each reports ready after its first complete list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchKind {
    DockerConfigJsonSecrets,
    DockerCfgSecrets,
    Namespaces,
    PullSecretRules,
    ClusterPullSecrets,
}

impl WatchKind {
    pub const ALL: [WatchKind; 5] = [
        WatchKind::DockerConfigJsonSecrets,
        WatchKind::DockerCfgSecrets,
        WatchKind::Namespaces,
        WatchKind::PullSecretRules,
        WatchKind::ClusterPullSecrets,
    ];

    /// The watch's name in metrics, logs and `/readyz`.
    pub fn label(self) -> &'static str {
        match self {
            WatchKind::DockerConfigJsonSecrets => "dockerconfigjson_secrets",
            WatchKind::DockerCfgSecrets => "dockercfg_secrets",
            WatchKind::Namespaces => "namespaces",
            WatchKind::PullSecretRules => "pullsecretrules",
            WatchKind::ClusterPullSecrets => "clusterpullsecrets",
        }
    }

    fn resource(self) -> &'static str {
        match self {
            WatchKind::DockerConfigJsonSecrets | WatchKind::DockerCfgSecrets => "secrets",
            WatchKind::Namespaces => "namespaces",
            WatchKind::PullSecretRules => "pullsecretrules",
            WatchKind::ClusterPullSecrets => "clusterpullsecrets",
        }
    }

    fn is_custom(self) -> bool {
        matches!(
            self,
            WatchKind::PullSecretRules | WatchKind::ClusterPullSecrets
        )
    }
}

/// Where an event comes from: the watch's kind and, for a per-namespace watch, its namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    kind: WatchKind,
    namespace: Option<String>,
}

impl From<WatchKind> for Origin {
    fn from(kind: WatchKind) -> Origin {
        Origin {
            kind,
            namespace: None,
        }
    }
}

enum Change {
    /// The namespace is the watch's, in namespaced mode.
    Secret(WatchKind, Option<String>, Event<Secret>),
    Namespace(Event<Namespace>),
    Rule(Event<PullSecretRule>),
    // Boxed: the resource (with its status) is far larger than the other events.
    ClusterPullSecret(Box<Event<ClusterPullSecret>>),
}

/// Shared with the HTTP side and the controller: the latest snapshot, each watch's health,
/// and a counter bumped whenever namespaces appear, go or change labels.
#[derive(Debug)]
pub struct ClusterCache {
    snapshot: ArcSwap<ClusterState>,
    watches: [WatchHealth; 5],
    own_namespace: Option<String>,
    copies: Copies,
    default_mode: Mode,
    scope: Scope,
    secret_labels: Option<String>,
    /// Per kind, the parts of its watch that are not in sync (see [`ClusterCache::part_synced`]).
    unsynced: Mutex<HashMap<WatchKind, HashSet<Option<String>>>>,
    namespace_changes: tokio::sync::watch::Sender<u64>,
    snapshot_changes: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct WatchHealth {
    /// A complete list has been applied at least once.
    listed: AtomicBool,
    /// A complete list has been applied and the watch has not failed since.
    in_sync: AtomicBool,
    /// Unix time (seconds) the last complete list was applied; 0 before the first.
    last_sync: AtomicU64,
}

impl Default for ClusterCache {
    fn default() -> Self {
        ClusterCache::new(None)
    }
}

impl ClusterCache {
    /// A cache for an injector running in `own_namespace` (never served by cluster
    /// credentials).
    pub fn new(own_namespace: Option<String>) -> ClusterCache {
        ClusterCache {
            snapshot: ArcSwap::from_pointee(ClusterState::default()),
            watches: Default::default(),
            own_namespace,
            copies: Copies::default(),
            default_mode: Mode::default(),
            scope: Scope::default(),
            secret_labels: None,
            unsynced: Mutex::default(),
            namespace_changes: tokio::sync::watch::Sender::new(0),
            snapshot_changes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Who writes the copies of ClusterPullSecrets: [`Copies::Manual`] when this server runs
    /// no controller.
    pub fn with_copies(mut self, copies: Copies) -> ClusterCache {
        self.copies = copies;
        self
    }

    /// The mode of namespaces without a mode label: [`Mode::Shadow`] with `serve --shadow`.
    pub fn with_default_mode(mut self, mode: Mode) -> ClusterCache {
        self.default_mode = mode;
        self
    }

    /// The namespaces the injector serves: its Secret watches (and the controller's writes)
    /// cover only these.
    pub fn with_scope(mut self, scope: Scope) -> ClusterCache {
        self.scope = scope;
        self
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Caches only the registry Secrets this label selector selects (a filter, not a security
    /// boundary); `None` or empty: all of them.
    pub fn with_secret_labels(mut self, selector: Option<String>) -> ClusterCache {
        self.secret_labels = selector.filter(|selector| !selector.is_empty());
        self
    }

    /// Notified after a snapshot with changed namespaces has been published.
    pub fn namespace_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.namespace_changes.subscribe()
    }

    /// Notified after every published snapshot.
    pub fn snapshot_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.snapshot_changes.subscribe()
    }

    pub fn snapshot(&self) -> Arc<ClusterState> {
        self.snapshot.load_full()
    }

    /// True once every watch has delivered its initial list (it stays true when a watch
    /// fails later: see [`ClusterCache::is_in_sync`]).
    pub fn is_synced(&self) -> bool {
        self.watches
            .iter()
            .all(|watch| watch.listed.load(Ordering::Acquire))
    }

    /// Whether the watch has applied a complete list and not failed since: what the cache
    /// holds of that kind is current, as far as anyone can tell.
    pub fn is_in_sync(&self, kind: WatchKind) -> bool {
        self.health(kind).in_sync.load(Ordering::Acquire)
    }

    /// The watches that have listed once but are out of sync now.
    pub fn out_of_sync(&self) -> Vec<WatchKind> {
        WatchKind::ALL
            .into_iter()
            .filter(|kind| self.last_sync(*kind).is_some() && !self.is_in_sync(*kind))
            .collect()
    }

    /// Unix time of the watch's last complete list, if any.
    pub fn last_sync(&self, kind: WatchKind) -> Option<u64> {
        Some(self.health(kind).last_sync.load(Ordering::Acquire)).filter(|at| *at > 0)
    }

    fn health(&self, kind: WatchKind) -> &WatchHealth {
        let index = WatchKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_default();
        &self.watches[index]
    }

    fn mark_synced(&self, kind: WatchKind) {
        let health = self.health(kind);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |since| since.as_secs().max(1));
        health.last_sync.store(now, Ordering::Release);
        health.listed.store(true, Ordering::Release);
        health.in_sync.store(true, Ordering::Release);
    }

    /// Returns whether the watch was in sync until now.
    fn mark_failed(&self, kind: WatchKind) -> bool {
        self.health(kind).in_sync.swap(false, Ordering::AcqRel)
    }

    /// The parts of `kind` (one per namespace for Secrets in namespaced mode, else one) not in
    /// sync; every part is until its first complete list.
    fn with_unsynced<T>(
        &self,
        kind: WatchKind,
        change: impl FnOnce(&mut HashSet<Option<String>>) -> T,
    ) -> T {
        let mut unsynced = self
            .unsynced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let parts = unsynced
            .entry(kind)
            .or_insert_with(|| match (kind, self.scope.namespaces()) {
                (
                    WatchKind::DockerConfigJsonSecrets | WatchKind::DockerCfgSecrets,
                    Some(namespaces),
                ) => namespaces.iter().cloned().map(Some).collect(),
                _ => HashSet::from([None]),
            });
        change(parts)
    }

    /// A part has applied a complete list: its kind is in sync once all its parts are.
    fn part_synced(&self, origin: Origin) {
        if self.with_unsynced(origin.kind, |parts| {
            parts.remove(&origin.namespace);
            parts.is_empty()
        }) {
            self.mark_synced(origin.kind);
        }
    }

    /// A part failed: its kind is out of sync until that part has listed again. Returns
    /// whether the kind was in sync until now.
    fn part_failed(&self, origin: Origin) -> bool {
        self.with_unsynced(origin.kind, |parts| parts.insert(origin.namespace));
        self.mark_failed(origin.kind)
    }
}

/// Runs the watches until the process ends; each starts over with a complete list, after a
/// backoff, whenever it fails. Secrets are watched in the cache's scope, and only those its
/// label selector selects.
pub async fn run(client: Client, cache: Arc<ClusterCache>, metrics: Metrics) {
    let secret_labels = cache.secret_labels.clone();
    let secret_apis = cache.scope().apis::<Secret>(&client);
    let secret_watch = |kind: WatchKind, secret_type: &str| {
        let mut config = watcher::Config::default().fields(&format!("type={secret_type}"));
        if let Some(labels) = &secret_labels {
            config = config.labels(labels);
        }
        let parts = secret_apis.iter().map(|(namespace, api)| {
            let origin = Origin {
                kind,
                namespace: namespace.clone(),
            };
            relisting(api.clone(), config.clone())
                .map(move |event| {
                    let namespace = origin.namespace.clone();
                    let change = event.map(|event| Change::Secret(kind, namespace, event));
                    (origin.clone(), change)
                })
                .boxed()
        });
        stream::select_all(parts).boxed()
    };
    let namespace_watch = relisting(Api::<Namespace>::all(client.clone()), Default::default())
        .map(|event| (WatchKind::Namespaces.into(), event.map(Change::Namespace)))
        .boxed();
    let rule_watch = relisting(
        Api::<PullSecretRule>::all(client.clone()),
        Default::default(),
    )
    .map(|event| (WatchKind::PullSecretRules.into(), event.map(Change::Rule)))
    .boxed();
    let cluster_pull_secret_watch =
        relisting(Api::<ClusterPullSecret>::all(client), Default::default())
            .map(|event| {
                (
                    WatchKind::ClusterPullSecrets.into(),
                    event.map(|event| Change::ClusterPullSecret(Box::new(event))),
                )
            })
            .boxed();
    let changes = stream::select_all([
        secret_watch(WatchKind::DockerConfigJsonSecrets, DOCKER_CONFIG_JSON_TYPE),
        secret_watch(WatchKind::DockerCfgSecrets, DOCKERCFG_TYPE),
        namespace_watch,
        rule_watch,
        cluster_pull_secret_watch,
    ]);
    apply_changes(changes, &cache, &metrics).await;
}

type WatchEvents<K> = BoxStream<'static, Result<Event<K>, watcher::Error>>;

/// kube's watcher, started over with a complete list after each error (after a backoff).
///
/// kube's own watcher resumes from its last resourceVersion after most errors, without a
/// list and without any event, so nothing would tell when it is healthy again; starting over
/// costs one list per failure and makes "in sync" mean that a complete list has been applied.
fn relisting<K>(api: Api<K>, config: watcher::Config) -> WatchEvents<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let start = move || watcher::watcher(api.clone(), config.clone()).boxed();
    let first = start();
    stream::unfold(
        (first, start, DefaultBackoff::default()),
        |(mut events, start, mut backoff)| async move {
            let event = events.next().await?;
            match &event {
                Ok(Event::InitDone) => backoff.reset(),
                Ok(_) => {}
                Err(_) => {
                    let delay = backoff.next().unwrap_or(std::time::Duration::from_secs(30));
                    let again = start.clone();
                    events = stream::once(tokio::time::sleep(delay))
                        .flat_map(move |()| again())
                        .boxed();
                }
            }
            Some((event, (events, start, backoff)))
        },
    )
    .boxed()
}

async fn apply_changes<O: Into<Origin>>(
    changes: impl Stream<Item = (O, Result<Change, watcher::Error>)>,
    cache: &ClusterCache,
    metrics: &Metrics,
) {
    let mut builder = StateBuilder::new();
    builder.set_own_namespace(cache.own_namespace.as_deref());
    builder.set_copies(cache.copies);
    builder.set_default_mode(cache.default_mode);
    builder.set_served_namespaces(cache.scope.namespaces().cloned().map(Arc::new));
    let mut relist = Relist::default();
    // Batching keeps bursts (a relist, a mass rollout of secrets) to one publish per batch.
    let mut batches = std::pin::pin!(changes.ready_chunks(512));
    while let Some(batch) = batches.next().await {
        for (origin, change) in batch {
            let origin: Origin = origin.into();
            let kind = origin.kind;
            match change {
                Ok(change) => relist.apply(&mut builder, change, cache),
                Err(error) => {
                    metrics.observe_watch_error(kind.resource());
                    if kind.is_custom() && is_not_found(&error) {
                        // CRDs not installed: nothing of that kind exists, which must not keep
                        // the webhook unready. The watch keeps retrying and picks them up.
                        if cache.last_sync(kind).is_none() {
                            tracing::warn!(
                                watch = kind.label(),
                                "custom resource not installed; treating it as empty (install the chart's CRDs)"
                            );
                        }
                        cache.part_synced(origin);
                    } else {
                        let namespace = origin.namespace.clone().unwrap_or_default();
                        if cache.part_failed(origin) {
                            tracing::warn!(watch = kind.label(), namespace, %error, "watch failed: out of sync until it has listed again; retrying with backoff");
                        } else {
                            tracing::debug!(watch = kind.label(), namespace, %error, "watch failed again");
                        }
                    }
                }
            }
        }
        // Publish first, so a gauge never reports state that handlers cannot see yet.
        let snapshot = builder.snapshot();
        cache.snapshot.store(Arc::clone(&snapshot));
        metrics.cached_secrets.set(snapshot.secret_count() as i64);
        metrics
            .cached_namespaces
            .set(snapshot.namespace_count() as i64);
        metrics
            .undecodable_secrets
            .set(snapshot.undecodable_secret_count() as i64);
        for kind in WatchKind::ALL {
            metrics.observe_watch_sync(kind.label(), cache.is_in_sync(kind), cache.last_sync(kind));
        }
        metrics
            .cluster_pull_secrets
            .set(snapshot.credentials().len() as i64);
        if builder.take_namespace_changes() {
            cache.namespace_changes.send_modify(|count| *count += 1);
        }
        cache.snapshot_changes.send_modify(|count| *count += 1);
    }
}

fn is_not_found(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        // An API group that is not installed answers a plain-text 404, which kube reports with
        // code 404 but a made-up reason, so the code decides.
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code == 404,
        _ => false,
    }
}

/// Tracks what each in-progress relist has seen (per namespace for Secrets in namespaced
/// mode), to drop the rest when it completes.
#[derive(Default)]
struct Relist {
    seen_secrets: HashMap<Origin, HashSet<(String, String)>>,
    seen_namespaces: Option<HashSet<String>>,
    seen_rules: Option<HashSet<(String, String)>>,
    seen_cluster_pull_secrets: Option<HashSet<String>>,
}

impl Relist {
    fn apply(&mut self, builder: &mut StateBuilder, change: Change, cache: &ClusterCache) {
        match change {
            Change::Secret(kind, namespace, event) => {
                self.apply_secret(builder, Origin { kind, namespace }, event, cache)
            }
            Change::Namespace(event) => self.apply_namespace(builder, event, cache),
            Change::Rule(event) => self.apply_rule(builder, event, cache),
            Change::ClusterPullSecret(event) => {
                self.apply_cluster_pull_secret(builder, *event, cache)
            }
        }
    }

    fn apply_rule(
        &mut self,
        builder: &mut StateBuilder,
        event: Event<PullSecretRule>,
        cache: &ClusterCache,
    ) {
        let key = |rule: &PullSecretRule| (rule.namespace().unwrap_or_default(), rule.name_any());
        match event {
            Event::Init => self.seen_rules = Some(HashSet::new()),
            Event::InitApply(rule) => {
                if let Some(seen) = &mut self.seen_rules {
                    seen.insert(key(&rule));
                }
                builder.apply_rule(&rule);
            }
            Event::InitDone => {
                if let Some(seen) = self.seen_rules.take() {
                    builder.retain_rules(|namespace, name| {
                        seen.contains(&(namespace.to_owned(), name.to_owned()))
                    });
                }
                cache.part_synced(WatchKind::PullSecretRules.into());
            }
            Event::Apply(rule) => builder.apply_rule(&rule),
            Event::Delete(rule) => {
                let (namespace, name) = key(&rule);
                builder.delete_rule(&namespace, &name);
            }
        }
    }

    fn apply_cluster_pull_secret(
        &mut self,
        builder: &mut StateBuilder,
        event: Event<ClusterPullSecret>,
        cache: &ClusterCache,
    ) {
        match event {
            Event::Init => self.seen_cluster_pull_secrets = Some(HashSet::new()),
            Event::InitApply(resource) => {
                if let Some(seen) = &mut self.seen_cluster_pull_secrets {
                    seen.insert(resource.name_any());
                }
                builder.apply_cluster_pull_secret(&resource);
            }
            Event::InitDone => {
                if let Some(seen) = self.seen_cluster_pull_secrets.take() {
                    builder.retain_cluster_pull_secrets(|name| seen.contains(name));
                }
                cache.part_synced(WatchKind::ClusterPullSecrets.into());
            }
            Event::Apply(resource) => builder.apply_cluster_pull_secret(&resource),
            Event::Delete(resource) => builder.delete_cluster_pull_secret(&resource.name_any()),
        }
    }

    fn apply_secret(
        &mut self,
        builder: &mut StateBuilder,
        origin: Origin,
        event: Event<Secret>,
        cache: &ClusterCache,
    ) {
        let secret_type = match origin.kind {
            WatchKind::DockerConfigJsonSecrets => SecretType::DockerConfigJson,
            _ => SecretType::DockerCfg,
        };
        match event {
            Event::Init => {
                self.seen_secrets.insert(origin, HashSet::new());
            }
            Event::InitApply(secret) => {
                if let Some(seen) = self.seen_secrets.get_mut(&origin) {
                    seen.insert((secret.namespace().unwrap_or_default(), secret.name_any()));
                }
                builder.apply_secret(&secret);
            }
            Event::InitDone => {
                if let Some(seen) = self.seen_secrets.remove(&origin) {
                    // A per-namespace watch's list says nothing about other namespaces.
                    let listed = origin.namespace.as_deref();
                    builder.retain_secrets(secret_type, |namespace, name| {
                        listed.is_some_and(|listed| listed != namespace)
                            || seen.contains(&(namespace.to_owned(), name.to_owned()))
                    });
                }
                cache.part_synced(origin);
            }
            Event::Apply(secret) => builder.apply_secret(&secret),
            Event::Delete(secret) => builder.delete_secret(
                &secret.namespace().unwrap_or_default(),
                &secret.name_any(),
                secret_type,
            ),
        }
    }

    fn apply_namespace(
        &mut self,
        builder: &mut StateBuilder,
        event: Event<Namespace>,
        cache: &ClusterCache,
    ) {
        match event {
            Event::Init => self.seen_namespaces = Some(HashSet::new()),
            Event::InitApply(namespace) => {
                if let Some(seen) = &mut self.seen_namespaces {
                    seen.insert(namespace.name_any());
                }
                builder.apply_namespace(&namespace);
            }
            Event::InitDone => {
                if let Some(seen) = self.seen_namespaces.take() {
                    builder.retain_namespaces(|name| seen.contains(name));
                }
                cache.part_synced(WatchKind::Namespaces.into());
            }
            Event::Apply(namespace) => builder.apply_namespace(&namespace),
            Event::Delete(namespace) => builder.delete_namespace(&namespace.name_any()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::core::Status;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::kubelet::dockerconfig::{DOCKER_CONFIG_JSON_KEY, DOCKERCFG_KEY};

    fn api_error(code: u16, reason: &str) -> watcher::Error {
        let status = Status {
            code,
            reason: reason.to_owned(),
            ..Status::default()
        };
        watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn a_missing_api_group_counts_as_not_found() {
        // What kube reports for the apiserver's plain-text "404 page not found".
        assert!(is_not_found(&api_error(404, "Failed to parse error data")));
        assert!(is_not_found(&api_error(404, "NotFound")));
        assert!(!is_not_found(&api_error(403, "Forbidden")));
        assert!(!is_not_found(&api_error(500, "InternalError")));
    }

    fn regcred(uid: &str, secret_type: &str, registry: &str) -> Secret {
        let (key, payload) = if secret_type == DOCKER_CONFIG_JSON_TYPE {
            (
                DOCKER_CONFIG_JSON_KEY,
                format!(r#"{{"auths":{{"{registry}":{{}}}}}}"#),
            )
        } else {
            (DOCKERCFG_KEY, format!(r#"{{"{registry}":{{}}}}"#))
        };
        Secret {
            metadata: ObjectMeta {
                name: Some("regcred".to_owned()),
                namespace: Some("shop".to_owned()),
                uid: Some(uid.to_owned()),
                ..ObjectMeta::default()
            },
            type_: Some(secret_type.to_owned()),
            data: Some(BTreeMap::from([(
                key.to_owned(),
                ByteString(payload.into_bytes()),
            )])),
            ..Secret::default()
        }
    }

    /// Feeds the events, in this order, through the code the live watches use.
    async fn cached_after(events: Vec<(WatchKind, Event<Secret>)>) -> Vec<(String, Vec<String>)> {
        let cache = ClusterCache::default();
        let metrics = Metrics::new(&mut Registry::default());
        let changes = stream::iter(
            events
                .into_iter()
                .map(|(kind, event)| (kind, Ok(Change::Secret(kind, None, event)))),
        );
        apply_changes(changes, &cache, &metrics).await;
        let snapshot = cache.snapshot();
        snapshot
            .namespace("shop")
            .map(|ns| {
                ns.secrets()
                    .iter()
                    .map(|(name, secret)| {
                        let keys = secret.registries().iter().map(|k| k.to_string()).collect();
                        (format!("{name} ({})", secret.secret_type.as_str()), keys)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `regcred` deleted as dockercfg and created again as dockerconfigjson: the two watches
    /// deliver independently, so the old Secret's events may arrive after the new one's.
    #[tokio::test]
    async fn a_delete_from_one_type_watch_never_removes_the_other_type() {
        use WatchKind::{DockerCfgSecrets as Cfg, DockerConfigJsonSecrets as Json};
        let old = || regcred("uid-old", DOCKERCFG_TYPE, "old.example.com");
        let new = || regcred("uid-new", DOCKER_CONFIG_JSON_TYPE, "new.example.com");
        let expected = vec![(
            format!("regcred ({DOCKER_CONFIG_JSON_TYPE})"),
            vec!["new.example.com".to_owned()],
        )];
        let orders = [
            // The order things happened in.
            vec![
                (Cfg, Event::Apply(old())),
                (Cfg, Event::Delete(old())),
                (Json, Event::Apply(new())),
            ],
            // The new Secret's Apply before the old one's Delete.
            vec![
                (Cfg, Event::Apply(old())),
                (Json, Event::Apply(new())),
                (Cfg, Event::Delete(old())),
            ],
            // Even the old Secret's last update after the new Secret's Apply.
            vec![
                (Json, Event::Apply(new())),
                (Cfg, Event::Apply(old())),
                (Cfg, Event::Delete(old())),
            ],
        ];
        for (order, events) in orders.into_iter().enumerate() {
            assert_eq!(cached_after(events).await, expected, "order {order}");
        }
    }

    /// The end of a relist of one type drops only what that watch no longer lists.
    #[tokio::test]
    async fn a_relist_of_one_type_keeps_the_other_type() {
        use WatchKind::{DockerCfgSecrets as Cfg, DockerConfigJsonSecrets as Json};
        let old = || regcred("uid-old", DOCKERCFG_TYPE, "old.example.com");
        let new = || regcred("uid-new", DOCKER_CONFIG_JSON_TYPE, "new.example.com");
        let events = vec![
            (Cfg, Event::Apply(old())),
            (Json, Event::Apply(new())),
            // The dockercfg watch failed and relists: the old Secret is gone.
            (Cfg, Event::Init),
            (Cfg, Event::InitDone),
        ];
        assert_eq!(
            cached_after(events).await,
            vec![(
                format!("regcred ({DOCKER_CONFIG_JSON_TYPE})"),
                vec!["new.example.com".to_owned()],
            )]
        );
    }

    /// Out of sync from a watch's failure until its next complete list; readiness needs only
    /// the first list of each.
    #[tokio::test]
    async fn a_failed_watch_is_out_of_sync_until_it_has_listed_again() {
        let cache = ClusterCache::default();
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let listed = |kind| (kind, Ok(Change::Namespace(Event::Init)));
        let done = |kind: WatchKind| match kind {
            WatchKind::DockerConfigJsonSecrets | WatchKind::DockerCfgSecrets => {
                (kind, Ok(Change::Secret(kind, None, Event::InitDone)))
            }
            WatchKind::Namespaces => (kind, Ok(Change::Namespace(Event::InitDone))),
            WatchKind::PullSecretRules => (kind, Ok(Change::Rule(Event::InitDone))),
            WatchKind::ClusterPullSecrets => (
                kind,
                Ok(Change::ClusterPullSecret(Box::new(Event::InitDone))),
            ),
        };
        let mut first: Vec<_> = WatchKind::ALL.into_iter().map(done).collect();
        first.insert(0, listed(WatchKind::Namespaces));
        apply_changes(stream::iter(first), &cache, &metrics).await;
        assert!(cache.is_synced());
        assert!(WatchKind::ALL.iter().all(|kind| cache.is_in_sync(*kind)));
        let synced_at = cache.last_sync(WatchKind::Namespaces).expect("synced");

        let failure = (WatchKind::Namespaces, Err(api_error(500, "InternalError")));
        apply_changes(stream::iter([failure]), &cache, &metrics).await;
        assert!(cache.is_synced(), "readiness keeps the first list");
        assert!(!cache.is_in_sync(WatchKind::Namespaces));
        assert_eq!(cache.out_of_sync(), vec![WatchKind::Namespaces]);
        assert_eq!(cache.last_sync(WatchKind::Namespaces), Some(synced_at));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(r#"pullsecret_injector_watch_in_sync{watch="namespaces"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pullsecret_injector_watch_in_sync{watch="dockercfg_secrets"} 1"#),
            "{text}"
        );

        // Events alone do not bring it back: only a complete list does.
        let shop = Namespace {
            metadata: ObjectMeta {
                name: Some("shop".to_owned()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let event = (
            WatchKind::Namespaces,
            Ok(Change::Namespace(Event::Apply(shop))),
        );
        apply_changes(stream::iter([event]), &cache, &metrics).await;
        assert!(!cache.is_in_sync(WatchKind::Namespaces));
        let relist = [listed(WatchKind::Namespaces), done(WatchKind::Namespaces)];
        apply_changes(stream::iter(relist), &cache, &metrics).await;
        assert!(cache.is_in_sync(WatchKind::Namespaces));
        assert!(cache.out_of_sync().is_empty());
    }

    /// Namespaced mode: a kind of Secret is synced only once the watch of every listed
    /// namespace has listed, out of sync while any of them has failed, and one namespace's
    /// relist never drops another namespace's Secrets.
    #[tokio::test]
    async fn per_namespace_watches_sync_together_and_relist_apart() {
        let cache = ClusterCache::default().with_scope(Scope::new(["billing", "shop"]));
        let metrics = Metrics::new(&mut Registry::default());
        let kind = WatchKind::DockerConfigJsonSecrets;
        let part = |namespace: &str| Origin {
            kind,
            namespace: Some(namespace.to_owned()),
        };
        let event = |namespace: &str, event| {
            (
                part(namespace),
                Ok(Change::Secret(kind, Some(namespace.to_owned()), event)),
            )
        };
        let in_namespace = |namespace: &str| {
            let mut secret = regcred("uid", DOCKER_CONFIG_JSON_TYPE, "registry.example.com");
            secret.metadata.namespace = Some(namespace.to_owned());
            secret
        };
        let cfg = WatchKind::DockerCfgSecrets;
        let cfg_done = |namespace: &str| {
            let origin = Origin {
                kind: cfg,
                namespace: Some(namespace.to_owned()),
            };
            let change = Change::Secret(cfg, Some(namespace.to_owned()), Event::InitDone);
            (origin, Ok(change))
        };
        let mut first = vec![
            cfg_done("billing"),
            cfg_done("shop"),
            (
                WatchKind::Namespaces.into(),
                Ok(Change::Namespace(Event::InitDone)),
            ),
            (
                WatchKind::PullSecretRules.into(),
                Ok(Change::Rule(Event::InitDone)),
            ),
            (
                WatchKind::ClusterPullSecrets.into(),
                Ok(Change::ClusterPullSecret(Box::new(Event::InitDone))),
            ),
        ];
        first.extend([
            event("shop", Event::Init),
            event("shop", Event::InitApply(in_namespace("shop"))),
            event("shop", Event::InitDone),
        ]);
        apply_changes(stream::iter(first), &cache, &metrics).await;
        assert!(!cache.is_synced(), "billing has not listed yet");
        assert!(!cache.is_in_sync(kind));

        let billing = [
            event("billing", Event::Init),
            event("billing", Event::InitApply(in_namespace("billing"))),
            event("billing", Event::InitDone),
        ];
        apply_changes(stream::iter(billing), &cache, &metrics).await;
        assert!(cache.is_synced());
        assert!(cache.is_in_sync(kind));
        let cached = |cache: &ClusterCache| {
            ["billing", "shop"].map(|namespace| {
                cache
                    .snapshot()
                    .namespace(namespace)
                    .is_some_and(|ns| !ns.secrets().is_empty())
            })
        };
        // billing's watch fails: the kind is in sync again only after billing's next list.
        let failure = (part("billing"), Err(api_error(500, "InternalError")));
        apply_changes(stream::iter([failure]), &cache, &metrics).await;
        assert!(!cache.is_in_sync(kind));
        apply_changes(
            stream::iter([event("billing", Event::Init)]),
            &cache,
            &metrics,
        )
        .await;
        assert!(!cache.is_in_sync(kind));
        let done = [event("billing", Event::InitDone)];
        apply_changes(stream::iter(done), &cache, &metrics).await;
        assert!(cache.is_in_sync(kind));

        // Both listed, then billing relists empty: shop keeps its Secret.
        let cache = ClusterCache::default().with_scope(Scope::new(["billing", "shop"]));
        let events = [
            event("shop", Event::Init),
            event("shop", Event::InitApply(in_namespace("shop"))),
            event("shop", Event::InitDone),
            event("billing", Event::Init),
            event("billing", Event::InitApply(in_namespace("billing"))),
            event("billing", Event::InitDone),
        ];
        let relist = [
            event("billing", Event::Init),
            event("billing", Event::InitDone),
        ];
        let all = events.into_iter().chain(relist);
        apply_changes(stream::iter(all), &cache, &metrics).await;
        assert_eq!(cached(&cache), [false, true]);
    }

    /// What the webhook keeps of a registry Secret: its registry keys, never a credential.
    #[tokio::test]
    async fn the_cache_keeps_no_credential_value() {
        use base64::Engine;
        let (user, password) = ("cache-user-7f3a", "cache-password-9c1e");
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let payload = format!(
            r#"{{"auths":{{"registry.example.com":{{"username":"{user}","password":"{password}","auth":"{auth}","email":"{user}@example.com"}}}}}}"#
        );
        let mut secret = regcred("uid", DOCKER_CONFIG_JSON_TYPE, "unused.example.com");
        secret.data = Some(BTreeMap::from([(
            DOCKER_CONFIG_JSON_KEY.to_owned(),
            ByteString(payload.into_bytes()),
        )]));
        let cache = ClusterCache::default();
        let metrics = Metrics::new(&mut Registry::default());
        let kind = WatchKind::DockerConfigJsonSecrets;
        let events = [Event::Init, Event::InitApply(secret), Event::InitDone]
            .map(|event| (kind, Ok(Change::Secret(kind, None, event))));
        apply_changes(stream::iter(events), &cache, &metrics).await;
        let kept = format!("{:?}", cache.snapshot());
        assert!(kept.contains("registry.example.com"), "{kept}");
        for value in [user, password, auth.as_str()] {
            assert!(!kept.contains(value), "{value} kept: {kept}");
        }
    }
}
