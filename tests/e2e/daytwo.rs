//! Day two of the HA profile under `failurePolicy: Fail`, on the node, with pod creation
//! attempted all along by a second thread (server-side dry runs, which go through admission):
//! an install that fails (hard anti-affinity, two replicas, one node) within the hook's stated
//! deadline and is repaired by `--set podAntiAffinity=soft` without deleting pods by hand; the
//! TLS Secret deleted and repaired with `--reuse-values`; namespaced mode and back; uninstall,
//! which warns about a ClusterPullSecret made with kubectl that outlives it. Every failed
//! create is reported with its time and phase, and there must be none: nothing in this cycle
//! deliberately breaks the webhook. On the way, a Deployment created before the injector served
//! its namespace is stuck in ImagePullBackOff, and `audit --fail-on warning` says so.

use std::ffi::OsString;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::harness::{Suite, chart_dir, events, metric, poll, pull_secrets, secret, tail};
use crate::incluster::{RESTRICTED, Release, injector_image_tarball};
use crate::node::Registry;
use crate::scenarios::Outcome;

const CONVERGENCE: Duration = Duration::from_secs(180);
/// The hook's wait in this scenario; the Job must end within this + 60 s (chart README).
const HOOK_TIMEOUT: u64 = 30;

/// One attempted create: when (since the start), in which phase, and what came back.
struct Attempt {
    at: Duration,
    phase: &'static str,
    result: Result<Vec<String>, String>,
}

/// Creates dry-run pods in a loop on its own thread until dropped via `finish`.
struct Creator {
    phase: Arc<Mutex<&'static str>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Attempt>>>,
}

impl Creator {
    fn start(s: &Suite, namespace: &str, image: &str) -> Creator {
        let template = s.kubectl_command();
        let program = template.get_program().to_owned();
        let mut args: Vec<OsString> = template.get_args().map(OsString::from).collect();
        for arg in [
            "run",
            "probe",
            "-n",
            namespace,
            &format!("--image={image}"),
            "--restart=Never",
            "--dry-run=server",
            "-o",
            "json",
        ] {
            args.push(arg.into());
        }
        let phase = Arc::new(Mutex::new("install"));
        let stop = Arc::new(AtomicBool::new(false));
        let (phase_in, stop_in) = (Arc::clone(&phase), Arc::clone(&stop));
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            let mut attempts = Vec::new();
            // Bounded: the scenario ends long before this many attempts.
            for _ in 0..100_000 {
                if stop_in.load(Ordering::Acquire) {
                    break;
                }
                let phase = *phase_in.lock().unwrap_or_else(|p| p.into_inner());
                let at = started.elapsed();
                let result = match Command::new(&program).args(&args).output() {
                    Ok(out) if out.status.success() => serde_json::from_slice::<Value>(&out.stdout)
                        .map(|pod| pull_secrets(&pod))
                        .map_err(|e| e.to_string()),
                    Ok(out) => Err(tail(&String::from_utf8_lossy(&out.stderr), 2)),
                    Err(error) => Err(error.to_string()),
                };
                attempts.push(Attempt { at, phase, result });
                std::thread::sleep(Duration::from_millis(200));
            }
            attempts
        });
        Creator {
            phase,
            stop,
            thread: Some(thread),
        }
    }

    fn phase(&self, phase: &'static str) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase;
        println!("  phase {phase}");
    }

    fn finish(mut self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Creator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn replica_metric(s: &Suite, namespace: &str, pod: &str, series: &str) -> Result<f64> {
    let text = s
        .kubectl(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/{namespace}/pods/{pod}:8080/proxy/metrics"),
        ])?
        .stdout;
    metric(&text, series).with_context(|| format!("{pod} exports no {series}"))
}

