//! The scenarios, in the order they run. Each creates its own namespaces; the ones that need
//! the webhook come before `shutdown-and-webhook-down`, which stops it for good.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::harness::{
    DRAIN_TIMEOUT, INJECT_LABEL, SHUTDOWN_DELAY, Suite, http_get, injected_annotation, manifests,
    metric, metric_sum, now_unix, poll, pull_secrets, tail,
};

/// What a scenario returns when it passed. There is no "skipped": a scenario that cannot run
/// where it was asked to fails, and says why.
pub enum Outcome {
    Passed,
}

pub struct Scenario {
    pub name: &'static str,
    pub run: fn(&Suite) -> Result<Outcome>,
}

pub const ALL: &[Scenario] = &[
    Scenario {
        name: "registry-matching",
        run: registry_matching,
    },
    Scenario {
        name: "wildcards-paths-and-legacy-secrets",
        run: wildcards_paths_and_legacy_secrets,
    },
    Scenario {
        name: "deployment-pods",
        run: deployment_pods,
    },
    Scenario {
        name: "secret-lifecycle",
        run: secret_lifecycle,
    },
    Scenario {
        name: "undecodable-secret",
        run: undecodable_secret,
    },
    Scenario {
        name: "existing-and-serviceaccount-secrets",
        run: existing_and_serviceaccount_secrets,
    },
    Scenario {
        name: "opt-out",
        run: opt_out,
    },
    Scenario {
        name: "pull-secret-rules",
        run: crate::mappings::pull_secret_rules,
    },
    Scenario {
        name: "cluster-pull-secret-lifecycle",
        run: crate::mappings::cluster_pull_secret_lifecycle,
    },
    Scenario {
        name: "cluster-pull-secret-without-controller",
        run: crate::mappings::cluster_pull_secret_without_controller,
    },
    Scenario {
        name: "shadow-mode-namespace",
        run: crate::shadow::shadow_namespace,
    },
    Scenario {
        name: "shadow-mode-global",
        run: crate::shadow::shadow_global,
    },
    Scenario {
        name: "pull-audit",
        run: crate::shadow::pull_audit,
    },
    Scenario {
        name: "pull-audit-controller",
        run: crate::shadow::pull_audit_controller,
    },
    Scenario {
        name: "ecr-credential-provider",
        run: crate::tokens::ecr_credential_provider,
    },
    Scenario {
        name: "rancher-project-namespaces",
        run: crate::vendors::rancher_project,
    },
    Scenario {
        name: "credential-provider-trust",
        run: crate::trust::credential_provider_trust,
    },
    Scenario {
        name: "shadow-namespaces-get-no-copies",
        run: crate::trust::shadow_namespaces_get_no_copies,
    },
    Scenario {
        name: "metrics-dashboard",
        run: crate::dashboard::metrics_dashboard,
    },
    Scenario {
        name: "readiness-and-metrics",
        run: readiness_and_metrics,
    },
    Scenario {
        name: "chart-serviceaccount-rbac",
        run: chart_serviceaccount_rbac,
    },
    Scenario {
        name: "node-private-registry",
        run: crate::node::private_registry,
    },
    Scenario {
        name: "node-cached-image",
        run: crate::versions::cached_image_check,
    },
    Scenario {
        name: "node-two-registries",
        run: crate::node::two_registries,
    },
    Scenario {
        name: "node-network",
        run: crate::node::network_rules,
    },
    Scenario {
        name: "node-tls-registry",
        run: crate::node::tls_registry,
    },
    Scenario {
        name: "node-wrong-port",
        run: crate::node::wrong_port,
    },
    Scenario {
        name: "node-init-container-and-deployment",
        run: crate::node::init_container_and_deployment,
    },
    Scenario {
        name: "node-legacy-and-path-keys",
        run: crate::node::legacy_and_path_keys,
    },
    Scenario {
        name: "node-rule-and-cluster-pull-secret",
        run: crate::node::rule_and_cluster_pull_secret,
    },
    Scenario {
        name: "node-image-volume",
        run: crate::image_volumes::private_image_volume,
    },
    Scenario {
        name: "node-minted-credentials-rotate",
        run: crate::tokens::minted_credentials_rotate,
    },
    Scenario {
        name: "node-jdcloud-jcr",
        run: crate::vendors::jdcloud_jcr,
    },
    Scenario {
        name: "node-huaweicloud-swr",
        run: crate::vendors::huaweicloud_swr,
    },
    Scenario {
        name: "controller-orphan-sweep",
        run: crate::recovery::orphaned_copies_swept,
    },
    Scenario {
        name: "node-recovery-deployment",
        run: crate::recovery::deployment_before_secret,
    },
    Scenario {
        name: "node-recovery-cluster-pull-secret",
        run: crate::recovery::cluster_pull_secret_selects_later,
    },
    Scenario {
        name: "node-recovery-bare-pod-and-budget",
        run: crate::recovery::bare_pod_and_budget,
    },
    Scenario {
        name: "node-recovery-image-volume",
        run: crate::image_volumes::image_volume_recovery,
    },
    Scenario {
        name: "shutdown-and-webhook-down",
        run: shutdown_and_webhook_down,
    },
    // After the suite's own webhook and controller are gone: nothing else writes copies.
    Scenario {
        name: "namespaced-mode",
        run: crate::nsmode::namespaced_mode,
    },
    Scenario {
        name: "node-chart-in-cluster",
        run: crate::incluster::chart_in_cluster,
    },
    Scenario {
        name: "node-release-install",
        run: crate::release::release_install,
    },
    Scenario {
        name: "node-chart-fail-policy",
        run: crate::failpolicy::chart_fail_policy,
    },
    Scenario {
        name: "node-chart-day-two",
        run: crate::daytwo::chart_day_two,
    },
    Scenario {
        name: "no-credential-leaks",
        run: no_credential_leaks,
    },
    Scenario {
        name: "chart-tests",
        run: chart_tests,
    },
];

