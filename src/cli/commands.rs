//! The offline commands: `review`, `apply` and `explain`, over `--state` files.
//!
//! They share the webhook's state model and decision code, so what they print is what the
//! webhook would do with the same cluster state. Warnings go to stderr as `Warning: ...` lines,
//! also where the input is probably not what the user meant (a namespace the state knows
//! nothing about, a manifests file given as `--state`, an empty state): the answer would
//! otherwise be a confident "no secret".

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::Value;

use crate::admission::decision::decide;
use crate::admission::pod::PodView;
use crate::admission::review::{self, Outcome, ReviewError};
use crate::cli::explain::{self, ImageExplanation};
use crate::cluster::statefile::{self, InputError, Source, SourceSummary};
use crate::state::snapshot::{ClusterState, Copies, INJECT_LABEL, Mode};
use crate::text::quote;

/// Exit code of a command that could not complete for a reason other than its input: output
/// that cannot be written, an internal error, an unreachable live cluster.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a usage or input error: flags, unreadable or invalid files, a review that is
/// not one.
pub const EXIT_INPUT: u8 = 2;

/// Failures of an offline command; `exit_code` is what the process returns.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{source_name}: {error}")]
    Review {
        source_name: String,
        error: ReviewError,
    },
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    #[error("cannot encode output: {0}")]
    Encode(String),
    /// The patch made for a document did not apply to it: a bug, never to pass unnoticed.
    #[error(
        "{source_name}: document {document}: {object}: internal error: the injection's patch does not apply ({reason}); nothing was written"
    )]
    PatchFailed {
        source_name: String,
        document: usize,
        object: String,
        reason: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error("live cluster: {0}")]
    Cluster(String),
}

impl CommandError {
    /// Output to a reader that has gone (`| head`): not a failure, nothing left to say.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CommandError::Output(error) if error.kind() == std::io::ErrorKind::BrokenPipe)
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Input(_) | CommandError::Review { .. } | CommandError::Usage(_) => {
                EXIT_INPUT
            }
            CommandError::Output(_)
            | CommandError::Encode(_)
            | CommandError::PatchFailed { .. }
            | CommandError::Cluster(_) => EXIT_FAILURE,
        }
    }
}

pub(crate) fn warn(warning: &str) {
    eprintln!("Warning: {warning}");
}

/// How to dump a cluster's state for `--state`, shown by `review`, `apply` and `explain --help`
/// and in docs/configuration.md: one `kubectl get` per kind, so a cluster without the CRDs
/// loses only the rules, and only the two registry-credential Secret types (never
/// ServiceAccount tokens or TLS keys).
pub const STATE_RECIPE: &str = "\
Cluster state for --state, read from a live cluster (the files hold registry credentials: keep
them private and delete them after use):

  kubectl get namespaces -o yaml > namespaces.yaml
  kubectl get secrets -A --field-selector type=kubernetes.io/dockerconfigjson -o yaml > secrets.yaml
  kubectl get secrets -A --field-selector type=kubernetes.io/dockercfg -o yaml > legacy.yaml
  kubectl get pullsecretrules,clusterpullsecrets -A -o yaml > rules.yaml  # needs the CRDs

  --state namespaces.yaml,secrets.yaml,legacy.yaml,rules.yaml";

/// How the webhook being answered for runs: the `serve` flags that change its answers.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
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
    /// Answer as a webhook started with `serve --shadow`: namespaces without a
    /// `pullsecret-injector.io/mode` label are in shadow mode (decided, never changed).
    #[arg(long, env = "PULLSECRET_INJECTOR_SHADOW")]
    pub shadow: bool,
}

impl ServerArgs {
    /// The mode of namespaces without a mode label.
    pub fn default_mode(&self) -> Mode {
        if self.shadow { Mode::Shadow } else { Mode::On }
    }

    /// Who writes the ClusterPullSecrets' copies.
    pub fn copies(&self) -> Copies {
        if self.enable_controller {
            Copies::Controller
        } else {
            Copies::Manual
        }
    }
}

