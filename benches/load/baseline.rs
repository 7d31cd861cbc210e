//! The baseline server: the webhook's own stack and TLS settings (tokio multi-thread runtime,
//! the same rustls `ServerConfig`, hyper HTTP/1.1 with keep-alive) answering a canned
//! AdmissionReview after reading the body, without parsing it. It runs as a child process of
//! the bench (`load --baseline-server ...`) so that, like `serve`, it has a runtime of its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
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
    let canned = super::reviews::canned_response();
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
                        let _ = request.into_body().collect().await?;
                        http::Response::builder()
                            .header(http::header::CONTENT_TYPE, "application/json")
                            .body(Full::new(canned))
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