const R5000: &str = "registry.example.com:5000";
const R6000: &str = "registry.example.com:6000";
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// Within how long a secret change must reach admission decisions.
const PROPAGATION: Duration = Duration::from_secs(20);

fn no_warnings(out: &crate::harness::Output) -> Result<()> {
    let warnings = out.warnings();
    ensure!(
        warnings.is_empty(),
        "unexpected admission warnings: {warnings:?}"
    );
    Ok(())
}

/// 1. Port-exact registry matching, container order, init containers, Docker Hub fallback.
fn registry_matching(s: &Suite) -> Result<Outcome> {
    let ns = s.namespace("matching", &[])?;
    s.registry_secret(&ns, "reg5000", R5000)?;
    s.registry_secret(&ns, "reg6000", R6000)?;
    s.registry_secret(&ns, "hub", DOCKER_HUB_KEY)?;
    s.wait_cache_synced()?;

    no_warnings(&s.run_pod(
        &ns,
        "app5000",
        "registry.example.com:5000/team/app:1.0",
        &[],
    )?)?;
    s.expect_pod(
        &ns,
        "app5000",
        &["reg5000"],
        Some("reg5000 (registry.example.com:5000/team/app)"),
    )?;

    // Secrets follow the order of the containers, each port only its own secret.
    for (name, first, second, expected) in [
        (
            "two-registries",
            "registry.example.com:5000/team/a:1",
            "registry.example.com:6000/team/b:1",
            ["reg5000", "reg6000"],
        ),
        (
            "two-registries-reversed",
            "registry.example.com:6000/team/b:1",
            "registry.example.com:5000/team/a:1",
            ["reg6000", "reg5000"],
        ),
    ] {
        let pod = manifests::pod(
            name,
            json!({
                "containers": [
                    manifests::container("first", first),
                    manifests::container("second", second),
                ],
            }),
        );
        let out = s.apply(&manifests::in_namespace(pod, &ns).to_string())?;
        no_warnings(&out)?;
        let describe = |secret: &str| match secret {
            "reg5000" => "reg5000 (registry.example.com:5000/team/a)",
            _ => "reg6000 (registry.example.com:6000/team/b)",
        };
        let annotation = format!("{}; {}", describe(expected[0]), describe(expected[1]));
        s.expect_pod(&ns, name, &expected, Some(&annotation))?;
    }

    // `nginx` is docker.io/library/nginx: only the kubelet's index.docker.io fallback serves it.
    no_warnings(&s.run_pod(&ns, "hub-image", "nginx:1.25", &[])?)?;
    s.expect_pod(
        &ns,
        "hub-image",
        &["hub"],
        Some("hub (docker.io/library/nginx)"),
    )?;

    // Init containers count; an image no key matches adds nothing.
    let pod = manifests::pod(
        "init-from-6000",
        json!({
            "initContainers": [
                manifests::container("init", "registry.example.com:6000/tools/init:1"),
            ],
            "containers": [manifests::container("app", "quay.io/team/app:1")],
        }),
    );
    no_warnings(&s.apply(&manifests::in_namespace(pod, &ns).to_string())?)?;
    s.expect_pod(
        &ns,
        "init-from-6000",
        &["reg6000"],
        Some("reg6000 (registry.example.com:6000/tools/init)"),
    )?;

    // Ports compare as whole strings: 50000 is not 5000.
    no_warnings(&s.run_pod(
        &ns,
        "port-50000",
        "registry.example.com:50000/team/app:1",
        &[],
    )?)?;
    s.expect_pod(&ns, "port-50000", &[], None)?;

    // No port is not port 5000 (nor 6000), and not Docker Hub either.
    let before = metric_sum(
        &s.metrics()?,
        "pullsecret_injector_images_without_match_total",
    );
    no_warnings(&s.run_pod(&ns, "no-port", "registry.example.com/app", &[])?)?;
    s.expect_pod(&ns, "no-port", &[], None)?;
    let after = metric_sum(
        &s.metrics()?,
        "pullsecret_injector_images_without_match_total",
    );
    ensure!(
        after - before == 1.0,
        "images_without_match_total went from {before} to {after}; expected exactly one more (the webhook saw the pod)"
    );
    Ok(Outcome::Passed)
}

