//! The ladder: servers from the canned baseline up to `serve`, each adding one piece of what
//! `serve` does per request, so the server CPU a review costs can be split by piece. Every rung
//! runs as a child process of the bench (`load --ladder-server RUNG ADDR CERT KEY`) with a
//! runtime of its own, like `serve`; the load phase measures them one after another at 25
//! keep-alive connections, and what a rung costs is its CPU per request minus the rung below.
//!
//! The pieces are the library's own (`server::serve_https`, `server::read_body`,
//! `admission::review::review`, `server::answer`), not copies, so the top rung is `serve`'s
//! request path except for the watches that fill its snapshot.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use prometheus_client::registry::Registry;
use pullsecret_injector::admission::review;
use pullsecret_injector::server::tls::{CertificateStore, server_config};
use pullsecret_injector::server::{BodyBudget, ConnectionLimits, answer, read_body, serve_https};
use pullsecret_injector::state::snapshot::{ClusterState, StateBuilder};
use pullsecret_injector::telemetry::{self, LogFormat, Metrics};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::baseline::Canned;

/// One step of the ladder; each adds one piece to the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rung {
    /// The baseline: hyper over rustls, the body read whole, a canned answer.
    Canned,
    /// axum's router and its extractors in front of the same canned handler.
    Router,
    /// `serve`'s listener: handshake and header timeouts, the read-buffer cap, the connection
    /// limit, the drain tracking and the connection gauge.
    Listener,
    /// `serve`'s body reading: content type, length cap, the body budget and its
    /// reservation, the body timeout.
    Body,
    /// The review parsed and answered against an empty snapshot: envelope and pod parse, a
    /// decision with nothing to match, response encoding.
    Parse,
    /// The same against the bench's 50 secrets: reference parse, keyring walk, the patch.
    Decide,
    /// `serve`'s handler body (`server::answer`) with logs at `warn`: adds the metrics.
    Metrics,
    /// The same with JSON logs at `info`, as the chart runs: adds the span and the log line.
    Logged,
}

impl Rung {
    pub const ALL: [Rung; 8] = [
        Rung::Canned,
        Rung::Router,
        Rung::Listener,
        Rung::Body,
        Rung::Parse,
        Rung::Decide,
        Rung::Metrics,
        Rung::Logged,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rung::Canned => "canned",
            Rung::Router => "+ router",
            Rung::Listener => "+ listener",
            Rung::Body => "+ body",
            Rung::Parse => "+ parse",
            Rung::Decide => "+ decide",
            Rung::Metrics => "+ metrics",
            Rung::Logged => "+ log line",
        }
    }

    pub fn adds(self) -> &'static str {
        match self {
            Rung::Canned => "hyper + rustls, body read whole, canned answer (the baseline)",
            Rung::Router => "axum router and extractor",
            Rung::Listener => {
                "serve's listener: timeouts, read-buffer cap, connection limit, drain tracking"
            }
            Rung::Body => {
                "body budget and reservation, content-type and length checks, body timeout"
            }
            Rung::Parse => "envelope and pod parse, empty decision, response encoding",
            Rung::Decide => "image references, keyring walk over 50 secrets, JSON patch",
            Rung::Metrics => "review metrics (serve's handler with logs at warn)",
            Rung::Logged => "review span and JSON info line (serve's handler as the chart runs it)",
        }
    }

    fn parse(text: &str) -> Result<Rung> {
        Rung::ALL
            .into_iter()
            .find(|rung| rung.arg() == text)
            .with_context(|| format!("unknown rung {text:?}"))
    }

    /// The rung's name on the child's command line.
    pub fn arg(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

/// The child process: serves one rung on `listen` until killed.
pub fn main(rung: &str, listen: SocketAddr, cert: PathBuf, key: PathBuf) -> Result<()> {
    let rung = Rung::parse(rung)?;
    if rung == Rung::Canned {
        return super::baseline::main(listen, cert, key);
    }
    let level = if rung == Rung::Logged { "info" } else { "warn" };
    telemetry::init_logging(LogFormat::Json, level)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let store = Arc::new(CertificateStore::new(cert, key));
    store.reload(&provider).context("load certificate")?;
    let config = Arc::new(server_config(store, provider)?);
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let handler = Handler {
        rung,
        canned: Canned::new(&super::reviews::canned_response()),
        budget: BodyBudget::new(32 * 1024 * 1024, &metrics),
        empty: StateBuilder::new().snapshot(),
        secrets: bench_state(),
        metrics: metrics.clone(),
    };
    let router = Router::new()
        .route("/mutate", post(handle))
        .with_state(Arc::new(handler));
    tokio::runtime::Runtime::new()?.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        if rung >= Rung::Listener {
            let (_keep, stop) = tokio::sync::watch::channel(false);
            serve_https(
                listener,
                config,
                router,
                ConnectionLimits::default(),
                metrics,
                stop,
            )
            .await;
            bail!("the listener stopped");
        }
        plain_accept_loop(listener, TlsAcceptor::from(config), router).await
    })
}

/// The baseline's accept loop, serving a router instead of a closure.
async fn plain_accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
) -> Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router))
                .await;
        });
    }
}

struct Handler {
    rung: Rung,
    canned: Canned,
    budget: BodyBudget,
    empty: Arc<ClusterState>,
    secrets: Arc<ClusterState>,
    metrics: Metrics,
}

