//! Whether the apiserver can call this replica: the served certificate must chain to a CA in
//! the caBundle of the webhook configuration that points at it. The configuration is read
//! every [`CHECK_INTERVAL`] and after every certificate reload; the answer goes to `/readyz`
//! (a replica the apiserver cannot call leaves the Service's endpoints, so the apiserver is
//! sent to replicas it trusts) and to `pullsecret_injector_certificate_trusted`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI8, Ordering};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::Api;
use rustls::crypto::CryptoProvider;
use tokio::sync::watch;

use crate::server::tls::CertificateStore;
use crate::telemetry::Metrics;

pub const CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// The last verdict: -1 unknown, 0 not trusted, 1 trusted.
#[derive(Debug)]
pub struct Trust(AtomicI8);

impl Default for Trust {
    fn default() -> Trust {
        Trust(AtomicI8::new(-1))
    }
}

impl Trust {
    /// Only a definite "not signed by the caBundle" counts: an unreadable or empty
    /// configuration (cert-manager injects the bundle after the install) is not a reason to
    /// stop serving.
    pub fn is_untrusted(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }

    fn set(&self, verdict: Option<bool>, metrics: &Metrics) {
        let value = verdict.map_or(-1, i8::from);
        self.0.store(value, Ordering::Release);
        metrics.certificate_trusted.set(i64::from(value));
    }
}

/// The PEM bundle the apiserver uses to call the webhooks of `configuration`: all their
/// caBundles concatenated (the chart registers one webhook).
fn ca_bundle(configuration: &MutatingWebhookConfiguration) -> Vec<u8> {
    configuration
        .webhooks
        .iter()
        .flatten()
        .filter_map(|webhook| webhook.client_config.ca_bundle.as_ref())
        .flat_map(|bundle| bundle.0.iter().copied().chain([b'\n']))
        .collect()
}

/// The verdict for one read of the configuration.
pub fn verdict(
    store: &CertificateStore,
    configuration: &MutatingWebhookConfiguration,
    provider: &Arc<CryptoProvider>,
) -> Option<bool> {
    store.signed_by(&ca_bundle(configuration), provider)
}

pub async fn run(
    client: kube::Client,
    name: String,
    store: Arc<CertificateStore>,
    provider: Arc<CryptoProvider>,
    trust: Arc<Trust>,
    metrics: Metrics,
    mut reloaded: watch::Receiver<u64>,
) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    let mut last: Option<Option<bool>> = None;
    let mut error_reported = false;
    loop {
        let now = match api.get_opt(&name).await {
            Ok(Some(configuration)) => {
                error_reported = false;
                verdict(&store, &configuration, &provider)
            }
            Ok(None) => None,
            Err(error) => {
                if !error_reported {
                    tracing::warn!(%error, configuration = %name, "cannot read the webhook configuration to check that the apiserver trusts the served certificate");
                    error_reported = true;
                }
                None
            }
        };
        if last != Some(now) {
            match now {
                Some(false) => {
                    tracing::error!(configuration = %name, "the served certificate is not signed by a CA in the webhook configuration's caBundle: the apiserver cannot call this replica (reporting unready)")
                }
                Some(true) => {
                    tracing::info!(configuration = %name, "the served certificate is signed by a CA in the webhook configuration's caBundle")
                }
                None => {}
            }
            last = Some(now);
        }
        trust.set(now, &metrics);
        tokio::select! {
            _ = tokio::time::sleep(CHECK_INTERVAL) => {}
            changed = reloaded.changed() => {
                if changed.is_err() {
                    // The certificate watcher is gone: keep checking on the timer.
                    tokio::time::sleep(CHECK_INTERVAL).await;
                }
            }
        }
    }
}
