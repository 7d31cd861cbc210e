//! What a reconcile found, as the resource's status, conditions and Events.

use super::*;

/// What a reconcile achieved, namespace by namespace.
#[derive(Debug, Default)]
pub(super) struct Report {
    /// Namespaces holding an up-to-date copy.
    pub(super) served: Vec<String>,
    pub(super) conflicts: Vec<NamespaceProblem>,
    pub(super) failures: Vec<NamespaceProblem>,
    /// Copies kept although their namespace no longer seems selected: the namespace cache
    /// cannot confirm it yet.
    pub(super) deferred: Vec<String>,
    /// Whether the namespace watch was in sync.
    pub(super) namespaces_in_sync: bool,
    /// Namespaced mode: copies are made only in the namespaces this injector serves.
    pub(super) namespaced: bool,
    /// Namespaced mode: the source is in a namespace this injector does not serve.
    pub(super) source_out_of_scope: bool,
}

impl Report {
    pub(super) fn failed(
        &mut self,
        context: &Context,
        resource: &ClusterPullSecret,
        namespace: &str,
        failed: Failed,
    ) {
        context.metrics.observe_copy_failure(failed.failure.label());
        tracing::warn!(
            cluster_pull_secret = %resource.name_any(),
            namespace,
            reason = %failed.reason(),
            "copy not written; retrying with backoff"
        );
        self.failures.push(NamespaceProblem {
            namespace: namespace.to_owned(),
            reason: failed.reason(),
        });
    }

    /// The Ready condition: (status, reason, message).
    pub(super) fn readiness(
        &self,
        resource: &ClusterPullSecret,
        source_found: bool,
    ) -> (bool, &'static str, String) {
        let target = resource.target_name();
        if self.source_out_of_scope {
            return (
                false,
                "SourceOutOfScope",
                format!(
                    "source Secret {}/{} is in a namespace this injector does not serve (namespaced mode): it is never read",
                    resource.spec.source.namespace, resource.spec.source.name
                ),
            );
        }
        if !source_found {
            return (
                false,
                "SourceNotFound",
                format!(
                    "source Secret {}/{} does not exist or is not a registry-credential Secret",
                    resource.spec.source.namespace, resource.spec.source.name
                ),
            );
        }
        if !self.failures.is_empty() {
            return (
                false,
                "CopyFailed",
                format!(
                    "the copy {target} could not be written in {} namespaces (see status.failures); retrying with backoff",
                    self.failures.len()
                ),
            );
        }
        if !self.namespaces_in_sync || !self.deferred.is_empty() {
            return (
                false,
                "NamespacesOutOfSync",
                format!(
                    "the namespace cache is behind the API server: which namespaces match may be stale, and deleting the copies in {} namespaces is deferred until it has caught up",
                    self.deferred.len()
                ),
            );
        }
        if !self.conflicts.is_empty() {
            return (
                false,
                "Conflict",
                format!(
                    "{} namespaces have a Secret named {target} that this resource does not manage",
                    self.conflicts.len()
                ),
            );
        }
        let scope = if self.namespaced {
            " (namespaced mode: only the namespaces this injector serves are copied to)"
        } else {
            ""
        };
        (
            true,
            "Synced",
            format!(
                "copy {target} is up to date in {} namespaces{scope}",
                self.served.len()
            ),
        )
    }
}

/// The Ready condition when the minted credential decides it: never minted, not ours, or
/// expired. A failing refresh of a valid credential leaves Ready to the copies.
pub(super) fn minted_readiness(minted: &MintReport) -> Option<(bool, &'static str, String)> {
    let (_, reason, message) = &minted.condition;
    match minted.state {
        MintState::Fresh | MintState::RefreshFailing => None,
        MintState::Expired => Some((false, "CredentialExpired", message.clone())),
        MintState::NotMinted | MintState::Conflict | MintState::Refused => {
            Some((false, reason, message.clone()))
        }
    }
}

