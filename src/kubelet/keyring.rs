//! The kubelet's credential keyring, reproduced exactly.
//!
//! A port of `BasicDockerKeyring.Add`/`Lookup`, `isDefaultRegistryMatch`, `ParseSchemelessURL`,
//! `SplitURL` and `URLsMatch` from kubernetes/kubernetes `pkg/credentialprovider/keyring.go`,
//! with the parts of Go's standard library they rely on: `net/url.Parse`, `net.SplitHostPort`,
//! `net/netip.ParseAddr` (for bracketed hosts) and `path/filepath.Match` (Unix flavour).
//!
//! Everything works on bytes, as Go strings do: a percent-escape in an `auths` key can decode to
//! bytes that are not UTF-8, and those bytes still take part in matching. Only the strings handed
//! out for display (`index_key`, `KeyMatch`, `Explanation`) are converted, lossily.
//!
//! Go behaviour chosen where versions differ: the newest stable release, Go 1.26, with its
//! defaults for http and https URLs.
//! - A `[` in a host is allowed only as its first byte, and `[...]` must hold an IPv6 address as
//!   `netip.ParseAddr` reads it (IPv4 is refused, IPv4-mapped IPv6 is not), optionally followed
//!   by `:` and digits (Go 1.25.2 and later).
//! - Outside brackets a host holds at most one `:`, followed by digits only
//!   (`urlstrictcolons=1`, new in Go 1.26).
//! - `filepath.Match`, unlike `path.Match`, does not check the rest of a pattern once a match
//!   has failed: a malformed glob that is never reached is a plain mismatch, not an error.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::Hash;
use std::ops::Range;

#[cfg(test)]
mod tests;

/// The index key under which the kubelet keeps credentials for a Docker Hub fallback.
const DOCKER_HUB_KEY: &[u8] = b"index.docker.io";

/// An auths key normalized as the kubelet's keyring does; None when the kubelet skips it.
///
/// The key is prefixed with `https://` unless it starts with `https://` or `http://`, parsed
/// with Go's `url.Parse`, and reduced to host (with port) plus path, where a leading `/v1/` or
/// `/v2/` path loses its first three bytes and a path of `/` is dropped. Bytes that are not
/// UTF-8 (from `%80`-`%FF` escapes) are shown as U+FFFD; `Keyring` keeps the exact bytes.
pub fn index_key(raw_key: &str) -> Option<String> {
    normalize(raw_key.as_bytes()).map(|key| lossy(&key))
}

/// Why an index key does or does not match a lookup string (for the `explain` command).
///
/// The checks run in the kubelet's order (`URLsMatch`): port, number of host labels, path
/// prefix, then each host label as a glob, left to right. Labels are numbered from 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMatch {
    /// Every check passed: the kubelet returns this key's credentials.
    Matched,
    /// Go's `url.Parse` rejects `https://` + the index key or + the lookup string.
    Unparseable,
    /// The ports differ (no port is the empty string; no default port is assumed).
    PortDiffers {
        key_port: String,
        image_port: String,
    },
    /// The hosts have different numbers of `.`-separated labels.
    LabelCount { key: usize, image: usize },
    /// The key's label is a valid glob (or plain text) that the image's label does not match.
    LabelMismatch { label: usize },
    /// The key's label is a malformed glob (`filepath.ErrBadPattern`); it never matches.
    BadGlob { label: usize },
    /// The lookup's path does not start with the key's path (a plain byte prefix).
    PathPrefix { key_path: String },
}

/// Compares an index key with a lookup string the way the kubelet's `URLsMatchStr` does.
///
/// This is the straightforward port: both strings are parsed on every call and every label is
/// matched with a line-by-line port of `filepath.Match`. [`Keyring`] answers the same question
/// from keys parsed and compiled once.
pub fn match_key(index_key: &str, lookup: &str) -> KeyMatch {
    urls_match(index_key.as_bytes(), lookup.as_bytes())
}

/// `URLsMatchStr` on bytes, reporting the first failing step.
fn urls_match(index_key: &[u8], lookup: &[u8]) -> KeyMatch {
    let (Some(key), Some(image)) = (GoUrl::parse(index_key), GoUrl::parse(lookup)) else {
        return KeyMatch::Unparseable;
    };
    let (key_labels, key_port) = split_url(&key.host);
    let (image_labels, image_port) = split_url(&image.host);
    if key_port != image_port {
        return KeyMatch::PortDiffers {
            key_port: lossy(key_port),
            image_port: lossy(image_port),
        };
    }
    if key_labels.len() != image_labels.len() {
        return KeyMatch::LabelCount {
            key: key_labels.len(),
            image: image_labels.len(),
        };
    }
    if !image.path.starts_with(&key.path) {
        return KeyMatch::PathPrefix {
            key_path: lossy(&key.path),
        };
    }
    for (label, (pattern, name)) in key_labels.iter().zip(&image_labels).enumerate() {
        match go_match(pattern, name) {
            Ok(true) => {}
            Ok(false) => return KeyMatch::LabelMismatch { label },
            Err(BadPattern) => return KeyMatch::BadGlob { label },
        }
    }
    KeyMatch::Matched
}

/// `text` (an auths key or a lookup string) with the ASCII letters of its host lowercased; the
/// host is what follows an `https://` or `http://` prefix, up to the first `/`.
///
/// The kubelet compares hosts case-sensitively (`url.Parse` keeps their case, `filepath.Match`
/// is exact), so `Registry.example.com` and `registry.example.com` never match each other.
/// Matching the folded forms tells users when a key misses an image only because of case.
/// Borrowed when the host has no uppercase letter.
pub fn fold_host_case(text: &str) -> Cow<'_, str> {
    let start = ["https://", "http://"]
        .iter()
        .find(|prefix| text.starts_with(*prefix))
        .map_or(0, |prefix| prefix.len());
    let end = text[start..].find('/').map_or(text.len(), |at| start + at);
    let host = &text[start..end];
    if !host.bytes().any(|byte| byte.is_ascii_uppercase()) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(format!(
        "{}{}{}",
        &text[..start],
        host.to_ascii_lowercase(),
        &text[end..]
    ))
}

