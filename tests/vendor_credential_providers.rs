//! The vendor plugins (credential-providers/) against local stand-ins of JD Cloud's and Huawei
//! Cloud's token APIs (tests/vendors/standin.py) that check every signature with the vendor's
//! own signer code and answer what the vendor's packages document. The vendors' own clients
//! (JD Cloud's `jdc` CLI, Huawei Cloud's Python SDK; tests/vendors/install.sh puts them in a
//! cache from PyPI) are run against the same stand-ins, so the stand-ins answer what the real
//! clients read. The plugins are driven by the controller's own plugin runner, as a
//! ClusterPullSecret's provider would be.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use pullsecret_injector::controller::credential_provider::Plugins;
use pullsecret_injector::state::crd::CredentialProvider;
use serde_json::Value;
use support::plugins::{StandIn, StandInOptions};

mod support;

const ACCESS_KEY: &str = "AKSTANDIN0123456789";
const SECRET_KEY: &str = "SKstandinSecretValue0123456789abcdef";
const REGISTRY: &str = "127.0.0.1:5999";
const IMAGE: &str = "127.0.0.1:5999/team/app:1";
const JCR: &str = "jdcloud-jcr-credential-provider";
const SWR: &str = "huaweicloud-swr-credential-provider";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vendor_clients() -> PathBuf {
    support::plugins::vendor_clients().unwrap()
}

/// The directory of the built plugins (`serve`'s --image-credential-provider-bin-dir).
fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_jdcloud-jcr-credential-provider"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A stand-in of `vendor`'s API in a directory of its own (removed after it).
struct Running {
    stand_in: StandIn,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Running {
    type Target = StandIn;
    fn deref(&self) -> &StandIn {
        &self.stand_in
    }
}

fn start_stand_in(vendor: &str, lifetime_seconds: i64) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let stand_in = StandIn::start(&StandInOptions {
        vendor,
        access_key: ACCESS_KEY,
        secret_key: SECRET_KEY,
        registry: REGISTRY,
        lifetime_seconds,
        htpasswd: None,
        dir: dir.path(),
    })
    .unwrap();
    Running {
        stand_in,
        _dir: dir,
    }
}

/// The runner of the controller with one provider as an admin's CredentialProviderConfig has
/// it: the plugin's arguments and its keys in `env`.
fn runner(name: &str, args: &[&str], env: &[(&str, &str)]) -> Plugins {
    support::plugins::runner(&plugin_dir(), name, (&[REGISTRY], "11h"), args, env)
}

fn block(name: &str) -> CredentialProvider {
    support::plugins::block(name, IMAGE)
}

fn jcr_keys() -> Vec<(&'static str, &'static str)> {
    vec![
        ("JDCLOUD_ACCESS_KEY", ACCESS_KEY),
        ("JDCLOUD_SECRET_KEY", SECRET_KEY),
    ]
}

fn swr_keys() -> Vec<(&'static str, &'static str)> {
    vec![
        ("HUAWEICLOUD_SDK_AK", ACCESS_KEY),
        ("HUAWEICLOUD_SDK_SK", SECRET_KEY),
        (
            "HUAWEICLOUD_SDK_PROJECT_ID",
            "0123456789abcdef0123456789abcdef",
        ),
    ]
}

fn jcr_args(endpoint: &str) -> Vec<String> {
    [
        "--registry-name",
        "myregistry",
        "--region-id",
        "cn-north-1",
        "--endpoint",
        endpoint,
    ]
    .map(String::from)
    .to_vec()
}

