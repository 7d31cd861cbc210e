//! Hostile input against the running webhook: malformed and oversized requests, hostile
//! registry secrets, slow and idle clients, and the TLS policy of the webhook port.
//!
//! Every case must get a clear 4xx or an allowed AdmissionReview (with a warning where the pod
//! could not be read), and afterwards the process must still run and answer /livez.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::client::{
    HttpResponse, WebhookClient, expect_allowed, fd_count, pod_request, pod_review,
    pod_with_images, read_response, review_envelope, rss_kib, write_request,
};
use crate::harness::{Suite, http_get, metric, poll};
use crate::scenarios::{Outcome, Scenario};

/// Run while the suite's webhook is up (before `shutdown-and-webhook-down`).
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "hostile-requests",
        run: hostile_requests,
    },
    Scenario {
        name: "hostile-secrets",
        run: hostile_secrets,
    },
    Scenario {
        name: "idle-and-slow-clients-under-attack",
        run: idle_and_slow_clients,
    },
    Scenario {
        name: "tls-policy",
        run: tls_policy,
    },
    Scenario {
        name: "request-body-budget",
        run: request_body_budget,
    },
    Scenario {
        name: "admin-port-limits",
        run: admin_port_limits,
    },
];

const IMAGE: &str = "registry.example.com:5000/team/app:1";
const TEN_MB: usize = 10 * 1024 * 1024;

fn webhook_client(s: &Suite) -> Result<WebhookClient> {
    WebhookClient::new(s.webhook_addr()?, &[&s.cert_path("ca.crt")])
}

/// The process is alive and /livez answers 200.
pub fn still_up(s: &Suite, after: &str) -> Result<()> {
    let (pid, alive) = s.serve_pid_alive()?;
    ensure!(alive, "serve (pid {pid}) died after {after}");
    let (code, _) = http_get(s.admin_addr()?, "/livez")
        .with_context(|| format!("/livez unreachable after {after}"))?;
    ensure!(code == 200, "/livez answered {code} after {after}");
    Ok(())
}

/// How a hostile request must be answered.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Status(u16),
    /// 200, allowed, uid echoed, no patch.
    Allowed,
    /// 200, allowed, uid echoed, with at least one warning.
    AllowedWithWarning,
    /// 200 with a patch.
    Patched,
}

struct Case {
    name: &'static str,
    body: Vec<u8>,
    content_type: Option<&'static str>,
    expect: Expect,
}

fn case(name: &'static str, body: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        body,
        content_type: Some("application/json"),
        expect,
    }
}

fn envelope_with(request: Value) -> Vec<u8> {
    review_envelope(request).to_string().into_bytes()
}

fn request_with_object(ns: &str, object: Value) -> Vec<u8> {
    envelope_with(pod_request("uid-hostile", ns, object))
}

