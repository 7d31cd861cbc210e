//! The AdmissionReview envelope: request bytes in, response review out.
//!
//! The webhook handler and the `review` command both call [`review`], so the CLI answers exactly
//! what the server would. Every readable review gets `allowed: true` with its uid echoed; only a
//! body that is not an AdmissionReview at all is an error (the server turns it into HTTP 400).

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine;
use base64::prelude::BASE64_STANDARD;

use kube::core::admission::Operation;
use serde::de::{Deserialize, IgnoredAny};
use serde::{Serialize, Serializer};

use crate::admission::decision::{self, Decision};
use crate::admission::pod::PodView;
use crate::state::snapshot::{ClusterState, Mode};
use crate::text::clip;

pub const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
const REVIEW_KIND: &str = "AdmissionReview";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("request body is not an AdmissionReview: {0}")]
    Malformed(String),
    #[error(
        "unsupported review {0:?}: this webhook answers admission.k8s.io/v1 AdmissionReview only"
    )]
    Unsupported(String),
    #[error("AdmissionReview has no request")]
    MissingRequest,
}

impl ReviewError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReviewError::Malformed(_) => "malformed",
            ReviewError::Unsupported(_) => "unsupported",
            ReviewError::MissingRequest => "missing_request",
        }
    }
}

/// What happened to one review, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Injected,
    Unchanged,
    OptedOut,
    /// A pod of a namespace in shadow mode: decided, not changed (whether it would have got
    /// secrets is in the decision).
    Shadow,
    /// Not a Pod CREATE (another kind, a subresource, UPDATE, ...): allowed as is.
    NotApplicable,
    /// A Pod CREATE whose object could not be read: allowed as is, with a warning.
    UnreadablePod,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::Unchanged => "unchanged",
            Outcome::OptedOut => "opted_out",
            Outcome::Shadow => "shadow",
            Outcome::NotApplicable => "not_applicable",
            Outcome::UnreadablePod => "unreadable_pod",
        }
    }
}

/// The answer to one review, with what logs and metrics need to know about it.
#[derive(Debug)]
pub struct Reviewed {
    pub response: ResponseReview,
    pub uid: String,
    pub namespace: String,
    pub pod: String,
    pub operation: &'static str,
    pub outcome: Outcome,
    pub decision: Decision,
}

/// Answers one AdmissionReview body against a snapshot of the cluster.
pub fn review(body: &[u8], state: &ClusterState) -> Result<Reviewed, ReviewError> {
    match serde_json::from_slice::<Envelope<'_, PodView>>(body) {
        Ok(envelope) => {
            let request = into_request(envelope)?;
            Ok(review_pod(request, state))
        }
        // The envelope may be fine while the object is not a readable pod: still answer the uid.
        Err(pod_error) => match serde_json::from_slice::<Envelope<'_, IgnoredAny>>(body) {
            Ok(envelope) => {
                let request = into_request(envelope)?;
                Ok(unreadable_object(request, &pod_error))
            }
            Err(error) => Err(ReviewError::Malformed(
                clip(&error.to_string(), 200).into_owned(),
            )),
        },
    }
}

/// The `AdmissionReview` envelope, read in one pass.
///
/// Local types rather than kube's `AdmissionReview`: that one flattens its `TypeMeta` (serde
/// then buffers the whole body into an intermediate tree and reads it twice) and builds what
/// this webhook never reads (`userInfo`, `options`, `oldObject`). Short strings are borrowed
/// from the body. Required fields are those kube requires, except `userInfo`: the apiserver
/// always sends it and nothing here reads it, so a hand-written review may leave it out.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, P> {
    #[serde(borrow)]
    api_version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, bound(deserialize = "P: Deserialize<'de>"))]
    request: Option<Request<'a, P>>,
}

/// The fields of an `AdmissionRequest` the webhook reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "P: Deserialize<'de>"))]
struct Request<'a, P> {
    uid: String,
    #[serde(borrow)]
    kind: Kind<'a>,
    #[serde(borrow)]
    resource: Resource<'a>,
    #[serde(default, borrow)]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    operation: Operation,
    /// Sent by the apiserver, never read: optional, so hand-written reviews need not invent it.
    #[serde(default, rename = "userInfo")]
    _user_info: IgnoredAny,
    /// A missing `object` reads as `None`, as with every `Option` field.
    object: Option<P>,
}

#[derive(serde::Deserialize)]
struct Kind<'a> {
    #[serde(borrow)]
    group: Cow<'a, str>,
    #[serde(rename = "version")]
    _version: IgnoredAny,
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

#[derive(serde::Deserialize)]
struct Resource<'a> {
    #[serde(rename = "group")]
    _group: IgnoredAny,
    #[serde(rename = "version")]
    _version: IgnoredAny,
    #[serde(borrow)]
    resource: Cow<'a, str>,
}

