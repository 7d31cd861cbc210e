//! On the node: real distribution registries with htpasswd auth on loopback ports, images
//! pushed with crane, and pods that must reach Running with the secret the webhook injected —
//! or fail with the registry's authorization error when they lack it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

use crate::harness::{
    INJECT_LABEL, START_TIMEOUT, Suite, expect_secrets, manifests, poll, secret, tail,
    wait_pull_failure, wait_running,
};
use crate::scenarios::Outcome;

/// What containerd reports when a registry asks for credentials the pull did not carry.
pub const NO_CREDENTIALS: &str = "authorization failed: no basic auth credentials";

/// The node's address (the cluster's bridge), from cluster.env.
fn node_ip(s: &Suite) -> Result<String> {
    let (env_file, _, _) = s.cluster_env();
    let env = std::fs::read_to_string(env_file)?;
    env.lines()
        .find_map(|line| line.strip_prefix("export NODE_IP="))
        .map(|ip| ip.trim_matches('\'').to_owned())
        .context("cluster.env has no NODE_IP: the cluster runs without a node")
}

fn registry_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/controlplane/registry.sh")
}

fn registry_sh(args: &[&str]) -> Result<()> {
    let out = Command::new("bash")
        .arg(registry_script())
        .args(args)
        .output()
        .context("cannot run registry.sh")?;
    ensure!(
        out.status.success(),
        "registry.sh {} failed: {}",
        args.first().unwrap_or(&""),
        tail(&String::from_utf8_lossy(&out.stderr), 10)
    );
    Ok(())
}

/// A distribution registry on 127.0.0.1 that only `user` may pull from; stopped on drop.
pub struct Registry {
    /// `127.0.0.1:PORT`
    pub host: String,
    pub user: String,
    pub password: String,
    dir: PathBuf,
}

impl Registry {
    pub fn start(s: &Suite, name: &str) -> Result<Registry> {
        Registry::launch(s, name, None)
    }

    /// A registry serving HTTPS with a certificate of its own CA (`ca_file`) on the node's
    /// address: containerd verifies certificates of every registry but localhost ones.
    pub fn start_tls(s: &Suite, name: &str) -> Result<Registry> {
        Registry::launch(s, name, Some(&node_ip(s)?))
    }

    fn launch(s: &Suite, name: &str, tls_address: Option<&str>) -> Result<Registry> {
        let dir = s.work_path().join(format!("registry-{name}"));
        let user = format!("{name}-user");
        let password = s.new_password(&format!("registry {name}"));
        let out = Command::new("bash")
            .arg(registry_script())
            .args(["start"])
            .arg(&dir)
            .args([&user, &password])
            .args(
                tls_address
                    .map(|address| ["tls", address])
                    .into_iter()
                    .flatten(),
            )
            .output()
            .context("cannot run registry.sh")?;
        ensure!(
            out.status.success(),
            "registry.sh start failed: {}",
            tail(&String::from_utf8_lossy(&out.stderr), 10)
        );
        let host = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        ensure!(
            host.rsplit_once(':')
                .is_some_and(|(_, port)| port.parse::<u16>().is_ok()),
            "registry.sh printed {host:?}"
        );
        Ok(Registry {
            host,
            user,
            password,
            dir,
        })
    }

    /// Pushes the busybox test image (it runs `sleep 3600`) as `HOST/repository`.
    pub fn push_busybox(&self, repository: &str) -> Result<String> {
        let reference = format!("{}/{repository}", self.host);
        self.script(&["push-busybox", &reference])?;
        Ok(reference)
    }

    /// Pushes an image tarball as `HOST/repository`.
    pub fn push_tarball(&self, tarball: &std::path::Path, repository: &str) -> Result<String> {
        let reference = format!("{}/{repository}", self.host);
        let tarball = tarball.to_string_lossy();
        self.script(&["push", &tarball, &reference])?;
        Ok(reference)
    }

