//! `pullsecret-injector --version` names the release and the git revision it was built from.

use std::process::Command;

#[test]
fn version_names_the_release_and_the_git_revision() {
    let out = Command::new(env!("CARGO_BIN_EXE_pullsecret-injector"))
        .arg("--version")
        .output()
        .expect("run --version");
    assert!(out.status.success());
    let root = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let revision = match std::env::var("PULLSECRET_INJECTOR_REVISION") {
        Ok(revision) if !revision.trim().is_empty() => revision.trim().to_owned(),
        _ if git(&["rev-parse", "--show-toplevel"]).as_deref() == Some(root) => {
            git(&["rev-parse", "--short=12", "HEAD"]).expect("git rev-parse HEAD")
        }
        _ => "unknown".to_owned(),
    };
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            "pullsecret-injector {} (revision {revision})",
            env!("CARGO_PKG_VERSION")
        )
    );
}
