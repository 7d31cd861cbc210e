//! The cluster state the admission decision reads: pull secrets, namespace labels, the
//! `PullSecretRule`s of each namespace and the cluster credentials (`ClusterPullSecret`s).
//!
//! One model serves the live server (fed by watches) and the offline CLI (fed by `--state`
//! files), so the two cannot disagree. A [`ClusterState`] is immutable once built and cheap to
//! share behind an `Arc`; [`StateBuilder`] is the mutable side that watch events and state files
//! write into, and it republishes only the namespaces that changed.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};

use crate::kubelet::dockerconfig::{self, DecodeError};
use crate::kubelet::keyring::{Keyring, fold_host_case};
use crate::state::crd::{
    ClusterPullSecret, ClusterPullSecretStatus, LabelSelector, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    MintedCredentialStatus, OWNER_LABEL, PullSecretRule, RuleMode, SYSTEM_NAMESPACES,
};

/// Label on a Pod or Namespace that turns injection off when set to `"false"`.
pub const INJECT_LABEL: &str = "pullsecret-injector.io/inject";
/// Label on a Namespace choosing its mode: `shadow` (decide, record, change nothing) or `on`
/// (inject); any other value, or none, leaves the namespace in the server's default mode.
pub const MODE_LABEL: &str = "pullsecret-injector.io/mode";

/// Whether the webhook changes pods or only records what it would have done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Inject: the pod gets the secrets.
    #[default]
    On,
    /// Decide as usual, return no patch: an audit annotation, a metric and a log line say
    /// what would have been injected.
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::On => "on",
            Mode::Shadow => "shadow",
        }
    }

    /// The mode a [`MODE_LABEL`] value asks for; `None` for a value it does not know.
    pub fn from_label(value: &str) -> Option<Mode> {
        match value {
            "on" => Some(Mode::On),
            "shadow" => Some(Mode::Shadow),
            _ => None,
        }
    }
}

/// Where a namespace's mode comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeSource {
    /// The namespace's [`MODE_LABEL`].
    NamespaceLabel,
    /// The server's default (`serve --shadow`): no label, or one with an unknown value.
    Default,
}

/// The label the apiserver puts on every namespace: all that is known of a namespace the
/// watch has not delivered yet.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What the kubelet can make of one Secret in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretUse {
    /// Decodable: the raw `auths` keys. Credentials themselves are never kept.
    Registries(RegistryKeys),
    /// The kubelet fails to decode it, so it must never be injected. `suspected_registries`
    /// are the keys a lenient reading still finds, to tell users which images it was meant for.
    Undecodable {
        /// Boxed: rare, and larger than everything else a secret keeps.
        reason: Box<DecodeError>,
        suspected_registries: RegistryKeys,
    },
}

/// Raw `auths` keys in their order; the usual single key takes one allocation.
#[derive(Clone, Eq)]
pub struct RegistryKeys(KeyList);

#[derive(Clone, Eq, PartialEq)]
enum KeyList {
    One(Box<str>),
    /// No key, or several.
    Other(Box<[Box<str>]>),
}

impl From<Vec<String>> for RegistryKeys {
    fn from(keys: Vec<String>) -> Self {
        RegistryKeys(match <[String; 1]>::try_from(keys) {
            Ok([key]) => KeyList::One(key.into()),
            Err(keys) => KeyList::Other(keys.into_iter().map(Box::from).collect()),
        })
    }
}

impl Deref for RegistryKeys {
    type Target = [Box<str>];

    fn deref(&self) -> &[Box<str>] {
        match &self.0 {
            KeyList::One(key) => std::slice::from_ref(key),
            KeyList::Other(keys) => keys,
        }
    }
}

impl PartialEq for RegistryKeys {
    fn eq(&self, other: &RegistryKeys) -> bool {
        **self == **other
    }
}

impl fmt::Debug for RegistryKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The types of registry-credential Secrets the kubelet reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretType {
    /// `kubernetes.io/dockerconfigjson`
    DockerConfigJson,
    /// `kubernetes.io/dockercfg`
    DockerCfg,
}

impl SecretType {
    pub fn from_name(name: &str) -> Option<SecretType> {
        match name {
            dockerconfig::DOCKER_CONFIG_JSON_TYPE => Some(SecretType::DockerConfigJson),
            dockerconfig::DOCKERCFG_TYPE => Some(SecretType::DockerCfg),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SecretType::DockerConfigJson => dockerconfig::DOCKER_CONFIG_JSON_TYPE,
            SecretType::DockerCfg => dockerconfig::DOCKERCFG_TYPE,
        }
    }
}

/// A registry-credential Secret, reduced to what the decision needs. Its name is the key it
/// is kept under in [`NamespaceState::secrets`].
///
/// The server keeps one per cached Secret, so it is kept small: no name, a boxed decode error,
/// a single registry key in one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSecret {
    pub secret_type: SecretType,
    pub usage: SecretUse,
    /// The ClusterPullSecret this Secret is a managed copy of, if any.
    pub managed_for: Option<Box<str>>,
}

