//! The controller at scale (`--phases=controller-scale`): `serve --enable-controller` against
//! thousands of selected namespaces (one ClusterPullSecret created, its source rotated, then
//! deleted), then with thousands of Pending pods and Deployments (at rest, during a rollout,
//! and the pull audit over them).
//!
//! Completion is read from the controller's own write counter (one poll of its admin port every
//! 100 ms) and then confirmed with one list of the copies: polling lists of thousands of Secrets
//! would load the apiserver the measurement is about.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::CustomResourceExt;
use kube::{Api, Client};
use pullsecret_injector::state::crd::{
    ClusterPullSecret, MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_LABEL, PullSecretRule,
};
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::procs::{self, Cluster, Process};
use super::{Certs, Plan, kubeops, log, reviews};

/// The label the ClusterPullSecret selects its namespaces by.
const SELECT_LABEL: &str = "bench.pullsecret-injector.io/controller";
const SOURCE_NAMESPACE: &str = "cps-source";
const RESOURCE: &str = "bench-registry";
/// How long any one stage may take before the phase gives up on it (and reports so).
const STAGE_DEADLINE: Duration = Duration::from_secs(180);

/// How big the phase is.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Size {
    pub namespaces: usize,
    /// Namespaces holding the pods and Deployments (their `default` ServiceAccount must exist,
    /// which KCM makes at its own pace: a few, made first).
    pub pod_namespaces: usize,
    pub bare_pods: usize,
    pub deployments: usize,
    /// Deployments whose template changes in the rollout.
    pub rollout: usize,
}

impl Size {
    pub const QUICK: Size = Size {
        namespaces: 200,
        pod_namespaces: 4,
        bare_pods: 300,
        deployments: 100,
        rollout: 50,
    };
    pub const FULL: Size = Size {
        namespaces: 5_000,
        pod_namespaces: 20,
        bare_pods: 8_000,
        deployments: 2_000,
        rollout: 1_000,
    };
}

/// One controller stage: from the bench's write to every copy matching.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stage {
    pub seconds: f64,
    /// Whether every copy matched within the deadline.
    pub complete: bool,
    /// The controller's writes (its own counter) and their rate over the stage.
    pub controller_writes: f64,
    pub controller_writes_per_second: f64,
    /// Every request the apiserver answered on Secrets meanwhile (the bench's own are a few).
    pub apiserver_secret_requests: f64,
    /// The apiserver's own latency of secret writes (POST, PUT, DELETE) meanwhile, p50 and p99
    /// from its histogram's delta, in ms.
    pub apiserver_write_p50_ms: f64,
    pub apiserver_write_p99_ms: f64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ControllerRow {
    pub size: Option<Size>,
    pub serve_args: Vec<String>,
    pub namespaces_create_seconds: f64,
    pub create: Stage,
    pub rotate: Stage,
    pub delete: Stage,
    /// The same three with `--controller-qps=0`.
    pub unlimited: Option<[Stage; 3]>,
    /// The serve process at the end of the copy stages: resident and peak (VmHWM).
    pub copies_rss_kib: u64,
    pub copies_peak_kib: u64,
    pub pods: usize,
    pub pods_ready_ms: f64,
    pub pods_rest_rss_kib: u64,
    /// CPU over 10 s at rest, as a fraction of a core.
    pub pods_rest_cpu: f64,
    pub rollout_seconds: f64,
    pub rollout_new_pods: usize,
    pub rollout_cpu: f64,
    pub rollout_peak_kib: u64,
    /// From taking the Lease to the first audit's `audit_last_run_timestamp_seconds`.
    pub audit_seconds: Option<f64>,
    pub audit_peak_kib: u64,
    pub peak_kib: u64,
}

