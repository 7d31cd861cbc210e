//! The load generator: HTTP/1.1 over TLS (tokio-rustls + hyper's connection-level client), the
//! way kube-apiserver calls a webhook: keep-alive connections, or a full handshake per request.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::client::Resumption;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where to send reviews and how to speak TLS to it.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    keep_alive: TlsConnector,
    fresh: TlsConnector,
    name: ServerName<'static>,
}

impl Target {
    /// `ca` signs the server's certificate. Fresh connections never resume a session, like the
    /// apiserver's Go client, so every one is a full ECDHE + ECDSA handshake.
    pub fn new(addr: SocketAddr, ca: &Path) -> Result<Target> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).context("read CA")? {
            roots.add(cert.context("CA PEM")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let build = |resume: bool| -> Result<TlsConnector> {
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            if !resume {
                config.resumption = Resumption::disabled();
            }
            Ok(TlsConnector::from(Arc::new(config)))
        };
        Ok(Target {
            addr,
            keep_alive: build(true)?,
            fresh: build(false)?,
            name: ServerName::try_from(addr.ip().to_string())?.to_owned(),
        })
    }

    /// A TLS connection with nothing sent on it yet.
    pub async fn tls(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        self.tls_with(&self.keep_alive).await
    }

    async fn tls_with(
        &self,
        connector: &TlsConnector,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(connector.connect(self.name.clone(), tcp).await?)
    }

    /// One request on a new connection, closed after the answer; an error unless it was an
    /// allowed review.
    pub async fn post_fresh(&self, body: Bytes) -> Result<()> {
        let mut connection = self.connect(true).await?;
        post(&mut connection, self.addr, body, true).await
    }

    async fn connect(&self, fresh: bool) -> Result<SendRequest<Full<Bytes>>> {
        let connector = if fresh { &self.fresh } else { &self.keep_alive };
        let tls = self.tls_with(connector).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    body: Bytes,
    close: bool,
) -> Result<()> {
    sender.ready().await?;
    let mut request = http::Request::post("/mutate?timeout=10s")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, */*")
        .header(http::header::USER_AGENT, "kube-apiserver-admission");
    if close {
        request = request.header(http::header::CONNECTION, "close");
    }
    let response = sender.send_request(request.body(Full::new(body))?).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    if status != http::StatusCode::OK || !contains(&bytes, b"\"allowed\":true") {
        bail!("unexpected answer: {status}");
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// How one run drives the server.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// `n` keep-alive connections, each sending the next request when the last answer arrives.
    KeepAlive(usize),
    /// `n` workers, each opening a new TLS connection for every request.
    NewConnection(usize),
    /// A steady `rate` requests/s spread over `n` keep-alive connections, latency measured from
    /// the scheduled send time when the generator fell behind (no coordinated omission).
    FixedRate { connections: usize, rate: u64 },
}

impl Mode {
    pub fn label(self) -> String {
        match self {
            Mode::KeepAlive(n) => format!("keep-alive, {n} conn"),
            Mode::NewConnection(n) => format!("new TLS conn per request, {n} workers"),
            Mode::FixedRate { connections, rate } => {
                format!("fixed {rate}/s, {connections} conn")
            }
        }
    }
}

/// Latencies (µs) of the measured window, and what went wrong.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub throughput: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Stats {
    fn from_samples(mut samples: Vec<u32>, errors: u64, seconds: f64) -> Stats {
        samples.sort_unstable();
        let at = |q: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            f64::from(samples[index])
        };
        Stats {
            requests: samples.len() as u64,
            errors,
            seconds,
            throughput: samples.len() as f64 / seconds,
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: samples.last().map(|v| f64::from(*v)).unwrap_or_default(),
        }
    }
}

/// Runs `mode` for `warmup` (not recorded) and then `measure`, cycling through `bodies`.
pub async fn run(
    target: &Target,
    mode: Mode,
    bodies: Arc<Vec<Bytes>>,
    warmup: Duration,
    measure: Duration,
) -> Result<Stats> {
    let start = Instant::now();
    let record_from = start + warmup;
    let end = record_from + measure;
    let errors = Arc::new(AtomicU64::new(0));
    let workers = match mode {
        Mode::KeepAlive(n) | Mode::NewConnection(n) => n,
        Mode::FixedRate { connections, .. } => connections,
    };
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let target = target.clone();
        let bodies = Arc::clone(&bodies);
        let errors = Arc::clone(&errors);
        tasks.push(tokio::spawn(async move {
            let job = Job {
                target,
                bodies,
                errors,
                worker,
                record_from,
                end,
            };
            match mode {
                Mode::KeepAlive(_) => job.keep_alive().await,
                Mode::NewConnection(_) => job.new_connections().await,
                Mode::FixedRate { connections, rate } => {
                    let interval = Duration::from_secs_f64(connections as f64 / rate as f64);
                    job.fixed_rate(
                        interval,
                        interval.mul_f64(worker as f64 / connections as f64),
                    )
                    .await
                }
            }
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await?);
    }
    let seconds = measure.as_secs_f64();
    Ok(Stats::from_samples(
        samples,
        errors.load(Ordering::Relaxed),
        seconds,
    ))
}

struct Job {
    target: Target,
    bodies: Arc<Vec<Bytes>>,
    errors: Arc<AtomicU64>,
    worker: usize,
    record_from: Instant,
    end: Instant,
}

impl Job {
    fn body(&self, serial: usize) -> Bytes {
        self.bodies[(self.worker * 7919 + serial) % self.bodies.len()].clone()
    }

    /// The open keep-alive connection, or a new one; `None` (the failure counted, after a
    /// short pause) when connecting fails.
    async fn kept_connection<'a>(
        &self,
        sender: &'a mut Option<SendRequest<Full<Bytes>>>,
    ) -> Option<&'a mut SendRequest<Full<Bytes>>> {
        if sender.is_none() {
            match self.target.connect(false).await {
                Ok(connection) => *sender = Some(connection),
                Err(_) => {
                    self.failed();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return None;
                }
            }
        }
        sender.as_mut()
    }

    fn failed(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one sample when it completed inside the measured window.
    fn record(&self, samples: &mut Vec<u32>, started: Instant, done: Instant) {
        if started >= self.record_from && done <= self.end {
            let micros = done.duration_since(started).as_micros();
            samples.push(u32::try_from(micros).unwrap_or(u32::MAX));
        }
    }

    async fn keep_alive(self) -> Vec<u32> {
        let mut samples = Vec::with_capacity(1 << 16);
        let mut sender = None;
        let mut serial = 0;
        while Instant::now() < self.end {
            let Some(connection) = self.kept_connection(&mut sender).await else {
                continue;
            };
            serial += 1;
            let started = Instant::now();
            match post(connection, self.target.addr, self.body(serial), false).await {
                Ok(()) => self.record(&mut samples, started, Instant::now()),
                Err(_) => {
                    self.failed();
                    sender = None;
                }
            }
        }
        samples
    }

    async fn new_connections(self) -> Vec<u32> {
        let mut samples = Vec::with_capacity(1 << 14);
        let mut serial = 0;
        while Instant::now() < self.end {
            serial += 1;
            let started = Instant::now();
            let result = async {
                let mut connection = self.target.connect(true).await?;
                post(&mut connection, self.target.addr, self.body(serial), true).await
            }
            .await;
            match result {
                Ok(()) => self.record(&mut samples, started, Instant::now()),
                Err(_) => self.failed(),
            }
        }
        samples
    }

    async fn fixed_rate(self, interval: Duration, offset: Duration) -> Vec<u32> {
        let mut samples = Vec::with_capacity(1 << 14);
        let mut sender = None;
        let mut serial = 0;
        let mut scheduled = self.record_from - Duration::from_secs(1).min(interval * 50) + offset;
        let mut last_done = Instant::now();
        while scheduled < self.end {
            let Some(connection) = self.kept_connection(&mut sender).await else {
                continue;
            };
            // Behind schedule: the wait since the scheduled time is part of the latency. On
            // time: measure from the actual send, so timer granularity does not count.
            let started = if last_done > scheduled {
                scheduled
            } else {
                tokio::time::sleep_until(scheduled.into()).await;
                Instant::now()
            };
            serial += 1;
            match post(connection, self.target.addr, self.body(serial), false).await {
                Ok(()) => {
                    last_done = Instant::now();
                    if scheduled >= self.record_from {
                        self.record(&mut samples, started, last_done);
                    }
                }
                Err(_) => {
                    last_done = Instant::now();
                    self.failed();
                    sender = None;
                }
            }
            scheduled += interval;
        }
        samples
    }
}
