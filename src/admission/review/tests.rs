use serde_json::{Value, json};

use super::*;
use crate::cluster::statefile::state_from_str;

fn state() -> std::sync::Arc<ClusterState> {
    let config = json!({ "auths": { "r.example.com": { "auth": "dXNlcjpwYXNz" } } }).to_string();
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": { "namespace": "team", "name": "regcred" },
        "stringData": { ".dockerconfigjson": config },
    });
    state_from_str("test", &secret.to_string()).expect("state")
}

fn review_body(request: Value) -> Vec<u8> {
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request })
        .to_string()
        .into_bytes()
}

fn pod_request(object: Value) -> Value {
    json!({
        "uid": "0b8f-uid",
        "kind": { "group": "", "version": "v1", "kind": "Pod" },
        "resource": { "group": "", "version": "v1", "resource": "pods" },
        "namespace": "team",
        "operation": "CREATE",
        "userInfo": { "username": "alice" },
        "object": object,
        "dryRun": false,
    })
}

fn app_pod() -> Value {
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "generateName": "web-" },
            "spec": { "containers": [{ "name": "app", "image": "r.example.com/app:1" }] } })
}

/// The response review as JSON, with the decoded patch under `response.patchOps`.
fn answer(body: &[u8]) -> Value {
    let reviewed = review(body, &state()).expect("readable review");
    let mut value = serde_json::to_value(&reviewed.response).expect("encodes");
    if let Some(patch) = value["response"]["patch"].as_str() {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("base64 patch");
        value["response"]["patchOps"] = serde_json::from_slice(&bytes).expect("JSON patch");
    }
    value
}

#[test]
fn a_pod_create_gets_a_json_patch_with_its_uid_echoed() {
    let value = answer(&review_body(pod_request(app_pod())));
    assert_eq!(value["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(value["kind"], "AdmissionReview");
    let response = &value["response"];
    assert_eq!(response["uid"], "0b8f-uid");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    assert_eq!(
        response["patchOps"][0],
        json!({ "op": "add", "path": "/spec/imagePullSecrets", "value": [{ "name": "regcred" }] })
    );
    assert_eq!(response["auditAnnotations"]["injected-secrets"], "regcred");
}

#[test]
fn the_namespace_comes_from_the_request_when_the_object_has_none() {
    let reviewed = review(&review_body(pod_request(app_pod())), &state()).unwrap();
    assert_eq!(reviewed.namespace, "team");
    assert_eq!(reviewed.pod, "web-*");
    assert_eq!(reviewed.outcome, Outcome::Injected);
}

#[test]
fn dry_run_gets_the_same_answer() {
    let mut request = pod_request(app_pod());
    let normal = answer(&review_body(request.clone()));
    request["dryRun"] = json!(true);
    assert_eq!(answer(&review_body(request)), normal);
}

#[test]
fn other_operations_kinds_and_subresources_are_allowed_untouched() {
    let variants = [
        ("operation", json!("UPDATE")),
        ("operation", json!("DELETE")),
        ("subResource", json!("ephemeralcontainers")),
        (
            "kind",
            json!({ "group": "apps", "version": "v1", "kind": "Deployment" }),
        ),
    ];
    for (field, replacement) in variants {
        let mut request = pod_request(app_pod());
        request[field] = replacement;
        let value = answer(&review_body(request));
        assert_eq!(value["response"]["allowed"], true, "{field}");
        assert_eq!(value["response"]["uid"], "0b8f-uid");
        assert!(value["response"].get("patch").is_none(), "{field}");
    }
}

#[test]
fn an_unreadable_pod_is_allowed_with_a_warning_and_its_uid() {
    for object in [
        json!("a string"),
        json!({ "spec": { "containers": "nope" } }),
        json!({ "metadata": 7 }),
    ] {
        let value = answer(&review_body(pod_request(object.clone())));
        assert_eq!(value["response"]["allowed"], true, "{object}");
        assert_eq!(value["response"]["uid"], "0b8f-uid");
        assert!(
            value["response"]["warnings"][0]
                .as_str()
                .unwrap()
                .contains("could not read this pod")
        );
    }
    let missing = answer(&review_body(pod_request(Value::Null)));
    assert_eq!(missing["response"]["allowed"], true);
}

#[test]
fn bodies_that_are_not_reviews_are_errors_with_short_reasons() {
    let huge = format!("{{\"apiVersion\":\"{}\"", "x".repeat(1_000_000));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "malformed"),
        (b"not json".to_vec(), "malformed"),
        (b"{\"apiVersion\":".to_vec(), "malformed"),
        (huge.into_bytes(), "malformed"),
        (b"[]".to_vec(), "malformed"),
        (json!({ "apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": pod_request(app_pod()) }).to_string().into_bytes(), "unsupported"),
        (json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview" }).to_string().into_bytes(), "missing_request"),
        (json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": { "uid": 5 } }).to_string().into_bytes(), "malformed"),
    ];
    for (body, label) in cases {
        let error = review(&body, &state()).expect_err("not a review");
        assert_eq!(error.metric_label(), label, "{error}");
        assert!(error.to_string().len() < 400, "{error}");
    }
}

#[test]
fn deeply_nested_json_does_not_overflow_the_stack() {
    let depth = 100_000;
    let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(review(body.as_bytes(), &state()).is_err());
    let request = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    let nested_object = format!(
        "{{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{request}}}"
    );
    assert!(review(nested_object.as_bytes(), &state()).is_err());
}

#[test]
fn a_pod_without_metadata_gets_a_patch_that_applies() {
    let object =
        json!({ "spec": { "containers": [{ "name": "app", "image": "r.example.com/app:1" }] } });
    let value = answer(&review_body(pod_request(object.clone())));
    let patch: json_patch::Patch =
        serde_json::from_value(value["response"]["patchOps"].clone()).expect("a JSON patch");
    let mut patched = object;
    json_patch::patch(&mut patched, &patch).expect("the patch applies");
    assert_eq!(
        patched["spec"]["imagePullSecrets"],
        json!([{ "name": "regcred" }])
    );
    assert_eq!(
        patched["metadata"]["annotations"]["pullsecret-injector.io/injected"],
        "regcred (r.example.com/app)"
    );
}

#[test]
fn shadow_mode_answers_without_a_patch_but_with_the_audit_annotations() {
    use crate::state::snapshot::Mode;
    let state = ClusterState::clone(&state()).with_default_mode(Mode::Shadow);
    let reviewed = review(&review_body(pod_request(app_pod())), &state).expect("review");
    assert_eq!(reviewed.outcome, Outcome::Shadow);
    assert_eq!(
        reviewed.decision.injected_names().collect::<Vec<_>>(),
        ["regcred"]
    );
    let response = serde_json::to_value(&reviewed.response).expect("encodes")["response"].clone();
    assert_eq!(response["uid"], "0b8f-uid");
    assert_eq!(response["allowed"], true);
    assert!(
        response.get("patch").is_none() && response.get("patchType").is_none(),
        "{response}"
    );
    assert_eq!(
        response["auditAnnotations"],
        json!({
            "shadow-would-inject-secrets": "regcred",
            "shadow-would-inject-for": "regcred (r.example.com/app)",
        })
    );
}
