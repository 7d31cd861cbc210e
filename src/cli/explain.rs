//! `explain`: the kubelet's matching for one image, step by step, for humans and scripts.
//!
//! The final list comes from the same choice the webhook makes (exclusive rules, discovery by
//! the kubelet's keyring lookup, add rules, cluster credentials); the per-key, per-rule and
//! per-credential verdicts beside it say why each did or did not count.

use std::fmt;

use serde::Serialize;

use crate::admission::decision::{self, Origin};
use crate::kubelet::keyring::{self, KeyMatch};
use crate::kubelet::reference::ImageRef;
use crate::state::snapshot::{ClusterState, MODE_LABEL, Mode, ModeSource, SecretUse};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageExplanation {
    pub image: String,
    pub namespace: String,
    /// The normalized reference, when the image is valid.
    pub reference: Option<String>,
    /// What the kubelet looks credentials up with: domain/path, no tag or digest.
    pub lookup: Option<String>,
    /// Why the image is not looked up at all.
    pub invalid: Option<String>,
    /// The namespace is labelled `pullsecret-injector.io/inject: "false"`: nothing is injected.
    pub namespace_opted_out: bool,
    /// Set by `explain pod/NAME` when the pod is labelled `pullsecret-injector.io/inject:
    /// "false"`: nothing is injected.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pod_opted_out: bool,
    /// False when the server serves only other namespaces (`--namespaces`): nothing is injected.
    pub namespace_served: bool,
    /// `shadow`: the webhook decides `result` but changes nothing. Not applied where the
    /// namespace opted out or is not served.
    pub mode: Mode,
    /// Where the mode comes from: the namespace's label or the server's default.
    pub mode_source: ModeSource,
    /// Every key of every decodable secret, in the kubelet's order.
    pub keys: Vec<KeyVerdict>,
    pub undecodable: Vec<UndecodableSecret>,
    pub docker_hub_fallback: Fallback,
    /// What discovery alone finds: the secrets the kubelet would use, in its order.
    pub discovered: Vec<String>,
    /// The namespace's PullSecretRules and whether their patterns match the image.
    pub rules: Vec<RuleVerdict>,
    /// The ClusterPullSecrets and whether they serve the namespace and match the image.
    pub cluster_credentials: Vec<CredentialVerdict>,
    /// The secrets injected for the image, in order, each with what decided it.
    pub decided: Vec<DecidedSecret>,
    /// Rules or credentials that wanted a secret that cannot be injected.
    pub problems: Vec<String>,
    /// The secret names of `decided`: what the webhook injects (records, in shadow mode).
    /// Empty where the namespace opted out or is not served.
    pub result: Vec<String>,
    /// What the matching would choose but is not injected, because the namespace opted out or
    /// is not served (empty otherwise).
    pub withheld: Vec<String>,
}

