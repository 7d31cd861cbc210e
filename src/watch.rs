//! Cluster I/O: watches of pull secrets and namespaces feeding the published snapshot.
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

use crate::dockerconfig::{DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE};
use crate::state::{ClusterState, StateBuilder};
use crate::telemetry::Metrics;

/// The watches the server runs; each reports ready after its first complete list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchKind {
    DockerConfigJsonSecrets,
    DockerCfgSecrets,
    Namespaces,
}

impl WatchKind {
    pub const ALL: [WatchKind; 3] = [
        WatchKind::DockerConfigJsonSecrets,
        WatchKind::DockerCfgSecrets,
        WatchKind::Namespaces,
    ];

    fn resource(self) -> &'static str {
        match self {
            WatchKind::DockerConfigJsonSecrets | WatchKind::DockerCfgSecrets => "secrets",
            WatchKind::Namespaces => "namespaces",
        }
    }
}

enum Change {
    Secret(WatchKind, Event<Secret>),
    Namespace(Event<Namespace>),
}

/// Shared with the HTTP side: the latest snapshot and which watches have synced.
#[derive(Debug)]
pub struct ClusterCache {
    snapshot: ArcSwap<ClusterState>,
    synced: [AtomicBool; 3],
}

impl Default for ClusterCache {
    fn default() -> Self {
        ClusterCache {
            snapshot: ArcSwap::from_pointee(ClusterState::default()),
            synced: Default::default(),
        }
    }
}

impl ClusterCache {
    pub fn snapshot(&self) -> Arc<ClusterState> {
        self.snapshot.load_full()
    }

    /// True once every watch has delivered its initial list.
    pub fn is_synced(&self) -> bool {
        self.synced
            .iter()
            .all(|synced| synced.load(Ordering::Acquire))
    }

    fn mark_synced(&self, kind: WatchKind) {
        let index = WatchKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_default();
        self.synced[index].store(true, Ordering::Release);
    }
}

/// Runs the watches until the process ends; errors are retried with backoff by kube's watcher.
pub async fn run(client: Client, cache: Arc<ClusterCache>, metrics: Metrics) {
    let secrets: Api<Secret> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client);
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
    let changes = stream::select_all([
        secret_watch(WatchKind::DockerConfigJsonSecrets, DOCKER_CONFIG_JSON_TYPE),
        secret_watch(WatchKind::DockerCfgSecrets, DOCKERCFG_TYPE),
        namespace_watch,
    ]);
    apply_changes(changes, &cache, &metrics).await;
}

async fn apply_changes(
    changes: impl Stream<Item = (WatchKind, Result<Change, watcher::Error>)>,
    cache: &ClusterCache,
    metrics: &Metrics,
) {
    let mut builder = StateBuilder::new();
    let mut relist = Relist::default();
    // Batching keeps bursts (a relist, a mass rollout of secrets) to one publish per batch.
    let mut batches = std::pin::pin!(changes.ready_chunks(512));
    while let Some(batch) = batches.next().await {
        for (kind, change) in batch {
            match change {
                Ok(change) => relist.apply(&mut builder, change, cache),
                Err(error) => {
                    metrics.observe_watch_error(kind.resource());
                    tracing::warn!(watch = ?kind, %error, "watch failed; retrying with backoff");
                }
            }
        }
        let snapshot = builder.snapshot();
        metrics.cached_secrets.set(snapshot.secret_count() as i64);
        metrics
            .cached_namespaces
            .set(snapshot.namespace_count() as i64);
        metrics
            .undecodable_secrets
            .set(snapshot.undecodable_secret_count() as i64);
        cache.snapshot.store(snapshot);
    }
}

/// Tracks what each in-progress relist has seen, to drop the rest when it completes.
#[derive(Default)]
struct Relist {
    seen_secrets: [Option<HashSet<(String, String)>>; 2],
    seen_namespaces: Option<HashSet<String>>,
}

impl Relist {
    fn apply(&mut self, builder: &mut StateBuilder, change: Change, cache: &ClusterCache) {
        match change {
            Change::Secret(kind, event) => self.apply_secret(builder, kind, event, cache),
            Change::Namespace(event) => self.apply_namespace(builder, event, cache),
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
            WatchKind::DockerConfigJsonSecrets => DOCKER_CONFIG_JSON_TYPE,
            _ => DOCKERCFG_TYPE,
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
            Event::Delete(secret) => {
                builder.delete_secret(&secret.namespace().unwrap_or_default(), &secret.name_any())
            }
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