fn cases(ns: &str) -> Vec<Case> {
    let good = pod_review("uid-hostile", ns, &[IMAGE]);
    let nested = |depth: usize| {
        let mut text = String::from(
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"uid-hostile","object":"#,
        );
        text.push_str(&"[".repeat(depth));
        text.push_str(&"]".repeat(depth));
        text.push_str("}}");
        text.into_bytes()
    };
    let with_request = |edit: &dyn Fn(&mut Value)| {
        let mut request = pod_request("uid-hostile", ns, pod_with_images("p", &[IMAGE]));
        edit(&mut request);
        envelope_with(request)
    };
    let many_images: Vec<String> = (0..5000)
        .map(|i| format!("registry.example.com:5000/team/app{i}:1"))
        .collect();
    let many_images: Vec<&str> = many_images.iter().map(String::as_str).collect();
    let long_image = format!("registry.example.com:5000/{}:1", "a".repeat(100 * 1024));
    let long_tag = format!("{IMAGE}{}", "b".repeat(100 * 1024));
    vec![
        case("empty body", Vec::new(), Expect::Status(400)),
        case(
            "not JSON",
            b"this is not JSON {".to_vec(),
            Expect::Status(400),
        ),
        case(
            "truncated review",
            good[..good.len() / 2].to_vec(),
            Expect::Status(400),
        ),
        case("JSON null", b"null".to_vec(), Expect::Status(400)),
        case("JSON array", b"[1,2,3]".to_vec(), Expect::Status(400)),
        case(
            "nesting 100000 deep (object)",
            nested(100_000),
            Expect::Status(400),
        ),
        case(
            "nesting 1000000 deep (bare)",
            "[".repeat(1_000_000).into_bytes(),
            Expect::Status(400),
        ),
        case(
            "wrong apiVersion",
            String::from_utf8_lossy(&good)
                .replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
                .into_bytes(),
            Expect::Status(400),
        ),
        case(
            "wrong kind",
            String::from_utf8_lossy(&good)
                .replacen("\"AdmissionReview\"", "\"Pod\"", 1)
                .into_bytes(),
            Expect::Status(400),
        ),
        case(
            "no request",
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})
                .to_string()
                .into_bytes(),
            Expect::Status(400),
        ),
        case(
            "request null",
            envelope_with(Value::Null),
            Expect::Status(400),
        ),
        case(
            "request without uid",
            with_request(&|r| {
                r.as_object_mut().map(|r| r.remove("uid"));
            }),
            Expect::Status(400),
        ),
        case(
            "uid is a number",
            with_request(&|r| r["uid"] = json!(42)),
            Expect::Status(400),
        ),
        case(
            "object null",
            request_with_object(ns, Value::Null),
            Expect::Allowed,
        ),
        case(
            "metadata and spec null",
            request_with_object(ns, json!({"kind": "Pod", "metadata": null, "spec": null})),
            Expect::Allowed,
        ),
        case(
            "containers and imagePullSecrets null",
            request_with_object(
                ns,
                json!({"kind": "Pod", "spec": {"containers": null, "initContainers": null, "imagePullSecrets": null}}),
            ),
            Expect::Allowed,
        ),
        case(
            "null containers in the list",
            request_with_object(
                ns,
                json!({"kind": "Pod", "spec": {"containers": [null, {"image": null}, {"name": null}]}}),
            ),
            Expect::AllowedWithWarning,
        ),
        case(
            "spec is a string",
            request_with_object(ns, json!({"kind": "Pod", "spec": "containers"})),
            Expect::AllowedWithWarning,
        ),
        case(
            "object is a ConfigMap",
            request_with_object(
                ns,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"image": IMAGE}}),
            ),
            Expect::Allowed,
        ),
        case(
            "a Deployment review",
            with_request(&|r| {
                r["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
                r["resource"] =
                    json!({"group": "apps", "version": "v1", "resource": "deployments"});
            }),
            Expect::Allowed,
        ),
        case(
            "5000 containers",
            request_with_object(ns, pod_with_images("many", &many_images)),
            Expect::Patched,
        ),
        case(
            "100 KB image path",
            request_with_object(ns, pod_with_images("long", &[&long_image, &long_tag])),
            Expect::Allowed,
        ),
        case(
            "unicode and control characters",
            request_with_object(
                ns,
                json!({"kind": "Pod",
                       "metadata": {"name": "p\u{0}\u{7}\u{202e}é🐳", "labels": {"\u{1b}[31m": "\u{0}"}},
                       "spec": {"containers": [
                           {"name": "\u{feff}", "image": "rëgistry.example.com/\u{7}app\u{0}:1"},
                           {"name": "c", "image": "registry.example.com:5000/\u{2028}app"},
                           {"name": "ok", "image": IMAGE}]}}),
            ),
            Expect::Patched,
        ),
        case(
            "namespace with control characters",
            envelope_with(pod_request(
                "uid-hostile",
                "team\u{0}\n",
                pod_with_images("p", &[IMAGE]),
            )),
            Expect::Allowed,
        ),
        Case {
            name: "content type text/plain",
            body: good.clone(),
            content_type: Some("text/plain"),
            expect: Expect::Status(415),
        },
        Case {
            name: "content type application/x-www-form-urlencoded",
            body: good.clone(),
            content_type: Some("application/x-www-form-urlencoded"),
            expect: Expect::Status(415),
        },
        Case {
            name: "no content type (accepted)",
            body: good.clone(),
            content_type: None,
            expect: Expect::Patched,
        },
        case("the good request itself", good, Expect::Patched),
    ]
}

fn check_case(client: &WebhookClient, case: &Case) -> Result<()> {
    let response = client.post_once(&case.body, case.content_type)?;
    check_response(&response, case.expect)
}

