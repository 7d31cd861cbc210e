//! The pull audit: for one workload (a Pod, or the pod template of a Deployment, StatefulSet,
//! DaemonSet, Job or CronJob), what its next pod would lack that the kubelet needs, and for a
//! pod that exists, whether a pod created now would get other secrets than it has.
//!
//! Pure (no I/O; the clock is the caller's `now`): the webhook's own decision and the kubelet's
//! keyring over the snapshot. Findings name secrets, namespaces, images and registries, never a
//! credential.

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::admission::decision::{Decision, choose, decide};
use crate::admission::pod::{INJECTED_ANNOTATION, PodView, SecretReference};
use crate::kubelet::keyring::Keyring;
use crate::kubelet::reference::ImageRef;
use crate::state::crd::{MintedCredentialStatus, SYSTEM_NAMESPACES};
use crate::state::snapshot::{
    ClusterCredential, ClusterState, Mode, NamespaceState, SecretName, SecretUse,
};
use crate::text::quote;

/// How much a finding matters, in increasing order (`--fail-on` compares with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing, no pull fails because of it.
    Info,
    /// A pull may fail: it depends on whether the registry wants credentials for the image.
    Warning,
    /// A pull fails, or the pod will not start.
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// What is wrong; each kind has one severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// An `imagePullSecrets` entry names no registry-credential Secret of the namespace.
    MissingSecret,
    /// An `imagePullSecrets` entry names a Secret the kubelet cannot decode: every pull of
    /// the pod fails.
    UndecodableSecret,
    /// No secret the pod would have serves the image, but Secrets of other namespaces do:
    /// the "secrets are namespaced" surprise.
    CredentialElsewhere,
    /// A secret of the namespace serves the image but is not injected: the namespace is in
    /// shadow mode (or opted out).
    NotInjected,
    /// A pod that exists would get a different set of secrets if it were created now.
    SecretsDiffer,
    /// An image pulls with a credential a provider minted (a ClusterPullSecret with
    /// `credentialProvider`) that has expired.
    CredentialExpired,
    /// An image pulls with a minted credential that expires before its next refresh, or whose
    /// refresh is failing close to its expiry.
    CredentialExpiring,
    /// An existing pod waits on a failed pull (`ErrImagePull`/`ImagePullBackOff`) of an image
    /// a secret of its namespace serves, which the pod does not have: it will not start until
    /// it is recreated (e.g. after its namespace was switched from shadow to on).
    PullFailing,
}

impl FindingKind {
    pub const ALL: [FindingKind; 8] = [
        FindingKind::MissingSecret,
        FindingKind::UndecodableSecret,
        FindingKind::CredentialElsewhere,
        FindingKind::NotInjected,
        FindingKind::SecretsDiffer,
        FindingKind::CredentialExpired,
        FindingKind::CredentialExpiring,
        FindingKind::PullFailing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::MissingSecret => "missing_secret",
            FindingKind::UndecodableSecret => "undecodable_secret",
            FindingKind::CredentialElsewhere => "credential_elsewhere",
            FindingKind::NotInjected => "not_injected",
            FindingKind::SecretsDiffer => "secrets_differ",
            FindingKind::CredentialExpired => "credential_expired",
            FindingKind::CredentialExpiring => "credential_expiring",
            FindingKind::PullFailing => "pull_failing",
        }
    }

    /// Missing and undecodable references break pulls (the kubelet skips a missing secret,
    /// and the image it was for then pulls without credentials); a credential found only
    /// elsewhere or not injected matters only if the registry wants one for that image (a
    /// public image of a registry that also has private ones does not); a pod whose secrets
    /// would differ keeps working with the ones it has. An expired minted credential fails the
    /// pulls that need it now; one about to expire unrefreshed fails them soon. A pod that
    /// cannot pull while a secret for the image exists does not start until it is recreated:
    /// a warning, as the registry may be refusing for another reason.
    pub fn severity(self) -> Severity {
        match self {
            FindingKind::MissingSecret
            | FindingKind::UndecodableSecret
            | FindingKind::CredentialExpired => Severity::Error,
            FindingKind::CredentialElsewhere
            | FindingKind::NotInjected
            | FindingKind::CredentialExpiring
            | FindingKind::PullFailing => Severity::Warning,
            FindingKind::SecretsDiffer => Severity::Info,
        }
    }
}

/// The object a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct WorkloadRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// One finding. `secrets` are names (`namespace/name` for other namespaces), never contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub severity: Severity,
    pub kind: FindingKind,
    pub workload: WorkloadRef,
    /// The mode of the workload's namespace (`shadow`: the webhook injects nothing there).
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    pub message: String,
}

