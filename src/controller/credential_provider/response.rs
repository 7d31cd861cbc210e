//! What a plugin answers: the response validated as the kubelet validates it, the minted
//! credential, and failures that never carry a token.

use super::*;

/// The exec API versions a provider may speak.
pub(super) const EXEC_API_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];

/// Most bytes read from a plugin's stdout; a longer answer is refused.
pub const MAX_STDOUT: usize = 1 << 20;

/// Most bytes of stderr kept (the last ones); the rest is read and dropped.
pub(super) const MAX_STDERR: usize = 16 << 10;

/// Characters of stderr shown in a failure reason.
pub(super) const STDERR_EXCERPT: usize = 400;

/// A run of at least this many token-like characters in stderr is redacted.
pub(super) const TOKEN_LIKE_RUN: usize = 24;

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
pub(super) fn redact_word(word: &str) -> String {
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
pub(super) struct ResponseWire {
    #[serde(default)]
    pub(super) api_version: String,
    #[serde(default)]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) cache_key_type: String,
    #[serde(default)]
    pub(super) cache_duration: Option<String>,
    #[serde(default)]
    pub(super) auth: BTreeMap<String, AuthConfig>,
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
    #[error(
        "provider {0} is not defined in the injector's CredentialProviderConfig: a ClusterPullSecret may name only a provider an admin configured (chart value credentialProviders.config)"
    )]
    NotConfigured(String),
    #[error(
        "refused: {0} of a plugin come only from the injector's CredentialProviderConfig, which admins control; a ClusterPullSecret names the provider and the images"
    )]
    OverridesRefused(String),
    #[error(
        "the plugin's answer may not be cached (cacheDuration 0): the kubelet uses such a credential for one pull, and a Secret would keep it"
    )]
    NotCacheable,
    #[error(
        "no plugin run slot became free within {0:?} (--image-credential-provider-max-concurrent)"
    )]
    Busy(Duration),
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
            PluginError::Config(_)
            | PluginError::NotConfigured(_)
            | PluginError::NoBinDir
            | PluginError::ImageNotMatched(_) => "config",
            PluginError::OverridesRefused(_) => "refused",
            PluginError::NotFound(_) | PluginError::Spawn(_) => "not_found",
            PluginError::Timeout(_) | PluginError::Busy(_) => "timeout",
            PluginError::NotCacheable => "not_cacheable",
            PluginError::OutputTooLarge => "output_too_large",
            PluginError::Exit { .. } => "exit",
            PluginError::InvalidResponse(_) => "invalid_response",
        }
    }
}
