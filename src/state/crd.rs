//! The custom resources: namespaced `PullSecretRule` and cluster-scoped `ClusterPullSecret`
//! (group `pullsecret-injector.io`, version `v1alpha1`).
//!
//! The doc comments below become the schema descriptions `kubectl explain` shows; the CRD YAML
//! under `charts/pullsecret-injector/crds/` is generated from these types (`make crds`).

use std::collections::BTreeMap;

use kube::CustomResource;
use kube::core::CustomResourceExt;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub const GROUP: &str = "pullsecret-injector.io";
/// Label on every Secret the controller writes.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "pullsecret-injector";
/// Label naming the ClusterPullSecret a managed copy belongs to.
pub const OWNER_LABEL: &str = "pullsecret-injector.io/cluster-pull-secret";
/// Namespaces a ClusterPullSecret never serves, whatever its selector says.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// A Secret name (a DNS subdomain), as the apiserver requires it.
const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A namespace name (a DNS label).
const NAMESPACE_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Most registry patterns one resource may list; bounds the apiserver's cost of the rules below.
const MAX_REGISTRY_PATTERNS: usize = 64;

/// A list of 1 to `max_items` non-empty strings of at most 255 characters, checked by the
/// apiserver with `validations` (CEL rules).
fn bounded_strings(schema: &mut Schema, max_items: usize, validations: serde_json::Value) {
    schema.insert("minItems".to_owned(), json!(1));
    schema.insert("maxItems".to_owned(), json!(max_items));
    schema.insert(
        "items".to_owned(),
        json!({"type": "string", "minLength": 1, "maxLength": 255}),
    );
    schema.insert("x-kubernetes-validations".to_owned(), validations);
}

/// Schema of a list of registry patterns: what the apiserver refuses instead of storing a
/// pattern that can never match an image. The kubelet's keyring strips a scheme from the
/// *keys of a Secret*, but a pattern with a scheme or an API path (`https://r.example/v2/`) is
/// a pasted URL, and whitespace never occurs in an image reference.
fn registry_patterns(schema: &mut Schema) {
    bounded_strings(
        schema,
        MAX_REGISTRY_PATTERNS,
        json!([
            {
                "rule": "self.all(r, !r.contains('://'))",
                "message": "a registry pattern has no scheme: write registry.example.com, not https://registry.example.com"
            },
            {
                "rule": "self.all(r, !r.matches('\\\\s'))",
                "message": "a registry pattern contains no whitespace"
            },
            {
                "rule": "self.all(r, !r.matches('^[^/]+/v[12]/?$'))",
                "message": "a registry pattern names images, not the registry API: write registry.example.com, not registry.example.com/v2/"
            }
        ]),
    );
}

/// Maps registries to pull secrets of this namespace, on top of or instead of discovery.
///
/// For every container image of a pod in this namespace whose lookup string (domain/path) one
/// of `registries` matches, the webhook injects the `secrets`. With `mode: exclusive` only
/// those are injected for that image (discovery and cluster credentials are ignored for it);
/// with `mode: add` they are injected as well as what discovery finds.
// Several printcolumns repeat `type_ = ...`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "pullsecret-injector.io",
    version = "v1alpha1",
    kind = "PullSecretRule",
    namespaced,
    shortname = "psr",
    category = "pullsecret-injector",
    doc = "Maps registries to pull secrets of this namespace, on top of discovery (mode add) or instead of it (mode exclusive).",
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "add or exclusive"
    ),
    printcolumn(
        name = "Registries",
        type_ = "string",
        json_path = ".spec.registries",
        description = "Registry patterns (kubelet key syntax)"
    ),
    printcolumn(
        name = "Secrets",
        type_ = "string",
        json_path = ".spec.secrets",
        description = "Secrets injected for matching images"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PullSecretRuleSpec {
    /// Registry patterns in the kubelet's key syntax, matched exactly as the kubelet matches
    /// the keys of a dockerconfigjson: a host whose labels may be globs (`*.example.com`), an
    /// optional port that must be equal (`registry.example.com:5000`), and an optional path
    /// prefix (`quay.io/team`). `docker.io` matches Docker Hub images. No scheme, no
    /// whitespace, no registry API path (`/v2/`).
    #[schemars(transform = registry_patterns)]
    pub registries: Vec<String>,
    /// Names of Secrets in this namespace to inject for matching images. A missing or
    /// undecodable Secret is never injected; the pod gets an admission warning instead.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN)))]
    pub secrets: Vec<String>,
    /// `add` (default): inject these as well as what discovery finds. `exclusive`: for matching
    /// images inject only these, ignoring discovery and cluster credentials.
    #[serde(default)]
    pub mode: RuleMode,
}

/// How a rule combines with discovery.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleMode {
    /// Inject the rule's secrets as well as what discovery finds.
    #[default]
    Add,
    /// For matching images inject only the rule's secrets.
    Exclusive,
}