pub async fn phase(
    plan: &Plan,
    work: &Path,
    certs: &Certs,
    cluster: &Cluster,
    kube: &Client,
) -> Result<ControllerRow> {
    let size = if plan.quick { Size::QUICK } else { Size::FULL };
    let mut row = ControllerRow {
        size: Some(size),
        ..ControllerRow::default()
    };
    install_crds(kube).await?;
    // The pods' namespaces first: KCM makes their ServiceAccounts before the thousands after.
    let pod_namespaces: Vec<String> = (0..size.pod_namespaces)
        .map(|i| format!("cps-pods-{i:02}"))
        .collect();
    kubeops::create_namespaces(kube, &pod_namespaces, &[]).await?;
    let source = vec![SOURCE_NAMESPACE.to_owned()];
    kubeops::create_namespaces(kube, &source, &[]).await?;
    kubeops::create_secrets(kube, &source, 0..1, 1, Duration::from_secs(30)).await?;
    let namespaces: Vec<String> = (0..size.namespaces)
        .map(|i| format!("cps-{i:05}"))
        .collect();
    log(format!(
        "controller-scale: creating {} namespaces",
        size.namespaces
    ));
    let created = Instant::now();
    kubeops::create_namespaces(kube, &namespaces, &[(SELECT_LABEL, "on")]).await?;
    row.namespaces_create_seconds = created.elapsed().as_secs_f64();

    let flags = ["--enable-controller", "--recover-stuck-pods"];
    let serve = start(plan, work, certs, cluster, "controller", &flags, &mut row).await?;
    [row.create, row.rotate, row.delete] = copy_stages(kube, &serve, size.namespaces, 2).await?;
    (row.copies_rss_kib, row.copies_peak_kib) = serve.process.memory_kib()?;
    serve.process.stop();
    // The same again without the limit: what the controller asks of the apiserver on its own.
    let unlimited = ["--enable-controller", "--controller-qps=0"];
    let mut unlimited_row = ControllerRow::default();
    let serve = start(
        plan,
        work,
        certs,
        cluster,
        "controller-unlimited",
        &unlimited,
        &mut unlimited_row,
    )
    .await?;
    row.unlimited = Some(copy_stages(kube, &serve, size.namespaces, 3).await?);
    row.copies_peak_kib = row.copies_peak_kib.max(serve.process.memory_kib()?.1);
    serve.process.stop();

    // Pods: bare ones and Deployments' (KCM creates those); all stay Pending without a node.
    for namespace in &pod_namespaces {
        kubeops::wait_service_account(kube, namespace).await?;
    }
    log(format!(
        "controller-scale: {} Deployments and {} bare pods",
        size.deployments, size.bare_pods
    ));
    create_deployments(kube, &pod_namespaces, size.deployments).await?;
    create_bare_pods(kube, &pod_namespaces, size.bare_pods).await?;
    let want = size.bare_pods + size.deployments;
    row.pods = wait_pods(kube, &pod_namespaces, want, 2 * STAGE_DEADLINE).await?;
    log(format!("  {} pods", row.pods));

    let audit = [
        "--enable-controller",
        "--recover-stuck-pods",
        "--audit-interval=1h",
    ];
    let mut serve = start(
        plan,
        work,
        certs,
        cluster,
        "controller-pods",
        &audit,
        &mut row,
    )
    .await?;
    row.pods_ready_ms = serve.ready_after.as_secs_f64() * 1e3;
    // The first audit runs as soon as the Lease is held; its metric is the Unix time it ended.
    let deadline = Instant::now() + STAGE_DEADLINE;
    loop {
        // A scrape that times out while the audit runs is tried again until the deadline.
        let ended = metric(
            &serve,
            "pullsecret_injector_audit_last_run_timestamp_seconds",
        )
        .await
        .unwrap_or_default();
        if ended > 0.0 {
            row.audit_seconds = Some((ended - serve.leading_at).max(0.0));
            break;
        }
        if Instant::now() > deadline {
            log("  no audit finished within the deadline");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    row.audit_peak_kib = serve.process.memory_kib()?.1;
    super::settle(serve.process.pid()).await?;
    let cpu_before = procs::cpu_seconds_precise(serve.process.pid())?;
    let rest = Duration::from_secs(if plan.quick { 2 } else { 10 });
    tokio::time::sleep(rest).await;
    row.pods_rest_cpu =
        (procs::cpu_seconds_precise(serve.process.pid())? - cpu_before) / rest.as_secs_f64();
    row.pods_rest_rss_kib = serve.process.memory_kib()?.0;

    log(format!(
        "controller-scale: rollout of {} Deployments",
        size.rollout
    ));
    let before = count_pods(kube, &pod_namespaces).await?;
    let cpu_before = procs::cpu_seconds_precise(serve.process.pid())?;
    let started = Instant::now();
    roll_out(kube, &pod_namespaces, size.deployments, size.rollout).await?;
    let after = wait_pods(kube, &pod_namespaces, before + size.rollout, STAGE_DEADLINE).await?;
    row.rollout_seconds = started.elapsed().as_secs_f64();
    row.rollout_new_pods = after.saturating_sub(before);
    row.rollout_cpu = (procs::cpu_seconds_precise(serve.process.pid())? - cpu_before)
        / row.rollout_seconds.max(0.001);
    row.rollout_peak_kib = serve.process.memory_kib()?.1;
    row.peak_kib = row.rollout_peak_kib.max(row.copies_peak_kib);
    serve.process.check_alive()?;
    serve.process.stop();
    Ok(row)
}

/// The ClusterPullSecret created (copies of the source as it is), its source rotated to
/// `generation`, then the ClusterPullSecret deleted.
async fn copy_stages(
    kube: &Client,
    serve: &Serve,
    namespaces: usize,
    generation: u64,
) -> Result<[Stage; 3]> {
    let n = namespaces as f64;
    log("controller-scale: creating the ClusterPullSecret");
    let current = source_generation(kube).await?;
    let create = stage(kube, serve, "create", n, namespaces, current, || async {
        create_resource(kube).await
    })
    .await?;
    log(format!("  {:.1} s", create.seconds));
    log("controller-scale: rotating the source");
    let rotate = stage(kube, serve, "update", n, namespaces, generation, || async {
        rotate_source(kube, generation).await
    })
    .await?;
    log(format!("  {:.1} s", rotate.seconds));
    log("controller-scale: deleting the ClusterPullSecret");
    let delete = stage(kube, serve, "delete", n, 0, generation, || async {
        let api: Api<ClusterPullSecret> = Api::all(kube.clone());
        api.delete(RESOURCE, &DeleteParams::default()).await?;
        Ok(())
    })
    .await?;
    log(format!("  {:.1} s", delete.seconds));
    Ok([create, rotate, delete])
}

/// A running `serve` with its admin address.
struct Serve {
    process: Process,
    admin: SocketAddr,
    ready_after: Duration,
    /// Unix time it was first seen holding the Lease.
    leading_at: f64,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

async fn start(
    plan: &Plan,
    work: &Path,
    certs: &Certs,
    cluster: &Cluster,
    label: &str,
    flags: &[&str],
    row: &mut ControllerRow,
) -> Result<Serve> {
    let (webhook, admin) = (procs::free_addr()?, procs::free_addr()?);
    let mut command = super::serve_command(webhook, admin, certs);
    command
        .args(["--lease-identity", label])
        .args(flags)
        .args(&plan.serve_args)
        .env("PULLSECRET_INJECTOR_LOG_FORMAT", "json")
        // One info line per copy written would be the biggest part of the work measured.
        .env("PULLSECRET_INJECTOR_LOG_LEVEL", "warn")
        .env("KUBECONFIG", cluster.kubeconfig());
    // The report names the first serve's flags (the copy stages').
    if row.serve_args.is_empty() {
        row.serve_args = flags
            .iter()
            .map(|f| f.to_string())
            .chain(plan.serve_args.iter().cloned())
            .collect();
    }
    let mut process = Process::spawn("serve", command, &work.join(format!("serve-{label}.log")))?;
    log(format!("serve pid {} ({label})", process.pid()));
    let ready_after = procs::wait_ready(&mut process, admin, Duration::from_secs(180)).await?;
    let serve = Serve {
        process,
        admin,
        ready_after,
        leading_at: 0.0,
    };
    // Ready is not leading: the previous serve's Lease may have to expire first, and that wait
    // is not the controller's work.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&serve, "pullsecret_injector_leader").await? < 1.0 {
        if Instant::now() > deadline {
            bail!("serve ({label}) did not take the Lease within a minute");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Serve {
        leading_at: unix_now(),
        ..serve
    })
}

/// Runs `act`, then waits until the controller's `operation` writes grew by `writes` and a list
/// finds `copies` copies with the current data; the apiserver's and the controller's counters
/// are read around it.
async fn stage<F, Fut>(
    kube: &Client,
    serve: &Serve,
    operation: &str,
    writes: f64,
    copies: usize,
    generation: u64,
    act: F,
) -> Result<Stage>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let counter =
        format!("pullsecret_injector_controller_writes_total{{operation=\"{operation}\"}}");
    let all_writes = "pullsecret_injector_controller_writes_total";
    let before = metric(serve, &counter).await?;
    let writes_before = metric(serve, all_writes).await?;
    let apiserver_before = apiserver_metrics(kube).await?;
    let started = Instant::now();
    act().await?;
    let deadline = started + STAGE_DEADLINE;
    let mut complete = false;
    while Instant::now() < deadline {
        if metric(serve, &counter).await? - before >= writes
            && copies_match(kube, copies, generation).await?
        {
            complete = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let apiserver_after = apiserver_metrics(kube).await?;
    let controller_writes = metric(serve, all_writes).await? - writes_before;
    let latency = apiserver_after
        .write_latency
        .delta(&apiserver_before.write_latency);
    if !complete {
        log(format!(
            "  {operation}: not every copy matched within {STAGE_DEADLINE:?}"
        ));
    }
    Ok(Stage {
        seconds,
        complete,
        controller_writes,
        controller_writes_per_second: controller_writes / seconds.max(0.001),
        apiserver_secret_requests: apiserver_after.secret_requests
            - apiserver_before.secret_requests,
        apiserver_write_p50_ms: latency.quantile(0.5) * 1e3,
        apiserver_write_p99_ms: latency.quantile(0.99) * 1e3,
    })
}

async fn install_crds(kube: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(kube.clone());
    for crd in [ClusterPullSecret::crd(), PullSecretRule::crd()] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error).context("create the CRDs"),
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let established = api.get(&name).await?.status.is_some_and(|status| {
                status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                break;
            }
            if Instant::now() > deadline {
                bail!("CRD {name} not established within a minute");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

async fn create_resource(kube: &Client) -> Result<()> {
    let api: Api<ClusterPullSecret> = Api::all(kube.clone());
    let spec = serde_json::from_value(json!({
        "source": { "namespace": SOURCE_NAMESPACE, "name": "secret-00000" },
        "namespaceSelector": { "matchLabels": { SELECT_LABEL: "on" } },
    }))?;
    let resource = ClusterPullSecret::new(RESOURCE, spec);
    api.create(&PostParams::default(), &resource).await?;
    Ok(())
}

/// The source's credential at `generation`: what every copy must hold once it is current.
fn source_data(generation: u64) -> ByteString {
    ByteString(reviews::docker_config(0, 0, generation))
}

/// Which `source_data` generation the source holds now.
async fn source_generation(kube: &Client) -> Result<u64> {
    let api: Api<Secret> = Api::namespaced(kube.clone(), SOURCE_NAMESPACE);
    let source = api.get("secret-00000").await?;
    let data = source
        .data
        .as_ref()
        .and_then(|d| d.get(".dockerconfigjson"));
    (0..10)
        .find(|&generation| data == Some(&source_data(generation)))
        .context("the source holds none of the bench's generations")
}

async fn rotate_source(kube: &Client, generation: u64) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(kube.clone(), SOURCE_NAMESPACE);
    let patch = json!({ "data": { ".dockerconfigjson": source_data(generation) } });
    api.patch(
        "secret-00000",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Whether exactly `copies` copies exist, all with the source's data at `generation`.
async fn copies_match(kube: &Client, copies: usize, generation: u64) -> Result<bool> {
    let api: Api<Secret> = Api::all(kube.clone());
    let params = ListParams::default().labels(&format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{OWNER_LABEL}={RESOURCE}"
    ));
    let listed = api.list(&params).await?;
    let want = source_data(generation);
    Ok(listed.items.len() == copies
        && listed.items.iter().all(|secret| {
            secret
                .data
                .as_ref()
                .and_then(|data| data.get(".dockerconfigjson"))
                == Some(&want)
        }))
}

/// The labels of Deployment `name`'s pods: its own, since overlapping selectors would make
/// Deployments fight over pods.
fn app_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_owned(), name.to_owned())])
}

fn pod_template(name: &str, generation: &str) -> PodTemplateSpec {
    let pod = kubeops::pod("", "");
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(app_labels(name)),
            annotations: Some(BTreeMap::from([(
                "bench.pullsecret-injector.io/generation".to_owned(),
                generation.to_owned(),
            )])),
            ..ObjectMeta::default()
        }),
        spec: pod.spec,
    }
}

