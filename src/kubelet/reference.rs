//! Container image references, parsed exactly as the kubelet and containerd
//! parse them.
//!
//! This is a hand-written port of `ParseNormalizedNamed` from
//! `github.com/distribution/reference` v0.6.0 (grammar in `regexp.go`,
//! `Parse` in `reference.go`, `splitDockerDomain` in `normalize.go`), with
//! digests validated as `github.com/opencontainers/go-digest` v1.0.0 does.
//!
//! Grammar (v0.6.0):
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain "/"] path
//! domain           := host [ ":" port ]
//! host             := domain-name | "[" [a-fA-F0-9:]+ "]"
//! domain-name      := domain-component [ "." domain-component ]*
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! port             := [0-9]+
//! path             := path-component [ "/" path-component ]*
//! path-component   := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! digest           := algorithm ":" [0-9a-fA-F]{32,}
//! algorithm        := [A-Za-z][A-Za-z0-9]* ( [-_+.] [A-Za-z][A-Za-z0-9]* )*
//! ```
//!
//! after which go-digest accepts only `sha256` (64), `sha384` (96) and
//! `sha512` (128 lowercase hex digits).
//!
//! Quirks reproduced on purpose:
//!
//! * `Parse` re-splits the normalized name with the anchored regexp
//!   `^(?:(domain)/)?(path)$`. When `splitDockerDomain` picked a first
//!   segment as the domain (it contains a `.`) that is not a valid domain but
//!   is a valid path component (`a_b.c/d`), the match has *no* domain: the
//!   domain is `""` and the path (and lookup key) is `a_b.c/d`.
//! * Only the path counts towards the 255-character limit (v0.6.0 "Exclude
//!   domain from name length check"); the domain is unbounded.
//! * A single segment is always a Docker Hub name: `localhost:5000` is
//!   `docker.io/library/localhost` with tag `5000`.
//!
//! The parser is linear in the input (the `long-input` benchmarks of benches/decision.rs
//! measure it), never recurses on it and never
//! slices inside a UTF-8 character (every split point is an ASCII byte).

use std::borrow::Cow;
use std::fmt;

#[cfg(test)]
mod tests;

/// Maximum length of the path (repository name without domain).
const PATH_MAX: usize = 255;
/// Maximum length of a tag.
const TAG_MAX: usize = 128;
/// How many characters of an input an error message may quote.
const QUOTE_MAX: usize = 64;

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const LOCALHOST: &str = "localhost";

/// A container image reference, normalized as the kubelet does
/// (`ParseNormalizedNamed`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// `Name()`: `domain + "/" + path`, or `path` when the domain is empty.
    name: String,
    /// Length of the domain prefix of `name` (0 when there is no domain).
    domain_len: usize,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why an image reference was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The input was the empty string.
    #[error("invalid reference format: empty image reference")]
    Empty,
    /// The input is exactly 64 lowercase hex characters (an image ID).
    #[error("invalid repository name {input:?}: cannot specify 64-byte hexadecimal strings")]
    HexIdentifier {
        /// The (possibly truncated) input.
        input: String,
    },
    /// The repository name contains uppercase characters.
    #[error("invalid reference format: repository name {name:?} must be lowercase")]
    NameContainsUppercase {
        /// The (possibly truncated) offending repository name.
        name: String,
    },
    /// The input does not match the reference grammar.
    #[error("invalid reference format: {input:?}")]
    InvalidFormat {
        /// The (possibly truncated) input.
        input: String,
    },
    /// The path (repository name without domain) is longer than 255 characters.
    #[error(
        "invalid reference format: repository name must not be more than 255 characters (got {len})"
    )]
    NameTooLong {
        /// Length of the path in bytes.
        len: usize,
    },
    /// The digest algorithm is well formed but not one of sha256, sha384, sha512.
    #[error("unsupported digest algorithm {algorithm:?}")]
    UnsupportedDigest {
        /// The (possibly truncated) algorithm.
        algorithm: String,
    },
    /// The digest has the wrong length or is not lowercase hex.
    #[error("invalid checksum digest format {digest:?}")]
    InvalidDigest {
        /// The (possibly truncated) digest.
        digest: String,
    },
}