fn check_response(response: &HttpResponse, expect: Expect) -> Result<()> {
    if let Expect::Status(status) = expect {
        ensure!(
            response.status == status,
            "status {} ({:?}), expected {status}",
            response.status,
            crate::client::clip(&response.text())
        );
        ensure!(
            response.body.len() < 4096 && !response.text().trim().is_empty(),
            "the {status} body should be a short reason, got {} bytes",
            response.body.len()
        );
        return Ok(());
    }
    let answer = expect_allowed(response, "uid-hostile")?;
    // The pod annotation lists every distinct image a secret was injected for, so it grows
    // with the pod (about 90 bytes per image here); it stays proportional, never unbounded.
    ensure!(
        response.body.len() < 1024 * 1024,
        "response of {} bytes for a hostile request",
        response.body.len()
    );
    let warnings = answer["warnings"].as_array().map_or(0, Vec::len);
    let patched = answer["patch"].is_string();
    match expect {
        Expect::Allowed => ensure!(!patched, "unexpected patch"),
        Expect::AllowedWithWarning => ensure!(
            !patched && warnings > 0,
            "expected a warning and no patch, got {warnings} warnings, patch: {patched}"
        ),
        Expect::Patched => ensure!(patched, "expected a patch: {}", answer),
        Expect::Status(_) => {}
    }
    Ok(())
}

/// Every hostile body of [`cases`], oversized bodies, and garbage HTTP, one connection each.
fn hostile_requests(s: &Suite) -> Result<Outcome> {
    let ns = s.namespace("hostile", &[])?;
    s.registry_secret(&ns, "reg5000", "registry.example.com:5000")?;
    s.wait_cache_synced()?;
    let client = webhook_client(s)?;
    for case in cases(&ns) {
        check_case(&client, &case).with_context(|| format!("case {:?}", case.name))?;
        still_up(s, case.name)?;
    }

    let refused = oversized_declared(&client)?;
    println!("  10 MB with Content-Length: {refused}");
    still_up(s, "a declared 10 MB body")?;
    let refused = oversized_chunked(&client)?;
    println!("  10 MB chunked: {refused}");
    still_up(s, "a chunked 10 MB body")?;

    for (name, raw) in [
        ("garbage request line", b"\x00\x01\x02 GARBAGE\r\n\r\n".to_vec()),
        (
            "1 MB header",
            format!(
                "POST /mutate HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "h".repeat(1024 * 1024)
            )
            .into_bytes(),
        ),
        (
            "conflicting lengths",
            b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello".to_vec(),
        ),
        (
            "GET /mutate",
            b"GET /mutate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "unknown path",
            b"POST /../../etc/passwd HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        ),
    ] {
        let status = raw_exchange(&client, &raw).with_context(|| format!("case {name:?}"))?;
        ensure!(
            status.is_none_or(|status| (400..500).contains(&status)),
            "case {name:?}: status {status:?}, expected a 4xx or a closed connection"
        );
        still_up(s, name)?;
    }
    Ok(Outcome::Passed)
}

/// Sends raw bytes over TLS; the response status, or None when the server just closed.
fn raw_exchange(client: &WebhookClient, raw: &[u8]) -> Result<Option<u16>> {
    let mut stream = client.connect()?;
    if stream.write_all(raw).and_then(|_| stream.flush()).is_err() {
        return Ok(None);
    }
    Ok(read_response(&mut stream).ok().map(|r| r.status))
}

/// A 10 MB Content-Length is refused from the headers alone: the 413 arrives before a single
/// body byte was sent, and the connection is not kept for the rest.
fn oversized_declared(client: &WebhookClient) -> Result<String> {
    let mut stream = client.connect()?;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {TEN_MB}\r\n\r\n"
    );
    stream.write_all(head.as_bytes())?;
    stream.flush()?;
    let response = read_response(&mut stream).context("no answer to the headers alone")?;
    ensure!(
        response.status == 413,
        "status {} for a declared 10 MB body",
        response.status
    );
    let (sent, finished) = send_body(&mut stream, TEN_MB);
    ensure!(!finished, "the server kept reading all 10 MB after its 413");
    Ok(format!(
        "413 before any body byte; the server stopped reading after {:.1} MB",
        sent as f64 / 1048576.0
    ))
}

/// A chunked 10 MB body (no length up front) is cut at the 3 MiB limit.
fn oversized_chunked(client: &WebhookClient) -> Result<String> {
    let mut stream = client.connect()?;
    stream.write_all(
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    let chunk = vec![b' '; 64 * 1024];
    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
    framed.extend_from_slice(&chunk);
    framed.extend_from_slice(b"\r\n");
    let mut sent = 0;
    let mut finished = true;
    while sent < TEN_MB {
        if stream.write_all(&framed).is_err() {
            finished = false;
            break;
        }
        sent += chunk.len();
    }
    let response = read_response(&mut stream);
    match response {
        Ok(response) => {
            ensure!(
                response.status == 413,
                "status {} for a chunked 10 MB body",
                response.status
            );
            Ok(format!(
                "413; the client got {:.1} MB out (finished: {finished})",
                sent as f64 / 1048576.0
            ))
        }
        Err(error) => {
            ensure!(
                !finished,
                "all 10 MB were taken and no response came: {error:#}"
            );
            Ok(format!(
                "the server closed after {:.1} MB",
                sent as f64 / 1048576.0
            ))
        }
    }
}

/// Writes up to `total` bytes of body; (bytes written, whether all were written).
fn send_body(stream: &mut impl Write, total: usize) -> (usize, bool) {
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        if stream.write_all(&chunk).is_err() {
            return (sent, false);
        }
        sent += chunk.len();
    }
    (sent, stream.flush().is_ok())
}