impl PullSecret {
    /// Reads a Secret as the kubelet would; `None` when the kubelet ignores it altogether
    /// (not a registry-credential type, or its data key missing or empty).
    pub fn from_secret(secret: &Secret) -> Option<PullSecret> {
        let secret_type = SecretType::from_name(secret.type_.as_deref()?)?;
        let mut data: BTreeMap<String, Vec<u8>> = secret
            .data
            .iter()
            .flatten()
            .map(|(key, value)| (key.clone(), value.0.clone()))
            .collect();
        // stringData only occurs in manifests and state files; the apiserver merges it over data.
        for (key, value) in secret.string_data.iter().flatten() {
            data.insert(key.clone(), value.clone().into_bytes());
        }
        let usage = match dockerconfig::registry_keys(secret_type.as_str(), &data) {
            Ok(None) => return None,
            Ok(Some(keys)) => SecretUse::Registries(keys.into()),
            Err(reason) => SecretUse::Undecodable {
                suspected_registries: suspected_registries(secret_type, &data).into(),
                reason: Box::new(reason),
            },
        };
        let labels = secret.metadata.labels.as_ref();
        let managed_for = labels
            .filter(|labels| {
                labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
            })
            .and_then(|labels| labels.get(OWNER_LABEL))
            .map(|owner| owner.as_str().into());
        Some(PullSecret {
            secret_type,
            usage,
            managed_for,
        })
    }

    pub fn registries(&self) -> &[Box<str>] {
        match &self.usage {
            SecretUse::Registries(keys) => keys,
            SecretUse::Undecodable {
                suspected_registries,
                ..
            } => suspected_registries,
        }
    }

    pub fn is_usable(&self) -> bool {
        matches!(self.usage, SecretUse::Registries(_))
    }
}

/// Registry keys of a secret the kubelet rejects, read leniently (only key names, never values).
fn suspected_registries(secret_type: SecretType, data: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let (payload, nested) = match secret_type {
        SecretType::DockerConfigJson => (data.get(dockerconfig::DOCKER_CONFIG_JSON_KEY), true),
        SecretType::DockerCfg => (data.get(dockerconfig::DOCKERCFG_KEY), false),
    };
    let Some(Ok(serde_json::Value::Object(top))) =
        payload.map(|bytes| serde_json::from_slice::<serde_json::Value>(bytes))
    else {
        return Vec::new();
    };
    let auths = if nested {
        top.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("auths"))
            .and_then(|(_, value)| value.as_object())
    } else {
        Some(&top)
    };
    auths
        .map(|auths| auths.keys().cloned().collect())
        .unwrap_or_default()
}

/// Identifies a candidate secret inside a namespace's keyring.
pub type SecretName = Arc<str>;

/// A `PullSecretRule`, with its registry patterns compiled into a keyring.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub mode: RuleMode,
    pub registries: Vec<String>,
    pub secrets: Vec<String>,
    patterns: Keyring<()>,
}

impl Rule {
    pub fn from_resource(rule: &PullSecretRule) -> Option<Rule> {
        Some(Rule {
            name: rule.metadata.name.clone()?,
            mode: rule.spec.mode,
            registries: rule.spec.registries.clone(),
            secrets: rule.spec.secrets.clone(),
            patterns: Keyring::new([((), &rule.spec.registries)]),
        })
    }

    /// Whether one of the rule's patterns matches the lookup string, by the keyring's rules.
    pub fn matches(&self, lookup: &str) -> bool {
        !self.patterns.lookup(lookup).is_empty()
    }
}

impl PartialEq for Rule {
    fn eq(&self, other: &Rule) -> bool {
        (&self.name, self.mode, &self.registries, &self.secrets)
            == (&other.name, other.mode, &other.registries, &other.secrets)
    }
}

/// A namespace's registry-credential secrets by name. The names are shared with the
/// namespace's keyrings.
pub type SecretMap = BTreeMap<SecretName, PullSecret>;

/// Everything known about one namespace.
#[derive(Debug, Clone)]
pub struct NamespaceState {
    opted_out: bool,
    /// Labels, when the namespace watch has delivered the namespace.
    labels: Option<Arc<BTreeMap<String, String>>>,
    terminating: bool,
    rules: Vec<Arc<Rule>>,
    secrets: Arc<SecretMap>,
    keyring: Keyring<SecretName>,
    /// The keyring over keys with their hosts lowercased, only when some key's host has an
    /// uppercase letter (rare, so boxed): for the warning that case alone made a key miss.
    case_folded: Option<Box<Keyring<SecretName>>>,
    undecodable: Keyring<SecretName>,
    undecodable_unknown_registries: Vec<SecretName>,
}