    /// Pushes an image of one layer holding `files` (name, content) at its root as
    /// `HOST/repository`: content to mount as an image volume.
    pub fn push_files(
        &self,
        s: &Suite,
        repository: &str,
        files: &[(&str, &str)],
    ) -> Result<String> {
        let work = s
            .work_path()
            .join(format!("files-{}", repository.replace(['/', ':'], "-")));
        let root = work.join("root");
        std::fs::create_dir_all(&root)?;
        for (name, content) in files {
            std::fs::write(root.join(name), content)?;
        }
        let (layer, image) = (work.join("layer.tar"), work.join("image.tar"));
        let out = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["--owner=0", "--group=0", "--numeric-owner", "-cf"])
            .arg(&layer)
            .arg(".")
            .output()?;
        ensure!(
            out.status.success(),
            "tar failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        registry_sh(&["image", &image.to_string_lossy(), &layer.to_string_lossy()])?;
        self.push_tarball(&image, repository)
    }

    /// `registry.sh COMMAND DIR ARGS...` for this registry's DIR.
    fn script(&self, args: &[&str]) -> Result<()> {
        let dir = self.dir.to_string_lossy();
        let mut with_dir = vec![args[0], &dir];
        with_dir.extend_from_slice(&args[1..]);
        registry_sh(&with_dir)
    }

    /// `kubectl create secret docker-registry NAME --docker-server=HOST` with this registry's
    /// login.
    pub fn secret(&self, s: &Suite, ns: &str, name: &str) -> Result<()> {
        s.registry_login_secret(ns, name, &self.host, &self.user, &self.password)
    }

