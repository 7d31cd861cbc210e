//! Leader election with a `coordination.k8s.io/v1` Lease: one replica writes, all serve.
//!
//! For a lease duration `D` (15 s by default):
//!
//! - a candidate takes the Lease only once it has seen the same record unchanged for `D` on its
//!   own clock (so clock skew between nodes does not matter): no earlier than `D` after the
//!   holder's last successful renewal *started*;
//! - the holder renews every `D/5`; each renewal that succeeds starts a *term* that ends
//!   `2D/3` after the renewal started ([`LeaseConfig::renew_deadline`]);
//! - every Lease call is bounded by the time left in the term (kube's client has no read
//!   timeout and retries 429/503/504 for minutes), and the term ends on a timer at its
//!   deadline whatever the calls are doing ([`Term`], [`Leadership::lost`]);
//!
//! so the holder stops writing at least `D/3` before anyone else can take over. Writes to the
//! Lease carry its resourceVersion, so two candidates never both win. On shutdown the holder
//! releases the Lease for a fast handover, once the controller has stopped writing.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::telemetry::Metrics;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name in `holderIdentity`.
    pub identity: String,
    /// How long a holder that stopped renewing keeps the Lease.
    pub lease_duration: Duration,
}

impl LeaseConfig {
    /// How long a term lasts after the start of the renewal that began it.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }

    /// How often the holder renews and a candidate looks at the Lease.
    pub fn retry_period(&self) -> Duration {
        self.lease_duration / 5
    }
}

/// What the elector publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    Follower,
    /// Leading; every write must have ended by `until`, when the term ends unless renewed.
    Leading {
        until: Instant,
    },
}

/// This replica's view of the election, for the code that writes.
#[derive(Debug, Clone)]
pub struct Leadership(watch::Receiver<Term>);

impl Leadership {
    pub fn new(terms: watch::Receiver<Term>) -> Leadership {
        Leadership(terms)
    }

    /// Whether this replica leads right now (its term has not run out).
    pub fn is_leading(&self) -> bool {
        matches!(*self.0.borrow(), Term::Leading { until } if Instant::now() < until)
    }

    /// Waits until this replica starts a term that has not run out; false when the election
    /// has ended.
    pub async fn acquired(&mut self) -> bool {
        self.0
            .wait_for(|term| matches!(term, Term::Leading { until } if Instant::now() < *until))
            .await
            .is_ok()
    }

