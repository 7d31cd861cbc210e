//! Credential provider plugins driven by our runner, as the kubelet drives them: the request on
//! stdin, args and env, the response; and hostile plugins (hang, garbage, megabytes of output,
//! crash, missing, leftover processes) reported without a crash, a hang, a zombie or the token
//! in any message. What a plugin gets is the admin's configuration alone: a ClusterPullSecret
//! cannot add arguments or variables, and the server's own environment is not inherited.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use pullsecret_injector::controller::credential_provider::{
    MAX_STDOUT, PluginError, Plugins, Provider, ProviderSource, adopt_orphans, parse_config,
};
use pullsecret_injector::state::crd::{CredentialProvider, ExecEnvVar};

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
    Plugins::new(
        Some(dir.to_owned()),
        ProviderSource::Fixed(Vec::new()),
        timeout,
    )
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
    let error = Plugins::new(None, ProviderSource::Fixed(Vec::new()), GUARD)
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

/// A plugin that records its arguments and environment in `dir`, then answers.
fn recorder(dir: &Path) {
    script(
        dir,
        "recorder",
        &format!(
            "cat >/dev/null\nprintf '%s\\n' \"$@\" > '{args}'\nenv > '{env}'\necho '{answer}'",
            args = dir.join("args").display(),
            env = dir.join("env").display(),
            answer = response("u"),
        ),
    );
}

fn recorder_block(hostile: impl FnOnce(&mut CredentialProvider)) -> CredentialProvider {
    let mut block = CredentialProvider {
        name: "recorder".to_owned(),
        images: vec!["eu.registry.example/team/app:1".to_owned()],
        match_images: None,
        default_cache_duration: None,
        api_version: None,
        args: None,
        env: None,
    };
    hostile(&mut block);
    block
}

#[tokio::test]
async fn a_plugin_gets_the_admins_configuration_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    recorder(dir.path());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: recorder\n  matchImages: ['*.registry.example']\n  defaultCacheDuration: 1h\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  args: [get-credentials]\n  env: [{name: PLUGIN_REGION, value: eu-west-1}]\n",
    )
    .unwrap();
    // The server's own environment as a lookup: a workload-identity variable the admin passes
    // through, and variables nobody passes (they must not arrive).
    let server_env = |name: &str| match name {
        "AWS_ROLE_ARN" => Some("arn:aws:iam::123456789012:role/injector".to_owned()),
        _ => Some("from-the-server".to_owned()),
    };
    let plugins = Plugins::new(
        Some(dir.path().to_owned()),
        ProviderSource::File(config.clone()),
        GUARD,
    )
    .with_pass_env(&["AWS_ROLE_ARN".to_owned()], server_env)
    .unwrap();

    // Resources trying to change the run: none is run at all.
    let hostile: Vec<(&str, CredentialProvider)> = vec![
        (
            "BASH_ENV",
            recorder_block(|b| b.env = Some(vec![var("BASH_ENV", "$(id>/tmp/pwned)")])),
        ),
        (
            "LD_PRELOAD",
            recorder_block(|b| b.env = Some(vec![var("LD_PRELOAD", "/tmp/evil.so")])),
        ),
        (
            "PATH",
            recorder_block(|b| b.env = Some(vec![var("PATH", "/tmp/evil")])),
        ),
        (
            "AWS endpoint",
            recorder_block(|b| {
                b.env = Some(vec![
                    var(
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                        "http://attacker.example/",
                    ),
                    var(
                        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                        "/var/run/secrets/kubernetes.io/serviceaccount/token",
                    ),
                ])
            }),
        ),
        (
            "GCP metadata",
            recorder_block(|b| b.env = Some(vec![var("GCE_METADATA_HOST", "attacker.example")])),
        ),
        (
            "Azure identity",
            recorder_block(|b| {
                b.env = Some(vec![
                    var("IDENTITY_ENDPOINT", "http://attacker.example/"),
                    var("AZURE_FEDERATED_TOKEN_FILE", "/etc/shadow"),
                ])
            }),
        ),
        (
            "args",
            recorder_block(|b| b.args = Some(vec!["--exfiltrate".to_owned()])),
        ),
        (
            "matchImages",
            recorder_block(|b| b.match_images = Some(vec!["*".to_owned()])),
        ),
    ];
    for (what, block) in hostile {
        let error = plugins.resolve(&block).unwrap_err();
        assert_eq!(error.label(), "refused", "{what}: {error}");
        assert!(!dir.path().join("env").exists(), "{what}: the plugin ran");
    }

    // The admin's provider runs with its own args and env, the passed variable and a PATH.
    let provider = plugins.resolve(&recorder_block(|_| {})).unwrap();
    plugins
        .mint(&provider, &["eu.registry.example/team/app:1".to_owned()])
        .await
        .unwrap();
    let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
    assert_eq!(args, "get-credentials\n");
    let env = std::fs::read_to_string(dir.path().join("env")).unwrap();
    let names: std::collections::BTreeSet<&str> = env
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    assert!(env.contains("PLUGIN_REGION=eu-west-1\n"), "{env}");
    assert!(
        env.contains("AWS_ROLE_ARN=arn:aws:iam::123456789012:role/injector\n"),
        "{env}"
    );
    assert!(env.contains("PATH=/usr/local/sbin:"), "{env}");
    assert!(!env.contains("from-the-server"), "{env}");
    // Nothing of this test process's own environment (HOME, CARGO_*, ...) is inherited; the
    // shell itself adds only PWD (and SHLVL, _ on some shells).
    let own: Vec<String> = std::env::vars()
        .map(|(name, _)| name)
        .filter(|name| {
            names.contains(name.as_str()) && !["PATH", "PWD", "SHLVL", "_"].contains(&name.as_str())
        })
        .collect();
    assert!(own.is_empty(), "inherited from the server: {own:?}");
    let expected = ["AWS_ROLE_ARN", "PATH", "PLUGIN_REGION", "PWD", "SHLVL", "_"];
    assert!(
        names.iter().all(|name| expected.contains(name)),
        "{names:?}"
    );

    // A provider the file does not define is refused; one added to the file later is run
    // (the file is read at each run).
    std::fs::remove_file(dir.path().join("env")).unwrap();
    let mut other = recorder_block(|_| {});
    other.name = "later".to_owned();
    assert!(matches!(
        plugins.resolve(&other).unwrap_err(),
        PluginError::NotConfigured(_)
    ));
    std::fs::copy(dir.path().join("recorder"), dir.path().join("later")).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("- name: later\n  matchImages: ['*.registry.example']\n  defaultCacheDuration: 1h\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n");
    std::fs::write(&config, text).unwrap();
    let provider = plugins.resolve(&other).unwrap();
    assert!(provider.args.is_empty());
    assert!(parse_config(&std::fs::read_to_string(&config).unwrap()).is_ok());
}

