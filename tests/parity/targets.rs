//! The six comparisons: each generates cases, answers them with our code and with the oracle,
//! and on a difference writes the minimal case as a row of a table in the module's tests.

use std::collections::BTreeMap;
use std::fmt::Debug;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;
use proptest::sample::subsequence;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Value, json};

use pullsecret_injector::admission::decision::decide;
use pullsecret_injector::admission::pod::PodView;
use pullsecret_injector::kubelet::dockerconfig::{
    DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_KEY, DOCKERCFG_TYPE, DecodeError,
    registry_keys,
};
use pullsecret_injector::kubelet::keyring::{KeyMatch, Keyring, index_key, match_key};
use pullsecret_injector::kubelet::reference::{ImageRef, ReferenceError};
use pullsecret_injector::state::snapshot::StateBuilder;

use crate::cases::{self, ImageAim, Payload, Slot};
use crate::oracle::Oracle;

/// Ours and Go's answers to one case, and the row that pins Go's answer in our tests.
pub struct Difference {
    pub ours: String,
    pub go: String,
    pub row: String,
}

pub trait Target {
    type Case: Clone + Debug;
    const NAME: &'static str;
    /// The file and table a row goes into.
    const TABLE: &'static str;
    fn cases() -> BoxedStrategy<Self::Case>;
    /// None when our code and the kubelet's agree.
    fn compare(oracle: &mut Oracle, case: &Self::Case) -> Option<Difference>;
}

fn differ(ours: impl Debug, go: impl Debug, row: String) -> Option<Difference> {
    Some(Difference {
        ours: format!("{ours:?}"),
        go: format!("{go:?}"),
        row,
    })
}

/// A Rust string literal (`Debug` of a str is one).
fn lit(text: &str) -> String {
    format!("{text:?}")
}

fn option_lit(text: Option<&str>) -> String {
    text.map_or("None".to_owned(), |text| format!("Some({})", lit(text)))
}

fn list_lit(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| lit(item)).collect();
    format!("&[{}]", items.join(", "))
}

fn bytes_lit(bytes: &[u8]) -> String {
    format!("b\"{}\"", bytes.escape_ascii())
}

fn base64_bytes<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&BASE64.encode(bytes))
}

// ---------------------------------------------------------------------------------------------
// Image references

pub struct Reference;

#[derive(Debug, PartialEq, Eq, Deserialize)]
struct ImageAnswer {
    /// The kind of error, named as our `ReferenceError` variants; "" when the image parses.
    error: String,
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
    lookup: String,
}

fn error_kind(error: &ReferenceError) -> &'static str {
    match error {
        // Go says plain "invalid reference format" for the empty string.
        ReferenceError::Empty | ReferenceError::InvalidFormat { .. } => "InvalidFormat",
        ReferenceError::HexIdentifier { .. } => "HexIdentifier",
        ReferenceError::NameContainsUppercase { .. } => "NameContainsUppercase",
        ReferenceError::NameTooLong { .. } => "NameTooLong",
        ReferenceError::UnsupportedDigest { .. } => "UnsupportedDigest",
        ReferenceError::InvalidDigest { .. } => "InvalidDigest",
    }
}

impl Target for Reference {
    type Case = String;
    const NAME: &'static str = "reference";
    const TABLE: &'static str = "src/kubelet/reference/tests.rs, GO_PARITY";

    fn cases() -> BoxedStrategy<String> {
        cases::image().boxed()
    }