impl NamespaceState {
    fn build(entry: &NamespaceEntry) -> NamespaceState {
        let secrets = Arc::clone(&entry.secrets);
        // Candidates in name order: a stable, documented order for what gets appended. The
        // keyrings share the map's names.
        let keyring_of = |usable: bool| {
            Keyring::new(
                secrets
                    .iter()
                    .filter(|(_, secret)| secret.is_usable() == usable)
                    .map(|(name, secret)| (SecretName::clone(name), secret.registries())),
            )
        };
        let keyring = keyring_of(true);
        let usable = || secrets.iter().filter(|(_, secret)| secret.is_usable());
        let case_folded = usable()
            .flat_map(|(_, secret)| secret.registries())
            .any(|key| matches!(fold_host_case(key), Cow::Owned(_)))
            .then(|| {
                Box::new(Keyring::new(usable().map(|(name, secret)| {
                    let folded: Vec<String> = secret
                        .registries()
                        .iter()
                        .map(|key| fold_host_case(key).into_owned())
                        .collect();
                    (SecretName::clone(name), folded)
                })))
            });
        let undecodable = keyring_of(false);
        let undecodable_unknown_registries = secrets
            .iter()
            .filter(|(_, secret)| !secret.is_usable() && secret.registries().is_empty())
            .map(|(name, _)| SecretName::clone(name))
            .collect();
        NamespaceState {
            opted_out: entry.opted_out,
            labels: entry.labels.clone(),
            terminating: entry.terminating,
            rules: entry.rules.values().cloned().collect(),
            secrets,
            keyring,
            case_folded,
            undecodable,
            undecodable_unknown_registries,
        }
    }

    /// True when the namespace carries `pullsecret-injector.io/inject: "false"`.
    pub fn opted_out(&self) -> bool {
        self.opted_out
    }

    /// The namespace's labels; `None` when the namespace itself is not known (yet).
    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.labels.as_deref()
    }

    /// Whether the namespace exists as far as the namespace watch knows.
    pub fn exists(&self) -> bool {
        self.labels.is_some()
    }

    pub fn terminating(&self) -> bool {
        self.terminating
    }

    /// The namespace's `PullSecretRule`s, in name order.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// Every registry-credential secret of the namespace, by name.
    pub fn secrets(&self) -> &SecretMap {
        &self.secrets
    }

    /// The kubelet keyring over every decodable secret of the namespace.
    pub fn keyring(&self) -> &Keyring<SecretName> {
        &self.keyring
    }

    /// The keyring over every decodable secret with the hosts of its keys lowercased; `None`
    /// when no key's host has an uppercase letter (then it would equal [`Self::keyring`]).
    pub fn case_folded_keyring(&self) -> Option<&Keyring<SecretName>> {
        self.case_folded.as_deref()
    }

    /// A keyring over the registries undecodable secrets appear to be meant for.
    pub fn undecodable(&self) -> &Keyring<SecretName> {
        &self.undecodable
    }

    /// Undecodable secrets whose registries cannot be read at all.
    pub fn undecodable_unknown_registries(&self) -> &[SecretName] {
        &self.undecodable_unknown_registries
    }
}

/// Where a cluster credential's source Secret stands.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialSource {
    /// No registry-credential Secret of that name in that namespace.
    Missing,
    Found(PullSecret),
}

/// A `ClusterPullSecret`, resolved against its source Secret.
#[derive(Debug, Clone)]
pub struct ClusterCredential {
    pub name: String,
    pub target_name: String,
    pub source_namespace: String,
    pub source_name: String,
    pub selector: LabelSelector,
    /// The `registries` override, when set.
    pub registries: Option<Vec<String>>,
    pub source: CredentialSource,
    /// For a minted credential whose refresh is failing or that expired: the controller's
    /// `CredentialMinted` condition message (never the credential).
    pub stale: Option<String>,
    /// With `credentialProvider`: the controller's last word on the minted credential (when
    /// it was minted, expires and is refreshed next, the last failure; never the credential).
    pub minted: Option<MintedCredentialStatus>,
    /// The override's patterns, or else the source's own keys.
    patterns: Keyring<()>,
}

impl ClusterCredential {
    fn resolve(resource: &ClusterPullSecret, state: &ClusterState) -> Option<ClusterCredential> {
        let spec = &resource.spec;
        let source = state
            .namespace(&spec.source.namespace)
            .and_then(|ns| ns.secrets().get(spec.source.name.as_str()))
            .map_or(CredentialSource::Missing, |secret| {
                CredentialSource::Found(secret.clone())
            });
        let patterns = match (&spec.registries, &source) {
            (Some(registries), _) => Keyring::new([((), registries.as_slice())]),
            (None, CredentialSource::Found(secret)) => Keyring::new([((), secret.registries())]),
            (None, CredentialSource::Missing) => Keyring::new(Vec::<((), Vec<String>)>::new()),
        };
        Some(ClusterCredential {
            name: resource.metadata.name.clone()?,
            target_name: resource.target_name(),
            source_namespace: spec.source.namespace.clone(),
            source_name: spec.source.name.clone(),
            selector: spec.namespace_selector.clone().unwrap_or_default(),
            registries: spec.registries.clone(),
            source,
            stale: stale_credential(resource),
            minted: minted_credential(resource).cloned(),
            patterns,
        })
    }

    /// Whether the credential is meant for this lookup string (override patterns or the
    /// source's keys, matched by the keyring's rules).
    pub fn matches(&self, lookup: &str) -> bool {
        !self.patterns.lookup(lookup).is_empty()
    }