fn into_request<'a, P>(envelope: Envelope<'a, P>) -> Result<Request<'a, P>, ReviewError> {
    if envelope.api_version != REVIEW_API_VERSION || envelope.kind != REVIEW_KIND {
        let found = format!("{}/{}", envelope.api_version, envelope.kind);
        return Err(ReviewError::Unsupported(clip(&found, 100).into_owned()));
    }
    envelope.request.ok_or(ReviewError::MissingRequest)
}

fn is_pod_create<P>(request: &Request<'_, P>) -> bool {
    request.kind.group.is_empty()
        && request.kind.kind == "Pod"
        && request.resource.resource == "pods"
        && request
            .sub_resource
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        && request.operation == Operation::Create
}

fn review_pod(request: Request<'_, PodView>, state: &ClusterState) -> Reviewed {
    let Some(pod) = request.object.as_ref().filter(|_| is_pod_create(&request)) else {
        return unchanged(&request, Outcome::NotApplicable, Decision::default(), "");
    };
    let namespace = pod
        .metadata
        .namespace
        .as_deref()
        .filter(|namespace| !namespace.is_empty())
        .or(request.namespace.as_deref())
        .unwrap_or_default()
        .to_owned();
    let decision = decision::decide(pod, &namespace, state);
    let pod_name = pod.display_name();
    let outcome = match (
        &decision.opt_out,
        decision.mode,
        decision.injected.is_empty(),
    ) {
        (Some(_), _, _) => Outcome::OptedOut,
        (None, Mode::Shadow, _) => Outcome::Shadow,
        (None, Mode::On, true) => Outcome::Unchanged,
        (None, Mode::On, false) => Outcome::Injected,
    };
    let mut response = ResponseReview::allowed(&request.uid, &decision.warnings);
    // Shadow mode: no patch, only what would have been injected, for the audit log.
    if outcome == Outcome::Shadow {
        response.audit_annotations = decision.audit_annotations.clone();
    }
    // Serializing our own patch cannot fail; if it ever did, the pod is admitted untouched.
    if outcome == Outcome::Injected
        && let Ok(patch) = serde_json::to_vec(&decision.patch)
    {
        response.patch = Some(patch);
        response.audit_annotations = decision.audit_annotations.clone();
    }
    Reviewed {
        response,
        uid: request.uid,
        namespace,
        pod: pod_name,
        operation: operation_name(&request.operation),
        outcome,
        decision,
    }
}

fn unreadable_object(request: Request<'_, IgnoredAny>, error: &serde_json::Error) -> Reviewed {
    if !is_pod_create(&request) {
        return unchanged(&request, Outcome::NotApplicable, Decision::default(), "");
    }
    let warning = format!(
        "pullsecret-injector could not read this pod ({}); no pull secret injected",
        clip(&error.to_string(), 160)
    );
    let decision = Decision {
        warnings: vec![warning],
        ..Decision::default()
    };
    unchanged(&request, Outcome::UnreadablePod, decision, "")
}

fn unchanged<P>(
    request: &Request<'_, P>,
    outcome: Outcome,
    decision: Decision,
    pod: &str,
) -> Reviewed {
    Reviewed {
        response: ResponseReview::allowed(&request.uid, &decision.warnings),
        uid: request.uid.clone(),
        namespace: request.namespace.as_deref().unwrap_or_default().to_owned(),
        pod: pod.to_owned(),
        operation: operation_name(&request.operation),
        outcome,
        decision,
    }
}

fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// The response AdmissionReview. Every answer allows the request; `patch` is the JSON patch,
/// base64-encoded on the wire as the API documents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseReview {
    pub uid: String,
    pub allowed: bool,
    pub patch: Option<Vec<u8>>,
    pub audit_annotations: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

impl ResponseReview {
    fn allowed(uid: &str, warnings: &[String]) -> ResponseReview {
        ResponseReview {
            uid: uid.to_owned(),
            allowed: true,
            patch: None,
            audit_annotations: BTreeMap::new(),
            warnings: warnings.to_vec(),
        }
    }
}

impl Serialize for ResponseReview {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            api_version: &'a str,
            kind: &'a str,
            response: WireResponse<'a>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct WireResponse<'a> {
            uid: &'a str,
            allowed: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            patch: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            patch_type: Option<&'static str>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            audit_annotations: &'a BTreeMap<String, String>,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            warnings: &'a [String],
        }
        let patch = self
            .patch
            .as_deref()
            .map(|bytes| BASE64_STANDARD.encode(bytes));
        Wire {
            api_version: REVIEW_API_VERSION,
            kind: REVIEW_KIND,
            response: WireResponse {
                uid: &self.uid,
                allowed: self.allowed,
                patch_type: patch.as_ref().map(|_| "JSONPatch"),
                patch,
                audit_annotations: &self.audit_annotations,
                warnings: &self.warnings,
            },
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests;
