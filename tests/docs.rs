//! The reference tables of the documents against what they describe: the `serve` flags table of
//! docs/configuration.md against the command line (every flag listed, every listed default the real one,
//! every flag an environment variable), and the values table of the chart README against
//! values.yaml (every key listed, every listed default the real one). A flag or value added
//! without its line, or a default changed on one side only, fails here. docs/claims.md maps the
//! other claims of the two READMEs to their tests.

use std::path::Path;

use clap::{CommandFactory, Parser};
use pullsecret_injector::server::ServeArgs;
use serde_yaml::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The rows (cells, trimmed) of the markdown table that follows the line `heading`.
fn table_after(text: &str, heading: &str) -> Vec<Vec<String>> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in the document"));
    text[start..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // header and separator
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The backticked pieces of a cell: "`a`, `b`" → [a, b].
fn quoted(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// A cell that is nothing but backticked literals separated by ", ": those literals.
fn only_literals(cell: &str) -> Option<Vec<&str>> {
    let pieces = quoted(cell);
    let rebuilt = pieces
        .iter()
        .map(|piece| format!("`{piece}`"))
        .collect::<Vec<_>>()
        .join(", ");
    (!pieces.is_empty() && rebuilt == cell).then_some(pieces)
}

#[derive(Parser)]
struct Serve {
    #[command(flatten)]
    serve: ServeArgs,
}

#[test]
fn the_serve_flags_table_lists_every_flag_with_its_real_default() {
    let readme = read("docs/configuration.md");
    let rows = table_after(&readme, "## `serve` flags");
    assert!(rows.len() >= 10, "the table was not found: {rows:?}");
    let command = Serve::command();
    let flags: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|arg| arg.get_long().is_some())
        .collect();
    for arg in &flags {
        let long = format!("--{}", arg.get_long().expect("long"));
        assert!(
            rows.iter()
                .any(|row| row.join(" ").contains(&format!("`{long}`"))),
            "{long} is not in docs/configuration.md's serve flags table"
        );
        // "Every flag is also an environment variable (PULLSECRET_INJECTOR_<FLAG>)".
        let expected = format!(
            "PULLSECRET_INJECTOR_{}",
            long.trim_start_matches("--")
                .to_uppercase()
                .replace('-', "_")
        );
        assert_eq!(
            arg.get_env().and_then(|env| env.to_str()),
            Some(expected.as_str()),
            "{long}"
        );
    }
    let mut compared = 0;
    for row in &rows {
        let names = quoted(&row[0]);
        let Some(defaults) = only_literals(&row[1]) else {
            continue;
        };
        assert_eq!(names.len(), defaults.len(), "row {row:?}");
        for (name, default) in names.iter().zip(defaults) {
            let arg = flags
                .iter()
                .find(|arg| arg.get_long() == name.strip_prefix("--"))
                .unwrap_or_else(|| panic!("docs/configuration.md lists {name}, which serve does not have"));
            let real: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect();
            assert_eq!(real, [default], "default of {name}");
            compared += 1;
        }
    }
    assert!(compared >= 8, "only {compared} defaults compared");
    // Prose defaults, checked by hand here.
    let parsed = Serve::try_parse_from(["serve", "--tls-cert-file", "c", "--tls-key-file", "k"])
        .expect("defaults")
        .serve;
    assert!(
        !parsed.controller.enable_controller,
        "--enable-controller is off"
    );
    assert_eq!(
        parsed.tls_reload_interval.as_secs(),
        10,
        "--tls-reload-interval"
    );
    assert_eq!(
        parsed.controller.lease_name,
        "pullsecret-injector-controller"
    );
}

/// The value at a dotted path of values.yaml.
fn value_at<'a>(values: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(values, |value, key| value.get(key))
}

/// Every leaf path of values.yaml (a map or list value is a leaf when it is empty).
fn leaves(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Mapping(map) if !map.is_empty() => {
            for (key, child) in map {
                let key = key.as_str().expect("string keys");
                let path = if prefix.is_empty() {
                    key.to_owned()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(child, &path, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn the_chart_values_table_lists_every_value_with_its_real_default() {
    let readme = read("charts/pullsecret-injector/README.md");
    let values: Value = serde_yaml::from_str(&read("charts/pullsecret-injector/values.yaml"))
        .expect("values.yaml parses");
    let rows = table_after(&readme, "### Values");
    assert!(rows.len() >= 30, "the table was not found: {rows:?}");
    let documented: Vec<String> = rows
        .iter()
        .flat_map(|row| {
            quoted(&row[0])
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    for key in &documented {
        assert!(
            value_at(&values, key).is_some(),
            "the chart README lists `{key}`, which values.yaml does not have"
        );
    }
    let mut paths = Vec::new();
    leaves(&values, "", &mut paths);
    for path in &paths {
        assert!(
            documented
                .iter()
                .any(|key| path == key || path.starts_with(&format!("{key}."))),
            "values.yaml has `{path}`, which the chart README's values table does not list"
        );
    }
    let mut compared = 0;
    for row in &rows {
        let keys = quoted(&row[0]);
        let Some(defaults) = only_literals(&row[1]) else {
            continue;
        };
        // One default for several keys (`nameOverride`, `fullnameOverride` | `""`), or one each.
        let defaults = if defaults.len() == 1 {
            vec![defaults[0]; keys.len()]
        } else {
            defaults
        };
        assert_eq!(keys.len(), defaults.len(), "row {row:?}");
        for (key, default) in keys.iter().zip(defaults) {
            let documented: Value = serde_yaml::from_str(default)
                .unwrap_or_else(|error| panic!("`{key}` default {default:?}: {error}"));
            let real = value_at(&values, key).expect("checked above");
            assert_eq!(real, &documented, "default of `{key}`");
            compared += 1;
        }
    }
    assert!(compared >= 40, "only {compared} defaults compared");
}
