//! Kubelet credential provider plugins, run the way the kubelet runs them
//! (`credentialprovider.kubelet.k8s.io`): the executable `name` from the plugin directory with
//! the provider's `args` and `env`, a `CredentialProviderRequest` for one image on stdin, a
//! `CredentialProviderResponse` on stdout whose `auth` map becomes a dockerconfigjson.
//!
//! **The admin's `CredentialProviderConfig` is the only authority on how a plugin runs.** A
//! ClusterPullSecret names one of its providers and the images to ask about; everything that
//! changes the process (`args`, `env`, `matchImages`, `apiVersion`, `defaultCacheDuration`)
//! comes from that file, as on a node, where only node admins write the kubelet's file. A
//! resource that sets any of those fields is refused ([`PluginError::OverridesRefused`]); one
//! naming a provider the file does not define is refused too. A plugin starts from an explicit
//! environment — the provider's `env` from the file, the variables the admin lists to pass
//! through (`--image-credential-provider-pass-env`, e.g. the identity variables a
//! workload-identity webhook puts in the pod) and a standard `PATH` — never the server's whole
//! environment. The file is read again at each run, so a changed ConfigMap applies without a
//! restart.
//!
//! A plugin is untrusted input: it runs in its own process group, killed as a group when it
//! outlives the timeout, writes more than [`MAX_STDOUT`], or its run is abandoned (a lost
//! leadership term); at most `max_concurrent` run at once, each with the highest OOM score so
//! that memory pressure ends a plugin rather than the webhook; a non-zero exit is reported with
//! its code and a short excerpt of stderr from which anything token-like is removed; an answer
//! that is not a valid response is reported by position only (a parser's message may quote the
//! token). Nothing here panics on what a plugin does, and every failure has a fixed metric
//! label ([`PluginError::label`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::Semaphore;

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
    /// The plugin's whole environment (nothing else is inherited).
    pub env: Vec<(String, String)>,
}

/// The `PATH` of a plugin whose provider sets none: where a plugin's helpers live in any
/// image (the kubelet's plugins inherit the node's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How many plugin runs may be under way at once, unless configured.
pub const DEFAULT_MAX_CONCURRENT: usize = 2;

/// Where the providers come from.
#[derive(Debug, Clone)]
pub enum ProviderSource {
    /// The admin's `CredentialProviderConfig` file, read at each run.
    File(PathBuf),
    /// Providers given in code (tests, and a server without a file: no provider at all).
    Fixed(Vec<ProviderEntry>),
}

impl ProviderSource {
    fn providers(&self) -> Result<BTreeMap<String, ProviderEntry>, ConfigError> {
        let entries = match self {
            ProviderSource::File(path) => Plugins::read_config(path)?,
            ProviderSource::Fixed(entries) => entries.clone(),
        };
        Ok(entries
            .into_iter()
            .map(|entry| (entry.name.clone(), entry))
            .collect())
    }
}

/// The plugin directory, the providers of the config file, what plugins may inherit, and the
/// limits of a run.
#[derive(Debug, Clone)]
pub struct Plugins {
    bin_dir: Option<PathBuf>,
    source: ProviderSource,
    /// Variables of the server's environment passed to every plugin, read once at start.
    passed: Vec<(String, String)>,
    timeout: Duration,
    slots: Arc<Semaphore>,
}

impl Plugins {
    pub fn new(bin_dir: Option<PathBuf>, source: ProviderSource, timeout: Duration) -> Plugins {
        Plugins {
            bin_dir,
            source,
            passed: Vec::new(),
            timeout,
            slots: Arc::new(Semaphore::new(DEFAULT_MAX_CONCURRENT)),
        }
    }

    /// At most `runs` plugins at once (at least one).
    pub fn with_max_concurrent(mut self, runs: usize) -> Plugins {
        self.slots = Arc::new(Semaphore::new(runs.max(1)));
        self
    }

