//! Leader election with a `coordination.k8s.io/v1` Lease: one replica writes, all serve.
//!
//! The holder renews `renewTime` every `renew_interval`. Another replica takes the Lease only
//! once it has seen the same record unchanged for `lease_duration` on its own clock (so clock
//! skew between nodes does not matter), and a leader that cannot renew within the duration
//! steps down before anyone else can take over. Writes use the Lease's resourceVersion, so two
//! candidates never both win. On shutdown the leader releases the Lease for a fast handover.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::telemetry::Metrics;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name in `holderIdentity`.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
}

/// The last Lease record seen, and when (on this replica's clock) it last changed.
struct Observed {
    record: (Option<String>, Option<MicroTime>),
    since: Instant,
}

pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
    last_renewal: Option<Instant>,
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Elector {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            last_renewal: None,
        }
    }

    /// Runs the election until `stop` turns true, publishing leadership on `leader`; then
    /// releases the Lease if held.
    pub async fn run(
        mut self,
        leader: watch::Sender<bool>,
        mut stop: watch::Receiver<bool>,
        metrics: Metrics,
    ) {
        let mut ticks = tokio::time::interval(self.config.renew_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
            let leading = match self.try_acquire_or_renew().await {
                Ok(leading) => leading,
                Err(error) => {
                    tracing::warn!(%error, lease = %self.config.name, "lease update failed");
                    // Keep leading only while the last renewal is still within the duration.
                    self.last_renewal
                        .is_some_and(|at| at.elapsed() < self.config.lease_duration * 2 / 3)
                }
            };
            if !leading {
                self.last_renewal = None;
            }
            if *leader.borrow() != leading {
                tracing::info!(identity = %self.config.identity, lease = %self.config.name, leading, "leadership changed");
                metrics.leader.set(i64::from(leading));
            }
            leader.send_if_modified(|current| std::mem::replace(current, leading) != leading);
        }
        if *leader.borrow() {
            leader.send_replace(false);
            metrics.leader.set(0);
            if let Err(error) = self.release().await {
                tracing::warn!(%error, "cannot release the lease");
            }
        }
    }

    /// One round: true when this replica holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration_seconds = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration_seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return self.write(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = (holder.clone(), spec.renew_time.clone());
        let observed_since = match &self.observed {
            Some(observed) if observed.record == record => observed.since,
            _ => {
                if let Some(holder) = holder.as_deref().filter(|h| *h != self.config.identity)
                    && self
                        .observed
                        .as_ref()
                        .is_none_or(|o| o.record.0 != record.0)
                {
                    tracing::info!(holder, lease = %self.config.name, "lease held by another replica");
                }
                Instant::now()
            }
        };
        self.observed = Some(Observed {
            record,
            since: observed_since,
        });
        let mine = holder.as_deref() == Some(self.config.identity.as_str());
        let held_for = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        let expired = holder.is_none() || observed_since.elapsed() >= held_for;
        if !mine && !expired {
            return Ok(false);
        }
        if !mine {
            spec.holder_identity = Some(self.config.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(duration_seconds);
        spec.renew_time = Some(now);
        let result = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await;
        self.write(result)
    }

    fn write(&mut self, result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
        match result {
            Ok(_) => {
                self.last_renewal = Some(Instant::now());
                Ok(true)
            }
            // Someone else wrote first: not ours this round.
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Hands the Lease over at once: no holder, so the next candidate takes it on its next round.
    async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}
