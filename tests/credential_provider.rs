//! Credential provider plugins driven by our runner, as the kubelet drives them: the request on
//! stdin, args and env, the response; and hostile plugins (hang, garbage, megabytes of output,
//! crash, missing) reported without a crash, a hang or the token in any message.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use pullsecret_injector::controller::credential_provider::{
    MAX_STDOUT, PluginError, Plugins, Provider,
};

const TOKEN: &str = "tok3n-VALUE-never-shown-0123456789abcdef";
const V1: &str = "credentialprovider.kubelet.k8s.io/v1";
/// A bound against hangs of the test itself, not a timing check.
const GUARD: Duration = Duration::from_secs(60);

fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn provider(name: &str) -> Provider {
    Provider {
        name: name.to_owned(),
        match_images: vec!["*.registry.example".to_owned()],
        default_cache_duration: Duration::from_secs(600),
        api_version: V1.to_owned(),
        args: vec!["get-credentials".to_owned()],
        env: vec![("PLUGIN_USER".to_owned(), "robot".to_owned())],
    }
}

fn response(user: &str) -> String {
    format!(
        r#"{{"apiVersion":"{V1}","kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"90s","auth":{{"*.registry.example":{{"username":"{user}","password":"{TOKEN}"}}}}}}"#
    )
}

fn plugins(dir: &Path, timeout: Duration) -> Plugins {
    Plugins::new(Some(dir.to_owned()), Vec::new(), timeout)
}

async fn run(plugins: &Plugins, name: &str) -> Result<(), PluginError> {
    tokio::time::timeout(
        GUARD,
        plugins.run(&provider(name), "eu.registry.example/team/app:1"),
    )
    .await
    .expect("the runner returned")
    .map(|_| ())
}

fn assert_no_token(error: &PluginError) {
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(!shown.contains("tok3n"), "{shown}");
}

#[tokio::test]
async fn the_request_args_and_env_reach_the_plugin_and_the_answer_is_read() {
    let dir = tempfile::tempdir().unwrap();
    // The plugin checks what it got and answers with it in the username.
    script(
        dir.path(),
        "good",
        &format!(
            r#"request=$(cat)
case "$request" in
  *'"kind":"CredentialProviderRequest"'*'"image":"eu.registry.example/team/app:1"'*) ;;
  *) echo "unexpected request: $request" >&2; exit 9 ;;
esac
[ "$1" = get-credentials ] || exit 8
cat <<EOF
{}
EOF"#,
            response("$PLUGIN_USER")
        ),
    );
    let plugins = plugins(dir.path(), Duration::from_secs(30));
    let answer = plugins
        .run(&provider("good"), "eu.registry.example/team/app:1")
        .await
        .unwrap();
    assert_eq!(answer.cache_key_type, "Registry");
    assert_eq!(answer.cache_duration, Some(Duration::from_secs(90)));
    let auth = &answer.auth["*.registry.example"];
    assert_eq!(
        (auth.username.as_str(), auth.password.as_str()),
        ("robot", TOKEN)
    );

    let minted = plugins
        .mint(
            &provider("good"),
            &["eu.registry.example/team/app:1".to_owned()],
        )
        .await
        .unwrap();
    assert_eq!(minted.lifetime, Some(Duration::from_secs(90)));
    let config: serde_json::Value = serde_json::from_slice(&minted.docker_config_json()).unwrap();
    assert_eq!(config["auths"]["*.registry.example"]["password"], TOKEN);

    // An image the provider does not serve is never sent to it.
    let error = plugins
        .mint(&provider("good"), &["docker.io/library/app".to_owned()])
        .await
        .unwrap_err();
    assert_eq!(error.label(), "config");
}

#[tokio::test]
async fn a_hanging_plugin_is_killed_with_everything_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    // A child in the background holding stdout open, then the plugin itself never ends.
    script(
        dir.path(),
        "hang",
        &format!(
            "sleep 3600 &\necho $! > {}\necho '{TOKEN}' >&2\nsleep 3600",
            pid_file.display()
        ),
    );
    let error = run(&plugins(dir.path(), Duration::from_secs(2)), "hang")
        .await
        .unwrap_err();
    assert_eq!(error.label(), "timeout", "{error}");
    assert_no_token(&error);
    let child: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The background child was in the plugin's process group: killed too (reaped by init, so
    // its /proc entry goes; polled with a bound).
    let gone = tokio::time::timeout(GUARD, async {
        loop {
            let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting for its parent (init) to reap it.
            if state.is_empty() || state.split_whitespace().nth(2) == Some("Z") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "the plugin's background child {child} survived"
    );
}

#[tokio::test]
async fn a_plugin_that_never_reads_stdin_nor_exits_times_out() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "deaf", "exec sleep 3600");
    let error = run(&plugins(dir.path(), Duration::from_secs(1)), "deaf")
        .await
        .unwrap_err();
    assert!(matches!(error, PluginError::Timeout(_)), "{error}");
}