/// The state files (required) and how the server runs, for `review` and `apply`.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// Cluster state: YAML or JSON files with Secrets, Namespaces, PullSecretRules and
    /// ClusterPullSecrets (several documents and `kind: List` are fine; how to dump them: the
    /// end of `--help`). Repeat or separate with commas for several files; `-` reads standard
    /// input.
    #[arg(
        long = "state",
        value_name = "FILE",
        env = "PULLSECRET_INJECTOR_STATE",
        value_delimiter = ',',
        required = true
    )]
    pub state_files: Vec<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The state, after warning about sources that held something else and about a state that
/// holds nothing.
pub(crate) fn load_state(
    files: &[PathBuf],
    server: &ServerArgs,
) -> Result<Arc<ClusterState>, CommandError> {
    if files.is_empty() {
        return Err(CommandError::Usage(
            "--state FILE is required (only `explain pod/NAME` reads the live cluster)".to_owned(),
        ));
    }
    let (state, summaries) =
        statefile::load_state_summarized(files, server.own_namespace.as_deref(), server.copies())?;
    for warning in state_warnings(&state, &summaries) {
        warn(&warning);
    }
    if !server.shadow {
        return Ok(state);
    }
    Ok(Arc::new(
        ClusterState::clone(&state).with_default_mode(server.default_mode()),
    ))
}

/// Sources with objects state files do not use, and a state that holds nothing at all.
pub fn state_warnings(state: &ClusterState, summaries: &[SourceSummary]) -> Vec<String> {
    let mut warnings = Vec::new();
    for summary in summaries
        .iter()
        .filter(|summary| !summary.ignored.is_empty())
    {
        let kinds: Vec<String> = summary
            .ignored
            .iter()
            .map(|(kind, count)| format!("{count} {kind}"))
            .collect();
        let hint = if summary.read == 0 {
            ": is it a manifests file? --state takes Secrets, Namespaces, PullSecretRules and ClusterPullSecrets"
        } else {
            ""
        };
        warnings.push(format!(
            "{}: ignored objects that are not cluster state ({}){hint}",
            summary.source_name,
            kinds.join(", ")
        ));
    }
    if holds_nothing(state) {
        warnings.push(
            "the state holds no registry-credential Secret, Namespace, PullSecretRule or ClusterPullSecret: every answer is \"no secret\"".to_owned(),
        );
    }
    warnings
}

fn holds_nothing(state: &ClusterState) -> bool {
    state.namespace_count() == 0 && state.credentials().is_empty()
}

/// A namespace the state knows nothing about, probably misspelt (not said again when the
/// state holds nothing at all), or one known only from its Secrets or rules: its labels (the
/// opt-out, the mode, ClusterPullSecret selectors) are then unknown, and the answer may be one
/// the webhook would not give.
pub fn unknown_namespace_warning(state: &ClusterState, namespace: &str) -> Option<String> {
    if holds_nothing(state) {
        return None;
    }
    match state.namespace(namespace) {
        None => Some(format!(
            "namespace {} does not appear in the state (no Namespace object, registry-credential Secret or PullSecretRule of it): only ClusterPullSecrets can serve it; is the name right?",
            quote(namespace)
        )),
        Some(ns) if ns.labels().is_none() => Some(format!(
            "the state has no Namespace object for {}: its labels (the {INJECT_LABEL}=false opt-out, the mode, ClusterPullSecret selectors) are unknown; add `kubectl get namespaces -o yaml` to --state",
            quote(namespace)
        )),
        Some(_) => None,
    }
}

/// `review`: one AdmissionReview, the webhook's response review on stdout.
#[derive(Debug, Clone, Args)]
pub struct ReviewArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// The AdmissionReview (JSON), as the apiserver sends it; `-` (the default) reads standard
    /// input.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "REVIEW",
        default_value = "-"
    )]
    pub review: PathBuf,
}

