//! The processes the suite runs: the control plane, `serve`, and the chart release's names.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::http::http_get;
use super::util::{poll, tail};
use super::{DRAIN_TIMEOUT, SHUTDOWN_DELAY, repo_root};

// ---------------------------------------------------------------------------------------------
// Cluster

/// The control plane the suite runs against. Stopped on drop when the suite started it.
pub struct Cluster {
    pub dir: PathBuf,
    pub(super) owned: bool,
}

impl Cluster {
    pub fn start() -> Result<Cluster> {
        if let Some(dir) = std::env::var_os("PULLSECRET_INJECTOR_E2E_REUSE_CLUSTER") {
            let cluster = Cluster {
                dir: PathBuf::from(dir),
                owned: false,
            };
            let out = cluster
                .kubectl_command()
                .args(["get", "--raw", "/readyz"])
                .output()?;
            ensure!(
                out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
                "PULLSECRET_INJECTOR_E2E_REUSE_CLUSTER={}: apiserver not ready: {}",
                cluster.dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return Ok(cluster);
        }
        // The guard exists before `up` runs, so a half-started cluster is stopped as well.
        let cluster = Cluster {
            dir: repo_root().join("target").join("e2e-cluster"),
            owned: true,
        };
        println!("starting the control plane (tests/controlplane/cluster.sh up)");
        let out = cluster
            .script_command("up")
            .output()
            .context("cannot run tests/controlplane/cluster.sh")?;
        ensure!(
            out.status.success(),
            "cluster.sh up failed ({}): {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 25)
        );
        Ok(cluster)
    }

    fn script_command(&self, action: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(repo_root().join("tests/controlplane/cluster.sh"))
            .arg(action)
            .env("PULLSECRET_INJECTOR_CLUSTER_DIR", &self.dir)
            .stdin(Stdio::null());
        command
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    pub fn env_file(&self) -> PathBuf {
        self.dir.join("cluster.env")
    }

    fn kubectl_command(&self) -> Command {
        let mut command = Command::new(self.bin_dir().join("kubectl"));
        command
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--request-timeout=30s")
            .stdin(Stdio::null());
        command
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let Err(error) = self.stop() {
            eprintln!("warning: {error:#}");
        }
    }
}

impl Cluster {
    /// Whether the suite started this cluster (and so stops it).
    pub fn owned(&self) -> bool {
        self.owned
    }

    /// The state directory of the running cluster (its processes' command lines name it).
    pub fn state_dir(&self) -> Option<PathBuf> {
        std::fs::read_to_string(self.dir.join("cluster.state-dir"))
            .ok()
            .map(|dir| PathBuf::from(dir.trim()))
    }

    /// `cluster.sh down`, then what it must have left: no process, mount, bridge, nftables
    /// table or node owner record of this cluster. Only for a cluster the suite started.
    pub fn stop_and_check(mut self) -> Result<()> {
        ensure!(self.owned, "the suite did not start this cluster");
        let state = self.state_dir().context("no state dir recorded")?;
        // The node's machine-wide parts are this cluster's only when it ran a node.
        let had_node = state.join("node.env").exists();
        self.owned = false;
        self.stop()?;
        let mut left = Vec::new();
        let needle = state.to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        left.extend(
            mounts
                .lines()
                .filter(|line| line.contains(&needle))
                .map(|line| format!("mount {line}")),
        );
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle) {
                left.push(format!("process {}", entry.file_name().to_string_lossy()));
            }
        }
        let quiet = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        };
        if had_node {
            if quiet("ip", &["link", "show", "psi-br0"]) {
                left.push("bridge psi-br0".to_owned());
            }
            for table in [["inet", "pullsecret_injector_node"], ["ip", "kube-proxy"]] {
                if quiet("nft", &["list", "table", table[0], table[1]]) {
                    left.push(format!("nftables table {} {}", table[0], table[1]));
                }
            }
            if Path::new("/run/pullsecret-injector-node.owner").exists() {
                left.push("the node owner record".to_owned());
            }
        }
        ensure!(left.is_empty(), "cluster.sh down left: {}", left.join("; "));
        Ok(())
    }

    fn stop(&self) -> Result<()> {
        let out = self
            .script_command("down")
            .output()
            .context("cannot run cluster.sh down")?;
        ensure!(
            out.status.success(),
            "cluster.sh down failed ({}): {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 10)
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The serve process

/// `pullsecret-injector serve` on `webhook`/`admin` with the certificate in `cert_dir` and quick
/// certificate reloads; callers add shutdown timing, logging and extra flags.
pub fn serve_command(
    cert_dir: &Path,
    webhook: SocketAddr,
    admin: SocketAddr,
    kubeconfig: &Path,
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"));
    command
        .arg("serve")
        .args(["--listen", &webhook.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .arg("--tls-cert-file")
        .arg(cert_dir.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(cert_dir.join("tls.key"))
        .args(["--tls-reload-interval", "1s"])
        .env("KUBECONFIG", kubeconfig);
    command
}

/// A MutatingWebhookConfiguration named `name` that sends pod CREATEs in the namespaces
/// `namespace_selector` (YAML lines indented for the selector's body) to `serve` at `webhook`.
pub fn webhook_manifest(
    name: &str,
    webhook: SocketAddr,
    ca_pem: &[u8],
    failure_policy: &str,
    namespace_selector: &str,
) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: {name}
webhooks:
  - name: inject.pullsecret-injector.io
    admissionReviewVersions: ["v1"]
    sideEffects: None
    failurePolicy: {failure_policy}
    reinvocationPolicy: IfNeeded
    timeoutSeconds: 5
    clientConfig:
      url: https://{webhook}/mutate
      caBundle: {ca}
    rules:
      - operations: ["CREATE"]
        apiGroups: [""]
        apiVersions: ["v1"]
        resources: ["pods"]
        scope: Namespaced
    namespaceSelector:
{namespace_selector}"#,
        ca = BASE64.encode(ca_pem),
    )
}

/// The `--shutdown-delay` and `--drain-timeout` flags for these durations.
pub fn shutdown_timing(delay: Duration, drain: Duration) -> [String; 4] {
    [
        "--shutdown-delay".to_owned(),
        format!("{}s", delay.as_secs()),
        "--drain-timeout".to_owned(),
        format!("{}s", drain.as_secs()),
    ]
}

pub struct Serve {
    child: Child,
    pub admin: SocketAddr,
    pub webhook: SocketAddr,
    pub log: PathBuf,
}

impl Serve {
    pub(super) fn spawn(
        work: &Path,
        kubeconfig: &Path,
        name: &str,
        extra: &[String],
        attempt: usize,
        webhook: SocketAddr,
    ) -> Result<Serve> {
        let admin = free_port()?;
        let log = work.join(format!("{name}-{attempt}.log"));
        let log_file = File::create(&log)?;
        let child = serve_command(&work.join("certs"), webhook, admin, kubeconfig)
            .args(shutdown_timing(SHUTDOWN_DELAY, DRAIN_TIMEOUT))
            .args(["--log-format", "json", "--log-level", "debug"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("cannot start pullsecret-injector serve")?;
        Ok(Serve {
            child,
            admin,
            webhook,
            log,
        })
    }

    /// Starts `serve` on `webhook` (log `NAME-N.log`, `extra` arguments appended) and waits for
    /// `/readyz` 200; retries with new ports if one was taken (the caller compares
    /// `Serve::webhook` with the address it asked for).
    pub(super) fn start(
        work: &Path,
        kubeconfig: &Path,
        name: &str,
        extra: &[String],
        webhook: SocketAddr,
    ) -> Result<Serve> {
        let mut last_error = anyhow!("not started");
        for attempt in 1..=3 {
            let webhook = if attempt == 1 { webhook } else { free_port()? };
            let mut serve = Serve::spawn(work, kubeconfig, name, extra, attempt, webhook)?;
            match serve.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return Ok(serve),
                Err(error) => {
                    let log = std::fs::read_to_string(&serve.log).unwrap_or_default();
                    last_error = error.context(format!("serve log tail: {}", tail(&log, 8)));
                    if !log.contains("cannot listen") {
                        break;
                    }
                }
            }
        }
        Err(last_error)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let admin = self.admin;
        poll("serve /readyz 200", timeout, || {
            if let Some(status) = self.child.try_wait()? {
                bail!("serve exited early with {status}");
            }
            Ok(http_get(admin, "/readyz")
                .ok()
                .filter(|(code, _)| *code == 200)
                .map(|_| ()))
        })
        .map_err(|error| error.context("serve did not become ready"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn send_sigterm(&self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        ensure!(
            status.success(),
            "kill -TERM {} failed: {status}",
            self.pid()
        );
        Ok(())
    }

    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "serve (pid {}) still running after {:.1}s",
                    self.pid(),
                    timeout.as_secs_f64()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = self.send_sigterm();
        if self
            .wait_exit(SHUTDOWN_DELAY + DRAIN_TIMEOUT + Duration::from_secs(3))
            .is_err()
        {
            eprintln!(
                "warning: serve (pid {}) ignored SIGTERM; killing it",
                self.pid()
            );
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(super) fn free_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

// ---------------------------------------------------------------------------------------------
// The chart release

/// Namespace label no namespace carries: ANDed into the chart's own webhook configuration so it
/// never calls `serve` (the suite's configuration does).
pub(super) const NEVER_LABEL: &str = "e2e.pullsecret-injector.io/never";

pub fn chart_dir() -> PathBuf {
    repo_root().join("charts").join("pullsecret-injector")
}

/// Names of this run's release of charts/pullsecret-injector.
pub struct ChartRelease {
    pub release: String,
    pub namespace: String,
    /// The release fullname (`<release>-pullsecret-injector`), which names the ServiceAccount.
    pub service_account: String,
}

impl ChartRelease {
    pub(super) fn new(run_id: &str) -> ChartRelease {
        let release = format!("e2e-injector-{run_id}");
        ChartRelease {
            namespace: release.clone(),
            service_account: format!("{release}-pullsecret-injector"),
            release,
        }
    }

    /// The ServiceAccount's user name, for `--as`.
    pub fn user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}