/// Whether the kubelet would fall back to Docker Hub credentials for this lookup string
/// (`isDefaultRegistryMatch`): its first `/`-separated component is non-empty and either there
/// is no `/` at all, or the component is `docker.io` or `index.docker.io`, or it contains
/// neither `.` nor `:`.
pub fn is_default_registry_match(lookup: &str) -> bool {
    let Some((first, _)) = lookup.split_once('/') else {
        return !lookup.is_empty();
    };
    !first.is_empty()
        && (first == "docker.io" || first == "index.docker.io" || !first.contains(['.', ':']))
}

/// Go's `path/filepath.Match` on Unix: whether `name` matches the shell pattern `pattern`.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    go_match(pattern.as_bytes(), name.as_bytes())
}

/// A malformed glob pattern (Go's `filepath.ErrBadPattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPattern;

impl fmt::Display for BadPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("syntax error in pattern")
    }
}

impl std::error::Error for BadPattern {}

/// The kubelet's keyring over owners of type T (the webhook uses secret identifiers).
///
/// Built once from all pull secrets of a pod, in `imagePullSecrets` order; every index key is
/// parsed and its host labels compiled at construction, so a lookup parses only the lookup
/// string and allocates nothing but its result.
///
/// The server keeps one keyring per namespace over every cached secret, so an index key is
/// laid out to take one allocation in the usual case (see [`IndexedKey`]).
#[derive(Debug, Clone)]
pub struct Keyring<T> {
    /// Distinct owners, first occurrence first.
    owners: Box<[T]>,
    /// Distinct index keys in reverse byte-wise order, the order the kubelet tries them.
    keys: Box<[IndexedKey]>,
    /// Position in `keys` of the exact key `index.docker.io`.
    docker_hub: Option<usize>,
}

/// What happened to the Docker Hub fallback during one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerHubFallback {
    /// Some index key matched, so the fallback was not considered.
    NotNeeded,
    /// No key matched, and the lookup string does not look like a Docker Hub image.
    NotDockerHub,
    /// No key matched and the lookup looks like Docker Hub, but no owner has the exact index
    /// key `index.docker.io`.
    NoDockerHubKey,
    /// The owners of the index key `index.docker.io` were returned.
    Applied,
}

/// One index key as the kubelet tried it during a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVerdict<'a, T> {
    /// The index key (lossy where its bytes are not UTF-8).
    pub index_key: &'a str,
    /// The owners that have this key, first occurrence first.
    pub owners: Vec<&'a T>,
    /// Whether and why the key matched.
    pub verdict: KeyMatch,
}

/// The whole walk of one lookup, for explanations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation<'a, T> {
    /// Every index key, in the order the kubelet tries them.
    pub keys: Vec<KeyVerdict<'a, T>>,
    /// What happened to the Docker Hub fallback.
    pub docker_hub: DockerHubFallback,
    /// The result, the same as [`Keyring::lookup`].
    pub owners: Vec<&'a T>,
}

impl<T> Explanation<'_, T> {
    /// Whether the owners came from the Docker Hub fallback.
    pub fn fallback_applied(&self) -> bool {
        self.docker_hub == DockerHubFallback::Applied
    }
}

impl<T: Clone + Eq + Hash> Keyring<T> {
    /// Builds the keyring from owners in `imagePullSecrets` order, each with its raw auths keys.
    ///
    /// Keys the kubelet skips (see [`index_key`]) are dropped. An owner given twice (equal by
    /// `Eq`) counts as one, at its first position.
    ///
    /// Linear in the number of owners and keys (a namespace's keyring holds every secret of
    /// the namespace, possibly thousands sharing one registry).
    pub fn new<I, K>(owners: I) -> Self
    where
        I: IntoIterator<Item = (T, K)>,
        K: IntoIterator,
        K::Item: AsRef<str>,
    {
        let mut distinct: Vec<T> = Vec::new();
        let mut ids_of: HashMap<T, usize> = HashMap::new();
        let mut by_key: std::collections::BTreeMap<Vec<u8>, Vec<usize>> = Default::default();
        for (owner, raw_keys) in owners {
            let (id, repeated) = match ids_of.entry(owner) {
                Entry::Occupied(known) => (*known.get(), true),
                Entry::Vacant(new) => {
                    distinct.push(new.key().clone());
                    new.insert(distinct.len() - 1);
                    (distinct.len() - 1, false)
                }
            };
            for raw in raw_keys {
                if let Some(key) = normalize(raw.as_ref().as_bytes()) {
                    let ids = by_key.entry(key).or_default();
                    // A new owner has the highest id so far: only its own previous key can
                    // have put it there. A repeated owner (rare) may be anywhere.
                    let present = if repeated {
                        ids.contains(&id)
                    } else {
                        ids.last() == Some(&id)
                    };
                    if !present {
                        ids.push(id);
                    }
                }
            }
        }
        let keys: Box<[IndexedKey]> = by_key
            .into_iter()
            .rev()
            .map(|(key, owners)| IndexedKey::new(key, owners))
            .collect();
        let docker_hub = keys.iter().position(|k| *k.key == *DOCKER_HUB_KEY);
        Keyring {
            owners: distinct.into(),
            keys,
            docker_hub,
        }
    }

