//! Keeping a ClusterPullSecret's source Secret minted by its credential provider plugin.
//!
//! The minted Secret is an ordinary `kubernetes.io/dockerconfigjson` Secret at `spec.source`,
//! labelled as managed and as minted for its ClusterPullSecret; from there the usual
//! replication copies it into the selected namespaces and the webhook injects it. Its
//! annotations carry when it was minted, when it expires, when to refresh it and a digest of
//! the provider and images it was minted with, so a new Lease holder continues the schedule
//! without running the plugin again, and a changed spec mints at once.
//!
//! Refreshes happen at about 80 % of the lifetime (75–85 %, spread per resource and mint);
//! a failure is retried with the controller's backoff (2 s doubling up to 5 min) and leaves the
//! last good credential in place. Past its expiry the expired credential is still kept (the
//! registry decides; a pod gets a warning and the status says Expired) until a refresh
//! succeeds. A Secret at `spec.source` that was not minted for this resource is never
//! overwritten: the minted Secret is ours only when it carries the owner label *and* an owner
//! reference to this resource's UID (which also lets the garbage collector remove it when the
//! resource is force-deleted). A credential past its expiry is refreshed whatever the Secret's
//! `refresh-at` annotation says (anyone who may edit Secrets there can edit it), and a lifetime
//! longer than Go's duration range is refused as the kubelet refuses it.
//! Reasons in the status, Events, logs and metrics never hold the credential:
//! plugin errors are fixed texts ([`PluginError`]), and the values of the last credential are
//! scrubbed from them as well.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp, Unit};
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};

use crate::controller::backoff::retry_delay;
use crate::controller::credential_provider::{Minted, PluginError, Plugins};
use crate::kubelet::dockerconfig::DOCKER_CONFIG_JSON_TYPE;
use crate::state::crd::{
    ClusterPullSecret, CredentialProvider, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    MintedCredentialStatus, SYSTEM_NAMESPACES,
};
use crate::telemetry::Metrics;

/// Label naming the ClusterPullSecret a minted source Secret belongs to.
pub const MINTED_FOR_LABEL: &str = "pullsecret-injector.io/minted-for";
const MINTED_AT: &str = "pullsecret-injector.io/minted-at";
const EXPIRES_AT: &str = "pullsecret-injector.io/expires-at";
const REFRESH_AT: &str = "pullsecret-injector.io/refresh-at";
const DIGEST: &str = "pullsecret-injector.io/minted-with";
/// The condition type a minted credential reports under.
pub const CONDITION: &str = "CredentialMinted";
/// A credential with no stated lifetime is refreshed this often.
const NO_LIFETIME_REFRESH: Duration = Duration::from_secs(600);
/// Never refresh more often than this, whatever lifetime a plugin claims.
const MIN_REFRESH: Duration = Duration::from_secs(5);
const FIELD_MANAGER: &str = "pullsecret-injector";

/// Where a minted credential stands after a refresh attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MintState {
    /// Minted and not expired; the last refresh (if any was due) succeeded.
    Fresh,
    /// Not expired, but the last refresh failed: the last good credential is in use.
    RefreshFailing,
    /// Past its expiry and not refreshed: the expired credential is kept.
    Expired,
    /// Never minted (no source Secret yet).
    NotMinted,
    /// `spec.source` names a Secret not minted for this resource.
    Conflict,
    /// The resource may not mint at all: it sets fields only the admin's configuration may
    /// set, or its source is in a namespace no minted Secret is written to.
    Refused,
}

impl MintState {
    /// Whether the Secret at `spec.source` must not be copied: it is not this resource's, or
    /// it was minted by a run the resource may not ask for.
    pub fn withdraws_copies(&self) -> bool {
        matches!(self, MintState::Conflict | MintState::Refused)
    }
}