impl RuleMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleMode::Add => "add",
            RuleMode::Exclusive => "exclusive",
        }
    }
}

/// A registry credential offered to many namespaces: the controller keeps a copy of the source
/// Secret in every selected namespace, and the webhook injects it for matching images.
// Several printcolumns repeat `type_ = ...`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "pullsecret-injector.io",
    version = "v1alpha1",
    kind = "ClusterPullSecret",
    shortname = "cps",
    category = "pullsecret-injector",
    status = "ClusterPullSecretStatus",
    doc = "A registry credential copied into every selected namespace and injected into their pods.",
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".spec.source.name",
        description = "Name of the source Secret"
    ),
    printcolumn(
        name = "Source-Namespace",
        type_ = "string",
        json_path = ".spec.source.namespace",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Namespaces",
        type_ = "integer",
        json_path = ".status.namespaceCount",
        description = "Namespaces holding an up-to-date copy"
    ),
    printcolumn(
        name = "Conflicts",
        type_ = "integer",
        json_path = ".status.conflictCount",
        description = "Namespaces where an unmanaged Secret has the target name"
    ),
    printcolumn(
        name = "Failures",
        type_ = "integer",
        json_path = ".status.failureCount",
        description = "Namespaces where the copy could not be written (retried with backoff)"
    ),
    printcolumn(
        name = "Expires",
        type_ = "date",
        json_path = ".status.credential.expiresAt",
        description = "When a credential minted by a credential provider plugin expires",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = no_minting_into_system_namespaces)]
pub struct ClusterPullSecretSpec {
    /// The Secret to copy (type kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg).
    /// With `credentialProvider`, the Secret the controller writes the minted credential to.
    pub source: SourceSecret,
    /// Mint the source Secret with a kubelet credential provider plugin instead of expecting
    /// someone to write it: the controller runs the plugin for `images`, writes the answer as a
    /// kubernetes.io/dockerconfigjson Secret at `source` and refreshes it before it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_provider: Option<CredentialProvider>,
    /// Namespaces to serve, by label. Empty or absent: every namespace. kube-system,
    /// kube-public, kube-node-lease and the injector's own namespace are never served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Registry patterns (kubelet key syntax) the credential is injected for. Absent: the
    /// registries of the source Secret's own keys. No scheme, no whitespace, no registry API
    /// path (`/v2/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = registry_patterns)]
    pub registries: Option<Vec<String>>,
    /// Name of the copies (a Secret name). Absent: the ClusterPullSecret's own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub target_name: Option<String>,
}

/// A minted source is a Secret the controller creates: never in a system namespace, where it
/// could take a name before its rightful owner does. (The injector's own namespace, which the
/// CRD cannot know, is refused by the controller.)
fn no_minting_into_system_namespaces(schema: &mut Schema) {
    let system = SYSTEM_NAMESPACES
        .iter()
        .map(|ns| format!("'{ns}'"))
        .collect::<Vec<_>>()
        .join(", ");
    schema.insert(
        "x-kubernetes-validations".to_owned(),
        json!([{
            "rule": format!("!has(self.credentialProvider) || !(self.source.namespace in [{system}])"),
            "message": format!("with credentialProvider the controller writes the source Secret: it is never written into {}", SYSTEM_NAMESPACES.join(", "))
        }]),
    );
}

/// Where the source Secret lives.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
pub struct SourceSecret {
    /// Namespace of the source Secret.
    #[schemars(length(min = 1, max = 63), regex(pattern = NAMESPACE_NAME_PATTERN))]
    pub namespace: String,
    /// Name of the source Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
}

/// Most images one credential provider is asked about.
const MAX_PROVIDER_IMAGES: usize = 16;
/// A plugin name: a file name in the plugin directory, never a path.
const PROVIDER_NAME_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]*$";

