//! The accept loops: bounded connections, handshake and header deadlines, a bound on header
//! bytes, graceful drain. The webhook port speaks TLS ([`serve`]); the admin port plain HTTP
//! ([`serve_plain`]), with limits of its own ([`ConnectionLimits::admin`]).
//!
//! Drain: when `stop` turns true the listener closes (new clients are refused) and every open
//! connection finishes the request it is serving and is then closed. A
//! connection that is between requests — just accepted, or idle keep-alive — gets
//! [`DRAIN_GRACE`] for a request that is already on its way to arrive and be answered, and is
//! then closed. (hyper's own graceful shutdown closes such connections at once, so a client
//! whose request was in the socket buffer would get no answer at all.)

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::server::tls::handshake_failure_reason;
use crate::telemetry::Metrics;

/// During the drain, how long a connection with no request in progress stays open for one to
/// arrive.
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// The most a connection buffers while reading: request headers larger than this are refused
/// (431). The apiserver's are well under 1 KiB; hyper's default would let each of thousands of
/// connections hold about 400 KiB of headers.
pub const MAX_READ_BUFFER: usize = 16 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A TLS handshake must complete within this.
    pub handshake_timeout: Duration,
    /// The next request's headers must arrive within this of the connection going idle; it is
    /// also the keep-alive idle timeout, so it must exceed the apiserver's 90 s.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 4096,
        }
    }
}

impl ConnectionLimits {
    /// The admin port's: probes and scrapes send a request at once and need few connections.
    pub fn admin() -> ConnectionLimits {
        ConnectionLimits {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            max_connections: 64,
        }
    }
}

/// Serves HTTPS on `listener` until `stop` turns true, then lets open connections finish (see
/// the module docs) and returns when all have closed.
pub async fn serve(
    listener: TcpListener,
    tls_config: Arc<rustls::ServerConfig>,
    router: Router,
    limits: ConnectionLimits,
    metrics: Metrics,
    stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls_config);
    let handshake = move |tcp: TcpStream| {
        let acceptor = acceptor.clone();
        async move { acceptor.accept(tcp).await }
    };
    accept_loop(listener, router, limits, Some(metrics), stop, handshake).await;
}

/// Serves plain HTTP on `listener`, like [`serve`].
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
) {
    let handshake = |tcp: TcpStream| async move { Ok(tcp) };
    accept_loop(listener, router, limits, None, stop, handshake).await;
}

/// With `max_connections` open, new clients wait in the kernel's accept queue until one
/// closes; `metrics` (the webhook's listener) counts those waits and the open connections.
async fn accept_loop<H, F, S>(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    metrics: Option<Metrics>,
    mut stop: watch::Receiver<bool>,
    handshake: H,
) where
    H: Fn(TcpStream) -> F + Clone + Send + 'static,
    F: Future<Output = std::io::Result<S>> + Send,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Every connection task holds a sender; `recv` returns None once all have ended.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    loop {
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(metrics) = &metrics {
                    metrics.connection_limit_reached.inc();
                }
                let permit = tokio::select! {
                    permit = Arc::clone(&slots).acquire_owned() => permit,
                    _ = stop.wait_for(|stop| *stop) => break,
                };
                let Ok(permit) = permit else { break };
                permit
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let handshake = handshake.clone();
        let router = router.clone();
        let stop = stop.clone();
        let open = open.clone();
        let counted = metrics
            .as_ref()
            .map(|metrics| OpenConnection::new(&metrics.webhook_connections));
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            let _counted = counted;
            let stream = match tokio::time::timeout(limits.handshake_timeout, handshake(tcp)).await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    if let Some(metrics) = &metrics {
                        metrics.observe_handshake_failure(handshake_failure_reason(&error));
                    }
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    if let Some(metrics) = &metrics {
                        metrics.observe_handshake_failure("timeout");
                    }
                    return;
                }
            };
            let activity = Arc::new(Activity::default());
            let service = TowerToHyperService::new(activity.track(router));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.idle_timeout)
                .max_buf_size(MAX_READ_BUFFER)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = drive(connection, stop, &activity).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(open);
    let _ = all_closed.recv().await;
}

