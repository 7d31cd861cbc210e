//! The suite's machinery: the cluster, the `serve` process, kubectl, the admin HTTP client,
//! polling, and the record of every credential the suite created (for the leak check).
//! Scenarios build manifests (`manifests`), read Secrets, conditions and Events (`objects`) and
//! wait for pods (`pods`) only through this module, so they keep only what differs.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

mod http;
mod kubectl;
pub mod manifests;
mod objects;
mod pods;
mod processes;
mod setup;
mod util;

pub use http::{http_get, metric, metric_sum};
pub use kubectl::{Output, cluster_pull_secret_manifest, minted_cluster_pull_secret_manifest};
pub use objects::{
    all_events_json, condition, event_messages, events, secret, secret_data, secret_password,
    wait_secret_copy, wait_secret_gone,
};
pub use pods::{
    START_TIMEOUT, deployment_pod, expect_secrets, is_ready, replacement, wait_pull_failure,
    wait_running,
};
pub use processes::{Cluster, Serve, chart_dir, serve_command, shutdown_timing, webhook_manifest};
pub use util::{injected_annotation, now_unix, poll, pull_secrets, tail};

use processes::{ChartRelease, free_port};

/// Label that puts a namespace under this run's webhook configuration.
pub const SUITE_LABEL: &str = "e2e.pullsecret-injector.io/suite";
/// The PodNodeSelector admission plugin (enabled by cluster.sh) adds this namespace annotation's
/// selector to every pod of the namespace.
pub const NODE_SELECTOR_ANNOTATION: &str = "scheduler.alpha.kubernetes.io/node-selector";
/// A node label no node has: pods selecting it stay Pending, as before the cluster had a node.
pub const UNSCHEDULABLE_LABEL: &str = "e2e.pullsecret-injector.io/no-node";
pub const INJECT_LABEL: &str = "pullsecret-injector.io/inject";
pub const INJECTED_ANNOTATION: &str = "pullsecret-injector.io/injected";
pub const SHUTDOWN_DELAY: Duration = Duration::from_secs(2);
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// The suite

/// What the suite must remember across scenarios.
#[derive(Default)]
struct Record {
    /// (description, text that must never appear anywhere): passwords, `auth` values, and the
    /// base64 data of every secret created.
    secret_needles: Vec<(String, String)>,
    /// Everything kubectl wrote to stderr (admission warnings among it).
    kubectl_stderr: Vec<String>,
    /// Leaks found in `/metrics` bodies as they were fetched.
    metrics_leaks: Vec<String>,
    metrics_scraped: usize,
    namespaces: Vec<String>,
    serve_logs: Vec<PathBuf>,
}

pub struct Suite {
    pub run_id: String,
    kubeconfig: PathBuf,
    bin_dir: PathBuf,
    cluster_dir: PathBuf,
    env_file: PathBuf,
    reuse_cluster: bool,
    work: RefCell<Option<tempfile::TempDir>>,
    work_path: PathBuf,
    keep_work: Cell<bool>,
    serve: RefCell<Option<Serve>>,
    admin: Cell<Option<SocketAddr>>,
    webhook_name: String,
    /// The Helm release of charts/pullsecret-injector whose ServiceAccount `serve` runs as.
    pub chart: ChartRelease,
    chart_installed: Cell<bool>,
    record: RefCell<Record>,
    /// Pods the suite saw injected, and the secret references appended to them.
    injected_pods: Cell<u64>,
    injected_refs: Cell<u64>,
    unique: Cell<u64>,
}

impl Suite {
    /// The controller arguments every serve process of this run gets: one Lease per run.
    pub fn controller_args(&self, identity: &str) -> Vec<String> {
        [
            "--enable-controller",
            "--lease-namespace",
            self.lease_namespace(),
            "--lease-name",
            &self.lease_name(),
            "--lease-identity",
            identity,
            "--orphan-sweep-interval",
            "2s",
            "--image-credential-provider-timeout",
            "10s",
        ]
        .map(str::to_owned)
        .into_iter()
        .chain([
            "--image-credential-provider-bin-dir".to_owned(),
            self.credential_plugin_dir().display().to_string(),
            "--image-credential-provider-config".to_owned(),
            self.credential_provider_config().display().to_string(),
        ])
        .collect()
    }

    /// The CredentialProviderConfig of this run's serve processes (an admin's file; serve reads
    /// it at each plugin run): the only providers a ClusterPullSecret may name. Created empty.
    pub fn credential_provider_config(&self) -> PathBuf {
        let path = self.work_path.join("credential-providers.json");
        if !path.exists() {
            let empty = serde_json::json!({
                "apiVersion": "kubelet.config.k8s.io/v1",
                "kind": "CredentialProviderConfig",
                "providers": [],
            });
            let _ = std::fs::write(&path, empty.to_string());
        }
        path
    }

