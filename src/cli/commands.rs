//! The offline commands: `review`, `apply` and `explain`, over `--state` files.
//!
//! They share the webhook's state model and decision code, so what they print is what the
//! webhook would do with the same cluster state.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::Value;

use crate::admission::decision::decide;
use crate::admission::pod::PodView;
use crate::admission::review::{self, ReviewError};
use crate::cli::explain::{self, ImageExplanation};
use crate::cluster::statefile::{self, InputError, Source};
use crate::state::snapshot::{ClusterState, Copies};

/// Failures of an offline command; `exit_code` is what the process returns.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{0}")]
    Review(#[from] ReviewError),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    #[error("cannot encode output: {0}")]
    Encode(String),
    #[error("{0}")]
    Usage(String),
    #[error("live cluster: {0}")]
    Cluster(String),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Input(_) => 2,
            CommandError::Review(_) => 3,
            CommandError::Usage(_) => 2,
            CommandError::Output(_) | CommandError::Encode(_) | CommandError::Cluster(_) => 1,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// Cluster state: YAML or JSON files with Secrets, Namespaces, PullSecretRules and
    /// ClusterPullSecrets (several documents and `kind: List` are fine, e.g. the output of
    /// `kubectl get secrets,namespaces,pullsecretrules,clusterpullsecrets -A -o yaml`).
    /// Repeat for several files; `-` reads standard input.
    #[arg(
        long = "state",
        value_name = "FILE",
        env = "PULLSECRET_INJECTOR_STATE",
        value_delimiter = ','
    )]
    pub state_files: Vec<PathBuf>,
    /// The injector's own namespace, which ClusterPullSecrets never serve (as in the cluster).
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "PULLSECRET_INJECTOR_OWN_NAMESPACE"
    )]
    pub own_namespace: Option<String>,
    /// Answer as a webhook running the ClusterPullSecret controller (`serve
    /// --enable-controller`): a ClusterPullSecret's copy counts in every namespace it selects,
    /// even where it is not written yet. Without it, only copies that exist are injected.
    #[arg(long, env = "PULLSECRET_INJECTOR_ENABLE_CONTROLLER")]
    pub enable_controller: bool,
}

impl StateArgs {
    fn load(&self) -> Result<std::sync::Arc<ClusterState>, CommandError> {
        if self.state_files.is_empty() {
            return Err(CommandError::Usage(
                "--state FILE is required (only `explain pod/NAME` reads the live cluster)"
                    .to_owned(),
            ));
        }
        let copies = if self.enable_controller {
            Copies::Controller
        } else {
            Copies::Manual
        };
        Ok(statefile::load_state(
            &self.state_files,
            self.own_namespace.as_deref(),
            copies,
        )?)
    }
}

#[derive(Debug, Clone, Args)]
pub struct NamespaceArg {
    /// Namespace of the pods (for manifests that do not set one).
    #[arg(
        short = 'n',
        long = "namespace",
        default_value = "default",
        env = "PULLSECRET_INJECTOR_NAMESPACE"
    )]
    pub name: String,
}

/// `review`: one AdmissionReview on stdin, the webhook's response review on stdout.
#[derive(Debug, Clone, Args)]
pub struct ReviewArgs {
    #[command(flatten)]
    pub state: StateArgs,
}

pub fn review(args: &ReviewArgs) -> Result<(), CommandError> {
    let state = args.state.load()?;
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .map_err(|error| InputError::Unreadable {
            source_name: "<stdin>".to_owned(),
            reason: error.to_string(),
        })?;
    let reviewed = review::review(&body, &state)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &reviewed.response)
        .map_err(|e| CommandError::Encode(e.to_string()))?;
    writeln!(out)?;
    Ok(())
}

/// `apply`: manifests with the injection applied, as YAML.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Manifests to transform (YAML or JSON, several documents); `-` reads standard input.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "MANIFEST",
        required = true
    )]
    pub manifests: Vec<PathBuf>,
    #[command(flatten)]
    pub namespace: NamespaceArg,
}

