//! The ClusterPullSecret controller's shutdown against a stand-in API server
//! (tests/support/apiserver.rs): the Lease is released once the controller has stopped, also
//! when it is stopped before it could ever list its resources.

mod support;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use pullsecret_injector::cluster::watch::{self, ClusterCache};
use pullsecret_injector::controller::cluster_pull_secret;
use pullsecret_injector::controller::leader::LeaseConfig;
use pullsecret_injector::telemetry::Metrics;
use tokio::sync::watch as channel;

use support::apiserver::Apiserver;

const GUARD: Duration = Duration::from_secs(60);

#[tokio::test]
async fn stopped_before_its_first_list_the_controller_ends_and_releases_the_lease() {
    let apiserver = Apiserver::new();
    let listener = apiserver.listen("serve").await;
    // No ClusterPullSecret can be listed (the cache counts that as none; the controller's own
    // store never becomes ready).
    listener.missing("clusterpullsecrets");
    let cache = Arc::new(ClusterCache::default());
    let metrics = Metrics::new(&mut Registry::default());
    tokio::spawn(watch::run(
        listener.client(),
        Arc::clone(&cache),
        metrics.clone(),
    ));
    let lease = LeaseConfig {
        namespace: "default".to_owned(),
        name: "controller".to_owned(),
        identity: "serve".to_owned(),
        lease_duration: Duration::from_secs(6),
    };
    let (stop, stopped) = channel::channel(false);
    // The term as the elector publishes it: the Lease written is not yet a term it knows of.
    let (terms, term) = channel::channel(pullsecret_injector::controller::leader::Term::Follower);
    let controller = tokio::spawn(cluster_pull_secret::run(
        listener.client(),
        Arc::clone(&cache),
        metrics,
        lease,
        cluster_pull_secret::Options {
            plugins: pullsecret_injector::controller::credential_provider::Plugins::new(
                None,
                pullsecret_injector::controller::credential_provider::ProviderSource::Fixed(
                    Vec::new(),
                ),
                Duration::from_secs(60),
            ),
            limiter: pullsecret_injector::controller::rate_limit::RateLimiter::unlimited(),
        },
        terms,
        stopped,
    ));
    tokio::time::timeout(GUARD, async {
        let leading = || {
            matches!(
                *term.borrow(),
                pullsecret_injector::controller::leader::Term::Leading { .. }
            )
        };
        while !(cache.is_synced() && apiserver.holder().as_deref() == Some("serve") && leading()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("leading with the cache synced");

    stop.send(true).expect("stop");
    tokio::time::timeout(GUARD, controller)
        .await
        .expect("the controller stopped")
        .expect("controller task");
    assert_eq!(apiserver.holder(), None, "the Lease was released");
    assert!(
        apiserver
            .writes()
            .iter()
            .any(|w| w.what == "lease holder=-"),
        "{:?}",
        apiserver.writes()
    );
}