pub fn review(args: &ReviewArgs) -> Result<(), CommandError> {
    let state = load_state(&args.state.state_files, &args.state.server)?;
    let source = Source::from_arg(&args.review);
    let body = source.read()?;
    let reviewed =
        review::review(body.as_bytes(), &state).map_err(|error| CommandError::Review {
            source_name: source.name(),
            error,
        })?;
    if reviewed.outcome == Outcome::NotApplicable {
        warn(&not_applicable_hint(body.as_bytes()));
    } else if let Some(warning) = unknown_namespace_warning(&state, &reviewed.namespace) {
        warn(&warning);
    }
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &reviewed.response).map_err(encode_error)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Why a review was answered `allowed` unchanged without a decision: what it is about.
fn not_applicable_hint(body: &[u8]) -> String {
    let request = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|review| review.get("request").cloned())
        .unwrap_or_default();
    let text = |pointer: &str| {
        request
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let group = text("/kind/group");
    let kind = match (group.as_str(), text("/kind/kind")) {
        ("", kind) => kind,
        (group, kind) => format!("{group}/{kind}"),
    };
    let subresource = text("/subResource");
    let what = if subresource.is_empty() {
        format!("{} {kind}", text("/operation"))
    } else {
        format!("{} {kind} (subresource {subresource})", text("/operation"))
    };
    let object = if request.get("object").is_none_or(Value::is_null) {
        ", or without an object"
    } else {
        ""
    };
    format!(
        "the review is for {what}{object}, not a Pod CREATE: the webhook allows it unchanged (it decides pods at creation only)"
    )
}

/// Where a document comes from, for messages.
#[derive(Debug, Clone, Copy)]
pub struct Location<'a> {
    pub source_name: &'a str,
    /// 1-based, as in input errors.
    pub document: usize,
}

/// Where the pod template of each workload kind is, as a JSON pointer (`""`: the Pod itself).
pub fn pod_template_path(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Applies the decision to manifests, collecting what `apply` reports on stderr.
pub struct Injector<'a> {
    state: &'a ClusterState,
    warnings: Vec<String>,
    /// Namespaces of the pods seen, for one warning per unknown namespace at the end.
    namespaces: BTreeSet<String>,
}

impl<'a> Injector<'a> {
    pub fn new(state: &'a ClusterState) -> Injector<'a> {
        Injector {
            state,
            warnings: Vec::new(),
            namespaces: BTreeSet::new(),
        }
    }

    /// Applies the decision to a Pod, to the pod template of a workload, or to every item of
    /// a List; any other document is left as it is. A template that is not a readable pod
    /// template is an input error; a patch that does not apply is an internal error. Returns
    /// how many Pods and workloads the manifest holds.
    pub fn inject(
        &mut self,
        manifest: &mut Value,
        default_namespace: &str,
        at: &Location<'_>,
    ) -> Result<usize, CommandError> {
        let namespace = manifest
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|namespace| !namespace.is_empty())
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
        let object = format!("{kind}/{name}");
        let Some(template_path) = pod_template_path(&kind) else {
            let mut workloads = 0;
            if kind.ends_with("List")
                && let Some(Value::Array(items)) = manifest.get_mut("items")
            {
                for item in items {
                    workloads += self.inject(item, &namespace, at)?;
                }
            }
            return Ok(workloads);
        };
        let Some(template) = manifest.pointer_mut(template_path) else {
            self.warnings.push(format!(
                "{}: document {}: {object} has no pod template at {}; left unchanged",
                at.source_name,
                at.document,
                template_path.trim_start_matches('/').replace('/', ".")
            ));
            return Ok(1);
        };
        let pod = PodView::deserialize(&*template).map_err(|error| InputError::InvalidObject {
            source_name: at.source_name.to_owned(),
            document: at.document,
            kind: "pod template",
            reason: format!("{object}: {error}"),
        })?;
        self.namespaces.insert(namespace.clone());
        let decision = decide(&pod, &namespace, self.state);
        self.warnings.extend(
            decision
                .warnings
                .iter()
                .map(|warning| format!("{object}: {warning}")),
        );
        json_patch::patch(template, &decision.patch).map_err(|error| {
            CommandError::PatchFailed {
                source_name: at.source_name.to_owned(),
                document: at.document,
                object,
                reason: error.to_string(),
            }
        })?;
        Ok(1)
    }