/// The `images` of a credential provider: concrete image references, no globs.
fn provider_images(schema: &mut Schema) {
    bounded_strings(
        schema,
        MAX_PROVIDER_IMAGES,
        json!([
            {
                "rule": "self.all(i, !i.contains('*') && !i.contains('://') && !i.matches('\\\\s'))",
                "message": "an image is a concrete reference (registry/repository[:tag]): no glob, no scheme, no whitespace"
            }
        ]),
    );
}

/// Refuses the fields that would change how a plugin runs: they come only from the admin's
/// `CredentialProviderConfig`. They stay in the schema so that the apiserver refuses them with
/// this message instead of dropping them silently.
fn admin_only_provider_fields(schema: &mut Schema) {
    schema.insert(
        "x-kubernetes-validations".to_owned(),
        json!([{
            "rule": "!has(self.matchImages) && !has(self.defaultCacheDuration) && !has(self.apiVersion) && !has(self.args) && !has(self.env)",
            "message": "matchImages, defaultCacheDuration, apiVersion, args and env of a credential provider come only from the injector's CredentialProviderConfig, which admins control (chart value credentialProviders.config); a ClusterPullSecret names the provider and the images"
        }]),
    );
}

/// A kubelet credential provider plugin of the injector's `CredentialProviderConfig`, and the
/// images the controller asks it about.
///
/// The plugin is the executable `name` in the `--image-credential-provider-bin-dir` of
/// `serve`, run exactly as the provider of that name in the admin's
/// `--image-credential-provider-config` file says (args, env, matchImages, apiVersion,
/// defaultCacheDuration), as a kubelet runs it from its node's file. A resource chooses only
/// which provider and which images; it cannot change how the process runs.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = admin_only_provider_fields)]
pub struct CredentialProvider {
    /// A provider of the injector's CredentialProviderConfig: the plugin's executable in the
    /// plugin directory (a file name, never a path).
    #[schemars(length(min = 1, max = 253), regex(pattern = PROVIDER_NAME_PATTERN))]
    pub name: String,
    /// Images the plugin is asked for credentials for (the kubelet sends the image of the pod
    /// it pulls; the controller sends these), e.g.
    /// `123456789012.dkr.ecr.us-east-1.amazonaws.com/app`. Each must match the provider's
    /// `matchImages`. The credentials of every answer are merged into the one Secret.
    #[schemars(transform = provider_images)]
    pub images: Vec<String>,
    /// Not allowed: the provider's `matchImages` come from the CredentialProviderConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(max = 255)))]
    pub match_images: Option<Vec<String>>,
    /// Not allowed: the provider's `defaultCacheDuration` comes from the
    /// CredentialProviderConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub default_cache_duration: Option<String>,
    /// Not allowed: the provider's `apiVersion` comes from the CredentialProviderConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub api_version: Option<String>,
    /// Not allowed: the plugin's arguments come from the CredentialProviderConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), inner(length(max = 1024)))]
    pub args: Option<Vec<String>>,
    /// Not allowed: the plugin's environment comes from the CredentialProviderConfig and the
    /// variables the admin passes through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub env: Option<Vec<ExecEnvVar>>,
}

impl CredentialProvider {
    /// The admin-only fields this block sets (a resource stored before they were refused, or
    /// under a CRD without the rule): such a block is never run.
    pub fn overrides(&self) -> Vec<&'static str> {
        [
            ("matchImages", self.match_images.is_some()),
            (
                "defaultCacheDuration",
                self.default_cache_duration.is_some(),
            ),
            ("apiVersion", self.api_version.is_some()),
            ("args", self.args.is_some()),
            ("env", self.env.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, set)| set.then_some(field))
        .collect()
    }
}

