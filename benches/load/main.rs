//! Webhook load, scale and overhead benchmarks against a real local control plane.
//!
//! `cargo bench --bench load -- [--quick] [--write FILE]` (see `make bench`):
//! 1. TLS load on loopback: `serve` and a same-stack baseline, keep-alive (1/25/100
//!    connections), a new TLS connection per request, and a fixed 2,000 reviews/s.
//!    The ladder (`ladder.rs`): servers from the canned one up to `serve`, one piece added at
//!    a time, and nginx answering the same canned review, at 25 keep-alive connections.
//! 2. Pod-create latency through kube-apiserver with the webhook registered and not.
//! 3. Good requests before and during an attack: idle and slowloris connections and hostile
//!    requests (`attack.rs`).
//! 4. Memory and start-up with 1k/10k/50k pull secrets over 1k namespaces, and admission
//!    latency while secrets churn.
//! 5. The controller at scale: a ClusterPullSecret over 5,000 namespaces (created, rotated,
//!    deleted), then 10,000 Pending pods at rest, in a rollout and under the audit
//!    (`controller.rs`).
//!
//! Traffic goes to 127.0.0.1 only; every process started here is stopped by its pid.

mod attack;
mod baseline;
mod client;
mod controller;
mod kubeops;
mod kyverno;
mod ladder;
mod nginx;
mod procs;
mod report;
mod reviews;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use client::{Mode, Stats, Target};
use procs::{Cluster, Process};
use report::{LoadRow, OverheadRun, Results, ScaleRow};

/// How big and how long; `--quick` is a smoke run of every phase.
#[derive(Debug, Clone)]
struct Plan {
    quick: bool,
    warmup: Duration,
    measure: Duration,
    fixed_measure: Duration,
    pods_per_round: usize,
    scale_steps: Vec<usize>,
    scale_namespaces: usize,
    churn_seconds: u64,
    /// Which phases run: `load`, `ladder`, `overhead`, `attack`, `scale`, `controller-scale`
    /// (all by default).
    phases: Vec<String>,
    /// Extra `serve` flags, for experiments (`--serve-arg=--log-level=warn`).
    serve_args: Vec<String>,
    /// Load modes to run, by a piece of their label, `;`-separated (`--modes=25 conn`); all by
    /// default.
    modes: Vec<String>,
    /// Kyverno in the pod-create phase (`--kyverno`; `make bench` builds it first).
    kyverno: bool,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                warmup: Duration::from_millis(300),
                measure: Duration::from_secs(1),
                fixed_measure: Duration::from_secs(2),
                pods_per_round: 20,
                scale_steps: vec![1_000],
                scale_namespaces: 100,
                churn_seconds: 2,
                phases: Vec::new(),
                serve_args: Vec::new(),
                modes: Vec::new(),
                kyverno: false,
            }
        } else {
            Plan {
                quick,
                warmup: Duration::from_secs(1),
                measure: Duration::from_secs(8),
                fixed_measure: Duration::from_secs(15),
                pods_per_round: 250,
                scale_steps: vec![1_000, 10_000, 50_000],
                scale_namespaces: 1_000,
                churn_seconds: 15,
                phases: Vec::new(),
                serve_args: Vec::new(),
                modes: Vec::new(),
                kyverno: false,
            }
        }
    }

    fn runs(&self, phase: &str) -> bool {
        self.phases.is_empty() || self.phases.iter().any(|p| p == phase)
    }
}