    /// Whether the copy in `namespace` would be the source itself.
    pub fn is_source(&self, namespace: &str) -> bool {
        namespace == self.source_namespace && self.target_name == self.source_name
    }
}

/// The message of a minted credential's `CredentialMinted` condition when it says the refresh
/// is failing or the credential expired.
fn stale_credential(resource: &ClusterPullSecret) -> Option<String> {
    resource.spec.credential_provider.as_ref()?;
    resource
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "CredentialMinted" && c.status == "False")
        .filter(|c| matches!(c.reason.as_str(), "RefreshFailed" | "Expired"))
        .map(|c| c.message.clone())
}

/// A minted credential's `status.credential` (none without `credentialProvider`).
fn minted_credential(resource: &ClusterPullSecret) -> Option<&MintedCredentialStatus> {
    resource.spec.credential_provider.as_ref()?;
    resource.status.as_ref()?.credential.as_ref()
}

/// Who writes the copies of ClusterPullSecrets, which decides when a copy can be counted on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Copies {
    /// The controller (`serve --enable-controller`): a copy counts in every selected namespace,
    /// also before it has been written (the kubelet retries the pull until it is), and a Secret
    /// of that name the controller does not manage is a conflict, never injected for it.
    #[default]
    Controller,
    /// No controller: a ClusterPullSecret injects a Secret named `targetName` only where one
    /// exists, whoever made it (by hand, another tool); where none exists the pod is warned.
    Manual,
}

/// Shards of the published namespace table.
const NAMESPACE_SHARDS: usize = 64;

type NamespaceShard = HashMap<Arc<str>, Arc<NamespaceState>>;

/// The published namespace table, split into shards by a hash of the name: a publish copies
/// the list of shards and the shards of the namespaces that changed, not the whole table (with
/// 1,000 namespaces, a change to one used to copy 1,000 names).
#[derive(Debug, Clone)]
struct NamespaceTable {
    shards: Vec<Arc<NamespaceShard>>,
    len: usize,
}

impl Default for NamespaceTable {
    fn default() -> NamespaceTable {
        let empty = Arc::new(NamespaceShard::new());
        NamespaceTable {
            shards: vec![empty; NAMESPACE_SHARDS],
            len: 0,
        }
    }
}

impl NamespaceTable {
    fn shard_of(name: &str) -> usize {
        // A fixed hasher: the shard of a name must not change between snapshots.
        use std::hash::BuildHasher;
        let hash =
            std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(name);
        (hash % NAMESPACE_SHARDS as u64) as usize
    }

    fn get(&self, name: &str) -> Option<&Arc<NamespaceState>> {
        self.shards[Self::shard_of(name)].get(name)
    }

    fn insert(&mut self, name: &str, state: Arc<NamespaceState>) {
        let shard = Arc::make_mut(&mut self.shards[Self::shard_of(name)]);
        match shard.get_mut(name) {
            Some(known) => *known = state,
            None => {
                shard.insert(Arc::from(name), state);
                self.len += 1;
            }
        }
    }

