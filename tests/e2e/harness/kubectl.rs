//! kubectl as the suite uses it: namespaces, registry secrets (remembered for the leak check),
//! pods, and the cache-sync wait.

use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::http::metric;
use super::util::{injected_annotation, poll, pull_secrets, random_hex};
use super::{
    INJECTED_ANNOTATION, NODE_SELECTOR_ANNOTATION, SUITE_LABEL, Suite, UNSCHEDULABLE_LABEL,
};

const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const PULL_SECRET_TYPES: [(&str, &str); 2] = [
    ("kubernetes.io/dockerconfigjson", ".dockerconfigjson"),
    ("kubernetes.io/dockercfg", ".dockercfg"),
];

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
    // -- kubectl -------------------------------------------------------------------------------

    pub fn kubectl_command(&self) -> Command {
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
    /// Deletes a ClusterPullSecret and waits until it is gone (its finalizer has run).
    pub fn delete_cluster_pull_secret(&self, name: &str) -> Result<Output> {
        self.kubectl(&[
            "delete",
            "clusterpullsecret",
            name,
            "--wait=true",
            "--timeout=60s",
        ])
    }

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

    /// `kubectl get ARGS -o json`, or `None` when the object does not exist.
    pub fn get_json_opt(&self, args: &[&str]) -> Result<Option<Value>> {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--ignore-not-found", "-o", "json"]);
        let out = self.kubectl(&full)?;
        if out.stdout.trim().is_empty() {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&out.stdout).with_context(
            || format!("kubectl {} printed no JSON", full.join(" ")),
        )?))
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
    ///
    /// Its pods are never scheduled (a node selector no node matches): the suite's images name
    /// registries that do not exist, and the node must not try to reach them.
    pub fn namespace(&self, short: &str, labels: &[(&str, &str)]) -> Result<String> {
        self.create_namespace(short, labels, true, true)
    }

    /// A namespace of this run whose pods run on the node (images of the suite's registries).
    pub fn node_namespace(&self, short: &str, labels: &[(&str, &str)]) -> Result<String> {
        self.create_namespace(short, labels, false, true)
    }

    /// A namespace whose pods run on the node and that the suite's own webhook does not cover
    /// (no suite label): for the chart's in-cluster webhook.
    pub fn foreign_namespace(&self, short: &str, labels: &[(&str, &str)]) -> Result<String> {
        self.create_namespace(short, labels, false, false)
    }

    fn create_namespace(
        &self,
        short: &str,
        labels: &[(&str, &str)],
        unschedulable: bool,
        suite_webhook: bool,
    ) -> Result<String> {
        let name = format!("e2e-{}-{short}", self.run_id);
        let mut manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n");
        if unschedulable {
            manifest.push_str(&format!(
                "  annotations:\n    {NODE_SELECTOR_ANNOTATION}: \"{UNSCHEDULABLE_LABEL}=true\"\n"
            ));
        }
        manifest.push_str("  labels:\n");
        if suite_webhook {
            manifest.push_str(&format!("    {SUITE_LABEL}: \"{}\"\n", self.run_id));
        } else {
            manifest.push_str(&format!(
                "    e2e.pullsecret-injector.io/run: \"{}\"\n",
                self.run_id
            ));
        }
        for (key, value) in labels {
            manifest.push_str(&format!("    {key}: \"{value}\"\n"));
        }
        self.apply(&manifest)?;
        self.record.borrow_mut().namespaces.push(name.clone());
        poll(
            &format!("ServiceAccount {name}/default"),
            // A bound on a hang: after an apiserver restart the controller manager's
            // ServiceAccount controller can take a while to watch again.
            Duration::from_secs(120),
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

    /// Applies [`cluster_pull_secret_manifest`].
    pub fn cluster_pull_secret(
        &self,
        name: &str,
        source: (&str, &str),
        select: (&str, &str),
        target: &str,
    ) -> Result<Output> {
        self.apply(&cluster_pull_secret_manifest(name, source, select, target))
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

    /// `kubectl create secret docker-registry` with the given login (a real registry's user).
    pub fn registry_login_secret(
        &self,
        ns: &str,
        name: &str,
        server: &str,
        user: &str,
        password: &str,
    ) -> Result<()> {
        self.write_login_secret(ns, name, server, user, password, false)
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
        self.write_login_secret(ns, name, server, &user, &password, update)
    }

    fn write_login_secret(
        &self,
        ns: &str,
        name: &str,
        server: &str,
        user: &str,
        password: &str,
        update: bool,
    ) -> Result<()> {
        let owner = format!("secret {ns}/{name}");
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
    pub fn pull_secret_count(&self) -> Result<u64> {
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

    pub fn kubectl_stderr(&self) -> Vec<String> {
        self.record.borrow().kubectl_stderr.clone()
    }
}

/// A ClusterPullSecret whose source `(namespace, name)` is minted by the credential provider
/// `plugin` for `image`, copied as `target` into the namespaces labelled `select` (key,
/// value). The provider must be in the suite's CredentialProviderConfig
/// (`Suite::configure_credential_provider`).
pub fn minted_cluster_pull_secret_manifest(
    name: &str,
    source: (&str, &str),
    (plugin, image): (&str, &str),
    select: (&str, &str),
    target: &str,
) -> String {
    format!(
        "{}  credentialProvider:
    name: {plugin}
    images: [\"{image}\"]
",
        cluster_pull_secret_manifest(name, source, select, target)
    )
}

/// A ClusterPullSecret copying `source` (namespace, name) as `target` into the namespaces
/// labelled `select` (key, value).
pub fn cluster_pull_secret_manifest(
    name: &str,
    (source_ns, source_name): (&str, &str),
    (key, value): (&str, &str),
    target: &str,
) -> String {
    format!(
        "apiVersion: pullsecret-injector.io/v1alpha1
kind: ClusterPullSecret
metadata: {{name: {name}}}
spec:
  source: {{namespace: {source_ns}, name: {source_name}}}
  namespaceSelector:
    matchLabels: {{{key}: \"{value}\"}}
  targetName: {target}
"
    )
}
