//! The documents against what they describe: the `serve` flags table of docs/configuration.md
//! against the command line (every flag listed, every listed default the real one, every flag
//! an environment variable), the values table of the chart README against values.yaml (every
//! key listed, every listed default the real one), the state recipe against the one the
//! commands print, and every relative link (and `#anchor`) of every Markdown file against the
//! file and heading it names. A flag or value added without its line, a default changed on one
//! side only, a moved section or a renamed heading fails here. docs/claims.md maps the other
//! claims of the documents to their tests.

use std::path::Path;

use clap::{CommandFactory, Parser};
use pullsecret_injector::cli::commands::STATE_RECIPE;
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
                .unwrap_or_else(|| {
                    panic!("docs/configuration.md lists {name}, which serve does not have")
                });
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

/// The state recipe is written once in the guide, as the commands print it, and no document
/// dumps every Secret of a cluster or names the namespaces and the CRDs in one `kubectl get`
/// (which prints nothing but an error where the CRDs are not installed).
#[test]
fn the_state_recipe_is_the_commands_own_and_no_document_has_another() {
    let guide = read("docs/cli.md");
    let commands: Vec<&str> = STATE_RECIPE
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("kubectl get"))
        .collect();
    assert_eq!(commands.len(), 4, "{STATE_RECIPE}");
    for command in &commands {
        assert!(
            guide.lines().any(|line| line.trim() == *command),
            "docs/cli.md does not have the recipe's line {command:?}"
        );
    }
    for file in markdown_files() {
        let text = read(&file);
        for line in text.lines().filter(|line| line.contains("kubectl get")) {
            assert!(
                !line.contains("get secrets") || line.contains("--field-selector type="),
                "{file}: a recipe that dumps every Secret: {line}"
            );
            assert!(
                !(line.contains("namespaces,") && line.contains("pullsecretrules")),
                "{file}: namespaces and the CRDs in one kubectl get: {line}"
            );
        }
    }
}

/// Every Markdown file of the repository, relative to its root (build output, local state and
/// git's own files left out).
fn markdown_files() -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "node_modules" {
                    walk(root, &path, out);
                }
            } else if name.ends_with(".md") {
                let relative = path.strip_prefix(root).expect("under the root");
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(root, root, &mut files);
    files
}

/// The text outside fenced code blocks, line by line (links and headings in code are neither).
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The anchors GitHub gives the headings of a Markdown text: lowercased, punctuation but `-`
/// and `_` dropped, spaces made `-`, a repeated one suffixed `-1`, `-2`, ...
fn anchors(text: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in prose(text) {
        let trimmed = line.trim_start_matches('#');
        if !line.starts_with('#') || !trimmed.starts_with(' ') {
            continue;
        }
        let slug: String = trimmed
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let count = seen.iter().filter(|earlier| **earlier == slug).count();
        seen.push(slug.clone());
        out.push(if count == 0 {
            slug
        } else {
            format!("{slug}-{count}")
        });
    }
    out
}

/// The targets of the inline links `[text](target)` of a line.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find("](") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.to_owned());
        rest = &after[end..];
    }
    targets
}

#[test]
fn every_relative_link_and_anchor_of_every_markdown_file_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = markdown_files();
    assert!(files.len() >= 15, "only {files:?}");
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in &files {
        let text = read(file);
        let dir = Path::new(file).parent().unwrap_or(Path::new(""));
        for line in prose(&text) {
            // Inline code is not a link.
            let line: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
            for target in link_targets(&line) {
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = match target.split_once('#') {
                    Some((path, anchor)) => (path, Some(anchor)),
                    None => (target.as_str(), None),
                };
                let linked = if path.is_empty() {
                    root.join(file)
                } else {
                    root.join(dir).join(path)
                };
                checked += 1;
                if !linked.exists() {
                    broken.push(format!("{file}: {target}: no such file"));
                    continue;
                }
                if let Some(anchor) = anchor {
                    let Ok(linked_text) = std::fs::read_to_string(&linked) else {
                        broken.push(format!("{file}: {target}: an anchor into a directory"));
                        continue;
                    };
                    if !anchors(&linked_text).iter().any(|known| known == anchor) {
                        broken.push(format!("{file}: {target}: no heading with that anchor"));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked >= 100, "only {checked} links checked");
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(
        anchors(
            "# A title\n## Registry→secret mappings, and `more`\n## A title\n```\n# not a heading\n```\n"
        ),
        ["a-title", "registrysecret-mappings-and-more", "a-title-1"]
    );
    assert_eq!(
        link_targets("see [a](b.md#c) and [d](https://e) `[f](g)`"),
        ["b.md#c", "https://e", "g"]
    );
}
