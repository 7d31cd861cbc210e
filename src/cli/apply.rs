//! `apply`: manifests with the injection applied, for previews and GitOps repositories.
//!
//! A YAML document the injection does not change is printed byte for byte; one it changes
//! gets only the lines it needs (the `imagePullSecrets` entries and the annotation), inserted
//! with the indentation around them, so comments and layout elsewhere stay and a diff shows
//! the injection alone. Every edited document is parsed again and compared with the patched
//! object: where the layout is one these insertions cannot express (flow style, a list of
//! items, an existing entry to change), the document is printed re-serialized instead, with a
//! warning. `-o yaml` and `-o json` re-serialize everything.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::cli::commands::{CommandError, Injector, Location, StateArgs, load_state, warn};
use crate::cluster::statefile::{self, InputError, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApplyOutput {
    /// Every document re-serialized as YAML (comments dropped).
    Yaml,
    /// One JSON object, a `List` of them when there are several (as `kubectl -o json`).
    Json,
}

/// `apply`: manifests with the injection applied.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Manifests to transform (YAML or JSON, several documents); a directory reads its `.yaml`,
    /// `.yml` and `.json` files in name order (as kubectl); `-` reads standard input.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "MANIFEST",
        required = true
    )]
    pub manifests: Vec<PathBuf>,
    /// Read the directories given to `-f` and their subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// The namespace of manifests that do not set `metadata.namespace`.
    #[arg(
        short = 'n',
        long = "namespace",
        default_value = "default",
        env = "PULLSECRET_INJECTOR_NAMESPACE"
    )]
    pub namespace: String,
    /// Output format. Without it, YAML documents keep their text where nothing changes and
    /// get only the injected lines where something does, and JSON input is printed as JSON
    /// (a `List` when there are several documents).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ApplyOutput>,
}

/// One input document: its text (YAML sources only), its object as read and as injected.
struct Transformed {
    text: Option<String>,
    injected: Value,
    changed: bool,
}

/// One source: its documents and the separators between them, so unchanged text comes back as
/// it was.
struct Rendered {
    json: bool,
    /// The original text, for sources whose documents all came back unchanged.
    original: String,
    documents: Vec<Transformed>,
    /// The original YAML text with the documents cut out: `pieces[i]` comes before document i.
    pieces: Option<Vec<String>>,
}