    /// The owners the kubelet would return for this lookup string, in the kubelet's order,
    /// deduplicated (first occurrence kept).
    pub fn lookup(&self, lookup: &str) -> Vec<&T> {
        self.walk(lookup, |_, _, _| {}).0
    }

    /// Same walk as [`Keyring::lookup`], reporting every index key with its owners and verdict,
    /// and what happened to the Docker Hub fallback.
    pub fn explain(&self, lookup: &str) -> Explanation<'_, T> {
        let mut keys = Vec::with_capacity(self.keys.len());
        let (owners, docker_hub) = self.walk(lookup, |key, image, outcome| {
            keys.push(KeyVerdict {
                index_key: key.display(),
                owners: key.owners().iter().map(|&id| &self.owners[id]).collect(),
                verdict: key.verdict(image, outcome),
            });
        });
        Explanation {
            keys,
            docker_hub,
            owners,
        }
    }

    /// Whether the keyring has no index key at all, so that no lookup can return anything.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The index keys in the order the kubelet tries them (lossy where not UTF-8).
    pub fn index_keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.keys.iter().map(IndexedKey::display)
    }

    /// `BasicDockerKeyring.Lookup`: tries every key in order, calling `visit` with each outcome.
    fn walk<'s>(
        &'s self,
        lookup: &str,
        mut visit: impl FnMut(&'s IndexedKey, Option<&SplitUrl<'_>>, Outcome),
    ) -> (Vec<&'s T>, DockerHubFallback) {
        let image = SplitUrl::parse(lookup.as_bytes());
        let mut found = Vec::new();
        let mut seen = OwnerSet::new(self.owners.len());
        let mut matched = false;
        for key in &self.keys {
            let outcome = match &image {
                Some(image) => key.check(image),
                None => Outcome::Unparseable,
            };
            visit(key, image.as_ref(), outcome);
            if outcome == Outcome::Matched {
                matched = true;
                self.collect(key, &mut seen, &mut found);
            }
        }
        let fallback = if matched {
            DockerHubFallback::NotNeeded
        } else if !is_default_registry_match(lookup) {
            DockerHubFallback::NotDockerHub
        } else if let Some(hub) = self.docker_hub {
            self.collect(&self.keys[hub], &mut seen, &mut found);
            DockerHubFallback::Applied
        } else {
            DockerHubFallback::NoDockerHubKey
        };
        (found, fallback)
    }

    fn collect<'s>(&'s self, key: &IndexedKey, seen: &mut OwnerSet, found: &mut Vec<&'s T>) {
        for &id in key.owners() {
            if seen.insert(id) {
                found.push(&self.owners[id]);
            }
        }
    }
}

/// Owner ids already returned by a lookup; allocates only for more than 128 owners.
enum OwnerSet {
    Small(u128),
    Large(Vec<bool>),
}

impl OwnerSet {
    fn new(owners: usize) -> Self {
        if owners <= 128 {
            OwnerSet::Small(0)
        } else {
            OwnerSet::Large(vec![false; owners])
        }
    }

    /// Records `id`; true when it was not there yet.
    fn insert(&mut self, id: usize) -> bool {
        match self {
            OwnerSet::Small(bits) => {
                let bit = 1u128 << id;
                let new = *bits & bit == 0;
                *bits |= bit;
                new
            }
            OwnerSet::Large(seen) => !std::mem::replace(&mut seen[id], true),
        }
    }
}

/// One index key with its owners and its pre-parsed form.
///
/// A plain key (UTF-8, no glob, parsing back to itself) costs one allocation, its bytes:
/// the parsed parts are ranges into them and a single owner is held inline. What only unusual
/// keys need lives out of line in [`KeyExtras`].
#[derive(Debug, Clone)]
struct IndexedKey {
    key: Box<[u8]>,
    owners: Owners,
    /// None when `https://` + key does not parse: the key then never matches.
    pattern: Option<KeyPattern>,
    extras: Option<Box<KeyExtras>>,
}

/// Owner ids of one index key, first occurrence first; nearly always just one.
#[derive(Debug, Clone)]
enum Owners {
    One(usize),
    Many(Box<[usize]>),
}

/// The parts of an index key that are not needed for most keys.
#[derive(Debug, Clone, Default)]
struct KeyExtras {
    /// The key as shown, when it is not UTF-8 (invalid bytes as U+FFFD).
    display: Option<Box<str>>,
    /// Host then path as `https://` + key parses, when they are not the key's own bytes
    /// (the key's path holds an escape, a `?` or a `#`).
    parsed: Option<Box<[u8]>>,
    /// The host labels holding glob metacharacters, compiled, in label order.
    globs: Box<[LabelGlob]>,
}

/// A host label with glob metacharacters; every other label is matched by byte equality.
#[derive(Debug, Clone)]
struct LabelGlob {
    label: u32,
    glob: Glob,
}

/// An index key as `URLsMatch` reads it, parsed once: byte ranges of the parsed host then
/// path (the key itself, or `KeyExtras::parsed`).
#[derive(Debug, Clone, Copy)]
struct KeyPattern {
    /// Where the host ends and the path begins.
    path_start: u32,
    /// The host without brackets or port, as `net.SplitHostPort` leaves it.
    name_start: u32,
    name_end: u32,
    /// Where the port begins; it ends with the host ("" when there is none).
    port_start: u32,
    /// How many `.`-separated labels the name has.
    labels: u32,
}

/// A position in an index key. Keys come from Kubernetes objects, which are far smaller
/// than 4 GiB.
fn offset(position: usize) -> u32 {
    u32::try_from(position).expect("index key longer than 4 GiB")
}

