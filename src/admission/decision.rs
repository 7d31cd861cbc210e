//! The admission decision: which pull secrets a pod gets, as pure code (no I/O, no clock).
//!
//! For every image the kubelet pulls for the pod, its containers' and its image volumes' alike:
//! an `exclusive` PullSecretRule matching the image decides alone; otherwise the kubelet's own
//! lookup over the namespace's keyring (discovery), the matching `add` rules and the cluster
//! credentials serving the namespace all contribute. The secrets chosen that the pod lacks are
//! appended. The result carries the JSON patch plus what users and auditors read: warnings,
//! audit annotations and the pod annotation.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::{Value, json};

use crate::admission::pod::{INJECTED_ANNOTATION, PodImage, PodView};
use crate::kubelet::keyring::fold_host_case;
use crate::kubelet::reference::ImageRef;
use crate::state::crd::RuleMode;
use crate::state::snapshot::{
    ClusterCredential, ClusterState, Copies, CredentialSource, INJECT_LABEL, Mode, NamespaceState,
    PullSecret, SecretName, SecretUse,
};
use crate::text::{clip, quote};

/// Registries named per secret in the annotation; the rest are counted.
const MAX_REGISTRIES_LISTED: usize = 3;
/// Longest annotation (and audit annotation) value written.
const MAX_DESCRIPTION_CHARS: usize = 2048;
/// Warnings beyond this many are dropped: kubectl shows every one, and they must stay readable.
const MAX_WARNINGS: usize = 8;

/// Why a pod is left alone entirely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptOut {
    Pod,
    Namespace,
    /// Outside the namespaces a namespaced-mode server serves (`serve --namespaces`).
    NotServed,
}

/// One secret appended to the pod, with the lookup strings it was chosen for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    pub secret: String,
    pub registries: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub injected: Vec<Injection>,
    pub patch: Patch,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
    pub opt_out: Option<OptOut>,
    /// In [`Mode::Shadow`], `injected` is what would have been injected: no patch is made and
    /// the audit annotations say "would".
    pub mode: Mode,
    /// Valid images for which no key of any secret matched.
    pub images_without_match: usize,
    pub invalid_images: usize,
    /// Distinct undecodable secrets this pod ran into.
    pub undecodable_secrets: usize,
}

/// Decides the injection for a pod being created in `namespace`.
pub fn decide(pod: &PodView, namespace: &str, state: &ClusterState) -> Decision {
    if !state.serves(namespace) {
        // Its Secrets are not cached here: deciding would only offer ClusterPullSecret copies
        // this server may not read, so the pod is left as it came.
        let mut decision = Decision::opted_out(OptOut::NotServed);
        decision.warnings.push(format!(
            "pullsecret-injector serves only the namespaces given to --namespaces, not {}; no pull secret injected",
            quote(namespace)
        ));
        return decision;
    }
    let ns = state.namespace(namespace);
    if pod.label(INJECT_LABEL) == Some("false") {
        return Decision::opted_out(OptOut::Pod);
    }
    if ns.is_some_and(NamespaceState::opted_out) {
        return Decision::opted_out(OptOut::Namespace);
    }
    let mut decision = Decision {
        mode: state.mode_of(ns).0,
        ..Decision::default()
    };
    let mut warnings = Warnings::default();
    let present: HashSet<&str> = pod.pull_secret_names().collect();
    // The most severe first: a broken secret already on the pod fails every pull.
    if let Some(ns) = ns {
        warnings.undecodable_on_pod(ns, pod.pull_secret_names());
    }

    for PodImage { user, image } in pod.images() {
        let lookup = match ImageRef::parse(image) {
            Ok(reference) => reference.lookup_key(),
            Err(error) => {
                decision.invalid_images += 1;
                warnings.push(format!(
                    "{user}: image {} is not a valid image reference ({error}); no pull secret injected for it",
                    quote(image),
                ));
                continue;
            }
        };
        let choice = choose(state, namespace, ns, &lookup);
        if choice.chosen.is_empty() {
            decision.images_without_match += 1;
        }
        for chosen in &choice.chosen {
            if !present.contains(chosen.secret.as_str()) {
                decision.record(&chosen.secret, &lookup);
            }
        }
        for problem in &choice.problems {
            warnings.push(problem.to_string());
        }
        if let Some(ns) = ns
            && !choice.exclusive
        {
            warnings.undecodable_for_image(ns, &lookup, choice.chosen.is_empty());
            warnings.case_only_mismatch(ns, &lookup, &choice.chosen);
        }
    }
    decision.undecodable_secrets = warnings.undecodable_seen.len();
    decision.warnings = warnings.into_list();
    if !decision.injected.is_empty() {
        // One description for the pod annotation and the audit annotation alike.
        let description = describe(&decision.injected);
        if decision.mode == Mode::On {
            decision.patch = patch_for(pod, &decision.injected, &description);
        }
        decision.audit_annotations =
            audit_annotations(&decision.injected, description, decision.mode);
    }
    decision
}