const BENCH_NAMESPACE: &str = "bench";
const BENCH_SECRETS: usize = 50;
// The controller-scale phase alone may take up to about 15 minutes on two cores.
const TOTAL_DEADLINE: Duration = Duration::from_secs(40 * 60);

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--baseline-server") {
        let arg = |i: usize| args.get(at + i).cloned().unwrap_or_default();
        let result =
            (|| -> Result<()> { baseline::main(arg(1).parse()?, arg(2).into(), arg(3).into()) })();
        return exit(result);
    }
    if let Some(at) = args.iter().position(|a| a == "--ladder-server") {
        let arg = |i: usize| args.get(at + i).cloned().unwrap_or_default();
        let result = (|| -> Result<()> {
            ladder::main(&arg(1), arg(2).parse()?, arg(3).into(), arg(4).into())
        })();
        return exit(result);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let write = args
        .iter()
        .position(|a| a == "--write")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let mut plan = Plan::new(quick);
    plan.kyverno = args.iter().any(|a| a == "--kyverno");
    for arg in &args {
        if let Some(phases) = arg.strip_prefix("--phases=") {
            plan.phases = phases.split(',').map(str::to_owned).collect();
        } else if let Some(serve_arg) = arg.strip_prefix("--serve-arg=") {
            plan.serve_args.push(serve_arg.to_owned());
        } else if let Some(modes) = arg.strip_prefix("--modes=") {
            plan.modes = modes.split(';').map(str::to_owned).collect();
        }
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return exit(Err(error.into())),
    };
    let result = runtime.block_on(async {
        let work = async {
            tokio::time::timeout(TOTAL_DEADLINE, run(plan))
                .await
                .context("the bench exceeded its overall time limit")?
        };
        tokio::select! {
            result = work => result,
            _ = interrupted() => bail!("interrupted; stopped every process the bench started"),
        }
    });
    let result = result.and_then(|results| {
        let repo = repo_root();
        let json = repo.join("target/bench/results.json");
        std::fs::write(&json, serde_json::to_vec_pretty(&results)?)?;
        let decision = report::criterion_medians(&repo.join("target/criterion"));
        let markdown = report::render(&results, &decision);
        let out = write.unwrap_or_else(|| repo.join("target/bench/report.md"));
        report::write_generated(&out, &markdown)?;
        println!("{markdown}");
        eprintln!("[bench] wrote {} and {}", out.display(), json.display());
        Ok(())
    });
    exit(result)
}

