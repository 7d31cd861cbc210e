//! Registry-credential Secrets, decoded exactly as the kubelet decodes them.
//!
//! The kubelet (`pkg/credentialprovider/secrets.MakeDockerKeyring`) reads each secret of a
//! pod's `imagePullSecrets` with Go's `encoding/json`, into `DockerConfigJSON` for
//! `kubernetes.io/dockerconfigjson` or into `DockerConfig` for the legacy
//! `kubernetes.io/dockercfg`. One decode error in one secret fails every image pull of the pod,
//! so the webhook must accept and reject exactly the documents Go does. serde_json does not
//! (member names fold case, duplicate members merge, type errors surface only at the end,
//! invalid UTF-8 is replaced, ...), hence the small Go-compatible decoder below:
//!
//! 1. `check_valid` ports Go's `checkValid` scanner: the whole payload is validated before
//!    anything is decoded, iteratively and with Go's nesting limit.
//! 2. `Decoder` then walks the valid document without recursion beyond the fixed shape of
//!    the target types, and reproduces Go's error order: a type mismatch is recorded and
//!    decoding goes on (Go's `saveError`), an error from `DockerConfigEntry.UnmarshalJSON`
//!    stops it at once.
//!
//! Only the registry keys survive. Usernames, passwords and emails are type-checked and
//! skipped without being copied; an `auth` value is unescaped into a buffer that is zeroed
//! when dropped, and its base64 is decoded as a stream that only records whether a `:` occurs.
//! Errors name registry keys and field names, never values.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// Secret type of a `~/.docker/config.json`-style pull secret.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// Data key the kubelet reads from a [`DOCKER_CONFIG_JSON_TYPE`] secret.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// Secret type of a legacy `~/.dockercfg` pull secret.
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
/// Data key the kubelet reads from a [`DOCKERCFG_TYPE`] secret.
pub const DOCKERCFG_KEY: &str = ".dockercfg";

/// Go's `encoding/json` `maxNestingDepth`.
const MAX_NESTING_DEPTH: usize = 10_000;
/// Registry keys longer than this (in bytes) are shortened when named in an error.
const MAX_KEY_IN_ERROR: usize = 256;

/// What the kubelet makes of one Secret referenced in imagePullSecrets.
///
/// `Ok(None)`: not a pull secret the kubelet reads (type/key mismatch, missing or empty data) —
/// ignored, not an error.
/// `Ok(Some(keys))`: the raw `auths` keys (deduplicated, in first-seen order), credentials
/// discarded.
/// `Err(e)`: the kubelet fails to decode it (and would then fail every pull of the pod).
pub fn registry_keys(
    secret_type: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Option<Vec<String>>, DecodeError> {
    let (format, key) = match secret_type {
        DOCKER_CONFIG_JSON_TYPE => (Format::ConfigJson, DOCKER_CONFIG_JSON_KEY),
        DOCKERCFG_TYPE => (Format::Dockercfg, DOCKERCFG_KEY),
        _ => return Ok(None),
    };
    match data.get(key) {
        Some(payload) if !payload.is_empty() => decode(format, payload).map(Some),
        _ => Ok(None),
    }
}

/// Why the kubelet cannot decode a pull secret.
///
/// Messages name registry keys (shortened past 256 bytes) and field names, never credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not well-formed JSON (Go's `json.SyntaxError`). `offset` is Go's
    /// `SyntaxError.Offset`: how many bytes had been read when the error was found.
    #[error("invalid JSON at byte {offset}: {reason}")]
    Syntax { offset: usize, reason: &'static str },
    /// A value the kubelet reads has the wrong JSON type (Go's `json.UnmarshalTypeError`).
    #[error("{location}: expected {expected}, found {found}")]
    WrongType {
        location: Location,
        expected: &'static str,
        found: JsonKind,
    },
    /// An `auth` field is not base64 (Go's `base64.CorruptInputError`); `offset` indexes the
    /// unescaped field.
    #[error("entry {registry:?}: field \"auth\": illegal base64 data at input byte {offset}")]
    AuthBase64 { registry: String, offset: usize },
    /// An `auth` field decodes to text without a `:`.
    #[error("entry {registry:?}: field \"auth\": must be formatted as base64(username:password)")]
    AuthFormat { registry: String },
}

/// Where in the document a [`DecodeError::WrongType`] was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The top-level value.
    Document,
    /// A top-level member of `.dockerconfigjson` (`auths` or `HttpHeaders`).
    Field(&'static str),
    /// A value inside `HttpHeaders`.
    HeaderValue,
    /// The entry stored under a registry key.
    Entry { registry: String },
    /// A member (`username`, `password`, `email`, `auth`) of the entry under a registry key.
    EntryField {
        registry: String,
        field: &'static str,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Document => f.write_str("top-level value"),
            Location::Field(name) => write!(f, "field {name:?}"),
            Location::HeaderValue => f.write_str("field \"HttpHeaders\": header value"),
            Location::Entry { registry } => write!(f, "entry {registry:?}"),
            Location::EntryField { registry, field } => {
                write!(f, "entry {registry:?}: field {field:?}")
            }
        }
    }
}