/// An environment variable of a credential provider plugin.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
pub struct ExecEnvVar {
    /// The variable's name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub name: String,
    /// The variable's value.
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// A Kubernetes label selector: every `matchLabels` pair and every expression must hold.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based requirement of a label selector.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// In, NotIn, Exists or DoesNotExist.
    pub operator: SelectorOperator,
    /// Values for In and NotIn; must be empty for Exists and DoesNotExist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// Whether labels satisfy the selector, with Kubernetes semantics (an empty selector
    /// matches everything; `NotIn` and `DoesNotExist` match when the key is absent).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self.match_expressions.iter().all(|requirement| {
                let value = labels.get(&requirement.key);
                match requirement.operator {
                    SelectorOperator::In => value.is_some_and(|v| requirement.values.contains(v)),
                    SelectorOperator::NotIn => {
                        value.is_none_or(|v| !requirement.values.contains(v))
                    }
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

/// What the controller last did for a ClusterPullSecret.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPullSecretStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is True when every selected namespace holds an up-to-date copy. When False, its
    /// reason says why: SourceNotFound, CopyFailed, NamespacesOutOfSync or Conflict.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Number of namespaces holding an up-to-date copy.
    #[serde(default)]
    pub namespace_count: i32,
    /// Those namespaces, in name order (at most 50 listed).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Number of namespaces where an unmanaged Secret already has the target name.
    #[serde(default)]
    pub conflict_count: i32,
    /// Those conflicts (at most 50 listed). Such Secrets are never overwritten.
    #[serde(default)]
    pub conflicts: Vec<NamespaceProblem>,
    /// Number of namespaces where writing or deleting the copy failed (a ResourceQuota, an
    /// admission policy, a namespace being deleted, ...). Retried with exponential backoff.
    #[serde(default)]
    pub failure_count: i32,
    /// Those failures (at most 50 listed).
    #[serde(default)]
    pub failures: Vec<NamespaceProblem>,
    /// With `credentialProvider`: when the credential was minted, when it expires, and why the
    /// last refresh failed. Never the credential itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<MintedCredentialStatus>,
}

/// The state of a credential minted by a credential provider plugin.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MintedCredentialStatus {
    /// RFC 3339 time the credential in the source Secret was minted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minted_at: Option<String>,
    /// RFC 3339 time it expires (minted at + the plugin's cache duration); absent when the
    /// plugin states no lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// RFC 3339 time of the next planned refresh (about 80 % of the lifetime, jittered), or of
    /// the next retry after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_at: Option<String>,
    /// The plugin's last `cacheKeyType` (Image, Registry or Global).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_key_type: Option<String>,
    /// Refreshes that failed in a row since the last success (retried with backoff).
    #[serde(default)]
    pub consecutive_failures: i32,
    /// RFC 3339 time of the last failed refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<String>,
    /// Why it failed: the plugin's exit code and an excerpt of its stderr with anything
    /// token-like removed, a timeout, an unreadable answer, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

/// A namespace where the copy could not be written.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
pub struct NamespaceProblem {
    pub namespace: String,
    /// Why, e.g. that a Secret not managed by this ClusterPullSecret has the target name, or
    /// that a ResourceQuota refuses another Secret.
    pub reason: String,
}

/// A status condition (the shape of metav1.Condition).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    pub message: String,
    /// RFC 3339 time of the last status change.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl ClusterPullSecret {
    /// The name of the copies.
    pub fn target_name(&self) -> String {
        self.spec
            .target_name
            .clone()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}

/// The CRDs as the multi-document YAML committed under `charts/pullsecret-injector/crds/`.
pub fn crd_yaml() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    let header = "# Generated by `make crds` (pullsecret-injector crds) from src/state/crd.rs; do not edit.\n";
    Ok(vec![
        (
            "clusterpullsecrets.yaml",
            format!(
                "{header}{}",
                serde_yaml::to_string(&ClusterPullSecret::crd())?
            ),
        ),
        (
            "pullsecretrules.yaml",
            format!("{header}{}", serde_yaml::to_string(&PullSecretRule::crd())?),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn requirement(key: &str, operator: SelectorOperator, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: key.to_owned(),
                operator,
                values: values.iter().map(|v| (*v).to_owned()).collect(),
            }],
        }
    }

