//! Kubelet credential provider plugins, run the way the kubelet runs them
//! (`credentialprovider.kubelet.k8s.io`): the executable `name` from the plugin directory with
//! the provider's `args` and `env`, a `CredentialProviderRequest` for one image on stdin, a
//! `CredentialProviderResponse` on stdout whose `auth` map becomes a dockerconfigjson.
//!
//! A plugin is untrusted input: it runs in its own process group, killed as a group when it
//! outlives the timeout or writes more than [`MAX_STDOUT`]; a non-zero exit is reported with
//! its code and a short excerpt of stderr from which anything token-like is removed; an answer
//! that is not a valid response is reported by position only (a parser's message may quote the
//! token). Nothing here panics on what a plugin does, and every failure has a fixed metric
//! label ([`PluginError::label`]).
//!
//! Providers come from the kubelet's `CredentialProviderConfig` file
//! (`--image-credential-provider-config`) and from a ClusterPullSecret's `credentialProvider`
//! block: the file's provider of the same name gives defaults, the block's fields replace them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::kubelet::keyring::{KeyMatch, match_key};
use crate::state::crd::{CredentialProvider, ExecEnvVar};

/// The config file's only apiVersion and kind.
const CONFIG_API_VERSION: &str = "kubelet.config.k8s.io/v1";
const CONFIG_KIND: &str = "CredentialProviderConfig";
/// The exec API versions a provider may speak.
const EXEC_API_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];
/// Most bytes read from a plugin's stdout; a longer answer is refused.
pub const MAX_STDOUT: usize = 1 << 20;
/// Most bytes of stderr kept (the last ones); the rest is read and dropped.
const MAX_STDERR: usize = 16 << 10;
/// Characters of stderr shown in a failure reason.
const STDERR_EXCERPT: usize = 400;
/// A run of at least this many token-like characters in stderr is redacted.
const TOKEN_LIKE_RUN: usize = 24;
/// How long the kubelet lets a plugin run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a CredentialProviderConfig: {reason}")]
    Invalid { path: String, reason: String },
}

/// One provider of the kubelet's `CredentialProviderConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderEntry {
    pub name: String,
    #[serde(default)]
    pub match_images: Vec<String>,
    #[serde(default)]
    pub default_cache_duration: Option<String>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<ExecEnvVar>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    api_version: String,
    kind: String,
    #[serde(default)]
    providers: Vec<ProviderEntry>,
}

/// A provider with every field settled: what a plugin run needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Provider {
    pub name: String,
    pub match_images: Vec<String>,
    pub default_cache_duration: Duration,
    pub api_version: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The plugin directory, the providers of the config file, and the timeout of a run.
#[derive(Debug, Clone)]
pub struct Plugins {
    bin_dir: Option<PathBuf>,
    providers: BTreeMap<String, ProviderEntry>,
    timeout: Duration,
}

impl Plugins {
    pub fn new(
        bin_dir: Option<PathBuf>,
        providers: Vec<ProviderEntry>,
        timeout: Duration,
    ) -> Plugins {
        Plugins {
            bin_dir,
            providers: providers
                .into_iter()
                .map(|entry| (entry.name.clone(), entry))
                .collect(),
            timeout,
        }
    }

