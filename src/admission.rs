//! The AdmissionReview envelope: request bytes in, response review out.
//!
//! The webhook handler and the `review` command both call [`review`], so the CLI answers exactly
//! what the server would. Every readable review gets `allowed: true` with its uid echoed; only a
//! body that is not an AdmissionReview at all is an error (the server turns it into HTTP 400).

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine;
use base64::prelude::BASE64_STANDARD;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::{NamespaceResourceScope, Resource, TypeMeta};
use serde::de::{Deserialize, Deserializer, IgnoredAny};
use serde::{Serialize, Serializer};

use crate::decision::{self, Decision};
use crate::pod::PodView;
use crate::state::ClusterState;
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
    match serde_json::from_slice::<Envelope<PodView>>(body) {
        Ok(envelope) => {
            let request = into_request(envelope)?;
            Ok(review_pod(request, state))
        }
        // The envelope may be fine while the object is not a readable pod: still answer the uid.
        Err(pod_error) => match serde_json::from_slice::<Envelope<IgnoredAny>>(body) {
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
/// kube's `AdmissionReview` flattens its `TypeMeta`, which makes serde buffer the whole body
/// (the pod included) into an intermediate tree before reading it again; naming the two type
/// fields here reads the body straight into the request, which is most of the parse cost.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<P> {
    api_version: String,
    kind: String,
    #[serde(bound(deserialize = "P: Deserialize<'de>"))]
    request: Option<AdmissionRequest<Object<P>>>,
}

fn into_request<P>(envelope: Envelope<P>) -> Result<AdmissionRequest<Object<P>>, ReviewError> {
    if envelope.api_version != REVIEW_API_VERSION || envelope.kind != REVIEW_KIND {
        let found = format!("{}/{}", envelope.api_version, envelope.kind);
        return Err(ReviewError::Unsupported(clip(&found, 100).into_owned()));
    }
    let mut request = envelope.request.ok_or(ReviewError::MissingRequest)?;
    request.types = TypeMeta {
        api_version: envelope.api_version,
        kind: envelope.kind,
    };
    Ok(request)
}

fn is_pod_create<P>(request: &AdmissionRequest<Object<P>>) -> bool {
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

fn review_pod(request: AdmissionRequest<Object<PodView>>, state: &ClusterState) -> Reviewed {
    let Some(pod) = request
        .object
        .as_ref()
        .map(|object| &object.inner)
        .filter(|_| is_pod_create(&request))
    else {
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
    let outcome = match (&decision.opt_out, decision.injected.is_empty()) {
        (Some(_), _) => Outcome::OptedOut,
        (None, true) => Outcome::Unchanged,
        (None, false) => Outcome::Injected,
    };
    let mut response = AdmissionResponse::from(&request);
    if !decision.warnings.is_empty() {
        response.warnings = Some(decision.warnings.clone());
    }
    if outcome == Outcome::Injected {
        response.audit_annotations = decision.audit_annotations.clone().into_iter().collect();
        response = match response.with_patch(decision.patch.clone()) {
            Ok(response) => response,
            // Serializing our own patch cannot fail; if it ever did, admit the pod untouched.
            Err(_) => AdmissionResponse::from(&request),
        };
    }
    Reviewed {
        response: ResponseReview(response),
        uid: request.uid,
        namespace,
        pod: pod_name,
        operation: operation_name(&request.operation),
        outcome,
        decision,
    }
}

fn unreadable_object(
    request: AdmissionRequest<Object<IgnoredAny>>,
    error: &serde_json::Error,
) -> Reviewed {
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
    request: &AdmissionRequest<Object<P>>,
    outcome: Outcome,
    decision: Decision,
    pod: &str,
) -> Reviewed {
    let mut response = AdmissionResponse::from(request);
    if !decision.warnings.is_empty() {
        response.warnings = Some(decision.warnings.clone());
    }
    Reviewed {
        response: ResponseReview(response),
        uid: request.uid.clone(),
        namespace: request.namespace.clone().unwrap_or_default(),
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

/// The response AdmissionReview as it goes on the wire.
///
/// kube's `AdmissionResponse` serializes `patch` as an array of numbers; the API documents it
/// as base64 bytes, which is what every client (and a human reading `review` output) expects.
#[derive(Debug)]
pub struct ResponseReview(pub AdmissionResponse);

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
            #[serde(skip_serializing_if = "HashMap::is_empty")]
            audit_annotations: &'a HashMap<String, String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            warnings: Option<&'a Vec<String>>,
        }
        let response = &self.0;
        let patch = response
            .patch
            .as_deref()
            .map(|bytes| BASE64_STANDARD.encode(bytes));
        Wire {
            api_version: &response.types.api_version,
            kind: &response.types.kind,
            response: WireResponse {
                uid: &response.uid,
                allowed: response.allowed,
                patch_type: patch.as_ref().map(|_| "JSONPatch"),
                patch,
                audit_annotations: &response.audit_annotations,
                warnings: response.warnings.as_ref(),
            },
        }
        .serialize(serializer)
    }
}

/// The reviewed object, typed as `P`, inside kube's generic envelope.
///
/// kube's `AdmissionReview<T>` wants a `Resource`; reading only the fields the decision needs
/// (instead of a whole `k8s_openapi` Pod) keeps parsing cheap, so this wrapper carries an empty
/// `ObjectMeta` just to satisfy the trait.
#[derive(Debug)]
pub struct Object<P> {
    pub inner: P,
    meta: ObjectMeta,
}

impl<'de, P: Deserialize<'de>> Deserialize<'de> for Object<P> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        P::deserialize(deserializer).map(|inner| Object {
            inner,
            meta: ObjectMeta::default(),
        })
    }
}

impl<P> Resource for Object<P> {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

#[cfg(test)]
mod tests;
