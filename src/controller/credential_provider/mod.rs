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

mod config;
mod process;
mod response;

use config::is_variable_name;
pub use config::{ConfigError, ProviderEntry, acts_on_code, parse_config, parse_go_duration};
pub use process::adopt_orphans;
use process::{GroupGuard, Overflow, check_name, prefer_for_oom_kill, read_bounded, read_tail};
pub use response::{
    AuthConfig, MAX_STDOUT, Minted, PluginError, Response, excerpt, parse_response,
};
use response::{EXEC_API_VERSIONS, MAX_STDERR};

/// How long the kubelet lets a plugin run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

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

#[cfg(test)]
mod tests {
    use super::response::STDERR_EXCERPT;
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