    fn remove(&mut self, name: &str) {
        let shard = &mut self.shards[Self::shard_of(name)];
        if shard.contains_key(name) {
            Arc::make_mut(shard).remove(name);
            self.len -= 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &NamespaceState)> {
        self.shards
            .iter()
            .flat_map(|shard| shard.iter().map(|(name, ns)| (&**name, &**ns)))
    }

    fn values(&self) -> impl Iterator<Item = &NamespaceState> {
        self.iter().map(|(_, ns)| ns)
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// An immutable snapshot of the cluster, as the admission decision sees it.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    namespaces: NamespaceTable,
    credentials: Arc<Vec<ClusterCredential>>,
    own_namespace: Option<Arc<str>>,
    copies: Copies,
    default_mode: Mode,
    /// Namespaced mode (`serve --namespaces`): the only namespaces served; `None` serves all.
    served: Option<Arc<BTreeSet<String>>>,
}

impl ClusterState {
    /// Whether pods of `namespace` are served at all: always, except outside the list of a
    /// namespaced-mode server (whose webhook selector should never send them).
    pub fn serves(&self, namespace: &str) -> bool {
        self.served
            .as_ref()
            .is_none_or(|served| served.contains(namespace))
    }

    /// [`ClusterState::serves`] only the listed namespaces (namespaced mode).
    pub fn with_served_namespaces(mut self, served: Option<Arc<BTreeSet<String>>>) -> ClusterState {
        self.served = served;
        self
    }

    /// The mode of pods created in `namespace`: its [`MODE_LABEL`] when that names a mode,
    /// else the server's default. The label wins both ways, so a cluster installed in shadow
    /// mode is switched on one namespace at a time, and one namespace of a cluster that
    /// injects can be put back into shadow mode.
    pub fn mode(&self, namespace: &str) -> (Mode, ModeSource) {
        self.mode_of(self.namespace(namespace))
    }

    /// [`ClusterState::mode`] of a namespace already looked up.
    pub fn mode_of(&self, namespace: Option<&NamespaceState>) -> (Mode, ModeSource) {
        let labelled = namespace
            .and_then(NamespaceState::labels)
            .and_then(|labels| labels.get(MODE_LABEL))
            .and_then(|value| Mode::from_label(value));
        match labelled {
            Some(mode) => (mode, ModeSource::NamespaceLabel),
            None => (self.default_mode, ModeSource::Default),
        }
    }

    /// The mode of namespaces without a [`MODE_LABEL`] (`serve --shadow`).
    pub fn default_mode(&self) -> Mode {
        self.default_mode
    }

    /// This state as a server with another default mode would see it (the offline commands'
    /// `--shadow`).
    pub fn with_default_mode(mut self, mode: Mode) -> ClusterState {
        self.default_mode = mode;
        self
    }

    /// Every cluster credential, in name order.
    pub fn credentials(&self) -> &[ClusterCredential] {
        &self.credentials
    }

    /// The injector's own namespace, never served by cluster credentials.
    pub fn own_namespace(&self) -> Option<&str> {
        self.own_namespace.as_deref()
    }

    /// Who writes the copies of ClusterPullSecrets.
    pub fn copies(&self) -> Copies {
        self.copies
    }

    /// Whether a namespace selector selects `namespace`. System namespaces, the injector's
    /// own and terminating ones are never selected. A namespace the watch has not delivered
    /// yet is judged by the one label the apiserver gives every namespace, its name.
    pub fn selects(&self, selector: &LabelSelector, namespace: &str) -> bool {
        let known = self
            .namespace(namespace)
            .and_then(|ns| ns.labels().map(|labels| (labels, ns.terminating())));
        self.selects_with(selector, namespace, known)
    }

    /// [`ClusterState::selects`] with the namespace's labels and whether it is terminating
    /// read elsewhere (e.g. freshly from the API server) instead of from the snapshot.
    pub fn selects_with(
        &self,
        selector: &LabelSelector,
        namespace: &str,
        known: Option<(&BTreeMap<String, String>, bool)>,
    ) -> bool {
        if SYSTEM_NAMESPACES.contains(&namespace) || self.own_namespace() == Some(namespace) {
            return false;
        }
        match known {
            Some((_, true)) => false,
            Some((labels, false)) => selector.matches(labels),
            None => selector.matches(&BTreeMap::from([(
                NAMESPACE_NAME_LABEL.to_owned(),
                namespace.to_owned(),
            )])),
        }
    }

    /// The cluster credentials serving `namespace`.
    pub fn credentials_for<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a ClusterCredential> + 'a {
        self.credentials
            .iter()
            .filter(move |credential| self.selects(&credential.selector, namespace))
    }

    /// Namespaces the namespace watch knows, in no particular order.
    pub fn existing_namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces
            .iter()
            .filter(|(_, ns)| ns.exists())
            .map(|(name, _)| name)
    }

    /// The namespace's state, or `None` when nothing is known about it (no secrets, no labels).
    pub fn namespace(&self, name: &str) -> Option<&NamespaceState> {
        self.namespaces.get(name).map(Arc::as_ref)
    }

    pub fn namespace_count(&self) -> usize {
        self.namespaces.len()
    }

    pub fn secret_count(&self) -> usize {
        self.namespaces.values().map(|ns| ns.secrets.len()).sum()
    }

    pub fn undecodable_secret_count(&self) -> usize {
        self.namespaces
            .values()
            .flat_map(|ns| ns.secrets.values())
            .filter(|secret| !secret.is_usable())
            .count()
    }
}

#[derive(Debug, Default)]
struct NamespaceEntry {
    /// Labels, once the namespace watch has delivered the namespace. Shared with the
    /// published `NamespaceState`, like `secrets`.
    labels: Option<Arc<BTreeMap<String, String>>>,
    opted_out: bool,
    terminating: bool,
    rules: BTreeMap<String, Arc<Rule>>,
    /// Shared with the published `NamespaceState` until the next change (copy on write), so
    /// a cached secret is held once, not once here and once per snapshot.
    secrets: Arc<SecretMap>,
}

impl NamespaceEntry {
    fn is_empty(&self) -> bool {
        self.labels.is_none() && self.secrets.is_empty() && self.rules.is_empty()
    }
}

/// The mutable side: receives objects, publishes snapshots.
#[derive(Debug, Default)]
pub struct StateBuilder {
    namespaces: HashMap<String, NamespaceEntry>,
    cluster_pull_secrets: BTreeMap<String, ClusterPullSecret>,
    own_namespace: Option<Arc<str>>,
    copies: Copies,
    default_mode: Mode,
    served: Option<Arc<BTreeSet<String>>>,
    published: Arc<ClusterState>,
    /// A Secret of one registry type shadowed by a Secret of the same name and the other type.
    /// Only one can exist at a time, but the two types come from two watches that deliver
    /// independently, so the old one's Delete may arrive after the new one's Apply.
    displaced: HashMap<(String, String), PullSecret>,
    dirty: HashSet<String>,
    credentials_dirty: bool,
    namespaces_changed: bool,
}

