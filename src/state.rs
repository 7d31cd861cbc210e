//! The cluster state the admission decision reads: pull secrets and namespace opt-outs.
//!
//! One model serves the live server (fed by watches) and the offline CLI (fed by `--state`
//! files), so the two cannot disagree. A [`ClusterState`] is immutable once built and cheap to
//! share behind an `Arc`; [`StateBuilder`] is the mutable side that watch events and state files
//! write into, and it republishes only the namespaces that changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};

use crate::dockerconfig::{self, DecodeError};
use crate::keyring::Keyring;

/// Label on a Pod or Namespace that turns injection off when set to `"false"`.
pub const INJECT_LABEL: &str = "pullsecret-injector.io/inject";

/// What the kubelet can make of one Secret in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretUse {
    /// Decodable: the raw `auths` keys. Credentials themselves are never kept.
    Registries(Vec<String>),
    /// The kubelet fails to decode it, so it must never be injected. `suspected_registries`
    /// are the keys a lenient reading still finds, to tell users which images it was meant for.
    Undecodable {
        reason: DecodeError,
        suspected_registries: Vec<String>,
    },
}

/// A registry-credential Secret, reduced to what the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSecret {
    pub name: String,
    /// The Secret's type: `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`.
    pub secret_type: &'static str,
    pub usage: SecretUse,
}

impl PullSecret {
    /// Reads a Secret as the kubelet would; `None` when the kubelet ignores it altogether
    /// (not a registry-credential type, or its data key missing or empty).
    pub fn from_secret(secret: &Secret) -> Option<PullSecret> {
        let name = secret.metadata.name.clone()?;
        let secret_type = match secret.type_.as_deref()? {
            dockerconfig::DOCKER_CONFIG_JSON_TYPE => dockerconfig::DOCKER_CONFIG_JSON_TYPE,
            dockerconfig::DOCKERCFG_TYPE => dockerconfig::DOCKERCFG_TYPE,
            _ => return None,
        };
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
        let usage = match dockerconfig::registry_keys(secret_type, &data) {
            Ok(None) => return None,
            Ok(Some(keys)) => SecretUse::Registries(keys),
            Err(reason) => SecretUse::Undecodable {
                suspected_registries: suspected_registries(secret_type, &data),
                reason,
            },
        };
        Some(PullSecret {
            name,
            secret_type,
            usage,
        })
    }

