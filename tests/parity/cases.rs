//! Generators for the parity run. Most keys are aimed at a small world of registries that the
//! case's images and lookup strings come from too (the registry's host as is, globbed, with
//! another port, a path prefix, a scheme, `/v1/`, ...), so that keys match images often and
//! every rule (globs, ports, path prefixes, the Docker Hub fallback) decides real cases. Keys,
//! images and documents built from a vocabulary alone, and the hostile generators of
//! `tests/grammar`, are mixed in for what nobody thought of.
//!
//! Cases are generated as structures (which registry, how the key is aimed, which members a
//! document has) and rendered to text last, so that shrinking simplifies the structure.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as BASE64, STANDARD_NO_PAD as BASE64_RAW};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::Value;

use pullsecret_injector::kubelet::dockerconfig::{
    DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_KEY, DOCKERCFG_TYPE,
};

use crate::grammar::{self, regex};

/// Hosts of images, and of keys when they are not globs.
const HOSTS: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "localhost",
    "quay.io",
    "gcr.io",
    "r.example.com",
    "a.example.com",
    "a.b.example.com",
    "example.com",
    "kubernetes.io",
    "a.kubernetes.io",
    "127.0.0.1",
    "[::1]",
    "[2001:db8::1]",
    "[::ffff:1.2.3.4]",
    "Quay.io",
    "REG.IO",
    "xn--n3h.com",
    "foo_bar.com",
    "a-b.io",
    "reg",
    "library",
];

/// Key hosts that only a glob, an escape or a parse quirk makes match (or fail).
const KEY_HOSTS: &[&str] = &[
    "*.example.com",
    "*",
    "*.io",
    "*.com",
    "*kubernetes.io",
    "*.docker.io",
    "*.*",
    "a.*.com",
    "*.b.example.com",
    "r?.example.com",
    "?.example.com",
    "[a-z].example.com",
    "[^a].example.com",
    "[a-].io",
    "\\*.io",
    "a\\.io",
    "é.io",
    "%C3%A9.io",
    "a%25b.io",
    "a%41.io",
    "[fe80::1%25en0]",
    "[fe80::1%en0]",
    "user:pass@quay.io",
    "@quay.io",
    "us er@quay.io",
    "reg io",
    "a[b].io",
    "",
];

const PORTS: &[&str] = &["", "", "", "", ":5000", ":443", ":0443", ":", ":x", ":1:2"];

const PATH_COMPONENTS: &[&str] = &[
    "library", "nginx", "team", "app", "foo", "foobar", "fo", "v1", "v2", "a", "a.b", "a__b",
    "a_b", "a-b", "a--b", "x", "coreos", "etcd", "A", "a_", "_a", "a..b",
];

/// What follows the host of a key: nothing, the Docker Hub `/v1/` forms, paths, queries,
/// fragments and escapes.
const KEY_SUFFIXES: &[&str] = &[
    "",
    "",
    "",
    "/",
    "/v1/",
    "/v2/",
    "/v1",
    "/v1/team",
    "/v2/library/",
    "/team",
    "/team/",
    "/team/app",
    "/fo",
    "/foo",
    "/library",
    "/library/nginx",
    "//",
    "?x",
    "?/team",
    "#f",
    "#%zz",
    "/%41",
    "/%2F",
    "/%FF",
    "/%zz",
    "/a b",
    "/a%3Fb",
    "/\u{7f}",
    "/é",
];

const SCHEMES: &[&str] = &[
    "",
    "",
    "",
    "https://",
    "https://",
    "http://",
    "HTTPS://",
    "ftp://",
    "https://https://",
];

fn host() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(HOSTS).prop_map(str::to_owned),
        1 => regex("[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?(\\.[a-z0-9]{1,4}){0,3}"),
    ]
    .boxed()
}

fn port() -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(PORTS).prop_map(str::to_owned),
        1 => regex(":[0-9]{1,5}"),
    ]
    .boxed()
}

fn repo_path() -> impl Strategy<Value = String> {
    prop::collection::vec(select(PATH_COMPONENTS), 1..4).prop_map(|parts| parts.join("/"))
}