impl IndexedKey {
    fn new(key: Vec<u8>, owners: Vec<usize>) -> Self {
        let mut extras = KeyExtras::default();
        if std::str::from_utf8(&key).is_err() {
            extras.display = Some(lossy(&key).into());
        }
        let pattern = SplitUrl::parse(&key).map(|parsed| {
            let (host, path) = (&*parsed.host, &*parsed.path);
            if !(key.len() == host.len() + path.len()
                && key.starts_with(host)
                && key.ends_with(path))
            {
                extras.parsed = Some([host, path].concat().into());
            }
            extras.globs = parsed
                .name()
                .split(|&b| b == b'.')
                .enumerate()
                .filter(|(_, label)| {
                    label
                        .iter()
                        .any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
                })
                .map(|(label, pattern)| LabelGlob {
                    label: offset(label),
                    glob: Glob::compile(pattern),
                })
                .collect();
            KeyPattern {
                path_start: offset(host.len()),
                name_start: offset(parsed.name.start),
                name_end: offset(parsed.name.end),
                port_start: offset(parsed.port_start),
                labels: offset(parsed.labels),
            }
        });
        let has_extras =
            extras.display.is_some() || extras.parsed.is_some() || !extras.globs.is_empty();
        IndexedKey {
            key: key.into(),
            owners: match *owners {
                [one] => Owners::One(one),
                _ => Owners::Many(owners.into()),
            },
            pattern,
            extras: has_extras.then(|| Box::new(extras)),
        }
    }

    /// The index key, lossy where it is not UTF-8.
    fn display(&self) -> &str {
        match self
            .extras
            .as_ref()
            .and_then(|extras| extras.display.as_deref())
        {
            Some(display) => display,
            // Without a display form in the extras, the key is UTF-8.
            None => std::str::from_utf8(&self.key).unwrap_or_default(),
        }
    }

    fn owners(&self) -> &[usize] {
        match &self.owners {
            Owners::One(id) => std::slice::from_ref(id),
            Owners::Many(ids) => ids,
        }
    }

    /// The parsed host then path that the pattern's ranges index.
    fn parsed(&self) -> &[u8] {
        match self.extras.as_deref() {
            Some(KeyExtras {
                parsed: Some(parsed),
                ..
            }) => parsed,
            _ => &self.key,
        }
    }

    fn globs(&self) -> &[LabelGlob] {
        self.extras.as_deref().map_or(&[], |extras| &extras.globs)
    }

    fn port(&self, pattern: &KeyPattern) -> &[u8] {
        &self.parsed()[pattern.port_start as usize..pattern.path_start as usize]
    }

    fn path(&self, pattern: &KeyPattern) -> &[u8] {
        &self.parsed()[pattern.path_start as usize..]
    }

    fn name(&self, pattern: &KeyPattern) -> &[u8] {
        &self.parsed()[pattern.name_start as usize..pattern.name_end as usize]
    }

    /// `URLsMatch`, step by step. The port and the label count, which turn most keys away,
    /// are checked inline in the lookup loop; the rest out of line.
    #[inline]
    fn check(&self, image: &SplitUrl<'_>) -> Outcome {
        let Some(pattern) = &self.pattern else {
            return Outcome::Unparseable;
        };
        if !same(self.port(pattern), image.port()) {
            return Outcome::PortDiffers;
        }
        if pattern.labels as usize != image.labels {
            return Outcome::LabelCount;
        }
        self.check_path_and_labels(pattern, image)
    }

    #[inline(never)]
    fn check_path_and_labels(&self, pattern: &KeyPattern, image: &SplitUrl<'_>) -> Outcome {
        let path = self.path(pattern);
        if !image.path.get(..path.len()).is_some_and(|p| same(p, path)) {
            return Outcome::PathPrefix;
        }
        let (name, image_name) = (self.name(pattern), image.name());
        let globs = self.globs();
        // Same label count: all labels equal exactly when the names are.
        if globs.is_empty() && same(name, image_name) {
            return Outcome::Matched;
        }
        let mut globs = globs.iter().peekable();
        let labels = name
            .split(|&b| b == b'.')
            .zip(image_name.split(|&b| b == b'.'));
        for (i, (label, image_label)) in labels.enumerate() {
            let matched = match globs.next_if(|glob| glob.label as usize == i) {
                None => same(label, image_label),
                Some(LabelGlob { glob, .. }) => match glob.matches(image_label) {
                    Ok(matched) => matched,
                    Err(BadPattern) => return Outcome::BadGlob(i),
                },
            };
            if !matched {
                return Outcome::LabelMismatch(i);
            }
        }
        Outcome::Matched
    }

    fn verdict(&self, image: Option<&SplitUrl<'_>>, outcome: Outcome) -> KeyMatch {
        let (Some(pattern), Some(image)) = (&self.pattern, image) else {
            return KeyMatch::Unparseable;
        };
        match outcome {
            Outcome::Matched => KeyMatch::Matched,
            Outcome::Unparseable => KeyMatch::Unparseable,
            Outcome::PortDiffers => KeyMatch::PortDiffers {
                key_port: lossy(self.port(pattern)),
                image_port: lossy(image.port()),
            },
            Outcome::LabelCount => KeyMatch::LabelCount {
                key: pattern.labels as usize,
                image: image.labels,
            },
            Outcome::PathPrefix => KeyMatch::PathPrefix {
                key_path: lossy(self.path(pattern)),
            },
            Outcome::LabelMismatch(label) => KeyMatch::LabelMismatch { label },
            Outcome::BadGlob(label) => KeyMatch::BadGlob { label },
        }
    }
}

/// [`KeyMatch`] without its strings, so that a lookup does not allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Matched,
    Unparseable,
    PortDiffers,
    LabelCount,
    PathPrefix,
    LabelMismatch(usize),
    BadGlob(usize),
}

