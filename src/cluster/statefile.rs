//! Reading manifests and `--state` files: YAML or JSON, several documents per file, lists
//! flattened, so `kubectl get secrets,namespaces,pullsecretrules,clusterpullsecrets -A -o yaml
//! > state.yaml` works as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use serde::Deserialize;
use serde_json::Value;

use crate::state::crd::{ClusterPullSecret, GROUP, PullSecretRule};
use crate::state::snapshot::{ClusterState, Copies, StateBuilder};
use crate::text::clip;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{source_name}: cannot read: {reason}")]
    Unreadable { source_name: String, reason: String },
    #[error("{source_name}: document {document}: invalid YAML/JSON: {reason}")]
    Syntax {
        source_name: String,
        document: usize,
        reason: String,
    },
    #[error("{source_name}: document {document}: not an object")]
    NotAnObject {
        source_name: String,
        document: usize,
    },
    #[error("{source_name}: document {document}: invalid {kind}: {reason}")]
    InvalidObject {
        source_name: String,
        document: usize,
        kind: &'static str,
        reason: String,
    },
}

/// Where documents come from: a file, or standard input for `-`.
#[derive(Debug, Clone)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    pub fn from_arg(arg: &Path) -> Source {
        if arg == Path::new("-") {
            Source::Stdin
        } else {
            Source::File(arg.to_owned())
        }
    }

    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "<stdin>".to_owned(),
            Source::File(path) => path.display().to_string(),
        }
    }

    pub fn read(&self) -> Result<String, InputError> {
        let result = match self {
            Source::Stdin => std::io::read_to_string(std::io::stdin()),
            Source::File(path) => std::fs::read_to_string(path),
        };
        result.map_err(|error| InputError::Unreadable {
            source_name: self.name(),
            reason: error.to_string(),
        })
    }
}

/// One top-level document (1-based number) of a source.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub number: usize,
    pub value: Value,
}

/// Splits a source's text into its documents; empty YAML documents are skipped.
pub fn parse_documents(source_name: &str, text: &str) -> Result<Vec<Document>, InputError> {
    let syntax = |document: usize, reason: String| InputError::Syntax {
        source_name: source_name.to_owned(),
        document,
        reason: clip(&reason, 200).into_owned(),
    };
    let mut values = Vec::new();
    if text.trim_start().starts_with(['{', '[']) {
        for (index, value) in serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .enumerate()
        {
            values.push(value.map_err(|error| syntax(index + 1, error.to_string()))?);
        }
    } else {
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            values.push(
                Value::deserialize(document)
                    .map_err(|error| syntax(index + 1, error.to_string()))?,
            );
        }
    }
    let mut documents = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        let number = index + 1;
        match value {
            Value::Null => continue,
            Value::Object(_) => documents.push(Document { number, value }),
            _ => {
                return Err(InputError::NotAnObject {
                    source_name: source_name.to_owned(),
                    document: number,
                });
            }
        }
    }
    Ok(documents)
}

/// `kind: List` (and `*List`) documents replaced by their items, recursively.
pub fn flatten_lists(value: Value, out: &mut Vec<Value>) {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.ends_with("List"));
    match value {
        Value::Object(mut object) if is_list => {
            if let Some(Value::Array(items)) = object.remove("items") {
                for item in items {
                    flatten_lists(item, out);
                }
            }
        }
        other => out.push(other),
    }
}

/// What one state source held: how many objects were read as state, and the kinds it held
/// that state files do not use (a manifests file given as `--state` shows up here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSummary {
    pub source_name: String,
    /// Secrets (of any type), Namespaces, PullSecretRules and ClusterPullSecrets.
    pub read: usize,
    /// Other objects, counted by kind (`<none>` for an object without one).
    pub ignored: BTreeMap<String, usize>,
}