#[tokio::test]
async fn garbage_is_reported_by_position_without_quoting_it() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "garbage", &format!("echo 'hello {TOKEN}'"));
    script(
        dir.path(),
        "wrong-types",
        &format!(
            r#"echo '{{"apiVersion":"{V1}","kind":"CredentialProviderResponse","cacheKeyType":"Image","auth":"{TOKEN}"}}'"#
        ),
    );
    script(
        dir.path(),
        "wrong-version",
        &format!(
            r#"echo '{{"apiVersion":"{TOKEN}","kind":"CredentialProviderResponse","cacheKeyType":"Image","auth":{{"r":{{"username":"u","password":"p"}}}}}}'"#
        ),
    );
    let plugins = plugins(dir.path(), Duration::from_secs(30));
    for name in ["garbage", "wrong-types", "wrong-version"] {
        let error = run(&plugins, name).await.unwrap_err();
        assert_eq!(error.label(), "invalid_response", "{name}: {error}");
        assert_no_token(&error);
    }
}

#[tokio::test]
async fn megabytes_of_output_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    // Endless output: only a bounded read and a kill end it.
    script(
        dir.path(),
        "endless",
        &format!("while :; do echo '{TOKEN}'; done"),
    );
    script(dir.path(), "huge", "head -c 8000000 /dev/zero");
    // Megabytes on stderr and a failure: the excerpt stays short.
    script(
        dir.path(),
        "loud",
        &format!(
            "i=0; while [ $i -lt 50000 ]; do echo 'boom {TOKEN}' >&2; i=$((i+1)); done; exit 2"
        ),
    );
    let plugins = plugins(dir.path(), Duration::from_secs(30));
    for name in ["endless", "huge"] {
        let error = run(&plugins, name).await.unwrap_err();
        assert_eq!(error, PluginError::OutputTooLarge, "{name}");
        assert!(error.to_string().contains(&MAX_STDOUT.to_string()));
    }
    let error = run(&plugins, "loud").await.unwrap_err();
    let PluginError::Exit { code, stderr } = &error else {
        panic!("{error}");
    };
    assert_eq!(*code, Some(2));
    assert!(stderr.len() < 1000, "{}", stderr.len());
    assert!(stderr.ends_with("boom [redacted]"), "{stderr}");
    assert_no_token(&error);
}

#[tokio::test]
async fn crashes_and_missing_plugins_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "crash",
        &format!("echo 'no EC2 IMDS role found; key {TOKEN}' >&2; exit 3"),
    );
    script(dir.path(), "killed", "kill -9 $$");
    std::fs::write(dir.path().join("not-executable"), "#!/bin/sh\n").unwrap();
    std::fs::create_dir(dir.path().join("a-directory")).unwrap();
    let plugins = plugins(dir.path(), Duration::from_secs(30));

    let error = run(&plugins, "crash").await.unwrap_err();
    assert_eq!(error.label(), "exit");
    let shown = error.to_string();
    assert!(shown.contains("code 3"), "{shown}");
    assert!(shown.contains("no EC2 IMDS role found"), "{shown}");
    assert_no_token(&error);

    let error = run(&plugins, "killed").await.unwrap_err();
    assert!(error.to_string().contains("a signal"), "{error}");

    for name in ["absent", "a-directory", "not-executable"] {
        let error = run(&plugins, name).await.unwrap_err();
        assert_eq!(error.label(), "not_found", "{name}: {error}");
    }
    // Names are file names inside the directory, never paths.
    for name in ["../crash", "/bin/sh", ".."] {
        let error = run(&plugins, name).await.unwrap_err();
        assert_eq!(error.label(), "config", "{name}: {error}");
    }
    // No directory configured at all.
    let error = Plugins::new(None, Vec::new(), GUARD)
        .run(&provider("crash"), "eu.registry.example/app")
        .await
        .unwrap_err();
    assert_eq!(error, PluginError::NoBinDir);
}

/// One plugin hanging does not hold up another running beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_plugin_does_not_block_others() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "hang", "sleep 3600");
    script(
        dir.path(),
        "good",
        &format!("cat >/dev/null; echo '{}'", response("u")),
    );
    let plugins = std::sync::Arc::new(plugins(dir.path(), Duration::from_secs(20)));
    let hanging = {
        let plugins = std::sync::Arc::clone(&plugins);
        tokio::spawn(async move { run(&plugins, "hang").await })
    };
    // Finishes while the other is still running.
    run(&plugins, "good").await.unwrap();
    assert!(!hanging.is_finished());
    assert_eq!(hanging.await.unwrap().unwrap_err().label(), "timeout");
}