/// Byte equality. Ports, labels and key paths are short, and a byte loop beats a call to the
/// C library's `memcmp` on them.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// `ParseSchemelessURL` + `SplitURL` of a lookup string (or of an index key).
struct SplitUrl<'a> {
    host: Cow<'a, [u8]>,
    path: Cow<'a, [u8]>,
    /// The host without its port, as `net.SplitHostPort` leaves it (or the whole host).
    name: Range<usize>,
    port_start: usize,
    /// How many `.`-separated labels `name` has.
    labels: usize,
}

impl<'a> SplitUrl<'a> {
    fn parse(schemeless: &'a [u8]) -> Option<Self> {
        let GoUrl { host, path } = GoUrl::parse(schemeless)?;
        let (name, port_start) = split_host_port(&host).unwrap_or((0..host.len(), host.len()));
        let labels = host[name.clone()].iter().filter(|&&b| b == b'.').count() + 1;
        Some(SplitUrl {
            host,
            path,
            name,
            port_start,
            labels,
        })
    }

    fn name(&self) -> &[u8] {
        &self.host[self.name.clone()]
    }

    fn port(&self) -> &[u8] {
        &self.host[self.port_start..]
    }
}

/// `SplitURL`: the host's `.`-separated labels and its port ("" when `SplitHostPort` fails).
fn split_url(host: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let (name, port) = match split_host_port(host) {
        Some((name, port_start)) => (&host[name], &host[port_start..]),
        None => (host, &b""[..]),
    };
    (name.split(|&b| b == b'.').collect(), port)
}

// ---------------------------------------------------------------------------------------------
// path/filepath.Match

/// The shortest chunk worth a bit-parallel search table.
const SHIFT_AND_MIN_TOKENS: usize = 16;

/// A glob compiled into the chunks `filepath.Match` walks through.
#[derive(Debug, Clone)]
struct Glob {
    chunks: Box<[TokenChunk]>,
    /// What follows the chunks (a lone `*` has no chunk at all, so it takes no allocation).
    end: GlobEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobEnd {
    /// The pattern ends after the chunks: the name must be used up.
    Exact,
    /// `*` at the end of the pattern: matches any rest without `/`.
    TrailingStar,
    /// A chunk `matchChunk` rejects: reaching it makes `Match` fail with `ErrBadPattern`.
    Malformed,
}

/// Single-character operators, possibly preceded by a `*`.
#[derive(Debug, Clone)]
struct TokenChunk {
    star: bool,
    tokens: Box<[Token]>,
    /// For long chunks: which tokens accept each ASCII byte, for a Shift-And search.
    shift_and: Option<ShiftAnd>,
}

#[derive(Debug, Clone)]
enum Token {
    /// A literal byte (possibly escaped with `\`).
    Byte(u8),
    /// `?`: any one rune but `/`.
    AnyRune,
    /// `[...]`: one rune in (or, negated, not in) the ranges.
    Class(Class),
}

#[derive(Debug, Clone)]
struct Class {
    negated: bool,
    /// Bit c set when ASCII c falls in some range.
    ascii: u128,
    ranges: Box<[(u32, u32)]>,
}

impl Glob {
    fn compile(pattern: &[u8]) -> Self {
        let mut chunks = Vec::new();
        let mut end = GlobEnd::Exact;
        let mut rest = pattern;
        while !rest.is_empty() {
            let (star, chunk, tail) = scan_chunk(rest);
            rest = tail;
            if star && chunk.is_empty() {
                end = GlobEnd::TrailingStar;
                break;
            }
            let Ok(tokens) = tokenize(chunk) else {
                // Match returns the error as soon as it reaches this chunk; nothing after it counts.
                end = GlobEnd::Malformed;
                break;
            };
            let shift_and = (tokens.len() >= SHIFT_AND_MIN_TOKENS).then(|| ShiftAnd::new(&tokens));
            chunks.push(TokenChunk {
                star,
                tokens: tokens.into(),
                shift_and,
            });
        }
        Glob {
            chunks: chunks.into(),
            end,
        }
    }

    /// `filepath.Match(pattern, name)`, with the same result and the same errors.
    fn matches(&self, mut name: &[u8]) -> Result<bool, BadPattern> {
        let ascii = name.is_ascii();
        for (i, chunk) in self.chunks.iter().enumerate() {
            let last = i + 1 == self.chunks.len() && self.end == GlobEnd::Exact;
            match chunk.find(name, last, ascii) {
                Some(rest) => name = rest,
                None => return Ok(false),
            }
        }
        match self.end {
            GlobEnd::Exact => Ok(name.is_empty()),
            GlobEnd::TrailingStar => Ok(!name.contains(&b'/')),
            GlobEnd::Malformed => Err(BadPattern),
        }
    }
}

impl TokenChunk {
    /// Where `Match` continues after this chunk: the chunk must match at the start of `name`,
    /// or, after a star, at the leftmost position up to the first `/`. The last chunk must also
    /// use up the name.
    fn find<'n>(&self, name: &'n [u8], last: bool, ascii: bool) -> Option<&'n [u8]> {
        let fits = |rest: &[u8]| !last || rest.is_empty();
        if let Some(rest) = self.match_at(name)
            && fits(rest)
        {
            return Some(rest);
        }
        if !self.star {
            return None;
        }
        // Go tries name[i+1:] for every i before the first '/'.
        let bound = name.iter().position(|&b| b == b'/').unwrap_or(name.len());
        if ascii {
            // Every token then consumes exactly one byte.
            let len = self.tokens.len();
            if last {
                let start = name.len().checked_sub(len)?;
                return (start <= bound && self.match_at(&name[start..]).is_some())
                    .then(|| &name[name.len()..]);
            }
            if let Some(table) = &self.shift_and {
                return table
                    .leftmost(name, len, bound)
                    .map(|start| &name[start + len..]);
            }
        }
        (1..=bound).find_map(|start| self.match_at(&name[start..]).filter(|rest| fits(rest)))
    }

    /// The rest of `s` after the tokens matched its start.
    fn match_at<'n>(&self, mut s: &'n [u8]) -> Option<&'n [u8]> {
        for token in &self.tokens {
            s = &s[token.accept(s)?..];
        }
        Some(s)
    }
}

