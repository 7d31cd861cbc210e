//! The suite's machinery: the cluster, the `serve` process, kubectl, the admin HTTP client,
//! polling, and the record of every credential the suite created (for the leak check).

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

/// Label that puts a namespace under this run's webhook configuration.
pub const SUITE_LABEL: &str = "e2e.pullsecret-injector.io/suite";
pub const INJECT_LABEL: &str = "pullsecret-injector.io/inject";
pub const INJECTED_ANNOTATION: &str = "pullsecret-injector.io/injected";
pub const SHUTDOWN_DELAY: Duration = Duration::from_secs(2);
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const PULL_SECRET_TYPES: [(&str, &str); 2] = [
    ("kubernetes.io/dockerconfigjson", ".dockerconfigjson"),
    ("kubernetes.io/dockercfg", ".dockercfg"),
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Cluster

/// The control plane the suite runs against. Stopped on drop when the suite started it.
pub struct Cluster {
    pub dir: PathBuf,
    owned: bool,
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
        match self.script_command("down").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "warning: cluster.sh down failed ({}): {}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 10)
            ),
            Err(error) => eprintln!("warning: cannot run cluster.sh down: {error}"),
        }
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
    fn spawn(
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
    fn start(
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

fn free_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

// ---------------------------------------------------------------------------------------------
// The chart release

/// Namespace label no namespace carries: ANDed into the chart's own webhook configuration so it
/// never calls `serve` (the suite's configuration does).
const NEVER_LABEL: &str = "e2e.pullsecret-injector.io/never";

fn chart_dir() -> PathBuf {
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
    fn new(run_id: &str) -> ChartRelease {
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

/// The result of one kubectl call.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Lines kubectl printed as `Warning: ...` (admission warnings).
    pub fn warnings(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|line| line.starts_with("Warning:"))
            .collect()
    }
}

impl Suite {
    pub fn start(cluster: &Cluster) -> Result<Suite> {
        let run_id = random_hex(8);
        let work = tempfile::Builder::new()
            .prefix("pullsecret-injector-e2e.")
            .tempdir()?;
        let suite = Suite {
            webhook_name: format!("pullsecret-injector-e2e-{run_id}"),
            chart: ChartRelease::new(&run_id),
            chart_installed: Cell::new(false),
            run_id,
            kubeconfig: cluster.kubeconfig(),
            bin_dir: cluster.bin_dir(),
            cluster_dir: cluster.dir.clone(),
            env_file: cluster.env_file(),
            reuse_cluster: !cluster.owned,
            work_path: work.path().to_owned(),
            work: RefCell::new(Some(work)),
            keep_work: Cell::new(std::env::var_os("PULLSECRET_INJECTOR_E2E_KEEP").is_some()),
            serve: RefCell::new(None),
            admin: Cell::new(None),
            record: RefCell::new(Record::default()),
            injected_pods: Cell::new(0),
            injected_refs: Cell::new(0),
            unique: Cell::new(0),
        };
        // From here on the suite's Drop cleans up whatever the steps below managed to start.
        suite.generate_certificates()?;
        suite.install_crds()?;
        suite.start_serve()?;
        suite.register_webhook()?;
        suite.wait_webhook_active()?;
        Ok(suite)
    }

    fn generate_certificates(&self) -> Result<()> {
        let out = Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"))
            .arg("certs")
            .arg("--out-dir")
            .arg(self.work_path.join("certs"))
            .args(["--ip", "127.0.0.1"])
            .stdin(Stdio::null())
            .output()?;
        ensure!(
            out.status.success(),
            "pullsecret-injector certs failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        for file in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
            ensure!(
                self.cert_path(file).is_file(),
                "pullsecret-injector certs did not write {file}"
            );
        }
        Ok(())
    }

    pub fn cert_path(&self, file: &str) -> PathBuf {
        self.work_path.join("certs").join(file)
    }

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
        ]
        .map(str::to_owned)
        .to_vec()
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

    /// Installs the chart's CRDs (`charts/pullsecret-injector/crds/`) and waits until the
    /// apiserver serves them, so the webhook's watches of them can sync.
    fn install_crds(&self) -> Result<()> {
        let dir = repo_root().join("charts/pullsecret-injector/crds");
        let dir = dir.to_string_lossy();
        self.kubectl(&["apply", "-f", &dir])?;
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            &dir,
        ])?;
        Ok(())
    }

    /// Installs the chart, then runs `serve` as the chart's ServiceAccount (a token from
    /// `kubectl create token`), not as the cluster admin: the chart's RBAC must be enough.
    fn start_serve(&self) -> Result<()> {
        let port = free_port()?;
        self.install_chart(port)?;
        let kubeconfig = self.serviceaccount_kubeconfig()?;
        let serve = Serve::start(
            &self.work_path,
            &kubeconfig,
            "serve",
            &self.controller_args(&self.serve_identity()),
            port,
        )?;
        if serve.webhook != port {
            // The first port was taken; keep the chart's webhook.url truthful.
            self.helm(&[
                "upgrade",
                &self.chart.release,
                &chart_dir().to_string_lossy(),
                "-n",
                &self.chart.namespace,
                "--reuse-values",
                "--set",
                &format!("webhook.url=https://{}/mutate", serve.webhook),
            ])?;
        }
        self.record.borrow_mut().serve_logs.push(serve.log.clone());
        self.admin.set(Some(serve.admin));
        *self.serve.borrow_mut() = Some(serve);
        Ok(())
    }

    /// Runs the cluster's helm against the admin kubeconfig; fails unless it exits 0.
    fn helm(&self, args: &[&str]) -> Result<Output> {
        let helm_home = self.work_path.join("helm");
        let out = Command::new(self.bin_dir.join("helm"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HELM_CONFIG_HOME", helm_home.join("config"))
            .env("HELM_CACHE_HOME", helm_home.join("cache"))
            .env("HELM_DATA_HOME", helm_home.join("data"))
            .stdin(Stdio::null())
            .output()
            .context("cannot run helm")?;
        let out = Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        ensure!(
            out.status.success(),
            "helm {} failed ({}): {}",
            args.first().copied().unwrap_or_default(),
            out.status,
            tail(&out.stderr, 10)
        );
        Ok(out)
    }

    /// `helm install` of charts/pullsecret-injector with webhook.url at `port` and a
    /// namespaceSelector that matches nothing (the suite registers its own configuration).
    /// No `--wait`: there is no kubelet, the Deployment's pods never run.
    fn install_chart(&self, port: SocketAddr) -> Result<()> {
        let ca = std::fs::read(self.cert_path("ca.crt"))?;
        self.chart_installed.set(true);
        self.helm(&[
            "install",
            &self.chart.release,
            &chart_dir().to_string_lossy(),
            "-n",
            &self.chart.namespace,
            "--create-namespace",
            "--set",
            &format!("webhook.url=https://{port}/mutate"),
            "--set",
            &format!("webhook.caBundle={}", BASE64.encode(ca)),
            "--set",
            "replicaCount=1",
            // The suite's serve runs the ClusterPullSecret controller with this identity.
            "--set",
            "controller.enabled=true",
            "--set-json",
            &format!(
                r#"webhook.extraNamespaceSelectorExpressions=[{{"key":"{NEVER_LABEL}","operator":"Exists"}}]"#
            ),
        ])?;
        self.kubectl(&[
            "-n",
            &self.chart.namespace,
            "get",
            "serviceaccount",
            &self.chart.service_account,
        ])
        .context("the chart did not create the expected ServiceAccount")?;
        // The ClusterRoleBinding reaches the authorizer asynchronously; wait for it so serve's
        // first list calls are not refused.
        let user = self.chart.user();
        poll(
            "the chart's RBAC to allow listing secrets",
            Duration::from_secs(30),
            || {
                let out = self.kubectl_raw(
                    &["auth", "can-i", "list", "secrets", "-A", "--as", &user],
                    None,
                )?;
                Ok((out.stdout.trim() == "yes").then_some(()))
            },
        )
    }

    /// A kubeconfig with the admin kubeconfig's apiserver URL and CA and a one-hour token of
    /// the chart's ServiceAccount.
    fn serviceaccount_kubeconfig(&self) -> Result<PathBuf> {
        let token = self
            .kubectl(&[
                "-n",
                &self.chart.namespace,
                "create",
                "token",
                &self.chart.service_account,
                "--duration=1h",
            ])?
            .stdout
            .trim()
            .to_owned();
        ensure!(!token.is_empty(), "kubectl create token printed nothing");
        let admin: Value = serde_json::from_str(
            &self
                .kubectl(&["config", "view", "--raw", "--minify", "-o", "json"])?
                .stdout,
        )
        .context("kubectl config view printed no JSON")?;
        let cluster = &admin["clusters"][0]["cluster"];
        let server = cluster["server"]
            .as_str()
            .context("admin kubeconfig has no server")?;
        let ca = cluster["certificate-authority-data"]
            .as_str()
            .context("admin kubeconfig has no certificate-authority-data")?;
        let kubeconfig = format!(
            r#"apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: e2e
  context:
    cluster: e2e
    user: {user}
current-context: e2e
"#,
            user = self.chart.user(),
        );
        let path = self.work_path.join("serviceaccount.kubeconfig");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(kubeconfig.as_bytes())?;
        Ok(path)
    }

    fn register_webhook(&self) -> Result<()> {
        let webhook = self
            .serve
            .borrow()
            .as_ref()
            .map(|serve| serve.webhook)
            .context("serve not running")?;
        let ca = std::fs::read(self.cert_path("ca.crt"))?;
        let selector = format!(
            r#"      matchLabels:
        {SUITE_LABEL}: "{run}"
      matchExpressions:
        - key: {INJECT_LABEL}
          operator: NotIn
          values: ["false"]
"#,
            run = self.run_id,
        );
        let manifest = webhook_manifest(&self.webhook_name, webhook, &ca, "Ignore", &selector);
        self.apply(&manifest)?;
        Ok(())
    }

    /// The apiserver picks up a new webhook configuration asynchronously: server-side dry-run
    /// pods in a probe namespace show when the webhook is called and has the probe secret.
    fn wait_webhook_active(&self) -> Result<()> {
        let ns = self.namespace("probe", &[])?;
        self.registry_secret(&ns, "probe-cred", "probe.e2e.example:5000")?;
        poll(
            "the webhook to mutate a dry-run probe pod",
            Duration::from_secs(60),
            || {
                let injected = self.dry_run_pull_secrets(&ns, "probe.e2e.example:5000/probe:1")?;
                Ok((injected == ["probe-cred"]).then_some(()))
            },
        )
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

    // -- kubectl -------------------------------------------------------------------------------

    fn kubectl_command(&self) -> Command {
        let mut command = Command::new(self.bin_dir.join("kubectl"));
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=30s");
        command
    }

    /// Runs kubectl (optionally with stdin) and returns its output whatever the exit status.
    pub fn kubectl_raw(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let mut command = self.kubectl_command();
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().context("cannot run kubectl")?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().context("kubectl stdin")?;
            pipe.write_all(input.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        let output = Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if !output.stderr.trim().is_empty() {
            self.record
                .borrow_mut()
                .kubectl_stderr
                .push(output.stderr.clone());
        }
        Ok(output)
    }

    /// Runs kubectl and fails unless it exits 0.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        let out = self.kubectl_raw(args, None)?;
        ensure!(
            out.status.success(),
            "kubectl {} failed ({}): {}",
            args.join(" "),
            out.status,
            out.stderr.trim()
        );
        Ok(out)
    }

    /// `kubectl apply -f -` with the given manifest.
    pub fn apply(&self, manifest: &str) -> Result<Output> {
        let out = self.kubectl_raw(&["apply", "-f", "-"], Some(manifest))?;
        ensure!(
            out.status.success(),
            "kubectl apply failed ({}): {}",
            out.status,
            out.stderr.trim()
        );
        Ok(out)
    }

    pub fn get_json(&self, args: &[&str]) -> Result<Value> {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&full)?;
        serde_json::from_str(&out.stdout)
            .with_context(|| format!("kubectl {} printed no JSON", full.join(" ")))
    }

    /// Creates a namespace of this run (suite label plus `labels`) and waits for its `default`
    /// ServiceAccount, without which the apiserver rejects pods.
    pub fn namespace(&self, short: &str, labels: &[(&str, &str)]) -> Result<String> {
        let name = format!("e2e-{}-{short}", self.run_id);
        let mut manifest = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    {SUITE_LABEL}: \"{}\"\n",
            self.run_id
        );
        for (key, value) in labels {
            manifest.push_str(&format!("    {key}: \"{value}\"\n"));
        }
        self.apply(&manifest)?;
        self.record.borrow_mut().namespaces.push(name.clone());
        poll(
            &format!("ServiceAccount {name}/default"),
            Duration::from_secs(30),
            || {
                let out = self.kubectl(&[
                    "get",
                    "serviceaccount",
                    "default",
                    "-n",
                    &name,
                    "--ignore-not-found",
                    "-o",
                    "name",
                ])?;
                Ok((!out.stdout.trim().is_empty()).then_some(()))
            },
        )?;
        Ok(name)
    }

    pub fn namespaces(&self) -> Vec<String> {
        self.record.borrow().namespaces.clone()
    }

    /// A distinctive password, remembered for the leak check.
    pub fn new_password(&self, owner: &str) -> String {
        let password = format!("e2e-S3cr3t-{}", random_hex(16));
        self.remember_secret(format!("password of {owner}"), password.clone());
        password
    }

    fn remember_secret(&self, description: String, needle: String) {
        self.record
            .borrow_mut()
            .secret_needles
            .push((description, needle));
    }

    pub fn secret_needles(&self) -> Vec<(String, String)> {
        self.record.borrow().secret_needles.clone()
    }

    /// `kubectl create secret docker-registry` with a fresh password.
    pub fn registry_secret(&self, ns: &str, name: &str, server: &str) -> Result<()> {
        self.write_registry_secret(ns, name, server, false)
    }

    /// Gives an existing registry secret a fresh password (`kubectl apply`, so in place).
    pub fn rotate_registry_secret(&self, ns: &str, name: &str, server: &str) -> Result<()> {
        self.write_registry_secret(ns, name, server, true)
    }

    fn write_registry_secret(
        &self,
        ns: &str,
        name: &str,
        server: &str,
        update: bool,
    ) -> Result<()> {
        let owner = format!("secret {ns}/{name}");
        let user = format!("e2e-user-{}", random_hex(4));
        let password = self.new_password(&owner);
        self.remember_secret(
            format!("auth of {owner}"),
            BASE64.encode(format!("{user}:{password}")),
        );
        let mut args = vec![
            "create".to_owned(),
            "secret".to_owned(),
            "docker-registry".to_owned(),
            name.to_owned(),
            "-n".to_owned(),
            ns.to_owned(),
            format!("--docker-server={server}"),
            format!("--docker-username={user}"),
            format!("--docker-password={password}"),
        ];
        if update {
            args.extend([
                "--dry-run=client".to_owned(),
                "-o".to_owned(),
                "yaml".to_owned(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.kubectl(&args)?;
        if update {
            self.apply(&out.stdout)?;
        }
        self.remember_secret_data(ns, name, ".dockerconfigjson")
    }

    /// `kubectl create secret generic --type=TYPE --from-file=KEY=...` with `content`.
    pub fn pull_secret_from_file(
        &self,
        ns: &str,
        name: &str,
        secret_type: &str,
        key: &str,
        content: &str,
    ) -> Result<()> {
        let file = self.work_path.join(format!("{ns}-{name}{key}"));
        std::fs::write(&file, content)?;
        let out = self.kubectl(&[
            "create",
            "secret",
            "generic",
            name,
            "-n",
            ns,
            &format!("--type={secret_type}"),
            &format!("--from-file={key}={}", file.display()),
        ]);
        std::fs::remove_file(&file)?;
        out?;
        self.remember_secret_data(ns, name, key)
    }

    fn remember_secret_data(&self, ns: &str, name: &str, key: &str) -> Result<()> {
        let secret = self.get_json(&["secret", name, "-n", ns])?;
        let data = secret["data"][key]
            .as_str()
            .context("secret has no data")?
            .to_owned();
        self.remember_secret(format!("data of secret {ns}/{name}"), data);
        Ok(())
    }

    /// Registry-credential secrets the kubelet would read, cluster-wide (what the webhook's
    /// `cached_secrets` gauge counts).
    fn pull_secret_count(&self) -> Result<u64> {
        let list = self.get_json(&["secrets", "-A"])?;
        let items = list["items"].as_array().context("no items")?;
        Ok(items
            .iter()
            .filter(|secret| {
                PULL_SECRET_TYPES.iter().any(|(secret_type, key)| {
                    secret["type"] == *secret_type
                        && secret["data"][key]
                            .as_str()
                            .is_some_and(|data| !data.is_empty())
                })
            })
            .count() as u64)
    }

    /// Waits until the webhook's cache holds exactly the registry-credential secrets the
    /// apiserver has (the suite never deletes namespaces while running, so equal counts mean
    /// the latest changes have arrived).
    pub fn wait_cache_synced(&self) -> Result<()> {
        poll(
            "the webhook's cache to hold every pull secret",
            CACHE_SYNC_TIMEOUT,
            || {
                let expected = self.pull_secret_count()?;
                let cached = metric(&self.metrics()?, "pullsecret_injector_cached_secrets");
                Ok((cached == Some(expected as f64)).then_some(()))
            },
        )
    }

    // -- pods ----------------------------------------------------------------------------------

    /// `kubectl run NAME --image=IMAGE --restart=Never` plus `extra`; fails unless it exits 0.
    pub fn run_pod(&self, ns: &str, name: &str, image: &str, extra: &[&str]) -> Result<Output> {
        let image_arg = format!("--image={image}");
        let mut args = vec!["run", name, "-n", ns, image_arg.as_str(), "--restart=Never"];
        args.extend_from_slice(extra);
        self.kubectl(&args)
    }

    /// The imagePullSecrets a server-side dry-run pod named `probe` with `image` gets.
    pub fn dry_run_pull_secrets(&self, ns: &str, image: &str) -> Result<Vec<String>> {
        let out = self.run_pod(ns, "probe", image, &["--dry-run=server", "-o", "json"])?;
        let pod: Value = serde_json::from_str(&out.stdout)?;
        Ok(pull_secrets(&pod))
    }

    pub fn pod(&self, ns: &str, name: &str) -> Result<Value> {
        self.get_json(&["pod", name, "-n", ns])
    }

    /// Asserts the pod's exact imagePullSecrets and injected annotation.
    pub fn expect_pod(
        &self,
        ns: &str,
        name: &str,
        secrets: &[&str],
        annotation: Option<&str>,
    ) -> Result<()> {
        let pod = self.pod(ns, name)?;
        self.check_pod(&pod, secrets, annotation)
            .with_context(|| format!("pod {ns}/{name}"))
    }

    pub fn check_pod(&self, pod: &Value, secrets: &[&str], annotation: Option<&str>) -> Result<()> {
        let found = pull_secrets(pod);
        ensure!(
            found == secrets,
            "imagePullSecrets {found:?}, expected {secrets:?}"
        );
        let found_annotation = injected_annotation(pod);
        ensure!(
            found_annotation.as_deref() == annotation,
            "annotation {INJECTED_ANNOTATION} is {found_annotation:?}, expected {annotation:?}"
        );
        if let Some(annotation) = annotation {
            self.injected_pods.set(self.injected_pods.get() + 1);
            self.injected_refs
                .set(self.injected_refs.get() + annotation.split("; ").count() as u64);
        }
        Ok(())
    }

    pub fn injected_so_far(&self) -> (u64, u64) {
        (self.injected_pods.get(), self.injected_refs.get())
    }

    // -- admin port ----------------------------------------------------------------------------

    /// GET `/metrics` (must be 200); the body is checked for credentials on the way.
    pub fn metrics(&self) -> Result<String> {
        let (code, body) = http_get(self.admin_addr()?, "/metrics")?;
        ensure!(code == 200, "/metrics answered {code}");
        let mut record = self.record.borrow_mut();
        record.metrics_scraped += 1;
        let leaks: Vec<String> = record
            .secret_needles
            .iter()
            .filter(|(_, needle)| body.contains(needle.as_str()))
            .map(|(description, _)| format!("{description} appeared in /metrics"))
            .collect();
        record.metrics_leaks.extend(leaks);
        Ok(body)
    }

    pub fn metrics_leaks(&self) -> (usize, Vec<String>) {
        let record = self.record.borrow();
        (record.metrics_scraped, record.metrics_leaks.clone())
    }

    pub fn kubectl_stderr(&self) -> Vec<String> {
        self.record.borrow().kubectl_stderr.clone()
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        drop(self.serve.borrow_mut().take());
        let _ = self.kubectl_raw(
            &[
                "delete",
                "mutatingwebhookconfiguration",
                &self.webhook_name,
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
        if self.chart_installed.get() {
            let helm = self.helm(&[
                "uninstall",
                &self.chart.release,
                "-n",
                &self.chart.namespace,
                "--timeout",
                "60s",
            ]);
            if let Err(error) = helm {
                eprintln!("warning: {error:#}");
            }
            let _ = self.kubectl_raw(
                &[
                    "delete",
                    "namespace",
                    &self.chart.namespace,
                    "--ignore-not-found",
                    "--wait=false",
                ],
                None,
            );
        }
        if self.reuse_cluster {
            let selector = format!("{SUITE_LABEL}={}", self.run_id);
            let _ = self.kubectl_raw(
                &["delete", "namespace", "-l", &selector, "--wait=false"],
                None,
            );
        }
        if let Some(work) = self.work.borrow_mut().take()
            && self.keep_work.get()
        {
            println!(
                "kept the work directory (serve log, certificates): {}",
                work.keep().display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Calls `check` until it returns `Some`, at most `timeout`; errors count as "not yet" but the
/// last one is reported if time runs out.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(format!("{error:#}")),
        }
        if Instant::now() >= deadline {
            let last = last_error
                .map(|error| format!(" (last error: {error})"))
                .unwrap_or_default();
            bail!(
                "timed out after {:.0}s waiting for {what}{last}",
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.0 GET on the admin port: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no HTTP header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line: {:?}", head.lines().next()))?;
    Ok((code, body.to_owned()))
}

/// The value of one series (`name` or `name{labels}`) in a Prometheus text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

/// The sum of every series of a metric family (`name{...}`).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn pull_secrets(pod: &Value) -> Vec<String> {
    pod["spec"]["imagePullSecrets"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|entry| entry["name"].as_str().unwrap_or("<no name>").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn injected_annotation(pod: &Value) -> Option<String> {
    pod["metadata"]["annotations"][INJECTED_ANNOTATION]
        .as_str()
        .map(str::to_owned)
}

pub fn random_hex(len: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    while out.len() < len {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        hasher.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out.truncate(len);
    out
}

pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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