/// A workload to audit: its pod template (or the pod) read as the decision reads pods.
#[derive(Debug, Clone)]
pub struct Workload<'a> {
    pub workload: WorkloadRef,
    pub pod: &'a PodView,
    /// An existing Pod (not a template): also compared with what it would get now.
    pub existing_pod: bool,
    /// Owned by a controller: its template is that controller's, audited there, so only the
    /// comparison with what it would get now is made.
    pub controlled: bool,
    /// For an existing pod: the images its containers wait on a failed pull of.
    pub failing_pulls: &'a [String],
}

/// Everything found for one workload at `now`, in a stable order.
pub fn audit(workload: &Workload<'_>, state: &ClusterState, now: Timestamp) -> Vec<Finding> {
    let namespace = workload.workload.namespace.as_str();
    let mode = state.mode(namespace).0;
    let mut found = Vec::new();
    if !workload.controlled {
        references(workload.pod, namespace, state, &mut found);
        images(workload.pod, namespace, state, &mut found);
        minted(workload.pod, namespace, state, now, &mut found);
    }
    if workload.existing_pod {
        found.extend(secrets_differ(workload.pod, namespace, state));
        pull_failing(workload, namespace, state, &mut found);
    }
    found
        .into_iter()
        .map(|raw| Finding {
            severity: raw.kind.severity(),
            kind: raw.kind,
            workload: workload.workload.clone(),
            mode,
            image: raw.image,
            secrets: raw.secrets,
            message: raw.message,
        })
        .collect()
}

/// A finding before it is tied to its workload.
struct Raw {
    kind: FindingKind,
    image: Option<String>,
    secrets: Vec<String>,
    message: String,
}

/// Missing and undecodable `imagePullSecrets` entries.
fn references(pod: &PodView, namespace: &str, state: &ClusterState, found: &mut Vec<Raw>) {
    let mut report = |kind, secret: &str, message| {
        found.push(Raw {
            kind,
            image: None,
            secrets: vec![secret.to_owned()],
            message,
        })
    };
    let secrets = state.namespace(namespace).map(|ns| ns.secrets());
    let mut seen = BTreeSet::new();
    for name in pod.pull_secret_names().filter(|name| seen.insert(*name)) {
        match secrets
            .and_then(|secrets| secrets.get(name))
            .map(|s| &s.usage)
        {
            Some(SecretUse::Registries(_)) => {}
            Some(SecretUse::Undecodable { reason, .. }) => report(
                FindingKind::UndecodableSecret,
                name,
                format!(
                    "imagePullSecrets entry {} cannot be decoded by the kubelet ({reason}): every image pull fails",
                    quote(name)
                ),
            ),
            None => report(
                FindingKind::MissingSecret,
                name,
                format!(
                    "imagePullSecrets entry {} is not a registry-credential Secret of namespace {}: the kubelet pulls without it",
                    quote(name),
                    quote(namespace)
                ),
            ),
        }
    }
}

/// Whether the webhook acts on pods of `namespace` at all: the chart never sends it system
/// namespaces or its own.
fn served(namespace: &str, state: &ClusterState) -> bool {
    !SYSTEM_NAMESPACES.contains(&namespace) && state.own_namespace() != Some(namespace)
}

/// Whether the webhook appends what it decided to the pod: a served namespace in mode `on`, no
/// opt-out.
fn injects(decision: &Decision, namespace: &str, state: &ClusterState) -> bool {
    served(namespace, state) && decision.opt_out.is_none() && decision.mode == Mode::On
}

/// The kubelet's keyring over the pod's own decodable secrets, exactly as it builds it.
fn own_keyring(pod: &PodView, ns: Option<&NamespaceState>) -> Keyring<SecretName> {
    Keyring::new(pod.pull_secret_names().filter_map(|name| {
        let (name, secret) = ns?.secrets().get_key_value(name)?;
        secret
            .is_usable()
            .then(|| (SecretName::clone(name), secret.registries()))
    }))
}

/// The pod's images (its image volumes' too), each once, with the kubelet's lookup key
/// (unparsable ones left out).
fn images_of(pod: &PodView) -> impl Iterator<Item = (&str, String)> {
    let mut seen = BTreeSet::new();
    pod.images()
        .map(|image| image.image)
        .filter(move |image| seen.insert(*image))
        .filter_map(|image| Some((image, ImageRef::parse(image).ok()?.lookup_key())))
}