impl StateBuilder {
    pub fn new() -> StateBuilder {
        StateBuilder::default()
    }

    /// The injector's own namespace, which cluster credentials never serve.
    pub fn set_own_namespace(&mut self, namespace: Option<&str>) {
        let namespace = namespace.filter(|ns| !ns.is_empty()).map(Arc::from);
        if self.own_namespace != namespace {
            self.own_namespace = namespace;
            self.credentials_dirty = true;
        }
    }

    /// Who writes the copies of ClusterPullSecrets (the server: whether it runs the controller).
    pub fn set_copies(&mut self, copies: Copies) {
        if self.copies != copies {
            self.copies = copies;
            self.credentials_dirty = true;
        }
    }

    /// The mode of namespaces without a [`MODE_LABEL`] (the server: `--shadow`).
    pub fn set_default_mode(&mut self, mode: Mode) {
        self.default_mode = mode;
    }

    /// The only namespaces served (the server: `--namespaces`); `None` serves all.
    pub fn set_served_namespaces(&mut self, served: Option<Arc<BTreeSet<String>>>) {
        self.served = served;
    }

    /// Whether namespaces appeared, went or changed labels since the last call (the
    /// controller re-evaluates its selectors then).
    pub fn take_namespace_changes(&mut self) -> bool {
        std::mem::take(&mut self.namespaces_changed)
    }

    pub fn apply_rule(&mut self, rule: &PullSecretRule) {
        let (Some(namespace), Some(rule)) = (&rule.metadata.namespace, Rule::from_resource(rule))
        else {
            return;
        };
        let entry = self.namespaces.entry(namespace.clone()).or_default();
        if entry
            .rules
            .get(&rule.name)
            .is_some_and(|known| **known == rule)
        {
            return;
        }
        entry.rules.insert(rule.name.clone(), Arc::new(rule));
        self.dirty.insert(namespace.clone());
    }

    pub fn delete_rule(&mut self, namespace: &str, name: &str) {
        if let Some(entry) = self.namespaces.get_mut(namespace)
            && entry.rules.remove(name).is_some()
        {
            self.dirty.insert(namespace.to_owned());
        }
    }

    /// Keeps only the rules `keep(namespace, name)` accepts (the end of a relist).
    pub fn retain_rules(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        for (namespace, entry) in &mut self.namespaces {
            let before = entry.rules.len();
            entry.rules.retain(|name, _| keep(namespace, name));
            if entry.rules.len() != before {
                self.dirty.insert(namespace.clone());
            }
        }
    }

    pub fn apply_cluster_pull_secret(&mut self, resource: &ClusterPullSecret) {
        let Some(name) = &resource.metadata.name else {
            return;
        };
        // Only the spec, a failing refresh and a minted credential's times matter here (the
        // audit reads them; they change once per refresh); other status and metadata churn is
        // not kept.
        let stale = stale_credential(resource);
        let minted = minted_credential(resource);
        if self.cluster_pull_secrets.get(name).is_some_and(|known| {
            known.spec == resource.spec
                && stale_credential(known) == stale
                && minted_credential(known) == minted
        }) {
            return;
        }
        let mut kept = ClusterPullSecret::new(name, resource.spec.clone());
        kept.status = resource
            .status
            .as_ref()
            .map(|status| ClusterPullSecretStatus {
                conditions: status
                    .conditions
                    .iter()
                    .filter(|c| stale.is_some() && c.type_ == "CredentialMinted")
                    .cloned()
                    .collect(),
                credential: minted.cloned(),
                ..ClusterPullSecretStatus::default()
            });
        self.cluster_pull_secrets.insert(name.clone(), kept);
        self.credentials_dirty = true;
    }

    pub fn delete_cluster_pull_secret(&mut self, name: &str) {
        if self.cluster_pull_secrets.remove(name).is_some() {
            self.credentials_dirty = true;
        }
    }

    /// Keeps only the ClusterPullSecrets `keep` accepts (the end of a relist).
    pub fn retain_cluster_pull_secrets(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let before = self.cluster_pull_secrets.len();
        self.cluster_pull_secrets.retain(|name, _| keep(name));
        if self.cluster_pull_secrets.len() != before {
            self.credentials_dirty = true;
        }
    }

    /// Adds or replaces a Secret; one the kubelet ignores (its data key missing or empty) is
    /// dropped, as if deleted. Secrets of other types are not registry credentials: ignored.
    pub fn apply_secret(&mut self, secret: &Secret) {
        let (Some(namespace), Some(name), Some(secret_type)) = (
            &secret.metadata.namespace,
            &secret.metadata.name,
            secret.type_.as_deref().and_then(SecretType::from_name),
        ) else {
            return;
        };
        self.set_secret(
            namespace,
            name,
            secret_type,
            PullSecret::from_secret(secret),
        );
    }

    /// A Secret of `secret_type` was deleted. A Secret of the same name and the other type is
    /// not touched: deletes match on type.
    pub fn delete_secret(&mut self, namespace: &str, name: &str, secret_type: SecretType) {
        self.set_secret(namespace, name, secret_type, None);
    }

