//! Every metric the server exports is documented in the metrics table (docs/metrics.md), and the
//! chart's PrometheusRule only queries metrics that exist.

use std::collections::BTreeSet;
use std::path::Path;

use prometheus_client::registry::Registry;
use pullsecret_injector::admission::decision::{Decision, Injection};
use pullsecret_injector::admission::review::{Outcome, ResponseReview, Reviewed};
use pullsecret_injector::telemetry::Metrics;

/// The series names a user queries: `NAME_total` for counters, `NAME` for the rest (a
/// histogram's `_bucket`, `_sum` and `_count` series share its name).
fn exported_metrics() -> BTreeSet<String> {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    // Families whose label values appear only with their first sample.
    metrics.observe_rejected("too_large");
    metrics.observe_watch_error("secrets");
    metrics.observe_shadow("shop", true);
    metrics.set_credential_expiry("minted", Some(1.0));
    metrics.observe_review(&injected_review(), 0.001);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|declaration| {
            let mut words = declaration.split_whitespace();
            let name = words.next().expect("a name").to_owned();
            match words.next() {
                Some("counter") => format!("{name}_total"),
                _ => name,
            }
        })
        .collect()
}

/// A pod of namespace `shop` that got a secret and had an image no secret matched: the
/// per-namespace counters have their first series.
fn injected_review() -> Reviewed {
    Reviewed {
        response: ResponseReview {
            uid: "uid".to_owned(),
            allowed: true,
            patch: None,
            audit_annotations: Default::default(),
            warnings: Vec::new(),
        },
        uid: "uid".to_owned(),
        namespace: "shop".to_owned(),
        pod: "web".to_owned(),
        operation: "CREATE",
        outcome: Outcome::Injected,
        decision: Decision {
            injected: vec![Injection {
                secret: "regcred".to_owned(),
                registries: vec!["registry.example.com".to_owned()],
            }],
            images_without_match: 1,
            ..Decision::default()
        },
    }
}

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// Every `pullsecret_injector_*` word in `text`.
fn mentioned(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("pullsecret_injector_") {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `pullsecret_injector_*` names the prefix, not a metric.
        if !name.ends_with('_') {
            found.insert(name);
        }
    }
    found
}

#[test]
fn the_metrics_page_documents_every_metric_in_its_table() {
    let readme = read("docs/metrics.md");
    let table_rows: BTreeSet<String> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect();
    let exported = exported_metrics();
    assert!(exported.len() >= 19, "{exported:?}");
    let undocumented: Vec<&String> = exported.difference(&table_rows).collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from docs/metrics.md's table: {undocumented:?}"
    );
    let unknown: Vec<String> = mentioned(&readme)
        .into_iter()
        .filter(|name| !exported.contains(name))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/metrics.md names metrics the server does not export: {unknown:?}"
    );
}

#[test]
fn the_prometheus_rule_queries_only_exported_metrics() {
    let rule = read("charts/pullsecret-injector/templates/prometheusrule.yaml");
    let exported = exported_metrics();
    let queried = mentioned(&rule);
    assert!(queried.len() >= 5, "{queried:?}");
    let unknown: Vec<&String> = queried.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the PrometheusRule queries metrics the server does not export: {unknown:?}"
    );
}