    /// Reads a `CredentialProviderConfig` file (YAML or JSON), as the kubelet's
    /// `--image-credential-provider-config`.
    pub fn read_config(path: &Path) -> Result<Vec<ProviderEntry>, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        parse_config(&text).map_err(|reason| ConfigError::Invalid {
            path: shown,
            reason,
        })
    }

    /// The provider a ClusterPullSecret names: the config file's entry of that name (if
    /// any) with the block's fields replacing the file's.
    pub fn resolve(&self, block: &CredentialProvider) -> Result<Provider, PluginError> {
        check_name(&block.name)?;
        let base = self.providers.get(&block.name).cloned().unwrap_or_default();
        let match_images = block.match_images.clone().unwrap_or(base.match_images);
        if match_images.is_empty() {
            return Err(PluginError::Config(format!(
                "provider {} has no matchImages (set it in the ClusterPullSecret or in the config file)",
                block.name
            )));
        }
        let duration_text = block
            .default_cache_duration
            .clone()
            .or(base.default_cache_duration)
            .ok_or_else(|| {
                PluginError::Config(format!(
                    "provider {} has no defaultCacheDuration",
                    block.name
                ))
            })?;
        let default_cache_duration = parse_go_duration(&duration_text).ok_or_else(|| {
            PluginError::Config(format!(
                "defaultCacheDuration {} is not a duration",
                crate::text::quote(&duration_text)
            ))
        })?;
        let api_version = block
            .api_version
            .clone()
            .or(base.api_version)
            .unwrap_or_default();
        if !EXEC_API_VERSIONS.contains(&api_version.as_str()) {
            return Err(PluginError::Config(format!(
                "provider {} has apiVersion {}; expected one of {}",
                block.name,
                crate::text::quote(&api_version),
                EXEC_API_VERSIONS.join(", ")
            )));
        }
        let env = block.env.clone().unwrap_or(base.env);
        Ok(Provider {
            name: block.name.clone(),
            match_images,
            default_cache_duration,
            api_version,
            args: block.args.clone().unwrap_or(base.args),
            env: env.into_iter().map(|var| (var.name, var.value)).collect(),
        })
    }

    /// Runs the provider for every image and merges the answers into one credential.
    pub async fn mint(
        &self,
        provider: &Provider,
        images: &[String],
    ) -> Result<Minted, PluginError> {
        let mut auths = BTreeMap::new();
        let mut lifetime: Option<Duration> = None;
        let mut cache_key_type = String::new();
        for image in images {
            if !provider
                .match_images
                .iter()
                .any(|pattern| match_key(pattern, image) == KeyMatch::Matched)
            {
                return Err(PluginError::ImageNotMatched(crate::text::quote(image)));
            }
            let response = self.run(provider, image).await?;
            let duration = response
                .cache_duration
                .unwrap_or(provider.default_cache_duration);
            // Zero means "no stated lifetime" (the kubelet does not cache it).
            if !duration.is_zero() {
                lifetime = Some(lifetime.map_or(duration, |l| l.min(duration)));
            }
            cache_key_type = response.cache_key_type;
            auths.extend(response.auth);
        }
        Ok(Minted {
            auths,
            lifetime,
            cache_key_type,
        })
    }

    /// One run of the plugin for one image.
    pub async fn run(&self, provider: &Provider, image: &str) -> Result<Response, PluginError> {
        let path = self.executable(&provider.name)?;
        let request = json!({
            "apiVersion": provider.api_version,
            "kind": "CredentialProviderRequest",
            "image": image,
        })
        .to_string();
        let mut child = Command::new(&path)
            .args(&provider.args)
            .envs(provider.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a timeout kills whatever it started as well.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| PluginError::Spawn(error.kind().to_string()))?;
        let group = child.id();
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(PluginError::Spawn("no pipes".to_owned()));
        };
        let exchange = async {
            // A plugin that never reads stdin must not block us: the write is part of the
            // bounded exchange, and a closed pipe is not an error of ours.
            let write = async {
                let _ = stdin.write_all(request.as_bytes()).await;
                drop(stdin);
            };
            // An overflow kills the group at once, so the wait below ends too.
            let out = async {
                let out = read_bounded(stdout, MAX_STDOUT).await;
                if out.is_err() {
                    kill_group(group);
                }
                out
            };
            let (_, out, err, status) =
                tokio::join!(write, out, read_tail(stderr, MAX_STDERR), child.wait());
            (out, err, status)
        };
        let outcome = tokio::time::timeout(self.timeout, exchange).await;
        let (stdout, stderr, status) = match outcome {
            Err(_) => {
                kill_group(group);
                return Err(PluginError::Timeout(self.timeout));
            }
            Ok((Err(Overflow), _, _)) => return Err(PluginError::OutputTooLarge),
            Ok((Ok(out), err, status)) => (out, err, status),
        };
        // Anything it left running in its group goes too.
        kill_group(group);
        let status = status.map_err(|error| PluginError::Spawn(error.kind().to_string()))?;
        if !status.success() {
            return Err(PluginError::Exit {
                code: status.code(),
                stderr: excerpt(&stderr),
            });
        }
        parse_response(&stdout, &provider.api_version)
    }

    /// The plugin's path: a plain file name inside the plugin directory.
    fn executable(&self, name: &str) -> Result<PathBuf, PluginError> {
        check_name(name)?;
        let dir = self.bin_dir.as_ref().ok_or(PluginError::NoBinDir)?;
        let path = dir.join(name);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(path),
            _ => Err(PluginError::NotFound(name.to_owned())),
        }
    }
}

fn check_name(name: &str) -> Result<(), PluginError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain {
        Ok(())
    } else {
        Err(PluginError::Config(format!(
            "provider name {} is not a plain file name",
            crate::text::quote(name)
        )))
    }
}

