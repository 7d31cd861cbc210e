//! `serve`: the HTTPS webhook, the admin listener, the watches, and orderly shutdown.
//!
//! Shutdown: the first SIGTERM/SIGINT turns `/readyz` to 503 and keeps serving for
//! `--shutdown-delay` (so endpoints and the apiserver stop sending), then stops accepting and
//! lets in-flight requests finish within `--drain-timeout`; a second signal exits at once.
//!
//! The top layer: the process wiring of `serve` may use every other layer.

mod budget;
mod listener;
pub mod tls;
mod trust;
mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cluster::scope::Scope;
use crate::cluster::watch::ClusterCache;
use crate::controller::leader::{Leadership, Term};
use crate::controller::pod_recovery::RecoveryConfig;
use crate::state::snapshot::{Copies, Mode};
use crate::telemetry::{LogFormat, Metrics};

pub use budget::{BodyBudget, Reservation};
pub use listener::{ConnectionLimits, serve as serve_https};
pub use webhook::{AppState, admin_router, answer, read_body, webhook_router};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS webhook listener (POST /mutate).
    #[arg(
        long,
        default_value = "0.0.0.0:8443",
        env = "PULLSECRET_INJECTOR_LISTEN"
    )]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP admin listener: /livez, /readyz, /metrics.
    #[arg(
        long,
        default_value = "0.0.0.0:8080",
        env = "PULLSECRET_INJECTOR_ADMIN_LISTEN"
    )]
    pub admin_listen: SocketAddr,
    /// PEM serving certificate (chain). Re-read periodically: rotation needs no restart.
    #[arg(long, env = "PULLSECRET_INJECTOR_TLS_CERT_FILE")]
    pub tls_cert_file: PathBuf,
    /// PEM private key (ECDSA or RSA) of the serving certificate.
    #[arg(long, env = "PULLSECRET_INJECTOR_TLS_KEY_FILE")]
    pub tls_key_file: PathBuf,
    /// How often the certificate files are checked for changes.
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "PULLSECRET_INJECTOR_TLS_RELOAD_INTERVAL")]
    pub tls_reload_interval: Duration,
    /// Name of the MutatingWebhookConfiguration that calls this server: its caBundle is read
    /// every 10s and after each certificate reload, and while the served certificate is not
    /// signed by a CA in it, /readyz fails and pullsecret_injector_certificate_trusted is 0.
    /// Empty: not checked.
    #[arg(long, env = "PULLSECRET_INJECTOR_WEBHOOK_CONFIGURATION")]
    pub webhook_configuration: Option<String>,
    /// After SIGTERM: how long to keep serving while reporting unready.
    #[arg(long, default_value = "5s", value_parser = parse_duration, env = "PULLSECRET_INJECTOR_SHUTDOWN_DELAY")]
    pub shutdown_delay: Duration,
    /// After the delay: how long in-flight requests may take to finish.
    #[arg(long, default_value = "20s", value_parser = parse_duration, env = "PULLSECRET_INJECTOR_DRAIN_TIMEOUT")]
    pub drain_timeout: Duration,
    /// Idle keep-alive connections are closed after this (must exceed the apiserver's 90s).
    #[arg(long, default_value = "120s", value_parser = parse_duration, env = "PULLSECRET_INJECTOR_IDLE_TIMEOUT")]
    pub idle_timeout: Duration,
    /// Most webhook connections open at once; further clients wait in the accept queue.
    #[arg(
        long,
        default_value_t = 4096,
        env = "PULLSECRET_INJECTOR_MAX_CONNECTIONS"
    )]
    pub max_connections: usize,
    /// The most bytes of request bodies held in memory at once, across all webhook
    /// connections (e.g. `32Mi`; at least the 3 MiB a single review may take). A request that
    /// finds it spent is answered 503 at once.
    #[arg(long, default_value = "32Mi", value_parser = parse_bytes, env = "PULLSECRET_INJECTOR_MAX_BODY_BYTES_IN_FLIGHT")]
    pub max_body_bytes_in_flight: usize,
    /// Log format: plain text or JSON lines.
    #[arg(long, value_enum, default_value_t = LogFormat::Plain, env = "PULLSECRET_INJECTOR_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter: a level (error, warn, info, debug, trace, off) or comma-separated
    /// `target=level` directives, e.g. `pullsecret_injector=debug,info`.
    #[arg(long, default_value = "info", env = "PULLSECRET_INJECTOR_LOG_LEVEL")]
    pub log_level: String,
    /// The injector's own namespace: never served by ClusterPullSecrets, and the default
    /// namespace of the controller's Lease.
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "PULLSECRET_INJECTOR_OWN_NAMESPACE"
    )]
    pub own_namespace: Option<String>,
    /// Shadow mode for every namespace without a `pullsecret-injector.io/mode` label: decide
    /// as usual but change no pod; what would have been injected goes to an audit annotation,
    /// `pullsecret_injector_shadow_reviews_total` and the log. A namespace labelled
    /// `pullsecret-injector.io/mode: on` injects all the same (and one labelled `shadow` is in
    /// shadow mode without this flag).
    #[arg(long, default_value_t = false, env = "PULLSECRET_INJECTOR_SHADOW")]
    pub shadow: bool,
    /// Namespaced mode: serve only these namespaces (comma-separated or repeated). Secrets are
    /// then read, and the controller writes, only there, one namespace at a time, so a Role
    /// in each is all the Secret access it needs; Namespaces and the custom resources are
    /// still read cluster-wide. Default: every namespace.
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "PULLSECRET_INJECTOR_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Cache only registry Secrets with these labels (a label selector, e.g.
    /// `pullsecret-injector.io/registry=true`): others are never injected. A filter that keeps
    /// the cache small, not a security boundary: RBAC still allows reading the others.
    #[arg(
        long,
        value_name = "SELECTOR",
        env = "PULLSECRET_INJECTOR_SECRET_LABEL_SELECTOR"
    )]
    pub secret_label_selector: Option<String>,
    #[command(flatten)]
    pub controller: ControllerArgs,
}

