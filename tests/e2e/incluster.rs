//! The chart, running as Pods on the node: its image (made by `hack/image.sh`) pulled from a
//! registry that requires auth through the chart's own `imagePullSecrets`, its certificates,
//! probes and ServiceAccount, and the apiserver calling it through its Service. Then a rollout
//! and a lost replica while pods are created, the controller from inside the cluster, an
//! upgrade to namespaced mode, and an uninstall that leaves pod creation working — all in a
//! namespace that enforces the `restricted` Pod Security Standard.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::harness::{
    Suite, chart_dir, condition, expect_secrets, is_ready, minted_cluster_pull_secret_manifest,
    poll, pull_secrets, secret, tail, wait_running,
};
use crate::node::Registry;
use crate::scenarios::Outcome;

const ROLLOUT_TIMEOUT: &str = "300s";
const CONVERGENCE: Duration = Duration::from_secs(120);
/// Longer than helm's own --timeout, so helm reports a stuck rollout first.
const DISRUPTION_TIMEOUT: Duration = Duration::from_secs(420);
/// The label that makes a namespace enforce the `restricted` Pod Security Standard: the chart
/// is installed into such namespaces, so its pods (and its hook Jobs' pods) must pass it.
pub const RESTRICTED: (&str, &str) = ("pod-security.kubernetes.io/enforce", "restricted");

/// The namespace really enforces `restricted`: a pod without the hardening it requires is
/// refused there.
pub fn expect_restricted_enforced(s: &Suite, namespace: &str) -> Result<()> {
    let out = s.kubectl_raw(
        &[
            "run",
            "unhardened",
            "-n",
            namespace,
            "--image=registry.invalid/probe:1",
            "--restart=Never",
            "--dry-run=server",
        ],
        None,
    )?;
    ensure!(
        !out.status.success() && out.stderr.contains("PodSecurity"),
        "an unhardened pod was not refused by Pod Security in {namespace}: {}",
        out.stderr.trim()
    );
    Ok(())
}

pub struct Release<'a> {
    pub s: &'a Suite,
    pub name: String,
    pub namespace: String,
    pub installed: bool,
}

impl Release<'_> {
    fn args<'b>(&'b self, verb: &'b str, chart: &'b str, extra: &[&'b str]) -> Vec<&'b str> {
        let mut args = vec![verb, self.name.as_str()];
        if verb != "uninstall" {
            args.push(chart);
        }
        args.extend([
            "-n",
            self.namespace.as_str(),
            "--wait",
            "--timeout",
            ROLLOUT_TIMEOUT,
        ]);
        args.extend_from_slice(extra);
        args
    }

    /// Runs helm VERB on the release (with --wait); returns what it printed on stderr.
    pub fn helm(&self, verb: &str, extra: &[&str]) -> Result<String> {
        let chart = chart_dir().to_string_lossy().into_owned();
        self.helm_chart(verb, &chart, extra)
    }

    /// [`Release::helm`] with another chart (an `oci://` reference).
    pub fn helm_chart(&self, verb: &str, chart: &str, extra: &[&str]) -> Result<String> {
        Ok(self.s.helm(&self.args(verb, chart, extra))?.stderr)
    }

    /// Runs helm VERB while `create_pods` admits pods; fails if helm or any pod failed.
    pub fn helm_under_load(&self, verb: &str, extra: &[&str], load: &Load) -> Result<usize> {
        let chart = chart_dir().to_string_lossy().into_owned();
        self.helm_chart_under_load(verb, &chart, extra, load)
    }

    /// [`Release::helm_under_load`] with another chart (an `oci://` reference).
    pub fn helm_chart_under_load(
        &self,
        verb: &str,
        chart: &str,
        extra: &[&str],
        load: &Load,
    ) -> Result<usize> {
        let mut child = self
            .s
            .helm_command(&self.args(verb, chart, extra))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run helm")?;
        let created = load.run(self.s, || Ok(child.try_wait()?.is_some()));
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "helm {verb} failed: {}",
            tail(&String::from_utf8_lossy(&out.stderr), 10)
        );
        created
    }

    /// `kubectl scale` of the release's Deployment (outside helm: the next upgrade resets it).
    pub fn scale(&self, replicas: u32) -> Result<()> {
        let replicas = format!("--replicas={replicas}");
        let args = [
            "scale",
            "deployment",
            &self.name,
            "-n",
            &self.namespace,
            &replicas,
        ];
        self.s.kubectl(&args)?;
        Ok(())
    }

    /// The Deployment's pods (not the hook Jobs').
    pub fn pods(&self) -> Result<Vec<Value>> {
        let list = self.s.get_json(&[
            "pods",
            "-n",
            &self.namespace,
            "-l",
            &format!(
                "app.kubernetes.io/name=pullsecret-injector,app.kubernetes.io/instance={}",
                self.name
            ),
        ])?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until exactly `replicas` pods run, all ready, and returns their names.
    pub fn wait_ready(&self, replicas: usize) -> Result<Vec<String>> {
        poll(
            &format!("{replicas} ready replicas of {}", self.name),
            CONVERGENCE,
            || {
                let pods = self.pods()?;
                let ready: Vec<String> = pods
                    .iter()
                    .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
                    .filter(|pod| is_ready(pod))
                    .filter_map(|pod| pod["metadata"]["name"].as_str().map(str::to_owned))
                    .collect();
                Ok((ready.len() == replicas && pods.len() == replicas).then_some(ready))
            },
        )
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if self.installed {
            let uninstall = [
                "uninstall",
                self.name.as_str(),
                "-n",
                &self.namespace,
                "--wait",
            ];
            // A failed scenario may leave a pre-delete hook that cannot finish.
            if self.s.helm(&uninstall).is_err() {
                let _ = self.s.helm(&[&uninstall[..], &["--no-hooks"]].concat());
            }
        }
    }
}