/// Runs one connection; once `stop` turns true, shuts it down gracefully as soon as it has a
/// request in progress, or after [`DRAIN_GRACE`] without one.
async fn drive<C>(
    connection: C,
    mut stop: watch::Receiver<bool>,
    activity: &Activity,
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>> + GracefulShutdown,
{
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return result,
        _ = stop.wait_for(|stop| *stop) => {}
    }
    tokio::select! {
        result = connection.as_mut() => return result,
        _ = activity.busy_or_grace(DRAIN_GRACE) => {}
    }
    connection.as_mut().shut_down_gracefully();
    connection.await
}

/// hyper's graceful shutdown of one HTTP/1 connection: finish the current request with
/// `Connection: close`, or close at once if there is none.
trait GracefulShutdown {
    fn shut_down_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulShutdown for http1::Connection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    fn shut_down_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Requests of one connection: how many started, how many are being handled.
#[derive(Debug, Default)]
struct Activity {
    started: AtomicUsize,
    in_progress: AtomicUsize,
    changed: Notify,
}

impl Activity {
    fn track(
        self: &Arc<Self>,
        router: Router,
    ) -> impl tower::Service<
        Request<hyper::body::Incoming>,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static {
        let (on_request, on_response) = (Arc::clone(self), Arc::clone(self));
        router
            .map_request(move |request: Request<hyper::body::Incoming>| {
                on_request.in_progress.fetch_add(1, Ordering::AcqRel);
                on_request.started.fetch_add(1, Ordering::AcqRel);
                on_request.changed.notify_waiters();
                request
            })
            .map_response(move |response| {
                on_response.in_progress.fetch_sub(1, Ordering::AcqRel);
                response
            })
    }