    /// Passes the server's own values of `names` to every plugin (names the server's
    /// environment lacks are skipped). A variable that a dynamic loader, a shell or an
    /// interpreter acts on is refused: it would run code of whoever set it in every plugin.
    pub fn with_pass_env(
        mut self,
        names: &[String],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Plugins, ConfigError> {
        self.passed.clear();
        for name in names {
            if !is_variable_name(name) {
                return Err(ConfigError::PassEnv(format!(
                    "{} is not an environment variable name",
                    crate::text::quote(name)
                )));
            }
            if acts_on_code(name) {
                return Err(ConfigError::PassEnv(format!(
                    "{name} is read by a dynamic loader, a shell or an interpreter and is never passed to a plugin"
                )));
            }
            if let Some(value) = lookup(name) {
                self.passed.push((name.clone(), value));
            }
        }
        Ok(self)
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

    /// Checks the provider source as it is now (at start, so a broken file stops the server).
    pub fn check(&self) -> Result<usize, ConfigError> {
        self.source.providers().map(|providers| providers.len())
    }

    /// The provider a ClusterPullSecret names, exactly as the admin's file defines it. The
    /// resource chooses only which provider and which images.
    pub fn resolve(&self, block: &CredentialProvider) -> Result<Provider, PluginError> {
        check_name(&block.name)?;
        let overrides = block.overrides();
        if !overrides.is_empty() {
            return Err(PluginError::OverridesRefused(overrides.join(", ")));
        }
        let providers = self
            .source
            .providers()
            .map_err(|error| PluginError::Config(error.to_string()))?;
        let entry = providers
            .get(&block.name)
            .ok_or_else(|| PluginError::NotConfigured(block.name.clone()))?;
        if entry.match_images.is_empty() {
            return Err(PluginError::Config(format!(
                "provider {} of the CredentialProviderConfig has no matchImages",
                block.name
            )));
        }
        let duration_text = entry.default_cache_duration.clone().ok_or_else(|| {
            PluginError::Config(format!(
                "provider {} of the CredentialProviderConfig has no defaultCacheDuration",
                block.name
            ))
        })?;
        let default_cache_duration = parse_go_duration(&duration_text).ok_or_else(|| {
            PluginError::Config(format!(
                "defaultCacheDuration {} is not a duration",
                crate::text::quote(&duration_text)
            ))
        })?;
        let api_version = entry.api_version.clone().unwrap_or_default();
        if !EXEC_API_VERSIONS.contains(&api_version.as_str()) {
            return Err(PluginError::Config(format!(
                "provider {} has apiVersion {}; expected one of {}",
                block.name,
                crate::text::quote(&api_version),
                EXEC_API_VERSIONS.join(", ")
            )));
        }
        Ok(Provider {
            name: block.name.clone(),
            match_images: entry.match_images.clone(),
            default_cache_duration,
            api_version,
            args: entry.args.clone(),
            env: self.environment(&entry.env),
        })
    }

    /// A plugin's environment: the passed-through variables, the provider's own `env` over
    /// them (as the kubelet lays the config's over its own), and [`DEFAULT_PATH`] when neither
    /// sets `PATH`.
    fn environment(&self, provider_env: &[ExecEnvVar]) -> Vec<(String, String)> {
        let mut env: BTreeMap<String, String> = self.passed.iter().cloned().collect();
        env.extend(
            provider_env
                .iter()
                .map(|var| (var.name.clone(), var.value.clone())),
        );
        env.entry("PATH".to_owned())
            .or_insert_with(|| DEFAULT_PATH.to_owned());
        env.into_iter().collect()
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
            // The kubelet does not cache such an answer at all: it is good for one pull, and a
            // Secret would keep it indefinitely.
            if duration.is_zero() {
                return Err(PluginError::NotCacheable);
            }
            lifetime = Some(lifetime.map_or(duration, |l| l.min(duration)));
            cache_key_type = response.cache_key_type;
            auths.extend(response.auth);
        }
        Ok(Minted {
            auths,
            lifetime,
            cache_key_type,
        })
    }

    /// One run of the plugin for one image, once a run slot is free.
    pub async fn run(&self, provider: &Provider, image: &str) -> Result<Response, PluginError> {
        let path = self.executable(&provider.name)?;
        let _slot = tokio::time::timeout(self.timeout, self.slots.acquire())
            .await
            .map_err(|_| PluginError::Busy(self.timeout))?
            .map_err(|_| PluginError::Spawn("the run slots are closed".to_owned()))?;
        let request = json!({
            "apiVersion": provider.api_version,
            "kind": "CredentialProviderRequest",
            "image": image,
        })
        .to_string();
        let mut command = Command::new(&path);
        command
            .args(&provider.args)
            .env_clear()
            .envs(provider.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so whatever it starts is killed with it.
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // async-signal-safe functions (open, write, close) on a constant path.
        unsafe {
            command.pre_exec(|| {
                prefer_for_oom_kill();
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|error| PluginError::Spawn(error.kind().to_string()))?;
        // From here on, however this run ends (also dropped with a lost term), the group goes.
        let group = GroupGuard(child.id());
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
                    group.kill();
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
                group.kill();
                // Killed: the wait is short, and it leaves the group's reaping to us alone.
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                return Err(PluginError::Timeout(self.timeout));
            }
            Ok((Err(Overflow), _, _)) => return Err(PluginError::OutputTooLarge),
            Ok((Ok(out), err, status)) => (out, err, status),
        };
        drop(group);
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

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Variables (and prefixes) that make a dynamic loader, a shell or a language runtime load or
/// run code: passing one to a plugin runs whatever it names with the injector's identity.
const CODE_VARIABLES: [&str; 14] = [
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
const CODE_VARIABLE_PREFIXES: [&str; 8] = [
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

/// In the child before exec: the highest OOM score, so that when the container runs short of
/// memory the kernel ends a plugin rather than the webhook (raising it needs no privilege).
fn prefer_for_oom_kill() {
    const PATH: &[u8] = b"/proc/self/oom_score_adj\0";
    const MOST: &[u8] = b"1000";
    // SAFETY: open/write/close on a NUL-terminated constant; the result is ignored, since a
    // kernel without the file still runs the plugin.
    unsafe {
        let fd = libc::open(PATH.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, MOST.as_ptr().cast(), MOST.len());
            libc::close(fd);
        }
    }
}

/// Makes this process the parent of every orphaned descendant (as PID 1 of a container already
/// is), so that the plugin processes left behind by a killed group are reaped here rather than
/// kept as zombies. Called once by `serve` when plugins may run.
pub fn adopt_orphans() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
    let result = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, on, unused, unused, unused) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A plugin's process group: killed, and its remaining members reaped, when dropped.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn pgid(&self) -> Option<libc::pid_t> {
        self.0
            .and_then(|id| libc::pid_t::try_from(id).ok())
            .filter(|pgid| *pgid > 1)
    }

    /// SIGKILL to the whole group (a no-op once it is gone).
    fn kill(&self) {
        if let Some(pgid) = self.pgid() {
            // SAFETY: kill(2) with a negative pid signals that process group; it has no
            // memory effects on this process.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
        if let (Some(pgid), Ok(runtime)) = (self.pgid(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(reap_group(pgid));
        }
    }
}

/// How long the members of a killed group are waited for.
const REAP_FOR: Duration = Duration::from_secs(10);

/// Reaps the killed members of group `pgid` that were reparented to this process. Only that
/// group is waited for, so the runtime's own children are never taken from it; a pid stays
/// reserved while it is a group id, so no other process can be in the group.
async fn reap_group(pgid: libc::pid_t) {
    let deadline = tokio::time::Instant::now() + REAP_FOR;
    while tokio::time::Instant::now() < deadline {
        // SAFETY: waitpid with WNOHANG on a process group writes only the status integer.
        let reaped = unsafe {
            let mut status = 0;
            libc::waitpid(-pgid, &mut status, libc::WNOHANG)
        };
        match reaped {
            // ECHILD: no member of the group is a child of ours any more.
            -1 => return,
            // Members left that have not died yet.
            0 => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => {}
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
const GO_MAX_DURATION_SECONDS: f64 = i64::MAX as f64 / 1e9;

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

    const ECR_CONFIG: &str = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: ecr-credential-provider\n  matchImages: ['*.dkr.ecr.*.amazonaws.com']\n  defaultCacheDuration: 12h\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  args: [get-credentials]\n  env: [{name: AWS_REGION, value: us-east-1}, {name: PATH, value: /opt/bin}]\n";

    fn ecr_plugins() -> Plugins {
        Plugins::new(
            None,
            ProviderSource::Fixed(parse_config(ECR_CONFIG).unwrap()),
            DEFAULT_TIMEOUT,
        )
    }

    #[test]
    fn providers_run_exactly_as_the_admins_file_says() {
        let plugins = ecr_plugins()
            .with_pass_env(
                &[
                    "AWS_ROLE_ARN".to_owned(),
                    "AWS_REGION".to_owned(),
                    "UNSET".to_owned(),
                ],
                |name| (name != "UNSET").then(|| format!("from-server-{name}")),
            )
            .unwrap();
        let resolved = plugins.resolve(&block("ecr-credential-provider")).unwrap();
        assert_eq!(resolved.args, ["get-credentials"]);
        assert_eq!(resolved.default_cache_duration, Duration::from_secs(43_200));
        assert_eq!(resolved.match_images, ["*.dkr.ecr.*.amazonaws.com"]);
        // The file's env over the passed-through variables; nothing else of the server's.
        assert_eq!(
            resolved.env,
            [
                ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
                (
                    "AWS_ROLE_ARN".to_owned(),
                    "from-server-AWS_ROLE_ARN".to_owned()
                ),
                ("PATH".to_owned(), "/opt/bin".to_owned()),
            ]
        );
        // Without a PATH of its own a plugin gets the standard one.
        let plain = Plugins::new(
            None,
            ProviderSource::Fixed(
                parse_config("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: [{name: p, matchImages: [r.example], defaultCacheDuration: 1h, apiVersion: credentialprovider.kubelet.k8s.io/v1}]\n").unwrap(),
            ),
            DEFAULT_TIMEOUT,
        );
        assert_eq!(
            plain.resolve(&block("p")).unwrap().env,
            [("PATH".to_owned(), DEFAULT_PATH.to_owned())]
        );
    }

    #[test]
    fn a_resource_cannot_change_how_a_plugin_runs() {
        let plugins = ecr_plugins();
        let mut hostile = block("ecr-credential-provider");
        hostile.env = Some(vec![ExecEnvVar {
            name: "BASH_ENV".to_owned(),
            value: "$(id > /tmp/owned)".to_owned(),
        }]);
        hostile.args = Some(vec!["--evil".to_owned()]);
        hostile.match_images = Some(vec!["*".to_owned()]);
        let error = plugins.resolve(&hostile).unwrap_err();
        assert_eq!(error.label(), "refused");
        let shown = error.to_string();
        assert!(shown.contains("matchImages, args, env"), "{shown}");
        assert!(!shown.contains("/tmp/owned"), "{shown}");
        for field in ["defaultCacheDuration", "apiVersion"] {
            let mut one = block("ecr-credential-provider");
            match field {
                "defaultCacheDuration" => one.default_cache_duration = Some("1000000h".to_owned()),
                _ => one.api_version = Some("credentialprovider.kubelet.k8s.io/v1".to_owned()),
            }
            let error = plugins.resolve(&one).unwrap_err();
            assert_eq!(error.label(), "refused", "{field}");
            assert!(error.to_string().contains(field), "{error}");
        }
        // A provider the admin did not define is refused, whatever the resource says.
        let unknown = plugins.resolve(&block("sh")).unwrap_err();
        assert!(
            matches!(unknown, PluginError::NotConfigured(_)),
            "{unknown}"
        );
        assert!(
            unknown.to_string().contains("credentialProviders.config"),
            "{unknown}"
        );
        for name in ["..", "../bin/sh", "a/b", ""] {
            assert_eq!(
                plugins.resolve(&block(name)).unwrap_err().label(),
                "config",
                "{name}"
            );
        }
    }

    #[test]
    fn loader_and_interpreter_variables_are_never_passed_through() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "BASH_ENV",
            "ENV",
            "BASH_FUNC_x%%",
            "PYTHONSTARTUP",
            "PERL5OPT",
            "NODE_OPTIONS",
            "JAVA_TOOL_OPTIONS",
            "GCONV_PATH",
            "ld_preload",
        ] {
            let refused = ecr_plugins().with_pass_env(&[name.to_owned()], |_| Some("x".to_owned()));
            assert!(refused.is_err(), "{name}");
        }
        assert!(
            ecr_plugins()
                .with_pass_env(&["AWS_WEB_IDENTITY_TOKEN_FILE".to_owned()], |_| None)
                .is_ok()
        );
    }

    #[test]
    fn durations_beyond_gos_range_are_refused() {
        // 2^63-1 ns is 2562047h47m16.854775807s.
        assert!(parse_go_duration("2562047h").is_some());
        assert_eq!(parse_go_duration("2562048h"), None);
        assert_eq!(parse_go_duration("99999999999999h"), None);
        let answer = br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"3000000h","auth":{"r":{}}}"#;
        let error = parse_response(answer, V1).unwrap_err();
        assert!(error.to_string().contains("cacheDuration"), "{error}");
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