/// Sends SIGKILL to the plugin's process group (a no-op once it is gone).
fn kill_group(group: Option<u32>) {
    let Some(pgid) = group.and_then(|id| libc::pid_t::try_from(id).ok()) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals that process group; it has no memory
        // effects on this process.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

struct Overflow;

/// Reads to the end, keeping the last `limit` bytes (for stderr: errors come last, and a plugin
/// blocked on a full pipe would otherwise hang).
async fn read_tail(mut reader: impl AsyncRead + Unpin, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    while let Ok(n @ 1..) = reader.read(&mut buffer).await {
        kept.extend_from_slice(&buffer[..n]);
        if kept.len() > 2 * limit {
            kept.drain(..kept.len() - limit);
        }
    }
    let excess = kept.len().saturating_sub(limit);
    kept.drain(..excess);
    kept
}

/// Reads to the end, but at most `limit` bytes: more is an overflow (for stdout).
async fn read_bounded(
    mut reader: impl AsyncRead + Unpin,
    limit: usize,
) -> Result<Vec<u8>, Overflow> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return Ok(kept),
            Ok(n) => {
                if kept.len() + n > limit {
                    return Err(Overflow);
                }
                kept.extend_from_slice(&buffer[..n]);
            }
        }
    }
}

/// The end of stderr (where errors are) on one line, control characters and token-like runs
/// removed, at most [`STDERR_EXCERPT`] characters.
pub fn excerpt(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let words: Vec<String> = text.split_whitespace().map(redact_word).collect();
    let line = words.join(" ");
    let count = line.chars().count();
    if count <= STDERR_EXCERPT {
        return line;
    }
    let tail: String = line.chars().skip(count - STDERR_EXCERPT).collect();
    format!("…{tail}")
}

/// A word of stderr with runs of token-like characters (letters, digits, `+/=_.-`) of
/// [`TOKEN_LIKE_RUN`] or more replaced; such runs are how tokens, passwords and JWTs look.
fn redact_word(word: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= TOKEN_LIKE_RUN {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in word.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '.' | '-') {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            if !c.is_control() {
                out.push(c);
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

/// One registry credential of an answer.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthConfig { .. }")
    }
}

/// A plugin's answer, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub cache_key_type: String,
    pub cache_duration: Option<Duration>,
    pub auth: BTreeMap<String, AuthConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseWire {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    cache_key_type: String,
    #[serde(default)]
    cache_duration: Option<String>,
    #[serde(default)]
    auth: BTreeMap<String, AuthConfig>,
}

/// Validates a plugin's stdout as the kubelet does: kind, the provider's apiVersion, a known
/// cacheKeyType, a parseable cacheDuration.
pub fn parse_response(stdout: &[u8], api_version: &str) -> Result<Response, PluginError> {
    let wire: ResponseWire = serde_json::from_slice(stdout).map_err(|error| {
        // Position only: serde's message may quote a value of the answer.
        PluginError::InvalidResponse(format!(
            "not a CredentialProviderResponse (JSON error at line {}, column {})",
            error.line(),
            error.column()
        ))
    })?;
    if wire.kind != "CredentialProviderResponse" {
        return Err(PluginError::InvalidResponse(
            "kind is not CredentialProviderResponse".to_owned(),
        ));
    }
    if wire.api_version != api_version {
        let shown = if EXEC_API_VERSIONS.contains(&wire.api_version.as_str()) {
            wire.api_version.clone()
        } else {
            "another value".to_owned()
        };
        return Err(PluginError::InvalidResponse(format!(
            "apiVersion is {shown}, the provider is configured for {api_version}"
        )));
    }
    if !matches!(
        wire.cache_key_type.as_str(),
        "Image" | "Registry" | "Global"
    ) {
        return Err(PluginError::InvalidResponse(
            "cacheKeyType is not Image, Registry or Global".to_owned(),
        ));
    }
    let cache_duration = match &wire.cache_duration {
        None => None,
        Some(text) => Some(parse_go_duration(text).ok_or_else(|| {
            PluginError::InvalidResponse("cacheDuration is not a duration".to_owned())
        })?),
    };
    if wire.auth.is_empty() {
        return Err(PluginError::InvalidResponse(
            "the answer has no credentials (empty auth)".to_owned(),
        ));
    }
    Ok(Response {
        cache_key_type: wire.cache_key_type,
        cache_duration,
        auth: wire.auth,
    })
}

/// The credentials of every image, merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Minted {
    pub auths: BTreeMap<String, AuthConfig>,
    /// The shortest cache duration of the answers; `None` when none stated a lifetime.
    pub lifetime: Option<Duration>,
    pub cache_key_type: String,
}