fn exit(result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("[bench] error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `serve` binary this bench was built with, copied once at start: another checkout
/// sharing the target directory may build over `target/release/pullsecret-injector` mid-run.
fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pullsecret-injector"))
}

fn log(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_certs(dir: &Path) -> Result<Certs> {
    let status = Command::new(binary())
        .args(["certs", "--ip", "127.0.0.1", "--out-dir"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!("pullsecret-injector certs failed: {status}");
    }
    Ok(Certs {
        ca: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    })
}

/// A running `serve` with its two addresses.
struct Serve {
    process: Process,
    webhook: SocketAddr,
    ready_after: Duration,
}

/// `serve` on `webhook` and `admin` with the bench's certificate, stopping at once when told.
fn serve_command(webhook: SocketAddr, admin: SocketAddr, certs: &Certs) -> Command {
    let mut command = Command::new(binary());
    command
        .arg("serve")
        .args(["--listen", &webhook.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .arg("--tls-cert-file")
        .arg(&certs.cert)
        .arg("--tls-key-file")
        .arg(&certs.key)
        .args(["--shutdown-delay", "0s", "--drain-timeout", "2s"]);
    command
}

async fn start_serve(
    plan: &Plan,
    work: &Path,
    certs: &Certs,
    kubeconfig: &Path,
    label: &str,
) -> Result<Serve> {
    let (webhook, admin) = (procs::free_addr()?, procs::free_addr()?);
    let mut command = serve_command(webhook, admin, certs);
    command
        .args(&plan.serve_args)
        // The chart's defaults, JSON logs at info; flags in `serve_args` take precedence.
        .env("PULLSECRET_INJECTOR_LOG_FORMAT", "json")
        .env("PULLSECRET_INJECTOR_LOG_LEVEL", "info")
        .env("KUBECONFIG", kubeconfig);
    let log_file = work.join(format!("serve-{label}.log"));
    let mut process = Process::spawn("serve", command, &log_file)?;
    log(format!("serve pid {}, webhook {webhook}", process.pid()));
    let ready_after = procs::wait_ready(&mut process, admin, Duration::from_secs(120)).await?;
    Ok(Serve {
        process,
        webhook,
        ready_after,
    })
}

async fn run(plan: Plan) -> Result<Results> {
    let started = Instant::now();
    let repo = repo_root();
    let work = repo.join("target/bench");
    std::fs::create_dir_all(&work)?;
    let mut results = Results::new(plan.quick);
    results.review_sizes = reviews::variant_sizes();

    let certs = make_certs(&work.join("certs"))?;
    log("starting the control plane");
    let cluster = Cluster::up(&repo, repo.join("target/bench-cluster"))?;
    let kube = kubeops::client(&cluster.kubeconfig()).await?;
    let bench_ns = vec![BENCH_NAMESPACE.to_owned()];
    kubeops::create_namespaces(&kube, &bench_ns, &[]).await?;
    kubeops::create_secrets(
        &kube,
        &bench_ns,
        0..BENCH_SECRETS,
        16,
        Duration::from_secs(60),
    )
    .await?;

    log("starting serve");
    let serve = start_serve(&plan, &work, &certs, &cluster.kubeconfig(), "load").await?;
    results.small_ready_ms = serve.ready_after.as_secs_f64() * 1e3;
    tokio::time::sleep(Duration::from_secs(2)).await;
    results.idle_rss_kib = serve.process.memory_kib()?.0;

    if plan.runs("load") {
        load_phase(&plan, &work, &certs, &serve, &mut results).await?;
        results.after_load_rss_kib = serve.process.memory_kib()?.0;
    }
    if plan.runs("ladder") {
        results.ladder = Some(ladder_phase(&plan, &work, &certs, &serve).await?);
    }
    if plan.runs("overhead") {
        overhead_phase(&plan, &work, &cluster, &kube, &certs, &serve, &mut results).await?;
    }
    if plan.runs("attack") {
        attack_phase(&plan, &certs, &serve, &mut results).await?;
    }
    serve.process.stop();
    if plan.runs("scale") {
        scale_phase(&plan, &work, &certs, &cluster, &kube, &mut results).await?;
    }
    // Last: it installs the CRDs and leaves thousands of namespaces and pods behind.
    if plan.runs("controller-scale") {
        let row = controller::phase(&plan, &work, &certs, &cluster, &kube).await?;
        results.controller = Some(row);
    }

    drop(kube);
    drop(cluster);
    results.total_seconds = started.elapsed().as_secs_f64();
    Ok(results)
}

async fn load_phase(
    plan: &Plan,
    work: &Path,
    certs: &Certs,
    serve: &Serve,
    results: &mut Results,
) -> Result<()> {
    let (baseline, baseline_addr) = start_baseline(work, certs, "baseline").await?;

    let webhook = Target::new(serve.webhook, &certs.ca)?;
    let base = Target::new(baseline_addr, &certs.ca)?;
    let bodies = Arc::new(reviews::bodies(256, &[BENCH_NAMESPACE.to_owned()]));
    let modes = [
        Mode::KeepAlive(1),
        Mode::KeepAlive(25),
        Mode::KeepAlive(100),
        Mode::NewConnection(25),
        Mode::FixedRate {
            connections: 25,
            rate: 2_000,
        },
    ];
    let selected = |mode: &Mode| {
        plan.modes.is_empty() || plan.modes.iter().any(|m| mode.label().contains(m.as_str()))
    };
    for mode in modes.into_iter().filter(selected) {
        let measure = match mode {
            Mode::FixedRate { .. } => plan.fixed_measure,
            _ => plan.measure,
        };
        let mut row = LoadRow {
            mode: mode.label(),
            ..LoadRow::default()
        };
        // The two servers take turns, so drifting background load touches both alike.
        for (name, target, pid) in [
            ("webhook", &webhook, serve.process.pid()),
            ("baseline", &base, baseline.pid()),
        ] {
            log(format!("load: {name}, {}", mode.label()));
            let (stats, cpu_us) = measured_run(target, mode, &bodies, plan.warmup, measure, || {
                procs::cpu_seconds(pid)
            })
            .await?;
            log(format!(
                "  {:.0}/s p50 {:.0}µs p99 {:.0}µs errors {}",
                stats.throughput, stats.p50_us, stats.p99_us, stats.errors
            ));
            match name {
                "webhook" => (row.webhook, row.webhook_cpu_us) = (stats, cpu_us),
                _ => (row.baseline, row.baseline_cpu_us) = (stats, cpu_us),
            }
        }
        results.load.push(row);
    }
    baseline.stop();
    Ok(())
}

/// The ladder's servers, `serve` and nginx in turn at 25 keep-alive connections, in alternating
/// order over the passes so drifting background load touches all alike; medians per server.
async fn ladder_phase(
    plan: &Plan,
    work: &Path,
    certs: &Certs,
    serve: &Serve,
) -> Result<ladder::LadderResult> {
    let passes = if plan.quick { 1 } else { 3 };
    let nginx = nginx::Nginx::start(work, certs).await?;
    let mut rungs = Vec::new();
    for rung in ladder::Rung::ALL {
        let addr = procs::free_addr()?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("--ladder-server")
            .arg(rung.arg())
            .arg(addr.to_string())
            .arg(&certs.cert)
            .arg(&certs.key);
        let log_file = work.join(format!("ladder-{}.log", rung.arg()));
        let mut process = Process::spawn("ladder", command, &log_file)?;
        procs::wait_listening(&mut process, addr).await?;
        rungs.push((rung, process, addr));
    }
    // (name, what it adds, address, how to read its CPU seconds)
    type CpuReader<'a> = Box<dyn Fn() -> Result<f64> + 'a>;
    let mut servers: Vec<(String, String, SocketAddr, CpuReader)> = Vec::new();
    for (rung, process, addr) in &rungs {
        let pid = process.pid();
        servers.push((
            rung.name().to_owned(),
            rung.adds().to_owned(),
            *addr,
            Box::new(move || procs::cpu_seconds(pid)),
        ));
    }
    let serve_pid = serve.process.pid();
    servers.push((
        "serve".to_owned(),
        "watches and the snapshot they keep (the real process)".to_owned(),
        serve.webhook,
        Box::new(move || procs::cpu_seconds(serve_pid)),
    ));
    servers.push((
        "nginx".to_owned(),
        "nginx 1.22 (Debian), canned answer, access log off".to_owned(),
        nginx.addr,
        Box::new(|| nginx.cpu_seconds()),
    ));

    let bodies = Arc::new(reviews::bodies(256, &[BENCH_NAMESPACE.to_owned()]));
    let mode = Mode::KeepAlive(25);
    let mut samples: Vec<Vec<(Stats, f64)>> = vec![Vec::new(); servers.len()];
    for pass in 0..passes {
        let mut order: Vec<usize> = (0..servers.len()).collect();
        if pass % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let (name, _, addr, cpu) = &servers[index];
            log(format!("ladder: {name}, pass {}", pass + 1));
            let target = Target::new(*addr, &certs.ca)?;
            let (stats, cpu_us) =
                measured_run(&target, mode, &bodies, plan.warmup, plan.measure, cpu).await?;
            log(format!(
                "  {:.0}/s, {cpu_us:.1} µs CPU/req, errors {}",
                stats.throughput, stats.errors
            ));
            samples[index].push((stats, cpu_us));
        }
    }
    let rows = servers
        .iter()
        .zip(samples)
        .map(|((name, adds, _, _), runs)| ladder::LadderRow {
            server: name.clone(),
            adds: adds.clone(),
            throughput: ladder::median(runs.iter().map(|(s, _)| s.throughput).collect()),
            cpu_us: ladder::median(runs.iter().map(|(_, cpu)| *cpu).collect()),
            p50_us: ladder::median(runs.iter().map(|(s, _)| s.p50_us).collect()),
            errors: runs.iter().map(|(s, _)| s.errors).sum(),
        })
        .collect();
    drop(servers);
    for (_, process, _) in rungs {
        process.stop();
    }
    nginx.process.stop();
    Ok(ladder::LadderResult { passes, rows })
}

/// One load run and the server CPU it took per answered request (warm-up included on both
/// sides), read through `cpu_seconds`.
async fn measured_run(
    target: &Target,
    mode: Mode,
    bodies: &Arc<Vec<bytes::Bytes>>,
    warmup: Duration,
    measure: Duration,
    cpu_seconds: impl Fn() -> Result<f64>,
) -> Result<(Stats, f64)> {
    let before = cpu_seconds()?;
    let stats = client::run(target, mode, Arc::clone(bodies), warmup, measure).await?;
    let used = cpu_seconds()? - before;
    let answered = (warmup + measure).as_secs_f64() * stats.throughput;
    let cpu_us = if answered > 0.0 {
        used * 1e6 / answered
    } else {
        0.0
    };
    Ok((stats, cpu_us))
}

/// Good requests on one keep-alive connection, quiet and then under attack (`attack.rs`).
async fn attack_phase(
    plan: &Plan,
    certs: &Certs,
    serve: &Serve,
    results: &mut Results,
) -> Result<()> {
    let size = if plan.quick {
        attack::AttackSize::QUICK
    } else {
        attack::AttackSize::FULL
    };
    let target = Target::new(serve.webhook, &certs.ca)?;
    let bodies = Arc::new(reviews::bodies(256, &[BENCH_NAMESPACE.to_owned()]));
    let good = Mode::KeepAlive(1);
    log("attack: good requests, quiet");
    let quiet = client::run(
        &target,
        good,
        Arc::clone(&bodies),
        plan.warmup,
        plan.measure,
    )
    .await?;
    let rss_before_kib = serve.process.memory_kib()?.0;
    log(format!(
        "attack: opening {} hostile connections",
        size.connections()
    ));
    let attack = attack::Attack::start(&target, size).await?;
    log("attack: good requests, under attack");
    // The warm-up lets the burst of connections that set the attack up settle.
    let under_attack = client::run(&target, good, bodies, plan.warmup, plan.measure).await;
    let rss_during_kib = serve.process.memory_kib()?.0;
    let hostile_sent = attack.stop().await;
    let under_attack = under_attack?;
    log(format!(
        "  p99 {:.0}µs quiet, {:.0}µs under attack; {} errors; {hostile_sent} hostile requests",
        quiet.p99_us, under_attack.p99_us, under_attack.errors
    ));
    results.attack = Some(report::AttackRow {
        size,
        quiet,
        under_attack,
        hostile_sent,
        rss_before_kib,
        rss_during_kib,
    });
    Ok(())
}

/// The same-stack baseline server (see `baseline.rs`), as a child process.
async fn start_baseline(work: &Path, certs: &Certs, label: &str) -> Result<(Process, SocketAddr)> {
    let addr = procs::free_addr()?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("--baseline-server")
        .arg(addr.to_string())
        .arg(&certs.cert)
        .arg(&certs.key);
    let mut process = Process::spawn("baseline", command, &work.join(format!("{label}.log")))?;
    procs::wait_listening(&mut process, addr).await?;
    Ok((process, addr))
}

/// Waits until a process uses under 5 % of a core over a second (at most 60 s).
async fn settle(pid: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let before = procs::cpu_seconds_precise(pid)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if procs::cpu_seconds_precise(pid)? - before < 0.05 || Instant::now() > deadline {
            return Ok(());
        }
    }
}

/// The pull secrets both pullsecret-injector and Kyverno's policy give the bench pod in the
/// overhead namespaces (sorted).
const INJECTED: [&str; 2] = ["secret-00000", "secret-00003"];

async fn overhead_phase(
    plan: &Plan,
    work: &Path,
    cluster: &Cluster,
    kube: &kube::Client,
    certs: &Certs,
    serve: &Serve,
    results: &mut Results,
) -> Result<()> {
    use report::Registered::{Baseline, BaselineBesideKyverno, Kyverno, Nothing, Webhook};
    let (baseline, baseline_addr) = start_baseline(work, certs, "baseline-overhead").await?;
    // Rounds in A-B-C-C-B-A order so a drifting apiserver (a growing etcd) affects all alike;
    // one pod at a time for latency, then 10 at a time for throughput (the apiserver saturates
    // the two cores there, so latency at 10 measures CPU cost, not delay). The baseline server
    // registered in place of the webhook shows what calling any webhook costs. Kyverno comes
    // last, started only then, between no-op rounds of its own: what it leaves the apiserver
    // and etcd to do (admission reports, events) slowed every round after it.
    let order = [Nothing, Webhook, Baseline];
    let mut rounds = Vec::new();
    for concurrency in [1, 10] {
        rounds.extend(order.iter().map(|&r| (r, concurrency)));
        rounds.extend(order.iter().rev().map(|&r| (r, concurrency)));
    }
    if plan.kyverno {
        for concurrency in [1, 10] {
            rounds.extend(
                [
                    BaselineBesideKyverno,
                    Kyverno,
                    Kyverno,
                    BaselineBesideKyverno,
                ]
                .map(|r| (r, concurrency)),
            );
        }
    }
    let namespaces: Vec<String> = (0..rounds.len()).map(|i| format!("overhead-{i}")).collect();
    // Kyverno's rounds get its label, the others the bench webhook's.
    for (&(registered, _), namespace) in rounds.iter().zip(&namespaces) {
        let label = match registered {
            Kyverno => kyverno::SELECT_LABEL,
            _ => kubeops::SELECT_LABEL,
        };
        kubeops::create_namespaces(kube, std::slice::from_ref(namespace), &[(label, "on")]).await?;
    }
    for namespace in &namespaces {
        let one = vec![namespace.clone()];
        kubeops::create_secrets(kube, &one, 0..10, 10, Duration::from_secs(60)).await?;
        kubeops::wait_service_account(kube, namespace).await?;
    }
    let ca = std::fs::read(&certs.ca)?;
    let mut probe = 0;
    let mut current = None;
    let mut kyverno: Option<kyverno::Kyverno> = None;
    for (round, (&(registered, concurrency), namespace)) in
        rounds.iter().zip(&namespaces).enumerate()
    {
        let with_webhook = registered != Nothing;
        if registered == Kyverno && kyverno.is_none() {
            log("overhead: starting Kyverno (out of cluster)");
            let dir = kyverno::build(&repo_root())?;
            let started = kyverno::start(&dir, work, cluster).await?;
            log(format!("kyverno pid {}", started.process.pid()));
            kyverno = Some(started);
        }
        if current != Some(registered) {
            kubeops::unregister_webhook(kube).await?;
            let addr = match registered {
                Nothing | Kyverno => None,
                Webhook => Some(serve.webhook),
                Baseline | BaselineBesideKyverno => Some(baseline_addr),
            };
            if let Some(addr) = addr {
                kubeops::register_webhook(kube, &format!("https://{addr}/mutate"), &ca).await?;
            }
            current = Some(registered);
        }
        // The apiserver picks up webhook configurations asynchronously: wait until a probe
        // pod shows the expected behaviour.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            probe += 1;
            match kubeops::probe_pull_secrets(kube, namespace, probe).await {
                Ok(names) if names.is_empty() != with_webhook => {
                    // Both tools must do the same job on the bench pod.
                    let mut sorted = names.clone();
                    sorted.sort();
                    if matches!(registered, Webhook | Kyverno) && sorted != INJECTED {
                        bail!(
                            "{} gave the probe pod {names:?}, expected {INJECTED:?}",
                            registered.label()
                        );
                    }
                    break;
                }
                Ok(_) => {}
                // Kyverno fails its first calls while it finishes starting (certificates,
                // webhook registration): retried until the deadline.
                Err(error) if registered == Kyverno && Instant::now() < deadline => {
                    log(format!("  kyverno not ready yet: {error:#}"));
                }
                Err(error) => return Err(error),
            }
            if Instant::now() > deadline {
                bail!("the apiserver did not apply the webhook registration change");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let pods = if concurrency == 1 {
            plan.pods_per_round / 2
        } else {
            plan.pods_per_round
        };
        log(format!(
            "overhead round {round}: {pods} pods, {concurrency} in flight, registered: {}",
            registered.label()
        ));
        let server = match registered {
            Nothing => None,
            Webhook => Some(serve.process.pid()),
            Baseline | BaselineBesideKyverno => Some(baseline.pid()),
            Kyverno => kyverno.as_ref().map(|k| k.process.pid()),
        };
        let cpu_before = server.map(procs::cpu_seconds_precise).transpose()?;
        let (latencies, wall) = kubeops::create_pods(kube, namespace, pods, concurrency).await?;
        if registered == Kyverno
            && let Some(pid) = server
        {
            // Kyverno goes on working after its admissions (reports, events): that work is
            // counted as its cost, and awaited so it does not load the next round.
            settle(pid).await?;
        }
        let server_cpu_seconds = match (server, cpu_before) {
            (Some(pid), Some(before)) => Some(procs::cpu_seconds_precise(pid)? - before),
            _ => None,
        };
        let server_rss_kib = server
            .map(|pid| procs::memory_kib(pid).map(|(rss, _)| rss))
            .transpose()?;
        results.overhead.push(OverheadRun {
            registered,
            concurrency,
            latencies_us: latencies,
            seconds: wall.as_secs_f64(),
            server_cpu_seconds,
            server_rss_kib,
        });
    }
    let (calls, mean) = kubeops::webhook_call_stats(kube).await?;
    results.apiserver_webhook_calls = calls;
    results.apiserver_webhook_mean_ms = mean * 1e3;
    log(format!(
        "apiserver: {calls} webhook calls, mean {:.2} ms",
        mean * 1e3
    ));
    kubeops::unregister_webhook(kube).await?;
    baseline.stop();
    if let Some(kyverno) = kyverno {
        kyverno.process.stop();
    }
    kubeops::delete_namespaces(kube, &namespaces).await;
    Ok(())
}

async fn scale_phase(
    plan: &Plan,
    work: &Path,
    certs: &Certs,
    cluster: &Cluster,
    kube: &kube::Client,
    results: &mut Results,
) -> Result<()> {
    let namespaces: Vec<String> = (0..plan.scale_namespaces)
        .map(|i| format!("scale-{i:04}"))
        .collect();
    let created = Instant::now();
    kubeops::create_namespaces(kube, &namespaces, &[]).await?;
    results.namespaces_create_seconds = created.elapsed().as_secs_f64();
    let mut have = 0;
    let mut last_serve = None;
    let steps = plan.scale_steps.clone();
    for (step, &target) in steps.iter().enumerate() {
        log(format!("scale: creating secrets {have}..{target}"));
        let took = kubeops::create_secrets(
            kube,
            &namespaces,
            have..target,
            48,
            Duration::from_secs(300),
        )
        .await?;
        have = target;
        log(format!("scale: {target} secrets; starting serve"));
        let mut serve = start_serve(
            plan,
            work,
            certs,
            &cluster.kubeconfig(),
            &format!("scale-{target}"),
        )
        .await?;
        let ready_ms = serve.ready_after.as_secs_f64() * 1e3;
        let hwm_at_ready = serve.process.memory_kib()?.1;
        tokio::time::sleep(Duration::from_secs(3)).await;
        serve.process.check_alive()?;
        let (rss, hwm) = serve.process.memory_kib()?;
        let apiserver_rss = cluster
            .pid("APISERVER_PID")
            .and_then(|pid| procs::memory_kib(pid).ok())
            .map(|(rss, _)| rss);
        log(format!(
            "  ready {ready_ms:.0} ms, rss {rss} KiB, peak {hwm} KiB"
        ));
        results.scale.push(ScaleRow {
            secrets: target,
            namespaces: plan.scale_namespaces,
            create_seconds: took.as_secs_f64(),
            ready_ms,
            rss_kib: rss,
            peak_kib: hwm.max(hwm_at_ready),
            apiserver_rss_kib: apiserver_rss.unwrap_or_default(),
        });
        if step + 1 == steps.len() {
            last_serve = Some(serve);
        } else {
            serve.process.stop();
        }
    }
    let Some(serve) = last_serve else {
        return Ok(());
    };

    // Admission latency while secrets churn: a steady review rate into the scale namespaces
    // while a background task rewrites credentials.
    let rate = if plan.quick { 200 } else { 1_000 };
    let churn_rate = if plan.quick { 20 } else { 50 };
    let target = Target::new(serve.webhook, &certs.ca)?;
    let bodies = Arc::new(reviews::bodies(1_024, &namespaces));
    let duration = Duration::from_secs(plan.churn_seconds);
    let warmup = Duration::from_secs(1);
    let mode = Mode::FixedRate {
        connections: 25,
        rate,
    };
    let quiet = client::run(&target, mode, Arc::clone(&bodies), warmup, duration).await?;
    let until = Instant::now() + warmup + duration;
    let churn = tokio::spawn(kubeops::churn_secrets(
        kube.clone(),
        Arc::new(namespaces.clone()),
        have,
        churn_rate,
        until,
    ));
    log(format!(
        "churn: {rate} reviews/s with {churn_rate} secret updates/s"
    ));
    let churning = client::run(&target, mode, bodies, warmup, duration).await?;
    let updates = churn.await?;
    results.churn = Some(report::ChurnRow {
        secrets: have,
        review_rate: rate,
        updates_per_second: updates as f64 / (warmup + duration).as_secs_f64(),
        quiet,
        churning,
        rss_after_kib: serve.process.memory_kib()?.0,
    });
    serve.process.stop();
    Ok(())
}
