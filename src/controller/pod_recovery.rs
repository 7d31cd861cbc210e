//! Recovery of pods stuck on a pull that a secret available now would fix.
//!
//! `spec.imagePullSecrets` cannot change on an existing Pod, so a pod created before its
//! credential existed waits in `ImagePullBackOff` forever. On the Lease holder, this watches
//! pods whose containers (init containers too) wait with `ErrImagePull`/`ImagePullBackOff`, on
//! their own image or on an image volume they mount, keeps only what the decision needs of
//! them, and asks the same pure decision the webhook uses what each would get now. A pod is recoverable when it would get a secret it lacks for
//! an image that is failing:
//! - owned by a controller that recreates it (ReplicaSet, StatefulSet, DaemonSet, Job), it is
//!   evicted through the Eviction API, so PodDisruptionBudgets hold, and its replacement is
//!   admitted with the secret;
//! - a bare pod is never deleted: it gets an Event naming the secret and how to recreate it.
//!
//! A pod whose other containers run is evicted as well: it cannot become Ready while one of its
//! containers cannot pull, and its replacement starts them all. A pod is evicted only after it
//! has stayed recoverable for a moment, so every webhook replica has the new secret when the
//! replacement is admitted. Each pod UID is evicted at most once, evictions are rate-limited globally, and an eviction a PDB refuses is retried
//! with backoff and reported, never forced. kube-system, the injector's own namespace and
//! opted-out pods and namespaces are never touched.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Client;
use kube::api::{Api, EvictParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt, watcher::Event as WatchEvent};
use tokio::time::Instant;

use crate::admission::recovery::{SkipReason, StuckPod, Verdict, assess};
use crate::cluster::watch::ClusterCache;
use crate::controller::leader::Leadership;
use crate::telemetry::Metrics;

const FIELD_MANAGER: &str = "pullsecret-injector";
/// Stuck pods are assessed again this often, and at once whenever the snapshot changes.
const ASSESS_INTERVAL: Duration = Duration::from_secs(2);
/// First and last wait before retrying an eviction a PodDisruptionBudget refused.
const REFUSED_BACKOFF: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(300));

/// How long a pod must stay recoverable before it is evicted: the secret that makes it so is
/// new, and every webhook replica's watch must have it before the replacement is admitted, or
/// the replacement is created without it and stuck again.
const SETTLE: Duration = Duration::from_secs(2);

/// An eviction call that takes longer is given up (and not retried for that pod).
const EVICTION_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct RecoveryConfig {
    /// Never recovered (besides kube-system).
    pub own_namespace: Option<String>,
    /// At most one eviction per this interval, cluster-wide.
    pub eviction_interval: Duration,
}

// ---------------------------------------------------------------------------------------------
// The loop on the Lease holder

/// Where a tracked pod stands.
#[derive(Debug, Clone, PartialEq)]
enum Progress {
    /// Not acted on; the last verdict's skip reason, so a skip is counted once.
    Waiting(Option<SkipReason>),
    /// A PodDisruptionBudget refused the eviction; retry at `at`, then wait `backoff` more.
    Refused { at: Instant, backoff: Duration },
    /// Evicted, or (bare pod) told: done for this UID.
    Done,
}

struct Tracked {
    pod: StuckPod,
    progress: Progress,
    /// Since when the verdict has been to evict, without a skip in between.
    recoverable_since: Option<Instant>,
}

struct Recovery {
    client: Client,
    /// For evictions: without the client's own retries, which would repeat a refused (429)
    /// eviction for minutes instead of reporting it.
    evictions: Client,
    cache: Arc<ClusterCache>,
    metrics: Metrics,
    recorder: Recorder,
    config: RecoveryConfig,
    tracked: HashMap<String, Tracked>,
    /// UIDs seen during each relist (per namespace in namespaced mode), to drop the pods
    /// that went while the watch was down.
    relisting: HashMap<Option<String>, Vec<String>>,
    last_eviction: Option<Instant>,
}

/// Runs recovery whenever `leading` is true, until the process ends.
pub async fn run(
    client: Client,
    evictions: Client,
    cache: Arc<ClusterCache>,
    metrics: Metrics,
    config: RecoveryConfig,
    identity: String,
    mut leadership: Leadership,
) {
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: Some(identity),
    };
    let mut recovery = Recovery {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        evictions,
        cache,
        metrics,
        config,
        tracked: HashMap::new(),
        relisting: HashMap::new(),
        last_eviction: None,
    };
    while leadership.acquired().await {
        tracing::info!("leading: recovering pods stuck on pulls");
        // Dropped, with any eviction in flight, the moment the term ends.
        leadership.while_leading(recovery.run_while_leading()).await;
        recovery.tracked.clear();
        recovery.metrics.stuck_pods.set(0);
        tracing::info!("stopped recovering pods");
    }
}

