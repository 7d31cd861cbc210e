//! Faults: the control plane restarting under the webhook, certificate rotation and SIGTERM
//! under load, and the webhook killed with either failure policy.
//!
//! These run after the suite's own webhook has stopped; each starts its own `serve` process
//! (registered by a webhook configuration that only matches the namespaces it creates) and
//! stops it by pid. The first one runs at trace level with plain logs, so the leak check
//! also covers the most verbose output.

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::client::{
    WebhookClient, expect_allowed, peer_leaf, pod_review, read_response, serial_and_expiry,
    write_request,
};
use crate::harness::{
    Suite, all_events_json, events, http_get, metric, poll, pull_secrets, serve_command,
    shutdown_timing, tail, webhook_manifest,
};
use crate::scenarios::{Outcome, Scenario};

/// Run after `shutdown-and-webhook-down` (the suite's webhook is gone by then).
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "fault-apiserver-restart",
        run: apiserver_restart,
    },
    Scenario {
        name: "fault-etcd-restart",
        run: etcd_restart,
    },
    Scenario {
        name: "fault-cert-rotation-under-load",
        run: cert_rotation_under_load,
    },
    Scenario {
        name: "fault-sigterm-under-load",
        run: sigterm_under_load,
    },
    Scenario {
        name: "fault-sigkill-failure-policy",
        run: sigkill_failure_policy,
    },
    Scenario {
        name: "fault-cluster-pull-secret-namespace-failures",
        run: crate::controller_faults::namespace_failures,
    },
    Scenario {
        name: "fault-secret-type-flip",
        run: crate::controller_faults::secret_type_flip,
    },
    Scenario {
        name: "fault-namespace-watch-lost",
        run: crate::controller_faults::namespace_watch_lost,
    },
    Scenario {
        name: "fault-lease-failover",
        run: crate::controller_faults::lease_failover,
    },
    Scenario {
        name: "no-credential-leaks-in-events",
        run: no_leaks_in_events,
    },
];

const FAULT_LABEL: &str = "e2e.pullsecret-injector.io/fault";
const SHUTDOWN_DELAY: Duration = Duration::from_secs(2);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Within how long a webhook must see a secret created after a control-plane restart.
const RECOVERY: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// A serve process of a scenario's own

