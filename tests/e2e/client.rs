//! Test-side tools for the hardening scenarios: a blocking HTTPS client for the webhook port
//! (rustls, trusting the suite's CA), AdmissionReview bodies, and the resource usage of a
//! process from /proc.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTPS to one webhook address.
#[derive(Clone)]
pub struct WebhookClient {
    pub addr: SocketAddr,
    config: Arc<ClientConfig>,
}

impl WebhookClient {
    /// Trusts every certificate in the given PEM files (CA bundles).
    pub fn new(addr: SocketAddr, ca_files: &[&Path]) -> Result<WebhookClient> {
        let mut roots = RootCertStore::empty();
        for file in ca_files {
            for cert in CertificateDer::pem_file_iter(file)
                .with_context(|| format!("cannot read {}", file.display()))?
            {
                roots.add(cert?)?;
            }
        }
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
        // Full handshakes, as the apiserver makes them; a resumed session would also report
        // the certificate of its original handshake, not the one served now.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(WebhookClient {
            addr,
            config: Arc::new(config),
        })
    }

    /// A TCP connection with the TLS handshake completed.
    pub fn connect(&self) -> Result<TlsStream> {
        let tcp = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let connection = ClientConnection::new(Arc::clone(&self.config), name)?;
        let mut stream = StreamOwned::new(connection, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .context("TLS handshake")?;
        }
        Ok(stream)
    }

    /// One POST /mutate on a fresh connection (`Connection: close`).
    pub fn post_once(&self, body: &[u8], content_type: Option<&str>) -> Result<HttpResponse> {
        let mut stream = self.connect()?;
        write_request(&mut stream, "POST", "/mutate", body, content_type, true)?;
        read_response(&mut stream)
    }
}

/// The leaf certificate the server presented on this connection.
pub fn peer_leaf(stream: &TlsStream) -> Option<Vec<u8>> {
    stream
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.as_ref().to_vec())
}

/// (serial in hex, notAfter as Unix time) of a DER certificate.
pub fn serial_and_expiry(der: &[u8]) -> Result<(String, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).context("not a certificate")?;
    Ok((
        cert.raw_serial_as_string(),
        cert.validity().not_after.timestamp(),
    ))
}

pub fn write_request(
    stream: &mut impl Write,
    method: &str,
    path: &str,
    body: &[u8],
    content_type: Option<&str>,
    close: bool,
) -> Result<()> {
    let mut head = format!(
        "{method} {path}?timeout=10s HTTP/1.1\r\nHost: webhook\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request)?;
    stream.flush()?;
    Ok(())
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response body is not JSON: {:?}", self.text()))
    }
}

/// Reads one HTTP/1.1 response (Content-Length framed, or up to EOF).
pub fn read_response(stream: &mut impl Read) -> Result<HttpResponse> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        let read = read_some(stream, &mut chunk)?;
        if read == 0 {
            bail!(
                "connection closed after {} bytes, before a complete response head",
                buffer.len()
            );
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let mut body = buffer[head_end + 4..].to_vec();
    let length = headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse::<usize>().ok());
    match length {
        Some(length) => {
            while body.len() < length {
                let read = read_some(stream, &mut chunk)?;
                ensure!(
                    read > 0,
                    "connection closed after {} of {length} body bytes",
                    body.len()
                );
                body.extend_from_slice(&chunk[..read]);
            }
            body.truncate(length);
        }
        None => loop {
            match read_some(stream, &mut chunk) {
                Ok(0) => break,
                Ok(read) => body.extend_from_slice(&chunk[..read]),
                Err(error) => return Err(error),
            }
        },
    }
    Ok(HttpResponse { status, body })
}

/// A read where a TLS close without close_notify counts as EOF.
fn read_some(stream: &mut impl Read, buffer: &mut [u8]) -> Result<usize> {
    match stream.read(buffer) {
        Ok(read) => Ok(read),
        Err(error) if error.kind() == ErrorKind::UnexpectedEof => Ok(0),
        Err(error) => Err(error.into()),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

// ---------------------------------------------------------------------------------------------
// AdmissionReview bodies

pub fn review_envelope(request: Value) -> Value {
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request })
}

pub fn pod_request(uid: &str, namespace: &str, pod: Value) -> Value {
    json!({
        "uid": uid,
        "kind": { "group": "", "version": "v1", "kind": "Pod" },
        "resource": { "group": "", "version": "v1", "resource": "pods" },
        "requestKind": { "group": "", "version": "v1", "kind": "Pod" },
        "requestResource": { "group": "", "version": "v1", "resource": "pods" },
        "namespace": namespace,
        "operation": "CREATE",
        "userInfo": { "username": "e2e-load" },
        "object": pod,
        "dryRun": false,
    })
}

pub fn pod_with_images(name: &str, images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({ "name": format!("c{i}"), "image": image }))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": { "containers": containers },
    })
}

/// A complete pod-CREATE review body.
pub fn pod_review(uid: &str, namespace: &str, images: &[&str]) -> Vec<u8> {
    review_envelope(pod_request(uid, namespace, pod_with_images("load", images)))
        .to_string()
        .into_bytes()
}

/// Checks a 200 answer: an allowed AdmissionReview echoing `uid`; returns the response object.
pub fn expect_allowed(response: &HttpResponse, uid: &str) -> Result<Value> {
    ensure!(
        response.status == 200,
        "status {} ({:?}), expected 200",
        response.status,
        crate::harness::tail(&response.text(), 3)
    );
    let review = response.json()?;
    let answer = &review["response"];
    ensure!(
        answer["allowed"] == true,
        "not allowed: {}",
        clip(&answer.to_string())
    );
    ensure!(
        answer["uid"] == uid,
        "uid {} not echoed (got {})",
        uid,
        answer["uid"]
    );
    Ok(answer.clone())
}

pub fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}

// ---------------------------------------------------------------------------------------------
// Resource usage

/// Resident memory of a process, in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .context("no VmRSS line")
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}