/// Pods created (server-side dry run, so admitted by the webhook) in a loop during a disruption.
pub struct Load<'a> {
    pub namespace: &'a str,
    pub image: &'a str,
    pub expected: &'a [&'a str],
}

impl Load<'_> {
    /// Creates pods until `done` says so (at least one); each must get `expected`. Returns how
    /// many were created.
    pub fn run(&self, s: &Suite, mut done: impl FnMut() -> Result<bool>) -> Result<usize> {
        let deadline = Instant::now() + DISRUPTION_TIMEOUT;
        let mut created = 0;
        loop {
            ensure!(
                Instant::now() < deadline,
                "the disruption did not end within {DISRUPTION_TIMEOUT:?}"
            );
            let got = s.dry_run_pull_secrets(self.namespace, self.image)?;
            ensure!(
                got == self.expected,
                "pod #{created} during the disruption got {got:?}, expected {:?}",
                self.expected
            );
            created += 1;
            if done()? {
                return Ok(created);
            }
        }
    }
}

/// The injector's image as a tarball (hack/image.sh with the binary under test), made once per
/// run.
pub fn injector_image_tarball(s: &Suite) -> Result<std::path::PathBuf> {
    let tarball = s.work_path().join("pullsecret-injector-image.tar");
    if tarball.is_file() {
        return Ok(tarball);
    }
    let out = Command::new("bash")
        .arg(crate::harness::repo_root().join("hack/image.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_pullsecret-injector")])
        .arg(&tarball)
        .output()
        .context("cannot run hack/image.sh")?;
    ensure!(
        out.status.success(),
        "hack/image.sh failed: {}",
        tail(&String::from_utf8_lossy(&out.stderr), 10)
    );
    Ok(tarball)
}

const JCR_PLUGIN: &str = "jdcloud-jcr-credential-provider";

/// The credential-providers image as a tarball (`hack/image.sh --credential-providers` with
/// the plugins under test), made once per run.
fn credential_providers_image_tarball(s: &Suite) -> Result<std::path::PathBuf> {
    let tarball = s.work_path().join("credential-providers-image.tar");
    if tarball.is_file() {
        return Ok(tarball);
    }
    let built = std::path::Path::new(env!("CARGO_BIN_EXE_jdcloud-jcr-credential-provider"))
        .parent()
        .context("the plugins' directory")?;
    let out = Command::new("bash")
        .arg(crate::harness::repo_root().join("hack/image.sh"))
        .arg("--credential-providers")
        .arg("--binary")
        .arg(built)
        .arg(&tarball)
        .output()
        .context("cannot run hack/image.sh")?;
    ensure!(
        out.status.success(),
        "hack/image.sh --credential-providers failed: {}",
        tail(&String::from_utf8_lossy(&out.stderr), 10)
    );
    Ok(tarball)
}