pub struct ExtraServe {
    child: Child,
    webhook: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

fn free_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl ExtraServe {
    pub fn start(s: &Suite, name: &str, cert_dir: &Path, extra: &[&str]) -> Result<ExtraServe> {
        ExtraServe::start_as(s, name, cert_dir, s.kubeconfig_path(), extra)
    }

    /// [`ExtraServe::start`] with the identity of `kubeconfig` instead of the cluster admin.
    pub fn start_as(
        s: &Suite,
        name: &str,
        cert_dir: &Path,
        kubeconfig: &Path,
        extra: &[&str],
    ) -> Result<ExtraServe> {
        let (webhook, admin) = (free_port()?, free_port()?);
        let log = s.work_path().join(format!("serve-{name}.log"));
        let out = File::create(&log)?;
        let child = serve_command(cert_dir, webhook, admin, kubeconfig)
            .args(shutdown_timing(SHUTDOWN_DELAY, DRAIN_TIMEOUT))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot start serve")?;
        s.record_serve_log(log.clone());
        let mut serve = ExtraServe {
            child,
            webhook,
            admin,
            log,
        };
        let admin = serve.admin;
        poll("serve /readyz 200", Duration::from_secs(60), || {
            if let Some(status) = serve.child.try_wait()? {
                bail!("serve exited early with {status}");
            }
            Ok(http_get(admin, "/readyz")
                .ok()
                .filter(|(code, _)| *code == 200)
                .map(|_| ()))
        })
        .with_context(|| {
            format!(
                "serve {name}: {}",
                tail(&std::fs::read_to_string(&serve.log).unwrap_or_default(), 5)
            )
        })?;
        Ok(serve)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()?;
        ensure!(status.success(), "kill -{signal} {} failed", self.pid());
        Ok(())
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        poll("serve to exit", timeout, || Ok(self.child.try_wait()?))
    }

    pub fn client(&self, s: &Suite) -> Result<WebhookClient> {
        WebhookClient::new(self.webhook, &[&s.cert_path("ca.crt")])
    }

    pub fn readyz(&self) -> Option<u16> {
        http_get(self.admin, "/readyz").ok().map(|(code, _)| code)
    }

    /// /metrics, checked for every credential the suite knows.
    pub fn metrics(&self, s: &Suite) -> Result<String> {
        let (code, body) = http_get(self.admin, "/metrics")?;
        ensure!(code == 200, "/metrics answered {code}");
        for (description, needle) in s.secret_needles() {
            ensure!(
                !body.contains(&needle),
                "{description} appeared in /metrics"
            );
        }
        Ok(body)
    }
}

impl Drop for ExtraServe {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = self.signal("TERM");
        if self
            .wait_exit(SHUTDOWN_DELAY + DRAIN_TIMEOUT + Duration::from_secs(5))
            .is_err()
        {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A MutatingWebhookConfiguration for one ExtraServe, deleted on drop.
pub struct Registration<'a> {
    s: &'a Suite,
    name: String,
}

impl<'a> Registration<'a> {
    /// Calls `serve` for namespaces labelled `FAULT_LABEL=<value>`.
    pub fn new(
        s: &'a Suite,
        value: &str,
        serve: &ExtraServe,
        failure_policy: &str,
    ) -> Result<Registration<'a>> {
        let name = format!("pullsecret-injector-e2e-{value}");
        let ca = std::fs::read(s.cert_path("ca.crt"))?;
        let selector = format!("      matchLabels:\n        {FAULT_LABEL}: \"{value}\"\n");
        s.apply(&webhook_manifest(
            &name,
            serve.webhook,
            &ca,
            failure_policy,
            &selector,
        ))?;
        Ok(Registration { s, name })
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let _ = self.s.kubectl_raw(
            &[
                "delete",
                "mutatingwebhookconfiguration",
                &self.name,
                "--ignore-not-found",
            ],
            None,
        );
    }
}

/// A namespace only the webhook registered with `value` covers.
pub fn fault_namespace(s: &Suite, short: &str, value: &str) -> Result<String> {
    s.namespace(short, &[(FAULT_LABEL, value)])
}

/// Creates pods until one gets `expected` injected (the apiserver picks up new webhook
/// configurations and the webhook new secrets asynchronously); returns the time it took.
fn pods_until_injected(
    s: &Suite,
    ns: &str,
    prefix: &str,
    image: &str,
    expected: &[&str],
    timeout: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    poll(
        &format!("a pod in {ns} to get {expected:?}"),
        timeout,
        || {
            let name = format!("{prefix}-{}", s.unique());
            s.run_pod(ns, &name, image, &[])?;
            let pod = s.pod(ns, &name)?;
            Ok((pull_secrets(&pod) == expected).then_some(()))
        },
    )?;
    Ok(started.elapsed())
}

pub fn cluster_script(s: &Suite, args: &[&str]) -> Result<Duration> {
    let (_, _, cluster_dir) = s.cluster_env();
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/controlplane/cluster.sh"))
        .args(args)
        .env("PULLSECRET_INJECTOR_CLUSTER_DIR", cluster_dir)
        .stdin(Stdio::null())
        .output()?;
    ensure!(
        out.status.success(),
        "cluster.sh {} failed: {}",
        args.join(" "),
        tail(&String::from_utf8_lossy(&out.stderr), 10)
    );
    Ok(started.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Control-plane restarts

/// Polls /readyz and a direct review every 100 ms until stopped; the failures it saw.
struct Watchdog {
    stop: Arc<AtomicBool>,
    checks: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<(usize, Vec<String>)>>,
}

impl Watchdog {
    fn start(serve: &ExtraServe, client: WebhookClient, ns: &str, image: &str) -> Watchdog {
        let stop = Arc::new(AtomicBool::new(false));
        let admin = serve.admin;
        let body = pod_review("uid-watchdog", ns, &[image]);
        let flag = Arc::clone(&stop);
        let checks = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&checks);
        let thread = thread::spawn(move || {
            let mut failures = Vec::new();
            let started = Instant::now();
            while !flag.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(300) {
                match http_get(admin, "/readyz") {
                    Ok((200, _)) => {}
                    other => failures.push(format!("/readyz: {other:?}")),
                }
                let reviewed = client
                    .post_once(&body, Some("application/json"))
                    .and_then(|response| expect_allowed(&response, "uid-watchdog"));
                match reviewed {
                    Ok(answer) if answer["patch"].is_string() => {}
                    Ok(answer) => failures.push(format!("review not patched: {answer}")),
                    Err(error) => failures.push(format!("review: {error:#}")),
                }
                counter.fetch_add(1, Ordering::AcqRel);
                thread::sleep(Duration::from_millis(100));
            }
            (counter.load(Ordering::Acquire), failures)
        });
        Watchdog {
            stop,
            checks,
            thread: Some(thread),
        }
    }

    /// Waits until `more` further checks have completed.
    fn wait_checks(&self, more: usize) -> Result<()> {
        let target = self.checks.load(Ordering::Acquire) + more;
        poll("watchdog checks", Duration::from_secs(60), || {
            Ok((self.checks.load(Ordering::Acquire) >= target).then_some(()))
        })
    }

    fn finish(mut self) -> Result<usize> {
        self.stop.store(true, Ordering::Release);
        let (checks, failures) = self
            .thread
            .take()
            .context("finished twice")?
            .join()
            .map_err(|_| anyhow::anyhow!("watchdog panicked"))?;
        ensure!(
            failures.is_empty(),
            "{} of {checks} checks failed while the control plane restarted, first: {}",
            failures.len(),
            failures[0]
        );
        Ok(checks)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn apiserver_restart(s: &Suite) -> Result<Outcome> {
    // Trace level and plain text once, so the leak check reads the most verbose output.
    control_plane_restart(
        s,
        "kube-apiserver",
        "apiserver",
        &["--log-format", "plain", "--log-level", "trace"],
    )
}

fn etcd_restart(s: &Suite) -> Result<Outcome> {
    control_plane_restart(
        s,
        "etcd",
        "etcd",
        &["--log-format", "json", "--log-level", "debug"],
    )
}

/// The webhook keeps answering from its last snapshot, and stays ready, while `component` is
/// down; after it is back, the watches resume and a secret created right then is used.
fn control_plane_restart(
    s: &Suite,
    component: &str,
    short: &str,
    log_args: &[&str],
) -> Result<Outcome> {
    let value = format!("{}-{short}", s.run_id);
    let serve = ExtraServe::start(s, short, &s.cert_path(""), log_args)?;
    let _registration = Registration::new(s, &value, &serve, "Ignore")?;
    let ns = fault_namespace(s, &format!("restart-{short}"), &value)?;
    s.registry_secret(&ns, "before", "before.example.com")?;
    pods_until_injected(
        s,
        &ns,
        "before",
        "before.example.com/app:1",
        &["before"],
        RECOVERY,
    )?;
    let errors = |serve: &ExtraServe| -> Result<f64> {
        Ok(crate::harness::metric_sum(
            &serve.metrics(s)?,
            "pullsecret_injector_watch_errors_total",
        ))
    };
    let errors_before = errors(&serve)?;

    let watchdog = Watchdog::start(&serve, serve.client(s)?, &ns, "before.example.com/app:1");
    let stopped = cluster_script(s, &["stop-component", component])?;
    // While it is down the webhook answers from its snapshot and stays ready: let the
    // watchdog complete a few dozen checks in that state.
    watchdog.wait_checks(30)?;
    let started = cluster_script(s, &["start-component", component])?;
    let back = Instant::now();
    s.registry_secret(&ns, "after", "after.example.com")?;
    let recovered = pods_until_injected(
        s,
        &ns,
        "after",
        "after.example.com/app:1",
        &["after"],
        RECOVERY,
    )
    .with_context(|| {
        format!(
            "after {component} restarted (serve log: {})",
            tail(&std::fs::read_to_string(&serve.log).unwrap_or_default(), 5)
        )
    })?;
    let checks = watchdog.finish()?;
    let watch_errors = errors(&serve)? - errors_before;
    // The cluster is whole again: a fresh namespace still gets its ServiceAccount.
    fault_namespace(s, &format!("after-{short}"), &value)?;
    println!(
        "  {component}: stopped in {:.1}s, started again in {:.1}s ({watch_errors} watch errors \
         meanwhile); a secret created right after was used {:.1}s later; {checks} \
         readiness+review checks all passed throughout (recovery {:.1}s from ready)",
        stopped.as_secs_f64(),
        started.as_secs_f64(),
        recovered.as_secs_f64(),
        back.elapsed().as_secs_f64(),
    );
    Ok(Outcome::Passed)
}

// ---------------------------------------------------------------------------------------------
// Certificate rotation

/// A directory laid out like a mounted Secret, updated like the kubelet does: files in a
/// timestamped directory, `..data` pointing at it (swapped by an atomic rename), and
/// `tls.crt -> ..data/tls.crt`.
struct MountedSecret {
    dir: PathBuf,
    generation: usize,
}

impl MountedSecret {
    fn new(dir: PathBuf) -> Result<MountedSecret> {
        std::fs::create_dir_all(&dir)?;
        for file in ["tls.crt", "tls.key"] {
            symlink(format!("..data/{file}"), dir.join(file))?;
        }
        Ok(MountedSecret { dir, generation: 0 })
    }

    fn publish(&mut self, from: &Path) -> Result<()> {
        self.generation += 1;
        let version = format!(
            "..2026_11_23_00_00_0{}.{}",
            self.generation,
            std::process::id()
        );
        let target = self.dir.join(&version);
        std::fs::create_dir(&target)?;
        for file in ["tls.crt", "tls.key"] {
            std::fs::copy(from.join(file), target.join(file))?;
        }
        let staged = self.dir.join("..data_tmp");
        symlink(&version, &staged)?;
        std::fs::rename(&staged, self.dir.join("..data"))?;
        Ok(())
    }
}

/// Issues a new serving certificate from the suite's CA into `dir` (ca.* copied there).
fn issue(s: &Suite, dir: &Path, days: u32) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for file in ["ca.crt", "ca.key"] {
        std::fs::copy(s.cert_path(file), dir.join(file))?;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"))
        .arg("certs")
        .arg("--out-dir")
        .arg(dir)
        .args(["--ip", "127.0.0.1", "--days", &days.to_string()])
        .output()?;
    ensure!(
        out.status.success(),
        "certs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

struct LoadRecord {
    started: Instant,
    ok: usize,
    /// (serial served, when its connection was opened) of each completed request.
    served: Vec<(String, Instant)>,
    failures: Vec<String>,
}

impl Default for LoadRecord {
    fn default() -> Self {
        LoadRecord {
            started: Instant::now(),
            ok: 0,
            served: Vec::new(),
            failures: Vec::new(),
        }
    }
}

/// Clients sending good reviews, each on a fresh connection (so every request sees the
/// certificate served at that moment), until stopped (and at most 120 s).
fn fresh_connection_load(
    client: &WebhookClient,
    body: Vec<u8>,
    threads: usize,
    stop: &Arc<AtomicBool>,
    record: &Arc<Mutex<LoadRecord>>,
) -> Vec<thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let (client, body) = (client.clone(), body.clone());
            let (stop, record) = (Arc::clone(stop), Arc::clone(record));
            thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(120)
                {
                    let opened = Instant::now();
                    let result = (|| -> Result<String> {
                        let mut stream = client.connect()?;
                        let serial = peer_leaf(&stream)
                            .map(|der| serial_and_expiry(&der))
                            .transpose()?
                            .map(|(serial, _)| serial)
                            .unwrap_or_default();
                        write_request(
                            &mut stream,
                            "POST",
                            "/mutate",
                            &body,
                            Some("application/json"),
                            true,
                        )?;
                        let response = read_response(&mut stream)?;
                        expect_allowed(&response, "uid-load")?;
                        Ok(serial)
                    })();
                    let mut record = record.lock().expect("record");
                    match result {
                        Ok(serial) => {
                            record.ok += 1;
                            record.served.push((serial, opened));
                        }
                        Err(error) => record.failures.push(format!("{error:#}")),
                    }
                }
            })
        })
        .collect()
}

fn cert_rotation_under_load(s: &Suite) -> Result<Outcome> {
    let first = s.work_path().join("rotation-1");
    let second = s.work_path().join("rotation-2");
    issue(s, &first, 30)?;
    issue(s, &second, 90)?;
    let serial_of = |dir: &Path| -> Result<(String, i64)> {
        let pem = std::fs::read(dir.join("tls.crt"))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).context("PEM")?;
        serial_and_expiry(&pem.contents)
    };
    let (old_serial, old_expiry) = serial_of(&first)?;
    let (new_serial, new_expiry) = serial_of(&second)?;
    ensure!(old_serial != new_serial, "two certificates with one serial");