pub fn apply(args: &ApplyArgs) -> Result<(), CommandError> {
    let state = args.state.load()?;
    let mut rendered = Vec::new();
    for file in &args.manifests {
        let source = Source::from_arg(file);
        for document in statefile::parse_documents(&source.name(), &source.read()?)? {
            let mut value = document.value;
            inject_into_manifest(&mut value, &args.namespace.name, &state);
            rendered.push(
                serde_yaml::to_string(&value).map_err(|e| CommandError::Encode(e.to_string()))?,
            );
        }
    }
    let mut out = std::io::stdout().lock();
    out.write_all(rendered.join("---\n").as_bytes())?;
    Ok(())
}

/// Applies the decision to a Pod, to the pod template of a workload, or to every item of a
/// List; any other document is left as it is.
pub fn inject_into_manifest(manifest: &mut Value, default_namespace: &str, state: &ClusterState) {
    let namespace = manifest
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(default_namespace)
        .to_owned();
    let text_at = |pointer: &str| {
        manifest
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (kind, name) = (text_at("/kind"), text_at("/metadata/name"));
    let template_path = match kind.as_str() {
        "Pod" => "",
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => "/spec/template",
        "CronJob" => "/spec/jobTemplate/spec/template",
        kind if kind.ends_with("List") => {
            if let Some(Value::Array(items)) = manifest.get_mut("items") {
                for item in items {
                    inject_into_manifest(item, &namespace, state);
                }
            }
            return;
        }
        _ => return,
    };
    let Some(template) = manifest.pointer_mut(template_path) else {
        return;
    };
    let Ok(pod) = PodView::deserialize(&*template) else {
        return;
    };
    let decision = decide(&pod, &namespace, state);
    for warning in &decision.warnings {
        eprintln!("Warning: {kind}/{name}: {warning}");
    }
    // The patch was made for this very document; if it did not apply, leave it untouched.
    let mut patched = template.clone();
    if json_patch::patch(&mut patched, &decision.patch).is_ok() {
        *template = patched;
    }
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// `explain`: how the kubelet's matching plays out for each image.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub namespace: NamespaceArg,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Container images, as they would appear in a pod spec; or one `pod/NAME`: that existing
    /// pod, read with the namespace's state from the live cluster (KUBECONFIG, read-only;
    /// without --state).
    #[arg(value_name = "IMAGE|pod/NAME", required = true)]
    pub images: Vec<String>,
}

pub fn explain(args: &ExplainArgs) -> Result<(), CommandError> {
    if let Some(pod) = args
        .images
        .iter()
        .find_map(|target| target.strip_prefix("pod/"))
    {
        if args.images.len() > 1 || !args.state.state_files.is_empty() {
            return Err(CommandError::Usage(
                "explain pod/NAME takes one pod and reads the live cluster: no images, no --state"
                    .to_owned(),
            ));
        }
        return explain_live_pod(args, pod);
    }
    let state = args.state.load()?;
    let explanations: Vec<ImageExplanation> = args
        .images
        .iter()
        .map(|image| explain::explain_image(image, &args.namespace.name, &state))
        .collect();
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &explanations)
                .map_err(|e| CommandError::Encode(e.to_string()))?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            for explanation in &explanations {
                write!(out, "{explanation}")?;
            }
        }
    }
    Ok(())
}

/// `explain -n NS pod/NAME` against the live cluster.
fn explain_live_pod(args: &ExplainArgs, pod: &str) -> Result<(), CommandError> {
    let namespace = args.namespace.name.as_str();
    let own = args.state.own_namespace.as_deref();
    let cluster = |error: &dyn std::fmt::Display| CommandError::Cluster(error.to_string());
    // One TLS provider for the kube client, as `serve` installs it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| cluster(&e))?;
    let (pod, state) = runtime.block_on(async {
        let client = kube::Client::try_default().await.map_err(|e| cluster(&e))?;
        crate::cluster::live::load_pod(&client, namespace, pod, own)
            .await
            .map_err(|e| cluster(&e))
    })?;
    let explanation = crate::cli::pod_explain::explain_pod(&pod, &state, own);
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &explanation)
                .map_err(|e| CommandError::Encode(e.to_string()))?;
            writeln!(out)?;
        }
        OutputFormat::Text => write!(out, "{explanation}")?,
    }
    Ok(())
}
