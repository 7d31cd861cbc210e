//! `failurePolicy: Fail`, installed for real with running pods: while the Deployment has not
//! rolled out the webhook is registered with Ignore (a pod created then is admitted); the
//! chart's post-install hook switches it to Fail once every replica is available (a pod created
//! while no replica runs is refused); an upgrade keeps Fail, and rotating the CA under Fail
//! refuses nothing; an uninstall with the controller and `clusterPullSecrets` deletes them and
//! their copies through the pre-delete hook, leaving nothing Terminating. The release namespace
//! enforces the `restricted` Pod Security Standard, so the hook Jobs' pods must pass it.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::harness::{Suite, chart_dir, expect_secrets, metric, poll, secret, tail, wait_running};
use crate::incluster::{
    Load, RESTRICTED, Release, admitted_without_injection, expect_restricted_enforced,
    injector_image_tarball,
};
use crate::node::Registry;
use crate::scenarios::Outcome;

const CONVERGENCE: Duration = Duration::from_secs(120);
/// Above helm's --timeout below, so helm reports a stuck install first.
const INSTALL_DEADLINE: Duration = Duration::from_secs(330);

/// A `helm install` running in the background; killed on drop if it is still running.
struct Background(Child);

impl Background {
    /// Waits for helm to exit, at most `timeout`; fails unless it succeeded.
    fn finish(mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        while self.0.try_wait()?.is_none() {
            ensure!(
                Instant::now() < deadline,
                "helm install still running after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = self.0.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stderr)?;
        }
        let status = self.0.wait()?;
        ensure!(
            status.success(),
            "helm install failed ({status}): {}",
            tail(&stderr, 10)
        );
        Ok(stderr)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn failure_policy(s: &Suite, name: &str) -> Result<Option<String>> {
    let configuration = s.get_json_opt(&["mutatingwebhookconfiguration", name])?;
    Ok(configuration.and_then(|c| {
        c["webhooks"][0]["failurePolicy"]
            .as_str()
            .map(str::to_owned)
    }))
}

fn exists(s: &Suite, args: &[&str]) -> Result<bool> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--ignore-not-found", "-o", "name"]);
    Ok(!s.kubectl(&full)?.stdout.trim().is_empty())
}

/// Serving-certificate changes a replica has picked up, from its /metrics (through the
/// apiserver's pod proxy).
fn certificate_reloads(s: &Suite, namespace: &str, pod: &str) -> Result<f64> {
    let text = s
        .kubectl(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/{namespace}/pods/{pod}:8080/proxy/metrics"),
        ])?
        .stdout;
    Ok(metric(
        &text,
        "pullsecret_injector_certificate_reloads_total{result=\"success\"}",
    )
    .unwrap_or(0.0))
}

pub fn chart_fail_policy(s: &Suite) -> Result<Outcome> {
    let registry = Registry::start(s, "fail")?;
    let tarball = injector_image_tarball(s)?;
    let app_image = registry.push_busybox("shop/web:1")?;
    let repository = format!("{}/pullsecret-injector", registry.host);
    let covered = format!("e2e.pullsecret-injector.io/fail-{}", s.run_id);
    let select = format!("e2e.pullsecret-injector.io/fail-corp-{}", s.run_id);

    // The hook Jobs' pods must pass the restricted Pod Security Standard as well.
    let namespace = s.foreign_namespace("fail", &[RESTRICTED])?;
    expect_restricted_enforced(s, &namespace)?;
    registry.secret(s, &namespace, "injector-pull")?;
    let source = s.foreign_namespace("fail-source", &[])?;
    registry.secret(s, &source, "corp-source")?;
    let app = s.foreign_namespace("fail-app", &[(&covered, "true")])?;
    registry.secret(s, &app, "shop-registry")?;
    let corp = s.foreign_namespace("fail-corp", &[(&covered, "true"), (&select, "true")])?;
    let cps = format!("e2e-fail-{}", s.run_id);

    let mut release = Release {
        s,
        name: format!("pullsecret-injector-fail-{}", s.run_id),
        namespace: namespace.clone(),
        installed: true,
    };
    let configuration = release.name.clone();
    let chart = chart_dir().to_string_lossy().into_owned();
    let values = [
        format!("image.repository={repository}"),
        "image.tag=e2e".to_owned(),
        "imagePullSecrets[0].name=injector-pull".to_owned(),
        "shutdownDelay=2s".to_owned(),
        "webhook.failurePolicy=Fail".to_owned(),
        "controller.enabled=true".to_owned(),
    ];
    let json_values = [
        format!(
            r#"webhook.extraNamespaceSelectorExpressions=[{{"key":"{covered}","operator":"Exists"}}]"#
        ),
        format!(
            r#"clusterPullSecrets=[{{"name":"{cps}","source":{{"namespace":"{source}","name":"corp-source"}},"namespaceSelector":{{"matchLabels":{{"{select}":"true"}}}},"targetName":"corp-pull"}}]"#
        ),
    ];
    let mut args = vec![
        "install",
        release.name.as_str(),
        chart.as_str(),
        "-n",
        namespace.as_str(),
        "--timeout",
        "300s",
    ];
    for value in &values {
        args.extend(["--set", value.as_str()]);
    }
    for value in &json_values {
        args.extend(["--set-json", value.as_str()]);
    }
    // The image is not in the registry yet: no replica can start until it is pushed below.
    let install = Background(
        s.helm_command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run helm")?,
    );

    // 1. Installed, not rolled out: the webhook is registered with Ignore, and pod creation in
    //    a covered namespace goes on (without injection: no replica answers).
    let policy = poll(
        "the chart's MutatingWebhookConfiguration",
        CONVERGENCE,
        || failure_policy(s, &configuration),
    )?;
    ensure!(
        policy == "Ignore",
        "before the rollout the webhook has failurePolicy {policy}"
    );
    let deployment = s.get_json(&["deployment", &release.name, "-n", &namespace])?;
    ensure!(
        deployment["status"]["availableReplicas"]
            .as_i64()
            .unwrap_or(0)
            == 0,
        "a replica is available although its image is not pushed yet"
    );
    admitted_without_injection(s, &app, &app_image).context("a pod created before the rollout")?;
    ensure!(
        failure_policy(s, &configuration)?.as_deref() == Some("Ignore"),
        "the webhook switched to Fail before any replica was available"
    );

    // 2. The image arrives: the replicas start (deleted so they need not wait out the pull
    //    backoff), the hook sees the rollout complete and switches to Fail; helm returns.
    registry.push_tarball(&tarball, "pullsecret-injector:e2e")?;
    s.kubectl(&[
        "delete",
        "pods",
        "-n",
        &namespace,
        "-l",
        &format!(
            "app.kubernetes.io/name=pullsecret-injector,app.kubernetes.io/instance={}",
            release.name
        ),
        "--wait=false",
    ])?;
    let warnings = install.finish(INSTALL_DEADLINE)?;
    ensure!(
        !warnings.contains("Warning"),
        "helm install printed warnings: {}",
        warnings.trim()
    );
    ensure!(
        failure_policy(s, &configuration)?.as_deref() == Some("Fail"),
        "after the install the webhook is not on Fail"
    );
    release.wait_ready(2)?;
    ensure!(
        !exists(
            s,
            &[
                "serviceaccount",
                &format!("{}-hook", release.name),
                "-n",
                &namespace
            ]
        )? && !exists(s, &["clusterrole", &format!("{}-hook", release.name)])?,
        "the hook's ServiceAccount or ClusterRole outlived the hook"
    );

    // 3. Under Fail: injected as before, and a real pod pulls with its injected secret.
    poll("the webhook to inject shop-registry", CONVERGENCE, || {
        Ok((s.dry_run_pull_secrets(&app, &app_image)? == ["shop-registry"]).then_some(()))
    })?;
    s.run_pod(&app, "web", &app_image, &[])?;
    expect_secrets(&wait_running(s, &app, "web")?, &["shop-registry"])?;

    // 4. Fail is real: with no replica running, a covered pod is refused; back with two.
    release.scale(0)?;
    poll("the replicas to be gone", CONVERGENCE, || {
        Ok(release.pods()?.is_empty().then_some(()))
    })?;
    match s.run_pod(&app, "refused", &app_image, &["--dry-run=server"]) {
        Ok(_) => bail!("a pod was admitted under failurePolicy Fail with no replica running"),
        Err(error) => ensure!(
            format!("{error:#}").contains("failed calling webhook"),
            "the pod was refused, but not by the webhook call: {error:#}"
        ),
    }
    release.scale(2)?;
    let pods = release.wait_ready(2)?;

    // 5. A CA rotation under Fail while pods are created: the upgrade keeps Fail, the
    //    webhook trusts both CAs, and no pod is refused until every replica serves the new
    //    certificate.
    let load = Load {
        namespace: &app,
        image: &app_image,
        expected: &["shop-registry"],
    };
    let created = release.helm_under_load(
        "upgrade",
        &["--reuse-values", "--set", "certificates.helm.rotation=e2e"],
        &load,
    )?;
    ensure!(
        failure_policy(s, &configuration)?.as_deref() == Some("Fail"),
        "the upgrade put the webhook back on Ignore"
    );
    let created_after = load.run(s, || {
        let mut reloaded = true;
        for pod in &pods {
            reloaded &= certificate_reloads(s, &namespace, pod)? >= 1.0;
        }
        Ok(reloaded)
    })?;
    println!(
        "  {} pods admitted with their secret during the CA rotation",
        created + created_after
    );

    // 6. Uninstall with the controller and a ClusterPullSecret from values: the pre-delete
    //    hook deletes it while the controller runs, so its copy and finalizer go with it.
    poll("the controller's copy", CONVERGENCE, || {
        Ok(secret(s, &corp, "corp-pull")?.map(|_| ()))
    })?;
    release.helm("uninstall", &[])?;
    release.installed = false;
    ensure!(
        !exists(s, &["clusterpullsecret", &cps])?,
        "ClusterPullSecret {cps} outlived the uninstall"
    );
    ensure!(
        secret(s, &corp, "corp-pull")?.is_none(),
        "the copy in {corp} outlived the uninstall"
    );
    for kind in ["mutatingwebhookconfiguration", "clusterrole"] {
        ensure!(
            !exists(s, &[kind, &release.name])?
                && !exists(s, &[kind, &format!("{}-hook", release.name)])?,
            "a {kind} of the release outlived the uninstall"
        );
    }
    ensure!(
        !exists(
            s,
            &[
                "jobs",
                "-n",
                &namespace,
                "-l",
                "app.kubernetes.io/component=chart-hook"
            ]
        )?,
        "a hook Job outlived the uninstall"
    );
    admitted_without_injection(s, &app, &app_image).context("a pod after uninstall")?;
    Ok(Outcome::Passed)
}
