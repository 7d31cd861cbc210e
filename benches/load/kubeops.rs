//! What the bench asks of the apiserver, through the kube crate: namespaces and pull secrets in
//! bulk, secret churn, the webhook registration, and pod creates.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::json;

use super::reviews;

pub const WEBHOOK_NAME: &str = "bench.pullsecret-injector.io";
pub const SELECT_LABEL: &str = "bench.pullsecret-injector.io/webhook";

pub async fn client(kubeconfig: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig)?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.read_timeout = Some(Duration::from_secs(60));
    Ok(Client::try_from(config)?)
}

pub async fn create_namespaces(
    client: &Client,
    names: &[String],
    labels: &[(&str, &str)],
) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    stream::iter(names)
        .map(|name| {
            let api = api.clone();
            let namespace = Namespace {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            };
            async move {
                match api.create(&PostParams::default(), &namespace).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
                    Err(error) => Err(error).with_context(|| format!("create namespace {name}")),
                }
            }
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await
}

/// Creates secrets `range` spread round-robin over `namespaces`, `concurrency` at a time, and
/// gives up after `deadline`.
pub async fn create_secrets(
    client: &Client,
    namespaces: &[String],
    range: std::ops::Range<usize>,
    concurrency: usize,
    deadline: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    let work = stream::iter(range)
        .map(|index| {
            let namespace = &namespaces[index % namespaces.len()];
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let secret = reviews::pull_secret(namespace, index, namespaces.len(), 0);
            async move {
                match api.create(&PostParams::default(), &secret).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
                    Err(error) => Err(error).with_context(|| format!("create secret {index}")),
                }
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>();
    tokio::time::timeout(deadline, work)
        .await
        .with_context(|| format!("creating secrets took longer than {deadline:?}"))??;
    Ok(started.elapsed())
}

/// Rewrites the credentials of existing secrets at about `rate`/s until `until`; returns how
/// many updates the apiserver accepted.
pub async fn churn_secrets(
    client: Client,
    namespaces: Arc<Vec<String>>,
    secrets: usize,
    rate: u64,
    until: Instant,
) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut serial = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < until {
        ticker.tick().await;
        serial += 1;
        let index = (serial as usize * 7919) % secrets;
        let namespace = namespaces[index % namespaces.len()].clone();
        let slot = index / namespaces.len();
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let done = Arc::clone(&done);
        tasks.spawn(async move {
            let data = reviews::docker_config(slot, index, serial);
            let patch = json!({ "data": { ".dockerconfigjson": ByteString(data) } });
            let name = format!("secret-{index:05}");
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    done.load(Ordering::Relaxed)
}

/// Waits until the `default` ServiceAccount of `namespace` exists (pods need it).
pub async fn wait_service_account(client: &Client, namespace: &str) -> Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get_opt("default").await?.is_none() {
        if Instant::now() > deadline {
            bail!("no default ServiceAccount in {namespace}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Registers `url` as a mutating webhook for pod creates in namespaces labelled `SELECT_LABEL`.
pub async fn register_webhook(client: &Client, url: &str, ca_pem: &[u8]) -> Result<()> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let config = MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(WEBHOOK_NAME.to_owned()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: WEBHOOK_NAME.to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            side_effects: "None".to_owned(),
            failure_policy: Some("Fail".to_owned()),
            reinvocation_policy: Some("Never".to_owned()),
            timeout_seconds: Some(10),
            client_config: WebhookClientConfig {
                url: Some(url.to_owned()),
                ca_bundle: Some(ByteString(ca_pem.to_vec())),
                ..WebhookClientConfig::default()
            },
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(SELECT_LABEL.to_owned(), "on".to_owned())])),
                ..LabelSelector::default()
            }),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec![String::new()]),
                api_versions: Some(vec!["v1".to_owned()]),
                operations: Some(vec!["CREATE".to_owned()]),
                resources: Some(vec!["pods".to_owned()]),
                scope: Some("Namespaced".to_owned()),
            }]),
            ..MutatingWebhook::default()
        }]),
    };
    api.create(&PostParams::default(), &config).await?;
    Ok(())
}

pub async fn unregister_webhook(client: &Client) -> Result<()> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    match api.delete(WEBHOOK_NAME, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// A pod like `kubectl run` makes, with images the namespace's secrets match.
pub fn pod(namespace: &str, name: &str) -> Pod {
    let container = |name: &str, image: &str| Container {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        ..Container::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([("run".to_owned(), "bench".to_owned())])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![
                container("api", "registry0.example.com/shop/api:1.4.2"),
                container("proxy", "nginx:1.27"),
                container("metrics", "quay.io/org3/exporter:0.9"),
            ],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// The pull secrets a probe pod created in `namespace` comes out with, in order: empty when no
/// webhook mutates pods there.
pub async fn probe_pull_secrets(
    client: &Client,
    namespace: &str,
    probe: usize,
) -> Result<Vec<String>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let created = api
        .create(
            &PostParams::default(),
            &pod(namespace, &format!("probe-{probe}")),
        )
        .await?;
    Ok(created
        .spec
        .and_then(|spec| spec.image_pull_secrets)
        .unwrap_or_default()
        .into_iter()
        .map(|reference| reference.name)
        .collect())
}

/// Creates `count` pods `concurrency` at a time; per-create latencies in µs and the wall time.
pub async fn create_pods(
    client: &Client,
    namespace: &str,
    count: usize,
    concurrency: usize,
) -> Result<(Vec<u32>, Duration)> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    let latencies = stream::iter(0..count)
        .map(|index| {
            let api = api.clone();
            let pod = pod(namespace, &format!("pod-{index:05}"));
            async move {
                let begun = Instant::now();
                api.create(&PostParams::default(), &pod)
                    .await
                    .with_context(|| format!("create pod {index}"))?;
                Ok::<u32, anyhow::Error>(
                    u32::try_from(begun.elapsed().as_micros()).unwrap_or(u32::MAX),
                )
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<u32>>()
        .await?;
    Ok((latencies, started.elapsed()))
}

pub async fn delete_namespaces(client: &Client, names: &[String]) {
    let api: Api<Namespace> = Api::all(client.clone());
    for name in names {
        let _ = api.delete(name, &DeleteParams::background()).await;
    }
}

/// The apiserver's own account of the webhook calls: (calls, mean seconds), from its metrics.
pub async fn webhook_call_stats(client: &Client) -> Result<(f64, f64)> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let metric = "apiserver_admission_webhook_admission_duration_seconds";
    let value = |suffix: &str| -> f64 {
        text.lines()
            .filter(|line| line.starts_with(&format!("{metric}_{suffix}{{")))
            .filter(|line| line.contains(WEBHOOK_NAME))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let (sum, count) = (value("sum"), value("count"));
    Ok((count, if count > 0.0 { sum / count } else { 0.0 }))
}