/// Why a secret was chosen for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The kubelet's lookup over the namespace's secrets.
    Discovery,
    /// A PullSecretRule (by name) matched the image.
    Rule { name: String, mode: RuleMode },
    /// A ClusterPullSecret (by name) serves the namespace and matches the image.
    ClusterCredential { name: String },
}

/// One secret chosen for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub secret: String,
    pub origin: Origin,
}

/// A rule or credential that wanted to inject something it must not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    RuleSecretMissing {
        rule: String,
        secret: String,
    },
    RuleSecretUndecodable {
        rule: String,
        secret: String,
        reason: String,
    },
    SourceMissing {
        credential: String,
        source: String,
    },
    SourceUndecodable {
        credential: String,
        source: String,
        reason: String,
    },
    TargetTaken {
        credential: String,
        namespace: String,
        target: String,
    },
    /// No controller writes the copies, and none exists in the namespace.
    CopyMissing {
        credential: String,
        namespace: String,
        target: String,
    },
    /// The credential is minted by a plugin whose refresh is failing (or it expired): it is
    /// still injected, with the controller's reason.
    CredentialStale {
        credential: String,
        message: String,
    },
    /// No controller writes the copies, and the one in the namespace cannot be decoded.
    CopyUndecodable {
        credential: String,
        namespace: String,
        target: String,
        reason: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::RuleSecretMissing { rule, secret } => write!(
                f,
                "PullSecretRule {} names secret {}, which is not a registry-credential secret of this namespace; not injected",
                quote(rule),
                quote(secret)
            ),
            Problem::RuleSecretUndecodable {
                rule,
                secret,
                reason,
            } => write!(
                f,
                "PullSecretRule {} names secret {}, which the kubelet cannot decode ({reason}); not injected",
                quote(rule),
                quote(secret)
            ),
            Problem::SourceMissing { credential, source } => write!(
                f,
                "ClusterPullSecret {}: source secret {} not found; not injected",
                quote(credential),
                quote(source)
            ),
            Problem::SourceUndecodable {
                credential,
                source,
                reason,
            } => write!(
                f,
                "ClusterPullSecret {}: source secret {} cannot be decoded by the kubelet ({reason}); not injected",
                quote(credential),
                quote(source)
            ),
            Problem::TargetTaken {
                credential,
                namespace,
                target,
            } => write!(
                f,
                "ClusterPullSecret {}: secret {} in namespace {} is not managed by it; not injected on its behalf",
                quote(credential),
                quote(target),
                quote(namespace)
            ),
            Problem::CopyMissing {
                credential,
                namespace,
                target,
            } => write!(
                f,
                "ClusterPullSecret {}: no secret {} in namespace {}, and no controller copies it (serve --enable-controller, controller.enabled in the chart); not injected",
                quote(credential),
                quote(target),
                quote(namespace)
            ),
            Problem::CredentialStale {
                credential,
                message,
            } => write!(
                f,
                "ClusterPullSecret {}: the credential provider's refresh is failing; injected anyway: {}",
                quote(credential),
                crate::text::clip(message, 400)
            ),
            Problem::CopyUndecodable {
                credential,
                namespace,
                target,
                reason,
            } => write!(
                f,
                "ClusterPullSecret {}: secret {} in namespace {} cannot be decoded by the kubelet ({reason}); not injected",
                quote(credential),
                quote(target),
                quote(namespace)
            ),
        }
    }
}