    let mut mount = MountedSecret::new(s.work_path().join("mounted-tls"))?;
    mount.publish(&first)?;
    let serve = ExtraServe::start(
        s,
        "rotation",
        &mount.dir,
        &["--log-format", "json", "--log-level", "debug"],
    )?;
    let client = serve.client(s)?;
    let body = pod_review(
        "uid-load",
        &format!("e2e-{}-rotation", s.run_id),
        &["registry.example.com:5000/app:1"],
    );

    // A keep-alive connection opened before the swap must keep working after it.
    let mut kept = client.connect()?;
    let stop = Arc::new(AtomicBool::new(false));
    let record = Arc::new(Mutex::new(LoadRecord::default()));
    let threads = fresh_connection_load(&client, body.clone(), 2, &stop, &record);
    poll(
        "load with the first certificate",
        Duration::from_secs(30),
        || Ok((record.lock().expect("record").ok >= 50).then_some(())),
    )?;
    mount.publish(&second)?;
    let swapped = Instant::now();
    let mut last_seen = String::new();
    // Within the reload interval (10 s) in practice; the bound only stops a hang.
    let served_after = poll(
        "the new certificate to be served",
        RECOVERY,
        || {
            let stream = client.connect()?;
            let der = peer_leaf(&stream).context("no peer certificate")?;
            let (serial, expiry) = serial_and_expiry(&der)?;
            let done = serial == new_serial;
            last_seen = serial;
            Ok(done.then_some(expiry))
        },
    )
    .with_context(|| {
        let record = record.lock().expect("record");
        let mut counts = std::collections::BTreeMap::new();
        for (serial, _) in &record.served {
            *counts.entry(serial.clone()).or_insert(0) += 1;
        }
        format!(
            "serial {last_seen} served, {new_serial} expected (old {old_serial}); load saw {counts:?}"
        )
    })?;
    let took = swapped.elapsed();
    let seen_new = Instant::now();
    // Keep the load on for a while with the new certificate.
    let count_at_swap = record.lock().expect("record").ok;
    poll(
        "load with the new certificate",
        Duration::from_secs(30),
        || Ok((record.lock().expect("record").ok >= count_at_swap + 100).then_some(())),
    )?;
    stop.store(true, Ordering::Release);
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))?;
    }
    write_request(
        &mut kept,
        "POST",
        "/mutate",
        &body,
        Some("application/json"),
        false,
    )?;
    expect_allowed(&read_response(&mut kept)?, "uid-load")
        .context("the keep-alive connection from before the swap")?;

    let record = record.lock().expect("record");
    ensure!(
        record.failures.is_empty(),
        "{} of {} requests failed around the rotation, first: {}",
        record.failures.len(),
        record.failures.len() + record.ok,
        record.failures[0]
    );
    // Once one handshake got the new certificate, every handshake begun later gets it too.
    let stale = record
        .served
        .iter()
        .filter(|(serial, opened)| *opened > seen_new && *serial != new_serial)
        .count();
    ensure!(
        stale == 0,
        "{stale} connections opened after the new certificate was served got the old one"
    );
    ensure!(served_after == new_expiry && new_expiry != old_expiry);
    let expiry_metric = metric(
        &serve.metrics(s)?,
        "pullsecret_injector_certificate_expiry_timestamp_seconds",
    );
    ensure!(
        expiry_metric == Some(new_expiry as f64),
        "certificate expiry metric {expiry_metric:?}, expected {new_expiry}"
    );
    println!(
        "  serial {old_serial} -> {new_serial}, notAfter +{} days; served {:.1}s after the \
         ..data swap; {} requests on fresh connections, none failed",
        (new_expiry - old_expiry) / 86_400,
        took.as_secs_f64(),
        record.ok
    );
    Ok(Outcome::Passed)
}