fn tag() -> BoxedStrategy<String> {
    prop_oneof![
        4 => Just(String::new()),
        2 => regex("[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}").prop_map(|tag| format!(":{tag}")),
        1 => select(&["latest", "1.25", "-x", ".x", "", "x:y", "x/y"][..]).prop_map(|t| format!(":{t}")),
        1 => (127usize..130).prop_map(|len| format!(":{}", "t".repeat(len))),
    ]
    .boxed()
}

/// `len` lowercase hex digits, spread from one random number (a strategy per digit costs more
/// than the rest of a case).
fn hex(len: usize) -> impl Strategy<Value = String> {
    any::<u64>().prop_map(move |mut state| {
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                char::from(b"0123456789abcdef"[(state >> 60) as usize])
            })
            .collect()
    })
}

fn digest() -> BoxedStrategy<String> {
    prop_oneof![
        6 => Just(String::new()),
        2 => hex(64).prop_map(|h| format!("@sha256:{h}")),
        1 => hex(96).prop_map(|h| format!("@sha384:{h}")),
        1 => hex(128).prop_map(|h| format!("@sha512:{h}")),
        1 => hex(63).prop_map(|h| format!("@sha256:{h}")),
        1 => hex(64).prop_map(|h| format!("@sha256:{}", h.to_uppercase())),
        1 => hex(32).prop_map(|h| format!("@md5:{h}")),
        1 => hex(64).prop_map(|h| format!("@SHA256:{h}")),
        1 => hex(64).prop_map(|h| format!("@sha256+b64:{h}")),
        1 => hex(64).prop_map(|h| format!("@{h}")),
    ]
    .boxed()
}

fn structured_image() -> BoxedStrategy<String> {
    (
        prop::option::weighted(0.7, (host(), port())),
        repo_path(),
        tag(),
        digest(),
    )
        .prop_map(|(domain, path, tag, digest)| match domain {
            Some((host, port)) => format!("{host}{port}/{path}{tag}{digest}"),
            None => format!("{path}{tag}{digest}"),
        })
        .boxed()
}

/// A container image: structured from the shared vocabulary, or hostile text.
pub fn image() -> BoxedStrategy<String> {
    prop_oneof![
        6 => structured_image(),
        2 => grammar::image_ish(),
        1 => hex(64),
        1 => regex("[a-z]{250,260}"),
        1 => regex("[a-z]\\.io/[a-z]{250,260}"),
        1 => regex("\\PC{0,8}"),
    ]
    .boxed()
}

/// An image of a pod: the `reference` target covers the grammar's corners, pods mostly need
/// images that keys match (and now and then one that does not parse). Never empty: the
/// apiserver rejects a container without an image.
pub fn pod_image() -> BoxedStrategy<String> {
    prop_oneof![
        8 => structured_image(),
        1 => grammar::image_ish().prop_filter("an empty image", |image| !image.is_empty()),
    ]
    .boxed()
}

/// An `auths` key: a scheme, a host (plain or glob), a port and a suffix, or a hostile key.
pub fn registry_key() -> BoxedStrategy<String> {
    let host_or_glob = prop_oneof![
        3 => host(),
        2 => select(KEY_HOSTS).prop_map(str::to_owned),
    ];
    let structured = (
        select(SCHEMES),
        host_or_glob,
        port(),
        prop_oneof![
            3 => select(KEY_SUFFIXES).prop_map(str::to_owned),
            1 => repo_path().prop_map(|path| format!("/{path}")),
        ],
    )
        .prop_map(|(scheme, host, port, suffix)| format!("{scheme}{host}{port}{suffix}"));
    prop_oneof![
        6 => structured,
        1 => grammar::registry_key(),
    ]
    .boxed()
}