impl ImageRef {
    /// Parses `image` as `ParseNormalizedNamed` from
    /// `github.com/distribution/reference` v0.6.0 does.
    pub fn parse(image: &str) -> Result<ImageRef, ReferenceError> {
        if image.is_empty() {
            // Go reports this as a plain "invalid reference format".
            return Err(ReferenceError::Empty);
        }
        if is_identifier(image) {
            return Err(ReferenceError::HexIdentifier {
                input: snippet(image),
            });
        }
        let (domain, remainder) = split_docker_domain(image);
        let remote = match remainder.find(':') {
            Some(i) => &remainder[..i],
            None => &remainder[..],
        };
        if has_upper(remote) {
            return Err(ReferenceError::NameContainsUppercase {
                name: snippet(remote),
            });
        }

        let mut full = String::with_capacity(domain.len() + 1 + remainder.len());
        full.push_str(domain);
        full.push('/');
        full.push_str(&remainder);

        let parsed = go_parse(&full).map_err(|failure| failure.into_error(image))?;
        let name_len = if parsed.domain.is_empty() {
            parsed.path.len()
        } else {
            parsed.domain.len() + 1 + parsed.path.len()
        };
        Ok(ImageRef {
            // The matched name is always a prefix of `full`.
            name: full[..name_len].to_owned(),
            domain_len: parsed.domain.len(),
            tag: parsed.tag.map(str::to_owned),
            digest: parsed.digest.map(str::to_owned),
        })
    }

    /// The registry domain (`docker.io`, `quay.io:443`, `[::1]:5000`), or
    /// `""` when the name matched without a domain (see the module docs).
    pub fn domain(&self) -> &str {
        &self.name[..self.domain_len]
    }