/// The outcome of [`refresh`], for the status and the requeue.
#[derive(Debug, Clone)]
pub struct MintReport {
    pub state: MintState,
    /// The `CredentialMinted` condition: (status, reason, message).
    pub condition: (bool, &'static str, String),
    pub status: MintedCredentialStatus,
    /// When to look again.
    pub next: Duration,
}

/// Runs the plugin when the source Secret is missing, minted with another spec, or due for a
/// refresh (and no failure backoff is pending), writes the Secret, and reports.
pub async fn refresh(
    client: &Client,
    recorder: &Recorder,
    metrics: &Metrics,
    plugins: &Plugins,
    resource: &ClusterPullSecret,
    block: &CredentialProvider,
    own_namespace: Option<&str>,
) -> Result<MintReport, kube::Error> {
    let name = resource.name_any();
    let source = &resource.spec.source;
    if let Some((reason, message)) = refusal(resource, block, own_namespace) {
        tracing::warn!(cluster_pull_secret = %name, reason, %message, "credential provider refused; nothing runs");
        // Once per spec: the status keeps saying it, and an Event per resync would be noise.
        let spec_changed = resource.status.as_ref().and_then(|s| s.observed_generation)
            != resource.metadata.generation;
        if spec_changed {
            metrics.observe_credential_refresh("refused");
            publish(
                recorder,
                resource,
                EventType::Warning,
                reason,
                message.clone(),
            )
            .await;
        }
        return Ok(MintReport {
            state: MintState::Refused,
            condition: (false, reason, message),
            status: MintedCredentialStatus::default(),
            next: retry_delay(8),
        });
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), &source.namespace);
    let existing = api.get_opt(&source.name).await?;
    if let Some(secret) = &existing
        && !minted_for(secret, resource)
    {
        return Ok(MintReport {
            state: MintState::Conflict,
            condition: (
                false,
                "SourceNotMinted",
                format!(
                    "Secret {}/{} exists and was not minted for this ClusterPullSecret: it is never overwritten; delete it or name another source",
                    source.namespace, source.name
                ),
            ),
            status: MintedCredentialStatus::default(),
            next: retry_delay(8),
        });
    }
    let now = Timestamp::now();
    let previous = resource
        .status
        .as_ref()
        .and_then(|s| s.credential.clone())
        .unwrap_or_default();
    let resolved = plugins.resolve(block);
    let digest = resolved.as_ref().ok().map(|p| digest(p, block));
    let due =
        is_due(existing.as_ref(), digest.as_deref(), now) || expired_by_status(&previous, now);
    // A changed spec is tried at once; otherwise failures wait for their backoff.
    let spec_changed = resource.status.as_ref().and_then(|s| s.observed_generation)
        != resource.metadata.generation;
    let retry_at = previous
        .last_failure_at
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| after(t, backoff(previous.consecutive_failures)));
    let backing_off =
        !spec_changed && previous.consecutive_failures > 0 && retry_at.is_some_and(|t| t > now);

    let mut status = previous.clone();
    let mut secret = existing;
    if due && !backing_off {
        let outcome = match resolved {
            Ok(provider) => plugins.mint(&provider, &block.images).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(minted) => {
                let written = write(
                    &api,
                    resource,
                    secret.take(),
                    &minted,
                    digest.unwrap_or_default(),
                    now,
                )
                .await
                .inspect_err(|_| metrics.observe_credential_refresh("write_failed"))?;
                // Counted once the credential is where pods can use it.
                metrics.observe_credential_refresh("success");
                status = MintedCredentialStatus {
                    cache_key_type: Some(minted.cache_key_type.clone()),
                    ..MintedCredentialStatus::default()
                };
                let expires = written.annotations().get(EXPIRES_AT).cloned();
                tracing::info!(cluster_pull_secret = %name, expires_at = ?expires, "credential minted");
                publish(
                    recorder,
                    resource,
                    EventType::Normal,
                    "CredentialMinted",
                    format!(
                        "minted {} by {}; expires {}",
                        show(now),
                        block.name,
                        expires.as_deref().unwrap_or("never (no stated lifetime)")
                    ),
                )
                .await;
                secret = Some(written);
            }
            Err(error) => {
                metrics.observe_credential_refresh(error.label());
                let reason = scrub(&error, secret.as_ref());
                status.consecutive_failures = status.consecutive_failures.saturating_add(1);
                status.last_failure_at = Some(show(now));
                status.last_failure = Some(reason.clone());
                tracing::warn!(cluster_pull_secret = %name, provider = %block.name, %reason, failures = status.consecutive_failures, "credential refresh failed; keeping the last good credential");
                publish(
                    recorder,
                    resource,
                    EventType::Warning,
                    "RefreshFailed",
                    format!("credential provider {}: {reason}", block.name),
                )
                .await;
            }
        }
    }
    Ok(report(&name, metrics, secret.as_ref(), status, now))
}