fn var(name: &str, value: &str) -> ExecEnvVar {
    ExecEnvVar {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// Whether `pid` is gone entirely: not running, and not left as a zombie.
async fn reaped(pid: i32) -> bool {
    tokio::time::timeout(GUARD, async {
        while std::fs::metadata(format!("/proc/{pid}")).is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok()
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn what_a_plugin_leaves_behind_is_killed_and_reaped() {
    adopt_orphans().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("orphan.pid");
    // A grandchild in the background, orphaned when its parent exits: it becomes our child.
    script(
        dir.path(),
        "leaves-one",
        &format!(
            "cat >/dev/null\n( sleep 3600 >/dev/null 2>&1 & echo $! > '{}' )\necho '{}'",
            pid_file.display(),
            response("u")
        ),
    );
    run(&plugins(dir.path(), GUARD), "leaves-one")
        .await
        .unwrap();
    let orphan = read_pid(&pid_file);
    assert!(reaped(orphan).await, "process {orphan} outlived its plugin");
}

#[tokio::test]
async fn an_abandoned_run_takes_its_whole_group_with_it() {
    adopt_orphans().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    script(
        dir.path(),
        "slow",
        &format!("sleep 3600 &\necho $! > '{}'\nwait", pid_file.display()),
    );
    let plugins = plugins(dir.path(), GUARD);
    // The run is dropped midway, as when the leadership term ends.
    let run = tokio::spawn(async move { run(&plugins, "slow").await });
    tokio::time::timeout(GUARD, async {
        while !pid_file.exists()
            || std::fs::read_to_string(&pid_file)
                .unwrap()
                .trim()
                .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the plugin started its child");
    run.abort();
    let child = read_pid(&pid_file);
    assert!(
        reaped(child).await,
        "the plugin's child {child} survived the abandoned run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_the_configured_number_of_plugins_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("running");
    // A second plugin running while the first still does finds the lock and fails.
    script(
        dir.path(),
        "exclusive",
        &format!(
            "cat >/dev/null\nmkdir '{lock}' 2>/dev/null || exit 5\nsleep 0.3\nrmdir '{lock}'\necho '{}'",
            response("u"),
            lock = lock.display()
        ),
    );
    let plugins = std::sync::Arc::new(plugins(dir.path(), GUARD).with_max_concurrent(1));
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let plugins = std::sync::Arc::clone(&plugins);
            tokio::spawn(async move { run(&plugins, "exclusive").await })
        })
        .collect();
    for run in runs {
        run.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_plugin_is_first_in_line_for_the_oom_killer_and_zero_lifetimes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "score",
        &format!(
            "cat >/dev/null\nscore=$(cat /proc/self/oom_score_adj)\necho '{}' | sed \"s/SCORE/$score/\"",
            response("SCORE")
        ),
    );
    script(
        dir.path(),
        "uncacheable",
        &format!(
            "cat >/dev/null\necho '{}' | sed 's/\"90s\"/\"0s\"/'",
            response("u")
        ),
    );
    let plugins = plugins(dir.path(), GUARD);
    let answer = plugins
        .run(&provider("score"), "eu.registry.example/team/app:1")
        .await
        .unwrap();
    assert_eq!(answer.auth["*.registry.example"].username, "1000");
    let error = plugins
        .mint(
            &provider("uncacheable"),
            &["eu.registry.example/team/app:1".to_owned()],
        )
        .await
        .unwrap_err();
    assert_eq!(error, PluginError::NotCacheable);
    assert_eq!(error.label(), "not_cacheable");
}
