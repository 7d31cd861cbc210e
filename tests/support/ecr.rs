//! A stand-in for ECR's JSON API on 127.0.0.1 that answers GetAuthorizationToken, for running
//! the real ecr-credential-provider without AWS (`AWS_ENDPOINT_URL_ECR` points at it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc::Receiver;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Starts the stand-in: every request gets a token for `AWS:{password}` valid for 12 hours at
/// `registry`. Returns its URL and a receiver of each request's `X-Amz-Target`.
pub fn start(registry: &str, password: &str) -> std::io::Result<(String, Receiver<String>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    let (seen, targets) = std::sync::mpsc::channel();
    let (registry, password) = (registry.to_owned(), password.to_owned());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let (mut length, mut target) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(value) = lower.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("x-amz-target:") {
                    target = line["x-amz-target:".len()..].trim().to_owned();
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let expires = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |now| now.as_secs())
                + 43_200;
            let answer = serde_json::json!({"authorizationData": [{
                "authorizationToken": BASE64.encode(format!("AWS:{password}")),
                "expiresAt": expires,
                "proxyEndpoint": format!("https://{registry}"),
            }]})
            .to_string();
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = seen.send(target);
        }
    });
    Ok((url, targets))
}