/// The ClusterPullSecret controller (copies source Secrets into selected namespaces).
#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    /// Run the ClusterPullSecret controller. Every replica still serves admission; only the
    /// one holding the Lease writes. Needs write access to Secrets, Leases and Events.
    /// Without it, a ClusterPullSecret injects its `targetName` only where a Secret of that
    /// name exists (copied by hand or another tool).
    #[arg(
        long,
        default_value_t = false,
        env = "PULLSECRET_INJECTOR_ENABLE_CONTROLLER"
    )]
    pub enable_controller: bool,
    /// Namespace of the Lease (default: --own-namespace, else `default`).
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "PULLSECRET_INJECTOR_LEASE_NAMESPACE"
    )]
    pub lease_namespace: Option<String>,
    /// Name of the Lease the replicas compete for.
    #[arg(
        long,
        default_value = "pullsecret-injector-controller",
        env = "PULLSECRET_INJECTOR_LEASE_NAME"
    )]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: hostname and process id).
    #[arg(long, env = "PULLSECRET_INJECTOR_LEASE_IDENTITY")]
    pub lease_identity: Option<String>,
    /// How long a Lease holder that stopped renewing keeps it.
    #[arg(long, default_value = "15s", value_parser = parse_duration, env = "PULLSECRET_INJECTOR_LEASE_DURATION")]
    pub lease_duration: Duration,
    /// Evict pods stuck in ErrImagePull/ImagePullBackOff that a secret now fixes (their
    /// controller recreates them with it); bare pods only get an Event. Needs
    /// --enable-controller, and pods list/watch and pods/eviction create. Off by default:
    /// evicting workloads is a disruptive write an admin turns on knowingly.
    #[arg(
        long,
        default_value_t = false,
        requires = "enable_controller",
        env = "PULLSECRET_INJECTOR_RECOVER_STUCK_PODS"
    )]
    pub recover_stuck_pods: bool,
    /// How often the Lease holder sweeps copies whose ClusterPullSecret went without its
    /// finalizer (removed by hand, or force-deleted).
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "PULLSECRET_INJECTOR_ORPHAN_SWEEP_INTERVAL")]
    pub orphan_sweep_interval: Duration,
    /// Run the pull audit (the findings of `pullsecret-injector audit`) every this often on the
    /// Lease holder: `pullsecret_injector_audit_findings` and a `PullAudit` Event on each
    /// workload with a new error or warning finding. Needs --enable-controller, and list on
    /// Pods, Deployments, StatefulSets, DaemonSets, Jobs and CronJobs. Off when not given.
    #[arg(
        long,
        value_parser = parse_duration,
        requires = "enable_controller",
        env = "PULLSECRET_INJECTOR_AUDIT_INTERVAL"
    )]
    pub audit_interval: Option<Duration>,
    /// The ClusterPullSecret controller's calls per second to the API server for each namespace
    /// it serves (copies created, updated and deleted, namespaces re-read) and for the audit's
    /// Events, on average; 0 turns the limit off. For scale: client-go clients default to 5
    /// (burst 10) and kube-controller-manager to 20 (burst 30) per controller; 200 writes a
    /// copy into 5,000 namespaces in about 25 s (BENCHMARKS.md) and keeps a rotation from
    /// flooding the API server.
    #[arg(long, default_value = "200", value_parser = parse_qps, env = "PULLSECRET_INJECTOR_CONTROLLER_QPS")]
    pub controller_qps: f64,
    /// How many of those calls may go out at once after a quiet spell (the token bucket's
    /// size; at least 1).
    #[arg(long, default_value = "400", value_parser = clap::value_parser!(u32).range(1..), env = "PULLSECRET_INJECTOR_CONTROLLER_BURST")]
    pub controller_burst: u32,
    /// At most one recovery eviction per this interval, cluster-wide.
    #[arg(long, default_value = "1s", value_parser = parse_duration, env = "PULLSECRET_INJECTOR_RECOVERY_EVICTION_INTERVAL")]
    pub recovery_eviction_interval: Duration,
    /// The kubelet's CredentialProviderConfig file (`kubelet.config.k8s.io/v1`, YAML or JSON):
    /// the only providers a ClusterPullSecret's `credentialProvider` may name, run exactly as
    /// the file says (args, env, matchImages, ...), as on a node. Read at start and again at
    /// each run, so a changed file applies without a restart.
    #[arg(
        long,
        value_name = "FILE",
        env = "PULLSECRET_INJECTOR_IMAGE_CREDENTIAL_PROVIDER_CONFIG"
    )]
    pub image_credential_provider_config: Option<PathBuf>,
    /// Directory of the credential provider plugin executables; a provider's `name` is a file
    /// name in it, never a path.
    #[arg(
        long,
        value_name = "DIR",
        env = "PULLSECRET_INJECTOR_IMAGE_CREDENTIAL_PROVIDER_BIN_DIR"
    )]
    pub image_credential_provider_bin_dir: Option<PathBuf>,
    /// How long a credential provider plugin may run before its process group is killed (the
    /// kubelet allows a minute).
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "PULLSECRET_INJECTOR_IMAGE_CREDENTIAL_PROVIDER_TIMEOUT")]
    pub image_credential_provider_timeout: Duration,
    /// Variables of this process's environment passed on to every plugin (comma list or
    /// repeated), e.g. the identity variables a workload-identity webhook sets
    /// (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, AZURE_CLIENT_ID, ...). Plugins get nothing
    /// else of it; loader, shell and interpreter variables (LD_*, BASH_ENV, PYTHON*, ...) are
    /// refused.
    #[arg(
        long,
        value_name = "NAME",
        value_delimiter = ',',
        env = "PULLSECRET_INJECTOR_IMAGE_CREDENTIAL_PROVIDER_PASS_ENV"
    )]
    pub image_credential_provider_pass_env: Vec<String>,
    /// How many credential provider plugins may run at once; the others wait for a slot.
    /// Bounds the memory plugins take from the container.
    #[arg(long, default_value = "2", value_parser = clap::value_parser!(u16).range(1..=64), env = "PULLSECRET_INJECTOR_IMAGE_CREDENTIAL_PROVIDER_MAX_CONCURRENT")]
    pub image_credential_provider_max_concurrent: u16,
}