/// The text a fresh server exports, before anything was observed.
fn fresh_exposition() -> String {
    let mut registry = Registry::default();
    let _metrics = Metrics::new(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    text
}

/// The series names (`name_total` for counters as sampled) present in `text`.
fn sampled(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Every metric an alert of the PrometheusRule reads exists from the start (at 0 for
/// counters): `rate()` and `increase()` of a series that appears only with the first error
/// never fire on it.
#[test]
fn every_metric_an_alert_reads_is_present_from_the_start() {
    let rule = read("charts/pullsecret-injector/templates/prometheusrule.yaml");
    let present = sampled(&fresh_exposition());
    // One series per minted credential, labelled by its ClusterPullSecret: nothing to show
    // before the first, and its alert compares the value with time(), not a rate.
    let per_object = ["pullsecret_injector_credential_expiry_timestamp_seconds"];
    let absent: Vec<String> = mentioned(&rule)
        .into_iter()
        .filter(|name| !present.contains(name) && !per_object.contains(&name.as_str()))
        .collect();
    assert!(
        absent.is_empty(),
        "alerts read metrics a fresh server does not export yet: {absent:?}"
    );
}

/// A HELP text that lists the values of a label lists all of them: each fixed value a family
/// carries from the start (outcome, reason, operation, resource, result) is named in its HELP.
#[test]
fn help_texts_name_every_fixed_label_value() {
    let text = fresh_exposition();
    let help: std::collections::BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .filter_map(|rest| rest.split_once(' '))
        .collect();
    let mut missing = Vec::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, rest)) = line.split_once('{') else {
            continue;
        };
        let family = series.strip_suffix("_total").unwrap_or(series);
        let Some(words) = help.get(family) else {
            continue;
        };
        let labels = rest.split('}').next().unwrap_or_default();
        for pair in labels.split(',') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let value = value.trim_matches('"');
            let listed = words
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|word| word == value);
            if ["outcome", "reason", "operation", "resource", "result"].contains(&key) && !listed {
                missing.push(format!("{family}: {key}={value}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "HELP texts that omit a label value: {missing:?}"
    );
}

const DASHBOARD: &str = "charts/pullsecret-injector/dashboards/pullsecret-injector.json";

/// The panels of the dashboard with their queries (rows' nested panels included).
fn dashboard_panels() -> Vec<serde_json::Value> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    let mut panels: Vec<serde_json::Value> = Vec::new();
    let mut pending: Vec<serde_json::Value> =
        dashboard["panels"].as_array().cloned().unwrap_or_default();
    while let Some(panel) = pending.pop() {
        pending.extend(panel["panels"].as_array().cloned().unwrap_or_default());
        if panel["type"] != "row" {
            panels.push(panel);
        }
    }
    panels
}

#[test]
fn the_dashboard_reads_only_exported_metrics() {
    let exported = exported_metrics();
    // A histogram's series are its name with `_bucket`, `_sum` or `_count`.
    let read_by_panels: BTreeSet<String> = mentioned(&read(DASHBOARD))
        .into_iter()
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .map_or(name.clone(), str::to_owned)
        })
        .collect();
    assert!(read_by_panels.len() >= 25, "{read_by_panels:?}");
    let unknown: Vec<&String> = read_by_panels.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard reads metrics the server does not export: {unknown:?}"
    );
}

/// Each panel queries the dashboard's data source variable, says what it shows, and is named in
/// the chart README's panel list; the namespace variable filters by the pods' namespace.
#[test]
fn every_dashboard_panel_uses_the_variables_and_is_listed_in_the_chart_readme() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|variable| variable["name"].as_str())
        .collect();
    assert_eq!(variables, ["datasource", "namespace"]);
    let readme = read("charts/pullsecret-injector/README.md");
    let listed = readme
        .split_once("\n## Dashboard\n")
        .map(|(_, rest)| {
            rest.split("\n## ")
                .next()
                .unwrap_or_default()
                .replace('\n', " ")
        })
        .map(|text| text.split_whitespace().collect::<Vec<_>>().join(" "))
        .expect("the chart README has a Dashboard section");
    let panels = dashboard_panels();
    assert!(panels.len() >= 20, "only {} panels", panels.len());
    let mut ids = BTreeSet::new();
    for panel in &panels {
        let title = panel["title"].as_str().expect("a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("an id")),
            "{title}: duplicate id"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        assert!(
            panel["description"].as_str().is_some_and(|d| d.len() > 20),
            "{title}"
        );
        assert!(
            listed.contains(title),
            "the chart README's panel list lacks {title:?}"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("an expression");
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            if expr.contains("$namespace") {
                assert!(
                    expr.contains("pod_namespace=~\"$namespace\""),
                    "{title}: {expr}"
                );
            }
        }
    }
}