impl Minted {
    /// The `.dockerconfigjson` of a `kubernetes.io/dockerconfigjson` Secret: the answer's
    /// match keys (kubelet key syntax) as `auths` keys.
    pub fn docker_config_json(&self) -> Vec<u8> {
        let engine = base64::engine::general_purpose::STANDARD;
        let auths: serde_json::Map<String, serde_json::Value> = self
            .auths
            .iter()
            .map(|(key, auth)| {
                (
                    key.clone(),
                    json!({
                        "username": auth.username,
                        "password": auth.password,
                        "auth": engine.encode(format!("{}:{}", auth.username, auth.password)),
                    }),
                )
            })
            .collect();
        json!({ "auths": auths }).to_string().into_bytes()
    }
}

/// Why a plugin gave no credential. Every message is fixed text plus what cannot carry a
/// token (an exit code, a position, a redacted stderr excerpt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("invalid provider: {0}")]
    Config(String),
    #[error("no plugin directory (--image-credential-provider-bin-dir) is configured")]
    NoBinDir,
    #[error("plugin {0} not found in the plugin directory")]
    NotFound(String),
    #[error("the plugin could not be started: {0}")]
    Spawn(String),
    #[error("image {0} does not match the provider's matchImages")]
    ImageNotMatched(String),
    #[error("the plugin did not answer within {0:?}; its process group was killed")]
    Timeout(Duration),
    #[error(
        "the plugin wrote more than {} bytes; its process group was killed",
        MAX_STDOUT
    )]
    OutputTooLarge,
    #[error("the plugin exited with {}: {stderr}", code.map_or("a signal".to_owned(), |c| format!("code {c}")))]
    Exit { code: Option<i32>, stderr: String },
    #[error("the plugin's answer is invalid: {0}")]
    InvalidResponse(String),
}

impl PluginError {
    /// The metric label of the refresh outcome.
    pub fn label(&self) -> &'static str {
        match self {
            PluginError::Config(_) | PluginError::NoBinDir | PluginError::ImageNotMatched(_) => {
                "config"
            }
            PluginError::NotFound(_) | PluginError::Spawn(_) => "not_found",
            PluginError::Timeout(_) => "timeout",
            PluginError::OutputTooLarge => "output_too_large",
            PluginError::Exit { .. } => "exit",
            PluginError::InvalidResponse(_) => "invalid_response",
        }
    }
}

