//! The hostile clients of the attack phase, as the e2e hostile-load scenario runs them: idle TCP
//! connections that never start TLS, idle TLS connections, slowloris clients trickling request
//! heads or bodies one byte at a time, and a stream of hostile requests on fresh connections.
//! The phase measures how much they slow good requests; the e2e scenario only checks that every
//! good request is answered correctly meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::client::Target;

/// How many of each hostile client.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct AttackSize {
    pub raw_idle: usize,
    pub tls_idle: usize,
    pub slow_headers: usize,
    pub slow_bodies: usize,
    /// Hostile requests per second, each on a fresh TLS connection.
    pub hostile_rate: u64,
}

impl AttackSize {
    /// The e2e scenario's numbers.
    pub const FULL: AttackSize = AttackSize {
        raw_idle: 1500,
        tls_idle: 500,
        slow_headers: 100,
        slow_bodies: 100,
        hostile_rate: 10,
    };
    pub const QUICK: AttackSize = AttackSize {
        raw_idle: 200,
        tls_idle: 100,
        slow_headers: 20,
        slow_bodies: 20,
        hostile_rate: 10,
    };

    pub fn connections(&self) -> usize {
        self.raw_idle + self.tls_idle + self.slow_headers + self.slow_bodies
    }
}

/// The running attack; `stop` ends it and closes every connection.
pub struct Attack {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    hostile_sent: Arc<AtomicU64>,
    _raw: Vec<TcpStream>,
    _tls: Vec<tokio_rustls::client::TlsStream<TcpStream>>,
}

/// Malformed, oversized and deeply nested bodies: each answered 4xx without a review.
fn hostile_bodies() -> Vec<Bytes> {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    vec![
        Bytes::from_static(b"not json at all"),
        Bytes::from_static(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
        Bytes::from(deep),
        Bytes::from(vec![b'x'; 4 * 1024 * 1024]),
    ]
}

impl Attack {
    pub async fn start(target: &Target, size: AttackSize) -> Result<Attack> {
        let stop = Arc::new(AtomicBool::new(false));
        let hostile_sent = Arc::new(AtomicU64::new(0));
        let mut tls = Vec::with_capacity(size.tls_idle);
        for _ in 0..size.tls_idle {
            tls.push(target.tls().await?);
        }
        let mut tasks = vec![
            trickle(target, size.slow_headers, false, &stop).await?,
            trickle(target, size.slow_bodies, true, &stop).await?,
        ];
        let (target_copy, stop_copy, sent) =
            (target.clone(), Arc::clone(&stop), Arc::clone(&hostile_sent));
        let interval = Duration::from_secs(1) / u32::try_from(size.hostile_rate.max(1))?;
        tasks.push(tokio::spawn(async move {
            let bodies = hostile_bodies();
            let mut ticks = tokio::time::interval(interval);
            let mut index = 0;
            while !stop_copy.load(Ordering::Acquire) {
                ticks.tick().await;
                // Refused requests are the point: only the attempt is counted.
                let _ = target_copy
                    .post_fresh(bodies[index % bodies.len()].clone())
                    .await;
                sent.fetch_add(1, Ordering::AcqRel);
                index += 1;
            }
        }));
        // Last, since the server drops connections that send no TLS handshake after 10 s.
        let mut raw = Vec::with_capacity(size.raw_idle);
        for _ in 0..size.raw_idle {
            raw.push(TcpStream::connect(target.addr).await?);
        }
        Ok(Attack {
            stop,
            tasks,
            hostile_sent,
            _raw: raw,
            _tls: tls,
        })
    }

    /// Stops the clients and closes their connections; the hostile requests sent.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        for task in self.tasks {
            let _ = task.await;
        }
        self.hostile_sent.load(Ordering::Acquire)
    }
}

/// `count` TLS connections each sending one byte every 100 ms: of a request head, or (`body`)
/// of a body whose head promised 100,000 bytes.
async fn trickle(
    target: &Target,
    count: usize,
    body: bool,
    stop: &Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = target.tls().await?;
        let head: &[u8] = if body {
            b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        } else {
            b"POST /mutate HTTP/1.1\r\nHost: slow\r\nX-Slow: "
        };
        stream.write_all(head).await?;
        streams.push(stream);
    }
    let stop = Arc::clone(stop);
    Ok(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(100));
        while !stop.load(Ordering::Acquire) && !streams.is_empty() {
            ticks.tick().await;
            let mut open = Vec::with_capacity(streams.len());
            for mut stream in streams {
                // A connection the server closed is dropped from the round.
                if stream.write_all(b" ").await.is_ok() {
                    open.push(stream);
                }
            }
            streams = open;
        }
    }))
}