/// What one image gets, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// Secrets in injection order, each once.
    pub chosen: Vec<Chosen>,
    pub problems: Vec<Problem>,
    /// An exclusive rule decided; discovery and cluster credentials were not consulted.
    pub exclusive: bool,
}

impl Choice {
    fn add(&mut self, secret: &str, origin: Origin) {
        if !self.chosen.iter().any(|chosen| chosen.secret == secret) {
            self.chosen.push(Chosen {
                secret: secret.to_owned(),
                origin,
            });
        }
    }

    /// A secret a rule names: injected only when it exists and the kubelet can decode it.
    fn add_named(&mut self, ns: Option<&NamespaceState>, rule: &crate::state::snapshot::Rule) {
        for secret in &rule.secrets {
            match ns
                .and_then(|ns| ns.secrets().get(secret.as_str()))
                .map(|s| &s.usage)
            {
                Some(SecretUse::Registries(_)) => self.add(
                    secret,
                    Origin::Rule {
                        name: rule.name.clone(),
                        mode: rule.mode,
                    },
                ),
                Some(SecretUse::Undecodable { reason, .. }) => {
                    self.problems.push(Problem::RuleSecretUndecodable {
                        rule: rule.name.clone(),
                        secret: secret.clone(),
                        reason: reason.to_string(),
                    })
                }
                None => self.problems.push(Problem::RuleSecretMissing {
                    rule: rule.name.clone(),
                    secret: secret.clone(),
                }),
            }
        }
    }
}

/// The secrets for one lookup string in `namespace`: exclusive rules win for the images they
/// match; otherwise discovery, then `add` rules, then cluster credentials, in that order.
pub fn choose(
    state: &ClusterState,
    namespace: &str,
    ns: Option<&NamespaceState>,
    lookup: &str,
) -> Choice {
    let mut choice = Choice::default();
    let rules = ns.map(NamespaceState::rules).unwrap_or_default();
    let matching = |mode: RuleMode| {
        rules
            .iter()
            .filter(move |rule| rule.mode == mode && rule.matches(lookup))
    };
    for rule in matching(RuleMode::Exclusive) {
        choice.exclusive = true;
        choice.add_named(ns, rule);
    }
    if choice.exclusive {
        return choice;
    }
    if let Some(ns) = ns {
        // A ClusterPullSecret's copy is injected on its behalf only (below): a copy whose
        // ClusterPullSecret is gone, or whose source left the served namespaces, is stale.
        let copy = |name: &SecretName| {
            ns.secrets()
                .get(name.as_ref())
                .is_some_and(|secret| secret.managed_for.is_some())
        };
        for secret in ns.keyring().lookup(lookup) {
            if !copy(secret) {
                choice.add(secret, Origin::Discovery);
            }
        }
    }
    for rule in matching(RuleMode::Add) {
        choice.add_named(ns, rule);
    }
    for credential in state.credentials_for(namespace) {
        if credential.is_source(namespace) || !credential.matches(lookup) {
            continue;
        }
        let source = || format!("{}/{}", credential.source_namespace, credential.source_name);
        match &credential.source {
            CredentialSource::Missing => choice.problems.push(Problem::SourceMissing {
                credential: credential.name.clone(),
                source: source(),
            }),
            CredentialSource::Found(secret) => {
                if let SecretUse::Undecodable { reason, .. } = &secret.usage {
                    choice.problems.push(Problem::SourceUndecodable {
                        credential: credential.name.clone(),
                        source: source(),
                        reason: reason.to_string(),
                    });
                    continue;
                }
                let existing = ns.and_then(|ns| ns.secrets().get(credential.target_name.as_str()));
                if let Some(problem) = copy_problem(state.copies(), credential, namespace, existing)
                {
                    choice.problems.push(problem);
                    continue;
                }
                if let Some(message) = &credential.stale {
                    choice.problems.push(Problem::CredentialStale {
                        credential: credential.name.clone(),
                        message: message.clone(),
                    });
                }
                choice.add(
                    &credential.target_name,
                    Origin::ClusterCredential {
                        name: credential.name.clone(),
                    },
                );
            }
        }
    }
    choice
}