/// An Event and a log line for each conflict or failure the status does not list yet.
pub(super) async fn report_new_problems(
    context: &Context,
    resource: &ClusterPullSecret,
    report: &Report,
) {
    let previous = resource.status.clone().unwrap_or_default();
    let conflicts = report
        .conflicts
        .iter()
        .filter(|c| !previous.conflicts.contains(c))
        .map(|c| ("Conflict", c));
    let failures = report
        .failures
        .iter()
        .filter(|f| !previous.failures.contains(f))
        .map(|f| ("CopyFailed", f));
    for (reason, problem) in conflicts.chain(failures).take(EVENT_LIMIT) {
        if reason == "Conflict" {
            tracing::warn!(
                cluster_pull_secret = %resource.name_any(),
                namespace = %problem.namespace,
                reason = %problem.reason,
                "conflict: not overwriting a Secret this resource does not manage"
            );
        }
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: Some(format!(
                "namespace {}: {}",
                problem.namespace, problem.reason
            )),
            action: "CopySecret".to_owned(),
            // Also keeps the namespaces apart: the recorder folds Events with the same
            // reason, action and objects into one series.
            secondary: Some(ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Namespace".to_owned()),
                name: Some(problem.namespace.clone()),
                ..ObjectReference::default()
            }),
        };
        if let Err(error) = context
            .recorder
            .publish(&event, &resource.object_ref(&()))
            .await
        {
            tracing::warn!(%error, "cannot publish the Event");
        }
    }
}

/// A condition of `type_`, its transition time carried over from `previous` while its status
/// stays the same.
pub(super) fn condition(
    previous: &ClusterPullSecretStatus,
    type_: &str,
    (ready, reason, message): (bool, &str, String),
    generation: Option<i64>,
) -> Condition {
    let status_text = if ready { "True" } else { "False" };
    let last_transition_time = previous
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .filter(|c| c.status == status_text)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| {
            k8s_openapi::jiff::Timestamp::now()
                .round(k8s_openapi::jiff::Unit::Second)
                .map(|t| t.to_string())
                .unwrap_or_default()
        });
    Condition {
        type_: type_.to_owned(),
        status: status_text.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

pub(super) async fn update_status(
    context: &Context,
    resource: &ClusterPullSecret,
    report: Report,
    ready: (bool, &str, String),
    minted: Option<&MintReport>,
) -> Result<(), ReconcileError> {
    let previous = resource.status.clone().unwrap_or_default();
    let generation = resource.metadata.generation;
    let mut conditions = vec![condition(&previous, "Ready", ready, generation)];
    if let Some(minted) = minted {
        conditions.push(condition(
            &previous,
            minting::CONDITION,
            minted.condition.clone(),
            generation,
        ));
    }
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let capped = |mut list: Vec<NamespaceProblem>| {
        list.truncate(STATUS_LIST_LIMIT);
        list
    };
    let status = ClusterPullSecretStatus {
        observed_generation: generation,
        conditions,
        namespace_count: count(report.served.len()),
        namespaces: report.served.into_iter().take(STATUS_LIST_LIMIT).collect(),
        conflict_count: count(report.conflicts.len()),
        conflicts: capped(report.conflicts),
        failure_count: count(report.failures.len()),
        failures: capped(report.failures),
        credential: minted.map(|minted| minted.status.clone()),
    };
    if status == previous {
        return Ok(());
    }
    let api: Api<ClusterPullSecret> = Api::all(context.client.clone());
    match api
        .patch_status(
            &resource.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status_patch(resource, &status)),
        )
        .await
    {
        Ok(_) => {
            context.metrics.observe_write("status");
            Ok(())
        }
        // Changed since it was read: its watch event reconciles the newer object.
        Err(kube::Error::Api(status)) if status.is_conflict() => {
            tracing::debug!(cluster_pull_secret = %resource.name_any(), "status changed since it was read; not overwritten");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// The status write, conditional on the resourceVersion this reconcile read: a stale view (a
/// replica whose term ended, a reconcile that raced a newer one) gets 409 instead of
/// overwriting a newer status.
pub(super) fn status_patch(
    resource: &ClusterPullSecret,
    status: &ClusterPullSecretStatus,
) -> serde_json::Value {
    json!({
        "metadata": {"resourceVersion": resource.resource_version()},
        "status": status,
    })
}