    /// The registry's htpasswd file (it re-reads it whenever it changes).
    pub fn htpasswd_path(&self) -> PathBuf {
        self.dir.join("htpasswd")
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The DOCKER_CONFIG directory holding this registry's login (crane, cosign, helm).
    pub fn docker_config(&self) -> PathBuf {
        self.dir.join("docker")
    }

    /// `auths` JSON value for this registry's login under `key`.
    fn auth_entry(&self) -> String {
        BASE64.encode(format!("{}:{}", self.user, self.password))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(registry_script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

fn expect_denied(message: &str) -> Result<()> {
    ensure!(
        message.contains(NO_CREDENTIALS),
        "the pull failed, but not for lack of credentials: {message}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// `kubectl create secret docker-registry` then `kubectl run` of a private image: Running with
/// the injected secret; the same pod opted out cannot pull (the registry really wants auth).
pub fn private_registry(s: &Suite) -> Result<Outcome> {
    let registry = Registry::start(s, "a")?;
    let image = registry.push_busybox("team/app:1")?;
    let ns = s.node_namespace("node-private", &[])?;
    registry.secret(s, &ns, "registry-a")?;
    s.wait_cache_synced()?;

    // The same registry as localhost:PORT, with a secret of its own for that name.
    let localhost = registry.host.replace("127.0.0.1", "localhost");
    s.registry_login_secret(
        &ns,
        "registry-a-localhost",
        &localhost,
        &registry.user,
        &registry.password,
    )?;
    s.wait_cache_synced()?;

    s.run_pod(&ns, "web", &image, &[])?;
    expect_secrets(&wait_running(s, &ns, "web")?, &["registry-a"])?;
    let by_name = image.replace("127.0.0.1", "localhost");
    s.run_pod(&ns, "web-localhost", &by_name, &[])?;
    expect_secrets(
        &wait_running(s, &ns, "web-localhost")?,
        &["registry-a-localhost"],
    )?;

    // A tag no pod pulled yet, so the pull itself is refused on every version (before 1.35
    // the kubelet starts any pod from an image already on the node: node-cached-image).
    let unpulled = registry.push_busybox("team/app:opted-out")?;
    s.run_pod(
        &ns,
        "web-opted-out",
        &unpulled,
        &[&format!("--labels={INJECT_LABEL}=false")],
    )?;
    let message = wait_pull_failure(s, &ns, "web-opted-out", "web-opted-out")?;
    expect_denied(&message)?;
    expect_secrets(&s.pod(&ns, "web-opted-out")?, &[])?;
    Ok(Outcome::Passed)
}

/// The classic `:5000` / `:6000` case: two registries on two ports with different users. One
/// pod using both images gets both secrets and runs; with only one secret it cannot start.
pub fn two_registries(s: &Suite) -> Result<Outcome> {
    let a = Registry::start(s, "first")?;
    let b = Registry::start(s, "second")?;
    let image_a = a.push_busybox("team/app:1")?;
    let image_b = b.push_busybox("team/tool:1")?;

    let both = s.node_namespace("node-both", &[])?;
    a.secret(s, &both, "registry-first")?;
    b.secret(s, &both, "registry-second")?;
    let only_first = s.node_namespace("node-one", &[])?;
    a.secret(s, &only_first, "registry-first")?;
    s.wait_cache_synced()?;

    let pod = manifests::pod(
        "app",
        json!({
            "restartPolicy": "Never",
            "containers": [
                manifests::container("first", &image_a),
                manifests::container("second", &image_b),
            ],
        }),
    )
    .to_string();
    s.kubectl_raw(&["apply", "-n", &both, "-f", "-"], Some(&pod))?;
    s.kubectl_raw(&["apply", "-n", &only_first, "-f", "-"], Some(&pod))?;

    expect_secrets(
        &wait_running(s, &both, "app")?,
        &["registry-first", "registry-second"],
    )?;
    let message = wait_pull_failure(s, &only_first, "app", "second")?;
    expect_denied(&message)?;
    expect_secrets(&s.pod(&only_first, "app")?, &["registry-first"])?;
    Ok(Outcome::Passed)
}

/// A secret for the right host but another port is not injected (ports must be equal strings):
/// the pod cannot pull, and `explain` over the cluster's state says why.
pub fn wrong_port(s: &Suite) -> Result<Outcome> {
    let registry = Registry::start(s, "port")?;
    let image = registry.push_busybox("team/app:1")?;
    let port: u32 = registry.host.rsplit(':').next().unwrap_or("0").parse()?;
    let wrong = format!(
        "127.0.0.1:{}",
        if port == 65535 { port - 1 } else { port + 1 }
    );
    let ns = s.node_namespace("node-port", &[])?;
    s.registry_login_secret(
        &ns,
        "wrong-port",
        &wrong,
        &registry.user,
        &registry.password,
    )?;
    s.wait_cache_synced()?;

    s.run_pod(&ns, "web", &image, &[])?;
    let message = wait_pull_failure(s, &ns, "web", "web")?;
    expect_denied(&message)?;
    expect_secrets(&s.pod(&ns, "web")?, &[])?;

    // What explain needs of the live cluster: the namespace and its pull secrets.
    let secrets = s
        .kubectl(&["get", "secrets", "-n", &ns, "-o", "yaml"])?
        .stdout;
    let namespace = s.kubectl(&["get", "namespace", &ns, "-o", "yaml"])?.stdout;
    let state = format!("{secrets}\n---\n{namespace}");
    let file = s.work_path().join("node-port-state.yaml");
    std::fs::write(&file, state)?;
    let out = Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"))
        .args(["explain", "--state"])
        .arg(&file)
        .args(["-n", &ns, &image])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "explain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let why = format!(
        "port differs (key {}, image {port})",
        wrong.rsplit(':').next().unwrap_or("")
    );
    ensure!(
        text.contains("wrong-port") && text.contains(&why),
        "explain does not say the port differs ({why}):\n{text}"
    );
    Ok(Outcome::Passed)
}

/// An init container from the private registry, and a Deployment's pod.
pub fn init_container_and_deployment(s: &Suite) -> Result<Outcome> {
    let registry = Registry::start(s, "init")?;
    let init = registry.push_busybox("team/init:1")?;
    let app = registry.push_busybox("team/app:1")?;
    let ns = s.node_namespace("node-init", &[])?;
    registry.secret(s, &ns, "registry-init")?;
    s.wait_cache_synced()?;

    s.kubectl_raw(
        &["apply", "-n", &ns, "-f", "-"],
        Some(
            &manifests::pod(
                "with-init",
                json!({
                    "initContainers": [
                        { "name": "prepare", "image": init, "command": ["/bin/true"] },
                    ],
                    "containers": [manifests::container("app", &app)],
                }),
            )
            .to_string(),
        ),
    )?;
    expect_secrets(&wait_running(s, &ns, "with-init")?, &["registry-init"])?;

    s.kubectl(&[
        "create",
        "deployment",
        "api",
        "-n",
        &ns,
        &format!("--image={app}"),
    ])?;
    let pod = poll("the Deployment's pod", START_TIMEOUT, || {
        let pods = s.get_json(&["pods", "-n", &ns, "-l", "app=api"])?;
        Ok(pods["items"][0]["metadata"]["name"]
            .as_str()
            .map(str::to_owned))
    })?;
    expect_secrets(&wait_running(s, &ns, &pod)?, &["registry-init"])?;
    Ok(Outcome::Passed)
}

/// A legacy `kubernetes.io/dockercfg` secret, and a path-scoped key (`HOST/team`) that serves
/// `HOST/team/...` images but not `HOST/other/...`.
pub fn legacy_and_path_keys(s: &Suite) -> Result<Outcome> {
    let legacy = Registry::start(s, "legacy")?;
    let scoped = Registry::start(s, "scoped")?;
    let legacy_image = legacy.push_busybox("team/app:1")?;
    let team_image = scoped.push_busybox("team/app:1")?;
    let other_image = scoped.push_busybox("other/app:1")?;
    let ns = s.node_namespace("node-legacy", &[])?;
    s.pull_secret_from_file(
        &ns,
        "legacy",
        "kubernetes.io/dockercfg",
        ".dockercfg",
        &format!(
            r#"{{"{}": {{"auth": "{}"}}}}"#,
            legacy.host,
            legacy.auth_entry()
        ),
    )?;
    s.pull_secret_from_file(
        &ns,
        "team-only",
        "kubernetes.io/dockerconfigjson",
        ".dockerconfigjson",
        &format!(
            r#"{{"auths": {{"{}/team": {{"auth": "{}"}}}}}}"#,
            scoped.host,
            scoped.auth_entry()
        ),
    )?;
    s.wait_cache_synced()?;

    s.run_pod(&ns, "legacy", &legacy_image, &[])?;
    s.run_pod(&ns, "team", &team_image, &[])?;
    s.run_pod(&ns, "other", &other_image, &[])?;
    expect_secrets(&wait_running(s, &ns, "legacy")?, &["legacy"])?;
    expect_secrets(&wait_running(s, &ns, "team")?, &["team-only"])?;
    expect_denied(&wait_pull_failure(s, &ns, "other", "other")?)?;
    expect_secrets(&s.pod(&ns, "other")?, &[])?;
    Ok(Outcome::Passed)
}

/// An exclusive PullSecretRule picks the working secret over a stale one discovery would also
/// offer; a ClusterPullSecret's copy, written by the suite's controller, pulls in a namespace
/// that has no secret of its own.
pub fn rule_and_cluster_pull_secret(s: &Suite) -> Result<Outcome> {
    let registry = Registry::start(s, "mapped")?;
    let image = registry.push_busybox("team/app:1")?;

    let ns = s.node_namespace("node-rule", &[])?;
    s.registry_login_secret(
        &ns,
        "stale",
        &registry.host,
        &registry.user,
        &s.new_password("stale secret"),
    )?;
    registry.secret(s, &ns, "mirror")?;
    s.apply(&format!(
        "apiVersion: pullsecret-injector.io/v1alpha1
kind: PullSecretRule
metadata: {{name: mirror-only, namespace: {ns}}}
spec:
  registries: [\"{}\"]
  secrets: [mirror]
  mode: exclusive
",
        registry.host
    ))?;
    s.wait_cache_synced()?;
    poll("the rule to reach the webhook", START_TIMEOUT, || {
        Ok((s.dry_run_pull_secrets(&ns, &image)? == ["mirror"]).then_some(()))
    })?;
    s.run_pod(&ns, "web", &image, &[])?;
    expect_secrets(&wait_running(s, &ns, "web")?, &["mirror"])?;

    let source_ns = s.node_namespace("node-cps-source", &[])?;
    registry.secret(s, &source_ns, "corp-source")?;
    let select_label = "e2e.pullsecret-injector.io/node-corp";
    let cps = format!("e2e-node-corp-{}", s.run_id);
    s.cluster_pull_secret(
        &cps,
        (&source_ns, "corp-source"),
        (select_label, &s.run_id),
        "corp-pull",
    )?;
    let target_ns = s.node_namespace("node-cps", &[(select_label, &s.run_id)])?;
    poll("the controller's copy", START_TIMEOUT, || {
        Ok(secret(s, &target_ns, "corp-pull")?.map(|_| ()))
    })?;
    s.run_pod(&target_ns, "web", &image, &[])?;
    expect_secrets(&wait_running(s, &target_ns, "web")?, &["corp-pull"])?;
    s.kubectl(&["delete", "clusterpullsecret", &cps, "--wait=false"])?;
    Ok(Outcome::Passed)
}

/// A registry with TLS on the node's address: the node refuses its certificate until
/// `cluster.sh trust-registry` (the one documented command) trusts its CA; then it pulls.
pub fn tls_registry(s: &Suite) -> Result<Outcome> {
    let registry = Registry::start_tls(s, "tls")?;
    let image = registry.push_busybox("team/app:1")?;
    let ns = s.node_namespace("node-tls", &[])?;
    registry.secret(s, &ns, "registry-tls")?;
    s.wait_cache_synced()?;

    s.run_pod(&ns, "untrusted", &image, &[])?;
    let message = wait_pull_failure(s, &ns, "untrusted", "untrusted")?;
    ensure!(
        message.contains("certificate signed by unknown authority"),
        "the untrusted pull failed for another reason: {message}"
    );

    let (_, _, cluster_dir) = s.cluster_env();
    let out = Command::new("bash")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/controlplane/cluster.sh"))
        .args(["trust-registry", &registry.host])
        .arg(registry.ca_file())
        .env("PULLSECRET_INJECTOR_CLUSTER_DIR", cluster_dir)
        .output()?;
    ensure!(
        out.status.success(),
        "cluster.sh trust-registry failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.run_pod(&ns, "trusted", &image, &[])?;
    expect_secrets(&wait_running(s, &ns, "trusted")?, &["registry-tls"])?;
    Ok(Outcome::Passed)
}

/// The network rules of the local node, as the README states them: the node's address is the
/// cluster's bridge (never eth0's), pods get addresses of its /24 in their own namespaces,
/// nothing forwarded leaves the bridge, nothing from the pods is masqueraded, and a second
/// cluster with a node is refused while this one runs.
pub fn network_rules(s: &Suite) -> Result<Outcome> {
    let node_ip = node_ip(s)?;
    let prefix = node_ip
        .rsplit_once('.')
        .map(|(net, _)| format!("{net}."))
        .unwrap_or_default();
    let node = s.get_json(&["nodes"])?;
    let addresses = &node["items"][0]["status"]["addresses"];
    ensure!(
        addresses
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["type"] == "InternalIP" && a["address"] == node_ip.as_str()),
        "the node's InternalIP is not the bridge address {node_ip}: {addresses}"
    );
    let bridge = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "psi-br0"])
        .output()?;
    ensure!(
        String::from_utf8_lossy(&bridge.stdout).contains(&format!("{node_ip}/24")),
        "bridge psi-br0 does not carry {node_ip}/24"
    );

    let registry = Registry::start(s, "net")?;
    let image = registry.push_busybox("team/app:1")?;
    let ns = s.node_namespace("node-net", &[])?;
    registry.secret(s, &ns, "registry-net")?;
    s.wait_cache_synced()?;
    s.run_pod(&ns, "web", &image, &[])?;
    let pod = wait_running(s, &ns, "web")?;
    let pod_ip = pod["status"]["podIP"].as_str().unwrap_or_default();
    ensure!(
        pod_ip.starts_with(&prefix) && pod_ip != node_ip,
        "pod IP {pod_ip} is not in the bridge's /24"
    );

    let table = Command::new("nft")
        .args(["list", "table", "inet", "pullsecret_injector_node"])
        .output()?;
    let rules = String::from_utf8_lossy(&table.stdout);
    ensure!(
        rules.contains("iifname \"psi-br0\" oifname != \"psi-br0\"") && rules.contains("drop"),
        "the forward guard is missing: {rules}"
    );
    let ruleset = Command::new("nft").args(["list", "ruleset"]).output()?;
    let masquerading: Vec<String> = String::from_utf8_lossy(&ruleset.stdout)
        .lines()
        .filter(|line| line.contains("masquerade") && line.contains(&format!("ip saddr {prefix}")))
        .map(str::to_owned)
        .collect();
    ensure!(
        masquerading.is_empty(),
        "pod traffic is masqueraded: {masquerading:?}"
    );

    // One node per machine: another cluster with a node is refused, and this one keeps running.
    let other = s.work_path().join("second-cluster");
    let out = Command::new("bash")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/controlplane/cluster.sh"))
        .arg("up")
        .env("PULLSECRET_INJECTOR_CLUSTER_DIR", &other)
        .output()?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && said.contains("another cluster with a node is running"),
        "a second cluster with a node was not refused ({}): {}",
        out.status,
        tail(&said, 5)
    );
    wait_running(s, &ns, "web")?;
    Ok(Outcome::Passed)
}