    fn compare(oracle: &mut Oracle, image: &String) -> Option<Difference> {
        let go: ImageAnswer = oracle.ask(Self::NAME, &json!({ "image": image }));
        let ours = match ImageRef::parse(image) {
            Ok(parsed) => ImageAnswer {
                error: String::new(),
                domain: parsed.domain().to_owned(),
                path: parsed.path().to_owned(),
                tag: parsed.tag().map(str::to_owned),
                digest: parsed.digest().map(str::to_owned),
                lookup: parsed.lookup_key(),
            },
            Err(error) => ImageAnswer {
                error: error_kind(&error).to_owned(),
                domain: String::new(),
                path: String::new(),
                tag: None,
                digest: None,
                lookup: String::new(),
            },
        };
        if ours == go {
            return None;
        }
        let want = if go.error.is_empty() {
            format!(
                "GoRef::Named({}, {}, {}, {})",
                lit(&go.domain),
                lit(&go.path),
                option_lit(go.tag.as_deref()),
                option_lit(go.digest.as_deref())
            )
        } else {
            format!("GoRef::Invalid({})", lit(&go.error))
        };
        differ(ours, go, format!("({}, {want}),", lit(image)))
    }
}

// ---------------------------------------------------------------------------------------------
// Secret decoding

pub struct Dockerconfig;

#[derive(Debug, Clone, Serialize)]
pub struct SecretCase {
    #[serde(rename = "type")]
    secret_type: String,
    key: String,
    #[serde(serialize_with = "base64_bytes")]
    payload: Vec<u8>,
}

#[derive(Debug, Deserialize)]
struct SecretAnswer {
    result: String,
    keys: Option<Vec<String>>,
    offset: usize,
    found: String,
    message: String,
}

/// What the kubelet makes of a secret, in the words of `Want` in dockerconfig's tests.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Ignored,
    /// Sorted: Go decodes into a map.
    Keys(Vec<String>),
    Syntax(usize),
    /// With the JSON type found where a string or an object was expected.
    Type(String),
    Base64(usize),
    Format,
    /// An error the oracle could not classify.
    Other(String),
}

impl Verdict {
    fn ours(case: &SecretCase) -> Verdict {
        let data = BTreeMap::from([(case.key.clone(), case.payload.clone())]);
        match registry_keys(&case.secret_type, &data) {
            Ok(None) => Verdict::Ignored,
            Ok(Some(mut keys)) => {
                keys.sort();
                Verdict::Keys(keys)
            }
            Err(DecodeError::Syntax { offset, .. }) => Verdict::Syntax(offset),
            Err(DecodeError::WrongType { found, .. }) => Verdict::Type(found.to_string()),
            Err(DecodeError::AuthBase64 { offset, .. }) => Verdict::Base64(offset),
            Err(DecodeError::AuthFormat { .. }) => Verdict::Format,
        }
    }

    fn go(answer: SecretAnswer) -> Verdict {
        match answer.result.as_str() {
            "ignored" => Verdict::Ignored,
            "keys" => Verdict::Keys(answer.keys.unwrap_or_default()),
            "syntax" => Verdict::Syntax(answer.offset),
            "type" => Verdict::Type(answer.found),
            "base64" => Verdict::Base64(answer.offset),
            "format" => Verdict::Format,
            _ => Verdict::Other(answer.message),
        }
    }

    /// `Want` in src/kubelet/dockerconfig/tests.rs.
    fn want(&self) -> String {
        match self {
            Verdict::Ignored => "Ignored".to_owned(),
            Verdict::Keys(keys) => format!("Keys({})", list_lit(keys)),
            Verdict::Syntax(offset) => format!("Syntax({offset})"),
            Verdict::Type(_) => "Type".to_owned(),
            Verdict::Base64(offset) => format!("Base64({offset})"),
            Verdict::Format => "Format".to_owned(),
            Verdict::Other(message) => format!("/* no Want for Go's error {message:?} */"),
        }
    }
}

fn secret_type_lit(secret_type: &str) -> String {
    match secret_type {
        DOCKER_CONFIG_JSON_TYPE => "DOCKER_CONFIG_JSON_TYPE".to_owned(),
        DOCKERCFG_TYPE => "DOCKERCFG_TYPE".to_owned(),
        other => lit(other),
    }
}

fn data_key_lit(key: &str) -> String {
    match key {
        DOCKER_CONFIG_JSON_KEY => "DOCKER_CONFIG_JSON_KEY".to_owned(),
        DOCKERCFG_KEY => "DOCKERCFG_KEY".to_owned(),
        other => lit(other),
    }
}

