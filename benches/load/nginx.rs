//! nginx as a second baseline: Debian's nginx (unpacked by tests/controlplane/fetch-nginx.sh)
//! answering the same canned AdmissionReview over the same certificate on 127.0.0.1, with a
//! worker per core, the access log off and keep-alive connections kept for the whole run: nginx
//! at its fastest, a server built for exactly this. It does not copy the request's uid into the
//! answer (the load generator only checks the review was allowed).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::procs::{self, Process};
use super::{Certs, repo_root};

pub struct Nginx {
    pub process: Process,
    pub addr: SocketAddr,
}

impl Nginx {
    pub async fn start(work: &Path, certs: &Certs) -> Result<Nginx> {
        let binary = fetch()?;
        let dir = work.join("nginx");
        std::fs::create_dir_all(&dir)?;
        let addr = procs::free_addr()?;
        let answer = String::from_utf8(super::reviews::canned_response().to_vec())?;
        if answer.contains(['\'', '$', '\\']) {
            bail!("the canned answer needs quoting nginx does not do");
        }
        let config = format!(
            "daemon off;
master_process on;
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000000;
    keepalive_timeout 120s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {addr} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /mutate {{
            default_type application/json;
            return 200 '{answer}';
        }}
    }}
}}
",
            dir = dir.display(),
            cert = certs.cert.display(),
            key = certs.key.display(),
        );
        let config_file = dir.join("nginx.conf");
        std::fs::write(&config_file, config)?;
        let mut command = Command::new(binary);
        command
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config_file);
        let mut process = Process::spawn("nginx", command, &work.join("nginx.log"))?;
        procs::wait_listening(&mut process, addr).await?;
        Ok(Nginx { process, addr })
    }

    /// CPU seconds of the master and its workers.
    pub fn cpu_seconds(&self) -> Result<f64> {
        let pid = self.process.pid();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?;
        let mut total = procs::cpu_seconds(pid)?;
        for child in children.split_whitespace() {
            total += procs::cpu_seconds(child.parse()?)?;
        }
        Ok(total)
    }
}

fn fetch() -> Result<PathBuf> {
    let out = Command::new("bash")
        .arg(repo_root().join("tests/controlplane/fetch-nginx.sh"))
        .output()
        .context("run fetch-nginx.sh")?;
    if !out.status.success() {
        bail!(
            "fetch-nginx.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}
