//! Records the git revision the binary is built from, for `pullsecret-injector --version`.
//! PULLSECRET_INJECTOR_REVISION wins (a build from a source tarball has no .git); otherwise
//! `git rev-parse`, and "unknown" when neither is there.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=PULLSECRET_INJECTOR_REVISION");
    let revision = match std::env::var("PULLSECRET_INJECTOR_REVISION") {
        Ok(revision) if !revision.trim().is_empty() => revision.trim().to_owned(),
        // Only this checkout's own git counts: a source tarball unpacked inside another
        // repository must not take that repository's revision.
        _ if git(&["rev-parse", "--show-toplevel"])
            .map(PathBuf::from)
            .as_deref()
            != std::env::var_os("CARGO_MANIFEST_DIR")
                .map(PathBuf::from)
                .as_deref() =>
        {
            "unknown".to_owned()
        }
        _ => {
            // A new commit or checkout moves HEAD or the branch it names: build again then.
            if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
                println!(
                    "cargo:rerun-if-changed={}",
                    PathBuf::from(&dir).join("HEAD").display()
                );
            }
            if let Some(head_ref) = git(&["rev-parse", "--symbolic-full-name", "HEAD"])
                .filter(|name| name.starts_with("refs/"))
                && let Some(common) = git(&["rev-parse", "--git-common-dir"])
            {
                let common = PathBuf::from(common);
                println!(
                    "cargo:rerun-if-changed={}",
                    common.join(&head_ref).display()
                );
                println!(
                    "cargo:rerun-if-changed={}",
                    common.join("packed-refs").display()
                );
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=PULLSECRET_INJECTOR_REVISION={revision}");
}
