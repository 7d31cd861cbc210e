//! Polling, reading a pod's pull secrets and annotation, and small text and time helpers.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use serde_json::Value;

use super::INJECTED_ANNOTATION;

/// Calls `check` until it returns `Some`, at most `timeout`; errors count as "not yet" but the
/// last one is reported if time runs out.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(format!("{error:#}")),
        }
        if Instant::now() >= deadline {
            let last = last_error
                .map(|error| format!(" (last error: {error})"))
                .unwrap_or_default();
            bail!(
                "timed out after {:.0}s waiting for {what}{last}",
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn pull_secrets(pod: &Value) -> Vec<String> {
    pod["spec"]["imagePullSecrets"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|entry| entry["name"].as_str().unwrap_or("<no name>").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn injected_annotation(pod: &Value) -> Option<String> {
    pod["metadata"]["annotations"][INJECTED_ANNOTATION]
        .as_str()
        .map(str::to_owned)
}

pub fn random_hex(len: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    while out.len() < len {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        hasher.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out.truncate(len);
    out
}

pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