impl Token {
    /// How many bytes of `s` the token consumes when it matches the start of `s`.
    fn accept(&self, s: &[u8]) -> Option<usize> {
        let &first = s.first()?;
        match self {
            Token::Byte(b) => (first == *b).then_some(1),
            Token::AnyRune => (first != b'/').then(|| decode_rune(s).1),
            Token::Class(class) => {
                let (rune, len) = decode_rune(s);
                class.accepts(rune).then_some(len)
            }
        }
    }
}

impl Class {
    fn accepts(&self, rune: u32) -> bool {
        let in_ranges = if rune < 128 {
            self.ascii & (1u128 << rune) != 0
        } else {
            self.ranges.iter().any(|&(lo, hi)| lo <= rune && rune <= hi)
        };
        in_ranges != self.negated
    }
}

/// Bit-parallel search of a long chunk in an ASCII name, where each token is one byte.
#[derive(Debug, Clone)]
struct ShiftAnd {
    words: usize,
    /// `table[c * words + w]`: bit j of word w is set when token 64w+j accepts byte c.
    table: Box<[u64]>,
}

impl ShiftAnd {
    fn new(tokens: &[Token]) -> Self {
        let words = tokens.len().div_ceil(64);
        let mut table = vec![0u64; 128 * words];
        for (t, token) in tokens.iter().enumerate() {
            for c in 0..128u8 {
                if token.accept(&[c]).is_some() {
                    table[usize::from(c) * words + t / 64] |= 1 << (t % 64);
                }
            }
        }
        ShiftAnd {
            words,
            table: table.into(),
        }
    }

    /// The leftmost start, at most `bound`, where all `len` tokens match the ASCII `name`.
    fn leftmost(&self, name: &[u8], len: usize, bound: usize) -> Option<usize> {
        let mut inline = [0u64; 8];
        let mut heap = Vec::new();
        let state: &mut [u64] = if self.words <= inline.len() {
            &mut inline[..self.words]
        } else {
            heap.resize(self.words, 0);
            &mut heap
        };
        let (last_word, last_bit) = ((len - 1) / 64, (len - 1) % 64);
        for (end, &c) in name.iter().enumerate().take(bound + len) {
            let row = &self.table[usize::from(c) * self.words..][..self.words];
            let mut carry = 1u64;
            for (word, &accept) in state.iter_mut().zip(row) {
                let next = (*word << 1 | carry) & accept;
                carry = *word >> 63;
                *word = next;
            }
            if state[last_word] >> last_bit & 1 == 1 {
                return Some(end + 1 - len);
            }
        }
        None
    }
}

/// Go's `filepath.Match`, line by line (the reference for [`Glob`]).
fn go_match(mut pattern: &[u8], mut name: &[u8]) -> Result<bool, BadPattern> {
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return Ok(!name.contains(&b'/'));
        }
        if let Some(t) = match_chunk(chunk, name)?
            && (t.is_empty() || !pattern.is_empty())
        {
            name = t;
            continue;
        }
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                if let Some(t) = match_chunk(chunk, &name[i + 1..])? {
                    if pattern.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'pattern;
                }
                i += 1;
            }
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// `scanChunk`: the stars and the next run of single-character operators.
fn scan_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    let mut pattern = pattern;
    while let Some(rest) = pattern.strip_prefix(b"*") {
        pattern = rest;
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => return (star, &pattern[..i], &pattern[i..]),
            _ => {}
        }
        i += 1;
    }
    (star, pattern, &[])
}

/// `matchChunk`: the rest of `s` after `chunk` matched its start. Like Go, it reads the whole
/// chunk even after a mismatch, so a malformed chunk is an error whatever `s` is.
fn match_chunk<'s>(mut chunk: &[u8], mut s: &'s [u8]) -> Result<Option<&'s [u8]>, BadPattern> {
    let mut failed = false;
    while !chunk.is_empty() {
        let (token, rest) = next_token(chunk)?;
        chunk = rest;
        if !failed {
            match token.accept(s) {
                Some(len) => s = &s[len..],
                None => failed = true,
            }
        }
    }
    Ok((!failed).then_some(s))
}

fn tokenize(mut chunk: &[u8]) -> Result<Vec<Token>, BadPattern> {
    let mut tokens = Vec::new();
    while !chunk.is_empty() {
        let (token, rest) = next_token(chunk)?;
        tokens.push(token);
        chunk = rest;
    }
    Ok(tokens)
}

/// The first single-character operator of a non-empty chunk, as `matchChunk` reads it.
fn next_token(chunk: &[u8]) -> Result<(Token, &[u8]), BadPattern> {
    match chunk {
        [b'[', rest @ ..] => parse_class(rest),
        [b'?', rest @ ..] => Ok((Token::AnyRune, rest)),
        [b'\\', c, rest @ ..] => Ok((Token::Byte(*c), rest)),
        [b'\\'] => Err(BadPattern),
        [c, rest @ ..] => Ok((Token::Byte(*c), rest)),
        [] => Err(BadPattern),
    }
}