    /// Returns when a request is in progress or starts, or after `grace`.
    async fn busy_or_grace(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        let seen = self.started.load(Ordering::Acquire);
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if self.in_progress.load(Ordering::Acquire) > 0
                || self.started.load(Ordering::Acquire) != seen
            {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }
}

/// One open connection in the gauge, for as long as it lives.
struct OpenConnection(Gauge);

impl OpenConnection {
    fn new(gauge: &Gauge) -> OpenConnection {
        gauge.inc();
        OpenConnection(gauge.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::routing::post;
    use rustls::pki_types::ServerName;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::cli::certs::{CertsArgs, generate};
    use crate::server::tls::{CertificateStore, server_config};

    /// Bounds a wait that only a bug leaves unfinished; never a measure of speed.
    const HANG_GUARD: Duration = Duration::from_secs(60);

    struct Server {
        addr: SocketAddr,
        stop: watch::Sender<bool>,
        done: tokio::task::JoinHandle<()>,
        connector: tokio_rustls::TlsConnector,
        metrics: Metrics,
        _dir: tempfile::TempDir,
    }

    async fn start() -> Server {
        start_with(ConnectionLimits::default()).await
    }

    async fn start_with(limits: ConnectionLimits) -> Server {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate(&CertsArgs {
            out_dir: dir.path().to_owned(),
            dns_names: Vec::new(),
            ips: vec!["127.0.0.1".parse().expect("ip")],
            days: 1,
        })
        .expect("certificate");
        let store = Arc::new(CertificateStore::new(files.cert, files.key));
        store.reload(&provider).expect("load");
        let config = server_config(store, Arc::clone(&provider)).expect("config");
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&files.ca_cert).expect("ca") {
            roots.add(cert.expect("ca cert")).expect("root");
        }
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().route("/mutate", post(|| async { "answered" }));
        let (stop, stopped) = watch::channel(false);
        let metrics = Metrics::new(&mut prometheus_client::registry::Registry::default());
        let done = tokio::spawn(serve(
            listener,
            Arc::new(config),
            router,
            limits,
            metrics.clone(),
            stopped,
        ));
        Server {
            addr,
            stop,
            done,
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            metrics,
            _dir: dir,
        }
    }

    /// Polls `condition` until it holds; panics (naming `what`) only after [`HANG_GUARD`].
    async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + HANG_GUARD;
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    impl Server {
        async fn connect(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
            let tcp = TcpStream::connect(self.addr).await.expect("connect");
            self.handshake(tcp).await
        }

        fn handshake(
            &self,
            tcp: TcpStream,
        ) -> impl Future<Output = tokio_rustls::client::TlsStream<TcpStream>> + use<> {
            let name = ServerName::IpAddress(self.addr.ip().into());
            let connect = self.connector.connect(name, tcp);
            async move { connect.await.expect("handshake") }
        }

        /// Stops accepting and waits (polling) until new connections are refused.
        async fn stop_accepting(&self) {
            self.stop.send(true).expect("stop");
            let deadline = tokio::time::Instant::now() + HANG_GUARD;
            while TcpStream::connect(self.addr).await.is_ok() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "listener still open"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    const REQUEST: &[u8] = b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";

    /// A client that does not trust the served certificate (as the apiserver after a caBundle
    /// change the pods have not followed) is counted by the alert it sends.
    #[tokio::test]
    async fn a_client_that_does_not_trust_the_certificate_is_counted() {
        let server = start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let other = generate(&CertsArgs {
            out_dir: dir.path().to_owned(),
            dns_names: Vec::new(),
            ips: vec!["127.0.0.1".parse().expect("ip")],
            days: 1,
        })
        .expect("another CA");
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&other.ca_cert).expect("ca") {
            roots.add(cert.expect("ca cert")).expect("root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(server.addr).await.expect("connect");
        let refused = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(ServerName::IpAddress(server.addr.ip().into()), tcp)
            .await;
        assert!(refused.is_err(), "the client refuses the certificate");
        // Both CAs have the same name (as a CA the chart issues again does): the client finds
        // the issuer by name and refuses its signature.
        wait_until("the refused handshake is counted", || {
            server.metrics.handshake_failures("decrypt_error") == 1
        })
        .await;
        assert_eq!(server.metrics.handshake_failures("other_alert"), 0);
    }

    /// Sends one request and reads the whole response (the router answers `answered`), leaving
    /// the connection open for the next.
    async fn request(stream: &mut tokio_rustls::client::TlsStream<TcpStream>) -> String {
        stream.write_all(REQUEST).await.expect("write");
        let mut response = Vec::new();
        let mut buffer = [0u8; 4096];
        while !response.ends_with(b"answered") {
            let read = tokio::time::timeout(HANG_GUARD, stream.read(&mut buffer))
                .await
                .expect("an answer")
                .expect("read");
            assert!(read > 0, "closed mid-response: {response:?}");
            response.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8_lossy(&response).into_owned()
    }

    /// Sends one request and reads until the server closes the connection.
    async fn exchange(stream: &mut tokio_rustls::client::TlsStream<TcpStream>) -> String {
        stream.write_all(REQUEST).await.expect("write");
        let mut response = Vec::new();
        let _ = tokio::time::timeout(HANG_GUARD, stream.read_to_end(&mut response))
            .await
            .expect("the connection is closed after the response");
        String::from_utf8_lossy(&response).into_owned()
    }

    #[tokio::test]
    async fn a_request_arriving_on_an_open_connection_during_the_drain_is_answered() {
        let server = start().await;
        // Accepted and handshaken before the drain, request sent after it began: the
        // apiserver's fresh connection racing the shutdown.
        let mut fresh = server.connect().await;
        // Keep-alive: one request served before the drain, the next one during it.
        let mut kept = server.connect().await;
        let first = request(&mut kept).await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first:?}");

        server.stop_accepting().await;
        for stream in [&mut fresh, &mut kept] {
            let response = exchange(stream).await;
            assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
            assert!(response.ends_with("answered"), "{response:?}");
        }
        tokio::time::timeout(HANG_GUARD, server.done)
            .await
            .expect("serve returns once the connections are closed")
            .expect("serve task");
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_grace() {
        let server = start().await;
        let mut silent = server.connect().await;
        server.stop_accepting().await;
        let mut buffer = Vec::new();
        let read = tokio::time::timeout(HANG_GUARD, silent.read_to_end(&mut buffer))
            .await
            .expect("closed after the grace");
        assert!(read.is_err() || buffer.is_empty(), "{buffer:?}");
        tokio::time::timeout(HANG_GUARD, server.done)
            .await
            .expect("serve returns")
            .expect("serve task");
    }

    #[tokio::test]
    async fn clients_beyond_max_connections_wait_until_a_connection_closes() {
        let server = start_with(ConnectionLimits {
            max_connections: 2,
            ..ConnectionLimits::default()
        })
        .await;
        let mut first = server.connect().await;
        let mut second = server.connect().await;
        for stream in [&mut first, &mut second] {
            let response = request(stream).await;
            assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
        }
        // Two open: the accept loop finds no free slot and stops accepting.
        let metrics = &server.metrics;
        wait_until("the listener reports the limit reached", || {
            metrics.connection_limit_reached.get() == 1
        })
        .await;
        assert_eq!(metrics.webhook_connections.get(), 2);

        // A third client gets a TCP connection from the kernel's queue, and its handshake
        // waits there until a slot is free.
        let tcp = TcpStream::connect(server.addr).await.expect("queued");
        let third = tokio::spawn(server.handshake(tcp));
        // The connections being served keep being served meanwhile.
        let response = request(&mut second).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
        assert_eq!(metrics.webhook_connections.get(), 2);
        assert_eq!(metrics.connection_limit_reached.get(), 1);

        drop(first);
        let mut third = tokio::time::timeout(HANG_GUARD, third)
            .await
            .expect("accepted once a slot is free")
            .expect("handshake task");
        let response = request(&mut third).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
        // Back at the limit: the loop waits again, with two open.
        wait_until("the listener reports the limit reached again", || {
            metrics.connection_limit_reached.get() == 2
        })
        .await;
        assert_eq!(metrics.webhook_connections.get(), 2);
    }

    /// The admin port: headers that never finish, or grow past the buffer limit, end the
    /// connection; a complete request is answered.
    #[tokio::test]
    async fn the_admin_listener_cuts_slow_and_oversized_headers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().route("/livez", axum::routing::get(|| async { "ok" }));
        let limits = ConnectionLimits {
            idle_timeout: Duration::from_millis(200),
            ..ConnectionLimits::admin()
        };
        let (_stop, stopped) = watch::channel(false);
        tokio::spawn(serve_plain(listener, router, limits, stopped));
        let answer = |request: Vec<u8>| async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let _ = stream.write_all(&request).await;
            let mut response = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
                    .await
                    .expect("the connection ends");
            String::from_utf8_lossy(&response).into_owned()
        };

        let complete =
            answer(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()).await;
        assert!(complete.starts_with("HTTP/1.1 200"), "{complete:?}");
        let slow = answer(b"GET /livez HTTP/1.1\r\nHost: x\r\n".to_vec()).await;
        assert!(!slow.contains(" 200 "), "{slow:?}");
        let mut huge = b"GET /livez HTTP/1.1\r\nX-Big: ".to_vec();
        huge.extend(vec![b'h'; 4 * MAX_READ_BUFFER]);
        huge.extend(b"\r\n\r\n");
        let oversized = answer(huge).await;
        assert!(!oversized.contains(" 200 "), "{oversized:?}");
    }
}