    /// Adds a provider to [`Suite::credential_provider_config`], as an admin edits the file:
    /// the plugin `name` for `match_images`, with `fields` (args, env, ...) on top of a 1 h
    /// default cache duration and the v1 API.
    pub fn configure_credential_provider(
        &self,
        name: &str,
        match_images: &[&str],
        fields: serde_json::Value,
    ) -> anyhow::Result<()> {
        let path = self.credential_provider_config();
        let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        let mut provider = serde_json::json!({
            "name": name,
            "matchImages": match_images,
            "defaultCacheDuration": "1h",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        });
        if let (Some(provider), Some(fields)) = (provider.as_object_mut(), fields.as_object()) {
            provider.extend(fields.clone());
        }
        let providers = config["providers"]
            .as_array_mut()
            .ok_or_else(|| anyhow::anyhow!("{} has no providers list", path.display()))?;
        providers.retain(|existing| existing["name"] != name);
        providers.push(provider);
        // Replaced whole, so a run never reads half a file.
        let staged = path.with_extension("json.new");
        std::fs::write(&staged, config.to_string())?;
        std::fs::rename(&staged, &path)?;
        Ok(())
    }

    /// The credential provider plugin directory of this run's serve processes (created here;
    /// scenarios write their plugins into it).
    pub fn credential_plugin_dir(&self) -> PathBuf {
        let dir = self.work_path.join("credential-plugins");
        let _ = std::fs::create_dir_all(&dir);
        dir
    }

    /// The Lease lives in the chart's namespace, where the chart grants the Lease RBAC.
    pub fn lease_namespace(&self) -> &str {
        &self.chart.namespace
    }

    pub fn lease_name(&self) -> String {
        format!("pullsecret-injector-e2e-{}", self.run_id)
    }

    /// The identity of the suite's own serve process in the controller's Lease.
    pub fn serve_identity(&self) -> String {
        format!("e2e-{}-serve", self.run_id)
    }

    /// A further serve process of this run (not registered as the webhook); stopped on drop.
    pub fn start_extra_serve(&self, name: &str, extra: &[String]) -> Result<Serve> {
        Serve::start(&self.work_path, &self.kubeconfig, name, extra, free_port()?)
    }

    /// A further serve process with the identity of `kubeconfig` (e.g. a ServiceAccount's),
    /// its log recorded for the leak check; with `wait_ready`, once `/readyz` answers 200.
    pub fn start_extra_serve_as(
        &self,
        name: &str,
        kubeconfig: &Path,
        extra: &[String],
        wait_ready: bool,
    ) -> Result<Serve> {
        let serve = if wait_ready {
            Serve::start(&self.work_path, kubeconfig, name, extra, free_port()?)?
        } else {
            Serve::spawn(&self.work_path, kubeconfig, name, extra, 1, free_port()?)?
        };
        self.record_serve_log(serve.log.clone());
        Ok(serve)
    }

    pub fn serve_log(&self) -> PathBuf {
        self.record
            .borrow()
            .serve_logs
            .last()
            .cloned()
            .unwrap_or_default()
    }

    pub fn serve_logs(&self) -> Vec<PathBuf> {
        self.record.borrow().serve_logs.clone()
    }

    pub fn work_path(&self) -> &Path {
        &self.work_path
    }

    pub fn keep_workdir(&self) {
        self.keep_work.set(true);
    }

    /// Takes the serve process out of the suite (the caller stops it; Drop still cleans up).
    pub fn take_serve(&self) -> Option<Serve> {
        self.serve.borrow_mut().take()
    }

    pub fn admin_addr(&self) -> Result<SocketAddr> {
        self.admin.get().context("serve was never started")
    }

    pub fn cluster_env(&self) -> (&Path, &Path, &Path) {
        (&self.env_file, &self.bin_dir, &self.cluster_dir)
    }

    pub fn unique(&self) -> u64 {
        let next = self.unique.get() + 1;
        self.unique.set(next);
        next
    }
}

// ---------------------------------------------------------------------------------------------
// Access for the hardening scenarios (tests/e2e/hostile.rs, tests/e2e/faults.rs)

impl Suite {
    /// The webhook (HTTPS) address of the suite's serve process.
    pub fn webhook_addr(&self) -> Result<SocketAddr> {
        self.serve
            .borrow()
            .as_ref()
            .map(|serve| serve.webhook)
            .context("serve is not running")
    }

    /// The pid of the suite's serve process, and whether it is still running.
    pub fn serve_pid_alive(&self) -> Result<(u32, bool)> {
        let mut serve = self.serve.borrow_mut();
        let serve = serve.as_mut().context("serve is not running")?;
        Ok((serve.pid(), serve.try_wait()?.is_none()))
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn kubectl_path(&self) -> PathBuf {
        self.bin_dir.join("kubectl")
    }

    /// A log of another serve process started by a scenario, for the leak check.
    pub fn record_serve_log(&self, log: PathBuf) {
        self.record.borrow_mut().serve_logs.push(log);
    }
}