/// Why the copy of a cluster credential in `namespace` cannot be injected, if it cannot.
fn copy_problem(
    copies: Copies,
    credential: &ClusterCredential,
    namespace: &str,
    existing: Option<&PullSecret>,
) -> Option<Problem> {
    let (credential_name, target) = (credential.name.clone(), credential.target_name.clone());
    let namespace = namespace.to_owned();
    match (copies, existing) {
        // The controller never overwrites a Secret of that name it does not manage for this
        // credential, so the credential cannot count on it. One not written yet will be.
        (Copies::Controller, Some(secret))
            if secret.managed_for.as_deref() != Some(credential.name.as_str()) =>
        {
            Some(Problem::TargetTaken {
                credential: credential_name,
                namespace,
                target,
            })
        }
        (Copies::Controller, _) => None,
        // Nobody writes copies: only one that exists can be pulled with.
        (Copies::Manual, None) => Some(Problem::CopyMissing {
            credential: credential_name,
            namespace,
            target,
        }),
        (Copies::Manual, Some(secret)) => match &secret.usage {
            SecretUse::Registries(_) => None,
            SecretUse::Undecodable { reason, .. } => Some(Problem::CopyUndecodable {
                credential: credential_name,
                namespace,
                target,
                reason: reason.to_string(),
            }),
        },
    }
}

impl Decision {
    fn opted_out(reason: OptOut) -> Decision {
        Decision {
            opt_out: Some(reason),
            ..Decision::default()
        }
    }

    fn record(&mut self, secret: &str, lookup: &str) {
        match self
            .injected
            .iter_mut()
            .find(|injection| injection.secret == secret)
        {
            Some(injection) => {
                if !injection
                    .registries
                    .iter()
                    .any(|registry| registry == lookup)
                {
                    injection.registries.push(lookup.to_owned());
                }
            }
            None => self.injected.push(Injection {
                secret: secret.to_owned(),
                registries: vec![lookup.to_owned()],
            }),
        }
    }

    pub fn injected_names(&self) -> impl Iterator<Item = &str> {
        self.injected
            .iter()
            .map(|injection| injection.secret.as_str())
    }
}

/// Collects warnings, one per secret or image, capped at [`MAX_WARNINGS`].
#[derive(Default)]
struct Warnings {
    list: Vec<String>,
    undecodable_seen: HashSet<String>,
}

impl Warnings {
    fn push(&mut self, warning: String) {
        if self.list.len() < MAX_WARNINGS && !self.list.contains(&warning) {
            self.list.push(warning);
        }
    }

    /// Undecodable secrets that look meant for this image (or whose registries cannot be read,
    /// when nothing else served the image).
    fn undecodable_for_image(&mut self, ns: &NamespaceState, lookup: &str, unserved: bool) {
        let suspected = ns.undecodable().lookup(lookup);
        let unknown = ns
            .undecodable_unknown_registries()
            .iter()
            .filter(|_| unserved);
        for name in suspected.into_iter().chain(unknown) {
            if let Some(SecretUse::Undecodable { reason, .. }) =
                ns.secrets().get(name.as_ref()).map(|s| &s.usage)
                && self.undecodable_seen.insert(name.to_string())
            {
                self.push(format!(
                    "secret {} cannot be decoded by the kubelet ({reason}); not injected for {lookup}",
                    quote(name)
                ));
            }
        }
    }

    /// Secrets that would serve the image if registry hosts were compared without case: the
    /// kubelet compares them exactly, so they are not used.
    fn case_only_mismatch(&mut self, ns: &NamespaceState, lookup: &str, chosen: &[Chosen]) {
        let folded = fold_host_case(lookup);
        let keyring = match (ns.case_folded_keyring(), &folded) {
            (Some(keyring), _) => keyring,
            (None, Cow::Owned(_)) => ns.keyring(),
            (None, Cow::Borrowed(_)) => return,
        };
        let exact = ns.keyring().lookup(lookup);
        for name in keyring.lookup(&folded) {
            let used = exact.iter().any(|secret| secret == &name)
                || chosen.iter().any(|secret| *secret.secret == **name);
            if !used {
                self.push(format!(
                    "secret {} matches {lookup} only if case is ignored, and the kubelet compares registry hosts case-sensitively: not used; write the host in the same case in the image and in the secret's key",
                    quote(name)
                ));
            }
        }
    }

