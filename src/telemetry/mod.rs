//! Logging setup and the Prometheus metrics, all under the `pullsecret_injector_` prefix.
//!
//! No metric label or log field ever carries a credential: labels are fixed outcome names,
//! the namespace name of the shadow-mode counter and of the pods the per-namespace counters
//! count (injected secrets, images without a match).
//!
//! May use `admission` (the review outcomes it counts) and the layers below it.

use std::sync::atomic::AtomicU64;

use clap::ValueEnum;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::admission::audit::{Finding, FindingKind};
use crate::admission::review::{Outcome, Reviewed};

mod json;
mod process;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// Checks a log filter more strictly than tracing does: a bare word must be a level, and every
/// `target=level` directive must name a level. (To tracing, `debgu` is a valid filter that
/// enables the target `debgu` only, which silently turns every log line off.)
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    use std::str::FromStr;
    use tracing_subscriber::filter::LevelFilter;
    let is_level =
        |word: &str| !word.trim().is_empty() && LevelFilter::from_str(word.trim()).is_ok();
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        // `target[span{field=value}]=level`: the level follows the last `=` outside brackets.
        let mut depth = 0usize;
        let mut level_at = None;
        for (index, c) in directive.char_indices() {
            match c {
                '[' | '{' => depth += 1,
                ']' | '}' => depth = depth.saturating_sub(1),
                '=' if depth == 0 => level_at = Some(index),
                _ => {}
            }
        }
        let bad = match level_at {
            Some(index) => !is_level(&directive[index + 1..]),
            // A bare module path or span filter enables it at every level; a bare word must
            // be a level.
            None => !directive.contains("::") && !directive.contains('[') && !is_level(directive),
        };
        if bad {
            return Err(format!(
                "{directive:?} is not a log level (use error, warn, info, debug, trace or off, or target=level)"
            ));
        }
    }
    EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// Installs the global tracing subscriber, writing to stderr. `level` is an env-filter
/// directive such as `info` or `pullsecret_injector=debug,kube=info`.
pub fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    // Colour only for a person at a terminal, never into files or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_logging_to(format, level, std::io::stderr, ansi)
}

/// [`init_logging`] into another writer (benchmarks log into a file, as a container runtime
/// would).
pub fn init_logging_to<W>(
    format: LogFormat,
    level: &str,
    writer: W,
    ansi: bool,
) -> anyhow::Result<()>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    check_log_filter(level).map_err(|error| anyhow::anyhow!("--log-level: {error}"))?;
    let filter = EnvFilter::try_new(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    let result = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder
            .fmt_fields(json::JsonFields)
            .event_format(json::JsonLines)
            .try_init(),
    };
    result.map_err(|error| anyhow::anyhow!("cannot install the logger: {error}"))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The one family labelled by a name: how many namespaces are in shadow mode is up to the
/// admin, and each is one they chose to watch.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    namespace: String,
    outcome: &'static str,
}

/// The namespace of the reviewed pod. Named `pod_namespace`, not `namespace`: Prometheus
/// scrapes the injector with a `namespace` target label of its own (the injector's), and a
/// series' `namespace` would be renamed `exported_namespace` under it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PodNamespaceLabel {
    pod_namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    kind: &'static str,
    severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The resources whose watches count errors (`pods` only with the pod recovery).
pub const WATCHED_RESOURCES: [&str; 5] = [
    "secrets",
    "namespaces",
    "pullsecretrules",
    "clusterpullsecrets",
    "pods",
];