/// Why `resource` may not run its provider at all, as (reason, message): it sets fields that
/// only the admin's CredentialProviderConfig sets, or its source is in a namespace where the
/// controller never creates a Secret (kube-system and the like, or the injector's own, where
/// a minted Secret could take a name the injector or another tool needs).
fn refusal(
    resource: &ClusterPullSecret,
    block: &CredentialProvider,
    own_namespace: Option<&str>,
) -> Option<(&'static str, String)> {
    let overrides = block.overrides();
    if !overrides.is_empty() {
        return Some((
            "ProviderOverridesRefused",
            PluginError::OverridesRefused(overrides.join(", ")).to_string(),
        ));
    }
    let namespace = resource.spec.source.namespace.as_str();
    if SYSTEM_NAMESPACES.contains(&namespace) || own_namespace == Some(namespace) {
        return Some((
            "SourceNamespaceReserved",
            format!(
                "a minted credential is never written into namespace {namespace} (a system namespace or the injector's own): name a source in another namespace"
            ),
        ));
    }
    None
}

/// The state, condition and next look from the Secret's annotations and the failure count.
fn report(
    name: &str,
    metrics: &Metrics,
    secret: Option<&Secret>,
    mut status: MintedCredentialStatus,
    now: Timestamp,
) -> MintReport {
    let at = |key: &str| {
        secret
            .and_then(|s| s.annotations().get(key))
            .and_then(|t| t.parse::<Timestamp>().ok())
    };
    let (minted, expires, refresh) = (at(MINTED_AT), at(EXPIRES_AT), at(REFRESH_AT));
    status.minted_at = minted.map(show);
    status.expires_at = expires.map(show);
    metrics.set_credential_expiry(name, expires.map(|t| t.as_millisecond() as f64 / 1000.0));
    let failing = status.consecutive_failures > 0;
    let retry = status
        .last_failure_at
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| after(t, backoff(status.consecutive_failures)));
    let next_at = if failing { retry } else { refresh };
    status.next_refresh_at = next_at.map(show);
    let mut next = next_at.map_or(retry_delay(1), |t| until(now, t));
    let failure = status.last_failure.clone().unwrap_or_default();
    let expired = expires.is_some_and(|t| t <= now);
    if let Some(expires) = expires.filter(|t| *t > now) {
        // Look again when it expires, to say so.
        next = next.min(until(now, expires));
    }
    let (state, condition) = match (secret.is_some(), expired, failing) {
        (false, _, _) => (
            MintState::NotMinted,
            (
                false,
                "NotMinted",
                format!("no credential minted yet: {failure}"),
            ),
        ),
        (true, true, _) => (
            MintState::Expired,
            (
                false,
                "Expired",
                format!(
                    "the credential expired at {}; the expired credential is kept until a refresh succeeds; last refresh failure: {failure}",
                    status.expires_at.clone().unwrap_or_default()
                ),
            ),
        ),
        (true, false, true) => (
            MintState::RefreshFailing,
            (
                false,
                "RefreshFailed",
                format!(
                    "refresh failed {} times, the last good credential (minted {}, expires {}) is in use: {failure}",
                    status.consecutive_failures,
                    status.minted_at.clone().unwrap_or_default(),
                    status
                        .expires_at
                        .clone()
                        .unwrap_or_else(|| "never".to_owned())
                ),
            ),
        ),
        (true, false, false) => (
            MintState::Fresh,
            (
                true,
                "Minted",
                format!(
                    "minted {}, expires {}, next refresh {}",
                    status.minted_at.clone().unwrap_or_default(),
                    status
                        .expires_at
                        .clone()
                        .unwrap_or_else(|| "never".to_owned()),
                    status.next_refresh_at.clone().unwrap_or_default()
                ),
            ),
        ),
    };
    MintReport {
        state,
        condition,
        status,
        next,
    }
}

