//! Property-based fuzzing of the three places hostile input enters: the image-reference grammar,
//! the decoding of registry-credential Secrets, and the AdmissionReview handler.
//!
//! The case count comes from `PROPTEST_CASES` (proptest's own variable): `make test` runs the
//! default (256 per property), `make fuzz` runs a long, bounded campaign. See docs/fuzzing.md.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};

use pullsecret_injector::admission::review::review;
use pullsecret_injector::cluster::statefile::state_from_str;
use pullsecret_injector::kubelet::dockerconfig::{
    DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_KEY, DOCKERCFG_TYPE, registry_keys,
};
use pullsecret_injector::kubelet::reference::ImageRef;
use pullsecret_injector::state::snapshot::ClusterState;

mod grammar;
use grammar::{MARKER, dockerconfig_document, image_ish, json_ish};

/// proptest's defaults, which already honour `PROPTEST_CASES`; failure persistence off, since
/// integration tests have no source file next to them to keep regressions in.
fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The image grammar

fn check_reference(input: &str) -> Result<(), TestCaseError> {
    match ImageRef::parse(input) {
        Ok(image) => {
            let lookup = image.lookup_key();
            prop_assert!(!lookup.contains('@'), "{input:?}: lookup {lookup:?}");
            prop_assert!(!image.path().is_empty(), "{input:?}: empty path");
            prop_assert!(image.path().len() <= 255, "{input:?}: path too long");
            // The lookup string is itself a normalized name: parsing it changes nothing.
            let again = ImageRef::parse(&lookup);
            prop_assert!(again.is_ok(), "{input:?}: lookup {lookup:?} does not parse");
            prop_assert_eq!(again.expect("checked").lookup_key(), lookup);
        }
        Err(error) => {
            // Errors quote the input shortened: a 100 KB image never makes a 100 KB message.
            prop_assert!(error.to_string().len() < 1024, "{input:?}: long error");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn reference_never_panics_on_any_text(input in any::<String>()) {
        check_reference(&input)?;
    }

    #[test]
    fn reference_never_panics_on_grammar_pieces(input in image_ish()) {
        check_reference(&input)?;
    }

    #[test]
    fn reference_handles_lossy_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_reference(&String::from_utf8_lossy(&bytes))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Secret decoding

fn decode(secret_type: &str, key: &str, payload: &[u8]) -> Result<(), TestCaseError> {
    let data = BTreeMap::from([(key.to_owned(), payload.to_vec())]);
    match registry_keys(secret_type, &data) {
        Ok(Some(keys)) => {
            let mut unique = keys.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(unique.len(), keys.len(), "registry keys are deduplicated");
        }
        Ok(None) => prop_assert!(payload.is_empty(), "a non-empty payload is read"),
        Err(error) => {
            let message = error.to_string();
            prop_assert!(!message.contains(MARKER), "credential in error: {message}");
            prop_assert!(message.len() < 2048, "long error: {} bytes", message.len());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn dockerconfigjson_never_panics_or_leaks(payload in dockerconfig_document()) {
        decode(DOCKER_CONFIG_JSON_TYPE, DOCKER_CONFIG_JSON_KEY, &payload)?;
    }

    #[test]
    fn dockercfg_never_panics_or_leaks(payload in dockerconfig_document()) {
        decode(DOCKERCFG_TYPE, DOCKERCFG_KEY, &payload)?;
        // The same entries as a legacy top-level map.
        if let Ok(Value::Object(mut doc)) = serde_json::from_slice::<Value>(&payload)
            && let Some(auths) = doc.remove("auths")
        {
            decode(DOCKERCFG_TYPE, DOCKERCFG_KEY, auths.to_string().as_bytes())?;
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash(depth in 1usize..200_000, open in "[\\[{]") {
        let mut payload = String::from(r#"{"auths":{"r":"#);
        for _ in 0..depth {
            payload.push_str(if open == "[" { "[" } else { r#"{"a":"# });
        }
        decode(DOCKER_CONFIG_JSON_TYPE, DOCKER_CONFIG_JSON_KEY, payload.as_bytes())?;
    }
}

// ---------------------------------------------------------------------------------------------
// The review handler

fn fuzz_state() -> &'static Arc<ClusterState> {
    static STATE: OnceLock<Arc<ClusterState>> = OnceLock::new();
    STATE.get_or_init(|| {
        let secret = |name: &str, config: Value| {
            json!({
                "apiVersion": "v1", "kind": "Secret", "type": DOCKER_CONFIG_JSON_TYPE,
                "metadata": { "namespace": "team", "name": name },
                "stringData": { DOCKER_CONFIG_JSON_KEY: config.to_string() },
            })
        };
        let auth = BASE64.encode(format!("u:{MARKER}"));
        let items = json!({ "apiVersion": "v1", "kind": "List", "items": [
            { "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "team" } },
            secret("exact", json!({ "auths": { "r.example.com": { "auth": auth } } })),
            secret("glob", json!({ "auths": { "*.example.com:5000": { "auth": auth } } })),
            secret("hub", json!({ "auths": { "https://index.docker.io/v1/": { "auth": auth } } })),
            secret("bomb", json!({ "auths": { "*****************.*.com": { "auth": auth },
                                               "[a-": { "auth": auth } } })),
            secret("broken", json!({ "auths": { "r.example.com": { "password": [MARKER] } } })),
        ]});
        state_from_str("fuzz", &items.to_string()).expect("fuzz state")
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        Just(Value::from("r.example.com/app:1")),
        Just(Value::from(
            "a.example.com:5000/x/y@sha256:0000000000000000000000000000000000000000000000000000000000000000"
        )),
        Just(Value::from("nginx")),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name".to_owned()),
                    Just("image".to_owned()),
                    Just("containers".to_owned()),
                    Just("imagePullSecrets".to_owned()),
                    Just("reference".to_owned()),
                    "[a-zA-Z]{1,8}",
                ],
                inner,
                0..4
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Pods whose fields are right, wrong or missing in every combination.
fn pod_object() -> impl Strategy<Value = Value> {
    let container = prop_oneof![
        (
            "[a-z]{1,5}",
            prop_oneof![image_ish(), Just("r.example.com/app:1".to_owned())]
        )
            .prop_map(|(name, image)| json!({ "name": name, "image": image })),
        json_value(),
    ];
    let list = prop_oneof![
        prop::collection::vec(container, 0..5).prop_map(Value::from),
        json_value(),
    ];
    let pull_secrets = prop_oneof![
        Just(Value::Null),
        Just(json!([{ "name": "exact" }, { "name": "other" }])),
        Just(json!([{}, { "name": null }])),
        json_value(),
    ];
    let labels = prop_oneof![
        Just(Value::Null),
        Just(json!({ "pullsecret-injector.io/inject": "false" })),
        json_value(),
    ];
    let volume = prop_oneof![
        ("[a-z]{1,5}", image_ish()).prop_map(|(name, reference)| {
            json!({ "name": name, "image": { "reference": reference, "pullPolicy": "Always" } })
        }),
        Just(json!({ "name": "scratch", "emptyDir": {} })),
        json_value().prop_map(|image| json!({ "name": "v", "image": image })),
        json_value(),
    ];
    let volumes = prop_oneof![
        prop::collection::vec(volume, 0..4).prop_map(Value::from),
        json_value(),
    ];
    (
        (list.clone(), list.clone(), list),
        pull_secrets,
        labels,
        json_value(),
        volumes,
    )
        .prop_map(
            |((init, containers, ephemeral), secrets, labels, annotations, volumes)| {
                json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": { "name": "p", "labels": labels, "annotations": annotations },
                    "spec": {
                        "initContainers": init, "containers": containers,
                        "ephemeralContainers": ephemeral, "imagePullSecrets": secrets,
                        "volumes": volumes,
                    },
                })
            },
        )
}

fn request() -> impl Strategy<Value = Value> {
    let operation = prop_oneof![
        Just(Value::from("CREATE")),
        Just(Value::from("UPDATE")),
        Just(Value::from("DELETE")),
        Just(Value::from("CONNECT")),
        json_value(),
    ];
    let kind = prop_oneof![
        Just(json!({ "group": "", "version": "v1", "kind": "Pod" })),
        Just(json!({ "group": "apps", "version": "v1", "kind": "Deployment" })),
        json_value(),
    ];
    let namespace = prop_oneof![
        Just(Value::from("team")),
        Just(Value::from("elsewhere")),
        json_value(),
    ];
    let object = prop_oneof![4 => pod_object(), 1 => json_value()];
    (operation, kind, namespace, object, any::<bool>()).prop_map(
        |(operation, kind, namespace, object, subresource)| {
            let mut request = json!({
                "uid": "fuzz-uid",
                "kind": kind,
                "resource": { "group": "", "version": "v1", "resource": "pods" },
                "namespace": namespace,
                "operation": operation,
                "userInfo": { "username": "fuzz" },
                "object": object,
            });
            if subresource {
                request["subResource"] = Value::from("status");
            }
            request
        },
    )
}

fn check_review(body: &[u8], original: Option<&Value>) -> Result<(), TestCaseError> {
    let Ok(reviewed) = review(body, fuzz_state()) else {
        return Ok(());
    };
    let response = &reviewed.response;
    prop_assert!(response.allowed, "never denies");
    prop_assert_eq!(&response.uid, &reviewed.uid);
    let wire = serde_json::to_string(&reviewed.response).expect("response encodes");
    prop_assert!(!wire.contains(MARKER), "credential in the response: {wire}");
    for warning in &reviewed.decision.warnings {
        prop_assert!(
            warning.len() < 4096,
            "long warning: {} bytes",
            warning.len()
        );
    }
    if let (Some(patch), Some(object)) = (&response.patch, original) {
        // The patch applies to the object it was computed for.
        let patch: json_patch::Patch = serde_json::from_slice(patch).expect("patch is JSON");
        let mut object = object.clone();
        let applied = json_patch::patch(&mut object, &patch);
        prop_assert!(applied.is_ok(), "patch does not apply: {applied:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn review_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_review(&bytes, None)?;
    }

    #[test]
    fn review_never_panics_on_json_ish(text in json_ish(6)) {
        check_review(text.as_bytes(), None)?;
    }

    #[test]
    fn review_answers_every_envelope(
        request in request(),
        api_version in prop_oneof![4 => Just(Value::from("admission.k8s.io/v1")), 1 => json_value()],
        truncate in prop::option::weighted(0.1, any::<prop::sample::Index>()),
    ) {
        let object = request["object"].clone();
        let body = json!({ "apiVersion": api_version, "kind": "AdmissionReview", "request": request })
            .to_string()
            .into_bytes();
        match truncate {
            Some(index) => check_review(&body[..index.index(body.len())], None)?,
            None => check_review(&body, Some(&object))?,
        }
    }
}