impl ControllerArgs {
    /// The credential provider plugins, their config file checked once here.
    pub fn plugins(&self) -> anyhow::Result<crate::controller::credential_provider::Plugins> {
        use crate::controller::credential_provider::{Plugins, ProviderSource};
        let source = match &self.image_credential_provider_config {
            Some(path) => ProviderSource::File(path.clone()),
            None => ProviderSource::Fixed(Vec::new()),
        };
        let plugins = Plugins::new(
            self.image_credential_provider_bin_dir.clone(),
            source,
            self.image_credential_provider_timeout,
        )
        .with_max_concurrent(usize::from(self.image_credential_provider_max_concurrent))
        .with_pass_env(&self.image_credential_provider_pass_env, |name| {
            std::env::var(name).ok()
        })?;
        plugins.check()?;
        Ok(plugins)
    }
}

impl ServeArgs {
    /// The webhook listener's limits, as the flags set them.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            ..ConnectionLimits::default()
        }
    }
}

impl ControllerArgs {
    fn lease(&self, own_namespace: Option<&str>) -> crate::controller::leader::LeaseConfig {
        let identity = self.lease_identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "pullsecret-injector".to_owned());
            format!("{host}-{}", std::process::id())
        });
        let lease_duration = self.lease_duration.max(Duration::from_secs(1));
        crate::controller::leader::LeaseConfig {
            namespace: self
                .lease_namespace
                .clone()
                .or_else(|| own_namespace.map(str::to_owned))
                .unwrap_or_else(|| "default".to_owned()),
            name: self.lease_name.clone(),
            identity,
            lease_duration,
        }
    }
}