/// 1b. Glob host labels, key paths (most specific first), a `docker.io` key taking Docker Hub
///     images away from the index.docker.io fallback, and legacy `kubernetes.io/dockercfg`.
fn wildcards_paths_and_legacy_secrets(s: &Suite) -> Result<Outcome> {
    let ns = s.namespace("wildcards", &[])?;
    s.registry_secret(&ns, "wild", "*.corp.example:8443")?;
    s.registry_secret(&ns, "team-path", "registry.example.com:5000/team/")?;
    s.registry_secret(&ns, "reg5000", R5000)?;
    s.registry_secret(&ns, "dockerio", "docker.io")?;
    s.registry_secret(&ns, "hub", DOCKER_HUB_KEY)?;
    let password = s.new_password(&format!("secret {ns}/legacy"));
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("e2e-legacy:{password}"))
    };
    s.pull_secret_from_file(
        &ns,
        "legacy",
        "kubernetes.io/dockercfg",
        ".dockercfg",
        &format!(
            r#"{{"registry.example.com:9000":{{"auth":"{auth}","email":"e2e@example.com"}}}}"#
        ),
    )?;
    s.wait_cache_synced()?;

    let cases: [(&str, &str, &[&str], Option<&str>); 8] = [
        (
            "glob-one-label",
            "a.corp.example:8443/x/y:1",
            &["wild"],
            Some("wild (a.corp.example:8443/x/y)"),
        ),
        ("glob-two-labels", "a.b.corp.example:8443/x/y:1", &[], None),
        ("glob-no-label", "corp.example:8443/x/y:1", &[], None),
        (
            "path-key",
            "registry.example.com:5000/team/app:1",
            &["team-path", "reg5000"],
            Some(
                "team-path (registry.example.com:5000/team/app); reg5000 (registry.example.com:5000/team/app)",
            ),
        ),
        (
            "other-path",
            "registry.example.com:5000/teamwork/app:1",
            &["reg5000"],
            Some("reg5000 (registry.example.com:5000/teamwork/app)"),
        ),
        // A key matching docker.io directly means the index.docker.io fallback is not used.
        (
            "docker-hub",
            "nginx:1.25",
            &["dockerio"],
            Some("dockerio (docker.io/library/nginx)"),
        ),
        (
            "docker-hub-digest",
            "docker.io/library/busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            &["dockerio"],
            Some("dockerio (docker.io/library/busybox)"),
        ),
        (
            "legacy-dockercfg",
            "registry.example.com:9000/app:1",
            &["legacy"],
            Some("legacy (registry.example.com:9000/app)"),
        ),
    ];
    for (name, image, secrets, annotation) in cases {
        no_warnings(&s.run_pod(&ns, name, image, &[])?)?;
        s.expect_pod(&ns, name, secrets, annotation)?;
    }
    Ok(Outcome::Passed)
}