    /// Returns when the term ends: the elector stepped down, or the deadline passed without a
    /// renewal (whatever the elector is doing), or the election ended.
    pub async fn lost(&self) {
        let mut terms = self.0.clone();
        loop {
            let term = *terms.borrow_and_update();
            let Term::Leading { until } = term else {
                return;
            };
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                changed = terms.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Runs `work` only while leading: `None` when not leading, or when the term ended first
    /// (then `work` is dropped at that moment, with whatever call it was making).
    pub async fn while_leading<F: Future>(&self, work: F) -> Option<F::Output> {
        if !self.is_leading() {
            return None;
        }
        tokio::select! {
            biased;
            () = self.lost() => None,
            output = work => Some(output),
        }
    }
}

/// The last Lease record seen, and when (on this replica's clock) it last changed.
struct Observed {
    record: (Option<String>, Option<MicroTime>),
    since: std::time::Instant,
}

pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Elector {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    /// Runs the election, publishing each term on `terms`, until `release` turns true; then
    /// ends the term and hands the Lease over if held. The caller sends `release` only once
    /// nothing writes any more.
    pub async fn run(
        mut self,
        terms: watch::Sender<Term>,
        mut release: watch::Receiver<bool>,
        metrics: Metrics,
    ) {
        let mut ticks = tokio::time::interval(self.config.retry_period());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut term = Term::Follower;
        loop {
            let deadline = match term {
                Term::Leading { until } => Some(until),
                Term::Follower => None,
            };
            tokio::select! {
                _ = ticks.tick() => {}
                _ = release.wait_for(|release| *release) => break,
                () = sleep_until(deadline) => {
                    tracing::warn!(lease = %self.config.name, "lease not renewed in time: stepping down");
                    term = self.publish(&terms, Term::Follower, &metrics);
                    continue;
                }
            }
            let started = Instant::now();
            // A follower's calls get one term's length.
            let bound = deadline.unwrap_or(started + self.config.renew_deadline());
            let attempt = tokio::select! {
                attempt = tokio::time::timeout_at(bound, self.try_acquire_or_renew()) => attempt,
                _ = release.wait_for(|release| *release) => break,
            };
            let next = match attempt {
                Ok(Ok(true)) => Term::Leading {
                    until: started + self.config.renew_deadline(),
                },
                Ok(Ok(false)) => Term::Follower,
                Ok(Err(error)) => {
                    tracing::warn!(%error, lease = %self.config.name, "lease update failed");
                    // The deadline, not the error, ends a term.
                    term
                }
                Err(_) => {
                    tracing::warn!(lease = %self.config.name, "lease call did not finish within the term");
                    Term::Follower
                }
            };
            term = self.publish(&terms, next, &metrics);
        }
        if matches!(term, Term::Leading { .. }) {
            self.publish(&terms, Term::Follower, &metrics);
            let bound = self.config.renew_deadline();
            match tokio::time::timeout(bound, self.release()).await {
                Ok(Ok(())) => tracing::info!(lease = %self.config.name, "lease released"),
                Ok(Err(error)) => tracing::warn!(%error, "cannot release the lease"),
                Err(_) => tracing::warn!("the lease release did not finish in time"),
            }
        }
    }

    fn publish(&self, terms: &watch::Sender<Term>, next: Term, metrics: &Metrics) -> Term {
        let leading = matches!(next, Term::Leading { .. });
        let was_leading = matches!(*terms.borrow(), Term::Leading { .. });
        if leading != was_leading {
            tracing::info!(identity = %self.config.identity, lease = %self.config.name, leading, "leadership changed");
            metrics.leader.set(i64::from(leading));
        }
        terms.send_replace(next);
        next
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
            return won(self.api.create(&PostParams::default(), &lease).await);
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
                std::time::Instant::now()
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
        won(self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await)
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

/// Whether a write of the Lease won it.
fn won(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        // Someone else wrote first: not ours this round.
        Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leadership() -> (watch::Sender<Term>, Leadership) {
        let (terms, receiver) = watch::channel(Term::Follower);
        (terms, Leadership::new(receiver))
    }

    #[test]
    fn a_term_ends_a_third_of_the_lease_before_anyone_can_take_over() {
        let config = LeaseConfig {
            namespace: "ns".to_owned(),
            name: "lease".to_owned(),
            identity: "me".to_owned(),
            lease_duration: Duration::from_secs(15),
        };
        assert_eq!(config.renew_deadline(), Duration::from_secs(10));
        assert_eq!(config.retry_period(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn work_runs_only_while_leading_and_stops_when_the_term_runs_out() {
        let (terms, leadership) = leadership();
        assert_eq!(leadership.while_leading(async { "written" }).await, None);

        let until = Instant::now() + Duration::from_secs(10);
        terms.send_replace(Term::Leading { until });
        assert!(leadership.is_leading());
        assert_eq!(
            leadership.while_leading(async { "written" }).await,
            Some("written")
        );
        // A write that would still be going at the deadline is dropped at the deadline, even
        // though no one published anything: the timer ends the term.
        let hanging = leadership.while_leading(std::future::pending::<()>());
        assert_eq!(hanging.await, None);
        assert_eq!(Instant::now(), until);
        assert!(!leadership.is_leading());
    }

    /// A term whose deadline passed before the elector stepped down is no term to start on.
    #[tokio::test(start_paused = true)]
    async fn an_expired_term_is_not_acquired() {
        use futures::FutureExt;
        let (terms, mut leadership) = leadership();
        let until = Instant::now() + Duration::from_secs(10);
        terms.send_replace(Term::Leading { until });
        assert_eq!(leadership.acquired().now_or_never(), Some(true));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(leadership.acquired().now_or_never(), None);
        terms.send_replace(Term::Follower);
        terms.send_replace(Term::Leading {
            until: Instant::now() + Duration::from_secs(10),
        });
        assert_eq!(leadership.acquired().now_or_never(), Some(true));
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewed_term_keeps_work_going_and_a_step_down_stops_it() {
        let (terms, leadership) = leadership();
        let start = Instant::now();
        terms.send_replace(Term::Leading {
            until: start + Duration::from_secs(10),
        });
        let renewing = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            terms.send_replace(Term::Leading {
                until: start + Duration::from_secs(15),
            });
            tokio::time::sleep(Duration::from_secs(7)).await;
            terms.send_replace(Term::Follower);
        };
        let work = leadership.while_leading(std::future::pending::<()>());
        let (stopped, ()) = tokio::join!(work, renewing);
        assert_eq!(stopped, None);
        assert_eq!(Instant::now(), start + Duration::from_secs(12));
    }
}