/// Parses a CredentialProviderConfig (YAML or JSON).
pub fn parse_config(text: &str) -> Result<Vec<ProviderEntry>, String> {
    let file: ConfigFile = serde_yaml::from_str(text).map_err(|error| error.to_string())?;
    if file.api_version != CONFIG_API_VERSION || file.kind != CONFIG_KIND {
        return Err(format!(
            "expected apiVersion {CONFIG_API_VERSION} and kind {CONFIG_KIND}"
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for provider in &file.providers {
        check_name(&provider.name).map_err(|error| error.to_string())?;
        if !seen.insert(provider.name.clone()) {
            return Err(format!("provider {} is defined twice", provider.name));
        }
    }
    Ok(file.providers)
}

/// A Go `time.Duration` string (`12h`, `30m0s`, `1.5h`, `0s`, `250ms`); `None` when invalid
/// or negative.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let value: f64 = number.parse().ok()?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = next;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let cases = [
            ("12h", Some(43_200.0)),
            ("30m0s", Some(1800.0)),
            ("1h30m", Some(5400.0)),
            ("1.5h", Some(5400.0)),
            ("250ms", Some(0.25)),
            ("0s", Some(0.0)),
            ("0", Some(0.0)),
            ("", None),
            ("12", None),
            ("-1h", None),
            ("1d", None),
            ("h", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_go_duration(text).map(|d| d.as_secs_f64()),
                expected,
                "{text:?}"
            );
        }
    }

    const V1: &str = "credentialprovider.kubelet.k8s.io/v1";

    #[test]
    fn responses_are_validated_as_the_kubelet_does() {
        let good = br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"30m0s","auth":{"r.example":{"username":"u","password":"SECRETVALUE"}}}"#;
        let response = parse_response(good, V1).unwrap();
        assert_eq!(response.cache_key_type, "Registry");
        assert_eq!(response.cache_duration, Some(Duration::from_secs(1800)));
        assert_eq!(response.auth["r.example"].password, "SECRETVALUE");
        assert!(!format!("{response:?}").contains("SECRETVALUE"));

        let bad: [(&[u8], &str); 6] = [
            (b"not json SECRETVALUE", "line 1"),
            (
                br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","auth":"SECRETVALUE"}"#,
                "column",
            ),
            (
                br#"{"apiVersion":"SECRETVALUE","kind":"CredentialProviderResponse","cacheKeyType":"Registry","auth":{"r":{}}}"#,
                "another value",
            ),
            (
                br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","auth":{"r":{}}}"#,
                "v1beta1",
            ),
            (
                br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"SECRETVALUE","auth":{"r":{}}}"#,
                "cacheKeyType",
            ),
            (
                br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Image","cacheDuration":"SECRETVALUE","auth":{"r":{}}}"#,
                "cacheDuration",
            ),
        ];
        for (stdout, expected) in bad {
            let error = parse_response(stdout, V1).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("SECRETVALUE"), "{error}");
        }
    }

    #[test]
    fn stderr_excerpts_drop_token_like_runs() {
        let stderr = b"error: token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl rejected\x1b[31m\nno EC2 IMDS role found";
        let shown = excerpt(stderr);
        assert!(!shown.contains("eyJ"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(shown.contains("no EC2 IMDS role found"), "{shown}");
        assert!(!shown.contains('\x1b'), "{shown}");
        assert!(excerpt(&vec![b'x'; 100_000]).chars().count() <= STDERR_EXCERPT + 1);
        assert!(excerpt(&b"a ".repeat(100_000)).chars().count() <= STDERR_EXCERPT + 1);
    }

    fn block(name: &str) -> CredentialProvider {
        CredentialProvider {
            name: name.to_owned(),
            images: vec!["r.example/app".to_owned()],
            match_images: None,
            default_cache_duration: None,
            api_version: None,
            args: None,
            env: None,
        }
    }

    #[test]
    fn the_block_replaces_the_files_fields() {
        let file = parse_config(
            "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: ecr-credential-provider\n  matchImages: ['*.dkr.ecr.*.amazonaws.com']\n  defaultCacheDuration: 12h\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  args: [get-credentials]\n  env: [{name: AWS_REGION, value: us-east-1}]\n",
        )
        .unwrap();
        let plugins = Plugins::new(None, file, DEFAULT_TIMEOUT);
        let from_file = plugins.resolve(&block("ecr-credential-provider")).unwrap();
        assert_eq!(from_file.args, ["get-credentials"]);
        assert_eq!(
            from_file.default_cache_duration,
            Duration::from_secs(43_200)
        );
        assert_eq!(
            from_file.env,
            [("AWS_REGION".to_owned(), "us-east-1".to_owned())]
        );
        let mut overridden = block("ecr-credential-provider");
        overridden.default_cache_duration = Some("1h".to_owned());
        overridden.args = Some(vec![]);
        let resolved = plugins.resolve(&overridden).unwrap();
        assert_eq!(resolved.default_cache_duration, Duration::from_secs(3600));
        assert!(resolved.args.is_empty());
        assert_eq!(resolved.match_images, from_file.match_images);

        let unknown = plugins.resolve(&block("other")).unwrap_err();
        assert!(unknown.to_string().contains("matchImages"), "{unknown}");
        for name in ["..", "../bin/sh", "a/b", ""] {
            assert_eq!(
                plugins.resolve(&block(name)).unwrap_err().label(),
                "config",
                "{name}"
            );
        }
    }

    #[test]
    fn config_files_are_the_kubelets_format() {
        let json = r#"{"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig","providers":[{"name":"p","matchImages":["r.example"],"defaultCacheDuration":"1m","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}]}"#;
        assert_eq!(parse_config(json).unwrap()[0].name, "p");
        for bad in [
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: CredentialProviderConfig\n",
            "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: [{name: ../x}]\n",
            "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: [{name: p}, {name: p}]\n",
            "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: [{name: p, tokenAttributes: {}}]\n",
        ] {
            assert!(parse_config(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn minted_credentials_become_a_dockerconfigjson() {
        let minted = Minted {
            auths: BTreeMap::from([(
                "*.r.example".to_owned(),
                AuthConfig {
                    username: "u".to_owned(),
                    password: "p".to_owned(),
                },
            )]),
            lifetime: None,
            cache_key_type: "Global".to_owned(),
        };
        let parsed: serde_json::Value =
            serde_json::from_slice(&minted.docker_config_json()).unwrap();
        assert_eq!(parsed["auths"]["*.r.example"]["auth"], "dTpw");
    }
}