/// Whether the Secret is the one minted for `resource`: the owner label and an owner reference
/// to its UID. A Secret minted before owner references were written (no owner reference at
/// all) counts when its mint time is the one the resource's status recorded, which only the
/// controller writes; the next write adds the reference.
pub fn minted_for(secret: &Secret, resource: &ClusterPullSecret) -> bool {
    let labels = secret.labels();
    let labelled = labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
        && labels.get(MINTED_FOR_LABEL).map(String::as_str) == Some(resource.name_any().as_str());
    if !labelled {
        return false;
    }
    let references = secret.owner_references();
    if references.is_empty() {
        let recorded = resource
            .status
            .as_ref()
            .and_then(|s| s.credential.as_ref())
            .and_then(|c| c.minted_at.as_deref());
        return recorded.is_some()
            && recorded == secret.annotations().get(MINTED_AT).map(String::as_str);
    }
    let uid = resource.uid();
    references.iter().any(|reference| {
        reference.kind == "ClusterPullSecret" && Some(&reference.uid) == uid.as_ref()
    })
}

/// The owner reference of a minted Secret: the garbage collector deletes it with the resource,
/// also when the finalizer never runs (a force-deletion).
fn owner_reference(resource: &ClusterPullSecret) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: ClusterPullSecret::api_version(&()).into_owned(),
        kind: ClusterPullSecret::kind(&()).into_owned(),
        name: resource.name_any(),
        uid: resource.uid()?,
        controller: Some(true),
        block_owner_deletion: None,
    })
}

/// Creates or replaces (in place, with the resourceVersion read) the minted Secret.
async fn write(
    api: &Api<Secret>,
    resource: &ClusterPullSecret,
    existing: Option<Secret>,
    minted: &Minted,
    digest: String,
    now: Timestamp,
) -> Result<Secret, kube::Error> {
    let mut annotations = BTreeMap::from([
        (MINTED_AT.to_owned(), show(now)),
        (DIGEST.to_owned(), digest),
    ]);
    if let Some(lifetime) = minted.lifetime {
        annotations.insert(EXPIRES_AT.to_owned(), show(after(now, signed(lifetime))));
    }
    let refresh_in = refresh_after(minted.lifetime, jitter(resource, now));
    annotations.insert(REFRESH_AT.to_owned(), show(after(now, signed(refresh_in))));
    let source = &resource.spec.source;
    let desired = Secret {
        metadata: ObjectMeta {
            name: Some(source.name.clone()),
            namespace: Some(source.namespace.clone()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
                (MINTED_FOR_LABEL.to_owned(), resource.name_any()),
            ])),
            annotations: Some(annotations),
            owner_references: owner_reference(resource).map(|reference| vec![reference]),
            resource_version: existing.as_ref().and_then(|s| s.resource_version()),
            ..ObjectMeta::default()
        },
        type_: Some(DOCKER_CONFIG_JSON_TYPE.to_owned()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_owned(),
            ByteString(minted.docker_config_json()),
        )])),
        ..Secret::default()
    };
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match existing {
        Some(_) => api.replace(&source.name, &params, &desired).await,
        None => api.create(&params, &desired).await,
    }
}

/// Whether to run the plugin: no Secret yet, minted with another provider or images (or the
/// provider cannot be resolved, to report why), or its refresh time has come. The refresh time
/// is never later than the expiry: both are annotations anyone who may edit Secrets in the
/// source namespace can change, and an expired credential is always refreshed.
fn is_due(existing: Option<&Secret>, digest: Option<&str>, now: Timestamp) -> bool {
    let Some(secret) = existing else {
        return true;
    };
    let annotations = secret.annotations();
    let at = |key: &str| {
        annotations
            .get(key)
            .and_then(|t| t.parse::<Timestamp>().ok())
    };
    let refresh_at = match (at(REFRESH_AT), at(EXPIRES_AT)) {
        (Some(refresh), Some(expires)) => Some(refresh.min(expires)),
        (refresh, _) => refresh,
    };
    digest.is_none_or(|digest| annotations.get(DIGEST).map(String::as_str) != Some(digest))
        || refresh_at.is_none_or(|t| t <= now)
}

/// Whether the status the controller wrote says the credential has expired: due whatever the
/// Secret's annotations say now.
fn expired_by_status(status: &MintedCredentialStatus, now: Timestamp) -> bool {
    status
        .expires_at
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .is_some_and(|expires| expires <= now)
}