async fn handle(State(handler): State<Arc<Handler>>, request: Request) -> Response {
    if handler.rung < Rung::Body {
        let Ok(body) = request.into_body().collect().await else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        return json(handler.canned.answer(&body.to_bytes()));
    }
    let (body, _reservation) = match read_body(request, &handler.budget).await {
        Ok(read) => read,
        Err((status, reason, _)) => return (status, reason).into_response(),
    };
    let encoded = match handler.rung {
        Rung::Body => return json(handler.canned.answer(&body)),
        Rung::Parse | Rung::Decide => {
            let state = if handler.rung == Rung::Parse {
                &handler.empty
            } else {
                &handler.secrets
            };
            match review::review(&body, state) {
                Ok(reviewed) => serde_json::to_vec(&reviewed.response)
                    .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, String::new())),
                Err(error) => Err((StatusCode::BAD_REQUEST, error.to_string())),
            }
        }
        _ => answer(&body, &handler.secrets, &handler.metrics),
    };
    match encoded {
        Ok(bytes) => json(Bytes::from(bytes)),
        Err(refusal) => refusal.into_response(),
    }
}

fn json(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// What `serve` caches of the bench namespace: the namespace and its 50 pull secrets.
fn bench_state() -> Arc<ClusterState> {
    let mut builder = StateBuilder::new();
    builder.apply_namespace(&Namespace {
        metadata: ObjectMeta {
            name: Some(super::BENCH_NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    });
    for index in 0..super::BENCH_SECRETS {
        builder.apply_secret(&super::reviews::pull_secret(
            super::BENCH_NAMESPACE,
            index,
            1,
            0,
        ));
    }
    builder.snapshot()
}

/// Server CPU per review at which `serve` meets the target, and its bound against the canned
/// rung; the share of nginx's throughput it must reach.
pub const TARGET_CPU_US: f64 = 27.0;
pub const TARGET_CPU_RATIO: f64 = 2.3;
pub const TARGET_NGINX_SHARE: f64 = 0.6;

/// One server of the ladder, medians over the passes.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LadderRow {
    pub server: String,
    pub adds: String,
    pub throughput: f64,
    pub cpu_us: f64,
    pub p50_us: f64,
    pub errors: u64,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct LadderResult {
    pub passes: usize,
    pub rows: Vec<LadderRow>,
}

impl LadderResult {
    fn row(&self, server: &str) -> Option<&LadderRow> {
        self.rows.iter().find(|row| row.server == server)
    }

    pub fn render(&self) -> Vec<String> {
        let mut out = vec![
            "### Where a review's CPU goes: the ladder".to_owned(),
            String::new(),
            format!(
                "Keep-alive, 25 connections; each server in turn, {} pass(es) in alternating \
                 order, medians. Each rung adds one piece to the one above; its cost is the \
                 difference in server CPU per request. `serve` is the real process; nginx \
                 answers the same canned review over the same certificate.",
                self.passes
            ),
            String::new(),
            "| server | adds | req/s | p50 | server CPU/req | Δ CPU | ÷ canned CPU | errors |"
                .to_owned(),
            "|---|---|---|---|---|---|---|---|".to_owned(),
        ];
        let canned = self.row(Rung::Canned.name()).map_or(0.0, |row| row.cpu_us);
        let mut previous: Option<f64> = None;
        for row in &self.rows {
            let delta = match previous {
                Some(before) if row.server != "nginx" => format!("{:+.1} µs", row.cpu_us - before),
                _ => String::new(),
            };
            if row.server != "nginx" {
                previous = Some(row.cpu_us);
            }
            out.push(format!(
                "| {} | {} | {:.0} | {:.0} µs | {:.1} µs | {} | {:.2} | {} |",
                row.server,
                row.adds,
                row.throughput,
                row.p50_us,
                row.cpu_us,
                delta,
                if canned > 0.0 {
                    row.cpu_us / canned
                } else {
                    0.0
                },
                row.errors
            ));
        }
        out.push(String::new());
        if let (Some(serve), Some(nginx)) = (self.row("serve"), self.row("nginx")) {
            let share = serve.throughput / nginx.throughput.max(1.0);
            let ratio = serve.cpu_us / canned.max(f64::MIN_POSITIVE);
            let met = |ok: bool| if ok { "met" } else { "missed" };
            out.push(format!(
                "- `serve`: {:.1} µs of CPU per review, {:.2}× the canned server — target ≤ {} µs \
                 and ≤ {}×: **{}**.",
                serve.cpu_us,
                ratio,
                TARGET_CPU_US,
                TARGET_CPU_RATIO,
                met(serve.cpu_us <= TARGET_CPU_US && ratio <= TARGET_CPU_RATIO)
            ));
            out.push(format!(
                "- `serve` ÷ nginx: {:.0} vs {:.0} reviews/s = {:.2} — target ≥ {}: **{}**.",
                serve.throughput,
                nginx.throughput,
                share,
                TARGET_NGINX_SHARE,
                met(share >= TARGET_NGINX_SHARE)
            ));
            out.push(format!("- Where it goes: {}.", self.breakdown()));
            out.push(String::new());
        }
        out
    }

    /// The rungs' costs grouped as the targets' reason: the stack around the review, the
    /// review itself, the log line.
    fn breakdown(&self) -> String {
        let cpu = |rung: Rung| self.row(rung.name()).map_or(0.0, |row| row.cpu_us);
        let stack = cpu(Rung::Body) - cpu(Rung::Canned) + cpu(Rung::Metrics) - cpu(Rung::Decide);
        let review = cpu(Rung::Decide) - cpu(Rung::Body);
        let line = cpu(Rung::Logged) - cpu(Rung::Metrics);
        format!(
            "the canned server {:.1} µs; router, listener, body reading and metrics {stack:+.1} µs \
             together; the review (parse, decide, patch) {review:+.1} µs; the span and log line \
             {line:+.1} µs",
            cpu(Rung::Canned)
        )
    }
}

/// The median of `values` (not empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