/// The type of a JSON value, as named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::Null => "null",
            JsonKind::Bool => "bool",
            JsonKind::Number => "number",
            JsonKind::String => "string",
            JsonKind::Array => "array",
            JsonKind::Object => "object",
        })
    }
}

#[derive(Clone, Copy)]
enum Format {
    /// `struct { Auths map[string]DockerConfigEntry; HttpHeaders map[string]string }`.
    ConfigJson,
    /// `map[string]DockerConfigEntry`.
    Dockercfg,
}

/// `json.Unmarshal(payload, &target)`, keeping only the registry keys.
fn decode(format: Format, payload: &[u8]) -> Result<Vec<String>, DecodeError> {
    check_valid(payload)?;
    let mut decoder = Decoder {
        cur: Cursor {
            data: payload,
            pos: 0,
        },
        saved: None,
    };
    let keys = match format {
        Format::ConfigJson => decoder.config_json()?,
        Format::Dockercfg => decoder.dockercfg()?,
    };
    match decoder.saved {
        Some(err) => Err(err),
        None => Ok(keys),
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding a document already known to be valid JSON.

/// Walks a validated document the way Go's `decodeState` does for our target types.
struct Decoder<'a> {
    cur: Cursor<'a>,
    /// Go's `savedError`: the first type mismatch, returned if nothing aborts later.
    saved: Option<DecodeError>,
}

impl<'a> Decoder<'a> {
    /// A value of the wrong type: Go records the first such error, skips the value and goes on.
    fn mismatch(
        &mut self,
        location: Location,
        expected: &'static str,
        found: JsonKind,
    ) -> Result<(), DecodeError> {
        self.saved.get_or_insert(DecodeError::WrongType {
            location,
            expected,
            found,
        });
        self.cur.skip_value()
    }

    /// Into `DockerConfigJSON`. A later `auths` object merges into the map an earlier one made
    /// (Go reuses a non-nil map); a later `"auths": null` resets it to nil.
    fn config_json(&mut self) -> Result<Vec<String>, DecodeError> {
        match self.cur.kind()? {
            JsonKind::Object => {}
            JsonKind::Null => return Ok(Vec::new()),
            found => {
                self.mismatch(Location::Document, "object", found)?;
                return Ok(Vec::new());
            }
        }
        let mut auths: Option<KeyList> = None;
        self.cur.begin_object()?;
        while let Some(raw_name) = self.cur.next_member()? {
            let name = unquote(raw_name);
            if fold_eq(&name, "AUTHS") {
                match self.cur.kind()? {
                    JsonKind::Object => {
                        let keys = auths.get_or_insert_with(KeyList::default);
                        self.registry_map(keys)?;
                    }
                    JsonKind::Null => {
                        self.cur.skip_value()?;
                        auths = None;
                    }
                    found => self.mismatch(Location::Field("auths"), "object", found)?,
                }
            } else if fold_eq(&name, "HTTPHEADERS") {
                self.http_headers()?;
            } else {
                self.cur.skip_value()?;
            }
        }
        Ok(auths.map(|keys| keys.order).unwrap_or_default())
    }

    /// Into `DockerConfig` (`map[string]DockerConfigEntry`), the legacy format.
    fn dockercfg(&mut self) -> Result<Vec<String>, DecodeError> {
        match self.cur.kind()? {
            JsonKind::Object => {
                let mut keys = KeyList::default();
                self.registry_map(&mut keys)?;
                Ok(keys.order)
            }
            JsonKind::Null => Ok(Vec::new()),
            found => {
                self.mismatch(Location::Document, "object", found)?;
                Ok(Vec::new())
            }
        }
    }

    /// The members of a `DockerConfig` object. Every entry is decoded, even one a later
    /// duplicate key replaces, because its `UnmarshalJSON` runs all the same.
    fn registry_map(&mut self, keys: &mut KeyList) -> Result<(), DecodeError> {
        self.cur.begin_object()?;
        while let Some(raw_key) = self.cur.next_member()? {
            let registry = unquote(raw_key);
            self.entry(&registry)?;
            keys.insert(registry);
        }
        Ok(())
    }

    /// `HttpHeaders map[string]string`: null, or an object of string (or null) values.
    fn http_headers(&mut self) -> Result<(), DecodeError> {
        match self.cur.kind()? {
            JsonKind::Object => {
                self.cur.begin_object()?;
                while self.cur.next_member()?.is_some() {
                    match self.cur.kind()? {
                        JsonKind::String | JsonKind::Null => self.cur.skip_value()?,
                        found => self.mismatch(Location::HeaderValue, "string", found)?,
                    }
                }
                Ok(())
            }
            JsonKind::Null => self.cur.skip_value(),
            found => self.mismatch(Location::Field("HttpHeaders"), "object", found),
        }
    }

    /// `DockerConfigEntry.UnmarshalJSON`: a nested `json.Unmarshal` into
    /// `dockerConfigEntryWithAuth`, then `decodeDockerConfigFieldAuth` if `auth` is non-empty.
    /// Any error here aborts the whole decode.
    fn entry(&mut self, registry: &str) -> Result<(), DecodeError> {
        match self.cur.kind()? {
            JsonKind::Object => {}
            JsonKind::Null => return self.cur.skip_value(),
            found => {
                return Err(DecodeError::WrongType {
                    location: Location::Entry {
                        registry: label(registry),
                    },
                    expected: "object",
                    found,
                });
            }
        }
        // The nested Unmarshal's own saved error: the first mismatch inside the entry.
        let mut mismatch = None;
        // Raw text of the last string given for `auth`; a null leaves it unchanged.
        let mut auth: &[u8] = &[];
        self.cur.begin_object()?;
        while let Some(raw_name) = self.cur.next_member()? {
            let name = unquote(raw_name);
            let Some(field) = ENTRY_FIELDS
                .iter()
                .find(|field| fold_eq(&name, field.folded))
            else {
                self.cur.skip_value()?;
                continue;
            };
            match self.cur.kind()? {
                JsonKind::String => {
                    let raw = self.cur.string()?;
                    if field.name == "auth" {
                        auth = raw;
                    }
                }
                JsonKind::Null => self.cur.skip_value()?,
                found => {
                    mismatch.get_or_insert(DecodeError::WrongType {
                        location: Location::EntryField {
                            registry: label(registry),
                            field: field.name,
                        },
                        expected: "string",
                        found,
                    });
                    self.cur.skip_value()?;
                }
            }
        }
        if let Some(err) = mismatch {
            return Err(err);
        }
        if auth.is_empty() {
            return Ok(());
        }
        check_auth(auth).map_err(|problem| match problem {
            AuthProblem::Base64(offset) => DecodeError::AuthBase64 {
                registry: label(registry),
                offset,
            },
            AuthProblem::NoColon => DecodeError::AuthFormat {
                registry: label(registry),
            },
        })
    }
}

struct EntryField {
    name: &'static str,
    /// The name as Go's `foldName` folds it.
    folded: &'static str,
}

/// The members of `dockerConfigEntryWithAuth`.
const ENTRY_FIELDS: [EntryField; 4] = [
    EntryField {
        name: "username",
        folded: "USERNAME",
    },
    EntryField {
        name: "password",
        folded: "PASSWORD",
    },
    EntryField {
        name: "email",
        folded: "EMAIL",
    },
    EntryField {
        name: "auth",
        folded: "AUTH",
    },
];

/// Registry keys in first-seen order, without repeats.
#[derive(Default)]
struct KeyList {
    order: Vec<String>,
    seen: HashSet<String>,
}

impl KeyList {
    fn insert(&mut self, key: String) {
        if !self.seen.contains(&key) {
            self.seen.insert(key.clone());
            self.order.push(key);
        }
    }
}

/// A registry key as named in an error: shortened so hostile keys keep messages short.
fn label(key: &str) -> String {
    if key.len() <= MAX_KEY_IN_ERROR {
        return key.to_owned();
    }
    let mut end = MAX_KEY_IN_ERROR;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &key[..end])
}