impl ImageExplanation {
    /// Why nothing is injected in this namespace whatever the image, if so.
    pub fn injects_nothing_because(&self) -> Option<&'static str> {
        if self.pod_opted_out {
            Some("the pod is labelled pullsecret-injector.io/inject=false")
        } else if !self.namespace_served {
            Some("the server serves only other namespaces (--namespaces)")
        } else if self.namespace_opted_out {
            Some("the namespace is labelled pullsecret-injector.io/inject=false")
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleVerdict {
    pub rule: String,
    pub mode: &'static str,
    pub registries: Vec<String>,
    pub secrets: Vec<String>,
    pub matched: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialVerdict {
    pub cluster_pull_secret: String,
    pub target_name: String,
    pub serves_namespace: bool,
    pub matched: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecidedSecret {
    pub secret: String,
    /// `discovery`, `PullSecretRule NAME (add|exclusive)` or `ClusterPullSecret NAME`.
    pub decided_by: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyVerdict {
    pub secret: String,
    /// The key as written in the secret.
    pub key: String,
    /// The key as the kubelet's keyring stores it; absent when the kubelet skips the key.
    pub index_key: Option<String>,
    pub matched: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UndecodableSecret {
    pub secret: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Fallback {
    /// A key matched, so the fallback is not consulted.
    NotNeeded,
    /// The lookup string is not a Docker Hub name.
    NotDockerHub,
    /// Docker Hub, but no secret has a key normalizing to exactly `index.docker.io`.
    NoDefaultKey,
    /// The secrets with an `index.docker.io` key serve the image.
    Used { secrets: Vec<String> },
}

pub fn explain_image(image: &str, namespace: &str, state: &ClusterState) -> ImageExplanation {
    let ns = state.namespace(namespace);
    let (mode, mode_source) = state.mode(namespace);
    let mut explanation = ImageExplanation {
        image: image.to_owned(),
        namespace: namespace.to_owned(),
        reference: None,
        lookup: None,
        invalid: None,
        namespace_opted_out: ns.is_some_and(|ns| ns.opted_out()),
        pod_opted_out: false,
        namespace_served: state.serves(namespace),
        mode,
        mode_source,
        keys: Vec::new(),
        undecodable: Vec::new(),
        docker_hub_fallback: Fallback::NotNeeded,
        discovered: Vec::new(),
        rules: Vec::new(),
        cluster_credentials: Vec::new(),
        decided: Vec::new(),
        problems: Vec::new(),
        result: Vec::new(),
        withheld: Vec::new(),
    };
    let reference = match ImageRef::parse(image) {
        Ok(reference) => reference,
        Err(error) => {
            explanation.invalid = Some(error.to_string());
            return explanation;
        }
    };
    let lookup = reference.lookup_key();
    explanation.reference = Some(reference.to_string());
    if let Some(ns) = ns {
        for (name, secret) in ns.secrets() {
            match &secret.usage {
                SecretUse::Registries(keys) => {
                    explanation
                        .keys
                        .extend(keys.iter().map(|key| verdict(name, key, &lookup)));
                }
                SecretUse::Undecodable { reason, .. } => {
                    explanation.undecodable.push(UndecodableSecret {
                        secret: name.to_string(),
                        reason: reason.to_string(),
                    })
                }
            }
        }
        explanation.discovered = ns
            .keyring()
            .lookup(&lookup)
            .into_iter()
            .map(|name| name.to_string())
            .collect();
        explanation.rules = ns
            .rules()
            .iter()
            .map(|rule| RuleVerdict {
                rule: rule.name.clone(),
                mode: rule.mode.as_str(),
                registries: rule.registries.clone(),
                secrets: rule.secrets.clone(),
                matched: rule.matches(&lookup),
            })
            .collect();
    }
    explanation.cluster_credentials = state
        .credentials()
        .iter()
        .map(|credential| CredentialVerdict {
            cluster_pull_secret: credential.name.clone(),
            target_name: credential.target_name.clone(),
            serves_namespace: state.selects(&credential.selector, namespace),
            matched: credential.matches(&lookup),
        })
        .collect();
    let choice = decision::choose(state, namespace, ns, &lookup);
    explanation.problems = choice.problems.iter().map(ToString::to_string).collect();
    explanation.result = choice.chosen.iter().map(|c| c.secret.clone()).collect();
    explanation.decided = choice
        .chosen
        .into_iter()
        .map(|chosen| DecidedSecret {
            decided_by: match chosen.origin {
                Origin::Discovery => "discovery".to_owned(),
                Origin::Rule { name, mode } => {
                    format!("PullSecretRule {name} ({})", mode.as_str())
                }
                Origin::ClusterCredential { name } => format!("ClusterPullSecret {name}"),
            },
            secret: chosen.secret,
        })
        .collect();
    // Kubelet order: index keys in reverse byte order; secrets in name order within a key.
    explanation
        .keys
        .sort_by(|a, b| b.index_key.cmp(&a.index_key));
    explanation.docker_hub_fallback = if explanation.keys.iter().any(|key| key.matched) {
        Fallback::NotNeeded
    } else if !keyring::is_default_registry_match(&lookup) {
        Fallback::NotDockerHub
    } else if explanation.discovered.is_empty() {
        Fallback::NoDefaultKey
    } else {
        Fallback::Used {
            secrets: explanation.discovered.clone(),
        }
    };
    explanation.lookup = Some(lookup);
    explanation.withhold_if_nothing_is_injected();
    explanation
}

impl ImageExplanation {
    /// Moves the matching's choice to `withheld` where nothing is injected whatever the image.
    pub fn withhold_if_nothing_is_injected(&mut self) {
        if self.injects_nothing_because().is_some() {
            self.withheld.append(&mut self.result);
            self.decided.clear();
        }
    }
}

fn verdict(secret: &str, key: &str, lookup: &str) -> KeyVerdict {
    let index_key = keyring::index_key(key);
    let (matched, reason) = match &index_key {
        None => (
            false,
            "skipped by the kubelet: not a valid registry URL".to_owned(),
        ),
        Some(index_key) => match keyring::match_key(index_key, lookup) {
            KeyMatch::Matched => (true, "matched".to_owned()),
            KeyMatch::LabelMismatch { .. }
                if keyring::match_key(
                    &keyring::fold_host_case(index_key),
                    &keyring::fold_host_case(lookup),
                ) == KeyMatch::Matched =>
            {
                (
                    false,
                    "host differs only in case: the kubelet compares registry hosts case-sensitively"
                        .to_owned(),
                )
            }
            other => (false, mismatch_reason(&other, index_key, lookup)),
        },
    };
    KeyVerdict {
        secret: secret.to_owned(),
        key: key.to_owned(),
        index_key,
        matched,
        reason,
    }
}

/// The host (without port) of a keyring key or lookup string, split into its labels.
fn host_labels(key: &str) -> Vec<&str> {
    let host = key.split('/').next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(host, _port)| host);
    host.split('.').collect()
}

fn mismatch_reason(verdict: &KeyMatch, index_key: &str, lookup: &str) -> String {
    let port = |port: &str| {
        if port.is_empty() {
            "none".to_owned()
        } else {
            port.to_owned()
        }
    };
    match verdict {
        KeyMatch::Matched => "matched".to_owned(),
        KeyMatch::Unparseable => "not a valid URL".to_owned(),
        KeyMatch::PortDiffers {
            key_port,
            image_port,
        } => {
            format!(
                "port differs (key {}, image {})",
                port(key_port),
                port(image_port)
            )
        }
        KeyMatch::LabelCount { key, image } => {
            format!("host label count differs (key {key}, image {image})")
        }
        KeyMatch::LabelMismatch { label } => {
            let (key_labels, image_labels) = (host_labels(index_key), host_labels(lookup));
            let key_label = key_labels.get(*label).copied().unwrap_or_default();
            let image_label = image_labels.get(*label).copied().unwrap_or_default();
            let (key_host, image_host) = (key_labels.join("."), image_labels.join("."));
            if key_host.contains(['*', '?', '[']) {
                format!(
                    "host {image_host:?} does not match the glob {key_host:?} (label {}: {image_label:?} against {key_label:?})",
                    label + 1
                )
            } else {
                format!("host differs (key {key_host:?}, image {image_host:?})")
            }
        }
        KeyMatch::BadGlob { label } => format!("host label {} is a malformed glob", label + 1),
        KeyMatch::PathPrefix { key_path } => format!("image path does not start with {key_path:?}"),
    }
}

/// One line on the mode that applies and where it comes from.
pub fn describe_mode(mode: Mode, source: ModeSource) -> String {
    let from = match source {
        ModeSource::NamespaceLabel => format!("namespace label {MODE_LABEL}"),
        ModeSource::Default => "the server's default".to_owned(),
    };
    match mode {
        Mode::On => format!("on ({from}): the webhook injects the result"),
        Mode::Shadow => format!(
            "shadow ({from}): the webhook only records the result (audit annotation, metric, log); the pod is not changed"
        ),
    }
}

impl fmt::Display for ImageExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "image {:?} in namespace {:?}",
            self.image, self.namespace
        )?;
        if let Some(invalid) = &self.invalid {
            writeln!(f, "  invalid image reference: {invalid}")?;
            return writeln!(
                f,
                "  the kubelet reports InvalidImageName; no secret is used\n"
            );
        }
        writeln!(
            f,
            "  reference: {}",
            self.reference.as_deref().unwrap_or_default()
        )?;
        writeln!(
            f,
            "  lookup:    {}",
            self.lookup.as_deref().unwrap_or_default()
        )?;
        match self.injects_nothing_because() {
            Some(why) => writeln!(f, "  mode:      none: {why}: the webhook injects nothing")?,
            None => writeln!(
                f,
                "  mode:      {}",
                describe_mode(self.mode, self.mode_source)
            )?,
        }
        if self.keys.is_empty() {
            writeln!(
                f,
                "  keys: none (no decodable pull secret in this namespace)"
            )?;
        } else {
            writeln!(f, "  keys, in kubelet order:")?;
            for key in &self.keys {
                let mark = if key.matched { "match" } else { "no   " };
                let index = key.index_key.as_deref().unwrap_or("-");
                writeln!(
                    f,
                    "    {mark}  {index:<40} {:<24} {}",
                    key.secret, key.reason
                )?;
            }
        }
        for secret in &self.undecodable {
            writeln!(
                f,
                "  undecodable: {} ({}) - never injected",
                secret.secret, secret.reason
            )?;
        }
        let fallback = match &self.docker_hub_fallback {
            Fallback::NotNeeded => "not consulted (a key matched)".to_owned(),
            Fallback::NotDockerHub => "not applicable (not a Docker Hub image)".to_owned(),
            Fallback::NoDefaultKey => "no secret has an index.docker.io key".to_owned(),
            Fallback::Used { secrets } => format!("used: {}", secrets.join(", ")),
        };
        writeln!(f, "  Docker Hub fallback: {fallback}")?;
        for rule in &self.rules {
            let mark = if rule.matched { "match" } else { "no   " };
            writeln!(
                f,
                "  rule  {mark}  PullSecretRule {} ({}): [{}] -> [{}]",
                rule.rule,
                rule.mode,
                rule.registries.join(", "),
                rule.secrets.join(", ")
            )?;
        }
        for credential in &self.cluster_credentials {
            let mark = if credential.matched && credential.serves_namespace {
                "match"
            } else {
                "no   "
            };
            let why = match (credential.serves_namespace, credential.matched) {
                (false, _) => "does not serve this namespace",
                (true, false) => "serves this namespace; registries do not match",
                (true, true) => "serves this namespace; registries match",
            };
            writeln!(
                f,
                "  cred  {mark}  ClusterPullSecret {} -> {}: {why}",
                credential.cluster_pull_secret, credential.target_name
            )?;
        }
        for problem in &self.problems {
            writeln!(f, "  problem: {problem}")?;
        }
        if let Some(why) = self.injects_nothing_because() {
            let withheld = if self.withheld.is_empty() {
                String::new()
            } else {
                format!(
                    " (without that, matching would choose {})",
                    self.withheld.join(", ")
                )
            };
            writeln!(f, "  result: no secret: {why}{withheld}\n")
        } else if self.decided.is_empty() {
            writeln!(f, "  result: no secret\n")
        } else {
            let decided: Vec<String> = self
                .decided
                .iter()
                .map(|d| format!("{} (by {})", d.secret, d.decided_by))
                .collect();
            writeln!(f, "  result: {}\n", decided.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::statefile::state_from_str;

    const STATE: &str = r#"
apiVersion: v1
kind: Secret
type: kubernetes.io/dockerconfigjson
metadata: {namespace: shop, name: discovered}
stringData: {.dockerconfigjson: '{"auths": {"registry.example.com": {}}}'}
---
apiVersion: v1
kind: Secret
type: kubernetes.io/dockerconfigjson
metadata: {namespace: shop, name: mirror}
stringData: {.dockerconfigjson: '{"auths": {"mirror.example.com": {}}}'}
---
apiVersion: v1
kind: Secret
type: kubernetes.io/dockerconfigjson
metadata: {namespace: infra, name: corp}
stringData: {.dockerconfigjson: '{"auths": {"registry.corp.example": {}}}'}
---
apiVersion: pullsecret-injector.io/v1alpha1
kind: PullSecretRule
metadata: {namespace: shop, name: mirror-only}
spec: {registries: [registry.example.com], secrets: [mirror], mode: exclusive}
---
apiVersion: pullsecret-injector.io/v1alpha1
kind: ClusterPullSecret
metadata: {name: corp-registry}
spec: {source: {namespace: infra, name: corp}, targetName: corp-pull}
"#;

    #[test]
    fn explain_names_the_rule_or_credential_that_decided() {
        let state = state_from_str("state.yaml", STATE).expect("valid state");
        let by_rule = explain_image("registry.example.com/app", "shop", &state);
        assert_eq!(by_rule.discovered, ["discovered"]);
        assert_eq!(by_rule.result, ["mirror"]);
        assert_eq!(
            by_rule.decided[0].decided_by,
            "PullSecretRule mirror-only (exclusive)"
        );
        assert!(by_rule.rules[0].matched);
        assert!(
            by_rule
                .to_string()
                .contains("mirror (by PullSecretRule mirror-only (exclusive))")
        );

        let by_credential = explain_image("registry.corp.example/app", "shop", &state);
        assert_eq!(by_credential.result, ["corp-pull"]);
        assert_eq!(
            by_credential.decided[0].decided_by,
            "ClusterPullSecret corp-registry"
        );
        assert!(by_credential.cluster_credentials[0].serves_namespace);
        let text = by_credential.to_string();
        assert!(text.contains("ClusterPullSecret corp-registry -> corp-pull: serves this namespace; registries match"), "{text}");

        let system = explain_image("registry.corp.example/app", "kube-system", &state);
        assert!(system.result.is_empty());
        assert!(!system.cluster_credentials[0].serves_namespace);
    }

    #[test]
    fn explain_says_which_mode_applies() {
        let state = state_from_str("state.yaml", STATE).expect("valid state");
        let on = explain_image("registry.example.com/app", "shop", &state);
        assert_eq!((on.mode, on.mode_source), (Mode::On, ModeSource::Default));
        assert!(
            on.to_string()
                .contains("mode:      on (the server's default)")
        );
        let shadow = ClusterState::clone(&state).with_default_mode(Mode::Shadow);
        let explained = explain_image("registry.example.com/app", "shop", &shadow);
        // The result is the same: shadow mode only records it.
        assert_eq!(explained.result, ["mirror"]);
        let text = explained.to_string();
        assert!(
            text.contains("mode:      shadow (the server's default): the webhook only records"),
            "{text}"
        );
        let json = serde_json::to_value(&explained).expect("json");
        assert_eq!(
            (json["mode"].as_str(), json["modeSource"].as_str()),
            (Some("shadow"), Some("default"))
        );
    }

    #[test]
    fn a_key_that_differs_only_in_case_says_so() {
        let state = state_from_str(
            "state.yaml",
            r#"
apiVersion: v1
kind: Secret
type: kubernetes.io/dockerconfigjson
metadata: {namespace: shop, name: mixed}
stringData: {.dockerconfigjson: '{"auths": {"Registry.Example.com": {}, "other.example.com": {}}}'}
"#,
        )
        .expect("valid state");
        let explanation = explain_image("registry.example.com/app", "shop", &state);
        let reasons: Vec<(&str, &str)> = explanation
            .keys
            .iter()
            .map(|key| (key.key.as_str(), key.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "other.example.com",
                    "host differs (key \"other.example.com\", image \"registry.example.com\")"
                ),
                (
                    "Registry.Example.com",
                    "host differs only in case: the kubelet compares registry hosts case-sensitively"
                ),
            ]
        );
        assert!(explanation.result.is_empty());
    }
}