// ---------------------------------------------------------------------------------------------
// SIGTERM

fn sigterm_under_load(s: &Suite) -> Result<Outcome> {
    let mut serve = ExtraServe::start(
        s,
        "sigterm",
        &s.cert_path(""),
        &["--log-format", "json", "--log-level", "debug"],
    )?;
    let client = serve.client(s)?;
    let body = pod_review(
        "uid-load",
        &format!("e2e-{}-sigterm", s.run_id),
        &["registry.example.com:5000/app:1"],
    );

    // A request in flight across the whole shutdown: head and half the body now, the rest
    // once the listener no longer accepts.
    let mut in_flight = client.connect()?;
    let (first_half, second_half) = body.split_at(body.len() / 2);
    in_flight.write_all(
        format!(
            "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )?;
    in_flight.write_all(first_half)?;
    in_flight.flush()?;

    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let record = Arc::new(Mutex::new(LoadRecord::default()));
    let threads = sigterm_load(&client, &body, 3, &stop, &refused, &record);
    poll("load before SIGTERM", Duration::from_secs(30), || {
        Ok((record.lock().expect("record").ok >= 50).then_some(()))
    })?;
    let before = record.lock().expect("record").ok;
    let signalled = Instant::now();
    let load_started = record.lock().expect("record").started;
    serve.signal("TERM")?;
    poll("/readyz 503 after SIGTERM", SHUTDOWN_DELAY, || {
        Ok((serve.readyz() == Some(503)).then_some(()))
    })?;
    // The listener closes after the shutdown delay: wait until connections are refused.
    poll(
        "new connections to be refused",
        SHUTDOWN_DELAY + Duration::from_secs(5),
        || Ok(client.connect().is_err().then_some(())),
    )?;
    let during_delay = record.lock().expect("record").ok - before;
    in_flight.write_all(second_half)?;
    in_flight.flush()?;
    let response = read_response(&mut in_flight).context("the in-flight request")?;
    expect_allowed(&response, "uid-load").context("the in-flight request")?;

    stop.store(true, Ordering::Release);
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))?;
    }
    let status = serve.wait_exit(SHUTDOWN_DELAY + DRAIN_TIMEOUT + Duration::from_secs(5))?;
    let record = record.lock().expect("record");
    ensure!(
        record.failures.is_empty(),
        "{} requests failed after their connection was accepted (SIGTERM at {:.3}s): {}",
        record.failures.len(),
        signalled.duration_since(load_started).as_secs_f64(),
        record.failures.join("; ")
    );
    ensure!(status.success(), "serve exited with {status}");
    ensure!(
        during_delay > 0,
        "no request was served during the shutdown delay"
    );
    println!(
        "  {} requests completed ({during_delay} during the {}s shutdown delay), {} refused \
         after the listener closed, in-flight request answered; exit 0 after {:.1}s",
        record.ok,
        SHUTDOWN_DELAY.as_secs(),
        refused.load(Ordering::Acquire),
        signalled.elapsed().as_secs_f64()
    );
    Ok(Outcome::Passed)
}