/// Images no secret the next pod would have serves.
fn images(pod: &PodView, namespace: &str, state: &ClusterState, found: &mut Vec<Raw>) {
    let mut report = |kind, image: &str, secrets, message| {
        found.push(Raw {
            kind,
            image: Some(image.to_owned()),
            secrets,
            message,
        })
    };
    let ns = state.namespace(namespace);
    let decision = decide(pod, namespace, state);
    let injects = injects(&decision, namespace, state);
    let own = own_keyring(pod, ns);
    for (image, lookup) in images_of(pod) {
        if !own.lookup(&lookup).is_empty() {
            continue;
        }
        let chosen: Vec<String> = choose(state, namespace, ns, &lookup)
            .chosen
            .into_iter()
            .map(|chosen| chosen.secret)
            .collect();
        if injects && !chosen.is_empty() {
            continue;
        }
        if !chosen.is_empty() {
            let why = if decision.opt_out.is_some() {
                "the pod or its namespace opted out of injection"
            } else if !served(namespace, state) {
                "the webhook does not serve this namespace"
            } else {
                "the namespace is in shadow mode"
            };
            let message = format!(
                "image {}: {} of this namespace would serve it, but {why}: the pod does not get it",
                quote(image),
                chosen.join(", ")
            );
            report(FindingKind::NotInjected, image, chosen, message);
            continue;
        }
        let elsewhere = elsewhere(state, namespace, &lookup);
        if !elsewhere.is_empty() {
            let message = format!(
                "image {}: no secret of namespace {} serves registry {}, but {} in other namespaces do: secrets are namespaced (copy it, or a ClusterPullSecret)",
                quote(image),
                quote(namespace),
                quote(&lookup),
                elsewhere.join(", ")
            );
            report(FindingKind::CredentialElsewhere, image, elsewhere, message);
        }
    }
}

/// Images pulled with a minted credential that expired or expires before it is refreshed. The
/// secrets an image pulls with are the pod's own that serve it and, where the webhook injects,
/// the ones it chooses for it; one of them is a minted credential when it is the copy of a
/// ClusterPullSecret with `credentialProvider` (or its source Secret itself).
fn minted(
    pod: &PodView,
    namespace: &str,
    state: &ClusterState,
    now: Timestamp,
    found: &mut Vec<Raw>,
) {
    let ns = state.namespace(namespace);
    let minted: Vec<(&ClusterCredential, &MintedCredentialStatus)> = state
        .credentials()
        .iter()
        .filter_map(|credential| Some((credential, credential.minted.as_ref()?)))
        .collect();
    if minted.is_empty() {
        return;
    }
    let injects = injects(&decide(pod, namespace, state), namespace, state);
    let own = own_keyring(pod, ns);
    let selected: BTreeSet<&str> = state
        .credentials_for(namespace)
        .map(|credential| credential.name.as_str())
        .collect();
    for (image, lookup) in images_of(pod) {
        let mut pulls_with: BTreeSet<String> = own
            .lookup(&lookup)
            .into_iter()
            .map(|name| name.to_string())
            .collect();
        if injects {
            pulls_with.extend(
                choose(state, namespace, ns, &lookup)
                    .chosen
                    .into_iter()
                    .map(|chosen| chosen.secret),
            );
        }
        for (credential, status) in &minted {
            let copy = selected.contains(credential.name.as_str())
                && pulls_with.contains(&credential.target_name);
            let source = namespace == credential.source_namespace
                && pulls_with.contains(&credential.source_name);
            let mut secrets = BTreeSet::new();
            if copy {
                secrets.insert(credential.target_name.clone());
            }
            if source {
                secrets.insert(credential.source_name.clone());
            }
            let secrets: Vec<String> = secrets.into_iter().collect();
            if secrets.is_empty() {
                continue;
            }
            let Some((kind, why)) = expiry(status, now) else {
                continue;
            };
            let names: Vec<String> = secrets.iter().map(|secret| quote(secret)).collect();
            let message = format!(
                "image {} pulls with {}, minted for ClusterPullSecret {}: {why}",
                quote(image),
                names.join(", "),
                quote(&credential.name)
            );
            found.push(Raw {
                kind,
                image: Some(image.to_owned()),
                secrets,
                message,
            });
        }
    }
}

/// Whether a minted credential has expired at `now`, or will before it is refreshed: past
/// `expiresAt`, an error; a next refresh (or retry) planned at or after `expiresAt`, or a
/// failing refresh in the last fifth of the lifetime (where refreshes are planned), a warning.
/// A credential without a stated lifetime never expires.
pub fn expiry(status: &MintedCredentialStatus, now: Timestamp) -> Option<(FindingKind, String)> {
    let time = |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    let expires = time(&status.expires_at)?;
    let failure = match (status.consecutive_failures, &status.last_failure) {
        (0, _) => String::new(),
        (n, Some(reason)) => format!("; {n} refreshes failed in a row, the last: {reason}"),
        (n, None) => format!("; {n} refreshes failed in a row"),
    };
    if expires <= now {
        return Some((
            FindingKind::CredentialExpired,
            format!("the credential expired at {expires}{failure}"),
        ));
    }
    let near = time(&status.minted_at).is_none_or(|minted| {
        expires.duration_since(now).as_secs() * 5 <= expires.duration_since(minted).as_secs()
    });
    if let Some(next) = time(&status.next_refresh_at).filter(|next| *next >= expires) {
        return Some((
            FindingKind::CredentialExpiring,
            format!(
                "the credential expires at {expires}, before its next refresh at {next}{failure}"
            ),
        ));
    }
    (status.consecutive_failures > 0 && near).then(|| {
        (
            FindingKind::CredentialExpiring,
            format!("the credential expires at {expires} and its refresh is failing{failure}"),
        )
    })
}