// ---------------------------------------------------------------------------------------------

/// Registry secrets built to hurt: huge, thousands of keys, broken encodings, glob bombs.
fn hostile_secrets(s: &Suite) -> Result<Outcome> {
    let ns = s.namespace("hostile-secrets", &[])?;
    let password = s.new_password(&format!("hostile secrets in {ns}"));
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("e2e-user:{password}"))
    };
    let entry = format!(r#"{{"auth":"{auth}"}}"#);
    // Just under the apiserver's 1 MiB limit for a Secret's data.
    let mut huge = String::from(r#"{"auths":{"huge.example.com":"#);
    huge.push_str(&entry);
    let filler = format!(
        r#","filler.example.com":{{"username":"u","password":"{password}","email":"{}"}}"#,
        "e".repeat(1000)
    );
    while huge.len() + filler.len() + 2 < 1_040_000 {
        huge.push_str(&filler);
    }
    huge.push_str("}}");
    let thousands: Vec<String> = (0..5000)
        .map(|i| format!(r#""r{i}.many.example.com":{entry}"#))
        .collect();
    let thousands = format!(r#"{{"auths":{{{}}}}}"#, thousands.join(","));
    let bomb_key = format!("{}.bomb.example.com", "*".repeat(10_000));
    let mut invalid_utf8 =
        format!(r#"{{"auths":{{"utf8.example.com":{{"username":"u","password":"{password}"#)
            .into_bytes();
    invalid_utf8.extend_from_slice(b"\xff\xfe\xc3(");
    invalid_utf8.extend_from_slice(br#""}}}"#);
    let secrets: Vec<(&str, Vec<u8>, bool)> = vec![
        ("huge", huge.into_bytes(), true),
        ("thousands", thousands.into_bytes(), true),
        (
            "bad-base64",
            format!(r#"{{"auths":{{"b64.example.com":{{"auth":"{password}!!"}}}}}}"#).into_bytes(),
            false,
        ),
        ("invalid-utf8", invalid_utf8, true),
        (
            "duplicate-keys",
            format!(
                r#"{{"auths":{{"dup.example.com":{{"username":"first"}},"dup.example.com":{entry}}},"Auths":{{"dup.example.com":{entry},"dup.example.com":{entry}}}}}"#
            )
            .into_bytes(),
            true,
        ),
        (
            "glob-bomb",
            format!(r#"{{"auths":{{"{bomb_key}":{entry},"{}":{entry}}}}}"#, "*".repeat(50_000))
                .into_bytes(),
            true,
        ),
        (
            "unbalanced-bracket",
            format!(r#"{{"auths":{{"[a-.bracket.example.com":{entry},"reg[.bracket.example.com":{entry}}}}}"#)
                .into_bytes(),
            true,
        ),
        (
            "deep",
            // As deep as the apiserver's own JSON check lets through.
            format!(
                r#"{{"auths":{{"deep.example.com":{}{}}}}}"#,
                "[".repeat(9_000),
                "]".repeat(9_000)
            )
            .into_bytes(),
            false,
        ),
    ];
    let kubectl = s.kubectl_path();
    for (name, content, _) in &secrets {
        let file = s.work_path().join(format!("hostile-{name}"));
        std::fs::write(&file, content)?;
        let out = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(s.kubeconfig_path())
            .args(["create", "secret", "generic", name, "-n", &ns])
            .arg("--type=kubernetes.io/dockerconfigjson")
            .arg(format!("--from-file=.dockerconfigjson={}", file.display()))
            .output()?;
        std::fs::remove_file(&file)?;
        ensure!(
            out.status.success(),
            "creating secret {name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    s.wait_cache_synced()?;
    still_up(s, "caching the hostile secrets")?;

    // (pod, image, secrets the kubelet would use)
    let pods: [(&str, &str, &[&str]); 6] = [
        ("huge", "huge.example.com/app:1", &["huge"]),
        ("many", "r4999.many.example.com/app:1", &["thousands"]),
        ("bomb", "a.bomb.example.com/app:1", &["glob-bomb"]),
        ("bomb-single-label", "anything/app:1", &[]),
        ("dup", "dup.example.com/app:1", &["duplicate-keys"]),
        ("utf8", "utf8.example.com/app:1", &["invalid-utf8"]),
    ];
    for (pod, image, expected) in pods {
        let out = s.run_pod(&ns, pod, image, &[])?;
        let pod_json = s.pod(&ns, pod)?;
        let found = crate::harness::pull_secrets(&pod_json);
        ensure!(
            found == expected,
            "pod {pod} ({image}): imagePullSecrets {found:?}, expected {expected:?}"
        );
        let warnings = out.warnings();
        for (name, _, decodable) in &secrets {
            let named = warnings.iter().any(|w| w.contains(&format!("\"{name}\"")));
            ensure!(
                !named || !decodable,
                "pod {pod}: a warning names the decodable secret {name}: {warnings:?}"
            );
        }
        still_up(s, &format!("pod {pod}"))?;
    }
    // The two undecodable ones are reported on a pod whose registry they claim.
    let out = s.run_pod(&ns, "b64", "b64.example.com/app:1", &[])?;
    let warnings = out.warnings();
    ensure!(
        warnings.iter().any(|w| w.contains("\"bad-base64\"")),
        "no warning naming bad-base64: {warnings:?}"
    );
    let undecodable = metric(&s.metrics()?, "pullsecret_injector_undecodable_secrets");
    ensure!(
        undecodable.is_some_and(|n| n >= 2.0),
        "undecodable_secrets is {undecodable:?}"
    );
    Ok(Outcome::Passed)
}

// ---------------------------------------------------------------------------------------------

const RAW_IDLE: usize = 1500;
const TLS_IDLE: usize = 500;
const SLOW_HEADERS: usize = 100;
const SLOW_BODIES: usize = 100;
/// Good requests sent while the attack runs.
const GOOD_REQUESTS: usize = 1000;
/// Bounds on waits that only a fault leaves unfinished; not expectations of speed.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Thousands of idle connections, slowloris headers and bodies, and a stream of hostile
/// requests: every good request sent meanwhile is answered correctly (allowed, its uid echoed,
/// patched), the server stays up, and memory and descriptors stay bounded and come back. How
/// much the attack slows good requests is a measurement of the load benchmark (`make bench`,
/// BENCHMARKS.md), not an assertion here: timing on shared cores proves nothing.
fn idle_and_slow_clients(s: &Suite) -> Result<Outcome> {
    let ns = s.namespace("load", &[])?;
    s.registry_secret(&ns, "reg5000", "registry.example.com:5000")?;
    s.wait_cache_synced()?;
    let client = webhook_client(s)?;
    let (pid, _) = s.serve_pid_alive()?;
    let good = pod_review("uid-good", &ns, &[IMAGE]);
    good_requests(&client, &good, 10).context("good requests before the attack")?;
    let rss_before = rss_kib(pid)?;
    let fds_before = fd_count(pid)?;

    let attack = Attack::start(&client, &ns)?;
    let opened = attack.idle_connections();
    let fds_open = poll(
        "the server to accept the idle connections",
        HANG_GUARD,
        || {
            let fds = fd_count(pid)?;
            Ok((fds + 8 >= fds_before + opened).then_some(fds))
        },
    )
    .with_context(|| {
        format!(
            "{opened} connections open; server fds {fds_before} before, {:?} now",
            fd_count(pid).ok()
        )
    })?;
    let answered = good_requests(&client, &good, GOOD_REQUESTS);
    let rss_during = rss_kib(pid)?;
    let fds_during = fd_count(pid)?.max(fds_open);
    let hostile_sent = attack.stop()?;
    answered.context("a good request during the attack")?;
    still_up(s, "the attack")?;
    println!(
        "  {GOOD_REQUESTS} good requests answered during the attack ({hostile_sent} hostile \
         requests, {opened} idle/slow connections); VmRSS {} -> {} MiB; fds {fds_before} -> \
         {fds_during}",
        rss_before / 1024,
        rss_during / 1024,
    );
    ensure!(hostile_sent > 0, "the attack sent no hostile request");
    // Bounded: a few KiB per connection, never the bodies that were offered.
    ensure!(
        rss_during < rss_before + 200 * 1024,
        "VmRSS grew from {rss_before} to {rss_during} KiB"
    );
    ensure!(
        fds_during <= fds_before + opened + 64,
        "fds grew from {fds_before} to {fds_during} for {opened} connections"
    );
    // Resources come back once the clients go away.
    poll(
        "descriptors to return after the clients left",
        HANG_GUARD,
        || Ok((fd_count(pid)? <= fds_before + 16).then_some(())),
    )?;
    good_requests(&client, &good, 10).context("good requests after the attack")?;
    Ok(Outcome::Passed)
}

/// `count` sequential good requests on one keep-alive connection (as the apiserver sends
/// them), each answered allowed, with its uid and a patch.
fn good_requests(client: &WebhookClient, body: &[u8], count: usize) -> Result<()> {
    let mut stream = client.connect()?;
    for sent in 0..count {
        write_request(
            &mut stream,
            "POST",
            "/mutate",
            body,
            Some("application/json"),
            false,
        )?;
        let response = read_response(&mut stream)?;
        let answer = expect_allowed(&response, "uid-good")
            .with_context(|| format!("good request {} of {count}", sent + 1))?;
        ensure!(
            answer["patch"].is_string(),
            "good request {} of {count} not patched",
            sent + 1
        );
    }
    Ok(())
}

/// The attackers: idle connections (raw TCP and after TLS), trickled headers and bodies, and
/// one thread sending hostile requests on fresh connections. All stop by themselves after
/// [`ATTACK_LIMIT`] even if `stop` is never called.
struct Attack {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<Result<()>>>,
    hostile_sent: Arc<AtomicUsize>,
    idle: usize,
    _raw: Vec<TcpStream>,
    _tls: Vec<crate::client::TlsStream>,
}

const ATTACK_LIMIT: Duration = Duration::from_secs(120);

impl Attack {
    fn start(client: &WebhookClient, ns: &str) -> Result<Attack> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tls = Vec::with_capacity(TLS_IDLE);
        for _ in 0..TLS_IDLE {
            tls.push(client.connect()?);
        }
        let hostile_sent = Arc::new(AtomicUsize::new(0));
        let threads = vec![
            trickle(client, &stop, SLOW_HEADERS, TrickleKind::Headers)?,
            trickle(client, &stop, SLOW_BODIES, TrickleKind::Body)?,
            hostile_stream(client, ns, &stop, &hostile_sent),
        ];
        // Last, since the server drops connections that send no TLS handshake after 10 s.
        let mut raw = Vec::with_capacity(RAW_IDLE);
        for _ in 0..RAW_IDLE {
            raw.push(TcpStream::connect_timeout(
                &client.addr,
                Duration::from_secs(5),
            )?);
        }
        Ok(Attack {
            stop,
            threads,
            hostile_sent,
            idle: RAW_IDLE + TLS_IDLE + SLOW_HEADERS + SLOW_BODIES,
            _raw: raw,
            _tls: tls,
        })
    }

    fn idle_connections(&self) -> usize {
        self.idle
    }

    /// Stops the threads and closes every connection; the number of hostile requests sent.
    fn stop(mut self) -> Result<usize> {
        self.stop.store(true, Ordering::Release);
        for thread in std::mem::take(&mut self.threads) {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("an attack thread panicked"))??;
        }
        Ok(self.hostile_sent.load(Ordering::Acquire))
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

#[derive(Clone, Copy)]
enum TrickleKind {
    Headers,
    Body,
}

/// `count` connections that each send one byte every 100 ms: of the request head, or of a
/// body whose head promised 100000 bytes.
fn trickle(
    client: &WebhookClient,
    stop: &Arc<AtomicBool>,
    count: usize,
    kind: TrickleKind,
) -> Result<thread::JoinHandle<Result<()>>> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = client.connect()?;
        if let TrickleKind::Body = kind {
            stream.write_all(
                b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
            )?;
            stream.flush()?;
        }
        streams.push(stream);
    }
    let stop = Arc::clone(stop);
    Ok(thread::spawn(move || {
        let head = b"POST /mutate HTTP/1.1\r\nHost: slow\r\nX-Slow: ";
        let started = Instant::now();
        let mut round = 0usize;
        while !stop.load(Ordering::Acquire) && started.elapsed() < ATTACK_LIMIT {
            let byte = match kind {
                TrickleKind::Headers => [*head.get(round).unwrap_or(&b'a')],
                TrickleKind::Body => [b' '],
            };
            // Each connection sends a byte every 100 ms, spread over the round as independent
            // slow clients would be (pacing, not synchronisation). A connection the server
            // closed is simply dropped from the round.
            let pause =
                Duration::from_millis(100) / u32::try_from(streams.len().max(1)).unwrap_or(1);
            streams.retain_mut(|stream| {
                let open = stream.write_all(&byte).and_then(|_| stream.flush()).is_ok();
                thread::sleep(pause);
                open
            });
            round += 1;
        }
        Ok(())
    }))
}

/// Hostile requests on fresh TLS connections, paced at about 10 per second: a steady attack
/// whose client-side cost (handshakes, megabyte bodies) does not itself starve the 2 cores the
/// measured good requests share with it.
fn hostile_stream(
    client: &WebhookClient,
    ns: &str,
    stop: &Arc<AtomicBool>,
    sent: &Arc<AtomicUsize>,
) -> thread::JoinHandle<Result<()>> {
    let client = client.clone();
    let cheap: Vec<Case> = cases(ns)
        .into_iter()
        .filter(|case| !matches!(case.name, "5000 containers" | "the good request itself"))
        .collect();
    let stop = Arc::clone(stop);
    let sent = Arc::clone(sent);
    thread::spawn(move || {
        let started = Instant::now();
        let mut index = 0;
        while !stop.load(Ordering::Acquire) && started.elapsed() < ATTACK_LIMIT {
            let case = &cheap[index % cheap.len()];
            check_case(&client, case).with_context(|| format!("hostile case {:?}", case.name))?;
            sent.fetch_add(1, Ordering::AcqRel);
            index += 1;
            thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------

/// TLS 1.2/1.3 with AEAD/ECDHE suites only, and no plaintext HTTP on the webhook port.
fn tls_policy(s: &Suite) -> Result<Outcome> {
    let addr = s.webhook_addr()?;
    let ca = s.cert_path("ca.crt");
    let connect = addr.to_string();
    let s_client = |args: &[&str]| -> Result<(bool, String)> {
        let out = Command::new("openssl")
            .arg("s_client")
            .args(["-connect", &connect, "-CAfile"])
            .arg(&ca)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .context("cannot run openssl s_client")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A completed handshake prints the negotiated cipher.
        let negotiated = text.contains("Verify return code: 0")
            && !text.contains("Cipher is (NONE)")
            && !text.contains("Cipher    : 0000");
        Ok((negotiated, text))
    };
    // SECLEVEL=0 lets this OpenSSL offer the old protocols and suites at all, so a failure
    // is the server's refusal.
    let cases: &[(&str, &[&str], bool)] = &[
        ("TLS 1.3", &["-tls1_3"], true),
        (
            "TLS 1.2 ECDHE-ECDSA AES-GCM",
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
            true,
        ),
        (
            "TLS 1.2 ECDHE-ECDSA ChaCha20",
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"],
            true,
        ),
        (
            "TLS 1.1",
            &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
            false,
        ),
        (
            "TLS 1.0",
            &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"],
            false,
        ),
        (
            "TLS 1.2 CBC (non-AEAD)",
            &[
                "-tls1_2",
                "-cipher",
                "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA@SECLEVEL=0",
            ],
            false,
        ),
        (
            "TLS 1.2 static RSA key exchange",
            &[
                "-tls1_2",
                "-cipher",
                "AES128-GCM-SHA256:AES256-GCM-SHA384@SECLEVEL=0",
            ],
            false,
        ),
        (
            "TLS 1.2 3DES/RC4/NULL",
            &[
                "-tls1_2",
                "-cipher",
                "DES-CBC3-SHA:RC4-SHA:NULL-SHA256:eNULL@SECLEVEL=0",
            ],
            false,
        ),
    ];
    let mut report = Vec::new();
    for (name, args, should_work) in cases {
        let (negotiated, text) = s_client(args)?;
        ensure!(
            negotiated == *should_work,
            "{name}: handshake {} (expected {}): {}",
            if negotiated { "succeeded" } else { "failed" },
            if *should_work { "success" } else { "failure" },
            crate::harness::tail(&text, 6)
        );
        // Refused by the server (a TLS alert), not by this OpenSSL's own policy.
        ensure!(
            negotiated || text.contains("alert"),
            "{name}: failed without a TLS alert from the server: {}",
            crate::harness::tail(&text, 6)
        );
        report.push(format!(
            "{name}: {}",
            if negotiated { "ok" } else { "refused" }
        ));
    }
    println!("  {}", report.join("; "));

    // Plain HTTP on the webhook port gets no HTTP response.
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
    tcp.write_all(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")?;
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut tcp, &mut answer);
    ensure!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP response: {:?}",
        String::from_utf8_lossy(&answer)
    );
    still_up(s, "the TLS probes")?;
    Ok(Outcome::Passed)
}

// ---------------------------------------------------------------------------------------------

const MAX_BODY: usize = 3 * 1024 * 1024;
/// The chart's memory limit for the container (values.yaml `resources.limits.memory`).
const CHART_MEMORY_LIMIT_KIB: u64 = 256 * 1024;

fn body_metric(s: &Suite, series: &str) -> Result<usize> {
    let value = metric(&s.metrics()?, series).with_context(|| format!("no {series}"))?;
    Ok(value as usize)
}

/// The memory all request bodies may take at once is bounded: bodies that fill the budget are
/// all held and answered, one more is refused with 503 from its headers alone, a good review
/// still fits beside them, and the process stays within the chart's memory limit.
fn request_body_budget(s: &Suite) -> Result<Outcome> {
    let ns = s.namespace("body-budget", &[])?;
    s.registry_secret(&ns, "reg5000", "registry.example.com:5000")?;
    s.wait_cache_synced()?;
    let client = webhook_client(s)?;
    let (pid, _) = s.serve_pid_alive()?;
    let budget = body_metric(s, "pullsecret_injector_request_body_budget_bytes")?;
    ensure!(budget >= MAX_BODY, "budget of {budget} bytes");
    let in_flight = "pullsecret_injector_request_body_bytes_in_flight";
    let head = |length: usize| {
        format!(
            "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
    };

    // As many largest-size bodies as the budget takes, each sent but for its last byte.
    let mut held = Vec::new();
    for _ in 0..budget / MAX_BODY {
        let mut stream = client.connect()?;
        stream.write_all(head(MAX_BODY).as_bytes())?;
        stream.write_all(&vec![b' '; MAX_BODY - 1])?;
        stream.flush()?;
        held.push(stream);
    }
    let reserved = held.len() * MAX_BODY;
    poll(
        "the held bodies to be reserved",
        Duration::from_secs(30),
        || Ok((body_metric(s, in_flight)? == reserved).then_some(())),
    )?;
    let rss_held = rss_kib(pid)?;

    let mut extra = client.connect()?;
    extra.write_all(head(MAX_BODY).as_bytes())?;
    extra.flush()?;
    let refused = read_response(&mut extra).context("no answer to the headers alone")?;
    ensure!(
        refused.status == 503,
        "a body past the budget got {} ({:?})",
        refused.status,
        crate::client::clip(&refused.text())
    );
    let good = client.post_once(
        &pod_review("uid-budget", &ns, &[IMAGE]),
        Some("application/json"),
    )?;
    let answer = expect_allowed(&good, "uid-budget")?;
    ensure!(
        answer["patch"].is_string(),
        "the good review beside them was not patched"
    );

    let held_count = held.len();
    for mut stream in held {
        stream.write_all(b" ")?;
        stream.flush()?;
        let response = read_response(&mut stream).context("a held body")?;
        ensure!(
            response.status == 400,
            "a held body got {}",
            response.status
        );
    }
    poll(
        "the reserved bytes to come back",
        Duration::from_secs(30),
        || Ok((body_metric(s, in_flight)? == 0).then_some(())),
    )?;
    still_up(s, "a full body budget")?;
    ensure!(
        rss_held < CHART_MEMORY_LIMIT_KIB,
        "VmRSS {rss_held} KiB with the budget full, above the chart's limit"
    );
    println!(
        "  {held_count} bodies of 3 MiB held ({} MiB budget), one more refused with 503, a good \
         review patched beside them; VmRSS {} MiB with the budget full",
        budget / (1024 * 1024),
        rss_held / 1024
    );
    Ok(Outcome::Passed)
}

/// The admin port cuts request headers that never finish, and answers probes meanwhile.
fn admin_port_limits(s: &Suite) -> Result<Outcome> {
    let admin = s.admin_addr()?;
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect_timeout(&admin, Duration::from_secs(5))?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")?;
        slow.push(stream);
    }
    let (code, _) = http_get(admin, "/livez")?;
    ensure!(code == 200, "/livez answered {code} beside slow clients");
    for mut stream in slow {
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut response = Vec::new();
        std::io::Read::read_to_end(&mut stream, &mut response)
            .context("the admin port never closed a connection whose headers never finished")?;
        let text = String::from_utf8_lossy(&response);
        ensure!(
            !text.contains(" 200 "),
            "unfinished headers answered: {text:?}"
        );
    }
    still_up(s, "slow admin clients")?;
    Ok(Outcome::Passed)
}
