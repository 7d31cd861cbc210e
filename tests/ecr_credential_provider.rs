//! The real `ecr-credential-provider` (k8s.io/cloud-provider-aws, built from the Go module proxy
//! by tests/controlplane/build-ecr-provider.sh and cached in ~/.cache/pullsecret-injector/;
//! the first run needs Go and the proxy) driven by our plugin runner, as a ClusterPullSecret's
//! provider would be: without AWS credentials it fails with its own clear error; with static
//! (fake) keys and `AWS_ENDPOINT_URL_ECR` pointing at a stand-in for ECR's
//! `GetAuthorizationToken` on 127.0.0.1, it answers with a real `CredentialProviderResponse`
//! that we turn into a dockerconfigjson.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use pullsecret_injector::controller::credential_provider::Plugins;
use pullsecret_injector::state::crd::CredentialProvider;

mod support;

const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1";
const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const PASSWORD: &str = "ecr-standin-PASSWORD-0123456789";

/// The directory holding the built `ecr-credential-provider`.
fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/controlplane/build-ecr-provider.sh");
        let out = Command::new("bash")
            .arg(script)
            .output()
            .expect("runs build-ecr-provider.sh");
        assert!(
            out.status.success(),
            "build-ecr-provider.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        path.parent().expect("a directory").to_owned()
    })
    .clone()
}

/// The provider as a node's CredentialProviderConfig would have it (the file format), its
/// `env` the admin's: nothing of this machine's AWS setup may leak in (no shared files, no
/// instance metadata), and the plugin inherits nothing else.
fn plugins(env: &[(&str, &str)]) -> Plugins {
    let mut vars = vec![
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
    ];
    vars.extend_from_slice(env);
    support::plugins::runner(
        &bin_dir(),
        "ecr-credential-provider",
        (
            &["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn"],
            "12h",
        ),
        &["get-credentials"],
        &vars,
    )
}

/// What a ClusterPullSecret says: the provider and the image, nothing more.
fn block() -> CredentialProvider {
    support::plugins::block("ecr-credential-provider", IMAGE)
}

/// The ECR stand-in (tests/support/ecr.rs) answering with a token for [`PASSWORD`].
fn ecr_stand_in() -> (String, std::sync::mpsc::Receiver<String>) {
    support::ecr::start(REGISTRY, PASSWORD).expect("the ECR stand-in listens")
}

#[tokio::test]
async fn without_aws_credentials_the_plugin_fails_clearly() {
    let plugins = plugins(&[]);
    let provider = plugins.resolve(&block()).unwrap();
    let error = plugins
        .mint(&provider, &[IMAGE.to_owned()])
        .await
        .unwrap_err();
    assert_eq!(error.label(), "exit", "{error}");
    let shown = error.to_string();
    assert!(shown.contains("code 1"), "{shown}");
    assert!(shown.contains("no EC2 IMDS role found"), "{shown}");
}

#[tokio::test]
async fn with_a_token_endpoint_it_mints_a_registry_credential() {
    let (url, targets) = ecr_stand_in();
    let plugins = plugins(&[
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("AWS_ENDPOINT_URL_ECR", &url),
    ]);
    let provider = plugins.resolve(&block()).unwrap();
    assert_eq!(provider.args, ["get-credentials"]);
    let minted = plugins.mint(&provider, &[IMAGE.to_owned()]).await.unwrap();
    assert_eq!(
        targets.recv_timeout(Duration::from_secs(5)).unwrap(),
        "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
    );
    assert_eq!(minted.cache_key_type, "Registry");
    // The plugin's own cacheDuration (half the token's remaining 12 h) wins over the default.
    assert_eq!(minted.lifetime, Some(Duration::from_secs(21_600)));
    let auth = &minted.auths[REGISTRY];
    assert_eq!(
        (auth.username.as_str(), auth.password.as_str()),
        ("AWS", PASSWORD)
    );
    let config: serde_json::Value = serde_json::from_slice(&minted.docker_config_json()).unwrap();
    assert_eq!(
        config["auths"][REGISTRY]["auth"],
        BASE64.encode(format!("AWS:{PASSWORD}"))
    );
    // The kubelet's matching: the credential's key serves the image's registry.
    let keyring = pullsecret_injector::kubelet::keyring::match_key(REGISTRY, IMAGE);
    assert_eq!(
        keyring,
        pullsecret_injector::kubelet::keyring::KeyMatch::Matched
    );
}