/// The inside of `[...]` up to and including its `]`.
fn parse_class(mut chunk: &[u8]) -> Result<(Token, &[u8]), BadPattern> {
    let negated = chunk.first() == Some(&b'^');
    if negated {
        chunk = &chunk[1..];
    }
    let mut ranges = Vec::new();
    loop {
        if chunk.first() == Some(&b']') && !ranges.is_empty() {
            chunk = &chunk[1..];
            break;
        }
        let (lo, rest) = get_esc(chunk)?;
        chunk = rest;
        let mut hi = lo;
        if let Some(rest) = chunk.strip_prefix(b"-") {
            (hi, chunk) = get_esc(rest)?;
        }
        ranges.push((lo, hi));
    }
    let mut ascii = 0u128;
    for c in 0..128u32 {
        if ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) {
            ascii |= 1 << c;
        }
    }
    let class = Class {
        negated,
        ascii,
        ranges: ranges.into(),
    };
    Ok((Token::Class(class), chunk))
}

/// `getEsc`: a possibly escaped rune of a character class, which must not end the chunk.
fn get_esc(chunk: &[u8]) -> Result<(u32, &[u8]), BadPattern> {
    let chunk = match chunk {
        [] | [b'-' | b']', ..] => return Err(BadPattern),
        [b'\\', rest @ ..] => rest,
        _ => chunk,
    };
    let (rune, len) = decode_rune(chunk);
    let rest = &chunk[len..];
    if len == 0 || (rune == 0xFFFD && len == 1) || rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((rune, rest))
}

/// `utf8.DecodeRuneInString`: (U+FFFD, 1) for an invalid byte, (U+FFFD, 0) for no input.
fn decode_rune(s: &[u8]) -> (u32, usize) {
    match s.first() {
        None => (0xFFFD, 0),
        Some(&b) if b < 0x80 => (u32::from(b), 1),
        Some(_) => {
            let head = &s[..s.len().min(4)];
            match head
                .utf8_chunks()
                .next()
                .and_then(|c| c.valid().chars().next())
            {
                Some(c) => (u32::from(c), c.len_utf8()),
                None => (0xFFFD, 1),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// net/url.Parse

/// `url.Parse("https://" + rest)` reduced to what the keyring reads: the host (with its port)
/// and the unescaped path. `parse` returns None where Go returns an error.
struct GoUrl<'a> {
    host: Cow<'a, [u8]>,
    path: Cow<'a, [u8]>,
}

impl<'a> GoUrl<'a> {
    fn parse(rest: &'a [u8]) -> Option<Self> {
        let (url, fragment) = cut(rest, b'#');
        if url.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return None;
        }
        if let Some(fragment) = fragment {
            unescape(fragment, Mode::Fragment)?;
        }
        let (url, _query) = cut(url, b'?');
        let (authority, path) = match url.iter().position(|&b| b == b'/') {
            Some(slash) => url.split_at(slash),
            None => (url, &b""[..]),
        };
        Some(GoUrl {
            host: parse_authority(authority)?,
            path: unescape(path, Mode::Path)?,
        })
    }
}

/// `strings.Cut` on a byte.
fn cut(s: &[u8], sep: u8) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&b| b == sep) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// `parseAuthority`: the host of `[userinfo@]host[:port]`, with the user info checked.
fn parse_authority(authority: &[u8]) -> Option<Cow<'_, [u8]>> {
    let Some(at) = authority.iter().rposition(|&b| b == b'@') else {
        return parse_host(authority);
    };
    let host = parse_host(&authority[at + 1..])?;
    let userinfo = &authority[..at];
    let valid = userinfo
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b));
    if !valid {
        return None;
    }
    unescape(userinfo, Mode::UserPassword)?;
    Some(host)
}

/// `parseHost` of Go 1.26 for an http(s) URL.
fn parse_host(host: &[u8]) -> Option<Cow<'_, [u8]>> {
    match host.iter().rposition(|&b| b == b'[') {
        Some(0) => parse_ip_literal(host),
        Some(_) => None,
        None => {
            // urlstrictcolons: the port starts at the first colon.
            if let Some(colon) = host.iter().position(|&b| b == b':')
                && !valid_optional_port(&host[colon..])
            {
                return None;
            }
            unescape(host, Mode::Host)
        }
    }
}

