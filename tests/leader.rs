//! Leader election against a stand-in API server (tests/support/apiserver.rs) that can hang or
//! throttle one replica's Lease calls on demand: takeover after the holder stops renewing,
//! a term that ends on its own clock whatever the calls do, release on shutdown, and no
//! write after the term ended.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use prometheus_client::registry::Registry;
use pullsecret_injector::controller::leader::{Elector, Leadership, LeaseConfig, Term};
use pullsecret_injector::telemetry::Metrics;
use tokio::sync::watch;
use tokio::time::Instant;

use support::apiserver::{Apiserver, Fault, Listener};

/// Long enough that a loaded machine schedules well within a third of it.
const LEASE: Duration = Duration::from_secs(6);
/// Guards against a test that would otherwise wait forever; never reached when it passes.
const GUARD: Duration = Duration::from_secs(90);

struct Replica {
    name: &'static str,
    leadership: Leadership,
    release: watch::Sender<bool>,
    election: tokio::task::JoinHandle<()>,
}

fn replica(name: &'static str, via: &Listener) -> Replica {
    let config = LeaseConfig {
        namespace: "default".to_owned(),
        name: "controller".to_owned(),
        identity: name.to_owned(),
        lease_duration: LEASE,
    };
    let (terms, term) = watch::channel(Term::Follower);
    let (release, released) = watch::channel(false);
    let metrics = Metrics::new(&mut Registry::default());
    let election = tokio::spawn(Elector::new(via.client(), config).run(terms, released, metrics));
    Replica {
        name,
        leadership: Leadership::new(term),
        release,
        election,
    }
}

async fn guarded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen"))
}

impl Replica {
    async fn leads(&mut self) {
        let name = self.name;
        assert!(guarded(&format!("{name} leading"), self.leadership.acquired()).await);
    }
}

/// The holder's Lease calls hang (or are throttled): its term ends before the other replica
/// takes the Lease over, and the other one does take it.
async fn takeover(fault: Fault) {
    let apiserver = Apiserver::new();
    let (via_a, via_b) = (apiserver.listen("a").await, apiserver.listen("b").await);
    let mut a = replica("a", &via_a);
    a.leads().await;
    let mut b = replica("b", &via_b);
    // b has seen a's record before a's calls fail.
    let seen = apiserver.writes().len();
    guarded("a renewal b can observe", async {
        while apiserver.writes().len() < seen + 2 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    via_a.set_fault(fault);
    guarded("a's term to end", a.leadership.lost()).await;
    let a_stopped = Instant::now();
    assert!(!a.leadership.is_leading());
    b.leads().await;
    let b_took_over = apiserver
        .first("lease holder=b")
        .expect("b's acquiring write");
    assert!(
        a_stopped < b_took_over,
        "a still led when b took the Lease over ({fault:?})"
    );
    assert_eq!(apiserver.holder().as_deref(), Some("b"));
    a.election.abort();
    b.election.abort();
}

#[tokio::test]
async fn the_holder_whose_renewals_hang_steps_down_before_the_takeover() {
    takeover(Fault::Hang).await;
}

#[tokio::test]
async fn the_holder_whose_renewals_are_throttled_steps_down_before_the_takeover() {
    takeover(Fault::Throttle).await;
}

/// On shutdown the holder ends its term, then releases the Lease, and the other replica takes
/// it over without waiting for the lease to run out.
#[tokio::test]
async fn release_on_shutdown_hands_the_lease_over() {
    let apiserver = Apiserver::new();
    let (via_a, via_b) = (apiserver.listen("a").await, apiserver.listen("b").await);
    let mut a = replica("a", &via_a);
    a.leads().await;
    let mut b = replica("b", &via_b);

    a.release.send(true).expect("release");
    guarded("a's election to end", &mut a.election)
        .await
        .expect("election task");
    assert!(!a.leadership.is_leading());
    b.leads().await;
    let writes: Vec<String> = apiserver.writes().into_iter().map(|w| w.what).collect();
    let released = writes
        .iter()
        .position(|what| what == "lease holder=-")
        .expect("a released the Lease");
    let taken = writes
        .iter()
        .position(|what| what == "lease holder=b")
        .expect("b took the Lease");
    assert!(released < taken, "{writes:?}");
    assert!(
        writes[..released]
            .iter()
            .all(|what| what == "lease holder=a"),
        "{writes:?}"
    );
    b.election.abort();
}

/// Writes made through [`Leadership::while_leading`] (as every controller reconcile is) stop
/// when the term ends, also while the apiserver still accepts them and the Lease calls hang:
/// none lands after the other replica took over.
#[tokio::test]
async fn no_write_lands_after_the_lease_is_lost() {
    let apiserver = Apiserver::new();
    let (via_a, via_b) = (apiserver.listen("a").await, apiserver.listen("b").await);
    let writes_a = apiserver.listen("a-writes").await;
    let mut a = replica("a", &via_a);
    a.leads().await;
    let mut b = replica("b", &via_b);

    let config_maps: Api<ConfigMap> = Api::namespaced(writes_a.client(), "default");
    let writer = {
        let leadership = a.leadership.clone();
        tokio::spawn(async move {
            let writing = async {
                for n in 0.. {
                    let object = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(format!("write-{n}")),
                            ..ObjectMeta::default()
                        },
                        ..ConfigMap::default()
                    };
                    config_maps
                        .create(&PostParams::default(), &object)
                        .await
                        .expect("write");
                    // Pacing: a controller writes now and then, not in a busy loop.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            leadership.while_leading(writing).await
        })
    };
    guarded("a first write", async {
        while !apiserver.writes().iter().any(|w| w.via == "a-writes") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    via_a.set_fault(Fault::Hang);
    let stopped = guarded("the writer to stop", writer).await.expect("writer");
    assert_eq!(stopped, None, "the writes ended with the term");
    b.leads().await;
    let b_took_over = apiserver.first("lease holder=b").expect("b took over");
    let writes = apiserver.writes();
    let last_write = writes
        .iter()
        .filter(|w| w.via == "a-writes")
        .map(|w| w.at)
        .max()
        .expect("writes");
    assert!(last_write < b_took_over, "a wrote after b took the Lease");
    a.election.abort();
    b.election.abort();
}
