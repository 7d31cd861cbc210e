//! The shutdown sequence of the real `serve` binary against a stand-in API server
//! (tests/support/apiserver.rs): a second SIGTERM during the shutdown delay ends the process
//! at once, also while the controller is still handing its Lease over.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::apiserver::{Apiserver, Fault};

/// Far longer than the test waits: only the second signal can end the process in time.
const SHUTDOWN_DELAY: &str = "600s";
const GUARD: Duration = Duration::from_secs(60);

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
}

fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((code, body))
}

/// Polls `check` until it holds; fails after [`GUARD`].
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test]
async fn a_second_sigterm_during_the_shutdown_delay_ends_the_process() {
    let apiserver = Apiserver::new();
    let listener = apiserver.listen("serve").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"))
        .args(["certs", "--ip", "127.0.0.1", "--out-dir"])
        .arg(dir.path())
        .output()
        .expect("certs");
    assert!(certs.status.success());
    let admin = free_port();
    let log = dir.path().join("serve.log");
    let child = Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", &admin.to_string()])
        .arg("--tls-cert-file")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.path().join("tls.key"))
        .args(["--shutdown-delay", SHUTDOWN_DELAY, "--drain-timeout", "1s"])
        .args(["--enable-controller", "--lease-identity", "serve"])
        .args(["--lease-duration", "3s"])
        .env("KUBECONFIG", listener.kubeconfig(dir.path()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("serve");
    let mut serve = Killed(child);
    until("serve ready and leading", || {
        get(admin, "/readyz").is_some_and(|(code, _)| code == 200)
            && apiserver.holder().as_deref() == Some("serve")
    })
    .await;

    // Handing the Lease over takes as long as the API server lets it.
    listener.set_fault(Fault::Hang);
    signal(&serve.0, "TERM");
    until("the first SIGTERM to be handled", || {
        get(admin, "/readyz")
            .is_some_and(|(code, body)| code == 503 && body.contains("shutting down"))
    })
    .await;
    signal(&serve.0, "TERM");
    until("serve to exit", || {
        matches!(serve.0.try_wait(), Ok(Some(_)))
    })
    .await;
    let status = serve.0.wait().expect("status");
    let log = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("second signal: exiting immediately"), "{log}");
}