impl Target for Dockerconfig {
    type Case = SecretCase;
    const NAME: &'static str = "dockerconfig";
    const TABLE: &'static str = "src/kubelet/dockerconfig/tests.rs, GO_PARITY";

    fn cases() -> BoxedStrategy<SecretCase> {
        (cases::world(1..3), cases::secret_data(true))
            .prop_map(|(world, (secret_type, key, payload))| SecretCase {
                secret_type: secret_type.to_owned(),
                key: key.to_owned(),
                payload: payload.render(&world),
            })
            .boxed()
    }

    fn compare(oracle: &mut Oracle, case: &SecretCase) -> Option<Difference> {
        let go = Verdict::go(oracle.ask(Self::NAME, case));
        let ours = Verdict::ours(case);
        if ours == go {
            return None;
        }
        let row = format!(
            "({}, {}, {}, {}),",
            secret_type_lit(&case.secret_type),
            data_key_lit(&case.key),
            bytes_lit(&case.payload),
            go.want()
        );
        differ(ours, go, row)
    }
}

// ---------------------------------------------------------------------------------------------
// The keyring: index keys, URLsMatch, lookups

pub struct IndexKey;

#[derive(Debug, Deserialize)]
struct IndexKeyAnswer {
    /// Base64 of the bytes (they need not be UTF-8); None when the kubelet skips the key.
    key: Option<String>,
}

impl Target for IndexKey {
    type Case = String;
    const NAME: &'static str = "index_key";
    const TABLE: &'static str = "src/kubelet/keyring/tests.rs, NORMALIZE";

    fn cases() -> BoxedStrategy<String> {
        prop_oneof![
            cases::registry_key(),
            (cases::world(1..2), cases::key_slot()).prop_map(|(world, key)| key.render(&world)),
        ]
        .boxed()
    }

    fn compare(oracle: &mut Oracle, raw: &String) -> Option<Difference> {
        let answer: IndexKeyAnswer = oracle.ask(Self::NAME, &json!({ "raw": raw }));
        let go = answer.key.map(|key| {
            let bytes = BASE64.decode(key).expect("the oracle sends base64");
            // As our index_key shows bytes that are not UTF-8.
            String::from_utf8_lossy(&bytes).into_owned()
        });
        let ours = index_key(raw);
        if ours == go {
            return None;
        }
        let row = format!("({}, {}),", lit(raw), option_lit(go.as_deref()));
        differ(ours, go, row)
    }
}

pub struct UrlsMatch;

#[derive(Debug, Deserialize)]
struct MatchAnswer {
    matched: bool,
    error: bool,
}

impl Target for UrlsMatch {
    type Case = (String, String);
    const NAME: &'static str = "match";
    const TABLE: &'static str = "src/kubelet/keyring/tests.rs, URLS_MATCH_GO";

    fn cases() -> BoxedStrategy<(String, String)> {
        // One registry: the key and the lookup string are about the same one.
        let aimed = (cases::world(1..2), cases::key_slot(), cases::lookup_slot())
            .prop_map(|(world, key, lookup)| (key.render(&world), lookup.render(&world)));
        let pair = prop_oneof![
            3 => aimed,
            1 => (cases::registry_key(), cases::lookup()),
        ];
        // Now and then the key as the keyring stores it: scheme and `/v1/` gone.
        (pair, prop::bool::weighted(0.25))
            .prop_map(|((key, lookup), stored)| {
                let key = if stored {
                    index_key(&key).unwrap_or(key)
                } else {
                    key
                };
                (key, lookup)
            })
            .boxed()
    }