impl Recovery {
    async fn run_while_leading(&mut self) {
        // One watch per namespace in namespaced mode, so pods are read only there.
        let watches = self
            .cache
            .scope()
            .apis::<Pod>(&self.client)
            .into_iter()
            .map(|(namespace, pods)| {
                watcher(pods, watcher::Config::default())
                    .default_backoff()
                    .map(move |event| (namespace.clone(), event))
                    .boxed()
            });
        let mut events = futures::stream::select_all(watches);
        let mut snapshots = self.cache.snapshot_changes();
        let mut ticks = tokio::time::interval(ASSESS_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some((namespace, Ok(event))) => self.observe(namespace, event),
                    Some((_, Err(error))) => {
                        tracing::warn!(%error, "pod watch failed; retrying");
                        self.metrics.observe_watch_error("pods");
                    }
                    None => return,
                },
                _ = snapshots.changed() => self.act().await,
                _ = ticks.tick() => self.act().await,
            }
        }
    }

    /// An event of the pod watch of `namespace` (`None`: the cluster-wide watch).
    fn observe(&mut self, namespace: Option<String>, event: WatchEvent<Pod>) {
        match event {
            WatchEvent::Init => {
                self.relisting.insert(namespace, Vec::new());
            }
            WatchEvent::InitApply(pod) => {
                if let Some(seen) = self.relisting.get_mut(&namespace)
                    && let Some(uid) = &pod.metadata.uid
                {
                    seen.push(uid.clone());
                }
                self.track(&pod);
            }
            WatchEvent::InitDone => {
                if let Some(seen) = self.relisting.remove(&namespace) {
                    let seen: std::collections::HashSet<String> = seen.into_iter().collect();
                    // A namespace's list says nothing about other namespaces' pods.
                    self.tracked.retain(|uid, tracked| {
                        namespace
                            .as_deref()
                            .is_some_and(|listed| listed != tracked.pod.namespace)
                            || seen.contains(uid)
                    });
                }
            }
            WatchEvent::Apply(pod) => self.track(&pod),
            WatchEvent::Delete(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.tracked.remove(uid);
                }
            }
        }
        self.metrics.stuck_pods.set(self.tracked.len() as i64);
    }

    fn track(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        match StuckPod::from_pod(pod) {
            Some(stuck) => {
                self.tracked
                    .entry(uid)
                    .and_modify(|tracked| tracked.pod = stuck.clone())
                    .or_insert(Tracked {
                        pod: stuck,
                        progress: Progress::Waiting(None),
                        recoverable_since: None,
                    });
            }
            None => {
                self.tracked.remove(&uid);
            }
        }
    }

    /// Assesses every tracked pod that may be acted on, and acts.
    async fn act(&mut self) {
        if !self.cache.is_synced() {
            return;
        }
        let state = self.cache.snapshot();
        let now = Instant::now();
        let uids: Vec<String> = self
            .tracked
            .iter()
            .filter(|(_, tracked)| match tracked.progress {
                Progress::Waiting(_) => true,
                Progress::Refused { at, .. } => at <= now,
                Progress::Done => false,
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in uids {
            let Some(tracked) = self.tracked.get(&uid) else {
                continue;
            };
            let verdict = assess(&tracked.pod, &state, self.config.own_namespace.as_deref());
            match verdict {
                Verdict::Skip(reason) => {
                    if tracked.progress != Progress::Waiting(Some(reason)) {
                        self.metrics.observe_recovery_skipped(reason.label());
                        tracing::debug!(pod = %tracked.pod.name, namespace = %tracked.pod.namespace, reason = reason.label(), "stuck pod left alone");
                    }
                    if let Some(tracked) = self.tracked.get_mut(&uid) {
                        tracked.progress = Progress::Waiting(Some(reason));
                        tracked.recoverable_since = None;
                    }
                }
                Verdict::Recover {
                    secrets,
                    images,
                    evict: false,
                } => {
                    let pod = tracked.pod.clone();
                    self.report_bare(&pod, &secrets, &images).await;
                    self.finish(&uid);
                }
                Verdict::Recover {
                    secrets,
                    images,
                    evict: true,
                } => {
                    let pod = tracked.pod.clone();
                    let previous = tracked.progress.clone();
                    let settled = self.tracked.get_mut(&uid).is_some_and(|tracked| {
                        now >= *tracked.recoverable_since.get_or_insert(now) + SETTLE
                    });
                    let rate_limited = self
                        .last_eviction
                        .is_some_and(|at| now < at + self.config.eviction_interval);
                    if !settled || rate_limited {
                        continue;
                    }
                    self.last_eviction = Some(Instant::now());
                    self.evict(&uid, &pod, &secrets, &images, previous).await;
                }
            }
        }
    }

    fn finish(&mut self, uid: &str) {
        if let Some(tracked) = self.tracked.get_mut(uid) {
            tracked.progress = Progress::Done;
        }
    }

    async fn evict(
        &mut self,
        uid: &str,
        pod: &StuckPod,
        secrets: &[String],
        images: &[String],
        previous: Progress,
    ) {
        let api: Api<Pod> = Api::namespaced(self.evictions.clone(), &pod.namespace);
        let why = format!(
            "{} would now be injected for {}, which cannot be pulled",
            secrets.join(", "),
            images.join(", ")
        );
        let eviction = tokio::time::timeout(
            EVICTION_TIMEOUT,
            api.evict(&pod.name, &EvictParams::default()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(kube::Error::Service(
                format!("no answer within {EVICTION_TIMEOUT:?}").into(),
            ))
        });
        match eviction {
            Ok(_) => {
                self.metrics.observe_recovery("evicted");
                let owner = pod.owner.as_ref().map(|o| format!("{} {}", o.kind, o.name));
                tracing::info!(pod = %pod.name, namespace = %pod.namespace, owner = owner.as_deref().unwrap_or(""), secrets = %secrets.join(","), "evicted a pod stuck on a pull; its replacement gets the secret");
                let note = format!("evicted: {why}; the replacement gets it at admission");
                self.publish(pod, EventType::Normal, "PullSecretRecovery", "Evict", &note)
                    .await;
                self.finish(uid);
            }
            Err(kube::Error::Api(status)) if status.code == 429 => {
                let backoff = match previous {
                    Progress::Refused { backoff, .. } => (backoff * 2).min(REFUSED_BACKOFF.1),
                    _ => REFUSED_BACKOFF.0,
                };
                self.metrics.observe_recovery("refused_by_pdb");
                tracing::warn!(pod = %pod.name, namespace = %pod.namespace, retry_in = ?backoff, message = %status.message, "eviction refused (PodDisruptionBudget); retrying later");
                let note = format!(
                    "eviction refused ({}); retrying in {}s: {why}",
                    status.message,
                    backoff.as_secs()
                );
                self.publish(
                    pod,
                    EventType::Warning,
                    "PullSecretRecoveryRefused",
                    "Evict",
                    &note,
                )
                .await;
                if let Some(tracked) = self.tracked.get_mut(uid) {
                    tracked.progress = Progress::Refused {
                        at: Instant::now() + backoff,
                        backoff,
                    };
                }
            }
            Err(error) => {
                // Gone already, or forbidden: reported, and not retried for this UID.
                self.metrics.observe_recovery("failed");
                tracing::warn!(pod = %pod.name, namespace = %pod.namespace, %error, "cannot evict a pod stuck on a pull");
                self.finish(uid);
            }
        }
    }

    async fn report_bare(&mut self, pod: &StuckPod, secrets: &[String], images: &[String]) {
        self.metrics.observe_recovery("reported");
        tracing::info!(pod = %pod.name, namespace = %pod.namespace, secrets = %secrets.join(","), "a bare pod stuck on a pull would get a secret if recreated");
        let note = format!(
            "{} would now be injected for {}; a pod cannot gain pull secrets, so recreate it: kubectl get pod -n {} {} -o yaml | kubectl replace --force -f -",
            secrets.join(", "),
            images.join(", "),
            pod.namespace,
            pod.name
        );
        self.publish(
            pod,
            EventType::Warning,
            "PullSecretAvailable",
            "Report",
            &note,
        )
        .await;
    }

    /// An Event on the pod and, when it has one, on its owner.
    async fn publish(
        &self,
        pod: &StuckPod,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let reference = |api_version: &str, kind: &str, name: &str, uid: &str| ObjectReference {
            api_version: Some(api_version.to_owned()),
            kind: Some(kind.to_owned()),
            name: Some(name.to_owned()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(uid.to_owned()),
            ..ObjectReference::default()
        };
        let mut targets = vec![reference("v1", "Pod", &pod.name, &pod.uid)];
        if let Some(owner) = &pod.owner {
            targets.push(reference(
                &owner.api_version,
                &owner.kind,
                &owner.name,
                &owner.uid,
            ));
        }
        for target in targets {
            let event = Event {
                type_,
                reason: reason.to_owned(),
                note: Some(format!("pod {}: {note}", pod.name)),
                action: action.to_owned(),
                secondary: None,
            };
            if let Err(error) = self.recorder.publish(&event, &target).await {
                tracing::warn!(%error, "cannot publish a recovery Event");
            }
        }
    }
}