    /// The repository path, e.g. `library/nginx`.
    pub fn path(&self) -> &str {
        if self.domain_len == 0 {
            &self.name
        } else {
            &self.name[self.domain_len + 1..]
        }
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:...`), if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The string the kubelet looks credentials up with: `Name()`, that is
    /// `domain + "/" + path`, or just `path` when the domain is empty.
    /// No tag, no digest.
    pub fn lookup_key(&self) -> String {
        self.name.clone()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(tag) = &self.tag {
            f.write_str(":")?;
            f.write_str(tag)?;
        }
        if let Some(digest) = &self.digest {
            f.write_str("@")?;
            f.write_str(digest)?;
        }
        Ok(())
    }
}

/// Quotes at most [`QUOTE_MAX`] characters of `s`, marking a cut with `…`.
fn snippet(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// `^[a-f0-9]{64}$` (Go's `$` is end of text).
fn is_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Letters with a lowercase form since Unicode 16.0 or 17.0 but none in Unicode 15.0, the
/// version of Go's `unicode` tables (Go 1.21 to 1.26): Go's `strings.ToLower` leaves them as
/// they are. Rust's tables are newer; the parity run (tests/parity) finds the letters a later
/// Unicode adds.
const CASELESS_IN_GO: &[(char, char)] = &[
    ('\u{1C89}', '\u{1C89}'),
    ('\u{A7CB}', '\u{A7CC}'),
    ('\u{A7CE}', '\u{A7CE}'),
    ('\u{A7D2}', '\u{A7D2}'),
    ('\u{A7D4}', '\u{A7D4}'),
    ('\u{A7DA}', '\u{A7DA}'),
    ('\u{A7DC}', '\u{A7DC}'),
    ('\u{10D50}', '\u{10D65}'),
    ('\u{16EA0}', '\u{16EB8}'),
];

fn caseless_in_go(c: char) -> bool {
    CASELESS_IN_GO
        .iter()
        .any(|&(first, last)| first <= c && c <= last)
}

/// `strings.ToLower(s) != s`.
fn has_upper(s: &str) -> bool {
    if s.is_ascii() {
        return s.bytes().any(|b| b.is_ascii_uppercase());
    }
    s.chars().any(|c| {
        let mut lower = c.to_lowercase();
        !(lower.next() == Some(c) && lower.next().is_none() || caseless_in_go(c))
    })
}

/// `strings.ToLower`: Go lowercases rune by rune with simple case mappings,
/// so U+0130 (`İ`) becomes a plain `i` rather than `i` + U+0307.
fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{130}' => 'i',
            _ if caseless_in_go(c) => c,
            _ => c.to_lowercase().next().unwrap_or(c),
        })
        .collect()
}

/// `splitDockerDomain` from normalize.go.
fn split_docker_domain(name: &str) -> (&str, Cow<'_, str>) {
    let Some(slash) = name.find('/') else {
        // A single element is always a Docker Hub "familiar" name.
        return (
            DEFAULT_DOMAIN,
            Cow::Owned(format!("{OFFICIAL_REPO_PREFIX}{name}")),
        );
    };
    let (maybe_domain, maybe_remote) = (&name[..slash], &name[slash + 1..]);
    let (domain, remote) = if maybe_domain == LOCALHOST {
        (maybe_domain, maybe_remote)
    } else if maybe_domain == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN, maybe_remote)
    } else if maybe_domain.contains(['.', ':']) || has_upper(maybe_domain) {
        (maybe_domain, maybe_remote)
    } else {
        (DEFAULT_DOMAIN, name)
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        (
            domain,
            Cow::Owned(format!("{OFFICIAL_REPO_PREFIX}{remote}")),
        )
    } else {
        (domain, Cow::Borrowed(remote))
    }
}

/// The pieces `Parse` from reference.go extracts, borrowed from its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed<'a> {
    domain: &'a str,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

/// How `Parse` failed; turned into a [`ReferenceError`] quoting the user's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParseFailure {
    /// `ErrNameEmpty`.
    Empty,
    /// `ErrReferenceInvalidFormat`.
    InvalidFormat,
    /// `ErrNameContainsUppercase`.
    Uppercase,
    /// `ErrNameTooLong`, with the path length.
    TooLong(usize),
    /// `digest.ErrDigestUnsupported`.
    UnsupportedDigest,
    /// `digest.ErrDigestInvalidFormat`.
    InvalidDigest,
}

impl ParseFailure {
    fn into_error(self, input: &str) -> ReferenceError {
        match self {
            ParseFailure::Empty => ReferenceError::Empty,
            ParseFailure::InvalidFormat => ReferenceError::InvalidFormat {
                input: snippet(input),
            },
            ParseFailure::Uppercase => ReferenceError::NameContainsUppercase {
                name: snippet(input),
            },
            ParseFailure::TooLong(len) => ReferenceError::NameTooLong { len },
            ParseFailure::UnsupportedDigest => {
                let digest = input.find('@').map_or("", |i| &input[i + 1..]);
                let algorithm = digest.find(':').map_or(digest, |i| &digest[..i]);
                ReferenceError::UnsupportedDigest {
                    algorithm: snippet(algorithm),
                }
            }
            ParseFailure::InvalidDigest => {
                let digest = input.find('@').map_or("", |i| &input[i + 1..]);
                ReferenceError::InvalidDigest {
                    digest: snippet(digest),
                }
            }
        }
    }
}

/// `Parse` from reference.go (v0.6.0), for inputs that must be `Named`.
fn go_parse(s: &str) -> Result<Parsed<'_>, ParseFailure> {
    if s.is_empty() {
        return Err(ParseFailure::Empty);
    }
    let Some(parsed) = match_reference(s) else {
        if has_upper(s) && match_reference(&go_to_lower(s)).is_some() {
            return Err(ParseFailure::Uppercase);
        }
        return Err(ParseFailure::InvalidFormat);
    };
    if parsed.path.len() > PATH_MAX {
        return Err(ParseFailure::TooLong(parsed.path.len()));
    }
    if let Some(digest) = parsed.digest {
        validate_digest(digest)?;
    }
    Ok(parsed)
}

/// Matches the anchored `referenceRegexp`
/// `^(name)(?::(tag))?(?:@(digest))?$` and splits the name with
/// `anchoredNameRegexp`, as `Parse` does. The digest is only checked
/// against the grammar here, not against go-digest.
///
/// The match is unambiguous: the name and tag contain no `@` and the digest
/// starts after the first one; a tag contains neither `:` nor `/`, and a `:`
/// inside the name (a port or an IPv6 literal) is always followed by a `/`.
fn match_reference(s: &str) -> Option<Parsed<'_>> {
    let (left, digest) = match s.find('@') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    if digest.is_some_and(|d| !is_digest_pattern(d)) {
        return None;
    }
    let (name, tag) = match left.rfind(':') {
        Some(i) if !left[i + 1..].contains('/') => (&left[..i], Some(&left[i + 1..])),
        _ => (left, None),
    };
    if tag.is_some_and(|t| !is_tag(t)) {
        return None;
    }
    let (domain, path) = split_name(name)?;
    Some(Parsed {
        domain,
        path,
        tag,
        digest,
    })
}

/// The anchored name regexp `^(?:(domainAndPort)/)?(remoteName)$` with Go's
/// leftmost-first submatch semantics: the optional domain group is preferred,
/// and since a domain cannot contain `/` it can only be the first segment;
/// when that segment is not a valid domain the whole name must be a path
/// and the domain is empty.
fn split_name(name: &str) -> Option<(&str, &str)> {
    if let Some(slash) = name.find('/') {
        let (first, rest) = (&name[..slash], &name[slash + 1..]);
        if is_domain_and_port(first) && is_remote_name(rest) {
            return Some((first, rest));
        }
    }
    if is_remote_name(name) {
        Some(("", name))
    } else {
        None
    }
}

/// `domainAndPort`: `(domainName | \[[a-fA-F0-9:]+\]) (:[0-9]+)?`.
fn is_domain_and_port(s: &str) -> bool {
    let (host_ok, port) = if let Some(bracketed) = s.strip_prefix('[') {
        // The address cannot contain `]`, so the host ends at the first one.
        let Some(close) = bracketed.find(']') else {
            return false;
        };
        let address = &bracketed[..close];
        let ok = !address.is_empty() && address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        (ok, &bracketed[close + 1..])
    } else {
        // A domain name cannot contain `:`, so the host ends at the first one.
        match s.find(':') {
            Some(colon) => (is_domain_name(&s[..colon]), &s[colon..]),
            None => (is_domain_name(s), ""),
        }
    };
    host_ok
        && (port.is_empty()
            || port.strip_prefix(':').is_some_and(|digits| {
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
            }))
}

/// `domainName`: `domainNameComponent(\.domainNameComponent)*` where a
/// component is `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn is_domain_name(s: &str) -> bool {
    s.split('.').all(|component| {
        let bytes = component.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            }
            _ => false,
        }
    })
}

