//! HTTP handlers: `POST /mutate` on the webhook port; probes and metrics on the admin port.
//!
//! Thin on purpose: read the body within limits, hand it to [`review::review`] with the
//! current snapshot, and encode the answer. Nothing here talks to the API server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prometheus_client::registry::Registry;

use super::Health;
use crate::admission::review::{self, Outcome};
use crate::cluster::watch::ClusterCache;
use crate::state::snapshot::ClusterState;
use crate::telemetry::Metrics;

/// The apiserver never sends more than 3 MiB; anything larger is refused unread.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// A client trickling its body is cut off after this.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared by every request; axum clones the state per request, so it is one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

struct Shared {
    cache: Arc<ClusterCache>,
    metrics: Metrics,
    registry: Arc<Registry>,
    health: Arc<Health>,
}

impl AppState {
    pub fn new(
        cache: Arc<ClusterCache>,
        metrics: Metrics,
        registry: Arc<Registry>,
        health: Arc<Health>,
    ) -> AppState {
        AppState(Arc::new(Shared {
            cache,
            metrics,
            registry,
            health,
        }))
    }
}

pub fn webhook_router(app: AppState) -> Router {
    Router::new().route("/mutate", post(mutate)).with_state(app)
}

pub fn admin_router(app: AppState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(app)
}

async fn mutate(State(app): State<AppState>, request: Request) -> Response {
    let body = match read_body(request).await {
        Ok(body) => body,
        Err((status, reason, label)) => {
            app.0.metrics.observe_rejected(label);
            return (status, format!("{reason}\n")).into_response();
        }
    };
    match answer(&body, &app.0.cache.snapshot(), &app.0.metrics) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err((status, message)) => (status, message).into_response(),
    }
}

/// Everything the webhook does with a body once it is read: the review, its metrics and its
/// log lines, and the encoded answer — or the status and text to refuse the request with.
pub fn answer(
    body: &[u8],
    snapshot: &ClusterState,
    metrics: &Metrics,
) -> Result<Vec<u8>, (StatusCode, String)> {
    let started = Instant::now();
    let reviewed = match review::review(body, snapshot) {
        Ok(reviewed) => reviewed,
        Err(error) => {
            metrics.observe_rejected(error.metric_label());
            let _entered = tracing::info_span!("review").entered();
            tracing::info!(%error, "unreadable admission review");
            return Err((StatusCode::BAD_REQUEST, format!("{error}\n")));
        }
    };
    let encoded = serde_json::to_vec(&reviewed.response);
    metrics.observe_review(&reviewed, started.elapsed().as_secs_f64());
    // Opened once the review is read, with every field at once: recording fields one by one
    // into an open span makes a formatter render the span again on each call.
    let span = tracing::info_span!(
        "review",
        uid = reviewed.uid.as_str(),
        namespace = reviewed.namespace.as_str(),
        pod = reviewed.pod.as_str(),
        operation = reviewed.operation
    );
    let _entered = span.enter();
    match reviewed.outcome {
        Outcome::Injected => {
            let injected: Vec<&str> = reviewed.decision.injected_names().collect();
            tracing::info!(injected = ?injected, warnings = reviewed.decision.warnings.len(), "injected pull secrets")
        }
        Outcome::UnreadablePod => {
            tracing::warn!(warnings = ?reviewed.decision.warnings, "pod could not be read")
        }
        outcome => tracing::debug!(
            outcome = outcome.label(),
            warnings = reviewed.decision.warnings.len(),
            "no change"
        ),
    }
    for warning in &reviewed.decision.warnings {
        tracing::info!(%warning, "warning returned to the client");
    }
    encoded.map_err(|error| {
        tracing::error!(%error, "cannot encode the admission response");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the admission response\n".to_owned(),
        )
    })
}

type Rejection = (StatusCode, &'static str, &'static str);

/// The body, or the status to answer: 415 for a non-JSON content type, 413 past the limit
/// (without reading on), 408 for a body that does not arrive in time, 400 for a broken one.
async fn read_body(request: Request) -> Result<bytes::Bytes, Rejection> {
    check_content_type(request.headers())?;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let limited = Limited::new(request.into_body(), MAX_BODY_BYTES);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err((
            StatusCode::BAD_REQUEST,
            "request body could not be read",
            "unreadable_body",
        )),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
            "body_timeout",
        )),
    }
}

fn too_large() -> Rejection {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        "request body larger than 3 MiB",
        "too_large",
    )
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content type must be application/json",
            "content_type",
        ))
    }
}

/// 200 once every watch has listed (also while one is out of sync again: the last snapshot is
/// still the best answer, and every replica would go unready at once); the body names the
/// watches that are out of sync.
async fn readyz(State(app): State<AppState>) -> Response {
    match app.0.health.readiness() {
        Ok(()) => {
            let stale = app.0.cache.out_of_sync();
            if stale.is_empty() {
                return (StatusCode::OK, "ok\n").into_response();
            }
            let names: Vec<&str> = stale.iter().map(|kind| kind.label()).collect();
            let body = format!(
                "ok (serving from the last snapshot; watches out of sync: {})\n",
                names.join(", ")
            );
            (StatusCode::OK, body).into_response()
        }
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    app.0
        .metrics
        .ready
        .set(i64::from(app.0.health.readiness().is_ok()));
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &app.0.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .body(Body::from(text))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