pub fn apply(args: &ApplyArgs) -> Result<(), CommandError> {
    let state = load_state(&args.state.state_files, &args.state.server)?;
    let mut injector = Injector::new(&state);
    let mut sources = Vec::new();
    let mut workloads = 0;
    for file in expand(&args.manifests, args.recursive)? {
        let source = Source::from_arg(&file);
        let source_name = source.name();
        let text = source.read()?;
        let json = text.trim_start().starts_with(['{', '[']);
        let chunks = (!json).then(|| split_documents(&text)).flatten();
        let mut documents = Vec::new();
        for document in statefile::parse_documents(&source_name, &text)? {
            let original = document.value;
            let mut injected = original.clone();
            let at = Location {
                source_name: &source_name,
                document: document.number,
            };
            workloads += injector.inject(&mut injected, &args.namespace, &at)?;
            documents.push(Transformed {
                text: None,
                changed: injected != original,
                injected,
            });
        }
        let pieces = chunks.and_then(|(pieces, texts)| {
            // The cut agrees with the parser, or the source is re-serialized.
            let parsed: Vec<Value> = texts
                .iter()
                .filter_map(|text| statefile::parse_documents("", text).ok())
                .flatten()
                .map(|document| document.value)
                .collect();
            let agrees = texts.len() == documents.len()
                && parsed.len() == documents.len()
                && texts.iter().all(|text| {
                    statefile::parse_documents("", text).is_ok_and(|parsed| parsed.len() == 1)
                });
            if !agrees {
                return None;
            }
            for ((document, text), original) in documents.iter_mut().zip(texts).zip(parsed) {
                document.text = Some(if document.changed {
                    edit_in_place(&text, &original, &document.injected).unwrap_or_default()
                } else {
                    text
                });
            }
            Some(pieces)
        });
        for (index, document) in documents.iter().enumerate() {
            if document.changed && document.text.as_deref().is_none_or(str::is_empty) && !json {
                warn(&format!(
                    "{source_name}: document {}: its layout cannot be edited in place; printed re-serialized (comments and formatting of this document dropped)",
                    index + 1
                ));
            }
        }
        sources.push(Rendered {
            json,
            original: text,
            documents,
            pieces,
        });
    }
    for warning in injector.into_warnings() {
        warn(&warning);
    }
    if workloads == 0 {
        warn(
            "no Pod or workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob) in the manifests: nothing to inject, every document printed as given (was a state file given to -f?)",
        );
    }
    let output = render(&sources, args.output)?;
    let mut out = std::io::stdout().lock();
    out.write_all(output.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The files of `-f`: files as given, directories' `.yaml`, `.yml` and `.json` files in name
/// order (subdirectories with `-R`).
fn expand(arguments: &[PathBuf], recursive: bool) -> Result<Vec<PathBuf>, CommandError> {
    let mut files = Vec::new();
    for argument in arguments {
        if argument.is_dir() {
            let before = files.len();
            walk(argument, recursive, &mut files)?;
            if files.len() == before {
                return Err(CommandError::Usage(format!(
                    "{}: no .yaml, .yml or .json file in this directory{}",
                    argument.display(),
                    if recursive {
                        " or below"
                    } else {
                        " (-R reads subdirectories)"
                    }
                )));
            }
        } else {
            files.push(argument.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, recursive: bool, files: &mut Vec<PathBuf>) -> Result<(), CommandError> {
    let unreadable = |error: std::io::Error| InputError::Unreadable {
        source_name: dir.display().to_string(),
        reason: error.to_string(),
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if recursive {
                walk(&path, recursive, files)?;
            }
        } else if path
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| matches!(extension, "yaml" | "yml" | "json"))
        {
            files.push(path);
        }
    }
    Ok(())
}

fn render(sources: &[Rendered], output: Option<ApplyOutput>) -> Result<String, CommandError> {
    let encode = |error: &dyn std::fmt::Display| CommandError::Encode(error.to_string());
    let all: Vec<&Value> = sources
        .iter()
        .flat_map(|source| source.documents.iter().map(|d| &d.injected))
        .collect();
    let yaml = |value: &Value| serde_yaml::to_string(value).map_err(|e| encode(&e));
    let all_json = sources.iter().all(|source| source.json);
    match output {
        // JSON in, JSON out: one document as it came when unchanged.
        None if all_json
            && all.len() == 1
            && sources
                .iter()
                .all(|source| source.documents.iter().all(|d| !d.changed)) =>
        {
            let mut out: String = sources
                .iter()
                .map(|source| source.original.as_str())
                .collect();
            if !out.ends_with('\n') {
                out.push('\n');
            }
            Ok(out)
        }
        Some(ApplyOutput::Json) => json_list(&all),
        None if all_json => json_list(&all),
        Some(ApplyOutput::Yaml) => Ok(all
            .into_iter()
            .map(yaml)
            .collect::<Result<Vec<_>, _>>()?
            .join("---\n")),
        None => {
            let mut parts = Vec::new();
            for source in sources {
                parts.push(render_yaml_source(source, &yaml)?);
            }
            let parts: Vec<String> = parts.into_iter().filter(|p| !p.is_empty()).collect();
            Ok(parts.join("---\n"))
        }
    }
}

/// One JSON object, or a `List` of several (as `kubectl get -o json`).
fn json_list(all: &[&Value]) -> Result<String, CommandError> {
    let json = |value: &Value| {
        serde_json::to_string_pretty(value)
            .map(|text| text + "\n")
            .map_err(|error| CommandError::Encode(error.to_string()))
    };
    if let [one] = all {
        return json(one);
    }
    let items: Vec<Value> = all.iter().map(|value| (*value).clone()).collect();
    json(&serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items }))
}

/// A source as YAML: its own text where it can be kept, its documents re-serialized otherwise.
fn render_yaml_source(
    source: &Rendered,
    yaml: &dyn Fn(&Value) -> Result<String, CommandError>,
) -> Result<String, CommandError> {
    let mut out = String::new();
    match &source.pieces {
        Some(pieces) if !source.json => {
            for (index, piece) in pieces.iter().enumerate() {
                out.push_str(piece);
                if let Some(document) = source.documents.get(index) {
                    match document.text.as_deref() {
                        Some(text) if !text.is_empty() => out.push_str(text),
                        _ => out.push_str(&yaml(&document.injected)?),
                    }
                }
            }
        }
        _ => {
            let documents: Vec<String> = source
                .documents
                .iter()
                .map(|document| yaml(&document.injected))
                .collect::<Result<_, _>>()?;
            out = documents.join("---\n");
        }
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// A YAML stream cut at its `---` lines: the text between documents (separators, and the
/// blank or comment-only stretches that hold no document) and each document's text. `None`
/// for streams with directives or `...` ends, which are left to the re-serializer.
fn split_documents(text: &str) -> Option<(Vec<String>, Vec<String>)> {
    let mut pieces = vec![String::new()];
    let mut documents = Vec::new();
    let mut current = String::new();
    let holds_content = |text: &str| {
        text.lines()
            .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
    };
    for line in text.split_inclusive('\n') {
        if line.starts_with("...") || line.starts_with('%') {
            return None;
        }
        let separator =
            line.starts_with("---") && line[3..].chars().next().is_none_or(char::is_whitespace);
        if separator {
            if line[3..]
                .trim()
                .split('#')
                .next()
                .is_some_and(|rest| !rest.trim().is_empty())
            {
                return None; // `--- value` or `--- !tag`
            }
            if holds_content(&current) {
                documents.push(std::mem::take(&mut current));
                pieces.push(String::new());
            } else {
                let last = pieces.last_mut().expect("never empty");
                last.push_str(&std::mem::take(&mut current));
            }
            pieces.last_mut().expect("never empty").push_str(line);
        } else {
            current.push_str(line);
        }
    }
    if holds_content(&current) {
        documents.push(current);
        pieces.push(String::new());
    } else {
        pieces.last_mut().expect("never empty").push_str(&current);
    }
    // pieces[i] precedes document i; the last piece follows the last document.
    Some((pieces, documents))
}

/// The change from `original` to `injected`, as insertions into `text`, or `None` where the
/// change is not only added keys and appended list items or the text's layout does not allow
/// them; the result is checked by parsing it again.
pub fn edit_in_place(text: &str, original: &Value, injected: &Value) -> Option<String> {
    let mut edits = Vec::new();
    plan(original, injected, &mut Vec::new(), &mut edits)?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let indented_lists = indents_lists(&lines);
    // (line, depth, text): at one line, the deeper block's lines come first.
    let mut insertions: Vec<(usize, usize, String)> = Vec::new();
    for edit in edits {
        let block = locate(&lines, &edit.path)?;
        let (rendered, indent) = match edit.addition {
            Addition::Key(key, value) => {
                let mut map = serde_json::Map::new();
                map.insert(key, value);
                let rendered = serde_yaml::to_string(&Value::Object(map)).ok()?;
                let rendered = if indented_lists {
                    indent_lists(&rendered)
                } else {
                    rendered
                };
                (rendered, block.indent)
            }
            Addition::Items(items) => {
                if !lines.get(block.first?)?.trim_start().starts_with('-') {
                    return None;
                }
                (
                    serde_yaml::to_string(&Value::Array(items)).ok()?,
                    block.indent,
                )
            }
        };
        let prefix = " ".repeat(indent);
        let indented: String = rendered
            .lines()
            .map(|line| format!("{prefix}{line}\n"))
            .collect();
        insertions.push((block.last? + 1, edit.path.len(), indented));
    }
    // Inserted from the bottom up, and at one line the shallower first, so that the deeper
    // ends up above it.
    insertions.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut out: Vec<String> = lines.iter().map(|line| (*line).to_owned()).collect();
    if let Some(last) = out.last_mut()
        && !last.ends_with('\n')
    {
        last.push('\n');
    }
    for (at, _, lines) in insertions {
        out.insert(at, lines);
    }
    let edited: String = out.concat();
    let reparsed = statefile::parse_documents("", &edited).ok()?;
    (reparsed.len() == 1 && &reparsed[0].value == injected).then_some(edited)
}

/// Whether the document writes a list under a key indented (`key:` then `  - item`) rather
/// than at the key's own indentation, as its first list shows.
fn indents_lists(lines: &[&str]) -> bool {
    let content: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| is_content(line))
        .collect();
    content
        .windows(2)
        .find(|pair| {
            let key = pair[0].split(" #").next().unwrap_or_default().trim_end();
            key.ends_with(':') && pair[1].trim_start().starts_with('-')
        })
        .is_some_and(|pair| indentation(pair[1]) > indentation(pair[0]))
}

/// YAML as serde_yaml writes it (lists at their key's indentation) with every list under a
/// key indented by two more spaces.
fn indent_lists(rendered: &str) -> String {
    let mut out = String::new();
    let mut previous_key: Option<usize> = None;
    let mut shifting: Option<usize> = None;
    for line in rendered.lines() {
        let own = indentation(line);
        let item = line.trim_start().starts_with('-');
        if let Some(at) = shifting {
            if own > at || (own == at && item) {
                out.push_str(&format!("  {line}\n"));
                continue;
            }
            shifting = None;
        }
        if item && previous_key == Some(own) {
            shifting = Some(own);
            out.push_str(&format!("  {line}\n"));
            continue;
        }
        previous_key = line.trim_end().ends_with(':').then_some(own);
        out.push_str(line);
        out.push('\n');
    }
    out
}

enum Addition {
    Key(String, Value),
    Items(Vec<Value>),
}

struct Edit {
    /// Keys from the document's root to the mapping (or list) to add to.
    path: Vec<String>,
    addition: Addition,
}

fn plan(
    original: &Value,
    injected: &Value,
    path: &mut Vec<String>,
    edits: &mut Vec<Edit>,
) -> Option<()> {
    match (original, injected) {
        (Value::Object(before), Value::Object(after)) => {
            if before.keys().any(|key| !after.contains_key(key)) {
                return None;
            }
            for (key, value) in after {
                match before.get(key) {
                    None => edits.push(Edit {
                        path: path.clone(),
                        addition: Addition::Key(key.clone(), value.clone()),
                    }),
                    Some(old) if old == value => {}
                    Some(old) => {
                        path.push(key.clone());
                        plan(old, value, path, edits)?;
                        path.pop();
                    }
                }
            }
            Some(())
        }
        (Value::Array(before), Value::Array(after))
            if after.len() > before.len() && after.starts_with(before) =>
        {
            edits.push(Edit {
                path: path.clone(),
                addition: Addition::Items(after[before.len()..].to_vec()),
            });
            Some(())
        }
        _ => None,
    }
}

/// The lines of a block-style value: the first and last content lines (not blank, not a
/// comment) and the indentation of its entries.
struct Block {
    first: Option<usize>,
    last: Option<usize>,
    indent: usize,
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim();
    !trimmed.is_empty() && !trimmed.starts_with('#')
}

/// The block value at `path` (block-style mappings only on the way), by indentation.
fn locate(lines: &[&str], path: &[String]) -> Option<Block> {
    let (mut start, mut end) = (0, lines.len());
    for key in path {
        let indent = indentation(lines[(start..end).find(|&i| is_content(lines[i]))?]);
        let at = (start..end).find(|&i| {
            let line = lines[i];
            is_content(line)
                && indentation(line) == indent
                && line
                    .trim_start()
                    .strip_prefix(key.as_str())
                    .is_some_and(|rest| {
                        rest.strip_prefix(':').is_some_and(|value| {
                            let value = value.trim();
                            value.is_empty() || value.starts_with('#')
                        })
                    })
        })?;
        let mut stop = at + 1;
        while stop < end {
            let line = lines[stop];
            if is_content(line) {
                let own = indentation(line);
                let sequence_item = own == indent && line.trim_start().starts_with('-');
                if own < indent || (own == indent && !sequence_item) {
                    break;
                }
            }
            stop += 1;
        }
        (start, end) = (at + 1, stop);
    }
    let first = (start..end).find(|&i| is_content(lines[i]));
    let last = (start..end).rev().find(|&i| is_content(lines[i]));
    Some(Block {
        first,
        last,
        indent: indentation(lines[first?]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        statefile::parse_documents("t", text).expect("yaml")[0]
            .value
            .clone()
    }

    #[test]
    fn added_keys_and_items_are_inserted_with_the_indentation_around_them() {
        let text = "# a pod\nkind: Pod\nmetadata:\n  name: web # the name\nspec:\n  containers:\n  - name: app   # main\n    image: registry.example.com/app\n  # end of spec\n";
        let original = yaml(text);
        let mut injected = original.clone();
        injected["spec"]["imagePullSecrets"] = serde_json::json!([{ "name": "regcred" }]);
        injected["metadata"]["annotations"] = serde_json::json!({ "a/b": "x; y" });
        let edited = edit_in_place(text, &original, &injected).expect("editable");
        assert_eq!(
            edited,
            "# a pod\nkind: Pod\nmetadata:\n  name: web # the name\n  annotations:\n    a/b: x; y\nspec:\n  containers:\n  - name: app   # main\n    image: registry.example.com/app\n  imagePullSecrets:\n  - name: regcred\n  # end of spec\n"
        );
        // Appended to an existing list, at its items' indentation.
        let text = "spec:\n  imagePullSecrets:\n    - name: old  # kept\n  containers: []\n";
        let original = yaml(text);
        let mut injected = original.clone();
        injected["spec"]["imagePullSecrets"] =
            serde_json::json!([{ "name": "old" }, { "name": "new" }]);
        assert_eq!(
            edit_in_place(text, &original, &injected).as_deref(),
            Some(
                "spec:\n  imagePullSecrets:\n    - name: old  # kept\n    - name: new\n  containers: []\n"
            )
        );
    }

    #[test]
    fn a_new_list_follows_the_documents_list_indentation() {
        let text = "spec:\n  containers:\n    - name: app\n      image: registry.example.com/app\n";
        let original = yaml(text);
        let mut injected = original.clone();
        injected["spec"]["imagePullSecrets"] = serde_json::json!([{ "name": "regcred" }]);
        assert_eq!(
            edit_in_place(text, &original, &injected).as_deref(),
            Some(
                "spec:\n  containers:\n    - name: app\n      image: registry.example.com/app\n  imagePullSecrets:\n    - name: regcred\n"
            )
        );
    }

    #[test]
    fn a_layout_that_cannot_be_edited_in_place_is_refused() {
        let text = "spec: {containers: []}\n";
        let original = yaml(text);
        let mut injected = original.clone();
        injected["spec"]["imagePullSecrets"] = serde_json::json!([{ "name": "regcred" }]);
        assert_eq!(edit_in_place(text, &original, &injected), None);
        // A changed value is not an insertion.
        let text = "metadata:\n  annotations:\n    k: v\n";
        let original = yaml(text);
        let mut injected = original.clone();
        injected["metadata"]["annotations"]["k"] = "w".into();
        assert_eq!(edit_in_place(text, &original, &injected), None);
    }

    #[test]
    fn a_stream_is_cut_at_its_separators_and_comment_only_stretches_stay_between() {
        let (pieces, documents) =
            split_documents("# head\n---\na: 1\n--- # two\nb: 2\n---\n# only a comment\n")
                .expect("cut");
        assert_eq!(documents, ["a: 1\n", "b: 2\n"]);
        assert_eq!(
            pieces,
            ["# head\n---\n", "--- # two\n", "---\n# only a comment\n"]
        );
        assert!(split_documents("%YAML 1.2\n---\na: 1\n").is_none());
    }
}