    fn compare(oracle: &mut Oracle, (key, lookup): &(String, String)) -> Option<Difference> {
        let answer: MatchAnswer = oracle.ask(Self::NAME, &json!({ "key": key, "lookup": lookup }));
        // Some(matched), or None for an error (a key or lookup Go cannot parse, a bad glob).
        let go = (!answer.error).then_some(answer.matched);
        let ours = match match_key(key, lookup) {
            KeyMatch::Matched => Some(true),
            KeyMatch::Unparseable | KeyMatch::BadGlob { .. } => None,
            _ => Some(false),
        };
        if ours == go {
            return None;
        }
        let go_lit = go.map_or("None".to_owned(), |matched| format!("Some({matched})"));
        let row = format!("({}, {}, {go_lit}),", lit(key), lit(lookup));
        differ(match_key(key, lookup), go, row)
    }
}

pub struct Lookup;

#[derive(Debug, Clone, Serialize)]
pub struct Owner {
    name: String,
    keys: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyringCase {
    owners: Vec<Owner>,
    lookups: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct KeyringAnswer {
    owners: Vec<Vec<String>>,
}

const OWNER_NAMES: &[&str] = &["a", "b", "c", "d", "e"];

impl Target for Lookup {
    type Case = KeyringCase;
    const NAME: &'static str = "keyring";
    const TABLE: &'static str = "src/kubelet/keyring/tests.rs, LOOKUP_GO";

    fn cases() -> BoxedStrategy<KeyringCase> {
        let owner = (
            proptest::sample::select(OWNER_NAMES),
            prop::collection::vec(cases::key_slot(), 0..4),
        );
        (
            cases::world(1..4),
            prop::collection::vec(owner, 1..6),
            prop::collection::vec(cases::lookup_slot(), 1..6),
        )
            .prop_map(|(world, owners, lookups)| KeyringCase {
                owners: owners
                    .into_iter()
                    .map(|(name, keys)| Owner {
                        name: name.to_owned(),
                        keys: keys.iter().map(|key| key.render(&world)).collect(),
                    })
                    .collect(),
                lookups: lookups.iter().map(|lookup| lookup.render(&world)).collect(),
            })
            .boxed()
    }

    fn compare(oracle: &mut Oracle, case: &KeyringCase) -> Option<Difference> {
        let answer: KeyringAnswer = oracle.ask(Self::NAME, case);
        let keyring = Keyring::new(
            case.owners
                .iter()
                .map(|owner| (owner.name.as_str(), owner.keys.as_slice())),
        );
        for (lookup, go) in case.lookups.iter().zip(&answer.owners) {
            let ours: Vec<&str> = keyring.lookup(lookup).into_iter().copied().collect();
            if ours == *go {
                continue;
            }
            let owners: Vec<String> = case
                .owners
                .iter()
                .map(|owner| format!("({}, {})", lit(&owner.name), list_lit(&owner.keys)))
                .collect();
            let row = format!(
                "(&[{}], {}, {}),",
                owners.join(", "),
                lit(lookup),
                list_lit(go)
            );
            return differ((lookup, ours), (lookup, go), row);
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// A namespace of secrets and a pod

pub struct NamespaceOfSecrets;

const NAMESPACE: &str = "team";
const SECRET_NAMES: &[&str] = &["a", "b", "c", "d", "e", "f"];

#[derive(Debug, Clone, Serialize)]
pub struct SecretObject {
    name: String,
    #[serde(rename = "type")]
    secret_type: String,
    #[serde(serialize_with = "base64_data")]
    data: Vec<(String, Vec<u8>)>,
}

fn base64_data<S: Serializer>(
    data: &[(String, Vec<u8>)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let encoded: BTreeMap<&str, String> = data
        .iter()
        .map(|(key, value)| (key.as_str(), BASE64.encode(value)))
        .collect();
    encoded.serialize(serializer)
}

#[derive(Debug, Clone)]
pub struct PodCase {
    secrets: Vec<SecretObject>,
    pod_secrets: Vec<String>,
    init: Vec<String>,
    containers: Vec<String>,
    ephemeral: Vec<String>,
    /// Image volumes' references: the kubelet pulls them as it pulls the containers' images.
    volumes: Vec<String>,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
struct Injection {
    secret: String,
    registries: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct NamespaceAnswer {
    injected: Vec<Injection>,
    invalid_images: usize,
    broken_before: bool,
    broken_after: bool,
    unused: Vec<String>,
}

/// A secret's type and data: one data key, now and then a second one. Hostile documents are
/// the `dockerconfig` target's; here broken entries and truncation make secrets undecodable.
fn secret_object() -> impl Strategy<Value = (&'static str, Vec<(&'static str, Payload)>)> {
    (
        cases::secret_data(false),
        prop::option::weighted(0.1, cases::secret_data(false)),
    )
        .prop_map(|((secret_type, key, payload), second)| {
            let second = second.filter(|(_, second_key, _)| *second_key != key);
            let mut data = vec![(key, payload)];
            data.extend(second.map(|(_, key, payload)| (key, payload)));
            (secret_type, data)
        })
}

fn pod_images(count: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Slot<ImageAim>>> {
    prop::collection::vec(cases::image_slot(), count)
}

/// `spec.volumes` with an image volume per reference, each with another `pullPolicy` (which
/// changes nothing the kubelet pulls with), among a volume of another kind.
pub fn image_volumes(references: &[String]) -> Vec<Value> {
    const POLICIES: [Option<&str>; 4] = [None, Some("Always"), Some("IfNotPresent"), Some("Never")];
    let mut volumes = vec![json!({ "name": "scratch", "emptyDir": {} })];
    volumes.extend(
        references
            .iter()
            .zip(POLICIES.iter().cycle())
            .enumerate()
            .map(|(i, (reference, policy))| {
                let mut image = json!({ "reference": reference });
                if let Some(policy) = policy {
                    image["pullPolicy"] = json!(policy);
                }
                json!({ "name": format!("v{i}"), "image": image })
            }),
    );
    volumes
}

impl PodCase {
    fn images(&self) -> impl Iterator<Item = &String> {
        self.init
            .iter()
            .chain(&self.containers)
            .chain(&self.ephemeral)
            .chain(&self.volumes)
    }

    fn pod(&self) -> Value {
        let containers = |images: &[String], prefix: &str| -> Vec<Value> {
            images
                .iter()
                .enumerate()
                .map(|(i, image)| json!({ "name": format!("{prefix}{i}"), "image": image }))
                .collect()
        };
        let references: Vec<Value> = self
            .pod_secrets
            .iter()
            .map(|name| json!({ "name": name }))
            .collect();
        json!({
            "metadata": { "name": "p", "namespace": NAMESPACE },
            "spec": {
                "initContainers": containers(&self.init, "i"),
                "containers": containers(&self.containers, "c"),
                "ephemeralContainers": containers(&self.ephemeral, "e"),
                "imagePullSecrets": references,
                "volumes": image_volumes(&self.volumes),
            },
        })
    }

    /// Our decision, with the state built the way the watches build it.
    fn ours(&self) -> (Vec<Injection>, usize) {
        let mut builder = StateBuilder::new();
        builder.apply_namespace(&Namespace {
            metadata: ObjectMeta {
                name: Some(NAMESPACE.to_owned()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        });
        for secret in &self.secrets {
            builder.apply_secret(&Secret {
                metadata: ObjectMeta {
                    namespace: Some(NAMESPACE.to_owned()),
                    name: Some(secret.name.clone()),
                    ..ObjectMeta::default()
                },
                type_: Some(secret.secret_type.clone()),
                data: Some(
                    secret
                        .data
                        .iter()
                        .map(|(key, value)| (key.clone(), ByteString(value.clone())))
                        .collect(),
                ),
                ..Secret::default()
            });
        }
        let state = builder.snapshot();
        let pod: PodView = serde_json::from_value(self.pod()).expect("the pod reads");
        let decision = decide(&pod, NAMESPACE, &state);
        let injected = decision
            .injected
            .into_iter()
            .map(|injection| Injection {
                secret: injection.secret,
                registries: injection.registries,
            })
            .collect();
        (injected, decision.invalid_images)
    }

    /// `GoCase` in src/admission/decision/tests.rs.
    fn row(&self, go: &NamespaceAnswer) -> String {
        let secrets: Vec<String> = self
            .secrets
            .iter()
            .map(|secret| {
                let data: Vec<String> = secret
                    .data
                    .iter()
                    .map(|(key, value)| format!("({}, {})", data_key_lit(key), bytes_lit(value)))
                    .collect();
                format!(
                    "({}, {}, &[{}])",
                    lit(&secret.name),
                    secret_type_lit(&secret.secret_type),
                    data.join(", ")
                )
            })
            .collect();
        let injected: Vec<String> = go
            .injected
            .iter()
            .map(|injection| {
                format!(
                    "({}, {})",
                    lit(&injection.secret),
                    list_lit(&injection.registries)
                )
            })
            .collect();
        format!(
            "GoCase {{ secrets: &[{}], pod_secrets: {}, init: {}, containers: {}, ephemeral: {}, volumes: {}, injected: &[{}], invalid_images: {} }},",
            secrets.join(", "),
            list_lit(&self.pod_secrets),
            list_lit(&self.init),
            list_lit(&self.containers),
            list_lit(&self.ephemeral),
            list_lit(&self.volumes),
            injected.join(", "),
            go.invalid_images
        )
    }
}

impl Target for NamespaceOfSecrets {
    type Case = PodCase;
    const NAME: &'static str = "namespace";
    const TABLE: &'static str = "src/admission/decision/tests.rs, GO_PARITY";

    fn cases() -> BoxedStrategy<PodCase> {
        // Named a, b, c, ... in order; the pod may name more than exist.
        let secrets = prop::collection::vec(secret_object(), 0..=SECRET_NAMES.len());
        let mut referable = SECRET_NAMES.to_vec();
        referable.extend(["missing", ""]);
        let pod_secrets = subsequence(referable, 0..3).prop_shuffle();
        (
            cases::world(1..3),
            secrets,
            pod_secrets,
            (
                pod_images(0..2),
                pod_images(1..4),
                pod_images(0..2),
                pod_images(0..3),
            ),
        )
            .prop_map(
                |(world, secrets, pod_secrets, (init, containers, ephemeral, volumes))| {
                    let images = |slots: Vec<Slot<ImageAim>>| -> Vec<String> {
                        slots.iter().map(|slot| slot.render(&world)).collect()
                    };
                    PodCase {
                        secrets: secrets
                            .into_iter()
                            .zip(SECRET_NAMES)
                            .map(|((secret_type, data), name)| SecretObject {
                                name: (*name).to_owned(),
                                secret_type: secret_type.to_owned(),
                                data: data
                                    .into_iter()
                                    .map(|(key, payload)| (key.to_owned(), payload.render(&world)))
                                    .collect(),
                            })
                            .collect(),
                        pod_secrets: pod_secrets.into_iter().map(str::to_owned).collect(),
                        init: images(init),
                        containers: images(containers),
                        ephemeral: images(ephemeral),
                        volumes: images(volumes),
                    }
                },
            )
            .boxed()
    }

    fn compare(oracle: &mut Oracle, case: &PodCase) -> Option<Difference> {
        let request = json!({
            "secrets": case.secrets,
            "pod_secrets": case.pod_secrets,
            "images": case.images().collect::<Vec<_>>(),
        });
        let go: NamespaceAnswer = oracle.ask(Self::NAME, &request);
        let (injected, invalid_images) = case.ours();
        // The kubelet, given the pod as injected, uses every injected secret for its images and
        // fails no pull that did not fail before: what MATCHING.md §6 promises.
        let kubelet_agrees = go.unused.is_empty() && go.broken_after == go.broken_before;
        if injected == go.injected && invalid_images == go.invalid_images && kubelet_agrees {
            return None;
        }
        let row = case.row(&go);
        differ((injected, invalid_images), go, row)
    }
}
