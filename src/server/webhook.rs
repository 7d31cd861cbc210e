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
use super::budget::{BodyBudget, Reservation};
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
    bodies: BodyBudget,
}

impl AppState {
    /// `body_budget`: the most request-body bytes all webhook requests may hold at once.
    pub fn new(
        cache: Arc<ClusterCache>,
        metrics: Metrics,
        registry: Arc<Registry>,
        health: Arc<Health>,
        body_budget: usize,
    ) -> AppState {
        AppState(Arc::new(Shared {
            bodies: BodyBudget::new(body_budget, &metrics),
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
    // Held until the answer is built: the body and what is decoded from it.
    let (body, _reservation) = match read_body(request, &app.0.bodies).await {
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
        // As for injection: a line at info only when there was something to add.
        Outcome::Shadow if !reviewed.decision.injected.is_empty() => {
            let would_inject: Vec<&str> = reviewed.decision.injected_names().collect();
            tracing::info!(would_inject = ?would_inject, warnings = reviewed.decision.warnings.len(), "shadow mode: pod left unchanged")
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

/// The status, the text and the metric label of a refused body.
pub type Rejection = (StatusCode, &'static str, &'static str);

/// The body and its reservation, or the status to answer: 415 for a non-JSON content type, 413
/// past the limit (without reading on), 503 when the budget for bodies in flight is spent
/// (without reading on), 408 for a body that does not arrive in time, 400 for a broken one.
pub async fn read_body(
    request: Request,
    budget: &BodyBudget,
) -> Result<(Vec<u8>, Reservation), Rejection> {
    check_content_type(request.headers())?;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    // The declared length before a byte is read; a body without one frame by frame.
    let mut reservation = budget.reserve(declared.unwrap_or(0)).ok_or_else(busy)?;
    let mut body = Limited::new(request.into_body(), MAX_BODY_BYTES);
    let collect = async {
        let mut collected = Vec::with_capacity(declared.unwrap_or(0));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| {
                if error.is::<LengthLimitError>() {
                    too_large()
                } else {
                    (
                        StatusCode::BAD_REQUEST,
                        "request body could not be read",
                        "unreadable_body",
                    )
                }
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let more = (collected.len() + data.len()).saturating_sub(reservation.bytes());
            if !reservation.grow(budget, more) {
                return Err(busy());
            }
            collected.extend_from_slice(&data);
        }
        Ok(collected)
    };
    match tokio::time::timeout(BODY_TIMEOUT, collect).await {
        Ok(Ok(collected)) => Ok((collected, reservation)),
        Ok(Err(rejection)) => Err(rejection),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
            "body_timeout",
        )),
    }
}

fn busy() -> Rejection {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "too many request bodies in flight; try again",
        "body_budget",
    )
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use axum::body::Bytes;
    use futures::SinkExt;
    use tower::ServiceExt;

    use super::*;
    use crate::server::tls::CertificateStore;

    const MIB: usize = 1024 * 1024;

    fn router_with_budget(budget: usize) -> (Router, Metrics) {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let cache = Arc::new(ClusterCache::default());
        let certificates = Arc::new(CertificateStore::new(PathBuf::new(), PathBuf::new()));
        let health = Arc::new(Health::new(certificates, Arc::clone(&cache)));
        let app = AppState::new(cache, metrics.clone(), Arc::new(registry), health, budget);
        (webhook_router(app), metrics)
    }

    fn post(length: Option<usize>, body: Body) -> Request {
        let mut request = Request::post("/mutate").header(header::CONTENT_TYPE, "application/json");
        if let Some(length) = length {
            request = request.header(header::CONTENT_LENGTH, length);
        }
        request.body(body).expect("request")
    }

    async fn status(router: &Router, request: Request) -> StatusCode {
        router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible")
            .status()
    }

    /// Bodies in flight hold their bytes of the budget; what does not fit is refused at once.
    #[tokio::test]
    async fn request_bodies_in_flight_never_exceed_the_budget() {
        let (router, metrics) = router_with_budget(4 * MIB);
        let (mut sender, receiver) =
            futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let held = tokio::spawn(
            router
                .clone()
                .oneshot(post(Some(3 * MIB), Body::from_stream(receiver))),
        );
        sender
            .send(Ok(Bytes::from(vec![b' '; 1024])))
            .await
            .expect("send");
        while metrics.body_bytes_in_flight.get() < 3 * MIB as i64 {
            tokio::task::yield_now().await;
        }

        // Another 3 MiB body does not fit: 503 before a byte of it is read.
        let unread = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        assert_eq!(
            status(&router, post(Some(3 * MIB), unread)).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        // Neither does a body without a length once it grows past what is left.
        let chunks = futures::stream::iter(
            (0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 512 * 1024]))),
        );
        assert_eq!(
            status(&router, post(None, Body::from_stream(chunks))).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        // A small review still fits and is answered.
        let small = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"team","operation":"CREATE","userInfo":{},"object":null}}"#;
        assert_eq!(
            status(&router, post(Some(small.len()), Body::from(small.to_vec()))).await,
            StatusCode::OK
        );
        assert_eq!(metrics.body_bytes_in_flight.get(), 3 * MIB as i64);

        // The held body ends (not JSON: 400) and gives its bytes back.
        drop(sender);
        let answer = held.await.expect("task").expect("infallible");
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        assert_eq!(metrics.body_bytes_in_flight.get(), 0);
        let spaces = vec![b' '; 3 * MIB];
        assert_eq!(
            status(&router, post(Some(spaces.len()), Body::from(spaces))).await,
            StatusCode::BAD_REQUEST
        );
    }
}