/// A string the keyring is asked about: mostly what the kubelet derives from an image
/// (`domain/path`, or a bare path), sometimes anything.
pub fn lookup() -> BoxedStrategy<String> {
    prop_oneof![
        6 => (host(), port(), repo_path())
            .prop_map(|(host, port, path)| format!("{host}{port}/{path}")),
        1 => repo_path(),
        1 => registry_key(),
        1 => grammar::image_ish(),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// A world of registries, and keys, lookups and images aimed at it

const WORLD_HOSTS: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "localhost",
    "quay.io",
    "r.example.com",
    "a.example.com",
    "a.b.example.com",
    "kubernetes.io",
    "127.0.0.1",
    "[::1]",
    "Quay.io",
    "foo_bar.com",
    "reg",
];
const WORLD_PORTS: &[&str] = &["", "", "", "", ":5000", ":443", ":0443"];
const WORLD_COMPONENTS: &[&str] = &[
    "library", "nginx", "team", "app", "foo", "foobar", "fo", "v1", "a", "coreos", "etcd", "a.b",
    "a__b", "a-b",
];
/// Keys for Docker Hub images, which have no host of their own.
const HUB_KEYS: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "https://index.docker.io/v1/",
    "index.docker.io/v1/",
    "registry-1.docker.io",
    "*.docker.io",
    "*.io",
    "*",
    "library",
];

/// A registry and repository images are pulled from; an empty host is a Docker Hub image
/// written without one (`nginx`, `team/app`).
#[derive(Debug, Clone)]
pub struct Registry {
    host: String,
    port: &'static str,
    path: String,
}

/// A few registries, `size` of them.
pub fn world(size: std::ops::Range<usize>) -> BoxedStrategy<Vec<Registry>> {
    let registry = (
        prop_oneof![
            6 => select(WORLD_HOSTS).prop_map(str::to_owned),
            1 => regex("[a-z]{1,3}(\\.[a-z]{1,3}){1,2}"),
            2 => Just(String::new()),
        ],
        select(WORLD_PORTS),
        prop::collection::vec(select(WORLD_COMPONENTS), 1..4).prop_map(|parts| parts.join("/")),
    )
        .prop_map(|(host, port, path)| Registry {
            port: if host.is_empty() { "" } else { port },
            host,
            path,
        });
    prop::collection::vec(registry, size).boxed()
}

fn pick<'w>(world: &'w [Registry], index: &Index) -> &'w Registry {
    &world[index.index(world.len())]
}

impl Registry {
    /// The image's repository as the kubelet looks it up.
    fn lookup(&self, path: &str) -> String {
        match (self.host.as_str(), path.contains('/')) {
            ("", true) => format!("docker.io/{path}"),
            ("", false) => format!("docker.io/library/{path}"),
            (host, _) => format!("{host}{}/{path}", self.port),
        }
    }

    fn image(&self, path: &str) -> String {
        match self.host.as_str() {
            "" => path.to_owned(),
            host => format!("{host}{}/{path}", self.port),
        }
    }
}

/// How a key's host is derived from its registry's.
#[derive(Debug, Clone)]
enum HostAim {
    Same,
    /// One label becomes `*`.
    Star(Index),
    /// One label keeps its first character and ends in `*`.
    Prefix(Index),
    /// One character becomes `?`.
    Question(Index),
    /// One character becomes a `[...]` class holding it (which url.Parse refuses in a host).
    Class(Index),
    Upper,
    Other(String),
}

