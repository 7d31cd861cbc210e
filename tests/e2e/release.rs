//! The release path on the node: `hack/release.sh` run against an authenticated registry on
//! 127.0.0.1, twice (a release candidate, then this version), from a committed copy of the
//! work tree; then `helm install oci://.../charts/pullsecret-injector --version RC` with no chart
//! path and no image values, an upgrade to this version while pods are created, the image's
//! signature and SBOM checked with cosign, and the script's refusals of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::harness::{Suite, expect_secrets, poll, repo_root, tail, wait_running};
use crate::incluster::{Load, RESTRICTED, Release, expect_restricted_enforced};
use crate::node::Registry;
use crate::scenarios::Outcome;

const NAME: &str = "pullsecret-injector";

/// A built tool of tests/controlplane/build-tool.sh.
pub fn tool(name: &str) -> Result<PathBuf> {
    let out = Command::new("bash")
        .arg(repo_root().join("tests/controlplane/build-tool.sh"))
        .arg(name)
        .output()
        .context("cannot run build-tool.sh")?;
    ensure!(
        out.status.success(),
        "build-tool.sh {name} failed: {}",
        tail(&String::from_utf8_lossy(&out.stderr), 10)
    );
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn run(command: &mut Command, what: &str) -> Result<Output> {
    command
        .output()
        .with_context(|| format!("cannot run {what}"))
}

fn check(out: &Output, what: &str) -> Result<String> {
    ensure!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        tail(&String::from_utf8_lossy(&out.stderr), 12)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A committed copy of the work tree (tracked and new files, as they are now), where versions
/// are bumped and committed as a maintainer would.
struct Source {
    dir: PathBuf,
}

impl Source {
    fn new(dir: PathBuf) -> Result<Source> {
        let root = repo_root();
        std::fs::create_dir_all(&dir)?;
        let copy = "git -C \"$1\" ls-files -z -c -o --exclude-standard | \
             (cd \"$1\" && tar --null -T - -cf - 2>/dev/null) | tar -C \"$2\" -xf -";
        check(
            &run(
                Command::new("bash")
                    .args(["-c", copy, "copy"])
                    .arg(&root)
                    .arg(&dir),
                "the source copy",
            )?,
            "copying the work tree",
        )?;
        let source = Source { dir };
        source.git(&["init", "-q", "-b", "main"])?;
        source.commit("the work tree under test")?;
        Ok(source)
    }

    fn git(&self, args: &[&str]) -> Result<String> {
        check(
            &run(
                Command::new("git")
                    .arg("-C")
                    .arg(&self.dir)
                    .args([
                        "-c",
                        "user.name=e2e",
                        "-c",
                        "user.email=e2e@example.invalid",
                    ])
                    .args(["-c", "commit.gpgsign=false"])
                    .args(args),
                "git",
            )?,
            &format!("git {}", args.first().copied().unwrap_or_default()),
        )
    }

    fn commit(&self, message: &str) -> Result<()> {
        self.git(&["add", "-A"])?;
        self.git(&["commit", "-q", "-m", message])?;
        Ok(())
    }

    /// Cargo.toml, Cargo.lock and a CHANGELOG.md entry at `version`, committed.
    fn bump(&self, version: &str) -> Result<()> {
        let edit = |file: &str, from: &str, to: &str| -> Result<()> {
            let path = self.dir.join(file);
            let text = std::fs::read_to_string(&path)?;
            ensure!(text.contains(from), "{file} has no {from:?}");
            std::fs::write(&path, text.replacen(from, to, 1))?;
            Ok(())
        };
        let current = env!("CARGO_PKG_VERSION");
        let cargo_toml = std::fs::read_to_string(self.dir.join("Cargo.toml"))?;
        let old = cargo_toml
            .lines()
            .find_map(|line| line.strip_prefix("version = "))
            .context("Cargo.toml has no version")?
            .trim_matches('"')
            .to_owned();
        ensure!(
            old == current || old.starts_with(current),
            "Cargo.toml says {old}"
        );
        edit(
            "Cargo.toml",
            &format!("version = \"{old}\""),
            &format!("version = \"{version}\""),
        )?;
        edit(
            "Cargo.lock",
            &format!("name = \"{NAME}\"\nversion = \"{old}\""),
            &format!("name = \"{NAME}\"\nversion = \"{version}\""),
        )?;
        edit(
            "CHANGELOG.md",
            "## [Unreleased]\n",
            &format!("## [Unreleased]\n\n## [{version}] - 2026-12-06\n\n- e2e release.\n"),
        )?;
        self.commit(&format!("Release {version}"))
    }
}

/// hack/release.sh of a source copy, against one registry with one login.
struct Releaser<'a> {
    source: &'a Source,
    registry: &'a Registry,
    work: PathBuf,
    key: PathBuf,
}

impl Releaser<'_> {
    fn command(&self, args: &[&str], docker_config: &Path) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(self.source.dir.join("hack/release.sh"))
            .args(args)
            .current_dir(&self.source.dir)
            .env("COSIGN_KEY", &self.key)
            .env("COSIGN_PASSWORD", "")
            .env("DOCKER_CONFIG", docker_config)
            .env(
                "RELEASE_DIST",
                self.dist(args.get(1).copied().unwrap_or("")),
            )
            // The checkout's own target directory, which `make image` builds into as well: the
            // dependencies are compiled once, only the crate again per copy of the tree.
            .env("CARGO_TARGET_DIR", repo_root().join("target"))
            .env("CARGO_NET_OFFLINE", "true")
            // Nothing the release runs may reach beyond this machine (cosign knows public
            // transparency logs): any such connection ends at a closed loopback port.
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env_remove("COSIGN_KEYLESS")
            .env_remove("PULLSECRET_INJECTOR_REVISION");
        command
    }

    fn dist(&self, version: &str) -> PathBuf {
        self.work.join("dist").join(version)
    }

    fn ok(&self, args: &[&str]) -> Result<()> {
        let out = run(
            &mut self.command(args, &self.registry.docker_config()),
            "hack/release.sh",
        )?;
        check(&out, &format!("hack/release.sh {}", args.join(" ")))?;
        Ok(())
    }

    /// The script refuses: non-zero, and its last line is the one `release: ...` line naming
    /// `reason`.
    fn refused(&self, args: &[&str], docker_config: &Path, reason: &str) -> Result<()> {
        let out = run(&mut self.command(args, docker_config), "hack/release.sh")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.trim_end().lines().last().unwrap_or_default();
        ensure!(
            !out.status.success() && last.starts_with("release: ") && last.contains(reason),
            "hack/release.sh {} should stop with 'release: ...{reason}...', got {} and: {}",
            args.join(" "),
            out.status,
            tail(&stderr, 5)
        );
        ensure!(
            stderr
                .lines()
                .filter(|l| l.starts_with("release: "))
                .count()
                == 1,
            "more than one error line: {}",
            tail(&stderr, 5)
        );
        Ok(())
    }
}