impl ServeArgs {
    /// Refuses values that would break the server silently: a zero reload interval (the
    /// reloader would panic and certificates never be re-read), no connection slots (nothing
    /// would ever be accepted), a zero idle timeout (every request's headers would time out).
    pub fn validate(&self) -> Result<(), String> {
        let zero = |flag: &str, why: &str| Err(format!("{flag} must be greater than 0: {why}"));
        if self.tls_reload_interval.is_zero() {
            return zero(
                "--tls-reload-interval",
                "the certificate would never be re-read",
            );
        }
        if self.max_connections == 0 {
            return zero(
                "--max-connections",
                "no webhook connection would ever be accepted",
            );
        }
        if self.max_body_bytes_in_flight < webhook::MAX_BODY_BYTES {
            return Err(format!(
                "--max-body-bytes-in-flight must be at least 3Mi: a review of the largest size the apiserver sends would always be refused ({} bytes given)",
                self.max_body_bytes_in_flight
            ));
        }
        if self.idle_timeout.is_zero() {
            return zero("--idle-timeout", "every request's headers would time out");
        }
        if self.controller.audit_interval.is_some_and(|d| d.is_zero()) {
            return zero(
                "--audit-interval",
                "the audit would list every workload without pause (leave it out to turn the audit off)",
            );
        }
        if self.controller.image_credential_provider_timeout.is_zero() {
            return zero(
                "--image-credential-provider-timeout",
                "every plugin run would time out",
            );
        }
        // A broken provider config stops the start, as it stops a kubelet's.
        self.controller
            .plugins()
            .map_err(|error| format!("--image-credential-provider-config: {error}"))?;
        crate::telemetry::check_log_filter(&self.log_level)
            .map_err(|error| format!("--log-level: {error}"))
    }
}

/// A rate in calls per second: finite and not negative (0 turns the limit off).
pub fn parse_qps(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(qps) if qps.is_finite() && qps >= 0.0 => Ok(qps),
        _ => Err(format!(
            "{text:?} is not a rate: a number of calls per second, e.g. 200 (0: no limit)"
        )),
    }
}

/// Parses `500ms`, `5s`, `2m` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {text:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("invalid duration {text:?}"))
}

