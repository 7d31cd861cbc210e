//! The baseline server: the webhook's own stack and TLS settings (tokio multi-thread runtime,
//! the same rustls `ServerConfig`, hyper HTTP/1.1 with keep-alive) answering a canned
//! AdmissionReview after reading the body, without parsing it: only the request's uid is
//! copied in (found by a byte search), so the apiserver accepts it too — registered in place
//! of the webhook it shows what calling any webhook costs. It runs as a child process of the
//! bench (`load --baseline-server ...`) so that, like `serve`, it has a runtime of its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use pullsecret_injector::server::tls::{CertificateStore, server_config};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub fn main(listen: SocketAddr, cert: PathBuf, key: PathBuf) -> Result<()> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let store = Arc::new(CertificateStore::new(cert, key));
    store.reload(&provider).context("load certificate")?;
    let config = server_config(store, provider)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let canned = Arc::new(Canned::new(&super::reviews::canned_response()));
    tokio::runtime::Runtime::new()?.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let canned = canned.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let canned = canned.clone();
                    async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        http::Response::builder()
                            .header(http::header::CONTENT_TYPE, "application/json")
                            .body(Full::new(canned.answer(&body)))
                            .map_err(anyhow::Error::from)
                    }
                });
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// The canned answer split around its uid.
pub struct Canned {
    before_uid: Bytes,
    after_uid: Bytes,
}

impl Canned {
    pub fn new(answer: &Bytes) -> Canned {
        let uid = super::reviews::CANNED_UID.as_bytes();
        let at = answer
            .windows(uid.len())
            .position(|window| window == uid)
            .expect("the canned answer holds the placeholder uid");
        Canned {
            before_uid: answer.slice(..at),
            after_uid: answer.slice(at + uid.len()..),
        }
    }

    /// The canned answer carrying the uid of `request`: the first `"uid":"…"` in the body,
    /// which is the request's own in what the apiserver sends.
    pub fn answer(&self, request: &[u8]) -> Bytes {
        const KEY: &[u8] = b"\"uid\":\"";
        let uid = request
            .windows(KEY.len())
            .position(|window| window == KEY)
            .map(|at| &request[at + KEY.len()..])
            .and_then(|rest| rest.iter().position(|&b| b == b'"').map(|end| &rest[..end]))
            .unwrap_or(super::reviews::CANNED_UID.as_bytes());
        let mut answer =
            Vec::with_capacity(self.before_uid.len() + uid.len() + self.after_uid.len());
        answer.extend_from_slice(&self.before_uid);
        answer.extend_from_slice(uid);
        answer.extend_from_slice(&self.after_uid);
        Bytes::from(answer)
    }
}