/// Whether a member name selects a struct field whose name Go folds to `folded` (upper-case
/// ASCII). Go's `foldName` upper-cases ASCII letters and maps every other rune to the smallest
/// rune of its `unicode.SimpleFold` orbit; only U+017F (ſ → S) and U+212A (Kelvin → K) land
/// in ASCII, so any other non-ASCII rune cannot match an ASCII name.
fn fold_eq(name: &str, folded: &str) -> bool {
    let mut expected = folded.chars();
    for c in name.chars() {
        let c = match c {
            '\u{17F}' => 'S',
            '\u{212A}' => 'K',
            c => c.to_ascii_uppercase(),
        };
        if expected.next() != Some(c) {
            return false;
        }
    }
    expected.next().is_none()
}

// ---------------------------------------------------------------------------------------------
// The `auth` field.

enum AuthProblem {
    Base64(usize),
    NoColon,
}

/// `decodeDockerConfigFieldAuth`: padded `base64.StdEncoding` when the trimmed field ends with
/// `=`, `RawStdEncoding` otherwise; the decoded text must contain `:`.
fn check_auth(raw: &[u8]) -> Result<(), AuthProblem> {
    // Unescaping never grows the text more than threefold (one invalid byte becomes U+FFFD),
    // so the buffer is never reallocated and no stray copy is left behind.
    let mut field = String::with_capacity(raw.len().saturating_mul(3));
    unquote_into(raw, &mut field);
    let padded = field.trim_end_matches(is_go_space).ends_with('=');
    let field = Scrubbed(field.into_bytes());
    let mut has_colon = false;
    go_base64_decode(&field.0, padded, |byte| has_colon |= byte == b':')
        .map_err(AuthProblem::Base64)?;
    if has_colon {
        Ok(())
    } else {
        Err(AuthProblem::NoColon)
    }
}