    /// The warnings so far, then one per namespace the state knows nothing about.
    pub fn into_warnings(self) -> Vec<String> {
        let state = self.state;
        let mut warnings = self.warnings;
        warnings.extend(
            self.namespaces
                .iter()
                .filter_map(|namespace| unknown_namespace_warning(state, namespace)),
        );
        warnings
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
    /// Cluster state files, as for `review` and `apply` (how to dump them: the end of
    /// `--help`). Required for images; not allowed with `pod/NAME`, which reads the live
    /// cluster.
    #[arg(
        long = "state",
        value_name = "FILE",
        env = "PULLSECRET_INJECTOR_STATE",
        value_delimiter = ','
    )]
    pub state_files: Vec<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// The namespace whose secrets, rules and labels the images are explained against (for
    /// `pod/NAME`: the pod's namespace).
    #[arg(
        short = 'n',
        long = "namespace",
        default_value = "default",
        env = "PULLSECRET_INJECTOR_NAMESPACE"
    )]
    pub namespace: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Images, as they would appear in a pod spec (a container's `image` or an image volume's
    /// `reference`: the kubelet looks both up alike); or one `pod/NAME` (also `pods/NAME`,
    /// `po/NAME`, as kubectl takes them): that existing pod, read with the namespace's state
    /// from the live cluster (KUBECONFIG, read-only; without --state), every image of it
    /// explained. A Docker Hub image of a user called `pod`, `pods` or `po` is written
    /// `docker.io/pods/NAME`.
    #[arg(value_name = "IMAGE|pod/NAME", required = true)]
    pub images: Vec<String>,
}

/// The pod of `pod/NAME`, `pods/NAME` or `po/NAME`, as kubectl reads them.
fn pod_target(target: &str) -> Option<&str> {
    ["pod/", "pods/", "po/"]
        .iter()
        .find_map(|prefix| target.strip_prefix(prefix))
}

pub fn explain(args: &ExplainArgs) -> Result<(), CommandError> {
    if let Some(pod) = args.images.iter().find_map(|target| pod_target(target)) {
        if args.images.len() > 1 || !args.state_files.is_empty() {
            return Err(CommandError::Usage(
                "explain pod/NAME takes one pod and reads the live cluster: no images, no --state"
                    .to_owned(),
            ));
        }
        return explain_live_pod(args, pod);
    }
    let state = load_state(&args.state_files, &args.server)?;
    if let Some(warning) = unknown_namespace_warning(&state, &args.namespace) {
        warn(&warning);
    }
    let explanations: Vec<ImageExplanation> = args
        .images
        .iter()
        .map(|image| explain::explain_image(image, &args.namespace, &state))
        .collect();
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &explanations).map_err(encode_error)?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            for explanation in &explanations {
                write!(out, "{explanation}")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// A JSON encoding error, which is also how a write to a closed pipe shows up through serde.
fn encode_error(error: serde_json::Error) -> CommandError {
    match error.io_error_kind() {
        Some(kind) => CommandError::Output(std::io::Error::from(kind)),
        None => CommandError::Encode(error.to_string()),
    }
}

/// `explain -n NS pod/NAME` against the live cluster.
fn explain_live_pod(args: &ExplainArgs, pod: &str) -> Result<(), CommandError> {
    let namespace = args.namespace.as_str();
    let own = args.server.own_namespace.as_deref();
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
    let state = Arc::new(ClusterState::clone(&state).with_default_mode(args.server.default_mode()));
    let explanation = crate::cli::pod_explain::explain_pod(&pod, &state, own);
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &explanation).map_err(encode_error)?;
            writeln!(out)?;
        }
        OutputFormat::Text => write!(out, "{explanation}")?,
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_that_does_not_apply_is_a_one_line_internal_error() {
        let error = CommandError::PatchFailed {
            source_name: "m.yaml".to_owned(),
            document: 3,
            object: "Job/nightly".to_owned(),
            reason: "path /metadata does not exist".to_owned(),
        };
        assert_eq!(error.exit_code(), EXIT_FAILURE);
        let message = error.to_string();
        assert!(
            message.starts_with("m.yaml: document 3: Job/nightly: internal error"),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn every_workload_kind_has_its_pod_template_path() {
        for (kind, path) in [
            ("Pod", Some("")),
            ("Deployment", Some("/spec/template")),
            ("StatefulSet", Some("/spec/template")),
            ("DaemonSet", Some("/spec/template")),
            ("ReplicaSet", Some("/spec/template")),
            ("ReplicationController", Some("/spec/template")),
            ("Job", Some("/spec/template")),
            ("CronJob", Some("/spec/jobTemplate/spec/template")),
            ("ConfigMap", None),
            ("PodTemplate", None),
        ] {
            assert_eq!(pod_template_path(kind), path, "{kind}");
        }
    }
}
