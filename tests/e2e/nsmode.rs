//! Namespaced mode (`serve --namespaces`, the chart's `namespaces`): the chart's ServiceAccount
//! may read Secrets only in the listed namespaces; a serve process with exactly that identity
//! becomes ready, and only once the watch of every listed namespace has listed; the chart's
//! webhook sends it only those namespaces' pods; its controller copies, sweeps orphaned copies
//! and watches pods only there;
//! `--secret-label-selector` caches only labelled Secrets. And what
//! a user of one namespace can never obtain from another: a Secret of another namespace, by
//! image or by PullSecretRule.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::harness::{Suite, condition, http_get, metric, metric_sum, poll, pull_secrets, secret};
use crate::incluster::Release;
use crate::scenarios::Outcome;

const CONVERGENCE: Duration = Duration::from_secs(120);
const REVIEWS: &str = "pullsecret_injector_reviews_total";

pub fn namespaced_mode(s: &Suite) -> Result<Outcome> {
    // The suite's own serve runs a cluster-wide controller, which would also copy this
    // scenario's ClusterPullSecret, into every namespace.
    drop(s.take_serve());
    let select = format!("e2e.pullsecret-injector.io/nsmode-{}", s.run_id);
    let shop = s.foreign_namespace("ns-shop", &[(&select, "true")])?;
    let billing = s.foreign_namespace("ns-billing", &[])?;
    let other = s.foreign_namespace("ns-other", &[(&select, "true")])?;
    let late = s.foreign_namespace("ns-late", &[])?;
    let registry = |ns: &str| format!("registry.{ns}.e2e.example");
    let image = |ns: &str| format!("{}/app:1", registry(ns));
    for ns in [&shop, &billing, &other] {
        s.registry_secret(ns, &format!("{ns}-registry"), &registry(ns))?;
    }

    // The chart in namespaced mode, its webhook pointing at a serve process started below.
    let mut release = Release {
        s,
        name: format!("pullsecret-injector-ns-{}", s.run_id),
        namespace: s.foreign_namespace("ns-injector", &[])?,
        installed: true,
    };
    let ca = std::fs::read(s.cert_path("ca.crt"))?;
    release.helm(
        "install",
        &[
            "--set",
            "replicaCount=0",
            "--set",
            "webhook.url=https://127.0.0.1:9/mutate",
            "--set",
            &format!("webhook.caBundle={}", BASE64.encode(&ca)),
            "--set",
            &format!("namespaces={{{shop},{billing}}}"),
            "--set",
            "controller.enabled=true",
            "--set",
            "controller.recoverStuckPods=true",
        ],
    )?;
    let user = format!(
        "system:serviceaccount:{}:{}",
        release.namespace, release.name
    );
    let can = |verb: &str, resource: &str, namespace: Option<&str>| -> Result<bool> {
        let mut args = vec!["auth", "can-i", verb, resource, "--as", &user];
        match namespace {
            Some(ns) => args.extend(["-n", ns]),
            None => args.push("-A"),
        }
        Ok(s.kubectl_raw(&args, None)?.stdout.trim() == "yes")
    };
    // RoleBindings reach the authorizer asynchronously.
    poll("the Roles in the listed namespaces", CONVERGENCE, || {
        Ok(
            (can("list", "secrets", Some(&shop))? && can("list", "secrets", Some(&billing))?)
                .then_some(()),
        )
    })?;
    for verb in ["get", "list", "watch"] {
        for (namespace, allowed) in [
            (Some(shop.as_str()), true),
            (Some(billing.as_str()), true),
            (Some(other.as_str()), false),
            (Some(release.namespace.as_str()), false),
            (Some("default"), false),
            (None, false),
        ] {
            ensure!(
                can(verb, "secrets", namespace)? == allowed,
                "`kubectl auth can-i {verb} secrets` in {} as {user}: expected {}",
                namespace.unwrap_or("all namespaces"),
                if allowed { "yes" } else { "no" }
            );
        }
    }
    ensure!(
        can("create", "secrets", Some(&shop))? && !can("create", "secrets", Some(&other))?,
        "the controller's Secret writes are not limited to the listed namespaces"
    );
    ensure!(
        can("list", "pods", Some(&shop))?
            && !can("list", "pods", Some(&other))?
            && !can("list", "pods", None)?,
        "the recovery's pod access is not limited to the listed namespaces"
    );
    ensure!(
        can("watch", "namespaces", None)?,
        "namespaces must stay readable cluster-wide"
    );

    let kubeconfig = s.token_kubeconfig(&release.namespace, &release.name, "nsmode.kubeconfig")?;
    let scope = |namespaces: &[&str]| -> Vec<String> {
        vec![
            "--namespaces".to_owned(),
            namespaces.join(","),
            "--own-namespace".to_owned(),
            release.namespace.clone(),
        ]
    };

    // Readiness: a namespace whose Secrets it may not list keeps it unready until it may.
    // This serve also caches only labelled Secrets (--secret-label-selector).
    let cached_label = "e2e.pullsecret-injector.io/cached";
    let label = |ns: &str, value: &str| -> Result<()> {
        let secret = format!("secret/{ns}-registry");
        let label = format!("{cached_label}{value}");
        s.kubectl(&["label", "-n", ns, &secret, &label, "--overwrite"])?;
        Ok(())
    };
    label(&shop, "=true")?;
    {
        let mut args = scope(&[&shop, &billing, &late]);
        args.extend([
            "--secret-label-selector".to_owned(),
            format!("{cached_label}=true"),
        ]);
        let waiting = s.start_extra_serve_as("nsmode-unready", &kubeconfig, &args, false)?;
        poll("a refused Secret watch", CONVERGENCE, || {
            let text = waiting.metrics().unwrap_or_default();
            Ok((metric_sum(&text, "pullsecret_injector_watch_errors_total") > 0.0).then_some(()))
        })?;
        let (code, body) = http_get(waiting.admin, "/readyz")?;
        ensure!(
            code == 503,
            "/readyz answered {code} ({body:?}) while the watch of {late} is refused"
        );
        let role = format!("nsmode-late-{}", s.run_id);
        s.kubectl(&[
            "create",
            "role",
            &role,
            "-n",
            &late,
            "--verb=get,list,watch",
            "--resource=secrets",
        ])?;
        s.kubectl(&[
            "create",
            "rolebinding",
            &role,
            "-n",
            &late,
            &format!("--role={role}"),
            &format!("--serviceaccount={}:{}", release.namespace, release.name),
        ])?;
        poll(
            "readiness once every namespace's watch has listed",
            CONVERGENCE,
            || Ok((http_get(waiting.admin, "/readyz")?.0 == 200).then_some(())),
        )?;
        let cached = |count: f64| {
            poll(&format!("{count} cached Secrets"), CONVERGENCE, || {
                let text = waiting.metrics()?;
                Ok(
                    (metric(&text, "pullsecret_injector_cached_secrets") == Some(count))
                        .then_some(()),
                )
            })
        };
        cached(1.0).context("only the labelled Secret of shop")?;
        label(&billing, "=true")?;
        cached(2.0).context("billing's Secret once labelled")?;
        label(&shop, "-")?;
        cached(1.0).context("shop's Secret once unlabelled")?;
    }

    // With exactly the chart's RBAC, serving shop and billing.
    let mut args = scope(&[&shop, &billing]);
    args.extend(
        [
            "--enable-controller",
            "--lease-namespace",
            &release.namespace,
            "--lease-name",
            &format!("{}-controller", release.name),
            "--lease-identity",
            "nsmode",
            "--recover-stuck-pods",
            "--orphan-sweep-interval",
            "2s",
        ]
        .map(str::to_owned),
    );
    let serve = s.start_extra_serve_as("nsmode", &kubeconfig, &args, true)?;
    release.helm(
        "upgrade",
        &[
            "--reuse-values",
            "--set",
            &format!("webhook.url=https://{}/mutate", serve.webhook),
        ],
    )?;
    let webhook = s.get_json(&["mutatingwebhookconfiguration", &release.name])?;
    let selector = &webhook["webhooks"][0]["namespaceSelector"]["matchExpressions"];
    ensure!(
        selector.as_array().into_iter().flatten().any(|e| {
            e["key"] == "kubernetes.io/metadata.name"
                && e["operator"] == "In"
                && e["values"] == serde_json::json!([shop, billing])
        }),
        "the webhook's namespaceSelector does not select only {shop} and {billing}: {selector}"
    );
    poll("injection in the shop namespace", CONVERGENCE, || {
        Ok(
            (s.dry_run_pull_secrets(&shop, &image(&shop))? == [format!("{shop}-registry")])
                .then_some(()),
        )
    })?;

    // Pods of a namespace not listed never reach the webhook: no review is counted.
    let before = metric_sum(&serve.metrics()?, REVIEWS);
    let got = s.dry_run_pull_secrets(&other, &image(&other))?;
    ensure!(got.is_empty(), "a pod in {other} got {got:?}");
    let after_other = metric_sum(&serve.metrics()?, REVIEWS);
    ensure!(
        after_other == before,
        "a pod in {other} was reviewed ({before} -> {after_other} reviews)"
    );
    s.dry_run_pull_secrets(&shop, &image(&shop))?;
    ensure!(
        metric_sum(&serve.metrics()?, REVIEWS) > after_other,
        "a pod in {shop} was not counted: the review counter cannot tell"
    );

    cross_namespace(s, &shop, &billing, &image(&billing))?;

    // The controller copies only into the listed namespaces, and says so.
    let copies = CopiesGuard {
        s,
        names: vec![
            format!("e2e-nsmode-{}", s.run_id),
            format!("e2e-nsmode-outside-{}", s.run_id),
        ],
    };
    let billing_secret = format!("{billing}-registry");
    s.cluster_pull_secret(
        &copies.names[0],
        (&billing, &billing_secret),
        (&select, "true"),
        "nsmode-pull",
    )?;
    let (status, message) = poll("the ClusterPullSecret to be Ready", CONVERGENCE, || {
        let resource = s.get_json(&["clusterpullsecret", &copies.names[0]])?;
        Ok(condition(&resource, "Ready")
            .filter(|(status, _, _)| status == "True")
            .map(|(_, _, message)| (resource["status"].clone(), message)))
    })?;
    ensure!(
        status["namespaces"] == serde_json::json!([shop]) && message.contains("namespaced mode"),
        "status of a ClusterPullSecret selecting {shop} and {other}: {status}"
    );
    ensure!(
        secret(s, &shop, "nsmode-pull")?.is_some() && secret(s, &other, "nsmode-pull")?.is_none(),
        "the copy must exist in {shop} only"
    );
    let other_secret = format!("{other}-registry");
    s.cluster_pull_secret(
        &copies.names[1],
        (&other, &other_secret),
        (&select, "true"),
        "nsmode-outside",
    )?;
    poll("SourceOutOfScope", CONVERGENCE, || {
        let resource = s.get_json(&["clusterpullsecret", &copies.names[1]])?;
        Ok(condition(&resource, "Ready").filter(|(_, reason, _)| reason == "SourceOutOfScope"))
    })?;
    ensure!(
        secret(s, &shop, "nsmode-outside")?.is_none(),
        "a source outside the listed namespaces was copied"
    );
    drop(copies);

    // The orphan sweep deletes a copy whose ClusterPullSecret is gone in a listed namespace,
    // and never looks at another.
    let orphan = |ns: &str| {
        format!(
            "apiVersion: v1
kind: Secret
metadata:
  name: nsmode-orphan
  namespace: {ns}
  labels: {{app.kubernetes.io/managed-by: pullsecret-injector, pullsecret-injector.io/cluster-pull-secret: e2e-nsmode-gone-{}}}
type: Opaque
",
            s.run_id
        )
    };
    s.apply(&orphan(&other))?;
    s.apply(&orphan(&shop))?;
    poll(
        "the orphan in the shop namespace swept",
        CONVERGENCE,
        || Ok(secret(s, &shop, "nsmode-orphan")?.is_none().then_some(())),
    )?;
    ensure!(
        secret(s, &other, "nsmode-orphan")?.is_some(),
        "the orphan sweep deleted a Secret in {other}, which it does not serve"
    );

    let log = std::fs::read_to_string(&serve.log)?;
    ensure!(
        log.contains("recovering pods stuck on pulls"),
        "the pod recovery did not start"
    );
    ensure!(
        !log.to_ascii_lowercase().contains("forbidden"),
        "the namespaced serve was refused something its chart RBAC should allow"
    );
    drop(serve);
    release.helm("uninstall", &[])?;
    release.installed = false;
    Ok(Outcome::Passed)
}