/// 2. Pods made by the ReplicaSet controller go through the webhook too.
fn deployment_pods(s: &Suite) -> Result<Outcome> {
    let ns = s.namespace("deployment", &[])?;
    s.registry_secret(&ns, "reg5000", R5000)?;
    s.wait_cache_synced()?;
    s.kubectl(&[
        "create",
        "deployment",
        "web",
        "-n",
        &ns,
        "--image=registry.example.com:5000/team/web:2",
    ])?;
    let pods = poll("the ReplicaSet's pod", Duration::from_secs(60), || {
        let list = s.get_json(&["pods", "-n", &ns, "-l", "app=web"])?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        Ok((!items.is_empty()).then_some(items))
    })?;
    ensure!(pods.len() == 1, "expected one pod, found {}", pods.len());
    let pod = &pods[0];
    let owner = pod["metadata"]["ownerReferences"][0]["kind"].as_str();
    ensure!(
        owner == Some("ReplicaSet"),
        "pod owner is {owner:?}, expected a ReplicaSet"
    );
    s.check_pod(
        pod,
        &["reg5000"],
        Some("reg5000 (registry.example.com:5000/team/web)"),
    )
    .with_context(|| format!("pod {}", pod["metadata"]["name"]))?;
    // Only pods are mutated: the workload's template stays as written.
    let deployment = s.get_json(&["deployment", "web", "-n", &ns])?;
    let template_secrets = &deployment["spec"]["template"]["spec"]["imagePullSecrets"];
    ensure!(
        template_secrets.is_null(),
        "the Deployment template got imagePullSecrets: {template_secrets}"
    );
    Ok(Outcome::Passed)
}