pub fn chart_in_cluster(s: &Suite) -> Result<Outcome> {
    let registry = Registry::start(s, "chart")?;
    let tarball = injector_image_tarball(s)?;
    let injector_image = registry.push_tarball(&tarball, "pullsecret-injector:e2e")?;
    let app_image = registry.push_busybox("shop/web:1")?;
    let repository = injector_image.trim_end_matches(":e2e").to_owned();

    let covered = format!("e2e.pullsecret-injector.io/incluster-{}", s.run_id);
    let namespace = s.foreign_namespace("incluster", &[RESTRICTED])?;
    expect_restricted_enforced(s, &namespace)?;
    registry.secret(s, &namespace, "injector-pull")?;
    let mut release = Release {
        s,
        name: format!("pullsecret-injector-{}", s.run_id),
        namespace,
        installed: true,
    };
    let warnings = release.helm(
        "install",
        &[
            "--set",
            &format!("image.repository={repository}"),
            "--set",
            "image.tag=e2e",
            "--set",
            "imagePullSecrets[0].name=injector-pull",
            "--set",
            "shutdownDelay=2s",
            "--set-json",
            &format!(
                r#"webhook.extraNamespaceSelectorExpressions=[{{"key":"{covered}","operator":"Exists"}}]"#
            ),
        ],
    )?;
    ensure!(
        !warnings.contains("Warning"),
        "helm install printed warnings: {}",
        warnings.trim()
    );
    let replicas = release.wait_ready(2)?;
    for pod in release.pods()? {
        ensure!(
            pull_secrets(&pod) == ["injector-pull"],
            "the injector's own pod has imagePullSecrets {:?}",
            pull_secrets(&pod)
        );
        ensure!(
            pod["spec"]["containers"][0]["image"] == injector_image.as_str(),
            "the injector runs image {}",
            pod["spec"]["containers"][0]["image"]
        );
    }

    // An application namespace covered by the in-cluster webhook only.
    let app = s.foreign_namespace("incluster-app", &[(&covered, "true")])?;
    registry.secret(s, &app, "shop-registry")?;
    poll(
        "the in-cluster webhook to inject shop-registry",
        CONVERGENCE,
        || Ok((s.dry_run_pull_secrets(&app, &app_image)? == ["shop-registry"]).then_some(())),
    )?;
    s.run_pod(&app, "web", &app_image, &[])?;
    expect_secrets(&wait_running(s, &app, "web")?, &["shop-registry"])?;

    // A rollout while pods are created: every pod admitted with its secret.
    let load = Load {
        namespace: &app,
        image: &app_image,
        expected: &["shop-registry"],
    };
    let created = release.helm_under_load(
        "upgrade",
        &["--reuse-values", "--set", "logLevel=debug"],
        &load,
    )?;
    let after_rollout = release.wait_ready(2)?;
    ensure!(
        after_rollout.iter().all(|name| !replicas.contains(name)),
        "the upgrade did not replace the replicas ({replicas:?} -> {after_rollout:?})"
    );
    println!("  {created} pods admitted with their secret during the rollout");

    // One replica evicted under load (the PDB allows it: two are healthy): the other serves.
    let victim = after_rollout[0].clone();
    let eviction = format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{victim}","namespace":"{}"}}}}"#,
        release.namespace
    );
    let out = s.kubectl_raw(
        &[
            "create",
            "--raw",
            &format!(
                "/api/v1/namespaces/{}/pods/{victim}/eviction",
                release.namespace
            ),
            "-f",
            "-",
        ],
        Some(&eviction),
    )?;
    ensure!(
        out.status.success(),
        "eviction of {victim} refused: {}",
        out.stderr.trim()
    );
    let created = load.run(s, || {
        let pods = release.pods()?;
        let ready = pods.iter().filter(|pod| is_ready(pod)).count();
        let gone = pods
            .iter()
            .all(|pod| pod["metadata"]["name"] != victim.as_str());
        Ok(gone && ready == 2)
    })?;
    release.wait_ready(2)?;
    println!("  {created} pods admitted with their secret while a replica was replaced");

    // The controller, from inside the cluster: the Lease holder is one of the chart's pods and
    // copies a ClusterPullSecret's source into a namespace it selects. With it, the vendor
    // plugins from the credential-providers image (copied by the chart's init container) and
    // their keys from a Secret.
    let plugins_image = registry.push_tarball(
        &credential_providers_image_tarball(s)?,
        "credential-providers:e2e",
    )?;
    s.kubectl(&[
        "create",
        "secret",
        "generic",
        "jcr-keys",
        "-n",
        &release.namespace,
        "--from-literal=access-key=AKE2EINCLUSTER",
        "--from-literal=secret-key=e2e-incluster-secret",
    ])?;
    let provider_config = serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [{
            "name": JCR_PLUGIN,
            "matchImages": ["*.jcr.service.jdcloud.com"],
            "defaultCacheDuration": "11h",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            // Nothing listens there in the pod: a run that got its keys fails to connect.
            "args": ["--endpoint", "http://127.0.0.1:9"],
        }],
    });
    let key = |name: &str, key: &str| serde_json::json!({"name": name, "valueFrom": {"secretKeyRef": {"name": "jcr-keys", "key": key}}});
    let provider_env = serde_json::json!([
        key("JDCLOUD_ACCESS_KEY", "access-key"),
        key("JDCLOUD_SECRET_KEY", "secret-key"),
    ]);
    release.helm(
        "upgrade",
        &[
            "--reuse-values",
            "--set",
            "controller.enabled=true",
            "--set",
            &format!("credentialProviders.image={plugins_image}"),
            "--set-json",
            &format!("credentialProviders.config={provider_config}"),
            "--set-json",
            &format!("credentialProviders.env={provider_env}"),
        ],
    )?;
    let pods = release.wait_ready(2)?;
    let source = s.foreign_namespace("incluster-source", &[])?;
    registry.secret(s, &source, "corp-source")?;
    let select = format!("e2e.pullsecret-injector.io/incluster-corp-{}", s.run_id);
    let cps = format!("e2e-incluster-{}", s.run_id);
    s.cluster_pull_secret(
        &cps,
        (&source, "corp-source"),
        (&select, "true"),
        "corp-pull",
    )?;
    let target = s.foreign_namespace("incluster-corp", &[(&select, "true"), (&covered, "true")])?;
    poll("the in-cluster controller's copy", CONVERGENCE, || {
        Ok(secret(s, &target, "corp-pull")?.map(|_| ()))
    })?;
    let lease = s.get_json(&[
        "lease",
        &format!("{}-controller", release.name),
        "-n",
        &release.namespace,
    ])?;
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or_default();
    ensure!(
        pods.iter().any(|pod| pod == holder),
        "the Lease is held by {holder:?}, not one of the chart's pods {pods:?}"
    );
    s.run_pod(&target, "web", &app_image, &[])?;
    expect_secrets(&wait_running(s, &target, "web")?, &["corp-pull"])?;
    s.delete_cluster_pull_secret(&cps)?;

    // The JCR plugin runs in the webhook container: with its keys from the Secret it gets as
    // far as the vendor's API (exit 3, unreachable), where without them it would stop at 2.
    let jcr = format!("e2e-incluster-jcr-{}", s.run_id);
    s.apply(&minted_cluster_pull_secret_manifest(
        &jcr,
        (&source, "jcr-minted"),
        (
            JCR_PLUGIN,
            "myregistry-cn-north-1.jcr.service.jdcloud.com/team/app:1",
        ),
        (&select, "true"),
        "jcr-pull",
    ))?;
    let message = poll(
        "the in-cluster JCR plugin's run in the status",
        CONVERGENCE,
        || {
            let resource = s.get_json(&["clusterpullsecret", &jcr])?;
            Ok(condition(&resource, "CredentialMinted")
                .filter(|(status, _, message)| status == "False" && message.contains("code"))
                .map(|(_, _, message)| message))
        },
    )?;
    ensure!(
        message.contains("code 3")
            && message.contains("JD Cloud API at http://127.0.0.1:9 unreachable"),
        "the plugin did not reach its API call: {message}"
    );
    ensure!(
        !message.contains("e2e-incluster-secret"),
        "the secret key in the status"
    );
    s.delete_cluster_pull_secret(&jcr)?;

    // Namespaced mode, from inside the cluster: only the app namespace is served; a covered
    // namespace not listed gets nothing, although it has a matching Secret.
    registry.secret(s, &target, "target-registry")?;
    release.helm(
        "upgrade",
        &["--reuse-values", "--set", &format!("namespaces={{{app}}}")],
    )?;
    release.wait_ready(2)?;
    poll(
        "the namespaced in-cluster webhook to inject shop-registry",
        CONVERGENCE,
        || Ok((s.dry_run_pull_secrets(&app, &app_image)? == ["shop-registry"]).then_some(())),
    )?;
    admitted_without_injection(s, &target, &app_image)
        .context("a pod of a covered namespace outside `namespaces`")?;

    // Uninstalled: pods are created as before, without injection.
    release.helm("uninstall", &[])?;
    release.installed = false;
    admitted_without_injection(s, &app, &app_image).context("a pod after uninstall")?;
    Ok(Outcome::Passed)
}

/// A server-side dry-run pod in `namespace` is admitted, with no pull secret added.
pub fn admitted_without_injection(s: &Suite, namespace: &str, image: &str) -> Result<()> {
    let got = s.dry_run_pull_secrets(namespace, image)?;
    ensure!(got.is_empty(), "admitted with imagePullSecrets {got:?}");
    Ok(())
}
