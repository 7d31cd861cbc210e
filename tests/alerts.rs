//! The chart's alerts, exactly as shipped: the PrometheusRule is rendered with the real helm
//! (controller on, so every alert is there), its groups written as a plain Prometheus rule
//! file, and checked with the real promtool (built from the Go module proxy by
//! tests/controlplane/build-tool.sh and cached in ~/.cache/pullsecret-injector/):
//! `promtool check rules`, then `promtool test rules tests/alerts/*.test.yaml`, whose cases
//! feed input series and expect each alert to fire (labels and annotations as the on-call
//! engineer reads them) or to stay quiet. Every alert must have both kinds of case, a summary,
//! a description naming a command to run, and a section in the chart README's runbook.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

const RELEASE: &str = "pullsecret-injector";
const TESTS: &str = "tests/alerts/pullsecret-injector.test.yaml";

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The path of a tool built by build-tool.sh (built on first use).
fn tool(name: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo("tests/controlplane/build-tool.sh"))
        .arg(name)
        .output()
        .expect("runs build-tool.sh");
    assert!(
        out.status.success(),
        "build-tool.sh {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs a command; (succeeded, stdout + stderr).
fn run(command: &mut Command) -> (bool, String) {
    let out = command.output().expect("the command starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The chart's PrometheusRule (`helm template`, controller on) as a Prometheus rule file.
fn rendered_rules() -> Value {
    let (ok, text) = run(Command::new(tool("helm")).args([
        "template",
        RELEASE,
        &repo("charts/pullsecret-injector").to_string_lossy(),
        "--namespace",
        RELEASE,
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "controller.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ]));
    assert!(ok, "helm template failed: {text}");
    let rule: Value = serde_yaml::from_str(&text).expect("the PrometheusRule is YAML");
    assert_eq!(rule["kind"], "PrometheusRule", "{text}");
    let mut file = serde_yaml::Mapping::new();
    file.insert("groups".into(), rule["spec"]["groups"].clone());
    Value::Mapping(file)
}

fn alerts(rules: &Value) -> Vec<Value> {
    rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_sequence().cloned().unwrap_or_default())
        .filter(|rule| rule["alert"].is_string())
        .collect()
}

#[test]
fn promtool_checks_the_rules_and_every_alert_fires_and_stays_quiet_as_tested() {
    let rules = rendered_rules();
    let names: Vec<String> = alerts(&rules)
        .iter()
        .map(|alert| alert["alert"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(names.len() >= 13, "only {names:?}");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let rule_file = dir.path().join("rules.yaml");
    std::fs::write(&rule_file, serde_yaml::to_string(&rules).expect("encodes"))
        .expect("writes rules.yaml");
    let test_file = dir.path().join("pullsecret-injector.test.yaml");
    std::fs::copy(repo(TESTS), &test_file).expect("copies the tests next to rules.yaml");

    let promtool = tool("promtool");
    let (ok, text) = run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rule_file));
    assert!(ok, "promtool check rules failed:\n{text}");
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", names.len())),
        "promtool check rules found another number of rules than the {} alerts:\n{text}",
        names.len()
    );

    // Each alert has a case where it fires and one where it stays quiet.
    let tests: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo(TESTS)).expect("reads the tests"))
            .expect("the tests are YAML");
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for case in tests["tests"].as_sequence().into_iter().flatten() {
        for check in case["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = check["alertname"].as_str().unwrap_or_default().to_owned();
            let expected = check["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected == 0 {
                quiet.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    for name in &names {
        assert!(firing.contains(name), "no case where {name} fires");
        assert!(quiet.contains(name), "no case where {name} stays quiet");
    }

    let (ok, text) = run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(&test_file)
        .current_dir(dir.path()));
    assert!(ok, "promtool test rules failed:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn every_alert_says_what_happened_names_a_command_and_has_a_runbook_section() {
    let readme = std::fs::read_to_string(repo("charts/pullsecret-injector/README.md"))
        .expect("reads the chart README");
    let runbook = readme
        .split_once("\n## Alerts runbook\n")
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or_default())
        .expect("the chart README has an 'Alerts runbook' section");
    for alert in alerts(&rendered_rules()) {
        let name = alert["alert"].as_str().unwrap_or_default();
        let annotations = &alert["annotations"];
        let summary = annotations["summary"].as_str().unwrap_or_default();
        let description = annotations["description"].as_str().unwrap_or_default();
        assert!(summary.len() > 20, "{name}: summary {summary:?}");
        assert!(
            description.contains("`kubectl "),
            "{name}: the description names no command to run: {description}"
        );
        assert!(
            ["warning", "critical"].contains(&alert["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity {:?}",
            alert["labels"]["severity"]
        );
        assert!(
            runbook.contains(&format!("\n### {name}\n")),
            "the chart README's runbook has no section '### {name}'"
        );
    }
}