/// Creates pods with unique names until one satisfies `done`; returns it and the time taken.
fn create_pods_until(
    s: &Suite,
    ns: &str,
    prefix: &str,
    image: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<(String, Duration)> {
    let started = Instant::now();
    poll(what, PROPAGATION, || {
        let name = format!("{prefix}-{}", s.unique());
        s.run_pod(ns, &name, image, &[])?;
        let pod = s.pod(ns, &name)?;
        Ok(done(&pod).then(|| (name, started.elapsed())))
    })
}

/// 3. A secret created while the webhook runs is used within seconds; a deleted one stops
///    being injected.
fn secret_lifecycle(s: &Suite) -> Result<Outcome> {
    let ns = s.namespace("lifecycle", &[])?;
    let image = "registry.example.com:5000/team/app:1";
    s.wait_cache_synced()?;
    s.run_pod(&ns, "before-secret", image, &[])?;
    s.expect_pod(&ns, "before-secret", &[], None)?;

    s.registry_secret(&ns, "late", R5000)?;
    let (name, took) = create_pods_until(
        s,
        &ns,
        "after-create",
        image,
        "the new secret to be injected",
        |pod| !pull_secrets(pod).is_empty(),
    )?;
    s.expect_pod(
        &ns,
        &name,
        &["late"],
        Some("late (registry.example.com:5000/team/app)"),
    )?;
    println!("  new secret injected after {:.1}s", took.as_secs_f64());

    s.kubectl(&["delete", "secret", "late", "-n", &ns])?;
    let (name, took) = create_pods_until(
        s,
        &ns,
        "after-delete",
        image,
        "the deleted secret to disappear",
        |pod| pull_secrets(pod).is_empty(),
    )?;
    s.expect_pod(&ns, &name, &[], None)?;
    println!(
        "  deleted secret no longer injected after {:.1}s",
        took.as_secs_f64()
    );
    Ok(Outcome::Passed)
}

/// 3b. A dockerconfigjson the kubelet cannot decode is never injected, and kubectl shows a
///     warning naming it, for `kubectl run` and `kubectl apply`.
fn undecodable_secret(s: &Suite) -> Result<Outcome> {
    let ns = s.namespace("undecodable", &[])?;
    let secret_json = |name: &str, build: &dyn Fn(&str) -> String| -> Result<()> {
        let password = s.new_password(&format!("secret {ns}/{name}"));
        s.pull_secret_from_file(
            &ns,
            name,
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            &build(&password),
        )
    };
    // Each of these makes the kubelet fail every pull of a pod that references it; their
    // errors are about text right next to a password, which must not end up in the warning.
    // `auth` is not base64:
    secret_json("broken7000", &|password| {
        format!(
            r#"{{"auths":{{"registry.example.com:7000":{{"username":"e2e-user","password":"{password}","auth":"%%not*base64%%"}}}}}}"#
        )
    })?;
    // `auth` is base64 of a bare password, without `user:`:
    secret_json("no-colon7000", &|password| {
        let auth = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(password)
        };
        format!(r#"{{"auths":{{"registry.example.com:7000":{{"auth":"{auth}"}}}}}}"#)
    })?;
    // `password` is a list (the apiserver only checks that the data is JSON at all):
    secret_json("wrong-type7000", &|password| {
        format!(
            r#"{{"auths":{{"registry.example.com:7000":{{"username":"e2e-user","password":["{password}"]}}}}}}"#
        )
    })?;
    s.wait_cache_synced()?;
    let undecodable =
        metric(&s.metrics()?, "pullsecret_injector_undecodable_secrets").unwrap_or(0.0);
    ensure!(
        undecodable >= 3.0,
        "pullsecret_injector_undecodable_secrets is {undecodable}, expected at least 3"
    );

    let warned = |out: &crate::harness::Output, how: &str, names: &[&str]| -> Result<()> {
        let warnings = out.warnings();
        for name in names {
            ensure!(
                warnings
                    .iter()
                    .any(|line| line.contains(&format!("\"{name}\""))),
                "{how}: no `Warning:` naming {name} on stderr (stderr: {:?})",
                out.stderr.trim()
            );
        }
        Ok(())
    };
    // Nothing usable serves the image: every undecodable secret is named.
    let out = s.run_pod(
        &ns,
        "only-broken",
        "registry.example.com:7000/team/app:1",
        &[],
    )?;
    warned(
        &out,
        "kubectl run",
        &["broken7000", "no-colon7000", "wrong-type7000"],
    )?;
    s.expect_pod(&ns, "only-broken", &[], None)?;

    // With a good secret for the same registry, the good one is injected and the warning stays.
    s.registry_secret(&ns, "good7000", "registry.example.com:7000")?;
    s.wait_cache_synced()?;
    let pod = manifests::pod(
        "broken-and-good",
        json!({
            "containers": [manifests::container("app", "registry.example.com:7000/team/app:1")],
        }),
    );
    let out = s.apply(&manifests::in_namespace(pod, &ns).to_string())?;
    warned(
        &out,
        "kubectl apply",
        &["broken7000", "no-colon7000", "wrong-type7000"],
    )?;
    s.expect_pod(
        &ns,
        "broken-and-good",
        &["good7000"],
        Some("good7000 (registry.example.com:7000/team/app)"),
    )?;
    Ok(Outcome::Passed)
}

/// 4. Existing entries stay first and in place; ServiceAccount pull secrets are kept.
fn existing_and_serviceaccount_secrets(s: &Suite) -> Result<Outcome> {
    let ns = s.namespace("existing", &[])?;
    s.registry_secret(&ns, "reg5000", R5000)?;
    s.registry_secret(&ns, "reg6000", R6000)?;
    let sa_ns = s.namespace("serviceaccount", &[])?;
    s.registry_secret(&sa_ns, "reg5000", R5000)?;
    s.wait_cache_synced()?;

    let pod = manifests::pod(
        "has-secrets",
        json!({
            "imagePullSecrets": [{ "name": "mine" }, { "name": "reg5000" }],
            "containers": [
                manifests::container("a", "registry.example.com:5000/team/a:1"),
                manifests::container("b", "registry.example.com:6000/team/b:1"),
            ],
        }),
    );
    s.apply(&manifests::in_namespace(pod, &ns).to_string())?;
    s.expect_pod(
        &ns,
        "has-secrets",
        &["mine", "reg5000", "reg6000"],
        Some("reg6000 (registry.example.com:6000/team/b)"),
    )?;

    // Everything needed is there already: no change, no annotation, no duplicate.
    let pod = manifests::pod(
        "complete",
        json!({
            "imagePullSecrets": [{ "name": "reg5000" }],
            "containers": [manifests::container("a", "registry.example.com:5000/team/a:1")],
        }),
    );
    s.apply(&manifests::in_namespace(pod, &ns).to_string())?;
    s.expect_pod(&ns, "complete", &["reg5000"], None)?;

    s.kubectl(&[
        "patch",
        "serviceaccount",
        "default",
        "-n",
        &sa_ns,
        "-p",
        r#"{"imagePullSecrets":[{"name":"sa-secret"}]}"#,
    ])?;
    // The ServiceAccount admission plugin reads ServiceAccounts from an informer: wait for it.
    let (name, _) = create_pods_until(
        s,
        &sa_ns,
        "sa",
        "registry.example.com:5000/team/app:1",
        "the ServiceAccount's pull secret to reach new pods",
        |pod| pull_secrets(pod).first().map(String::as_str) == Some("sa-secret"),
    )?;
    s.expect_pod(
        &sa_ns,
        &name,
        &["sa-secret", "reg5000"],
        Some("reg5000 (registry.example.com:5000/team/app)"),
    )?;
    Ok(Outcome::Passed)
}

/// 5. `pullsecret-injector.io/inject: "false"` on the namespace or the pod turns injection off.
fn opt_out(s: &Suite) -> Result<Outcome> {
    let ns_out = s.namespace("opted-out", &[(INJECT_LABEL, "false")])?;
    let ns = s.namespace("pod-opt-out", &[])?;
    s.registry_secret(&ns_out, "reg5000", R5000)?;
    s.registry_secret(&ns, "reg5000", R5000)?;
    s.wait_cache_synced()?;
    let image = "registry.example.com:5000/team/app:1";
    let before = s.metrics()?;

    s.run_pod(&ns_out, "in-opted-out-namespace", image, &[])?;
    s.expect_pod(&ns_out, "in-opted-out-namespace", &[], None)?;
    s.run_pod(
        &ns,
        "opted-out-pod",
        image,
        &[&format!("--labels={INJECT_LABEL}=false")],
    )?;
    s.expect_pod(&ns, "opted-out-pod", &[], None)?;
    s.run_pod(&ns, "control", image, &[])?;
    s.expect_pod(
        &ns,
        "control",
        &["reg5000"],
        Some("reg5000 (registry.example.com:5000/team/app)"),
    )?;

    let after = s.metrics()?;
    let delta = |series: &str| {
        metric(&after, series).unwrap_or(0.0) - metric(&before, series).unwrap_or(0.0)
    };
    let opted_out = delta(r#"pullsecret_injector_reviews_total{outcome="opted_out"}"#);
    let injected = delta(r#"pullsecret_injector_reviews_total{outcome="injected"}"#);
    let total = metric_sum(&after, "pullsecret_injector_reviews_total")
        - metric_sum(&before, "pullsecret_injector_reviews_total");
    ensure!(
        opted_out == 1.0 && injected == 1.0 && total == 2.0,
        "reviews: {opted_out} opted_out, {injected} injected, {total} in all; expected 1, 1 and 2 \
         (the opted-out namespace is not even sent to the webhook)"
    );
    Ok(Outcome::Passed)
}

/// 7. Probes and metrics of the running server.
fn readiness_and_metrics(s: &Suite) -> Result<Outcome> {
    let admin = s.admin_addr()?;
    let (code, body) = http_get(admin, "/readyz")?;
    ensure!(code == 200, "/readyz answered {code}: {body:?}");
    let (code, body) = http_get(admin, "/livez")?;
    ensure!(code == 200, "/livez answered {code}: {body:?}");

    let metrics = s.metrics()?;
    let value = |series: &str| {
        metric(&metrics, series).with_context(|| format!("/metrics has no {series}"))
    };
    let (pods, refs) = s.injected_so_far();
    let injected_reviews = value(r#"pullsecret_injector_reviews_total{outcome="injected"}"#)?;
    ensure!(
        injected_reviews >= pods as f64,
        "reviews_total{{outcome=\"injected\"}} is {injected_reviews}, but the suite saw {pods} injected pods"
    );
    let injected_secrets = metric_sum(&metrics, "pullsecret_injector_secrets_injected_total");
    ensure!(
        injected_secrets >= refs as f64,
        "secrets_injected_total is {injected_secrets}, but the suite saw {refs} injected references"
    );
    let ready = value("pullsecret_injector_ready")?;
    ensure!(ready == 1.0, "pullsecret_injector_ready is {ready}");

    let expiry = value("pullsecret_injector_certificate_expiry_timestamp_seconds")?;
    let pem = std::fs::read(s.cert_path("tls.crt"))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).context("tls.crt is not PEM")?;
    let not_after = pem
        .parse_x509()
        .context("tls.crt is not a certificate")?
        .validity()
        .not_after
        .timestamp();
    ensure!(
        expiry > now_unix(),
        "certificate expiry {expiry} is not in the future"
    );
    ensure!(
        expiry == not_after as f64,
        "certificate expiry metric {expiry} != tls.crt notAfter {not_after}"
    );
    Ok(Outcome::Passed)
}

/// 7b. `serve` runs as the Helm chart's ServiceAccount (see `Suite::start_serve`): the chart's
///     RBAC grants get/list/watch on secrets and namespaces and nothing else, and is enough.
fn chart_serviceaccount_rbac(s: &Suite) -> Result<Outcome> {
    let user = s.chart.user();
    let as_user = format!("--as={user}");

    let list = s.kubectl(&["auth", "can-i", "--list", &as_user])?;
    for resource in ["secrets", "namespaces"] {
        let row = list
            .stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(resource))
            .with_context(|| {
                format!(
                    "`auth can-i --list` as {user} has no {resource} row: {}",
                    list.stdout
                )
            })?;
        let verbs: Vec<&str> = row
            .split_whitespace()
            .skip(1)
            .filter(|word| *word != "[]")
            .flat_map(|word| word.trim_matches(|c| c == '[' || c == ']').split(','))
            .filter(|verb| !verb.is_empty())
            .collect();
        for verb in ["get", "list", "watch"] {
            ensure!(
                verbs.contains(&verb),
                "{user} cannot {verb} {resource}: {row:?}"
            );
        }
    }

    // Secret writes are granted for the controller (enabled here); nothing else is.
    for (verb, resource) in [
        ("get", "configmaps"),
        ("create", "pods"),
        ("delete", "namespaces"),
    ] {
        let out = s.kubectl_raw(&["auth", "can-i", verb, resource, "-A", &as_user], None)?;
        ensure!(
            out.stdout.trim() == "no",
            "`kubectl auth can-i {verb} {resource} -A --as={user}` answered {:?} (exit {}), expected no",
            out.stdout.trim(),
            out.status
        );
    }

    // The serve process really uses that identity, and was never refused anything.
    let kubeconfig = std::fs::read_to_string(s.work_path().join("serviceaccount.kubeconfig"))
        .context("serve's ServiceAccount kubeconfig is missing")?;
    ensure!(
        kubeconfig.contains(&format!("name: {user}")),
        "serve's kubeconfig is not for {user}"
    );
    let log = s
        .serve_logs()
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap_or_default())
        .collect::<String>();
    // A copy a ResourceQuota refuses is a 403 too (metrics-dashboard makes one on purpose):
    // that is the namespace's limit, not the identity's rights.
    let refused: Vec<&str> = log
        .lines()
        .filter(|line| line.to_ascii_lowercase().contains("forbidden"))
        .filter(|line| !line.contains("exceeded quota"))
        .collect();
    ensure!(
        refused.is_empty(),
        "the serve log mentions a forbidden request: {}",
        tail(&refused.join("\n"), 3)
    );

    // Ready and injecting with only those rights.
    let (code, body) = http_get(s.admin_addr()?, "/readyz")?;
    ensure!(code == 200, "/readyz answered {code}: {body:?}");
    let ns = s.namespace("chart-sa", &[])?;
    s.registry_secret(&ns, "reg5000", R5000)?;
    s.wait_cache_synced()?;
    s.run_pod(
        &ns,
        "as-chart-sa",
        "registry.example.com:5000/team/app:1",
        &[],
    )?;
    s.expect_pod(
        &ns,
        "as-chart-sa",
        &["reg5000"],
        Some("reg5000 (registry.example.com:5000/team/app)"),
    )?;
    Ok(Outcome::Passed)
}

/// 6 (+7). SIGTERM: unready at once, exit 0 within delay + drain; with the webhook gone,
///    `failurePolicy: Ignore` admits pods unchanged.
fn shutdown_and_webhook_down(s: &Suite) -> Result<Outcome> {
    let ns = s.namespace("webhook-down", &[])?;
    s.registry_secret(&ns, "reg5000", R5000)?;
    s.wait_cache_synced()?;
    let image = "registry.example.com:5000/team/app:1";
    s.run_pod(&ns, "while-up", image, &[])?;
    s.expect_pod(
        &ns,
        "while-up",
        &["reg5000"],
        Some("reg5000 (registry.example.com:5000/team/app)"),
    )?;

    let admin = s.admin_addr()?;
    let mut serve = s.take_serve().context("serve is not running")?;
    let signalled = Instant::now();
    serve.send_sigterm()?;
    // The shutdown delay keeps the process (and /readyz) up for SHUTDOWN_DELAY: poll until
    // the 503 or the exit, whatever the machine's speed.
    let mut readyz_503 = None;
    while readyz_503.is_none() && serve.try_wait()?.is_none() {
        if let Ok((503, body)) = http_get(admin, "/readyz") {
            readyz_503 = Some(body);
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let body = readyz_503.context("/readyz never answered 503 after SIGTERM")?;
    ensure!(
        body.contains("shutting down"),
        "/readyz 503 body {body:?} does not say it is shutting down"
    );
    if let Ok(metrics) = s.metrics() {
        let ready = metric(&metrics, "pullsecret_injector_ready");
        ensure!(
            ready == Some(0.0),
            "pullsecret_injector_ready is {ready:?} while shutting down"
        );
    }

    let status = serve.wait_exit(SHUTDOWN_DELAY + DRAIN_TIMEOUT + Duration::from_secs(3))?;
    let took = signalled.elapsed();
    ensure!(status.success(), "serve exited with {status} after SIGTERM");
    ensure!(
        took >= SHUTDOWN_DELAY,
        "serve exited {:.1}s after SIGTERM, before its {}s shutdown delay",
        took.as_secs_f64(),
        SHUTDOWN_DELAY.as_secs()
    );
    println!("  serve exited 0, {:.1}s after SIGTERM", took.as_secs_f64());
    drop(serve);

    let out = s.run_pod(&ns, "while-down", image, &[])?;
    ensure!(
        out.status.success(),
        "pod creation failed with the webhook down"
    );
    s.expect_pod(&ns, "while-down", &[], None)?;
    Ok(Outcome::Passed)
}

/// 8. No password, `auth` value or secret data anywhere a user or operator can read.
fn no_credential_leaks(s: &Suite) -> Result<Outcome> {
    let needles = s.secret_needles();
    ensure!(
        needles.len() >= 10,
        "only {} secret values recorded; the check would be vacuous",
        needles.len()
    );
    let mut leaks = Vec::new();

    let logs = s.serve_logs();
    ensure!(!logs.is_empty(), "no serve log recorded");
    for log in &logs {
        let text = std::fs::read_to_string(log)
            .with_context(|| format!("cannot read {}", log.display()))?;
        ensure!(
            text.contains(&format!("\"e2e-{}-", s.run_id)),
            "serve log {} does not mention any of this run's namespaces; too quiet to check",
            log.display()
        );
        for (description, needle) in &needles {
            if text.contains(needle.as_str()) {
                leaks.push(format!("{description} in the serve log {}", log.display()));
            }
        }
    }

    let (scraped, metrics_leaks) = s.metrics_leaks();
    ensure!(scraped > 0, "/metrics was never scraped");
    leaks.extend(metrics_leaks);

    let stderr = s.kubectl_stderr();
    ensure!(
        stderr.iter().any(|text| text.contains("Warning:")),
        "no admission warning was captured from kubectl; the check would be vacuous"
    );
    for text in &stderr {
        for (description, needle) in &needles {
            if text.contains(needle.as_str()) {
                leaks.push(format!("{description} in kubectl's stderr"));
            }
        }
    }

    for ns in s.namespaces() {
        let pods = s.kubectl(&["get", "pods", "-n", &ns, "-o", "json"])?.stdout;
        let pod_list: Value = serde_json::from_str(&pods)?;
        for pod in pod_list["items"].as_array().into_iter().flatten() {
            if let Some(annotation) = injected_annotation(pod) {
                for (description, needle) in &needles {
                    if annotation.contains(needle.as_str()) {
                        leaks.push(format!(
                            "{description} in the annotation of pod {ns}/{}",
                            pod["metadata"]["name"]
                        ));
                    }
                }
            }
        }
        for (description, needle) in &needles {
            if pods.contains(needle.as_str()) {
                leaks.push(format!("{description} in the pods of {ns}"));
            }
        }
    }
    leaks.dedup();
    if !leaks.is_empty() {
        bail!("credentials leaked: {}", leaks.join("; "));
    }
    Ok(Outcome::Passed)
}

/// 9. The Helm chart's own test script, against this cluster: with the cluster's Helm 4,
///    then with Helm 3 (build-tool.sh helm3), since users have both.
fn chart_tests(s: &Suite) -> Result<Outcome> {
    let helm3 = crate::release::tool("helm3")?;
    for (label, helm) in [("helm4", s.cluster_env().1.join("helm")), ("helm3", helm3)] {
        let summary = chart_test_run(s, label, &helm)?;
        println!("  {label}: {summary}");
    }
    Ok(Outcome::Passed)
}

/// One run of tests/chart/test.sh with `helm`; its summary line.
fn chart_test_run(s: &Suite, label: &str, helm: &std::path::Path) -> Result<String> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chart/test.sh");
    ensure!(script.is_file(), "tests/chart/test.sh does not exist");
    let (env_file, bin_dir, cluster_dir) = s.cluster_env();
    let log_path = s.work_path().join(format!("chart-test-{label}.log"));
    let log = std::fs::File::create(&log_path)?;
    // cluster.env exports KUBECONFIG, CLUSTER_BIN_DIR, APISERVER_URL, ...; the cluster's tools
    // come first on PATH.
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(r#"set -a; . "$1"; set +a; export PATH="$2:$PATH"; exec bash "$3""#)
        .arg("chart-tests")
        .arg(env_file)
        .arg(bin_dir)
        .arg(&script)
        .env("PULLSECRET_INJECTOR_CLUSTER_DIR", cluster_dir)
        .env("HELM", helm)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group, so a timeout can stop the script and everything it started.
        .process_group(0)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(900);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            bail!(
                "tests/chart/test.sh ({label}) still running after 900s (log: {})",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() {
        bail!(
            "tests/chart/test.sh ({label}) exited with {status} (log: {}): {}",
            log_path.display(),
            tail(&output, 15)
        );
    }
    Ok(tail(&output, 1))
}