/// The reasons a webhook TLS handshake fails, as counted (see `server::tls`).
pub const HANDSHAKE_FAILURE_REASONS: [&str; 11] = [
    "bad_certificate",
    "unknown_ca",
    "decrypt_error",
    "certificate_expired",
    "other_alert",
    "incompatible",
    "invalid_message",
    "other",
    "eof",
    "io",
    "timeout",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabel {
    watch: &'static str,
}

/// Every metric the server exports. Cheap to clone (the metric types are `Arc`s inside).
#[derive(Clone, Debug)]
pub struct Metrics {
    reviews: Family<OutcomeLabel, Counter>,
    shadow_reviews: Family<ShadowLabels, Counter>,
    rejected_requests: Family<ReasonLabel, Counter>,
    review_duration: Histogram,
    secrets_injected: Family<PodNamespaceLabel, Counter>,
    images_without_match: Family<PodNamespaceLabel, Counter>,
    review_warnings: Counter,
    invalid_images: Counter,
    undecodable_encounters: Counter,
    pub cached_secrets: Gauge,
    pub cached_namespaces: Gauge,
    pub undecodable_secrets: Gauge,
    pub certificate_expiry: Gauge<f64, AtomicU64>,
    certificate_reloads: Family<ResultLabel, Counter>,
    /// 1 when the served certificate chains to a CA of the webhook configuration's caBundle,
    /// 0 when it does not, -1 while that is not known.
    pub certificate_trusted: Gauge,
    tls_handshake_failures: Family<ReasonLabel, Counter>,
    watch_errors: Family<ResourceLabel, Counter>,
    watch_in_sync: Family<WatchLabel, Gauge>,
    watch_last_sync: Family<WatchLabel, Gauge>,
    pub ready: Gauge,
    /// Request-body bytes reserved by requests in flight, and the most there may be.
    pub body_bytes_in_flight: Gauge,
    pub body_budget_bytes: Gauge,
    /// Webhook connections open, from accept to close (the handshake included).
    pub webhook_connections: Gauge,
    /// Times the webhook listener had `--max-connections` open and left new clients waiting.
    pub connection_limit_reached: Counter,
    /// 1 while this replica holds the controller's Lease.
    pub leader: Gauge,
    controller_writes: Family<OperationLabel, Counter>,
    copy_failures: Family<ReasonLabel, Counter>,
    reconcile_errors: Counter,
    /// Unix time of the controller's last completed reconcile.
    pub controller_last_sync: Gauge<f64, AtomicU64>,
    pub cluster_pull_secrets: Gauge,
    recoveries: Family<OutcomeName, Counter>,
    recoveries_skipped: Family<ReasonName, Counter>,
    /// Pods the recovery currently tracks (waiting on a failed pull).
    pub stuck_pods: Gauge,
    audit_findings: Family<FindingLabels, Gauge>,
    /// Unix time the controller's last complete audit finished.
    pub audit_last_run: Gauge<f64, AtomicU64>,
    credential_refreshes: Family<OutcomeName, Counter>,
    credential_expiry: Family<CredentialName, Gauge<f64, AtomicU64>>,
}

/// The outcomes of a credential provider plugin run (`PluginError::label` and `success`).
pub const REFRESH_OUTCOMES: [&str; 10] = [
    "success",
    "config",
    "refused",
    "not_found",
    "timeout",
    "output_too_large",
    "exit",
    "invalid_response",
    "not_cacheable",
    "write_failed",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialName {
    cluster_pull_secret: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeName {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonName {
    reason: &'static str,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            reviews: Family::default(),
            shadow_reviews: Family::default(),
            rejected_requests: Family::default(),
            // Sub-millisecond buckets: a decision takes microseconds.
            review_duration: Histogram::new([
                0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05,
            ]),
            secrets_injected: Family::default(),
            images_without_match: Family::default(),
            review_warnings: Counter::default(),
            invalid_images: Counter::default(),
            undecodable_encounters: Counter::default(),
            cached_secrets: Gauge::default(),
            cached_namespaces: Gauge::default(),
            undecodable_secrets: Gauge::default(),
            certificate_expiry: Gauge::default(),
            certificate_reloads: Family::default(),
            certificate_trusted: Gauge::default(),
            tls_handshake_failures: Family::default(),
            watch_errors: Family::default(),
            watch_in_sync: Family::default(),
            watch_last_sync: Family::default(),
            ready: Gauge::default(),
            body_bytes_in_flight: Gauge::default(),
            body_budget_bytes: Gauge::default(),
            webhook_connections: Gauge::default(),
            connection_limit_reached: Counter::default(),
            leader: Gauge::default(),
            controller_writes: Family::default(),
            copy_failures: Family::default(),
            reconcile_errors: Counter::default(),
            controller_last_sync: Gauge::default(),
            cluster_pull_secrets: Gauge::default(),
            recoveries: Family::default(),
            recoveries_skipped: Family::default(),
            stuck_pods: Gauge::default(),
            audit_findings: Family::default(),
            audit_last_run: Gauge::default(),
            credential_refreshes: Family::default(),
            credential_expiry: Family::default(),
        };
        registry.register_collector(Box::new(process::ProcessCollector));
        let r = registry.sub_registry_with_prefix("pullsecret_injector");
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register(
            "build_info",
            "Always 1; the label version is the injector's version",
            build_info,
        );
        r.register(
            "reviews",
            "Admission reviews answered, by outcome (injected, unchanged, opted_out, shadow, not_applicable, unreadable_pod)",
            metrics.reviews.clone(),
        );
        r.register(
            "audit_findings",
            "Findings of the controller's last pull audit, by kind and severity",
            metrics.audit_findings.clone(),
        );
        r.register(
            "audit_last_run_timestamp_seconds",
            "When the controller's last pull audit finished, as a Unix time; 0 before the first",
            metrics.audit_last_run.clone(),
        );
        r.register(
            "shadow_reviews",
            "Pods admitted in shadow mode, by namespace and whether secrets would have been injected",
            metrics.shadow_reviews.clone(),
        );
        r.register(
            "rejected_requests",
            "Webhook requests refused before a review could be read, by reason",
            metrics.rejected_requests.clone(),
        );
        r.register(
            "review_duration_seconds",
            "Time to read, decide and encode one review",
            metrics.review_duration.clone(),
        );
        r.register(
            "secrets_injected",
            "Pull secret references appended to pods, by the pod's namespace",
            metrics.secrets_injected.clone(),
        );
        r.register(
            "images_without_match",
            "Valid images for which no cached pull secret matched, by the pod's namespace",
            metrics.images_without_match.clone(),
        );
        r.register(
            "review_warnings",
            "Warnings returned to the client with admission reviews (one per warning)",
            metrics.review_warnings.clone(),
        );
        r.register(
            "invalid_images",
            "Images that are not valid references",
            metrics.invalid_images.clone(),
        );
        r.register(
            "undecodable_secret_encounters",
            "Times a review ran into a pull secret the kubelet cannot decode",
            metrics.undecodable_encounters.clone(),
        );
        r.register(
            "cached_secrets",
            "Registry-credential secrets in the cache",
            metrics.cached_secrets.clone(),
        );
        r.register(
            "cached_namespaces",
            "Namespaces in the cache",
            metrics.cached_namespaces.clone(),
        );
        r.register(
            "undecodable_secrets",
            "Cached registry-credential secrets the kubelet cannot decode",
            metrics.undecodable_secrets.clone(),
        );
        r.register(
            "certificate_expiry_timestamp_seconds",
            "Expiry (notAfter) of the serving certificate, as a Unix timestamp",
            metrics.certificate_expiry.clone(),
        );
        r.register(
            "certificate_reloads",
            "Serving certificate reloads, by result (success, failure)",
            metrics.certificate_reloads.clone(),
        );
        r.register(
            "certificate_trusted",
            "1 when the served certificate is signed by a CA in the webhook configuration's caBundle, 0 when it is not (the apiserver cannot call this replica), -1 when unknown (no --webhook-configuration, no caBundle, or the configuration cannot be read)",
            metrics.certificate_trusted.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "Failed TLS handshakes on the webhook port, by reason (bad_certificate, unknown_ca, decrypt_error, certificate_expired: the client does not trust the served certificate; other_alert, incompatible, invalid_message, other, eof, io, timeout)",
            metrics.tls_handshake_failures.clone(),
        );
        r.register(
            "watch_errors",
            "Errors from the Kubernetes watches, by resource (secrets, namespaces, pullsecretrules, clusterpullsecrets, pods)",
            metrics.watch_errors.clone(),
        );
        r.register(
            "watch_in_sync",
            "1 while the watch has applied a complete list and not failed since, by watch",
            metrics.watch_in_sync.clone(),
        );
        r.register(
            "watch_last_sync_timestamp_seconds",
            "When the watch last applied a complete list (Unix time; 0 before the first), by watch",
            metrics.watch_last_sync.clone(),
        );
        r.register(
            "ready",
            "1 when the webhook reports ready",
            metrics.ready.clone(),
        );
        r.register(
            "request_body_bytes_in_flight",
            "Request-body bytes held by webhook requests in flight",
            metrics.body_bytes_in_flight.clone(),
        );
        r.register(
            "request_body_budget_bytes",
            "The most request-body bytes webhook requests may hold at once (--max-body-bytes-in-flight)",
            metrics.body_budget_bytes.clone(),
        );
        r.register(
            "webhook_connections",
            "Webhook connections open",
            metrics.webhook_connections.clone(),
        );
        r.register(
            "connection_limit_reached",
            "Times the webhook had --max-connections open and new clients waited in the accept queue",
            metrics.connection_limit_reached.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the ClusterPullSecret controller's Lease",
            metrics.leader.clone(),
        );
        r.register(
            "controller_writes",
            "Writes by the ClusterPullSecret controller, by operation (create, update, delete, status)",
            metrics.controller_writes.clone(),
        );
        r.register(
            "controller_copy_failures",
            "Copies the ClusterPullSecret controller could not write or delete in a namespace, by reason (quota, terminating, namespace_not_found, forbidden, invalid, conflict, other)",
            metrics.copy_failures.clone(),
        );
        r.register(
            "controller_reconcile_errors",
            "ClusterPullSecret reconciles that failed and were retried",
            metrics.reconcile_errors.clone(),
        );
        r.register(
            "controller_last_sync_timestamp_seconds",
            "When the ClusterPullSecret controller last completed a reconcile (each resource is resynced every 10 minutes), as a Unix timestamp; 0 before the first",
            metrics.controller_last_sync.clone(),
        );
        r.register(
            "cluster_pull_secrets",
            "ClusterPullSecrets in the cache",
            metrics.cluster_pull_secrets.clone(),
        );
        r.register(
            "pod_recoveries",
            "Pods stuck on a pull that a secret now fixes: evicted, reported (bare pods), refused_by_pdb (retried), failed",
            metrics.recoveries.clone(),
        );
        r.register(
            "pod_recoveries_skipped",
            "Stuck pods left alone, by reason (protected_namespace, opted_out, no_new_secret, shadow: the namespace is in shadow mode)",
            metrics.recoveries_skipped.clone(),
        );
        r.register(
            "stuck_pods",
            "Pods with a container waiting on a failed pull, tracked by the recovery (Lease holder only)",
            metrics.stuck_pods.clone(),
        );
        r.register(
            "credential_refreshes",
            "Runs of credential provider plugins for ClusterPullSecrets, by outcome (success, config, refused, not_found, timeout, output_too_large, exit, invalid_response, not_cacheable, write_failed)",
            metrics.credential_refreshes.clone(),
        );
        r.register(
            "credential_expiry_timestamp_seconds",
            "Expiry of each minted credential (label cluster_pull_secret), as a Unix timestamp; seconds until expiry = this - time()",
            metrics.credential_expiry.clone(),
        );
        for outcome in REFRESH_OUTCOMES {
            let _ = metrics
                .credential_refreshes
                .get_or_create(&OutcomeName { outcome });
        }
        for outcome in ["evicted", "reported", "refused_by_pdb", "failed"] {
            let _ = metrics.recoveries.get_or_create(&OutcomeName { outcome });
        }
        for reason in [
            "quota",
            "terminating",
            "namespace_not_found",
            "forbidden",
            "invalid",
            "conflict",
            "other",
        ] {
            let _ = metrics.copy_failures.get_or_create(&ReasonLabel { reason });
        }
        for watch in [
            "dockerconfigjson_secrets",
            "dockercfg_secrets",
            "namespaces",
            "pullsecretrules",
            "clusterpullsecrets",
        ] {
            let _ = metrics.watch_in_sync.get_or_create(&WatchLabel { watch });
            let _ = metrics.watch_last_sync.get_or_create(&WatchLabel { watch });
        }
        for reason in [
            "protected_namespace",
            "opted_out",
            "no_new_secret",
            "shadow",
        ] {
            let _ = metrics
                .recoveries_skipped
                .get_or_create(&ReasonName { reason });
        }
        for operation in ["create", "update", "delete", "status"] {
            let _ = metrics
                .controller_writes
                .get_or_create(&OperationLabel { operation });
        }
        for outcome in [
            Outcome::Injected,
            Outcome::Unchanged,
            Outcome::OptedOut,
            Outcome::Shadow,
            Outcome::NotApplicable,
            Outcome::UnreadablePod,
        ] {
            let _ = metrics.reviews.get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            });
        }
        for kind in FindingKind::ALL {
            let _ = metrics.audit_findings.get_or_create(&FindingLabels {
                kind: kind.as_str(),
                severity: kind.severity().as_str(),
            });
        }
        metrics.certificate_trusted.set(-1);
        for reason in HANDSHAKE_FAILURE_REASONS {
            let _ = metrics
                .tls_handshake_failures
                .get_or_create(&ReasonLabel { reason });
        }
        // Present from the start at 0: the PullSecretInjectorWatchErrors alert reads them.
        for resource in WATCHED_RESOURCES {
            let _ = metrics
                .watch_errors
                .get_or_create(&ResourceLabel { resource });
        }
        for result in ["success", "failure"] {
            let _ = metrics
                .certificate_reloads
                .get_or_create(&ResultLabel { result });
        }
        metrics
    }

    pub fn observe_review(&self, reviewed: &Reviewed, seconds: f64) {
        self.reviews
            .get_or_create(&OutcomeLabel {
                outcome: reviewed.outcome.label(),
            })
            .inc();
        self.review_duration.observe(seconds);
        let decision = &reviewed.decision;
        let pod_namespace = PodNamespaceLabel {
            pod_namespace: reviewed.namespace.clone(),
        };
        if reviewed.outcome == Outcome::Shadow {
            // Nothing was appended: what would have been is the shadow counter's.
            self.observe_shadow(&reviewed.namespace, !decision.injected.is_empty());
        } else if !decision.injected.is_empty() {
            self.secrets_injected
                .get_or_create(&pod_namespace)
                .inc_by(decision.injected.len() as u64);
        }
        if decision.images_without_match > 0 {
            self.images_without_match
                .get_or_create(&pod_namespace)
                .inc_by(decision.images_without_match as u64);
        }
        self.review_warnings
            .inc_by(reviewed.response.warnings.len() as u64);
        self.invalid_images.inc_by(decision.invalid_images as u64);
        self.undecodable_encounters
            .inc_by(decision.undecodable_secrets as u64);
    }

    /// The findings of one complete audit, counted by kind (every kind set, zero included).
    pub fn observe_audit(&self, findings: &[Finding]) {
        for kind in FindingKind::ALL {
            let count = findings.iter().filter(|f| f.kind == kind).count();
            self.audit_findings
                .get_or_create(&FindingLabels {
                    kind: kind.as_str(),
                    severity: kind.severity().as_str(),
                })
                .set(count as i64);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |elapsed| elapsed.as_secs_f64());
        self.audit_last_run.set(now);
    }

    /// A pod admitted in shadow mode in `namespace`: `would_inject` when the decision chose
    /// secrets it lacks (`outcome="would_inject"`, else `"nothing_to_inject"`).
    pub fn observe_shadow(&self, namespace: &str, would_inject: bool) {
        let outcome = if would_inject {
            "would_inject"
        } else {
            "nothing_to_inject"
        };
        self.shadow_reviews
            .get_or_create(&ShadowLabels {
                namespace: namespace.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn observe_rejected(&self, reason: &'static str) {
        self.rejected_requests
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn observe_certificate_reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.certificate_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn observe_handshake_failure(&self, reason: &'static str) {
        self.tls_handshake_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Failed handshakes counted for `reason` so far.
    pub fn handshake_failures(&self, reason: &'static str) -> u64 {
        self.tls_handshake_failures
            .get_or_create(&ReasonLabel { reason })
            .get()
    }

    pub fn observe_write(&self, operation: &'static str) {
        self.controller_writes
            .get_or_create(&OperationLabel { operation })
            .inc();
    }

    pub fn observe_copy_failure(&self, reason: &'static str) {
        self.copy_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn observe_credential_refresh(&self, outcome: &'static str) {
        self.credential_refreshes
            .get_or_create(&OutcomeName { outcome })
            .inc();
    }

    /// The expiry of a ClusterPullSecret's minted credential (Unix seconds); `None` removes it.
    pub fn set_credential_expiry(&self, cluster_pull_secret: &str, expiry: Option<f64>) {
        let label = CredentialName {
            cluster_pull_secret: cluster_pull_secret.to_owned(),
        };
        match expiry {
            Some(seconds) => {
                self.credential_expiry.get_or_create(&label).set(seconds);
            }
            None => {
                self.credential_expiry.remove(&label);
            }
        }
    }

    pub fn observe_recovery(&self, outcome: &'static str) {
        self.recoveries
            .get_or_create(&OutcomeName { outcome })
            .inc();
    }

    pub fn observe_recovery_skipped(&self, reason: &'static str) {
        self.recoveries_skipped
            .get_or_create(&ReasonName { reason })
            .inc();
    }

    pub fn observe_reconcile_error(&self) {
        self.reconcile_errors.inc();
    }

    pub fn observe_watch_sync(&self, watch: &'static str, in_sync: bool, last_sync: Option<u64>) {
        let label = WatchLabel { watch };
        self.watch_in_sync
            .get_or_create(&label)
            .set(i64::from(in_sync));
        self.watch_last_sync
            .get_or_create(&label)
            .set(last_sync.map_or(0, |at| i64::try_from(at).unwrap_or(i64::MAX)));
    }

    pub fn observe_reconcile_completed(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |elapsed| elapsed.as_secs_f64());
        self.controller_last_sync.set(now);
    }

    pub fn observe_watch_error(&self, resource: &'static str) {
        self.watch_errors
            .get_or_create(&ResourceLabel { resource })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::{Metrics, check_log_filter};
    use crate::admission::decision::{Decision, Injection};
    use crate::admission::review::{Outcome, ResponseReview, Reviewed};
    use crate::state::snapshot::Mode;

    fn reviewed(namespace: &str, outcome: Outcome, decision: Decision) -> Reviewed {
        Reviewed {
            response: ResponseReview {
                uid: "uid".to_owned(),
                allowed: true,
                patch: None,
                audit_annotations: Default::default(),
                warnings: decision.warnings.clone(),
            },
            uid: "uid".to_owned(),
            namespace: namespace.to_owned(),
            pod: "web".to_owned(),
            operation: "CREATE",
            outcome,
            decision,
        }
    }

    fn injection(secret: &str) -> Injection {
        Injection {
            secret: secret.to_owned(),
            registries: vec!["registry.example.com".to_owned()],
        }
    }

    /// Injections and images without a match are counted per pod namespace, a namespace gets a
    /// series only once something happened there (no series per namespace merely seen), shadow
    /// reviews inject nothing, and every warning returned is counted.
    #[test]
    fn per_namespace_counters_and_warnings() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::new(&mut registry);
        let injected = Decision {
            injected: vec![injection("a"), injection("b")],
            images_without_match: 1,
            warnings: vec!["one".to_owned(), "two".to_owned()],
            ..Decision::default()
        };
        metrics.observe_review(&reviewed("shop", Outcome::Injected, injected), 0.0);
        let nothing = Decision::default();
        metrics.observe_review(&reviewed("quiet", Outcome::Unchanged, nothing), 0.0);
        let shadow = Decision {
            injected: vec![injection("a")],
            mode: Mode::Shadow,
            ..Decision::default()
        };
        metrics.observe_review(&reviewed("trial", Outcome::Shadow, shadow), 0.0);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for line in [
            r#"pullsecret_injector_secrets_injected_total{pod_namespace="shop"} 2"#,
            r#"pullsecret_injector_images_without_match_total{pod_namespace="shop"} 1"#,
            "pullsecret_injector_review_warnings_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        for absent in [r#"pod_namespace="quiet""#, r#"pod_namespace="trial""#] {
            assert!(!text.contains(absent), "{absent} in:\n{text}");
        }
    }

    #[test]
    fn log_filters_must_name_levels() {
        for good in [
            "info",
            "DEBUG",
            "off",
            "pullsecret_injector=debug,info",
            "kube=warn,pullsecret_injector::controller=trace",
            "pullsecret_injector::server",
            "pullsecret_injector[review{uid=abc}]=debug",
        ] {
            assert_eq!(check_log_filter(good), Ok(()), "{good}");
        }
        for bad in [
            "debgu",
            "info,warnn",
            "pullsecret_injector=verbose",
            "kube=",
        ] {
            let error = check_log_filter(bad).expect_err(bad);
            assert!(error.contains("is not a log level"), "{bad}: {error}");
        }
    }
}