/// Parses a byte count: a number, optionally with `Ki`, `Mi` or `Gi`.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: usize = number
        .parse()
        .map_err(|_| format!("invalid byte count {text:?}"))?;
    let factor: usize = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(format!("invalid unit in {text:?} (use Ki, Mi or Gi)")),
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| format!("byte count {text:?} too large"))
}

/// Readiness inputs, shared by the admin listener and the shutdown sequence.
#[derive(Debug)]
pub struct Health {
    pub certificates: Arc<tls::CertificateStore>,
    pub cache: Arc<ClusterCache>,
    trust: Arc<trust::Trust>,
    shutting_down: AtomicBool,
}

impl Health {
    pub fn new(certificates: Arc<tls::CertificateStore>, cache: Arc<ClusterCache>) -> Health {
        Health {
            certificates,
            cache,
            trust: Arc::default(),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// `Ok` when ready, else the reason.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.shutting_down.load(Ordering::Acquire) {
            Err("shutting down")
        } else if !self.certificates.is_loaded() {
            Err("serving certificate not loaded")
        } else if self.trust.is_untrusted() {
            Err(
                "the served certificate is not signed by a CA in the webhook configuration's caBundle",
            )
        } else if !self.cache.is_synced() {
            Err("watches have not delivered their initial list yet")
        } else {
            Ok(())
        }
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Listening from the start, and until the end: a second signal arriving at any moment of
    // the shutdown sequence is never lost.
    let mut signals = Signals::new()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);

    // A broken provider config stops the start, as it stops a kubelet's.
    let plugins = args
        .controller
        .plugins()
        .context("cannot read --image-credential-provider-config")?;
    // What a plugin leaves running is killed with its group; as its new parent we reap it.
    if args.controller.image_credential_provider_bin_dir.is_some()
        && let Err(error) = crate::controller::credential_provider::adopt_orphans()
    {
        tracing::warn!(%error, "cannot become the reaper of plugin processes; a plugin's leftover processes may stay as zombies");
    }
    let certificates = Arc::new(tls::CertificateStore::new(
        args.tls_cert_file.clone(),
        args.tls_key_file.clone(),
    ));
    certificates
        .reload(&provider)
        .context("cannot load the serving certificate")?;
    tls::record_expiry(&certificates, &metrics);
    let tls_config = tls::server_config(Arc::clone(&certificates), Arc::clone(&provider))?;

    let client = kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client (KUBECONFIG or in-cluster)")?;
    // The same configuration without the client's retries of 429/5xx answers: a refused
    // eviction must come back as a refusal.
    let evictions = {
        let mut config = kube::Config::infer()
            .await
            .context("cannot configure the Kubernetes client (KUBECONFIG or in-cluster)")?;
        config.default_retry = false;
        kube::Client::try_from(config).context("cannot build the Kubernetes client")?
    };
    let own_namespace = args.own_namespace.clone().filter(|ns| !ns.is_empty());
    let copies = if args.controller.enable_controller {
        Copies::Controller
    } else {
        Copies::Manual
    };
    let default_mode = if args.shadow { Mode::Shadow } else { Mode::On };
    let scope = Scope::new(&args.namespaces);
    if let Some(namespaces) = scope.namespaces() {
        tracing::info!(
            ?namespaces,
            "namespaced mode: serving only these namespaces"
        );
    }
    let cache = Arc::new(
        ClusterCache::new(own_namespace.clone())
            .with_copies(copies)
            .with_scope(scope)
            .with_default_mode(default_mode)
            .with_secret_labels(args.secret_label_selector.clone()),
    );
    let health = Arc::new(Health::new(Arc::clone(&certificates), Arc::clone(&cache)));

