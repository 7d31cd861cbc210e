//! A stand-in kube-apiserver over plain HTTP on 127.0.0.1, for faults the real one cannot
//! produce on demand: Lease calls that hang or are throttled (429) for one client while
//! another's get through.
//!
//! It keeps one Lease (get, create, replace with resourceVersion checks) and answers anything
//! else as a quiet cluster would: empty lists, watches that never deliver an event, writes
//! echoed back. Several listeners share the state, each with its own [`Fault`]: one listener
//! per replica. Every successful Lease write and every other write is logged with the time
//! the stand-in applied it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

/// What one listener does to Lease calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Never answers (a black-holed connection).
    Hang,
    /// 429 with `Retry-After: 1` (API Priority and Fairness throttling).
    Throttle,
}

/// A write the stand-in applied.
#[derive(Debug, Clone)]
pub struct Write {
    /// The listener it came through.
    pub via: &'static str,
    pub at: Instant,
    /// `lease holder=NAME` (or `holder=-` for a release), or `METHOD PATH` for anything else.
    pub what: String,
}

#[derive(Default)]
struct Shared {
    lease: Mutex<Option<Value>>,
    revision: Mutex<u64>,
    writes: Mutex<Vec<Write>>,
}

#[derive(Clone)]
struct Route {
    shared: Arc<Shared>,
    fault: Arc<Mutex<Fault>>,
    /// Paths containing one of these answer 404, as for an API group not installed.
    missing: Arc<Mutex<Vec<String>>>,
    via: &'static str,
}

#[derive(Clone, Default)]
pub struct Apiserver {
    shared: Arc<Shared>,
}

pub struct Listener {
    pub url: String,
    fault: Arc<Mutex<Fault>>,
    missing: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Apiserver {
    pub fn new() -> Apiserver {
        Apiserver::default()
    }

    /// A new listener on a free port of 127.0.0.1, named `via` in the write log.
    pub async fn listen(&self, via: &'static str) -> Listener {
        let fault = Arc::new(Mutex::new(Fault::None));
        let missing = Arc::new(Mutex::new(Vec::new()));
        let route = Route {
            shared: Arc::clone(&self.shared),
            fault: Arc::clone(&fault),
            missing: Arc::clone(&missing),
            via,
        };
        let router = Router::new().fallback(answer).with_state(route);
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", socket.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(socket, router).await;
        });
        Listener {
            url,
            fault,
            missing,
            task,
        }
    }

    pub fn writes(&self) -> Vec<Write> {
        self.shared.writes.lock().expect("writes").clone()
    }

    /// When the write `what` was first applied.
    pub fn first(&self, what: &str) -> Option<Instant> {
        self.writes()
            .into_iter()
            .find(|write| write.what == what)
            .map(|write| write.at)
    }

    pub fn holder(&self) -> Option<String> {
        self.shared
            .lease
            .lock()
            .expect("lease")
            .as_ref()
            .and_then(|lease| lease["spec"]["holderIdentity"].as_str().map(str::to_owned))
    }
}

impl Listener {
    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock().expect("fault") = fault;
    }

    /// Requests whose path contains `fragment` get 404 from now on.
    pub fn missing(&self, fragment: &str) {
        self.missing
            .lock()
            .expect("missing")
            .push(fragment.to_owned());
    }

    /// A kube client for this listener, with kube's default settings (retries included).
    pub fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::Config::new(self.url.parse().expect("url"));
        kube::Client::try_from(config).expect("client")
    }

    /// A kubeconfig file in `dir` for this listener.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: '{}'}}}}]\n\
             users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\n\
             current-context: c\n",
            self.url
        );
        std::fs::write(&path, text).expect("kubeconfig");
        path
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn answer(State(route): State<Route>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default();
    if path.starts_with("/apis/coordination.k8s.io/v1/") && path.contains("/leases") {
        let fault = *route.fault.lock().expect("fault");
        return match fault {
            Fault::Hang => std::future::pending().await,
            Fault::Throttle => {
                let mut response = status(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "too many requests",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, "1".parse().expect("header"));
                response
            }
            Fault::None => lease(&route, &method, &path, &body),
        };
    }
    let missing = route.missing.lock().expect("missing").clone();
    if missing
        .iter()
        .any(|fragment| path.contains(fragment.as_str()))
    {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    let watch = query
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1");
    match method {
        // A quiet cluster: nothing ever changes.
        Method::GET if watch => std::future::pending().await,
        Method::GET if is_collection(&path) => ok(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": []}),
        ),
        Method::GET => status(StatusCode::NOT_FOUND, "NotFound", "not found"),
        _ => {
            record(&route, format!("{method} {path}"));
            let mut object: Value = serde_json::from_slice(&body).unwrap_or_else(|_| json!({}));
            object["metadata"]["resourceVersion"] = json!("1");
            ok(StatusCode::CREATED, &object)
        }
    }
}

/// `/api/v1/R`, `/apis/G/V/R`, or either with `namespaces/NS/` before `R`.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rest = match segments.first() {
        Some(&"api") => &segments[2.min(segments.len())..],
        _ => &segments[3.min(segments.len())..],
    };
    rest.len() == 1 || (rest.len() == 3 && rest[0] == "namespaces")
}

fn record(route: &Route, what: String) {
    route.shared.writes.lock().expect("writes").push(Write {
        via: route.via,
        at: Instant::now(),
        what,
    });
}

fn lease(route: &Route, method: &Method, path: &str, body: &[u8]) -> Response {
    let mut stored = route.shared.lease.lock().expect("lease");
    let named = !path.ends_with("/leases");
    match *method {
        Method::GET if named => match stored.as_ref() {
            Some(lease) => ok(StatusCode::OK, lease),
            None => status(StatusCode::NOT_FOUND, "NotFound", "leases not found"),
        },
        Method::POST | Method::PUT => {
            let Ok(mut lease) = serde_json::from_slice::<Value>(body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
            };
            let current = stored
                .as_ref()
                .map(|lease| lease["metadata"]["resourceVersion"].clone());
            match (method.clone(), current) {
                (Method::POST, Some(_)) => {
                    return status(StatusCode::CONFLICT, "AlreadyExists", "already exists");
                }
                (Method::PUT, None) => {
                    return status(StatusCode::NOT_FOUND, "NotFound", "leases not found");
                }
                (Method::PUT, Some(current)) if lease["metadata"]["resourceVersion"] != current => {
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        "the object has been modified",
                    );
                }
                _ => {}
            }
            let mut revision = route.shared.revision.lock().expect("revision");
            *revision += 1;
            lease["metadata"]["resourceVersion"] = json!(revision.to_string());
            let holder = lease["spec"]["holderIdentity"]
                .as_str()
                .unwrap_or("-")
                .to_owned();
            record(route, format!("lease holder={holder}"));
            *stored = Some(lease.clone());
            let code = if *method == Method::POST {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            ok(code, &lease)
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not supported",
        ),
    }
}
