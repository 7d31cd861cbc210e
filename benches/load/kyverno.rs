//! Kyverno, for the side-by-side pod-create comparison: built from the Go module proxy by
//! `tests/controlplane/build-kyverno.sh` (cached like the control plane), and run out of cluster
//! against the bench's control plane the way Kyverno's own development setup runs it
//! (`--kubeconfig`, `--serverIP`; its CRDs installed from the module's `config/crds`), with a
//! ClusterPolicy doing the bench configuration's job: add the `imagePullSecrets` for the
//! registries of the pod's images (Kyverno's "add imagePullSecrets" sample, one rule per
//! registry the bench namespaces hold a secret for).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::procs::{self, Cluster, Process};

/// Namespaces labelled so are the only ones Kyverno's webhooks are called for (its `webhooks`
/// setting), like the bench webhook's own label.
pub const SELECT_LABEL: &str = "bench.pullsecret-injector.io/kyverno";
const NAMESPACE: &str = "kyverno";

/// The ClusterPolicy: for the bench pod (`registry0.example.com/...`, `nginx`,
/// `quay.io/org3/...`) it adds `secret-00000` and `secret-00003`, as pullsecret-injector does
/// with the overhead namespaces' ten secrets.
const POLICY: &str = r#"apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: bench-add-imagepullsecrets
spec:
  rules:
  - name: registry0
    match:
      any:
      - resources:
          kinds: [Pod]
    mutate:
      patchStrategicMerge:
        spec:
          containers:
          - <(image): "registry0.example.com/*"
          imagePullSecrets:
          - name: secret-00000
  - name: quay-org3
    match:
      any:
      - resources:
          kinds: [Pod]
    mutate:
      patchStrategicMerge:
        spec:
          containers:
          - <(image): "quay.io/org3/*"
          imagePullSecrets:
          - name: secret-00003
"#;

/// A running Kyverno admission controller.
pub struct Kyverno {
    pub process: Process,
}

/// Builds (or finds cached) Kyverno: the directory holding `bin/kyverno` and `crds/`.
pub fn build(repo: &Path) -> Result<PathBuf> {
    let out = Command::new("bash")
        .arg(repo.join("tests/controlplane/build-kyverno.sh"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("run build-kyverno.sh")?;
    if !out.status.success() {
        bail!("build-kyverno.sh failed: {}", out.status);
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn kubectl(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> Result<()> {
    let kubectl = cluster.kubeconfig().with_file_name("bin").join("kubectl");
    let mut command = Command::new(kubectl);
    command
        .args(args)
        .env("KUBECONFIG", cluster.kubeconfig())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().context("run kubectl")?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Installs Kyverno's CRDs and configuration, starts it and applies the policy; returns once
/// the policy is ready (the caller probes that pods are mutated).
pub async fn start(kyverno_dir: &Path, work: &Path, cluster: &Cluster) -> Result<Kyverno> {
    let crds = kyverno_dir.join("crds");
    let crds = crds.to_str().context("CRD path")?;
    kubectl(
        cluster,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-R",
            "-f",
            crds,
        ],
        None,
    )?;
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=120s",
            "crd",
            "--all",
        ],
        None,
    )?;
    // Its namespace and the ConfigMap it reads its settings from: the webhooks only for
    // namespaces carrying SELECT_LABEL (everything else at Kyverno's defaults).
    let config = format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: kyverno
  namespace: {NAMESPACE}
data:
  webhooks: '{{"namespaceSelector":{{"matchLabels":{{"{SELECT_LABEL}":"on"}}}}}}'
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: kyverno-metrics
  namespace: {NAMESPACE}
"#
    );
    kubectl(cluster, &["apply", "-f", "-"], Some(&config))?;

    let webhook = procs::free_addr()?;
    let metrics = procs::free_addr()?;
    let mut command = Command::new(kyverno_dir.join("bin/kyverno"));
    command
        .arg(format!("--kubeconfig={}", cluster.kubeconfig().display()))
        .arg(format!("--serverIP={webhook}"))
        .arg(format!("--webhookServerHost={}", webhook.ip()))
        .arg(format!("--webhookServerPort={}", webhook.port()))
        .arg(format!("--metricsHost={}", metrics.ip()))
        .arg(format!("--metricsPort={}", metrics.port()))
        .arg("--controllerRuntimeMetricsAddress=0")
        .arg("--backgroundServiceAccountName=system:serviceaccount:kyverno:kyverno-background-controller")
        .arg("--reportsServiceAccountName=system:serviceaccount:kyverno:kyverno-reports-controller")
        .arg("--caSecretName=kyverno-svc.kyverno.svc.kyverno-tls-ca")
        .arg("--tlsSecretName=kyverno-svc.kyverno.svc.kyverno-tls-pair")
        .env("KYVERNO_NAMESPACE", NAMESPACE)
        .env("KYVERNO_SERVICEACCOUNT_NAME", "kyverno-admission-controller")
        .env("KYVERNO_DEPLOYMENT", "kyverno-admission-controller")
        .env("KYVERNO_POD_NAME", "kyverno-bench")
        .env("INIT_CONFIG", "kyverno")
        .env("METRICS_CONFIG", "kyverno-metrics");
    let process = Process::spawn("kyverno", command, &work.join("kyverno.log"))?;
    let mut kyverno = Kyverno { process };
    wait_listening(&mut kyverno, webhook).await?;
    // It serves TLS with a certificate its certificate controller writes into this Secret
    // (until then every handshake fails).
    kubectl(
        cluster,
        &[
            "wait",
            "--for=create",
            "--timeout=180s",
            "--namespace",
            NAMESPACE,
            "secret/kyverno-svc.kyverno.svc.kyverno-tls-pair",
        ],
        None,
    )?;
    kubectl(cluster, &["apply", "-f", "-"], Some(POLICY))?;
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Ready",
            "--timeout=120s",
            "clusterpolicy/bench-add-imagepullsecrets",
        ],
        None,
    )?;
    Ok(kyverno)
}

/// Kyverno makes its certificates and registers its webhooks before it listens.
async fn wait_listening(kyverno: &mut Kyverno, addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        kyverno.process.check_alive()?;
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("kyverno did not listen on {addr} within 180 s (see target/bench/kyverno.log)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