/// A buffer holding credential text, zeroed when dropped.
struct Scrubbed(Vec<u8>);

impl Drop for Scrubbed {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&mut self.0);
    }
}

/// Go's `unicode.IsSpace`, as used by `strings.TrimSpace`.
fn is_go_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{B}' | '\u{C}' | '\r' | ' ' | '\u{85}' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// Go's `(*base64.Encoding).Decode` for the standard alphabet, non-strict, with `=` padding
/// required (`padded`) or rejected. `\r` and `\n` are skipped anywhere. Each decoded byte goes
/// to `out`; the error is Go's `CorruptInputError` offset.
fn go_base64_decode(src: &[u8], padded: bool, mut out: impl FnMut(u8)) -> Result<(), usize> {
    let mut si = 0;
    while si < src.len() {
        // One `decodeQuantum`.
        let mut quantum = [0u8; 4];
        let mut len = 0;
        let mut trailing_garbage = None;
        while len < 4 {
            let Some(&c) = src.get(si) else {
                if len == 0 {
                    return Ok(());
                }
                if len == 1 || padded {
                    return Err(si - len);
                }
                break;
            };
            si += 1;
            if let Some(sextet) = base64_value(c) {
                quantum[len] = sextet;
                len += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if !padded || c != b'=' || len < 2 {
                return Err(si - 1);
            }
            if len == 2 {
                // "==" is expected; the first "=" is consumed.
                si = skip_newlines(src, si);
                match src.get(si) {
                    None => return Err(src.len()),
                    Some(b'=') => si += 1,
                    Some(_) => return Err(si - 1),
                }
            }
            si = skip_newlines(src, si);
            if si < src.len() {
                trailing_garbage = Some(si);
            }
            break;
        }
        let bits = u32::from(quantum[0]) << 18
            | u32::from(quantum[1]) << 12
            | u32::from(quantum[2]) << 6
            | u32::from(quantum[3]);
        let bytes = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        bytes.iter().take(len - 1).for_each(|&b| out(b));
        if let Some(offset) = trailing_garbage {
            return Err(offset);
        }
    }
    Ok(())
}

fn skip_newlines(src: &[u8], mut si: usize) -> usize {
    while matches!(src.get(si), Some(b'\n' | b'\r')) {
        si += 1;
    }
    si
}

fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Moving through a valid document.

/// A position in a document that [`check_valid`] accepted. Its methods rely on that, but
/// report a syntax error rather than panic should the document not be valid after all.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn malformed(&self) -> DecodeError {
        DecodeError::Syntax {
            offset: self.pos,
            reason: "malformed JSON",
        }
    }

    fn skip_space(&mut self) {
        while matches!(self.data.get(self.pos), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    /// The kind of the value that starts here (after any whitespace).
    fn kind(&mut self) -> Result<JsonKind, DecodeError> {
        self.skip_space();
        Ok(match self.data.get(self.pos) {
            Some(b'{') => JsonKind::Object,
            Some(b'[') => JsonKind::Array,
            Some(b'"') => JsonKind::String,
            Some(b't' | b'f') => JsonKind::Bool,
            Some(b'n') => JsonKind::Null,
            Some(b'-' | b'0'..=b'9') => JsonKind::Number,
            _ => return Err(self.malformed()),
        })
    }

    fn begin_object(&mut self) -> Result<(), DecodeError> {
        self.skip_space();
        if self.data.get(self.pos) != Some(&b'{') {
            return Err(self.malformed());
        }
        self.pos += 1;
        Ok(())
    }

    /// The raw name of the next member of the current object, leaving the cursor at its
    /// value; `None`, past the closing brace, when the object has no more members.
    fn next_member(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        self.skip_space();
        match self.data.get(self.pos) {
            Some(b'}') => {
                self.pos += 1;
                return Ok(None);
            }
            Some(b',') => {
                self.pos += 1;
                self.skip_space();
            }
            _ => {}
        }
        let name = self.string()?;
        self.skip_space();
        if self.data.get(self.pos) != Some(&b':') {
            return Err(self.malformed());
        }
        self.pos += 1;
        Ok(Some(name))
    }

    /// The raw text between the quotes of the string that starts here, escapes untouched.
    fn string(&mut self) -> Result<&'a [u8], DecodeError> {
        self.skip_space();
        if self.data.get(self.pos) != Some(&b'"') {
            return Err(self.malformed());
        }
        let start = self.pos + 1;
        let mut i = start;
        loop {
            let rest = self.data.get(i..).unwrap_or_default();
            let Some(n) = rest.iter().position(|&b| b == b'"' || b == b'\\') else {
                return Err(self.malformed());
            };
            i += n;
            if rest[n] == b'"' {
                self.pos = i + 1;
                return Ok(&self.data[start..i]);
            }
            i += 2; // a backslash and the character it escapes
        }
    }

    /// Moves past the value that starts here, however deeply nested, without recursion.
    fn skip_value(&mut self) -> Result<(), DecodeError> {
        let mut depth = 0usize;
        loop {
            self.skip_space();
            match self.data.get(self.pos) {
                Some(b'{' | b'[') => {
                    depth += 1;
                    self.pos += 1;
                }
                Some(b'}' | b']') => {
                    depth = depth.checked_sub(1).ok_or_else(|| self.malformed())?;
                    self.pos += 1;
                }
                Some(b',' | b':') => self.pos += 1,
                Some(b'"') => {
                    self.string()?;
                }
                Some(_) => {
                    // A number or a literal: runs until a delimiter.
                    while !matches!(
                        self.data.get(self.pos),
                        None | Some(b',' | b':' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n')
                    ) {
                        self.pos += 1;
                    }
                }
                None => return Err(self.malformed()),
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }
}

/// Go's `unquoteBytes` on the text between a string's quotes: escapes resolved, a lone or
/// mismatched surrogate escape becomes U+FFFD, and so does each byte of invalid UTF-8.
fn unquote(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    unquote_into(raw, &mut out);
    out
}

fn unquote_into(raw: &[u8], out: &mut String) {
    let mut i = 0;
    while let Some(&c) = raw.get(i) {
        if c.is_ascii() && c != b'\\' {
            out.push(char::from(c));
            i += 1;
            continue;
        }
        if c != b'\\' {
            let (ch, width) = next_char(&raw[i..]);
            out.push(ch);
            i += width;
            continue;
        }
        let (ch, width) = match raw.get(i + 1) {
            Some(b'u') => unescape_u(&raw[i..]),
            Some(b'b') => ('\u{8}', 2),
            Some(b'f') => ('\u{C}', 2),
            Some(b'n') => ('\n', 2),
            Some(b'r') => ('\r', 2),
            Some(b't') => ('\t', 2),
            Some(&other) => (char::from(other), 2),
            None => (char::REPLACEMENT_CHARACTER, 1),
        };
        out.push(ch);
        i += width;
    }
}

/// The character at the start of `bytes` and its width; U+FFFD and width 1 where the bytes
/// are not valid UTF-8 (Go's `utf8.DecodeRune`).
fn next_char(bytes: &[u8]) -> (char, usize) {
    let window = &bytes[..bytes.len().min(4)];
    let valid = match std::str::from_utf8(window) {
        Ok(text) => text,
        Err(err) => std::str::from_utf8(&window[..err.valid_up_to()]).unwrap_or_default(),
    };
    match valid.chars().next() {
        Some(ch) => (ch, ch.len_utf8()),
        None => (char::REPLACEMENT_CHARACTER, 1),
    }
}

/// A `\uXXXX` escape at the start of `s`, joined with a following `\uXXXX` when the two form
/// a surrogate pair; returns the character and how many bytes it took.
fn unescape_u(s: &[u8]) -> (char, usize) {
    let Some(first) = hex4(s) else {
        return (char::REPLACEMENT_CHARACTER, 2);
    };
    if !(0xD800..0xE000).contains(&first) {
        return (
            char::from_u32(first).unwrap_or(char::REPLACEMENT_CHARACTER),
            6,
        );
    }
    match s.get(6..).and_then(hex4) {
        Some(second) if (0xD800..0xDC00).contains(&first) && (0xDC00..0xE000).contains(&second) => {
            let code = 0x10000 + ((first - 0xD800) << 10 | (second - 0xDC00));
            (
                char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER),
                12,
            )
        }
        _ => (char::REPLACEMENT_CHARACTER, 6),
    }
}

/// Go's `getu4`: the value of a `\uXXXX` escape at the start of `s`.
fn hex4(s: &[u8]) -> Option<u32> {
    let digits = s.strip_prefix(b"\\u")?.get(..4)?;
    digits.iter().try_fold(0u32, |acc, &d| {
        char::from(d).to_digit(16).map(|v| acc * 16 + v)
    })
}

// ---------------------------------------------------------------------------------------------
// Validation: Go's `checkValid` scanner.

/// Go's `checkValid`: the scanner of `encoding/json/scanner.go`, one state per Go step
/// function, with an explicit stack so nesting costs no Rust stack.
fn check_valid(data: &[u8]) -> Result<(), DecodeError> {
    let mut scanner = Scanner {
        step: Step::BeginValue,
        stack: Vec::new(),
        end_top: false,
    };
    for (read, &c) in (1..).zip(data) {
        scanner.step(c).map_err(|reason| DecodeError::Syntax {
            offset: read,
            reason,
        })?;
    }
    // Go's `eof`: a space ends a pending number; anything else still open is truncation.
    if !scanner.end_top {
        // Whatever this step reports, the input ended early.
        let _ = scanner.step(b' ');
    }
    if scanner.end_top {
        Ok(())
    } else {
        Err(DecodeError::Syntax {
            offset: data.len(),
            reason: "unexpected end of input",
        })
    }
}

#[derive(Clone, Copy)]
enum Step {
    BeginValueOrEmpty,
    BeginValue,
    BeginStringOrEmpty,
    BeginString,
    EndValue,
    EndTop,
    InString,
    InStringEsc,
    /// Inside `\u`, with this many hex digits read.
    InStringEscU(u8),
    Neg,
    One,
    Zero,
    Dot,
    Dot0,
    E,
    ESign,
    E0,
    /// Inside `true`, `false` or `null`, with these (never zero) bytes still expected.
    Literal(&'static [u8]),
}

#[derive(Clone, Copy)]
enum Parse {
    ObjectKey,
    ObjectValue,
    ArrayValue,
}

struct Scanner {
    step: Step,
    stack: Vec<Parse>,
    end_top: bool,
}

fn is_json_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

impl Scanner {
    fn push(&mut self, parse: Parse) -> Result<(), &'static str> {
        self.stack.push(parse);
        if self.stack.len() <= MAX_NESTING_DEPTH {
            Ok(())
        } else {
            Err("exceeded max nesting depth")
        }
    }

    fn pop(&mut self) {
        self.stack.pop();
        if self.stack.is_empty() {
            self.step = Step::EndTop;
            self.end_top = true;
        } else {
            self.step = Step::EndValue;
        }
    }

    fn set_top(&mut self, parse: Parse) {
        if let Some(top) = self.stack.last_mut() {
            *top = parse;
        }
    }

    /// Feeds one byte. Where a Go step function hands the byte on to another, `state`
    /// changes and the loop goes round again; a state that keeps the byte sets `self.step`.
    fn step(&mut self, c: u8) -> Result<(), &'static str> {
        let mut state = self.step;
        loop {
            match state {
                Step::BeginValueOrEmpty | Step::BeginStringOrEmpty if is_json_space(c) => {
                    return Ok(());
                }
                Step::BeginValueOrEmpty if c == b']' => state = Step::EndValue,
                Step::BeginValueOrEmpty => state = Step::BeginValue,
                Step::BeginStringOrEmpty if c == b'}' => {
                    self.set_top(Parse::ObjectValue);
                    state = Step::EndValue;
                }
                Step::BeginStringOrEmpty => state = Step::BeginString,
                Step::BeginValue => return self.begin_value(c),
                Step::BeginString => {
                    match c {
                        b'"' => self.step = Step::InString,
                        _ if is_json_space(c) => {}
                        _ => {
                            return Err(
                                "invalid character looking for beginning of object key string",
                            );
                        }
                    }
                    return Ok(());
                }
                Step::EndValue => {
                    if self.stack.is_empty() {
                        self.step = Step::EndTop;
                        self.end_top = true;
                        state = Step::EndTop;
                    } else {
                        return self.end_value(c);
                    }
                }
                Step::EndTop if is_json_space(c) => return Ok(()),
                Step::EndTop => return Err("invalid character after top-level value"),
                Step::InString => {
                    match c {
                        b'"' => self.step = Step::EndValue,
                        b'\\' => self.step = Step::InStringEsc,
                        0..0x20 => return Err("invalid character in string literal"),
                        _ => {}
                    }
                    return Ok(());
                }
                Step::InStringEsc => {
                    self.step = match c {
                        b'b' | b'f' | b'n' | b'r' | b't' | b'\\' | b'/' | b'"' => Step::InString,
                        b'u' => Step::InStringEscU(0),
                        _ => return Err("invalid character in string escape code"),
                    };
                    return Ok(());
                }
                Step::InStringEscU(read) => {
                    if !c.is_ascii_hexdigit() {
                        return Err("invalid character in \\u hexadecimal character escape");
                    }
                    self.step = if read == 3 {
                        Step::InString
                    } else {
                        Step::InStringEscU(read + 1)
                    };
                    return Ok(());
                }
                Step::Neg => {
                    self.step = match c {
                        b'0' => Step::Zero,
                        b'1'..=b'9' => Step::One,
                        _ => return Err("invalid character in numeric literal"),
                    };
                    return Ok(());
                }
                Step::One | Step::Dot0 | Step::E0 if c.is_ascii_digit() => return Ok(()),
                Step::One => state = Step::Zero,
                Step::Zero if c == b'.' => {
                    self.step = Step::Dot;
                    return Ok(());
                }
                Step::Zero | Step::Dot0 if c == b'e' || c == b'E' => {
                    self.step = Step::E;
                    return Ok(());
                }
                Step::Zero | Step::Dot0 | Step::E0 => state = Step::EndValue,
                Step::Dot => {
                    if !c.is_ascii_digit() {
                        return Err("invalid character after decimal point in numeric literal");
                    }
                    self.step = Step::Dot0;
                    return Ok(());
                }
                Step::E if c == b'+' || c == b'-' => {
                    self.step = Step::ESign;
                    return Ok(());
                }
                Step::E => state = Step::ESign,
                Step::ESign => {
                    if !c.is_ascii_digit() {
                        return Err("invalid character in exponent of numeric literal");
                    }
                    self.step = Step::E0;
                    return Ok(());
                }
                Step::Literal(expected) => {
                    let Some(rest) = expected.strip_prefix(&[c]) else {
                        return Err("invalid character in literal true, false or null");
                    };
                    self.step = if rest.is_empty() {
                        Step::EndValue
                    } else {
                        Step::Literal(rest)
                    };
                    return Ok(());
                }
            }
        }
    }

    /// Go's `stateBeginValue`.
    fn begin_value(&mut self, c: u8) -> Result<(), &'static str> {
        self.step = match c {
            _ if is_json_space(c) => return Ok(()),
            b'{' => {
                self.step = Step::BeginStringOrEmpty;
                return self.push(Parse::ObjectKey);
            }
            b'[' => {
                self.step = Step::BeginValueOrEmpty;
                return self.push(Parse::ArrayValue);
            }
            b'"' => Step::InString,
            b'-' => Step::Neg,
            b'0' => Step::Zero,
            b'1'..=b'9' => Step::One,
            b't' => Step::Literal(b"rue"),
            b'f' => Step::Literal(b"alse"),
            b'n' => Step::Literal(b"ull"),
            _ => return Err("invalid character looking for beginning of value"),
        };
        Ok(())
    }

    /// Go's `stateEndValue` inside an object or array.
    fn end_value(&mut self, c: u8) -> Result<(), &'static str> {
        let Some(&top) = self.stack.last() else {
            return Ok(());
        };
        self.step = Step::EndValue;
        match (top, c) {
            _ if is_json_space(c) => {}
            (Parse::ObjectKey, b':') => {
                self.set_top(Parse::ObjectValue);
                self.step = Step::BeginValue;
            }
            (Parse::ObjectKey, _) => return Err("invalid character after object key"),
            (Parse::ObjectValue, b',') => {
                self.set_top(Parse::ObjectKey);
                self.step = Step::BeginString;
            }
            (Parse::ObjectValue, b'}') | (Parse::ArrayValue, b']') => self.pop(),
            (Parse::ObjectValue, _) => {
                return Err("invalid character after object key:value pair");
            }
            (Parse::ArrayValue, b',') => self.step = Step::BeginValue,
            (Parse::ArrayValue, _) => return Err("invalid character after array element"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
