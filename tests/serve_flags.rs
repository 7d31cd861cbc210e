//! `serve` refuses, at start-up, flag values that would break it silently: one line on stderr
//! naming the flag, exit code 2, before it reads a certificate or calls the API server.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `serve` with otherwise working arguments plus `extra`: valid certificates, free
/// ports, a kubeconfig for a server that is not there. Returns (exit code, stderr); a process
/// still running after a minute is killed and reported as `None`.
fn serve_with(extra: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"))
        .args(["certs", "--ip", "127.0.0.1", "--out-dir"])
        .arg(dir.path())
        .output()
        .expect("certs");
    assert!(certs.status.success(), "{certs:?}");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n\
         users: [{name: u, user: {}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n\
         current-context: c\n",
    )
    .expect("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert-file")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.path().join("tls.key"))
        .args(extra)
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("PULLSECRET_INJECTOR_LOG_LEVEL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = match child.try_wait().expect("wait") {
        Some(status) => status.code(),
        None => {
            child.kill().expect("kill");
            None
        }
    };
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Enough to see what happened, not a whole backtrace.
    let clipped: String = stderr.chars().take(2000).collect();
    (code, clipped)
}

#[test]
fn flags_that_would_break_the_server_silently_are_refused_at_start_up() {
    let cases: [(&[&str], &str); 7] = [
        (&["--tls-reload-interval", "0s"], "--tls-reload-interval"),
        (
            &["--enable-controller", "--audit-interval", "0s"],
            "--audit-interval",
        ),
        (&["--max-connections", "0"], "--max-connections"),
        (
            &["--max-body-bytes-in-flight", "1Mi"],
            "--max-body-bytes-in-flight",
        ),
        (&["--idle-timeout", "0"], "--idle-timeout"),
        (&["--log-level", "debgu"], "--log-level"),
        (
            &["--log-level", "pullsecret_injector=verbose,info"],
            "--log-level",
        ),
    ];
    for (flags, named) in cases {
        let (code, stderr) = serve_with(flags);
        assert_eq!(code, Some(2), "{flags:?}: exit code, stderr {stderr:?}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{flags:?}: one line, got {stderr:?}");
        assert!(
            lines[0].starts_with("pullsecret-injector: ") && lines[0].contains(named),
            "{flags:?}: {stderr:?}"
        );
    }
}

/// A kubelet CredentialProviderConfig that is missing or invalid stops the start, as it stops a
/// kubelet's.
#[test]
fn an_invalid_credential_provider_config_is_refused_at_start_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let wrong_kind = write(
        "kind.yaml",
        "apiVersion: kubelet.config.k8s.io/v1\nkind: KubeletConfiguration\n",
    );
    let path_name = write(
        "path.yaml",
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: [{name: ../../bin/sh, matchImages: [x], defaultCacheDuration: 1m, apiVersion: credentialprovider.kubelet.k8s.io/v1}]\n",
    );
    let missing = dir.path().join("absent.yaml").display().to_string();
    for (file, why) in [
        (&wrong_kind, "CredentialProviderConfig"),
        (&path_name, "plain file name"),
        (&missing, "cannot read"),
    ] {
        let (code, stderr) = serve_with(&["--image-credential-provider-config", file]);
        assert_eq!(code, Some(2), "{file}: {stderr:?}");
        assert!(
            stderr.contains("--image-credential-provider-config") && stderr.contains(why),
            "{file}: {stderr:?}"
        );
    }
    let (code, stderr) = serve_with(&["--image-credential-provider-timeout", "0s"]);
    assert_eq!(code, Some(2), "{stderr:?}");
    assert!(
        stderr.contains("--image-credential-provider-timeout"),
        "{stderr:?}"
    );
}