/// Nothing of `billing` ever reaches a pod of `shop`: not by an image only billing's Secret
/// matches, not by a PullSecretRule naming billing's Secret, and a rule cannot even name
/// another namespace.
fn cross_namespace(s: &Suite, shop: &str, billing: &str, billing_image: &str) -> Result<()> {
    let got = s.dry_run_pull_secrets(shop, billing_image)?;
    ensure!(
        got.is_empty(),
        "a pod in {shop} got {got:?} for an image only a Secret of {billing} matches"
    );
    let registry = billing_image.split('/').next().unwrap_or_default();
    let rule = |name: &str, secret: &str| {
        format!(
            "apiVersion: pullsecret-injector.io/v1alpha1
kind: PullSecretRule
metadata: {{name: {name}, namespace: {shop}}}
spec:
  registries: [\"{registry}\"]
  secrets: [\"{secret}\"]
"
        )
    };
    let refused = s.kubectl_raw(
        &["apply", "-f", "-"],
        Some(&rule("by-path", &format!("{billing}/{billing}-registry"))),
    )?;
    ensure!(
        !refused.status.success() && refused.stderr.contains("spec.secrets"),
        "a PullSecretRule naming {billing}/{billing}-registry was not refused: {}",
        refused.stderr.trim()
    );
    s.apply(&rule("by-name", &format!("{billing}-registry")))?;
    // Once the rule is cached the pod is warned about the Secret it names, and still gets
    // nothing.
    let pod = poll("the rule to be cached", CONVERGENCE, || {
        let out = s.run_pod(
            shop,
            "probe",
            billing_image,
            &["--dry-run=server", "-o", "json"],
        )?;
        let warned = out
            .warnings()
            .iter()
            .any(|w| w.contains(&format!("{billing}-registry")));
        Ok(warned
            .then(|| serde_json::from_str::<Value>(&out.stdout))
            .transpose()?)
    })?;
    ensure!(
        pull_secrets(&pod).is_empty(),
        "a PullSecretRule of {shop} injected {:?}",
        pull_secrets(&pod)
    );
    Ok(())
}

/// Deletes the scenario's ClusterPullSecrets while the controller still runs (their finalizer
/// needs it): declared after the serve process, so dropped before it.
struct CopiesGuard<'a> {
    s: &'a Suite,
    names: Vec<String>,
}

impl Drop for CopiesGuard<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = self.s.kubectl_raw(
                &[
                    "delete",
                    "clusterpullsecret",
                    name,
                    "--ignore-not-found",
                    "--timeout=60s",
                ],
                None,
            );
        }
    }
}