async fn create_deployments(kube: &Client, namespaces: &[String], count: usize) -> Result<()> {
    stream::iter(0..count)
        .map(|index| {
            let namespace = &namespaces[index % namespaces.len()];
            let api: Api<Deployment> = Api::namespaced(kube.clone(), namespace);
            let name = format!("app-{index:05}");
            let deployment = Deployment {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(DeploymentSpec {
                    replicas: Some(1),
                    selector: LabelSelector {
                        match_labels: Some(app_labels(&name)),
                        ..LabelSelector::default()
                    },
                    template: pod_template(&name, "1"),
                    ..DeploymentSpec::default()
                }),
                ..Deployment::default()
            };
            async move {
                match api.create(&PostParams::default(), &deployment).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
                    Err(error) => Err(error).with_context(|| format!("create deployment {index}")),
                }
            }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await
}

async fn create_bare_pods(kube: &Client, namespaces: &[String], count: usize) -> Result<()> {
    stream::iter(0..count)
        .map(|index| {
            let namespace = &namespaces[index % namespaces.len()];
            let api: Api<Pod> = Api::namespaced(kube.clone(), namespace);
            let pod = kubeops::pod(namespace, &format!("pod-{index:05}"));
            async move {
                match api.create(&PostParams::default(), &pod).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
                    Err(error) => Err(error).with_context(|| format!("create pod {index}")),
                }
            }
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await
}

/// A new template for the first `count` Deployments: KCM replaces their pods.
async fn roll_out(
    kube: &Client,
    namespaces: &[String],
    deployments: usize,
    count: usize,
) -> Result<()> {
    stream::iter(0..count.min(deployments))
        .map(|index| {
            let namespace = &namespaces[index % namespaces.len()];
            let api: Api<Deployment> = Api::namespaced(kube.clone(), namespace);
            let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
                "bench.pullsecret-injector.io/generation": "2"
            } } } } });
            async move {
                api.patch(
                    &format!("app-{index:05}"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .with_context(|| format!("roll out deployment {index}"))?;
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await
}

/// Pods in `namespaces` (other phases leave theirs elsewhere), counted with metadata-only
/// lists in pages.
async fn count_pods(kube: &Client, namespaces: &[String]) -> Result<usize> {
    let mut total = 0;
    for namespace in namespaces {
        let api: Api<Pod> = Api::namespaced(kube.clone(), namespace);
        let mut params = ListParams::default().limit(5_000);
        loop {
            let page = api.list_metadata(&params).await?;
            total += page.items.len();
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
    }
    Ok(total)
}

/// Waits until at least `want` pods exist in `namespaces` (KCM makes the Deployments' at its
/// own pace); returns how many there are then, or at the deadline.
async fn wait_pods(
    kube: &Client,
    namespaces: &[String],
    want: usize,
    timeout: Duration,
) -> Result<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let count = count_pods(kube, namespaces).await?;
        if count >= want || Instant::now() > deadline {
            if count < want {
                log(format!("  only {count} of {want} pods within {timeout:?}"));
            }
            return Ok(count);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The admin port's /metrics.
async fn scrape(serve: &Serve) -> Result<String> {
    let addr = serve.admin;
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        Ok::<String, std::io::Error>(body)
    };
    // Generous: a first full run saw serve take over 5 s to answer while its first audit of
    // 10,000 pods ran on two busy cores.
    tokio::time::timeout(Duration::from_secs(30), fetch)
        .await
        .context("scrape serve's /metrics")?
        .context("scrape serve's /metrics")
}

/// The sum of every series of `name` (`name{labels}` for exactly one), 0 when absent.
async fn metric(serve: &Serve, name: &str) -> Result<f64> {
    let text = scrape(serve).await?;
    Ok(sum_series(&text, |series| {
        series == name || (!name.contains('{') && series.starts_with(&format!("{name}{{")))
    }))
}

fn sum_series(text: &str, matches: impl Fn(&str) -> bool) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| matches(series))
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// What the stages read from the apiserver's /metrics.
struct ApiserverMetrics {
    secret_requests: f64,
    write_latency: Histogram,
}

async fn apiserver_metrics(kube: &Client) -> Result<ApiserverMetrics> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = kube.request_text(request).await?;
    let secrets = |line: &str| line.contains("resource=\"secrets\"");
    let secret_requests = sum_series(&text, |series| {
        series.starts_with("apiserver_request_total{") && secrets(series)
    });
    let write = |line: &str| {
        secrets(line)
            && ["POST", "PUT", "DELETE"]
                .iter()
                .any(|verb| line.contains(&format!("verb=\"{verb}\"")))
    };
    let mut buckets: BTreeMap<u64, f64> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_duration_seconds_bucket{") else {
            continue;
        };
        if !write(rest) {
            continue;
        }
        let Some((labels, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Some(le) = labels
            .split("le=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
        else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        *buckets.entry(bound.to_bits()).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    let mut bounds: Vec<(f64, f64)> = buckets
        .into_iter()
        .map(|(bits, count)| (f64::from_bits(bits), count))
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(ApiserverMetrics {
        secret_requests,
        write_latency: Histogram(bounds),
    })
}

/// A cumulative Prometheus histogram: (upper bound, count at or below it), bounds ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram(Vec<(f64, f64)>);

impl Histogram {
    fn delta(&self, earlier: &Histogram) -> Histogram {
        Histogram(
            self.0
                .iter()
                .map(|&(bound, count)| {
                    let before = earlier
                        .0
                        .iter()
                        .find(|(b, _)| *b == bound)
                        .map_or(0.0, |(_, c)| *c);
                    (bound, count - before)
                })
                .collect(),
        )
    }

    /// The `q` quantile, interpolated within its bucket as Prometheus' histogram_quantile does
    /// (the highest finite bound when it falls in +Inf); 0 without observations.
    fn quantile(&self, q: f64) -> f64 {
        let Some(&(_, total)) = self.0.last() else {
            return 0.0;
        };
        if total <= 0.0 {
            return 0.0;
        }
        let rank = q * total;
        let mut previous = (0.0, 0.0);
        for &(bound, count) in &self.0 {
            if count >= rank {
                if bound.is_infinite() {
                    return previous.0;
                }
                let in_bucket = count - previous.1;
                let fraction = if in_bucket > 0.0 {
                    (rank - previous.1) / in_bucket
                } else {
                    1.0
                };
                return previous.0 + (bound - previous.0) * fraction;
            }
            previous = (bound, count);
        }
        previous.0
    }
}