    let webhook_listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let admin_listener = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.admin_listen))?;
    tracing::info!(webhook = %args.listen, admin = %args.admin_listen, "listening");

    let trust_client = client.clone();
    tokio::spawn(crate::cluster::watch::run(
        client.clone(),
        Arc::clone(&cache),
        metrics.clone(),
    ));
    let (stop_controller, controller_stop) = watch::channel(false);
    let controller = args.controller.enable_controller.then(|| {
        let lease = args.controller.lease(own_namespace.as_deref());
        tracing::info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity, "ClusterPullSecret controller enabled; competing for the lease");
        // Every writer of the Lease holder follows the same terms (and stops writing when one
        // runs out, whatever its calls are doing).
        let (terms, _) = watch::channel(Term::Follower);
        let leadership = || Leadership::new(terms.subscribe());
        // One budget for the controller's calls per object: copies and audit Events alike.
        let limiter = crate::controller::rate_limit::RateLimiter::new(
            args.controller.controller_qps,
            args.controller.controller_burst,
        );
        tokio::spawn(crate::controller::orphans::run(
            client.clone(),
            cache.scope().clone(),
            metrics.clone(),
            args.controller.orphan_sweep_interval,
            leadership(),
        ));
        if let Some(interval) = args.controller.audit_interval {
            tracing::info!(interval = ?interval, "pull audit enabled (Lease holder only)");
            tokio::spawn(crate::controller::audit::run(
                client.clone(),
                Arc::clone(&cache),
                metrics.clone(),
                interval,
                limiter.clone(),
                lease.identity.clone(),
                leadership(),
            ));
        }
        if args.controller.recover_stuck_pods {
            tracing::info!("recovery of pods stuck on pulls enabled (Lease holder only)");
            tokio::spawn(crate::controller::pod_recovery::run(
                client.clone(),
                evictions.clone(),
                Arc::clone(&cache),
                metrics.clone(),
                RecoveryConfig {
                    own_namespace: own_namespace.clone(),
                    eviction_interval: args.controller.recovery_eviction_interval,
                },
                lease.identity.clone(),
                leadership(),
            ));
        }
        tokio::spawn(crate::controller::cluster_pull_secret::run(
            client,
            Arc::clone(&cache),
            metrics.clone(),
            lease,
            crate::controller::cluster_pull_secret::Options {
                plugins,
                limiter,
            },
            terms,
            controller_stop,
        ))
    });
    let (reloaded, reloads) = watch::channel(0);
    if let Some(name) = args.webhook_configuration.clone().filter(|n| !n.is_empty()) {
        tokio::spawn(trust::run(
            trust_client,
            name,
            Arc::clone(&certificates),
            Arc::clone(&provider),
            Arc::clone(&health.trust),
            metrics.clone(),
            reloads,
        ));
    }
    tokio::spawn(tls::watch_certificate(
        Arc::clone(&certificates),
        provider,
        args.tls_reload_interval,
        metrics.clone(),
        reloaded,
    ));

    let app = AppState::new(
        Arc::clone(&cache),
        metrics.clone(),
        Arc::new(registry),
        Arc::clone(&health),
        args.max_body_bytes_in_flight,
    );
    // Probes keep being answered until the process exits.
    let (_keep_admin, admin_stop) = watch::channel(false);
    tokio::spawn(listener::serve_plain(
        admin_listener,
        admin_router(app.clone()),
        ConnectionLimits::admin(),
        admin_stop,
    ));

    let (stop_accepting, accepting) = watch::channel(false);
    let server = tokio::spawn(listener::serve(
        webhook_listener,
        Arc::new(tls_config),
        webhook_router(app),
        args.connection_limits(),
        metrics.clone(),
        accepting,
    ));

    signals.next().await;
    tracing::info!(delay = ?args.shutdown_delay, "shutdown requested: reporting unready");
    // A second signal during the sequence ends the process at once.
    tokio::spawn(async move {
        signals.next().await;
        tracing::warn!("second signal: exiting immediately");
        std::process::exit(1);
    });
    health.begin_shutdown();
    metrics.ready.set(0);
    let unready_until = tokio::time::Instant::now() + args.shutdown_delay;
    // The controller stops writing and hands its Lease over while admission keeps serving.
    let _ = stop_controller.send(true);
    if let Some(controller) = controller {
        let _ = tokio::time::timeout_at(unready_until, controller).await;
    }
    tokio::time::sleep_until(unready_until).await;
    tracing::info!(timeout = ?args.drain_timeout, "no longer accepting connections; draining");
    let _ = stop_accepting.send(true);
    match tokio::time::timeout(args.drain_timeout, server).await {
        Ok(_) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!("drain timeout reached; exiting with requests still open"),
    }
    Ok(())
}