/// `remoteName`: `pathComponent(/pathComponent)*`.
fn is_remote_name(s: &str) -> bool {
    s.split('/').all(is_path_component)
}

/// `pathComponent`: `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn is_path_component(s: &str) -> bool {
    let bytes = s.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let run_start = i;
        while i < bytes.len() && is_alnum(bytes[i]) {
            i += 1;
        }
        if i == run_start {
            // Empty component, leading separator, trailing separator, or
            // two separators in a row.
            return false;
        }
        let Some(&b) = bytes.get(i) else {
            return true;
        };
        match b {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `tag`: `[\w][\w.-]{0,127}` (Go's `\w` is ASCII only).
fn is_tag(s: &str) -> bool {
    let bytes = s.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match bytes.split_first() {
        Some((&first, rest)) => {
            bytes.len() <= TAG_MAX
                && is_word(first)
                && rest.iter().all(|&b| is_word(b) || b == b'.' || b == b'-')
        }
        None => false,
    }
}

/// `digestPat`:
/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}`.
fn is_digest_pattern(s: &str) -> bool {
    let Some(colon) = s.find(':') else {
        return false;
    };
    let (algorithm, hex) = (&s[..colon], &s[colon + 1..]);
    is_digest_algorithm(algorithm) && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*`.
fn is_digest_algorithm(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    loop {
        if !bytes.get(i).is_some_and(u8::is_ascii_alphabetic) {
            return false;
        }
        i += 1;
        while bytes.get(i).is_some_and(u8::is_ascii_alphanumeric) {
            i += 1;
        }
        match bytes.get(i) {
            None => return true,
            Some(b'-' | b'_' | b'+' | b'.') => i += 1,
            Some(_) => return false,
        }
    }
}

/// `digest.Parse` / `Digest.Validate` from go-digest v1.0.0, with sha256,
/// sha384 and sha512 registered (as in the kubelet). `s` already matched
/// [`is_digest_pattern`].
fn validate_digest(s: &str) -> Result<(), ParseFailure> {
    let Some(colon) = s.find(':') else {
        return Err(ParseFailure::InvalidDigest);
    };
    let (algorithm, encoded) = (&s[..colon], &s[colon + 1..]);
    let hex_len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            // go-digest reports "unsupported" only when the whole digest
            // matches its (lowercase-algorithm) DigestRegexpAnchored.
            return Err(if algorithm.bytes().any(|b| b.is_ascii_uppercase()) {
                ParseFailure::InvalidDigest
            } else {
                ParseFailure::UnsupportedDigest
            });
        }
    };
    if encoded.len() == hex_len
        && encoded
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(ParseFailure::InvalidDigest)
    }
}
