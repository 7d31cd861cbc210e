//! Processes the bench starts — the control plane, `serve`, the baseline — each stopped by its
//! pid when its guard is dropped (also when the run fails or is interrupted).

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn free_addr() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The local control plane (tests/controlplane/cluster.sh), brought down on drop.
pub struct Cluster {
    dir: PathBuf,
    script: PathBuf,
}

impl Cluster {
    pub fn up(repo: &Path, dir: PathBuf) -> Result<Cluster> {
        let cluster = Cluster {
            dir,
            script: repo.join("tests/controlplane/cluster.sh"),
        };
        let out = cluster.script("up").output().context("run cluster.sh up")?;
        if !out.status.success() {
            bail!(
                "cluster.sh up failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(cluster)
    }

    fn script(&self, action: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(&self.script)
            .arg(action)
            .env("PULLSECRET_INJECTOR_CLUSTER_DIR", &self.dir)
            // The bench's pods only need admission; no node pulls their (made-up) images.
            .env("PULLSECRET_INJECTOR_NODE", "0")
            .stdin(Stdio::null());
        command
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The pid of a control-plane component, from cluster.env.
    pub fn pid(&self, variable: &str) -> Option<u32> {
        let env = std::fs::read_to_string(self.dir.join("cluster.env")).ok()?;
        env.lines()
            .find_map(|line| line.strip_prefix(&format!("export {variable}=")))
            .and_then(|value| value.trim_matches('\'').parse().ok())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        eprintln!("[bench] stopping the control plane");
        match self.script("down").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "[bench] warning: cluster.sh down: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(error) => eprintln!("[bench] warning: cannot run cluster.sh down: {error}"),
        }
    }
}

/// A child process stopped with SIGTERM (then SIGKILL after `grace`) when dropped.
pub struct Process {
    pub name: &'static str,
    child: Child,
    pub started: Instant,
    grace: Duration,
}

impl Process {
    pub fn spawn(name: &'static str, mut command: Command, log: &Path) -> Result<Process> {
        let log = File::create(log)?;
        let started = Instant::now();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        Ok(Process {
            name,
            child,
            started,
            grace: Duration::from_secs(5),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early with {status}", self.name);
        }
        Ok(())
    }

    /// Resident and peak resident memory in KiB, from /proc/PID/status.
    pub fn memory_kib(&self) -> Result<(u64, u64)> {
        memory_kib(self.pid())
    }

    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.terminate();
    }
}

pub fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .with_context(|| format!("{name} missing in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Total CPU time (user + system) a process has used, in seconds.
/// CPU time of a process (all its threads), to the nanosecond: its CPU-time clock
/// (`clock_getcpuclockid`). `/proc/PID/stat` counts in 10 ms ticks, too coarse for the CPU a
/// server spends on 125 pod creations; it is the fallback.
pub fn cpu_seconds_precise(pid: u32) -> Result<f64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_getcpuclockid(pid: i32, clock: *mut i32) -> i32;
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    let mut clock = 0i32;
    let mut now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both calls only write into the locals passed by pointer.
    let ok = unsafe {
        clock_getcpuclockid(pid as i32, &mut clock) == 0 && clock_gettime(clock, &mut now) == 0
    };
    if ok {
        Ok(now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9)
    } else {
        cpu_seconds(pid)
    }
}

pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |index: usize| -> f64 {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command: state is field 0; utime and stime are fields 11 and 12.
    Ok((ticks(11) + ticks(12)) / 100.0)
}

/// The HTTP status of a plain GET to the admin port, or `None` when it does not answer.
pub async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}

/// Polls `/readyz` until 200; returns the time since the process started.
pub async fn wait_ready(
    process: &mut Process,
    admin: SocketAddr,
    timeout: Duration,
) -> Result<Duration> {
    let deadline = Instant::now() + timeout;
    loop {
        process.check_alive()?;
        if http_status(admin, "/readyz").await == Some(200) {
            return Ok(process.started.elapsed());
        }
        if Instant::now() > deadline {
            bail!("{} not ready within {timeout:?}", process.name);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until a TCP listener accepts on `addr`.
pub async fn wait_listening(process: &mut Process, addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        process.check_alive()?;
        if Instant::now() > deadline {
            bail!("{} does not listen on {addr}", process.name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