    pub fn registries(&self) -> &[String] {
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
fn suspected_registries(secret_type: &str, data: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let (payload, nested) = match secret_type {
        dockerconfig::DOCKER_CONFIG_JSON_TYPE => {
            (data.get(dockerconfig::DOCKER_CONFIG_JSON_KEY), true)
        }
        _ => (data.get(dockerconfig::DOCKERCFG_KEY), false),
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

/// Everything known about one namespace.
#[derive(Debug, Clone)]
pub struct NamespaceState {
    opted_out: bool,
    secrets: BTreeMap<String, PullSecret>,
    keyring: Keyring<SecretName>,
    undecodable: Keyring<SecretName>,
    undecodable_unknown_registries: Vec<SecretName>,
}

impl NamespaceState {
    fn build(opted_out: bool, secrets: BTreeMap<String, PullSecret>) -> NamespaceState {
        // Candidates in name order: a stable, documented order for what gets appended.
        let (usable, broken): (Vec<&PullSecret>, Vec<&PullSecret>) =
            secrets.values().partition(|secret| secret.is_usable());
        let keyring_of = |secrets: &[&PullSecret]| {
            Keyring::new(secrets.iter().map(|secret| {
                (
                    SecretName::from(secret.name.as_str()),
                    secret.registries().to_vec(),
                )
            }))
        };
        let keyring = keyring_of(&usable);
        let undecodable = keyring_of(&broken);
        let undecodable_unknown_registries = broken
            .iter()
            .filter(|secret| secret.registries().is_empty())
            .map(|secret| SecretName::from(secret.name.as_str()))
            .collect();
        NamespaceState {
            opted_out,
            secrets,
            keyring,
            undecodable,
            undecodable_unknown_registries,
        }
    }

    /// True when the namespace carries `pullsecret-injector.io/inject: "false"`.
    pub fn opted_out(&self) -> bool {
        self.opted_out
    }

    /// Every registry-credential secret of the namespace, by name.
    pub fn secrets(&self) -> &BTreeMap<String, PullSecret> {
        &self.secrets
    }

    /// The kubelet keyring over every decodable secret of the namespace.
    pub fn keyring(&self) -> &Keyring<SecretName> {
        &self.keyring
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

/// An immutable snapshot of the cluster, as the admission decision sees it.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    namespaces: HashMap<String, Arc<NamespaceState>>,
}

impl ClusterState {
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
    labels_known: bool,
    opted_out: bool,
    secrets: BTreeMap<String, PullSecret>,
}

/// The mutable side: receives objects, publishes snapshots.
#[derive(Debug, Default)]
pub struct StateBuilder {
    namespaces: HashMap<String, NamespaceEntry>,
    published: Arc<ClusterState>,
    dirty: HashSet<String>,
}

impl StateBuilder {
    pub fn new() -> StateBuilder {
        StateBuilder::default()
    }

    /// Adds or replaces a Secret; ones the kubelet ignores are dropped (also when replacing).
    pub fn apply_secret(&mut self, secret: &Secret) {
        let (Some(namespace), Some(name)) = (&secret.metadata.namespace, &secret.metadata.name)
        else {
            return;
        };
        let entry = self.namespaces.entry(namespace.clone()).or_default();
        match PullSecret::from_secret(secret) {
            Some(pull_secret) => {
                if entry.secrets.get(name) == Some(&pull_secret) {
                    return;
                }
                entry.secrets.insert(name.clone(), pull_secret);
            }
            None => {
                if entry.secrets.remove(name).is_none() {
                    return;
                }
            }
        }
        self.dirty.insert(namespace.clone());
    }

    pub fn delete_secret(&mut self, namespace: &str, name: &str) {
        if let Some(entry) = self.namespaces.get_mut(namespace)
            && entry.secrets.remove(name).is_some()
        {
            self.dirty.insert(namespace.to_owned());
        }
    }

    pub fn apply_namespace(&mut self, namespace: &Namespace) {
        let Some(name) = &namespace.metadata.name else {
            return;
        };
        let opted_out = namespace
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(INJECT_LABEL))
            .is_some_and(|value| value == "false");
        let entry = self.namespaces.entry(name.clone()).or_default();
        if entry.labels_known && entry.opted_out == opted_out {
            return;
        }
        entry.labels_known = true;
        entry.opted_out = opted_out;
        self.dirty.insert(name.clone());
    }

    pub fn delete_namespace(&mut self, name: &str) {
        if let Some(entry) = self.namespaces.get_mut(name) {
            entry.labels_known = false;
            entry.opted_out = false;
            self.dirty.insert(name.to_owned());
        }
    }

    /// Keeps only the secrets of `secret_type` that `keep(namespace, name)` accepts: the end of
    /// a relist, which drops what was deleted while the watch was down.
    pub fn retain_secrets(&mut self, secret_type: &str, mut keep: impl FnMut(&str, &str) -> bool) {
        for (namespace, entry) in &mut self.namespaces {
            let before = entry.secrets.len();
            entry
                .secrets
                .retain(|name, secret| secret.secret_type != secret_type || keep(namespace, name));
            if entry.secrets.len() != before {
                self.dirty.insert(namespace.clone());
            }
        }
    }

    /// Forgets the labels of namespaces `keep` rejects (the end of a namespace relist).
    pub fn retain_namespaces(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let gone: Vec<String> = self
            .namespaces
            .iter()
            .filter(|(name, entry)| entry.labels_known && !keep(name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.delete_namespace(&name);
        }
    }

    /// A snapshot including every change so far; rebuilds only the namespaces that changed.
    pub fn snapshot(&mut self) -> Arc<ClusterState> {
        if self.dirty.is_empty() {
            return Arc::clone(&self.published);
        }
        let mut namespaces = self.published.namespaces.clone();
        for name in self.dirty.drain() {
            match self.namespaces.get(&name) {
                Some(entry) if entry.labels_known || !entry.secrets.is_empty() => {
                    let state = NamespaceState::build(entry.opted_out, entry.secrets.clone());
                    namespaces.insert(name, Arc::new(state));
                }
                _ => {
                    self.namespaces.remove(&name);
                    namespaces.remove(&name);
                }
            }
        }
        self.published = Arc::new(ClusterState { namespaces });
        Arc::clone(&self.published)
    }
}