    #[test]
    fn label_selectors_follow_kubernetes_semantics() {
        use SelectorOperator::*;
        let team_a = labels(&[("team", "a"), ("env", "prod")]);
        let bare = labels(&[]);
        let cases: Vec<(LabelSelector, &BTreeMap<String, String>, bool)> = vec![
            (LabelSelector::default(), &bare, true),
            (LabelSelector::default(), &team_a, true),
            (
                LabelSelector {
                    match_labels: labels(&[("team", "a")]),
                    ..Default::default()
                },
                &team_a,
                true,
            ),
            (
                LabelSelector {
                    match_labels: labels(&[("team", "b")]),
                    ..Default::default()
                },
                &team_a,
                false,
            ),
            (requirement("env", In, &["prod", "dev"]), &team_a, true),
            (requirement("env", In, &["dev"]), &team_a, false),
            (requirement("env", In, &["prod"]), &bare, false),
            (requirement("env", NotIn, &["prod"]), &team_a, false),
            (requirement("env", NotIn, &["prod"]), &bare, true),
            (requirement("team", Exists, &[]), &team_a, true),
            (requirement("team", Exists, &[]), &bare, false),
            (requirement("team", DoesNotExist, &[]), &team_a, false),
            (requirement("team", DoesNotExist, &[]), &bare, true),
        ];
        for (selector, labels, expected) in cases {
            assert_eq!(
                selector.matches(labels),
                expected,
                "{selector:?} on {labels:?}"
            );
        }
    }

    #[test]
    fn target_name_defaults_to_the_resource_name() {
        let mut cps = ClusterPullSecret::new(
            "corp-registry",
            ClusterPullSecretSpec {
                source: SourceSecret {
                    namespace: "infra".to_owned(),
                    name: "regcred".to_owned(),
                },
                credential_provider: None,
                namespace_selector: None,
                registries: None,
                target_name: None,
            },
        );
        assert_eq!(cps.target_name(), "corp-registry");
        cps.spec.target_name = Some("pull".to_owned());
        assert_eq!(cps.target_name(), "pull");
    }

    #[test]
    fn mode_defaults_to_add_and_reads_lowercase() {
        let spec: PullSecretRuleSpec =
            serde_json::from_str(r#"{"registries":["quay.io"],"secrets":["q"]}"#).unwrap();
        assert_eq!(spec.mode, RuleMode::Add);
        let spec: PullSecretRuleSpec = serde_json::from_str(
            r#"{"registries":["quay.io"],"secrets":["q"],"mode":"exclusive"}"#,
        )
        .unwrap();
        assert_eq!(spec.mode, RuleMode::Exclusive);
    }

    /// `make test` fails when the committed CRDs are not what the types generate.
    #[test]
    fn committed_crds_are_up_to_date() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("charts/pullsecret-injector/crds");
        for (file, generated) in crd_yaml().unwrap() {
            let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            assert!(
                committed == generated,
                "charts/pullsecret-injector/crds/{file} is stale: run `make crds` and commit it"
            );
        }
    }

    /// Every property under `spec` (and `status`) with a description, recursively: what
    /// `kubectl explain` shows.
    fn undescribed(schema: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) else {
            return;
        };
        for (name, property) in properties {
            let path = format!("{path}.{name}");
            if property.get("description").is_none() {
                out.push(path.clone());
            }
            undescribed(property, &path, out);
            if let Some(items) = property.get("items") {
                undescribed(items, &path, out);
            }
        }
    }

    #[test]
    fn kubectl_get_and_explain_have_what_the_readme_promises() {
        use kube::CustomResourceExt;
        let crds = [
            (
                PullSecretRule::crd(),
                "psr",
                &["Mode", "Registries", "Secrets"][..],
            ),
            (
                ClusterPullSecret::crd(),
                "cps",
                &["Source", "Ready", "Namespaces", "Conflicts"][..],
            ),
        ];
        for (crd, short, columns) in crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            assert_eq!(crd.spec.group, GROUP, "{name}");
            assert_eq!(
                crd.spec.names.short_names,
                Some(vec![short.to_owned()]),
                "{name}"
            );
            let version = &crd.spec.versions[0];
            assert_eq!(version.name, "v1alpha1");
            let shown: Vec<&str> = version
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|column| column.name.as_str())
                .collect();
            for column in columns {
                assert!(
                    shown.contains(column),
                    "{name}: no {column} column in {shown:?}"
                );
            }
            let schema = serde_json::to_value(
                version
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .expect("schema"),
            )
            .expect("JSON");
            // `kubectl explain <kind>.spec` documents every field.
            let mut missing = Vec::new();
            undescribed(&schema["properties"]["spec"], "spec", &mut missing);
            assert_eq!(
                missing,
                Vec::<String>::new(),
                "{name}: fields without a description"
            );
            assert!(
                schema["properties"]["spec"].get("description").is_some(),
                "{name}"
            );
        }
    }
}
