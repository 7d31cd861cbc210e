//! The admin port: plain HTTP GETs and reading the Prometheus exposition.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use super::{Serve, Suite};

impl Suite {
    // -- admin port ----------------------------------------------------------------------------

    /// GET `/metrics` (must be 200); the body is checked for credentials on the way.
    pub fn metrics(&self) -> Result<String> {
        let (code, body) = http_get(self.admin_addr()?, "/metrics")?;
        ensure!(code == 200, "/metrics answered {code}");
        let mut record = self.record.borrow_mut();
        record.metrics_scraped += 1;
        let leaks: Vec<String> = record
            .secret_needles
            .iter()
            .filter(|(_, needle)| body.contains(needle.as_str()))
            .map(|(description, _)| format!("{description} appeared in /metrics"))
            .collect();
        record.metrics_leaks.extend(leaks);
        Ok(body)
    }

    pub fn metrics_leaks(&self) -> (usize, Vec<String>) {
        let record = self.record.borrow();
        (record.metrics_scraped, record.metrics_leaks.clone())
    }
}

impl Serve {
    /// GET `/metrics` of this process (must be 200).
    pub fn metrics(&self) -> Result<String> {
        let (code, body) = http_get(self.admin, "/metrics")?;
        ensure!(code == 200, "/metrics answered {code}");
        Ok(body)
    }
}

/// A plain HTTP/1.0 GET on the admin port: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no HTTP header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line: {:?}", head.lines().next()))?;
    Ok((code, body.to_owned()))
}

/// The value of one series (`name` or `name{labels}`) in a Prometheus text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

/// The sum of every series of a metric family (`name{...}`).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