/// `crane digest REF` with the registry's login: Some(digest), or None when the registry has
/// no such manifest.
fn remote_digest(crane: &Path, registry: &Registry, reference: &str) -> Result<Option<String>> {
    let out = run(
        Command::new(crane)
            .args(["digest", reference])
            .env("DOCKER_CONFIG", registry.docker_config()),
        "crane digest",
    )?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        stderr.contains("MANIFEST_UNKNOWN") || stderr.contains("NAME_UNKNOWN"),
        "crane digest {reference}: {}",
        stderr.trim()
    );
    Ok(None)
}

pub fn release_install(s: &Suite) -> Result<Outcome> {
    // Built before anything runs behind the closed proxy below.
    let crane = tool("crane")?;
    let cosign = tool("cosign")?;
    tool("helm")?;
    let registry = Registry::start(s, "release")?;
    let work = s.work_path().join("release");
    let source = Source::new(work.join("src"))?;

    // A key pair of our own: the releases are signed with it, verification uses its public half.
    let cosign_env = |command: &mut Command| {
        command
            .env("COSIGN_PASSWORD", "")
            .env("DOCKER_CONFIG", registry.docker_config())
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("NO_PROXY", "127.0.0.1,localhost");
    };
    let mut generate = Command::new(&cosign);
    generate.args(["generate-key-pair", "--output-key-prefix"]);
    generate.arg(work.join("cosign"));
    cosign_env(&mut generate);
    check(&run(&mut generate, "cosign")?, "cosign generate-key-pair")?;
    let releaser = Releaser {
        source: &source,
        registry: &registry,
        work: work.clone(),
        key: work.join("cosign.key"),
    };
    let host = registry.host.as_str();
    let version = env!("CARGO_PKG_VERSION");
    let candidate = format!("{version}-rc.1");
    let image = format!("{host}/{NAME}");
    let chart = format!("oci://{host}/charts/{NAME}");

    // Bad input stops before anything is built or pushed, with one line.
    releaser.refused(
        &["all", "v1.2", host],
        &registry.docker_config(),
        "not SemVer",
    )?;
    releaser.refused(
        &["all", &candidate, host],
        &registry.docker_config(),
        "Cargo.toml says version",
    )?;
    source.bump(&candidate)?;
    std::fs::write(source.dir.join("stray.txt"), "uncommitted\n")?;
    releaser.refused(
        &["all", &candidate, host],
        &registry.docker_config(),
        "not clean",
    )?;
    std::fs::remove_file(source.dir.join("stray.txt"))?;

    // The release candidate, in one go (`make release`).
    releaser.ok(&["all", &candidate, host])?;
    let candidate_digest = std::fs::read_to_string(releaser.dist(&candidate).join("image.txt"))?
        .trim()
        .rsplit_once('@')
        .map(|(_, digest)| digest.to_owned())
        .context("image.txt names no digest")?;

    // This version: built, refused by the registry with a wrong login (nothing published),
    // then published; a second publish is refused as already released.
    source.bump(version)?;
    releaser.ok(&["build", version])?;
    let wrong = work.join("wrong-login");
    std::fs::create_dir_all(&wrong)?;
    std::fs::write(
        wrong.join("config.json"),
        serde_json::json!({"auths": {host: {"auth": BASE64.encode(format!("{}:wrong", registry.user))}}})
            .to_string(),
    )?;
    releaser.refused(&["publish", version, host], &wrong, "refused")?;
    ensure!(
        remote_digest(&crane, &registry, &format!("{image}:{version}"))?.is_none()
            && remote_digest(
                &crane,
                &registry,
                &format!("{host}/charts/{NAME}:{version}")
            )?
            .is_none(),
        "a refused release left {version} in the registry"
    );
    releaser.ok(&["publish", version, host])?;
    releaser.refused(
        &["publish", version, host],
        &registry.docker_config(),
        "already",
    )?;
    let dist = releaser.dist(version);
    let digest = std::fs::read_to_string(dist.join("image.txt"))?
        .trim()
        .rsplit_once('@')
        .map(|(_, digest)| digest.to_owned())
        .context("image.txt names no digest")?;
    ensure!(
        digest != candidate_digest,
        "both releases have the image {digest}"
    );
    check(
        &run(
            Command::new("sha256sum")
                .args(["--check", "--quiet", "SHA256SUMS"])
                .current_dir(&dist),
            "sha256sum",
        )?,
        "sha256sum --check SHA256SUMS",
    )?;
    let index = check(
        &run(
            Command::new(&crane)
                .args(["manifest", &format!("{image}:{version}")])
                .env("DOCKER_CONFIG", registry.docker_config()),
            "crane manifest",
        )?,
        "crane manifest",
    )?;
    let index: Value = serde_json::from_str(&index)?;
    ensure!(
        index["mediaType"] == "application/vnd.oci.image.index.v1+json"
            && index["manifests"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["platform"]["architecture"] == "amd64")),
        "{image}:{version} is not an OCI image index with linux/amd64: {index}"
    );
    // The vendor plugins' image beside it, tagged with the release's version, at the digest
    // the release names.
    let plugins = std::fs::read_to_string(dist.join("credential-providers-image.txt"))?;
    let (plugins_repository, plugins_digest) = plugins
        .trim()
        .rsplit_once('@')
        .context("credential-providers-image.txt names no digest")?;
    let tagged = check(
        &run(
            Command::new(&crane)
                .args(["digest", &format!("{plugins_repository}:{version}")])
                .env("DOCKER_CONFIG", registry.docker_config()),
            "crane digest",
        )?,
        "crane digest of the credential-providers image",
    )?;
    ensure!(
        tagged.trim() == plugins_digest
            && plugins_repository.ends_with("/pullsecret-injector-credential-providers"),
        "the credential-providers image {plugins_repository}:{version} is {}, the release says {plugins_digest}",
        tagged.trim()
    );

    // Installed from the registry by its OCI reference and version alone; the release's own
    // pods pull with the registry's login.
    let covered = format!("e2e.pullsecret-injector.io/release-{}", s.run_id);
    let namespace = s.foreign_namespace("release", &[RESTRICTED])?;
    expect_restricted_enforced(s, &namespace)?;
    registry.secret(s, &namespace, "injector-pull")?;
    let registry_config = registry
        .docker_config()
        .join("config.json")
        .to_string_lossy()
        .into_owned();
    let oci = [
        "--plain-http",
        "--registry-config",
        registry_config.as_str(),
    ];
    let mut release = Release {
        s,
        name: format!("{NAME}-rel-{}", s.run_id),
        namespace,
        installed: true,
    };
    let selector = format!(
        r#"webhook.extraNamespaceSelectorExpressions=[{{"key":"{covered}","operator":"Exists"}}]"#
    );
    let install: Vec<&str> = [
        &["--version", candidate.as_str()][..],
        &oci[..],
        &["--set", "imagePullSecrets[0].name=injector-pull"][..],
        &["--set", "shutdownDelay=2s", "--set-json", &selector][..],
    ]
    .concat();
    release.helm_chart("install", &chart, &install)?;
    expect_running_image(&release, &image, &candidate, &candidate_digest)?;

    let app = s.foreign_namespace("release-app", &[(&covered, "true")])?;
    registry.secret(s, &app, "app-registry")?;
    let app_image = registry.push_busybox("shop/web:1")?;
    poll(
        "the released webhook to inject app-registry",
        std::time::Duration::from_secs(120),
        || Ok((s.dry_run_pull_secrets(&app, &app_image)? == ["app-registry"]).then_some(())),
    )?;

    // The upgrade to this version keeps pod creation working throughout.
    let load = Load {
        namespace: &app,
        image: &app_image,
        expected: &["app-registry"],
    };
    let upgrade: Vec<&str> = [&["--version", version, "--reuse-values"][..], &oci[..]].concat();
    let created = release.helm_chart_under_load("upgrade", &chart, &upgrade, &load)?;
    println!(
        "  {created} pods admitted with their secret during the upgrade {candidate} -> {version}"
    );
    expect_running_image(&release, &image, version, &digest)?;
    s.run_pod(&app, "web", &app_image, &[])?;
    expect_secrets(&wait_running(s, &app, "web")?, &["app-registry"])?;

    // The signature: accepted with the public key; an image pushed under the same tag without
    // one is refused.
    let public_key = work.join("cosign.pub").to_string_lossy().into_owned();
    let verify = |reference: &str| -> Result<Output> {
        let mut command = Command::new(&cosign);
        command.args([
            "verify",
            "--key",
            &public_key,
            "--insecure-ignore-tlog",
            reference,
        ]);
        cosign_env(&mut command);
        run(&mut command, "cosign verify")
    };
    let verified = check(
        &verify(&format!("{image}:{version}"))?,
        "cosign verify of the release",
    )?;
    ensure!(
        verified.contains(&digest),
        "cosign verify did not name {digest}: {}",
        tail(&verified, 3)
    );

    // The SBOM: a signed CycloneDX attestation of the crates in the binary.
    let mut attestation = Command::new(&cosign);
    attestation.args([
        "verify-attestation",
        "--key",
        &public_key,
        "--insecure-ignore-tlog",
        "--type",
        "cyclonedx",
        &format!("{image}@{digest}"),
    ]);
    cosign_env(&mut attestation);
    let attested = check(
        &run(&mut attestation, "cosign verify-attestation")?,
        "cosign verify-attestation",
    )?;
    expect_sbom(&attested, version)?;

    registry.push_busybox(&format!("{NAME}:{version}"))?;
    let forged = verify(&format!("{image}:{version}"))?;
    ensure!(
        !forged.status.success(),
        "cosign verify accepted an unsigned image under {image}:{version}"
    );

    release.helm("uninstall", &[])?;
    release.installed = false;
    Ok(Outcome::Passed)
}