    /// Records what the watch of `secret_type` says about `namespace/name`. The latest Secret
    /// seen is the one used; the other type's stays aside until its own watch deletes it.
    fn set_secret(
        &mut self,
        namespace: &str,
        name: &str,
        secret_type: SecretType,
        secret: Option<PullSecret>,
    ) {
        if secret.is_none() && !self.namespaces.contains_key(namespace) {
            return;
        }
        let key = (namespace.to_owned(), name.to_owned());
        let entry = self.namespaces.entry(namespace.to_owned()).or_default();
        let current = entry.secrets.get(name);
        match secret {
            Some(secret) => {
                if current == Some(&secret) {
                    return;
                }
                let secrets = Arc::make_mut(&mut entry.secrets);
                match secrets.get_mut(name) {
                    // Keeps the name the published keyrings share.
                    Some(known) => {
                        let replaced = std::mem::replace(known, secret);
                        if replaced.secret_type != secret_type {
                            self.displaced.insert(key, replaced);
                        }
                    }
                    None => {
                        secrets.insert(SecretName::from(name), secret);
                    }
                }
            }
            None if current.is_some_and(|known| known.secret_type == secret_type) => {
                let secrets = Arc::make_mut(&mut entry.secrets);
                match self.displaced.remove(&key) {
                    Some(other) => {
                        if let Some(known) = secrets.get_mut(name) {
                            *known = other;
                        }
                    }
                    None => {
                        secrets.remove(name);
                    }
                }
            }
            None => {
                // Only the shadowed one, if it is of this type, is gone.
                if self
                    .displaced
                    .get(&key)
                    .is_some_and(|other| other.secret_type == secret_type)
                {
                    self.displaced.remove(&key);
                }
                return;
            }
        }
        self.dirty.insert(namespace.to_owned());
    }

    pub fn apply_namespace(&mut self, namespace: &Namespace) {
        let Some(name) = &namespace.metadata.name else {
            return;
        };
        let labels = namespace.metadata.labels.clone().unwrap_or_default();
        let opted_out = labels
            .get(INJECT_LABEL)
            .is_some_and(|value| value == "false");
        let terminating = namespace.metadata.deletion_timestamp.is_some();
        let entry = self.namespaces.entry(name.clone()).or_default();
        if entry.labels.as_deref() == Some(&labels) && entry.terminating == terminating {
            return;
        }
        entry.labels = Some(Arc::new(labels));
        entry.opted_out = opted_out;
        entry.terminating = terminating;
        self.dirty.insert(name.clone());
        self.namespaces_changed = true;
    }

    pub fn delete_namespace(&mut self, name: &str) {
        if let Some(entry) = self.namespaces.get_mut(name) {
            entry.labels = None;
            entry.opted_out = false;
            entry.terminating = false;
            self.dirty.insert(name.to_owned());
            self.namespaces_changed = true;
        }
    }

    /// Keeps only the secrets of `secret_type` that `keep(namespace, name)` accepts: the end of a
    /// relist, which drops what was deleted while the watch was down.
    pub fn retain_secrets(
        &mut self,
        secret_type: SecretType,
        mut keep: impl FnMut(&str, &str) -> bool,
    ) {
        let mut gone = Vec::new();
        for (namespace, entry) in &self.namespaces {
            for (name, secret) in entry.secrets.iter() {
                if secret.secret_type == secret_type && !keep(namespace, name) {
                    gone.push((namespace.clone(), name.to_string()));
                }
            }
        }
        self.displaced.retain(|(namespace, name), secret| {
            secret.secret_type != secret_type || keep(namespace, name)
        });
        for (namespace, name) in gone {
            self.delete_secret(&namespace, &name, secret_type);
        }
    }

