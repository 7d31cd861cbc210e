//! Cluster I/O: watches of pull secrets, namespaces, PullSecretRules and ClusterPullSecrets
//! feeding the published snapshot.
//!
//! One task owns the [`StateBuilder`]; it applies watch events in batches and publishes a new
//! immutable [`ClusterState`] only when something changed. Handlers just load the snapshot, so
//! they never call the API server. A relist applies objects as they stream in (no buffering
//! of full Secrets) and removes what it did not see when it completes.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};

use crate::kubelet::dockerconfig::{DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE};
use crate::state::crd::{ClusterPullSecret, PullSecretRule};
use crate::state::snapshot::{ClusterState, SecretType, StateBuilder};
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

enum Change {
    Secret(WatchKind, Event<Secret>),
    Namespace(Event<Namespace>),
    Rule(Event<PullSecretRule>),
    ClusterPullSecret(Event<ClusterPullSecret>),
}

/// Shared with the HTTP side and the controller: the latest snapshot, which watches have
/// synced, and a counter bumped whenever namespaces appear, go or change labels.
#[derive(Debug)]
pub struct ClusterCache {
    snapshot: ArcSwap<ClusterState>,
    synced: [AtomicBool; 5],
    own_namespace: Option<String>,
    namespace_changes: tokio::sync::watch::Sender<u64>,
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
            synced: Default::default(),
            own_namespace,
            namespace_changes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Notified after a snapshot with changed namespaces has been published.
    pub fn namespace_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.namespace_changes.subscribe()
    }

    pub fn snapshot(&self) -> Arc<ClusterState> {
        self.snapshot.load_full()
    }

    /// True once every watch has delivered its initial list.
    pub fn is_synced(&self) -> bool {
        self.synced
            .iter()
            .all(|synced| synced.load(Ordering::Acquire))
    }

    fn index(kind: WatchKind) -> usize {
        WatchKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_default()
    }

    fn is_kind_synced(&self, kind: WatchKind) -> bool {
        self.synced[Self::index(kind)].load(Ordering::Acquire)
    }

    fn mark_synced(&self, kind: WatchKind) {
        self.synced[Self::index(kind)].store(true, Ordering::Release);
    }
}

/// Runs the watches until the process ends; errors are retried with backoff by kube's watcher.
pub async fn run(client: Client, cache: Arc<ClusterCache>, metrics: Metrics) {
    let secrets: Api<Secret> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let rules: Api<PullSecretRule> = Api::all(client.clone());
    let cluster_pull_secrets: Api<ClusterPullSecret> = Api::all(client);
    let secret_watch = |kind: WatchKind, secret_type: &str| {
        let config = watcher::Config::default().fields(&format!("type={secret_type}"));
        watcher::watcher(secrets.clone(), config)
            .default_backoff()
            .map(move |event| (kind, event.map(|event| Change::Secret(kind, event))))
            .boxed()
    };
    let namespace_watch = watcher::watcher(namespaces, watcher::Config::default())
        .default_backoff()
        .map(|event| (WatchKind::Namespaces, event.map(Change::Namespace)))
        .boxed();
    let rule_watch = watcher::watcher(rules, watcher::Config::default())
        .default_backoff()
        .map(|event| (WatchKind::PullSecretRules, event.map(Change::Rule)))
        .boxed();
    let cluster_pull_secret_watch =
        watcher::watcher(cluster_pull_secrets, watcher::Config::default())
            .default_backoff()
            .map(|event| {
                (
                    WatchKind::ClusterPullSecrets,
                    event.map(Change::ClusterPullSecret),
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

async fn apply_changes(
    changes: impl Stream<Item = (WatchKind, Result<Change, watcher::Error>)>,
    cache: &ClusterCache,
    metrics: &Metrics,
) {
    let mut builder = StateBuilder::new();
    builder.set_own_namespace(cache.own_namespace.as_deref());
    let mut relist = Relist::default();
    // Batching keeps bursts (a relist, a mass rollout of secrets) to one publish per batch.
    let mut batches = std::pin::pin!(changes.ready_chunks(512));
    while let Some(batch) = batches.next().await {
        for (kind, change) in batch {
            match change {
                Ok(change) => relist.apply(&mut builder, change, cache),
                Err(error) => {
                    metrics.observe_watch_error(kind.resource());
                    if kind.is_custom() && is_not_found(&error) {
                        // CRDs not installed: nothing of that kind exists, which must not keep
                        // the webhook unready. The watch keeps retrying and picks them up.
                        if !cache.is_kind_synced(kind) {
                            tracing::warn!(watch = ?kind, "custom resource not installed; treating it as empty (install the chart's CRDs)");
                        }
                        cache.mark_synced(kind);
                    } else {
                        tracing::warn!(watch = ?kind, %error, "watch failed; retrying with backoff");
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
        if builder.take_namespace_changes() {
            cache.namespace_changes.send_modify(|count| *count += 1);
        }
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

/// Tracks what each in-progress relist has seen, to drop the rest when it completes.
#[derive(Default)]
struct Relist {
    seen_secrets: [Option<HashSet<(String, String)>>; 2],
    seen_namespaces: Option<HashSet<String>>,
    seen_rules: Option<HashSet<(String, String)>>,
    seen_cluster_pull_secrets: Option<HashSet<String>>,
}

impl Relist {
    fn apply(&mut self, builder: &mut StateBuilder, change: Change, cache: &ClusterCache) {
        match change {
            Change::Secret(kind, event) => self.apply_secret(builder, kind, event, cache),
            Change::Namespace(event) => self.apply_namespace(builder, event, cache),
            Change::Rule(event) => self.apply_rule(builder, event, cache),
            Change::ClusterPullSecret(event) => {
                self.apply_cluster_pull_secret(builder, event, cache)
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
                cache.mark_synced(WatchKind::PullSecretRules);
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
                cache.mark_synced(WatchKind::ClusterPullSecrets);
            }
            Event::Apply(resource) => builder.apply_cluster_pull_secret(&resource),
            Event::Delete(resource) => builder.delete_cluster_pull_secret(&resource.name_any()),
        }
    }

    fn apply_secret(
        &mut self,
        builder: &mut StateBuilder,
        kind: WatchKind,
        event: Event<Secret>,
        cache: &ClusterCache,
    ) {
        let secret_type = match kind {
            WatchKind::DockerConfigJsonSecrets => SecretType::DockerConfigJson,
            _ => SecretType::DockerCfg,
        };
        let seen = &mut self.seen_secrets[usize::from(kind == WatchKind::DockerCfgSecrets)];
        match event {
            Event::Init => *seen = Some(HashSet::new()),
            Event::InitApply(secret) => {
                if let Some(seen) = seen {
                    seen.insert((secret.namespace().unwrap_or_default(), secret.name_any()));
                }
                builder.apply_secret(&secret);
            }
            Event::InitDone => {
                if let Some(seen) = seen.take() {
                    builder.retain_secrets(secret_type, |namespace, name| {
                        seen.contains(&(namespace.to_owned(), name.to_owned()))
                    });
                }
                cache.mark_synced(kind);
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
                cache.mark_synced(WatchKind::Namespaces);
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
                .map(|(kind, event)| (kind, Ok(Change::Secret(kind, event)))),
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
}
