//! Credential provider plugins as the controller runs them, for the tests of real plugins: the
//! runner with one provider of an admin's CredentialProviderConfig, and the ClusterPullSecret
//! block naming it; and the vendor stand-ins (tests/vendors/standin.py) with the vendors' own
//! clients they are checked with.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pullsecret_injector::controller::credential_provider::{
    Plugins, ProviderEntry, ProviderSource, parse_config,
};
use pullsecret_injector::state::crd::CredentialProvider;

/// The controller's plugin runner with one provider (`name`, `matchImages`,
/// `defaultCacheDuration`, `args` and `env` as name/value pairs), plugins from `bin_dir`.
pub fn runner(
    bin_dir: &Path,
    name: &str,
    (match_images, default_cache_duration): (&[&str], &str),
    args: &[&str],
    env: &[(&str, &str)],
) -> Plugins {
    let env: Vec<serde_json::Value> = env
        .iter()
        .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
        .collect();
    let config = serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [{
            "name": name,
            "matchImages": match_images,
            "defaultCacheDuration": default_cache_duration,
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "args": args,
            "env": env,
        }],
    });
    let providers: Vec<ProviderEntry> = parse_config(&config.to_string()).unwrap();
    Plugins::new(
        Some(bin_dir.to_owned()),
        ProviderSource::Fixed(providers),
        Duration::from_secs(60),
    )
}

/// What a ClusterPullSecret says: the provider and the image, nothing more.
pub fn block(name: &str, image: &str) -> CredentialProvider {
    CredentialProvider {
        name: name.to_owned(),
        images: vec![image.to_owned()],
        match_images: None,
        default_cache_duration: None,
        api_version: None,
        args: None,
        env: None,
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The virtualenv holding the vendors' own clients (tests/vendors/install.sh, cached).
pub fn vendor_clients() -> Result<PathBuf, String> {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    VENV.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("tests/vendors/install.sh"))
            .output()
            .map_err(|e| format!("cannot run tests/vendors/install.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "tests/vendors/install.sh: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
    .clone()
}

/// How a stand-in is started: the vendor's API, the keys it accepts, the registry host its
/// logins are for, the tokens' lifetime (negative: already expired), and where its files go.
pub struct StandInOptions<'a> {
    pub vendor: &'a str,
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub registry: &'a str,
    pub lifetime_seconds: i64,
    /// The registry's htpasswd the issued password replaces (only login from then on).
    pub htpasswd: Option<&'a Path>,
    pub dir: &'a Path,
}

/// A running stand-in of a vendor's token API, stopped by its pid when dropped.
pub struct StandIn {
    child: Child,
    dir: PathBuf,
    pub endpoint: String,
}

impl StandIn {
    pub fn start(options: &StandInOptions) -> Result<StandIn, String> {
        let venv = vendor_clients()?;
        let port_file = options.dir.join("port");
        let mut command = Command::new(venv.join("bin/python"));
        command
            .arg(repo().join("tests/vendors/standin.py"))
            .arg(options.vendor)
            .args(["--access-key", options.access_key])
            .args(["--secret-key", options.secret_key])
            .args(["--registry", options.registry, "--username", "minted"])
            .arg("--lifetime")
            .arg(options.lifetime_seconds.to_string())
            .arg("--port-file")
            .arg(&port_file)
            .arg("--log")
            .arg(options.dir.join("issued.log"))
            .arg("--revoked")
            .arg(options.dir.join("revoked"))
            .stdout(Stdio::null());
        if let Some(htpasswd) = options.htpasswd {
            command.arg("--htpasswd").arg(htpasswd);
        }
        let log = std::fs::File::create(options.dir.join("standin.log"))
            .map_err(|e| format!("stand-in log: {e}"))?;
        let child = command
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start the stand-in: {e}"))?;
        let mut stand_in = StandIn {
            child,
            dir: options.dir.to_owned(),
            endpoint: String::new(),
        };
        // Until the stand-in has written its port (it listens before writing it).
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                break port;
            }
            if Instant::now() > deadline {
                return Err(format!("the {} stand-in did not listen", options.vendor));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        stand_in.endpoint = format!("http://127.0.0.1:{port}");
        Ok(stand_in)
    }

    /// What the stand-in issued, oldest first: (password, issuedAt, expiresAt).
    pub fn issued(&self) -> Vec<(String, u64, u64)> {
        std::fs::read_to_string(self.dir.join("issued.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|v| {
                (
                    v["password"].as_str().unwrap_or_default().to_owned(),
                    v["issuedAt"].as_u64().unwrap_or_default(),
                    v["expiresAt"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// From now on the keys are refused with the vendor's authentication error.
    pub fn revoke(&self) -> std::io::Result<()> {
        std::fs::write(self.dir.join("revoked"), "")
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