/// Builds cluster state from `--state` files: Secrets, Namespaces, PullSecretRules and
/// ClusterPullSecrets; other kinds are ignored. `own_namespace` is the injector's namespace,
/// which cluster credentials never serve; `copies` says whether a controller writes the
/// ClusterPullSecrets' copies.
pub fn load_state(
    paths: &[PathBuf],
    own_namespace: Option<&str>,
    copies: Copies,
) -> Result<Arc<ClusterState>, InputError> {
    load_state_summarized(paths, own_namespace, copies).map(|(state, _)| state)
}

/// [`load_state`], with what each source held.
pub fn load_state_summarized(
    paths: &[PathBuf],
    own_namespace: Option<&str>,
    copies: Copies,
) -> Result<(Arc<ClusterState>, Vec<SourceSummary>), InputError> {
    let mut builder = StateBuilder::new();
    builder.set_own_namespace(own_namespace);
    builder.set_copies(copies);
    let mut summaries = Vec::with_capacity(paths.len());
    for path in paths {
        let source = Source::from_arg(path);
        summaries.push(add_state_text(
            &mut builder,
            &source.name(),
            &source.read()?,
        )?);
    }
    Ok((builder.snapshot(), summaries))
}

/// Cluster state from one text in state-file form (used by tests and benchmarks too).
pub fn state_from_str(source_name: &str, text: &str) -> Result<Arc<ClusterState>, InputError> {
    let mut builder = StateBuilder::new();
    add_state_text(&mut builder, source_name, text)?;
    Ok(builder.snapshot())
}

fn add_state_text(
    builder: &mut StateBuilder,
    source_name: &str,
    text: &str,
) -> Result<SourceSummary, InputError> {
    let mut summary = SourceSummary {
        source_name: source_name.to_owned(),
        ..SourceSummary::default()
    };
    for document in parse_documents(source_name, text)? {
        let mut objects = Vec::new();
        flatten_lists(document.value, &mut objects);
        for object in objects {
            let invalid = |kind: &'static str, reason: String| InputError::InvalidObject {
                source_name: source_name.to_owned(),
                document: document.number,
                kind,
                reason,
            };
            let ours = object
                .get("apiVersion")
                .and_then(Value::as_str)
                .is_some_and(|version| version.split('/').next() == Some(GROUP));
            match object.get("kind").and_then(Value::as_str) {
                Some("Secret") => {
                    // serde's message could quote a data value; name only the problem.
                    let mut secret: Secret = serde_json::from_value(object).map_err(|_| {
                        invalid(
                            "Secret",
                            "not a valid Secret (data values must be base64 strings)".to_owned(),
                        )
                    })?;
                    // Like kubectl, an object without a namespace lands in "default".
                    secret
                        .metadata
                        .namespace
                        .get_or_insert_with(|| "default".to_owned());
                    builder.apply_secret(&secret);
                }
                Some("Namespace") => {
                    let namespace: Namespace = serde_json::from_value(object).map_err(|error| {
                        invalid("Namespace", clip(&error.to_string(), 200).into_owned())
                    })?;
                    builder.apply_namespace(&namespace);
                }
                Some("PullSecretRule") if ours => {
                    let mut rule: PullSecretRule =
                        serde_json::from_value(object).map_err(|error| {
                            invalid("PullSecretRule", clip(&error.to_string(), 200).into_owned())
                        })?;
                    rule.metadata
                        .namespace
                        .get_or_insert_with(|| "default".to_owned());
                    builder.apply_rule(&rule);
                }
                Some("ClusterPullSecret") if ours => {
                    let resource: ClusterPullSecret =
                        serde_json::from_value(object).map_err(|error| {
                            invalid(
                                "ClusterPullSecret",
                                clip(&error.to_string(), 200).into_owned(),
                            )
                        })?;
                    builder.apply_cluster_pull_secret(&resource);
                }
                kind => {
                    let kind = kind.unwrap_or("<none>").to_owned();
                    *summary.ignored.entry(kind).or_default() += 1;
                    continue;
                }
            }
            summary.read += 1;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests;