/// `namespace/secret` of every decodable secret of another namespace serving `lookup`.
fn elsewhere(state: &ClusterState, namespace: &str, lookup: &str) -> Vec<String> {
    let mut found: Vec<String> = state
        .existing_namespaces()
        .filter(|other| *other != namespace)
        .filter_map(|other| Some((other, state.namespace(other)?)))
        .flat_map(|(other, ns)| {
            ns.keyring()
                .lookup(lookup)
                .into_iter()
                .map(move |secret| format!("{other}/{secret}"))
        })
        .collect();
    found.sort();
    found
}

/// Images the pod cannot pull although a secret of its namespace serves them, which it lacks.
fn pull_failing(
    workload: &Workload<'_>,
    namespace: &str,
    state: &ClusterState,
    found: &mut Vec<Raw>,
) {
    let ns = state.namespace(namespace);
    let own = own_keyring(workload.pod, ns);
    let mut seen = BTreeSet::new();
    for image in workload
        .failing_pulls
        .iter()
        .filter(|image| seen.insert(image.as_str()))
    {
        let Ok(reference) = ImageRef::parse(image) else {
            continue;
        };
        let lookup = reference.lookup_key();
        if !own.lookup(&lookup).is_empty() {
            continue;
        }
        let chosen: Vec<String> = choose(state, namespace, ns, &lookup)
            .chosen
            .into_iter()
            .map(|chosen| chosen.secret)
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let message = format!(
            "image {}: the pod cannot pull it (ErrImagePull/ImagePullBackOff) and lacks {}, which serves it: recreate the pod (a pod created now gets it where the webhook injects), or let the controller do it (controller.recoverStuckPods)",
            quote(image),
            chosen.join(", ")
        );
        found.push(Raw {
            kind: FindingKind::PullFailing,
            image: Some(image.clone()),
            secrets: chosen,
            message,
        });
    }
}

/// The secrets the webhook injected into a pod, from its annotation (`name (registries); ...`).
fn recorded_injections(pod: &PodView) -> BTreeSet<&str> {
    pod.annotation(INJECTED_ANNOTATION)
        .unwrap_or_default()
        .split("; ")
        .filter_map(|entry| entry.split(" (").next())
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect()
}

/// For an existing pod: the secrets a pod created now from the same spec would have, against
/// the ones it has. The spec is the pod's without what the webhook appended (its annotation
/// says what), so a secret it injected that would no longer be chosen shows too.
fn secrets_differ(pod: &PodView, namespace: &str, state: &ClusterState) -> Option<Raw> {
    let injected_before = recorded_injections(pod);
    let has: BTreeSet<&str> = pod.pull_secret_names().collect();
    let mut base = pod.clone();
    if let Some(list) = base
        .spec
        .as_mut()
        .and_then(|spec| spec.image_pull_secrets.as_mut())
    {
        list.retain(|SecretReference { name }| {
            !name
                .as_deref()
                .is_some_and(|name| injected_before.contains(name))
        });
    }
    let decision = decide(&base, namespace, state);
    let injects = injects(&decision, namespace, state);
    let mut now: BTreeSet<&str> = base.pull_secret_names().collect();
    if injects {
        now.extend(decision.injected.iter().map(|i| i.secret.as_str()));
    }
    let gains: Vec<&str> = now.difference(&has).copied().collect();
    let losses: Vec<&str> = has.difference(&now).copied().collect();
    if gains.is_empty() && losses.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if !gains.is_empty() {
        parts.push(format!("would also get {}", gains.join(", ")));
    }
    if !losses.is_empty() {
        parts.push(format!("would no longer get {}", losses.join(", ")));
    }
    let message = format!(
        "a pod created now from this pod's spec {} (it keeps the ones it has until it is recreated)",
        parts.join(" and ")
    );
    Some(Raw {
        kind: FindingKind::SecretsDiffer,
        image: None,
        secrets: gains.iter().chain(&losses).map(|s| s.to_string()).collect(),
        message,
    })
}

#[cfg(test)]
mod tests;