fn failure_policy(s: &Suite, name: &str) -> Result<String> {
    let configuration = s.get_json(&["mutatingwebhookconfiguration", name])?;
    Ok(configuration["webhooks"][0]["failurePolicy"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

pub fn chart_day_two(s: &Suite) -> Result<Outcome> {
    let registry = Registry::start(s, "daytwo")?;
    let tarball = injector_image_tarball(s)?;
    let injector_image = registry.push_tarball(&tarball, "pullsecret-injector:e2e")?;
    let app_image = registry.push_busybox("shop/web:1")?;
    let repository = injector_image.trim_end_matches(":e2e").to_owned();
    let covered = format!("e2e.pullsecret-injector.io/daytwo-{}", s.run_id);

    let namespace = s.foreign_namespace("daytwo", &[RESTRICTED])?;
    registry.secret(s, &namespace, "injector-pull")?;
    let app = s.foreign_namespace("daytwo-app", &[(&covered, "true")])?;
    registry.secret(s, &app, "shop-registry")?;
    let mut release = Release {
        s,
        name: format!("pullsecret-injector-d2-{}", s.run_id),
        namespace: namespace.clone(),
        installed: true,
    };
    let chart = chart_dir().to_string_lossy().into_owned();
    let ha_values = chart_dir().join("ci/ha-values.yaml");
    let ha_values = ha_values.to_string_lossy().into_owned();
    let selector = format!(
        r#"webhook.extraNamespaceSelectorExpressions=[{{"key":"{covered}","operator":"Exists"}}]"#
    );
    let repository_value = format!("image.repository={repository}");
    let hook_timeout = format!("hooks.timeoutSeconds={HOOK_TIMEOUT}");
    // Created before any injector serves the namespace: its pod cannot pull.
    s.kubectl(&[
        "create",
        "deployment",
        "stuck",
        "-n",
        &app,
        &format!("--image={app_image}"),
    ])?;
    let creator = Creator::start(s, &app, &app_image);

    // 1. The HA profile with two replicas on one node: the second cannot be scheduled, so the
    //    post-install hook gives up; one attempt, within hooks.timeoutSeconds + 60 s.
    let started = Instant::now();
    let install = s.helm(&[
        "install",
        &release.name,
        &chart,
        "-n",
        &namespace,
        "-f",
        &ha_values,
        "--set",
        "replicaCount=2",
        "--set",
        "podDisruptionBudget.minAvailable=1",
        "--set",
        &repository_value,
        "--set",
        "image.tag=e2e",
        "--set",
        "imagePullSecrets[0].name=injector-pull",
        "--set",
        "shutdownDelay=2s",
        "--set",
        &hook_timeout,
        "--set",
        "controller.enabled=true",
        "--set-json",
        &selector,
        "--timeout",
        "300s",
    ]);
    let took = started.elapsed();
    ensure!(
        install.is_err(),
        "the HA install on one node succeeded although two replicas need two nodes"
    );
    let job = s.get_json(&[
        "job",
        &format!("{}-enable-fail", release.name),
        "-n",
        &namespace,
    ])?;
    ensure!(
        job["status"]["failed"].as_i64() == Some(1) && job["spec"]["backoffLimit"] == 0,
        "the enable-fail hook Job ran {} pods (backoffLimit {})",
        job["status"]["failed"],
        job["spec"]["backoffLimit"]
    );
    ensure!(
        took < Duration::from_secs(HOOK_TIMEOUT + 60 + 20),
        "the failed install took {took:?}, more than hooks.timeoutSeconds + 60 s"
    );
    ensure!(
        failure_policy(s, &release.name)? == "Ignore",
        "the failed install left the webhook on Fail"
    );
    println!(
        "  the failed install ended after {:.0}s",
        took.as_secs_f64()
    );

    // 2. The documented repair: soft anti-affinity. It must roll out (the hard pods of the
    //    failed revision do not repel the new ones) and switch the webhook to Fail.
    creator.phase("repair");
    let started = Instant::now();
    release.helm(
        "upgrade",
        &["--reuse-values", "--set", "podAntiAffinity=soft"],
    )?;
    println!(
        "  the repair rolled out in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    ensure!(
        failure_policy(s, &release.name)? == "Fail",
        "after the repair the webhook is not on Fail"
    );
    let pods = release.wait_ready(2)?;
    poll("the webhook to inject shop-registry", CONVERGENCE, || {
        Ok((s.dry_run_pull_secrets(&app, &app_image)? == ["shop-registry"]).then_some(()))
    })?;
    creator.phase("served");

    // A pod stuck on a pull its namespace now has the secret for is a warning.
    poll(
        "the stuck Deployment's pod to fail its pull",
        CONVERGENCE,
        || {
            let pods = s.get_json(&["pods", "-n", &app, "-l", "app=stuck"])?;
            Ok(pods["items"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|pod| {
                    pod["status"]["containerStatuses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                })
                .any(|status| {
                    matches!(
                        status["state"]["waiting"]["reason"].as_str(),
                        Some("ErrImagePull" | "ImagePullBackOff")
                    )
                })
                .then_some(()))
        },
    )?;
    let audit = Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"))
        .args(["audit", "-n", &app, "-o", "json", "--fail-on", "warning"])
        .env("KUBECONFIG", s.kubeconfig_path())
        .output()?;
    let report: Value = serde_json::from_slice(&audit.stdout)
        .with_context(|| format!("audit -o json: {}", String::from_utf8_lossy(&audit.stderr)))?;
    let stuck_found = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|f| {
            f["kind"] == "pull_failing"
                && f["severity"] == "warning"
                && f["workload"]["kind"] == "Pod"
        });
    ensure!(
        !audit.status.success() && stuck_found,
        "audit --fail-on warning exited {:?} and found pull_failing: {stuck_found}: {}",
        audit.status.code(),
        tail(&String::from_utf8_lossy(&audit.stdout), 20)
    );
    s.kubectl(&["delete", "deployment", "stuck", "-n", &app, "--wait=false"])?;

    // 3. The TLS Secret deleted, and repaired the obvious way: no create may fail.
    creator.phase("certificate-repair");
    let tls_secret = format!("{}-tls", release.name);
    s.kubectl(&["delete", "secret", &tls_secret, "-n", &namespace])?;
    let reloads = |pod: &str| {
        replica_metric(
            s,
            &namespace,
            pod,
            "pullsecret_injector_certificate_reloads_total{result=\"success\"}",
        )
    };
    let before: Vec<f64> = pods.iter().map(|pod| reloads(pod)).collect::<Result<_>>()?;
    release.helm("upgrade", &["--reuse-values"])?;
    let configuration = s.get_json(&["mutatingwebhookconfiguration", &release.name])?;
    let bundle = configuration["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .unwrap_or_default();
    let bundle = String::from_utf8(base64_decode(bundle).context("the caBundle is not base64")?)?;
    ensure!(
        bundle.matches("BEGIN CERTIFICATE").count() == 2,
        "after the repair the caBundle holds {} CAs, not the new and the served one",
        bundle.matches("BEGIN CERTIFICATE").count()
    );
    // Each replica picks the kubelet's refreshed mount up and still is trusted.
    poll(
        "every replica to serve the new certificate",
        CONVERGENCE,
        || {
            for (pod, before) in pods.iter().zip(&before) {
                if reloads(pod)? <= *before {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )?;
    for pod in &pods {
        let trusted = replica_metric(
            s,
            &namespace,
            pod,
            "pullsecret_injector_certificate_trusted",
        )?;
        ensure!(
            trusted == 1.0,
            "{pod} reports certificate_trusted {trusted}"
        );
    }

    // 4. Namespaced mode (the app namespace only) and back to cluster-wide. A copy of a
    //    ClusterPullSecret made with kubectl lies outside the new scope: it is kept, and the
    //    upgrade's NOTES name it with the command that deletes it.
    let source = s.foreign_namespace("daytwo-source", &[])?;
    registry.secret(s, &source, "corp-source")?;
    let select = format!("e2e.pullsecret-injector.io/daytwo-corp-{}", s.run_id);
    let target = s.foreign_namespace("daytwo-corp", &[(&select, "true")])?;
    let cps = format!("e2e-daytwo-{}", s.run_id);
    s.cluster_pull_secret(
        &cps,
        (&source, "corp-source"),
        (&select, "true"),
        "corp-pull",
    )?;
    poll(
        "the copy in the ClusterPullSecret's status",
        CONVERGENCE,
        || {
            let resource = s.get_json(&["clusterpullsecret", &cps])?;
            Ok(resource["status"]["namespaces"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|ns| ns == target.as_str())
                .then_some(()))
        },
    )?;
    poll("the controller's copy", CONVERGENCE, || {
        Ok(secret(s, &target, "corp-pull")?.map(|_| ()))
    })?;
    creator.phase("namespaced");
    let notes = s.helm(&[
        "upgrade",
        &release.name,
        &chart,
        "-n",
        &namespace,
        "--reuse-values",
        "--set",
        &format!("namespaces={{{app}}}"),
        "--wait",
        "--timeout",
        "300s",
    ])?;
    let delete_copy = format!(
        "kubectl delete secret -n {target} -l pullsecret-injector.io/cluster-pull-secret={cps}"
    );
    ensure!(
        notes
            .stdout
            .contains("only the namespaces of namespaced mode")
            && notes.stdout.contains(&delete_copy),
        "the namespaced upgrade's NOTES do not name the kept copy: {}",
        tail(&notes.stdout, 30)
    );
    release.wait_ready(2)?;
    creator.phase("cluster-wide");
    // The documented way back (`{}`, which helm reads as [""]); it used to fail the schema.
    release.helm("upgrade", &["--reuse-values", "--set", "namespaces={}"])?;
    let deployment = s.get_json(&["deployment", &release.name, "-n", &namespace])?;
    ensure!(
        !deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|env| env["name"] == "PULLSECRET_INJECTOR_NAMESPACES"),
        "--set namespaces={{}} kept namespaced mode"
    );
    release.wait_ready(2)?;
    poll("the webhook to inject shop-registry", CONVERGENCE, || {
        Ok((s.dry_run_pull_secrets(&app, &app_image)? == ["shop-registry"]).then_some(()))
    })?;

    // 5. Uninstalled: creation goes on, without injection. A ClusterPullSecret made with
    //    kubectl outlives it, and the pre-delete hook says so on it.
    creator.phase("uninstall");
    if let Err(error) = release.helm("uninstall", &[]) {
        let logs = s.kubectl_raw(
            &[
                "logs",
                &format!("job/{}-delete-cps", release.name),
                "-n",
                &namespace,
            ],
            None,
        )?;
        return Err(error.context(format!(
            "the pre-delete hook's log: {} {}",
            logs.stdout.trim(),
            logs.stderr.trim()
        )));
    }
    release.installed = false;
    creator.phase("uninstalled");
    let selector = format!("involvedObject.name={cps},reason=LeftAfterUninstall");
    let events = events(s, Some("default"), Some(&selector))?;
    let warned = events.iter().any(|event| {
        event["type"] == "Warning"
            && event["message"]
                .as_str()
                .is_some_and(|m| m.contains("its copies in") && m.contains("kubectl patch"))
    });
    let left = s.get_json(&["clusterpullsecret", &cps])?;
    // Clean up as the warning says.
    s.kubectl(&[
        "patch",
        "clusterpullsecret",
        &cps,
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])?;
    s.kubectl(&["delete", "clusterpullsecret", &cps])?;
    s.kubectl(&[
        "delete",
        "secret",
        "-A",
        "-l",
        &format!("pullsecret-injector.io/cluster-pull-secret={cps}"),
    ])?;
    ensure!(
        warned && !left["metadata"]["finalizers"].is_null(),
        "no LeftAfterUninstall warning on ClusterPullSecret {cps}: {}",
        serde_json::json!(events)
    );
    std::thread::sleep(Duration::from_secs(2));
    let attempts = creator.finish();

    let failed: Vec<&Attempt> = attempts.iter().filter(|a| a.result.is_err()).collect();
    for attempt in &failed {
        println!(
            "  failed create at {:.1}s ({}): {}",
            attempt.at.as_secs_f64(),
            attempt.phase,
            attempt.result.as_ref().err().map_or("", String::as_str)
        );
    }
    // Where a replica serves, every pod gets its secret.
    let uninjected: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| {
            ["served", "certificate-repair", "namespaced", "cluster-wide"].contains(&a.phase)
        })
        .filter(|a| a.result.as_ref().is_ok_and(|got| got != &["shop-registry"]))
        .collect();
    for attempt in &uninjected {
        println!(
            "  create without its secret at {:.1}s ({}): {:?}",
            attempt.at.as_secs_f64(),
            attempt.phase,
            attempt.result
        );
    }
    println!(
        "  {} creates attempted, {} failed, {} admitted without the secret while served",
        attempts.len(),
        failed.len(),
        uninjected.len()
    );
    ensure!(
        failed.is_empty() && uninjected.is_empty(),
        "{} creates failed and {} were not injected (listed above)",
        failed.len(),
        uninjected.len()
    );
    Ok(Outcome::Passed)
}

fn base64_decode(text: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}