    /// Forgets the labels of namespaces `keep` rejects (the end of a namespace relist).
    pub fn retain_namespaces(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let gone: Vec<String> = self
            .namespaces
            .iter()
            .filter(|(name, entry)| entry.labels.is_some() && !keep(name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.delete_namespace(&name);
        }
    }

    /// A snapshot including every change so far; rebuilds only the namespaces that changed.
    pub fn snapshot(&mut self) -> Arc<ClusterState> {
        // A source Secret that changed changes the credentials made from it.
        self.credentials_dirty |= self
            .cluster_pull_secrets
            .values()
            .any(|resource| self.dirty.contains(resource.spec.source.namespace.as_str()));
        if self.dirty.is_empty()
            && !self.credentials_dirty
            && self.published.default_mode == self.default_mode
            && self.published.served == self.served
        {
            return Arc::clone(&self.published);
        }
        let mut namespaces = self.published.namespaces.clone();
        for name in self.dirty.drain() {
            match self.namespaces.get(&name) {
                Some(entry) if !entry.is_empty() => {
                    namespaces.insert(&name, Arc::new(NamespaceState::build(entry)));
                }
                _ => {
                    self.namespaces.remove(&name);
                    namespaces.remove(&name);
                }
            }
        }
        let mut state = ClusterState {
            namespaces,
            credentials: Arc::clone(&self.published.credentials),
            own_namespace: self.own_namespace.clone(),
            copies: self.copies,
            default_mode: self.default_mode,
            served: self.served.clone(),
        };
        if std::mem::take(&mut self.credentials_dirty) {
            let credentials = self
                .cluster_pull_secrets
                .values()
                .filter_map(|resource| ClusterCredential::resolve(resource, &state))
                .collect();
            state.credentials = Arc::new(credentials);
        }
        self.published = Arc::new(state);
        Arc::clone(&self.published)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn secret(name: &str, config: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("ns".to_owned()),
                ..ObjectMeta::default()
            },
            type_: Some(dockerconfig::DOCKER_CONFIG_JSON_TYPE.to_owned()),
            data: Some(BTreeMap::from([(
                dockerconfig::DOCKER_CONFIG_JSON_KEY.to_owned(),
                ByteString(config.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        }
    }

    #[test]
    fn registry_keys_keep_their_order_whatever_their_number() {
        for keys in [vec![], vec!["a.io"], vec!["b.io", "a.io", "c.io"]] {
            let owned: Vec<String> = keys.iter().map(|key| key.to_string()).collect();
            let registry_keys = RegistryKeys::from(owned.clone());
            assert_eq!(
                registry_keys.iter().map(|key| &**key).collect::<Vec<_>>(),
                keys
            );
            assert_eq!(registry_keys, RegistryKeys::from(owned));
            assert_eq!(format!("{registry_keys:?}"), format!("{keys:?}"));
        }
        assert_ne!(
            RegistryKeys::from(vec!["a.io".to_owned()]),
            RegistryKeys::from(vec!["a.io".to_owned(), "b.io".to_owned()])
        );
    }

    fn secret_in(namespace: &str, name: &str, registry: &str) -> Secret {
        let mut secret = secret(name, &format!(r#"{{"auths":{{"{registry}":{{}}}}}}"#));
        secret.metadata.namespace = Some(namespace.to_owned());
        secret
    }

    #[test]
    fn publishing_many_namespaces_keeps_each_and_leaves_older_snapshots_alone() {
        let mut builder = StateBuilder::new();
        for ns in 0..1_000 {
            builder.apply_secret(&secret_in(&format!("ns-{ns}"), "a", &format!("r{ns}.io")));
        }
        let first = builder.snapshot();
        assert_eq!(first.namespace_count(), 1_000);
        assert_eq!(first.secret_count(), 1_000);
        // Change one, add one, remove one.
        builder.apply_secret(&secret_in("ns-5", "a", "changed.io"));
        builder.apply_secret(&secret_in("ns-new", "a", "new.io"));
        builder.delete_secret("ns-9", "a", SecretType::DockerConfigJson);
        let second = builder.snapshot();
        assert_eq!(second.namespace_count(), 1_000);
        assert!(second.namespace("ns-9").is_none());
        let lookup = |state: &ClusterState, ns: &str, image: &str| {
            state
                .namespace(ns)
                .map_or(0, |ns| ns.keyring().lookup(image).len())
        };
        assert_eq!(lookup(&second, "ns-5", "changed.io/x"), 1);
        assert_eq!(lookup(&second, "ns-5", "r5.io/x"), 0);
        assert_eq!(lookup(&second, "ns-new", "new.io/x"), 1);
        for ns in (0..1_000).filter(|ns| ![5, 9].contains(ns)) {
            let name = format!("ns-{ns}");
            assert_eq!(lookup(&second, &name, &format!("r{ns}.io/x")), 1, "{name}");
        }
        // The earlier snapshot still shows the cluster as it was.
        assert_eq!(first.namespace_count(), 1_000);
        assert_eq!(lookup(&first, "ns-5", "r5.io/x"), 1);
        assert_eq!(lookup(&first, "ns-9", "r9.io/x"), 1);
        assert!(first.namespace("ns-new").is_none());
        // Namespaces that did not change are shared, not copied.
        let same = |ns: &str| {
            std::ptr::eq(
                first.namespace(ns).expect("first"),
                second.namespace(ns).expect("second"),
            )
        };
        assert!(same("ns-1") && !same("ns-5"));
    }

    #[test]
    fn keyring_shares_the_names_of_the_secret_map() {
        let mut builder = StateBuilder::new();
        builder.apply_secret(&secret("a", r#"{"auths":{"a.io":{}}}"#));
        let before = builder.snapshot();
        // A changed secret keeps the name the published keyring already holds.
        builder.apply_secret(&secret("a", r#"{"auths":{"b.io":{}}}"#));
        let after = builder.snapshot();
        let shared_name = |state: &ClusterState, lookup: &str| {
            let ns = state.namespace("ns").expect("namespace");
            let name = ns.secrets().keys().next().expect("secret");
            let found = ns.keyring().lookup(lookup);
            assert!(Arc::ptr_eq(name, found[0]), "{lookup}");
            Arc::clone(name)
        };
        let name_before = shared_name(&before, "a.io/x");
        let name_after = shared_name(&after, "b.io/x");
        assert!(Arc::ptr_eq(&name_before, &name_after));
    }
}