/// A plugin, its arguments and its environment.
type PluginRun = (&'static str, Vec<String>, Vec<(&'static str, &'static str)>);

/// Each plugin with its arguments and keys for an API at `endpoint`.
fn both_plugins(endpoint: &str) -> [PluginRun; 2] {
    [
        (JCR, jcr_args(endpoint), jcr_keys()),
        (
            SWR,
            vec!["--endpoint".to_owned(), endpoint.to_owned()],
            swr_keys(),
        ),
    ]
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Runs a plugin directly: (exit code, stdout, stderr).
fn run_plugin(name: &str, args: &[String], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut child = Command::new(plugin_dir().join(name))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!(r#"{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"{IMAGE}"}}"#).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_real_jdc_cli_reads_the_jcr_stand_in() {
    let stand_in = start_stand_in("jdcloud", 3600);
    let home = tempfile::tempdir().unwrap();
    let jdc = |args: &[&str]| {
        let out = Command::new(vendor_clients().join("bin/jdc"))
            .args(args)
            .env("HOME", home.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "jdc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let authority = stand_in.endpoint.trim_start_matches("http://");
    jdc(&[
        "configure",
        "add",
        "--profile",
        "standin",
        "--access-key",
        ACCESS_KEY,
        "--secret-key",
        SECRET_KEY,
        "--region-id",
        "cn-north-1",
        "--endpoint",
        authority,
        "--scheme",
        "http",
    ]);
    let out = jdc(&[
        "--output",
        "json",
        "containerregistry",
        "get-authorization-token",
        "--registry-name",
        "myregistry",
    ]);
    // jdc prints the SDK's signing log before its JSON answer.
    let answer: Value =
        serde_json::from_str(&out[out.find("\n{").map_or(0, |i| i + 1)..]).expect("jdc's JSON");
    let issued = stand_in.issued();
    assert_eq!(issued.len(), 1, "{out}");
    let result = &answer["result"];
    assert_eq!(
        result["authorizationToken"],
        BASE64.encode(format!("minted:{}", issued[0].0)),
        "{answer}"
    );
    assert_eq!(result["expiresAt"].as_u64(), Some(issued[0].2));
    assert!(
        result["loginCmdLine"]
            .as_str()
            .unwrap()
            .starts_with("docker login -u minted")
    );
    assert!(answer["error"].is_null(), "{answer}");
}

#[test]
fn the_real_huawei_cloud_sdk_reads_the_swr_stand_in() {
    let stand_in = start_stand_in("huaweicloud", 3600);
    let out = Command::new(vendor_clients().join("bin/python"))
        .arg(repo().join("tests/vendors/swr_client.py"))
        .arg(&stand_in.endpoint)
        .envs(swr_keys())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let issued = stand_in.issued();
    assert_eq!(
        answer["auths"][REGISTRY],
        BASE64.encode(format!("minted:{}", issued[0].0))
    );
    let expire = answer["expireAt"].as_str().unwrap();
    assert!(expire.ends_with('Z') && expire.contains('T'), "{expire}");
}

#[tokio::test]
async fn the_jcr_plugin_mints_a_login_that_expires_before_the_token() {
    let stand_in = start_stand_in("jdcloud", 3600);
    let args = jcr_args(&stand_in.endpoint);
    let plugins = runner(
        JCR,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &jcr_keys(),
    );
    let provider = plugins.resolve(&block(JCR)).unwrap();
    let minted = plugins.mint(&provider, &[IMAGE.to_owned()]).await.unwrap();
    let issued = stand_in.issued();
    assert_eq!(issued.len(), 1);
    let login = &minted.auths[REGISTRY];
    assert_eq!(
        (login.username.as_str(), login.password.as_str()),
        ("minted", issued[0].0.as_str())
    );
    assert_eq!(minted.cache_key_type, "Registry");
    // expiresAt less the default margin of ten minutes (a fifth of an hour is more).
    let lifetime = minted.lifetime.expect("a cacheDuration").as_secs();
    assert!(
        (2995..=3000).contains(&lifetime),
        "cacheDuration {lifetime}s"
    );
    assert!(
        now() + lifetime < issued[0].2,
        "refreshed after the vendor's expiry"
    );
}

#[test]
fn the_jcr_plugin_takes_the_endpoint_as_jdc_configure_does() {
    let stand_in = start_stand_in("jdcloud", 3600);
    let host = stand_in.endpoint.trim_start_matches("http://").to_owned();
    let args: Vec<String> = [
        "--registry-name",
        "myregistry",
        "--region-id",
        "cn-north-1",
        "--endpoint",
        &host,
        "--scheme",
        "http",
    ]
    .map(String::from)
    .to_vec();
    let (code, stdout, stderr) = run_plugin(JCR, &args, &jcr_keys());
    assert_eq!(code, 0, "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        answer["auth"][REGISTRY]["password"],
        stand_in.issued()[0].0.as_str()
    );
    // A URL and a scheme at once is a mistake, not a guess.
    let mut both = jcr_args(&stand_in.endpoint);
    both.extend(["--scheme".to_owned(), "http".to_owned()]);
    let (code, _, stderr) = run_plugin(JCR, &both, &jcr_keys());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--scheme http with --endpoint"), "{stderr}");
}

#[tokio::test]
async fn the_swr_plugin_mints_a_login_that_expires_before_the_token() {
    let stand_in = start_stand_in("huaweicloud", 60);
    let plugins = runner(
        SWR,
        &[
            "--endpoint",
            &stand_in.endpoint,
            "--projectname",
            "cn-north-4",
        ],
        &swr_keys(),
    );
    let provider = plugins.resolve(&block(SWR)).unwrap();
    let minted = plugins.mint(&provider, &[IMAGE.to_owned()]).await.unwrap();
    let issued = stand_in.issued();
    let login = &minted.auths[REGISTRY];
    assert_eq!(
        (login.username.as_str(), login.password.as_str()),
        ("minted", issued[0].0.as_str())
    );
    // A one-minute token keeps a fifth of its life as margin.
    let lifetime = minted.lifetime.expect("a cacheDuration").as_secs();
    assert!((45..=48).contains(&lifetime), "cacheDuration {lifetime}s");
}

#[tokio::test]
async fn revoked_keys_are_reported_with_the_vendors_error_and_never_the_keys() {
    for (name, vendor, args, keys, vendor_error) in [
        (JCR, "jdcloud", None, jcr_keys(), "UNAUTHENTICATED"),
        (
            SWR,
            "huaweicloud",
            Some("--endpoint"),
            swr_keys(),
            "APIGW.0301",
        ),
    ] {
        let stand_in = start_stand_in(vendor, 3600);
        stand_in.revoke().unwrap();
        let args: Vec<String> = match args {
            None => jcr_args(&stand_in.endpoint),
            Some(flag) => vec![flag.to_owned(), stand_in.endpoint.clone()],
        };
        let plugins = runner(
            name,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &keys,
        );
        let provider = plugins.resolve(&block(name)).unwrap();
        let error = plugins
            .mint(&provider, &[IMAGE.to_owned()])
            .await
            .unwrap_err();
        let shown = error.to_string();
        assert_eq!(error.label(), "exit", "{shown}");
        assert!(
            shown.contains("code 4") && shown.contains("HTTP 401"),
            "{shown}"
        );
        assert!(
            shown.contains(vendor_error) && shown.contains("The access key is disabled"),
            "{shown}"
        );
        assert!(!shown.contains(SECRET_KEY), "{shown}");
        assert!(stand_in.issued().is_empty());
    }
}

#[test]
fn a_wrong_secret_key_fails_the_vendors_own_signature_check() {
    for (name, vendor, secret_var) in [
        (JCR, "jdcloud", "JDCLOUD_SECRET_KEY"),
        (SWR, "huaweicloud", "HUAWEICLOUD_SDK_SK"),
    ] {
        let stand_in = start_stand_in(vendor, 3600);
        let mut keys = if name == JCR { jcr_keys() } else { swr_keys() };
        keys.retain(|(n, _)| *n != secret_var);
        keys.push((secret_var, "not-the-secret-key-at-all"));
        let args = if name == JCR {
            jcr_args(&stand_in.endpoint)
        } else {
            vec!["--endpoint".into(), stand_in.endpoint.clone()]
        };
        let (code, stdout, stderr) = run_plugin(name, &args, &keys);
        assert_eq!(code, 4, "{stderr}");
        assert!(stdout.is_empty());
        assert!(stderr.contains("signature mismatch"), "{stderr}");
        assert!(!stderr.contains("not-the-secret-key-at-all"), "{stderr}");
    }
}

/// A plugin, its arguments and environment, and what its error must say.
type ConfigCase = (
    &'static str,
    Vec<String>,
    Vec<(&'static str, &'static str)>,
    &'static str,
);

#[test]
fn configuration_errors_exit_2_and_say_what_to_set() {
    let endpoint = "http://127.0.0.1:9".to_owned();
    let cases: Vec<ConfigCase> = vec![
        (
            JCR,
            jcr_args(&endpoint),
            vec![("JDCLOUD_ACCESS_KEY", ACCESS_KEY)],
            "JDCLOUD_SECRET_KEY is not set",
        ),
        (
            JCR,
            vec!["--endpoint".into(), endpoint.clone()],
            jcr_keys(),
            "give --registry-name and --region-id",
        ),
        (
            JCR,
            vec!["--registry".into(), "x".into()],
            jcr_keys(),
            "unknown argument \"--registry\"",
        ),
        (
            JCR,
            [
                jcr_args(&endpoint),
                vec!["--expired-after-hours".into(), "48".into()],
            ]
            .concat(),
            jcr_keys(),
            "is not 1 to 24",
        ),
        (SWR, vec![], swr_keys(), "give --region"),
        (
            SWR,
            vec!["--region".into(), "cn-north-4".into()],
            vec![("HUAWEICLOUD_SDK_SK", SECRET_KEY)],
            "HUAWEICLOUD_SDK_AK is not set",
        ),
        (
            SWR,
            vec!["--endpoint".into(), "ftp://x".into()],
            swr_keys(),
            "is not http or https",
        ),
    ];
    for (name, args, env, expected) in cases {
        let (code, stdout, stderr) = run_plugin(name, &args, &env);
        assert_eq!(code, 2, "{name} {args:?}: {stderr}");
        assert!(stdout.is_empty());
        assert!(stderr.contains(expected), "{name} {args:?}: {stderr}");
        assert!(!stderr.contains(SECRET_KEY));
    }
}

#[test]
fn an_unreachable_api_exits_3() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    for (name, args, keys) in both_plugins(&endpoint) {
        let (code, _, stderr) = run_plugin(name, &args, &keys);
        assert_eq!(code, 3, "{stderr}");
        assert!(stderr.contains("unreachable"), "{stderr}");
    }
}

#[test]
fn an_unreadable_or_expired_answer_exits_5() {
    // A server that answers 200 with a body no SDK would read.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().take(2) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nnot json",
            );
        }
    });
    for (name, args, keys) in both_plugins(&endpoint) {
        let (code, _, stderr) = run_plugin(name, &args, &keys);
        assert_eq!(code, 5, "{stderr}");
    }
    // A token the vendor says expired ten seconds ago is not passed on.
    let stand_in = start_stand_in("jdcloud", -10);
    let (code, stdout, stderr) = run_plugin(JCR, &jcr_args(&stand_in.endpoint), &jcr_keys());
    assert_eq!(code, 5, "{stderr}");
    assert!(
        stdout.is_empty() && stderr.contains("already expired"),
        "{stderr}"
    );
}