/// A host starting with `[`: an IPv6 literal with an optional zone and port.
fn parse_ip_literal(host: &[u8]) -> Option<Cow<'_, [u8]>> {
    let close = host.iter().rposition(|&b| b == b']')?;
    let port = &host[close + 1..];
    if !valid_optional_port(port) {
        return None;
    }
    let inner = &host[1..close];
    let address = match find(inner, b"%25") {
        Some(zone) => {
            let mut address = unescape(&inner[..zone], Mode::Host)?.into_owned();
            address.extend_from_slice(&unescape(&inner[zone..], Mode::Zone)?);
            Cow::Owned(address)
        }
        None => unescape(inner, Mode::Host)?,
    };
    if !is_ipv6_literal(&address) {
        return None;
    }
    Some(match address {
        Cow::Borrowed(_) => Cow::Borrowed(host),
        Cow::Owned(address) => Cow::Owned([&b"["[..], &address, b"]", port].concat()),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `validOptionalPort`: empty, or `:` followed by digits only.
fn valid_optional_port(port: &[u8]) -> bool {
    match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// The part of a URL being unescaped, as far as `unescape` treats them differently.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    Zone,
    UserPassword,
    Fragment,
}

/// `unescape`: decodes `%XX`, refusing malformed escapes and, in hosts, bytes a host cannot hold.
fn unescape(s: &[u8], mode: Mode) -> Option<Cow<'_, [u8]>> {
    let in_host = matches!(mode, Mode::Host | Mode::Zone);
    let mut escapes = 0;
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'%' {
            if in_host && s[i] < 0x80 && !host_byte(s[i]) {
                return None;
            }
            i += 1;
            continue;
        }
        let (Some(&hi), Some(&lo)) = (s.get(i + 1), s.get(i + 2)) else {
            return None;
        };
        let (hi, lo) = (unhex(hi)?, unhex(lo)?);
        let percent25 = &s[i..i + 3] == b"%25";
        let byte = hi << 4 | lo;
        // In a host, escapes are for non-ASCII bytes only, except %25 (RFC 6874); in a zone,
        // only for bytes a host could hold anyway, or a space.
        if mode == Mode::Host && hi < 8 && !percent25
            || mode == Mode::Zone && !percent25 && byte != b' ' && !host_byte(byte)
        {
            return None;
        }
        escapes += 1;
        i += 3;
    }
    if escapes == 0 {
        return Some(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len() - 2 * escapes);
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            // Checked above: two hex digits follow.
            out.push(unhex(s[i + 1])? << 4 | unhex(s[i + 2])?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(Cow::Owned(out))
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// An ASCII byte Go leaves unescaped in a host (`!shouldEscape(c, encodeHost)`).
fn host_byte(c: u8) -> bool {
    const HOST_BYTES: u128 = {
        let mut bits = 0u128;
        let mut c = 0u8;
        while c < 128 {
            if c.is_ascii_alphanumeric() {
                bits |= 1 << c;
            }
            c += 1;
        }
        let specials = b"!\"$&'()*+,-.:;<=>[]_~";
        let mut i = 0;
        while i < specials.len() {
            bits |= 1 << specials[i];
            i += 1;
        }
        bits
    };
    c < 128 && HOST_BYTES >> c & 1 == 1
}

// ---------------------------------------------------------------------------------------------
// net/netip.ParseAddr, as far as parseHost needs it

/// Whether `netip.ParseAddr` accepts the address and it is not IPv4.
fn is_ipv6_literal(address: &[u8]) -> bool {
    // ParseAddr picks the syntax from the first '.', ':' or '%'.
    let first = address.iter().find(|&&b| matches!(b, b'.' | b':' | b'%'));
    first == Some(&b':') && parse_ipv6(address)
}

/// `parseIPv6`: hex groups, at most one `::`, an optional trailing IPv4, an optional zone.
fn parse_ipv6(input: &[u8]) -> bool {
    let (mut s, zone) = cut(input, b'%');
    if zone == Some(&b""[..]) {
        return false;
    }
    let mut ellipsis: Option<usize> = None;
    if let Some(rest) = s.strip_prefix(b"::") {
        ellipsis = Some(0);
        s = rest;
        if s.is_empty() {
            return true;
        }
    }
    let mut filled = 0;
    while filled < 16 {
        let digits = s.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 4 {
            return false;
        }
        if s.get(digits) == Some(&b'.') {
            // An embedded IPv4 takes the last four bytes.
            if ellipsis.is_none() && filled != 12 || filled + 4 > 16 || !parse_ipv4(s) {
                return false;
            }
            s = &[];
            filled += 4;
            break;
        }
        filled += 2;
        s = &s[digits..];
        let Some(rest) = s.strip_prefix(b":") else {
            if s.is_empty() {
                break;
            }
            return false;
        };
        if rest.is_empty() {
            return false;
        }
        s = rest;
        if let Some(rest) = s.strip_prefix(b":") {
            if ellipsis.is_some() {
                return false;
            }
            ellipsis = Some(filled);
            s = rest;
            if s.is_empty() {
                break;
            }
        }
    }
    s.is_empty() && (filled == 16) == ellipsis.is_none()
}

/// `parseIPv4Fields`: four decimal fields up to 255, without leading zeros.
fn parse_ipv4(s: &[u8]) -> bool {
    let mut fields = 0;
    for field in s.split(|&b| b == b'.') {
        fields += 1;
        let valid = match field {
            [] => false,
            [b'0'] => true,
            [b'0', ..] => false,
            _ => {
                field.len() <= 3
                    && field.iter().all(u8::is_ascii_digit)
                    && field
                        .iter()
                        .fold(0u32, |v, &d| v * 10 + u32::from(d - b'0'))
                        <= 255
            }
        };
        if !valid || fields > 4 {
            return false;
        }
    }
    fields == 4
}

// ---------------------------------------------------------------------------------------------
// net.SplitHostPort

/// `net.SplitHostPort`: the host (brackets removed) and where the port starts, or None on error.
fn split_host_port(hostport: &[u8]) -> Option<(Range<usize>, usize)> {
    let colon = hostport.iter().rposition(|&b| b == b':')?;
    let (host, no_open_from, no_close_from) = if hostport[0] == b'[' {
        let end = hostport.iter().position(|&b| b == b']')?;
        if end + 1 != colon {
            return None;
        }
        (1..end, 1, end + 1)
    } else {
        if hostport[..colon].contains(&b':') {
            return None;
        }
        (0..colon, 0, 0)
    };
    if hostport[no_open_from..].contains(&b'[') || hostport[no_close_from..].contains(&b']') {
        return None;
    }
    Some((host, colon + 1))
}

// ---------------------------------------------------------------------------------------------

/// `auths` key → index key bytes (`BasicDockerKeyring.Add`).
fn normalize(raw: &[u8]) -> Option<Vec<u8>> {
    let schemeless = raw
        .strip_prefix(b"https://")
        .or_else(|| raw.strip_prefix(b"http://"))
        .unwrap_or(raw);
    let url = GoUrl::parse(schemeless)?;
    let path: &[u8] = &url.path;
    let path = if path.starts_with(b"/v1/") || path.starts_with(b"/v2/") {
        &path[3..]
    } else {
        path
    };
    let mut key = url.host.into_owned();
    if !path.is_empty() && path != b"/" {
        key.extend_from_slice(path);
    }
    Some(key)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
