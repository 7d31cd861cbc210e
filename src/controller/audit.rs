//! The pull audit on a schedule (`--audit-interval`): the Lease holder lists every workload,
//! checks it against the webhook's own snapshot (the same findings as `pullsecret-injector
//! audit`), sets `pullsecret_injector_audit_findings` and publishes an Event on the workload
//! for each error or warning finding that is new since the last audit.
//!
//! Read-only on workloads: it lists Pods, Deployments, StatefulSets, DaemonSets, Jobs and
//! CronJobs, and writes only Events. An Event is readable by whoever may read Events in the
//! workload's namespace, so it never names another namespace's Secrets (the audit's own output
//! and the log do).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::admission::audit::{Finding, FindingKind, Severity};
use crate::cluster::live::{self, LiveWorkload};
use crate::cluster::watch::ClusterCache;
use crate::controller::leader::Leadership;
use crate::controller::rate_limit::RateLimiter;
use crate::telemetry::Metrics;

/// The Reporter of the audit's Events, as the controller's other Events.
const FIELD_MANAGER: &str = "pullsecret-injector";
/// The Event reason of an audit finding.
pub const EVENT_REASON: &str = "PullAudit";

/// What identifies a finding from one audit to the next, so its Event is published once.
type FindingKey = (
    String,
    String,
    String,
    &'static str,
    Option<String>,
    Vec<String>,
);

fn key(finding: &Finding) -> FindingKey {
    (
        finding.workload.namespace.clone(),
        finding.workload.kind.clone(),
        finding.workload.name.clone(),
        finding.kind.as_str(),
        finding.image.clone(),
        finding.secrets.clone(),
    )
}

/// Audits every `interval` while this replica leads, until the process ends; an audit is
/// dropped the moment the term ends.
pub async fn run(
    client: Client,
    cache: Arc<ClusterCache>,
    metrics: Metrics,
    interval: Duration,
    limiter: RateLimiter,
    identity: String,
    mut leadership: Leadership,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(identity),
        },
    );
    // Findings already reported; a new term starts afresh (the Events of another replica's
    // term may be gone, and repeating one per term is cheap).
    while leadership.acquired().await {
        let mut reported: HashSet<FindingKey> = HashSet::new();
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if leadership.while_leading(ticks.tick()).await.is_none() {
                break;
            }
            let pass = audit_once(
                &client,
                &cache,
                &metrics,
                &recorder,
                &limiter,
                &mut reported,
            );
            match leadership.while_leading(pass).await {
                None => break,
                Some(Err(error)) => {
                    tracing::warn!(%error, "cannot list workloads for the pull audit; trying again later");
                }
                Some(Ok(())) => {}
            }
        }
    }
}

async fn audit_once(
    client: &Client,
    cache: &ClusterCache,
    metrics: &Metrics,
    recorder: &Recorder,
    limiter: &RateLimiter,
    reported: &mut HashSet<FindingKey>,
) -> Result<(), kube::Error> {
    // In namespaced mode, only the served namespaces, each with a call of its own (a Role in
    // each is all the access the audit has).
    let workloads = match cache.scope().namespaces() {
        None => live::list_workloads(client, None).await?,
        Some(namespaces) => {
            let mut all = Vec::new();
            for namespace in namespaces {
                all.extend(live::list_workloads(client, Some(namespace)).await?);
            }
            all
        }
    };
    let findings = live::audit_workloads(&workloads, &cache.snapshot(), Timestamp::now());
    metrics.observe_audit(&findings);
    let current: HashSet<FindingKey> = findings.iter().map(key).collect();
    // By identity, not a search per finding: thousands of findings over thousands of
    // workloads made that search quadratic.
    let by_identity: HashMap<(&str, &str, &str), &LiveWorkload> = workloads
        .iter()
        .map(|w| ((w.kind, w.namespace.as_str(), w.name.as_str()), w))
        .collect();
    for finding in findings
        .iter()
        .filter(|finding| finding.severity >= Severity::Warning)
    {
        if reported.contains(&key(finding)) {
            continue;
        }
        let identity = (
            finding.workload.kind.as_str(),
            finding.workload.namespace.as_str(),
            finding.workload.name.as_str(),
        );
        let Some(workload) = by_identity.get(&identity) else {
            continue;
        };
        // A first audit of a large cluster may find thousands: they wait for the controller's
        // rate like its copies.
        limiter.acquire().await;
        publish(recorder, workload, finding).await;
    }
    tracing::info!(
        workloads = workloads.len(),
        findings = findings.len(),
        "pull audit done"
    );
    // A finding that went away and comes back is reported again.
    *reported = current;
    Ok(())
}

/// The note of a finding's Event, with the names of other namespaces' Secrets left out.
pub fn event_note(finding: &Finding) -> String {
    let message = match finding.kind {
        FindingKind::CredentialElsewhere => format!(
            "image {}: no secret of this namespace serves it, but {} Secrets of other namespaces do (named only by `pullsecret-injector audit`, not in this namespace's Events): secrets are namespaced (copy one, or use a ClusterPullSecret)",
            crate::text::quote(finding.image.as_deref().unwrap_or_default()),
            finding.secrets.len()
        ),
        _ => finding.message.clone(),
    };
    format!(
        "{} ({}): {message}",
        finding.kind.as_str(),
        finding.severity.as_str()
    )
}

async fn publish(recorder: &Recorder, workload: &LiveWorkload, finding: &Finding) {
    let reference = ObjectReference {
        api_version: Some(workload.api_version.to_owned()),
        kind: Some(workload.kind.to_owned()),
        name: Some(workload.name.clone()),
        namespace: Some(workload.namespace.clone()),
        uid: Some(workload.uid.clone()),
        ..ObjectReference::default()
    };
    let type_ = match finding.severity {
        Severity::Error | Severity::Warning => EventType::Warning,
        Severity::Info => EventType::Normal,
    };
    let event = Event {
        type_,
        reason: EVENT_REASON.to_owned(),
        note: Some(event_note(finding)),
        action: "Audit".to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &reference).await {
        tracing::warn!(%error, "cannot publish a pull audit Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::audit::WorkloadRef;
    use crate::state::snapshot::Mode;

    fn finding(kind: FindingKind, secrets: &[&str], message: &str) -> Finding {
        Finding {
            severity: Severity::Warning,
            kind,
            workload: WorkloadRef {
                kind: "Deployment".to_owned(),
                namespace: "shop".to_owned(),
                name: "web".to_owned(),
            },
            mode: Mode::On,
            image: Some("registry.example/app:1".to_owned()),
            secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
            message: message.to_owned(),
        }
    }

    #[test]
    fn events_never_name_other_namespaces_secrets() {
        let elsewhere = finding(
            FindingKind::CredentialElsewhere,
            &["kube-system/node-registry", "payments/registry"],
            "image \"registry.example/app:1\": ... but kube-system/node-registry, payments/registry in other namespaces do",
        );
        let note = event_note(&elsewhere);
        assert!(!note.contains("kube-system"), "{note}");
        assert!(!note.contains("node-registry"), "{note}");
        assert!(!note.contains("payments"), "{note}");
        assert!(note.contains("2 Secrets of other namespaces"), "{note}");
        assert!(
            note.starts_with("credential_elsewhere (warning): "),
            "{note}"
        );
        // Findings about the namespace's own Secrets keep their message.
        let missing = finding(
            FindingKind::MissingSecret,
            &["regcred"],
            "entry \"regcred\" is missing",
        );
        assert_eq!(
            event_note(&missing),
            "missing_secret (warning): entry \"regcred\" is missing"
        );
    }
}
