//! Bringing the suite up (certificates, CRDs, chart, `serve`, webhook registration) and
//! tearing everything it created down again.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::kubectl::Output;
use super::processes::{
    ChartRelease, Cluster, NEVER_LABEL, Serve, chart_dir, free_port, webhook_manifest,
};
use super::util::{poll, random_hex, tail};
use super::{INJECT_LABEL, Record, SUITE_LABEL, Suite, UNSCHEDULABLE_LABEL, repo_root};

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
        let kubeconfig = self.token_kubeconfig(
            &self.chart.namespace,
            &self.chart.service_account,
            "serviceaccount.kubeconfig",
        )?;
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
    pub fn helm(&self, args: &[&str]) -> Result<Output> {
        let out = self
            .helm_command(args)
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

    /// The cluster's helm with `args`, against the admin kubeconfig, not yet started.
    pub fn helm_command(&self, args: &[&str]) -> Command {
        let helm_home = self.work_path.join("helm");
        let mut command = Command::new(self.bin_dir.join("helm"));
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HELM_CONFIG_HOME", helm_home.join("config"))
            .env("HELM_CACHE_HOME", helm_home.join("cache"))
            .env("HELM_DATA_HOME", helm_home.join("data"))
            .stdin(Stdio::null());
        command
    }

    /// `helm install` of charts/pullsecret-injector with webhook.url at `port` and a
    /// namespaceSelector that matches nothing (the suite registers its own configuration).
    /// Its Deployment's pod is never scheduled (a node selector no node matches): the suite runs
    /// `serve` as a local process with the chart's identity instead.
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
            "--set-json",
            &format!(r#"nodeSelector={{"{UNSCHEDULABLE_LABEL}":"true"}}"#),
            // The suite's serve runs the ClusterPullSecret controller with this identity.
            "--set",
            "controller.enabled=true",
            // RBAC for the recovery scenarios' serve processes (pods, pods/eviction).
            "--set",
            "controller.recoverStuckPods=true",
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

    /// A kubeconfig (`file` in the work directory) with the admin kubeconfig's apiserver URL
    /// and CA and a one-hour token of the ServiceAccount `namespace/service_account`.
    pub fn token_kubeconfig(
        &self,
        namespace: &str,
        service_account: &str,
        file: &str,
    ) -> Result<PathBuf> {
        let token = self
            .kubectl(&[
                "-n",
                namespace,
                "create",
                "token",
                service_account,
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
            user = format!("system:serviceaccount:{namespace}:{service_account}"),
        );
        let path = self.work_path.join(file);
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
            // --no-hooks: the chart's pods (and so its hook Jobs, with the controller its
            // pre-delete one) are never scheduled here; the suite's serve runs outside.
            let helm = self.helm(&[
                "uninstall",
                &self.chart.release,
                "-n",
                &self.chart.namespace,
                "--timeout",
                "60s",
                "--no-hooks",
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