/// SIGTERM and SIGINT.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            terminate: signal(SignalKind::terminate())
                .context("cannot install the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt())
                .context("cannot install the SIGINT handler")?,
        })
    }

    /// The next signal, also one that arrived while nobody was waiting.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn serve_args(extra: &[&str]) -> ServeArgs {
        let args = [
            "serve",
            "--tls-cert-file",
            "c.pem",
            "--tls-key-file",
            "k.pem",
        ];
        Command::try_parse_from(args.iter().chain(extra))
            .expect("valid flags")
            .serve
    }

    #[test]
    fn the_connection_flags_reach_the_listener() {
        let limits =
            serve_args(&["--max-connections", "3", "--idle-timeout", "95s"]).connection_limits();
        assert_eq!(limits.max_connections, 3);
        assert_eq!(limits.idle_timeout, Duration::from_secs(95));
        let defaults = serve_args(&[]).connection_limits();
        assert_eq!(defaults.max_connections, 4096);
        assert_eq!(defaults.idle_timeout, Duration::from_secs(120));
    }

    #[test]
    fn namespaces_are_a_comma_list_or_repeated_and_none_means_the_cluster() {
        let scope = |extra: &[&str]| Scope::new(&serve_args(extra).namespaces);
        assert_eq!(scope(&[]), Scope::Cluster);
        assert_eq!(
            scope(&["--namespaces", "shop,billing", "--namespaces", "web"]),
            Scope::new(["billing", "shop", "web"])
        );
        assert!(scope(&["--namespaces", "shop"]).is_namespaced());
        assert_eq!(
            serve_args(&["--secret-label-selector", "team=shop"]).secret_label_selector,
            Some("team=shop".to_owned())
        );
    }

    #[test]
    fn the_lease_defaults_to_the_own_namespace_and_renews_every_third() {
        let lease = |extra: &[&str], own: Option<&str>| serve_args(extra).controller.lease(own);
        assert_eq!(lease(&[], None).namespace, "default");
        assert_eq!(lease(&[], Some("injector")).namespace, "injector");
        assert_eq!(
            lease(&["--lease-namespace", "leases"], Some("injector")).namespace,
            "leases"
        );
        let defaults = lease(&[], None);
        assert_eq!(defaults.name, "pullsecret-injector-controller");
        assert!(
            defaults
                .identity
                .ends_with(&format!("-{}", std::process::id())),
            "hostname-pid: {}",
            defaults.identity
        );
        assert_eq!(defaults.lease_duration, Duration::from_secs(15));
        assert_eq!(defaults.retry_period(), Duration::from_secs(3));
        let custom = lease(
            &["--lease-identity", "pod-a", "--lease-duration", "30s"],
            None,
        );
        assert_eq!(custom.identity, "pod-a");
        assert_eq!(custom.retry_period(), Duration::from_secs(6));
    }

    #[test]
    fn the_controller_rate_is_a_non_negative_number_and_the_burst_at_least_one() {
        let defaults = serve_args(&[]).controller;
        assert_eq!(
            (defaults.controller_qps, defaults.controller_burst),
            (200.0, 400)
        );
        let custom =
            serve_args(&["--controller-qps", "20.5", "--controller-burst", "30"]).controller;
        assert_eq!((custom.controller_qps, custom.controller_burst), (20.5, 30));
        assert_eq!(
            serve_args(&["--controller-qps", "0"])
                .controller
                .controller_qps,
            0.0
        );
        let base = [
            "serve",
            "--tls-cert-file",
            "c.pem",
            "--tls-key-file",
            "k.pem",
        ];
        for bad in [
            ["--controller-qps", "-1"],
            ["--controller-qps", "inf"],
            ["--controller-qps", "fast"],
            ["--controller-burst", "0"],
        ] {
            assert!(
                Command::try_parse_from(base.iter().chain(bad.iter())).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