#[derive(Debug, Clone)]
enum PortAim {
    Same,
    Dropped,
    Other(&'static str),
}

#[derive(Debug, Clone)]
enum PathAim {
    None,
    /// The repository path cut at a byte, a plain prefix.
    Cut(Index),
    Whole,
    WholeSlash,
    Longer,
    V1,
    V2Cut(Index),
}

/// How an `auths` key is aimed at a registry.
#[derive(Debug, Clone)]
pub struct KeyAim {
    scheme: &'static str,
    user: &'static str,
    host: HostAim,
    port: PortAim,
    path: PathAim,
    tail: &'static str,
}

fn key_aim() -> BoxedStrategy<KeyAim> {
    let host = prop_oneof![
        8 => Just(HostAim::Same),
        3 => any::<Index>().prop_map(HostAim::Star),
        1 => any::<Index>().prop_map(HostAim::Prefix),
        1 => any::<Index>().prop_map(HostAim::Question),
        1 => any::<Index>().prop_map(HostAim::Class),
        1 => Just(HostAim::Upper),
        1 => select(KEY_HOSTS).prop_map(|host| HostAim::Other(host.to_owned())),
    ];
    let port = prop_oneof![
        8 => Just(PortAim::Same),
        1 => Just(PortAim::Dropped),
        1 => select(PORTS).prop_map(PortAim::Other),
    ];
    let path = prop_oneof![
        6 => Just(PathAim::None),
        3 => any::<Index>().prop_map(PathAim::Cut),
        1 => Just(PathAim::Whole),
        1 => Just(PathAim::WholeSlash),
        1 => Just(PathAim::Longer),
        1 => Just(PathAim::V1),
        1 => any::<Index>().prop_map(PathAim::V2Cut),
    ];
    let user = prop_oneof![10 => Just(""), 1 => select(&["u:p@", "@", "u p@"][..])];
    let tail = prop_oneof![10 => Just(""), 1 => select(&["?x", "#f", "/", "%41", "?/a"][..])];
    (select(SCHEMES), user, host, port, path, tail)
        .prop_map(|(scheme, user, host, port, path, tail)| KeyAim {
            scheme,
            user,
            host,
            port,
            path,
            tail,
        })
        .boxed()
}

/// The character boundary at or before a byte chosen by `index`.
fn boundary(text: &str, index: &Index) -> usize {
    let mut at = index.index(text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

impl Aim for KeyAim {
    fn render(&self, registry: &Registry) -> String {
        if registry.host.is_empty() {
            // Docker Hub: a key of its own; the path still counts.
            let host = match &self.host {
                HostAim::Other(host) => host.as_str(),
                HostAim::Star(index)
                | HostAim::Prefix(index)
                | HostAim::Question(index)
                | HostAim::Class(index) => HUB_KEYS[index.index(HUB_KEYS.len())],
                HostAim::Same | HostAim::Upper => "docker.io",
            };
            let lookup = registry.lookup(&registry.path);
            let path = lookup.strip_prefix("docker.io").unwrap_or(&lookup);
            return format!(
                "{}{}{host}{}{}",
                self.scheme,
                self.user,
                self.path(path),
                self.tail
            );
        }
        let host = &registry.host;
        let host = match &self.host {
            HostAim::Same => host.clone(),
            HostAim::Upper => host.to_uppercase(),
            HostAim::Other(other) => other.clone(),
            HostAim::Star(index) | HostAim::Prefix(index) => {
                let mut labels: Vec<String> = host.split('.').map(str::to_owned).collect();
                let at = index.index(labels.len());
                labels[at] = match (&self.host, labels[at].chars().next()) {
                    (HostAim::Prefix(_), Some(first)) => format!("{first}*"),
                    _ => "*".to_owned(),
                };
                labels.join(".")
            }
            HostAim::Question(index) | HostAim::Class(index) => {
                let at = boundary(host, index).min(host.len().saturating_sub(1));
                let Some(c) = host[at..].chars().next() else {
                    return host.clone();
                };
                let with = if matches!(self.host, HostAim::Question(_)) {
                    "?".to_owned()
                } else {
                    format!("[{c}]")
                };
                format!("{}{with}{}", &host[..at], &host[at + c.len_utf8()..])
            }
        };
        let port = match &self.port {
            PortAim::Same => registry.port,
            PortAim::Dropped => "",
            PortAim::Other(port) => port,
        };
        let path = format!("/{}", registry.path);
        format!(
            "{}{}{host}{port}{}{}",
            self.scheme,
            self.user,
            self.path(&path),
            self.tail
        )
    }
}

impl KeyAim {
    /// The key's path for a repository path (with its leading `/`).
    fn path(&self, path: &str) -> String {
        match &self.path {
            PathAim::None => String::new(),
            PathAim::Cut(index) => path[..boundary(path, index)].to_owned(),
            PathAim::Whole => path.to_owned(),
            PathAim::WholeSlash => format!("{path}/"),
            PathAim::Longer => format!("{path}x"),
            PathAim::V1 => "/v1/".to_owned(),
            PathAim::V2Cut(index) => format!("/v2{}", &path[..boundary(path, index)]),
        }
    }
}

/// Something aimed at a registry of the world (the one `Index` picks), or taken from the
/// vocabulary alone.
#[derive(Debug, Clone)]
pub enum Slot<A> {
    Aimed(Index, A),
    Free(String),
}

/// How a key, lookup string or image is made from a registry.
pub trait Aim {
    fn render(&self, registry: &Registry) -> String;
}

impl<A: Aim> Slot<A> {
    pub fn render(&self, world: &[Registry]) -> String {
        match self {
            Slot::Aimed(index, aim) => aim.render(pick(world, index)),
            Slot::Free(text) => text.clone(),
        }
    }
}

fn slot<A: Clone + std::fmt::Debug + 'static>(
    aim: impl Strategy<Value = A> + 'static,
    free: impl Strategy<Value = String> + 'static,
) -> BoxedStrategy<Slot<A>> {
    prop_oneof![
        4 => (any::<Index>(), aim).prop_map(|(index, aim)| Slot::Aimed(index, aim)),
        1 => free.prop_map(Slot::Free),
    ]
    .boxed()
}

/// An `auths` key.
pub fn key_slot() -> BoxedStrategy<Slot<KeyAim>> {
    slot(key_aim(), registry_key())
}

/// Which repository of a registry an image or lookup string names.
#[derive(Debug, Clone)]
pub enum PathVariant {
    Same,
    Child,
    Parent,
}

fn path_variant() -> impl Strategy<Value = PathVariant> {
    prop_oneof![
        4 => Just(PathVariant::Same),
        2 => Just(PathVariant::Child),
        1 => Just(PathVariant::Parent),
    ]
}

impl PathVariant {
    fn apply(&self, path: &str) -> String {
        match self {
            PathVariant::Same => path.to_owned(),
            PathVariant::Child => format!("{path}/x"),
            PathVariant::Parent => path
                .rsplit_once('/')
                .map_or(path, |(parent, _)| parent)
                .to_owned(),
        }
    }
}

impl Aim for PathVariant {
    fn render(&self, registry: &Registry) -> String {
        registry.lookup(&self.apply(&registry.path))
    }
}

/// A string the keyring is asked about.
pub fn lookup_slot() -> BoxedStrategy<Slot<PathVariant>> {
    slot(path_variant(), lookup())
}

/// A pod's image of a registry: a repository and a tag or digest.
#[derive(Debug, Clone)]
pub struct ImageAim {
    path: PathVariant,
    suffix: String,
}

impl Aim for ImageAim {
    fn render(&self, registry: &Registry) -> String {
        let image = registry.image(&self.path.apply(&registry.path));
        format!("{image}{}", self.suffix)
    }
}

pub fn image_slot() -> BoxedStrategy<Slot<ImageAim>> {
    let suffix = prop_oneof![
        4 => Just(String::new()),
        2 => regex("[a-z0-9][a-z0-9.-]{0,4}").prop_map(|tag| format!(":{tag}")),
        1 => hex(64).prop_map(|hex| format!("@sha256:{hex}")),
    ];
    let aim = (path_variant(), suffix).prop_map(|(path, suffix)| ImageAim { path, suffix });
    slot(aim, pod_image())
}

// ---------------------------------------------------------------------------------------------
// Pull secrets

/// Secret types the kubelet does not read, though they look close.
const NEAR_MISS_TYPES: &[&str] = &[
    "Opaque",
    "kubernetes.io/DockerConfigJson",
    "kubernetes.io/dockerconfigjson ",
];

/// One data value of a secret.
#[derive(Debug, Clone)]
pub enum Payload {
    Document(Document),
    Bytes(Vec<u8>),
}

impl Payload {
    pub fn render(&self, world: &[Registry]) -> Vec<u8> {
        match self {
            Payload::Document(document) => document.render(world).into_bytes(),
            Payload::Bytes(bytes) => bytes.clone(),
        }
    }
}

/// A secret's type, data key and payload: mostly a type and key in agreement with a document in
/// the shape the type wants (mostly decodable), sometimes near misses or the other shape, and
/// with `hostile` the documents of the fuzzing run and bytes.
pub fn secret_data(hostile: bool) -> BoxedStrategy<(&'static str, &'static str, Payload)> {
    let own_key = |key: &'static str| prop_oneof![12 => Just(key), 1 => Just(DOCKER_CONFIG_JSON_KEY), 1 => Just(DOCKERCFG_KEY)];
    let payload = move |legacy: bool| {
        prop_oneof![
            8 => document(legacy).prop_map(Payload::Document),
            1 => document(!legacy).prop_map(Payload::Document),
            if hostile { 3 } else { 0 } => grammar::dockerconfig_document().prop_map(Payload::Bytes),
        ]
    };
    prop_oneof![
        6 => (Just(DOCKER_CONFIG_JSON_TYPE), own_key(DOCKER_CONFIG_JSON_KEY), payload(false)),
        3 => (Just(DOCKERCFG_TYPE), own_key(DOCKERCFG_KEY), payload(true)),
        1 => (select(NEAR_MISS_TYPES), own_key(DOCKER_CONFIG_JSON_KEY), payload(false)),
    ]
    .boxed()
}

/// A dockerconfig document as JSON text written out by hand, so that member-name case,
/// duplicates, escapes, whitespace and truncation can all occur.
#[derive(Debug, Clone)]
pub struct Document {
    shape: Shape,
    ending: Ending,
}

#[derive(Debug, Clone)]
enum Shape {
    /// `.dockercfg`: the top-level object is the key → entry map.
    Legacy(Vec<Entry>),
    /// `.dockerconfigjson`: `{"auths": {...}, ...}`, members by (possibly odd) name.
    ConfigJson(Vec<(&'static str, Member)>),
}

#[derive(Debug, Clone)]
enum Member {
    Auths(Vec<Entry>),
    /// Any other JSON value, as text.
    Value(&'static str),
}

#[derive(Debug, Clone)]
struct Entry {
    key: Slot<KeyAim>,
    /// Some characters of the key written as `\u` escapes.
    escaped: bool,
    /// The entry's JSON text.
    value: String,
}

#[derive(Debug, Clone)]
enum Ending {
    /// The document, then this text.
    Whole(&'static str),
    /// The document cut short at a byte.
    Cut(Index),
}

fn document(legacy: bool) -> BoxedStrategy<Document> {
    let entries = prop::collection::vec(
        (key_slot(), prop::bool::weighted(0.15), entry()).prop_map(|(key, escaped, value)| Entry {
            key,
            escaped,
            value,
        }),
        0..4,
    );
    let shape = if legacy {
        entries.prop_map(Shape::Legacy).boxed()
    } else {
        let name = prop_oneof![
            8 => Just("auths"),
            1 => select(&["Auths", "AUTHS", "authſ", "auth", "credsStore"][..]),
        ];
        let member = (name, entries.prop_map(Member::Auths));
        let other = (
            select(&["HttpHeaders", "httpheaders", "auths", "credHelpers"][..]),
            select(
                &[
                    "null",
                    "{}",
                    "{\"X-A\":\"b\"}",
                    "{\"X-A\":null}",
                    "{\"X-A\":1}",
                    "{\"X-A\":[\"b\"]}",
                    "[]",
                    "\"x\"",
                ][..],
            )
            .prop_map(Member::Value),
        );
        let members = prop_oneof![6 => member, 1 => other];
        prop::collection::vec(members, 0..3)
            .prop_map(Shape::ConfigJson)
            .boxed()
    };
    let ending = prop_oneof![
        20 => Just(Ending::Whole("")),
        2 => select(&[" ", "\n", "\t\r\n"][..]).prop_map(Ending::Whole),
        1 => select(&["x", "}", "{", ","][..]).prop_map(Ending::Whole),
        1 => any::<Index>().prop_map(Ending::Cut),
    ];
    (shape, ending)
        .prop_map(|(shape, ending)| Document { shape, ending })
        .boxed()
}

impl Document {
    fn render(&self, world: &[Registry]) -> String {
        let auths = |entries: &[Entry]| {
            let members: Vec<(String, String)> = entries
                .iter()
                .map(|entry| {
                    (
                        json_key(&entry.key.render(world), entry.escaped),
                        entry.value.clone(),
                    )
                })
                .collect();
            object(&members)
        };
        let text = match &self.shape {
            Shape::Legacy(entries) => auths(entries),
            Shape::ConfigJson(members) => {
                let members: Vec<(String, String)> = members
                    .iter()
                    .map(|(name, member)| {
                        let value = match member {
                            Member::Auths(entries) => auths(entries),
                            Member::Value(value) => (*value).to_owned(),
                        };
                        (quote(name), value)
                    })
                    .collect();
                object(&members)
            }
        };
        match &self.ending {
            Ending::Whole(trailer) => format!("{text}{trailer}"),
            Ending::Cut(index) => text[..boundary(&text, index)].to_owned(),
        }
    }
}

fn object(members: &[(String, String)]) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(name, value)| format!("{name}:{value}"))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn quote(text: &str) -> String {
    Value::from(text).to_string()
}

/// A registry key as JSON text: plainly quoted, or with some characters `\u`-escaped.
fn json_key(key: &str, escaped: bool) -> String {
    if !escaped {
        return quote(key);
    }
    let text: String = key
        .chars()
        .map(|c| match c {
            'a' | '.' | '/' | '*' => format!("\\u{:04x}", c as u32),
            '"' => "\\\"".to_owned(),
            '\\' => "\\\\".to_owned(),
            c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32),
            c => c.to_string(),
        })
        .collect();
    format!("\"{text}\"")
}

/// Members of an `auths` entry, by every spelling Go's case-insensitive matching accepts.
const ENTRY_FIELDS: &[&str] = &[
    "username",
    "password",
    "email",
    "auth",
    "auth",
    "auth",
    "Username",
    "PASSWORD",
    "Auth",
    "AUTH",
    "uſername",
    "paſſword",
    "identitytoken",
    "serveraddress",
];

/// An `auths` entry as JSON text: mostly members of the right type (an `auth` mostly valid),
/// sometimes a member of a wrong type, an escape, or an entry that is not an object.
fn entry() -> BoxedStrategy<String> {
    let text = prop_oneof![
        3 => regex("[a-z]{0,5}"),
        1 => select(&["u:p", "", "é"][..]).prop_map(str::to_owned),
    ];
    let member = (select(ENTRY_FIELDS), auth_value(), text).prop_map(|(name, auth, text)| {
        let value = if name.eq_ignore_ascii_case("auth") {
            auth
        } else {
            text
        };
        (quote(name), quote(&value))
    });
    let odd_member = (
        select(ENTRY_FIELDS),
        select(
            &[
                "null",
                "1",
                "-0.5e3",
                "true",
                "[]",
                "[\"u\"]",
                "{}",
                "\"dTpw\\n\"",
                "\"dTpw\\r\\n\"",
                "\"dTp\\u0077\"",
                "\"\\u0000\"",
                "\"\\ud800\"",
            ][..],
        ),
    )
        .prop_map(|(name, value)| (quote(name), value.to_owned()));
    let members = prop::collection::vec(prop_oneof![12 => member, 1 => odd_member], 0..3);
    prop_oneof![
        12 => members.prop_map(|members| object(&members)),
        1 => select(&["null", "1", "\"x\"", "[]", "true"][..]).prop_map(str::to_owned),
    ]
    .boxed()
}

/// An `auth` value: base64 of `user:pass`, padded or not, mostly valid, now and then broken in
/// one of the ways Go cares about.
fn auth_value() -> BoxedStrategy<String> {
    let credentials = select(&["u:p", "user:pass", "u:", ":", "ü:ß", "a:b:c", "nocolon", ""][..]);
    let variant = prop_oneof![
        16 => 0usize..4,
        1 => 4usize..10,
    ];
    (credentials, variant, any::<Index>())
        .prop_map(|(text, variant, at)| {
            let padded = BASE64.encode(text);
            let raw = BASE64_RAW.encode(text);
            let mut chars: Vec<char> = padded.chars().collect();
            let position = at.index(chars.len() + 1);
            match variant {
                0 | 1 => padded,
                2 => raw,
                3 => {
                    chars.insert(position, '\n');
                    chars.into_iter().collect()
                }
                4 => {
                    chars.insert(position, ' ');
                    chars.into_iter().collect()
                }
                5 => padded.replace('+', "-").replace('/', "_") + "-",
                6 => format!("{raw}="),
                7 => format!("{padded} "),
                // Non-zero padding bits: the last character before the padding changed.
                8 => match padded.find('=') {
                    Some(i) if i > 0 => format!("{}B{}", &padded[..i - 1], &padded[i..]),
                    _ => padded,
                },
                _ => format!("{padded}\r"),
            }
        })
        .boxed()
}