/// Fresh-connection clients that tell refused connections (no TLS session: the server never
/// took them) from failed requests (accepted, then no complete answer).
fn sigterm_load(
    client: &WebhookClient,
    body: &[u8],
    threads: usize,
    stop: &Arc<AtomicBool>,
    refused: &Arc<AtomicUsize>,
    record: &Arc<Mutex<LoadRecord>>,
) -> Vec<thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let (client, body) = (client.clone(), body.to_vec());
            let (stop, refused, record) =
                (Arc::clone(stop), Arc::clone(refused), Arc::clone(record));
            thread::spawn(move || {
                let started = record.lock().expect("record").started;
                while !stop.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(120)
                {
                    let Ok(mut stream) = client.connect() else {
                        refused.fetch_add(1, Ordering::AcqRel);
                        // Back off from a closed port instead of spinning on it.
                        thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let result = write_request(
                        &mut stream,
                        "POST",
                        "/mutate",
                        &body,
                        Some("application/json"),
                        true,
                    )
                    .and_then(|_| read_response(&mut stream))
                    .and_then(|response| expect_allowed(&response, "uid-load").map(|_| ()));
                    let mut record = record.lock().expect("record");
                    match result {
                        Ok(()) => record.ok += 1,
                        Err(error) => record.failures.push(format!(
                            "{error:#} (at {:.3}s)",
                            started.elapsed().as_secs_f64()
                        )),
                    }
                }
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// SIGKILL and the failure policy

fn sigkill_failure_policy(s: &Suite) -> Result<Outcome> {
    let mut serve = ExtraServe::start(
        s,
        "sigkill",
        &s.cert_path(""),
        &["--log-format", "json", "--log-level", "info"],
    )?;
    let ignore_value = format!("{}-ignore", s.run_id);
    let fail_value = format!("{}-fail", s.run_id);
    let _ignore = Registration::new(s, &ignore_value, &serve, "Ignore")?;
    let _fail = Registration::new(s, &fail_value, &serve, "Fail")?;
    let ignore_ns = fault_namespace(s, "policy-ignore", &ignore_value)?;
    let fail_ns = fault_namespace(s, "policy-fail", &fail_value)?;
    let image = "registry.example.com:5000/team/app:1";
    for ns in [&ignore_ns, &fail_ns] {
        s.registry_secret(ns, "reg5000", "registry.example.com:5000")?;
        pods_until_injected(s, ns, "up", image, &["reg5000"], RECOVERY)?;
    }

    serve.signal("KILL")?;
    let status = serve.wait_exit(Duration::from_secs(10))?;
    ensure!(!status.success(), "SIGKILL: serve exited with {status}");

    s.run_pod(&ignore_ns, "while-killed", image, &[])
        .context("failurePolicy Ignore must admit the pod")?;
    s.expect_pod(&ignore_ns, "while-killed", &[], None)?;

    let out = s.kubectl_raw(
        &[
            "run",
            "while-killed",
            "-n",
            &fail_ns,
            &format!("--image={image}"),
            "--restart=Never",
        ],
        None,
    )?;
    ensure!(
        !out.status.success(),
        "failurePolicy Fail admitted a pod with the webhook killed"
    );
    let error = out.stderr.trim();
    ensure!(
        error.contains("failed calling webhook") && error.contains("inject.pullsecret-injector.io"),
        "kubectl's error does not name the failing webhook: {error}"
    );
    let missing = s.kubectl_raw(&["get", "pod", "while-killed", "-n", &fail_ns], None)?;
    ensure!(!missing.status.success(), "the rejected pod exists");

    // A controller meets the same refusal and records it as an event (which the leak check
    // then reads).
    s.kubectl(&[
        "create",
        "deployment",
        "web",
        "-n",
        &fail_ns,
        &format!("--image={image}"),
    ])?;
    let event = poll(
        "a FailedCreate event naming the webhook",
        Duration::from_secs(60),
        || {
            Ok(events(s, Some(&fail_ns), None)?
                .iter()
                .filter(|event| event["reason"] == "FailedCreate")
                .filter_map(|event| event["message"].as_str())
                .find(|message| message.contains("failed calling webhook"))
                .map(str::to_owned))
        },
    )?;
    ensure!(
        event.contains("inject.pullsecret-injector.io"),
        "the event does not name the webhook: {event}"
    );
    println!("  Ignore: admitted unchanged; Fail: {}", tail(error, 1));
    Ok(Outcome::Passed)
}

// ---------------------------------------------------------------------------------------------

/// Events of the whole cluster name no credential (the serve logs, kubectl output, metrics and
/// annotations are checked by `no-credential-leaks`, which runs after this).
fn no_leaks_in_events(s: &Suite) -> Result<Outcome> {
    let needles = s.secret_needles();
    let events = all_events_json(s)?;
    let parsed: Value = serde_json::from_str(&events).context("events are not JSON")?;
    let count = parsed["items"].as_array().map_or(0, Vec::len);
    ensure!(count > 0, "no events at all; the check would be vacuous");
    let leaks: Vec<String> = needles
        .iter()
        .filter(|(_, needle)| events.contains(needle.as_str()))
        .map(|(description, _)| description.clone())
        .collect();
    ensure!(
        leaks.is_empty(),
        "credentials in events: {}",
        leaks.join("; ")
    );
    // The trace-level plain log must have been written, and be about this run.
    let trace_log = s.work_path().join("serve-apiserver.log");
    if trace_log.is_file() {
        let text = std::fs::read_to_string(&trace_log)?;
        ensure!(
            text.contains("TRACE") || text.contains("DEBUG"),
            "the trace-level log {} has no trace or debug lines",
            trace_log.display()
        );
    }
    println!("  {count} events, {} credentials checked", needles.len());
    Ok(Outcome::Passed)
}
