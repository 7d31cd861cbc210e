//! The admin's CredentialProviderConfig as the kubelet reads it (`kubelet.config.k8s.io/v1`),
//! the environment variables a plugin may be given, and Go's duration syntax.

use super::*;

/// The config file's only apiVersion and kind.
pub(super) const CONFIG_API_VERSION: &str = "kubelet.config.k8s.io/v1";

pub(super) const CONFIG_KIND: &str = "CredentialProviderConfig";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a CredentialProviderConfig: {reason}")]
    Invalid { path: String, reason: String },
    #[error("--image-credential-provider-pass-env: {0}")]
    PassEnv(String),
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
pub(super) struct ConfigFile {
    pub(super) api_version: String,
    pub(super) kind: String,
    #[serde(default)]
    pub(super) providers: Vec<ProviderEntry>,
}

pub(super) fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Variables (and prefixes) that make a dynamic loader, a shell or a language runtime load or
/// run code: passing one to a plugin runs whatever it names with the injector's identity.
pub(super) const CODE_VARIABLES: [&str; 14] = [
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "NODE_OPTIONS",
    "NODE_PATH",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "_JAVA_OPTIONS",
];

pub(super) const CODE_VARIABLE_PREFIXES: [&str; 8] = [
    "LD_",
    "DYLD_",
    "BASH_FUNC_",
    "PYTHON",
    "PERL",
    "GCONV_",
    "GLIBC_",
    "GODEBUG",
];

/// Whether a loader, shell or interpreter acts on `name` (see [`CODE_VARIABLES`]).
pub fn acts_on_code(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    CODE_VARIABLES.contains(&upper.as_str())
        || CODE_VARIABLE_PREFIXES
            .iter()
            .any(|prefix| upper.starts_with(prefix))
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

/// The longest Go `time.Duration`, 2^63-1 ns (about 292 years).
pub(super) const GO_MAX_DURATION_SECONDS: f64 = i64::MAX as f64 / 1e9;

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
    // Go's time.Duration is an int64 of nanoseconds: the kubelet refuses anything longer.
    if total > GO_MAX_DURATION_SECONDS {
        return None;
    }
    Duration::try_from_secs_f64(total).ok()
}