/// How long after minting to refresh: `fraction` of the lifetime, at least [`MIN_REFRESH`];
/// [`NO_LIFETIME_REFRESH`] without a stated lifetime.
fn refresh_after(lifetime: Option<Duration>, fraction: f64) -> Duration {
    lifetime.map_or(NO_LIFETIME_REFRESH, |lifetime| {
        lifetime.mul_f64(fraction).max(MIN_REFRESH)
    })
}

/// The refresh point as a fraction of the lifetime: 0.75–0.85, spread by resource and time so
/// many credentials minted together do not refresh together.
fn jitter(resource: &ClusterPullSecret, now: Timestamp) -> f64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    resource.uid().hash(&mut hasher);
    now.as_nanosecond().hash(&mut hasher);
    0.75 + (hasher.finish() % 1000) as f64 / 10_000.0
}

/// What the credential was minted with: the resolved provider and the images, as SHA-256 (the
/// same on every release, so an upgrade re-mints nothing). The environment counts by name
/// only: values passed through may be keys, and the digest is written to an annotation.
fn digest(
    provider: &crate::controller::credential_provider::Provider,
    block: &CredentialProvider,
) -> String {
    let env_names: Vec<&str> = provider.env.iter().map(|(name, _)| name.as_str()).collect();
    let canonical = serde_json::json!({
        "name": provider.name,
        "matchImages": provider.match_images,
        "defaultCacheDuration": provider.default_cache_duration.as_nanos().to_string(),
        "apiVersion": provider.api_version,
        "args": provider.args,
        "env": env_names,
        "images": block.images,
    });
    let hash = ring::digest::digest(&ring::digest::SHA256, canonical.to_string().as_bytes());
    hash.as_ref()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The failure reason with every username and password of the current credential removed (a
/// plugin's stderr is redacted already; this also covers short values).
fn scrub(error: &PluginError, current: Option<&Secret>) -> String {
    let mut reason = error.to_string();
    let values: Vec<String> = current
        .and_then(|s| s.data.as_ref()?.get(".dockerconfigjson").cloned())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes.0).ok())
        .and_then(|config| config.get("auths").cloned())
        .and_then(|auths| auths.as_object().cloned())
        .into_iter()
        .flat_map(|auths| auths.into_iter().map(|(_, entry)| entry))
        .flat_map(|entry| {
            ["password", "username", "auth"]
                .into_iter()
                .filter_map(|field| entry.get(field)?.as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .filter(|value| value.len() >= 4)
        .collect();
    for value in values {
        reason = reason.replace(&value, "[redacted]");
    }
    reason
}

fn backoff(failures: i32) -> SignedDuration {
    signed(retry_delay(u32::try_from(failures).unwrap_or(1)))
}

fn signed(duration: Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

fn after(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn show(t: Timestamp) -> String {
    t.round(Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

async fn publish(
    recorder: &Recorder,
    resource: &ClusterPullSecret,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "MintCredential".to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &resource.object_ref(&())).await {
        tracing::warn!(%error, "cannot publish the Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::crd::{ClusterPullSecretSpec, SourceSecret};

    fn minted_secret(annotations: &[(&str, String)], owner: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                labels: Some(BTreeMap::from([
                    (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
                    (MINTED_FOR_LABEL.to_owned(), owner.to_owned()),
                ])),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                ".dockerconfigjson".to_owned(),
                ByteString(
                    br#"{"auths":{"r.example":{"username":"robot","password":"CURRENT-secret-value"}}}"#
                        .to_vec(),
                ),
            )])),
            ..Secret::default()
        }
    }

    fn at(now: Timestamp, seconds: i64) -> String {
        show(after(now, SignedDuration::from_secs(seconds)))
    }

    #[test]
    fn a_refresh_is_due_when_missing_changed_or_at_its_time() {
        let now = Timestamp::now();
        let fresh = minted_secret(&[(REFRESH_AT, at(now, 60)), (DIGEST, "d1".to_owned())], "c");
        assert!(!is_due(Some(&fresh), Some("d1"), now));
        assert!(is_due(None, Some("d1"), now), "no Secret yet");
        assert!(
            is_due(Some(&fresh), Some("d2"), now),
            "provider or images changed"
        );
        assert!(
            is_due(Some(&fresh), None, now),
            "the provider cannot be resolved"
        );
        let old = minted_secret(&[(REFRESH_AT, at(now, -1)), (DIGEST, "d1".to_owned())], "c");
        assert!(is_due(Some(&old), Some("d1"), now), "its time has come");
        let unscheduled = minted_secret(&[(DIGEST, "d1".to_owned())], "c");
        assert!(is_due(Some(&unscheduled), Some("d1"), now));
        // Expired: due, however far away someone moved refresh-at.
        let postponed = minted_secret(
            &[
                (REFRESH_AT, at(now, 86_400 * 365)),
                (EXPIRES_AT, at(now, -1)),
                (DIGEST, "d1".to_owned()),
            ],
            "c",
        );
        assert!(is_due(Some(&postponed), Some("d1"), now));
        let status = MintedCredentialStatus {
            expires_at: Some(at(now, -1)),
            ..MintedCredentialStatus::default()
        };
        assert!(
            expired_by_status(&status, now),
            "the controller's own record says expired"
        );
        assert!(!expired_by_status(&MintedCredentialStatus::default(), now));
    }

    #[test]
    fn the_digest_is_stable_and_keeps_no_environment_value() {
        let provider = crate::controller::credential_provider::Provider {
            name: "p".to_owned(),
            match_images: vec!["r.example".to_owned()],
            default_cache_duration: Duration::from_secs(3600),
            api_version: "credentialprovider.kubelet.k8s.io/v1".to_owned(),
            args: vec![],
            env: vec![("KEY".to_owned(), "secret-one".to_owned())],
        };
        let block = CredentialProvider {
            name: "p".to_owned(),
            images: vec!["r.example/app".to_owned()],
            match_images: None,
            default_cache_duration: None,
            api_version: None,
            args: None,
            env: None,
        };
        let first = digest(&provider, &block);
        // A fixed value: the same on every build and release, so an upgrade re-mints nothing.
        assert_eq!(first, digest(&provider, &block));
        assert_eq!(first.len(), 32);
        let mut rotated = provider.clone();
        rotated.env[0].1 = "secret-two".to_owned();
        assert_eq!(first, digest(&rotated, &block), "values do not count");
        let mut renamed = provider.clone();
        renamed.args = vec!["get-credentials".to_owned()];
        assert_ne!(first, digest(&renamed, &block));
    }

    #[test]
    fn refreshes_come_at_the_fraction_with_a_floor_and_a_default() {
        let hour = Duration::from_secs(3600);
        assert_eq!(refresh_after(Some(hour), 0.8), Duration::from_secs(2880));
        assert_eq!(
            refresh_after(Some(Duration::from_secs(1)), 0.8),
            MIN_REFRESH
        );
        assert_eq!(refresh_after(None, 0.8), NO_LIFETIME_REFRESH);
        let resource = resource("c", "uid-1");
        let now = Timestamp::now();
        let fractions: Vec<f64> = (0..200)
            .map(|n| jitter(&resource, after(now, SignedDuration::from_nanos(n * 7919))))
            .collect();
        assert!(
            fractions.iter().all(|f| (0.75..0.85).contains(f)),
            "{fractions:?}"
        );
        assert!(fractions.iter().any(|f| *f < 0.78) && fractions.iter().any(|f| *f > 0.82));
    }

    fn resource(name: &str, uid: &str) -> ClusterPullSecret {
        let mut resource = ClusterPullSecret::new(
            name,
            ClusterPullSecretSpec {
                source: SourceSecret {
                    namespace: "n".to_owned(),
                    name: "s".to_owned(),
                },
                credential_provider: None,
                namespace_selector: None,
                registries: None,
                target_name: None,
            },
        );
        resource.metadata.uid = Some(uid.to_owned());
        resource
    }

    #[test]
    fn only_secrets_minted_for_the_resource_are_its_own() {
        let owner = resource("c", "uid-1");
        let mut secret = minted_secret(&[(MINTED_AT, "2026-01-01T00:00:00Z".to_owned())], "c");
        secret.metadata.owner_references = owner_reference(&owner).map(|r| vec![r]);
        assert!(minted_for(&secret, &owner));
        assert!(!minted_for(&secret, &resource("other", "uid-1")));
        // The same name, another object (recreated): not its Secret.
        assert!(!minted_for(&secret, &resource("c", "uid-2")));
        let mut foreign = secret.clone();
        foreign.metadata.labels = None;
        assert!(!minted_for(&foreign, &owner));
        // The label alone, which anyone who may edit Secrets there can set, is not enough ...
        let mut labelled = secret.clone();
        labelled.metadata.owner_references = None;
        assert!(!minted_for(&labelled, &owner));
        // ... unless the status the controller wrote minted exactly that one (before owner
        // references were written).
        let mut recorded = owner.clone();
        recorded.status = Some(crate::state::crd::ClusterPullSecretStatus {
            credential: Some(MintedCredentialStatus {
                minted_at: Some("2026-01-01T00:00:00Z".to_owned()),
                ..MintedCredentialStatus::default()
            }),
            ..Default::default()
        });
        assert!(minted_for(&labelled, &recorded));
    }

    #[test]
    fn refusals_name_the_reason() {
        let block = |hostile: bool| CredentialProvider {
            name: "p".to_owned(),
            images: vec!["r.example/app".to_owned()],
            match_images: None,
            default_cache_duration: None,
            api_version: None,
            args: hostile.then(|| vec!["--evil".to_owned()]),
            env: None,
        };
        let mut resource = resource("c", "uid-1");
        assert_eq!(refusal(&resource, &block(false), Some("injector")), None);
        let (reason, message) = refusal(&resource, &block(true), None).unwrap();
        assert_eq!(reason, "ProviderOverridesRefused");
        assert!(message.contains("args"), "{message}");
        for reserved in ["kube-system", "kube-public", "kube-node-lease", "injector"] {
            resource.spec.source.namespace = reserved.to_owned();
            let (reason, _) = refusal(&resource, &block(false), Some("injector")).unwrap();
            assert_eq!(reason, "SourceNamespaceReserved", "{reserved}");
        }
    }

    #[test]
    fn states_follow_the_secret_the_failures_and_the_clock() {
        let metrics = Metrics::new(&mut prometheus_client::registry::Registry::default());
        let now = Timestamp::now();
        let valid = minted_secret(
            &[
                (MINTED_AT, at(now, -10)),
                (EXPIRES_AT, at(now, 50)),
                (REFRESH_AT, at(now, 30)),
            ],
            "c",
        );
        let fresh = report(
            "c",
            &metrics,
            Some(&valid),
            MintedCredentialStatus::default(),
            now,
        );
        assert_eq!(fresh.state, MintState::Fresh);
        assert_eq!(fresh.condition.1, "Minted");
        assert!(fresh.next <= Duration::from_secs(31));

        let failing_status = MintedCredentialStatus {
            consecutive_failures: 2,
            last_failure_at: Some(show(now)),
            last_failure: Some("the plugin exited with code 7: down".to_owned()),
            ..MintedCredentialStatus::default()
        };
        let failing = report("c", &metrics, Some(&valid), failing_status.clone(), now);
        assert_eq!(failing.state, MintState::RefreshFailing);
        assert!(!failing.condition.0);
        assert!(
            failing.condition.2.contains("code 7"),
            "{}",
            failing.condition.2
        );
        // Backoff after the second failure: 4 s (from a failure time kept to the second).
        assert_eq!(
            failing.next.as_secs_f64().round(),
            4.0,
            "{:?}",
            failing.next
        );

        let expired_secret = minted_secret(&[(EXPIRES_AT, at(now, -1))], "c");
        let expired = report(
            "c",
            &metrics,
            Some(&expired_secret),
            failing_status.clone(),
            now,
        );
        assert_eq!(expired.state, MintState::Expired);
        assert_eq!(expired.condition.1, "Expired");

        let never = report("c", &metrics, None, failing_status, now);
        assert_eq!(never.state, MintState::NotMinted);
        assert!(never.condition.2.contains("code 7"));
    }

    #[test]
    fn failure_reasons_never_carry_the_current_credential() {
        let secret = minted_secret(&[], "c");
        let error = PluginError::Exit {
            code: Some(1),
            stderr: "rejected CURRENT-secret-value for robot1".to_owned(),
        };
        let reason = scrub(&error, Some(&secret));
        assert!(!reason.contains("CURRENT-secret-value"), "{reason}");
        assert!(reason.contains("[redacted]"), "{reason}");
    }
}