    /// Secrets already on the pod that will make the kubelet fail every pull.
    fn undecodable_on_pod<'a>(
        &mut self,
        ns: &NamespaceState,
        names: impl Iterator<Item = &'a str>,
    ) {
        for name in names {
            if let Some(SecretUse::Undecodable { reason, .. }) =
                ns.secrets().get(name).map(|s| &s.usage)
                && self.undecodable_seen.insert(name.to_owned())
            {
                self.push(format!(
                    "imagePullSecrets entry {} cannot be decoded by the kubelet ({reason}); every image pull of this pod will fail",
                    quote(name)
                ));
            }
        }
    }

    fn into_list(self) -> Vec<String> {
        self.list
    }
}

/// `name (registry, registry); name (registry)`: what the pod annotation and audit say.
///
/// Bounded, because a pod with thousands of containers must not grow an annotation past the
/// apiserver's 256 KiB limit: at most [`MAX_REGISTRIES_LISTED`] registries per secret, and
/// [`MAX_DESCRIPTION_CHARS`] in all.
pub fn describe(injected: &[Injection]) -> String {
    let text = injected
        .iter()
        .map(|injection| {
            let shown =
                &injection.registries[..injection.registries.len().min(MAX_REGISTRIES_LISTED)];
            match injection.registries.len() - shown.len() {
                0 => format!("{} ({})", injection.secret, shown.join(", ")),
                more => format!("{} ({}, +{more} more)", injection.secret, shown.join(", ")),
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    clip(&text, MAX_DESCRIPTION_CHARS).into_owned()
}

/// The audit annotations (the apiserver prefixes each key with the webhook's name). In shadow
/// mode the keys say what would have been injected, so an audit query cannot mistake one for
/// the other.
fn audit_annotations(
    injected: &[Injection],
    description: String,
    mode: Mode,
) -> BTreeMap<String, String> {
    let names: Vec<&str> = injected
        .iter()
        .map(|injection| injection.secret.as_str())
        .collect();
    let (secrets_key, for_key) = match mode {
        Mode::On => ("injected-secrets", "injected-for"),
        Mode::Shadow => ("shadow-would-inject-secrets", "shadow-would-inject-for"),
    };
    BTreeMap::from([
        (
            secrets_key.to_owned(),
            clip(&names.join(","), MAX_DESCRIPTION_CHARS).into_owned(),
        ),
        (for_key.to_owned(), description),
    ])
}

/// Appends the secrets and records them in the annotation; never removes or reorders.
fn patch_for(pod: &PodView, injected: &[Injection], description: &str) -> Patch {
    let mut operations = Vec::with_capacity(injected.len() + 1);
    let reference = |name: &str| json!({ "name": name });
    if pod.has_pull_secret_list() {
        for injection in injected {
            operations.push(add(
                PointerBuf::from_tokens(["spec", "imagePullSecrets", "-"]),
                reference(&injection.secret),
            ));
        }
    } else {
        let list = injected
            .iter()
            .map(|injection| reference(&injection.secret))
            .collect();
        operations.push(add(
            PointerBuf::from_tokens(["spec", "imagePullSecrets"]),
            Value::Array(list),
        ));
    }
    // On reinvocation the annotation may exist already: extend it rather than lose the first pass.
    let annotation = match pod.annotation(INJECTED_ANNOTATION) {
        Some(earlier) if !earlier.is_empty() => {
            clip(&format!("{earlier}; {description}"), MAX_DESCRIPTION_CHARS).into_owned()
        }
        _ => description.to_owned(),
    };
    // A JSON patch `add` needs the parent to exist: create whatever level is missing.
    operations.push(if !pod.metadata.present {
        add(
            PointerBuf::from_tokens(["metadata"]),
            json!({ "annotations": { INJECTED_ANNOTATION: annotation } }),
        )
    } else if pod.metadata.annotations.is_none() {
        add(
            PointerBuf::from_tokens(["metadata", "annotations"]),
            json!({ INJECTED_ANNOTATION: annotation }),
        )
    } else {
        add(
            PointerBuf::from_tokens(["metadata", "annotations", INJECTED_ANNOTATION]),
            Value::String(annotation),
        )
    });
    Patch(operations)
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

#[cfg(test)]
mod tests;