/// Both replicas run `image:tag@digest`, the digest the release signed.
fn expect_running_image(release: &Release, image: &str, tag: &str, digest: &str) -> Result<()> {
    release.wait_ready(2)?;
    let expected = format!("{image}:{tag}@{digest}");
    for pod in release.pods()? {
        let spec = pod["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default();
        let id = pod["status"]["containerStatuses"][0]["imageID"]
            .as_str()
            .unwrap_or_default();
        ensure!(
            spec == expected && id.ends_with(digest),
            "pod {} runs {spec} (imageID {id}), expected {expected}",
            pod["metadata"]["name"]
        );
    }
    Ok(())
}

/// The attestation's statement (in-toto, base64 in the DSSE payload) carries a CycloneDX
/// document of this version with the crates linked into the binary, and none that only tests
/// use.
fn expect_sbom(attested: &str, version: &str) -> Result<()> {
    let envelope: Value = serde_json::from_str(
        attested
            .lines()
            .find(|line| line.trim_start().starts_with('{'))
            .context("cosign printed no attestation")?,
    )?;
    let payload = envelope["payload"]
        .as_str()
        .or_else(|| envelope["dsseEnvelope"]["payload"].as_str())
        .context("no DSSE payload")?;
    let statement: Value = serde_json::from_slice(&BASE64.decode(payload)?)?;
    let bom = &statement["predicate"];
    ensure!(
        bom["bomFormat"] == "CycloneDX" && bom["metadata"]["component"]["version"] == version,
        "the attested SBOM is not CycloneDX for {version}: {}",
        statement.to_string().chars().take(300).collect::<String>()
    );
    let names: Vec<&str> = bom["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for linked in ["kube", "rustls", "tokio", "hyper"] {
        ensure!(names.contains(&linked), "the SBOM lacks {linked}");
    }
    for test_only in ["proptest", "criterion", "tempfile"] {
        if names.contains(&test_only) {
            bail!("the SBOM lists {test_only}, which only the tests use");
        }
    }
    Ok(())
}
