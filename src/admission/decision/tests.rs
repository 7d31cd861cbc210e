use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::cluster::statefile::state_from_str;
use crate::kubelet::dockerconfig::{
    DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_KEY, DOCKERCFG_TYPE,
};

use crate::admission::fixtures::{self, AUTH};

/// A dockerconfigjson Secret document with the given `auths` keys, as text.
fn secret(namespace: &str, name: &str, keys: &[&str]) -> String {
    fixtures::secret(namespace, name, keys).to_string()
}

fn broken_secret(namespace: &str, name: &str, config: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": { "namespace": namespace, "name": name },
        "stringData": { ".dockerconfigjson": config },
    })
    .to_string()
}

fn namespace(name: &str, opted_out: bool) -> String {
    let labels = if opted_out {
        json!({ INJECT_LABEL: "false" })
    } else {
        json!({})
    };
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": labels } }).to_string()
}

fn state(documents: &[String]) -> Arc<ClusterState> {
    state_from_str("test", &documents.join("\n")).expect("valid test state")
}

fn pod(value: Value) -> (PodView, Value) {
    let view = serde_json::from_value(value.clone()).expect("pod view");
    (view, value)
}

fn pod_with_images(images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(index, image)| json!({ "name": format!("c{index}"), "image": image }))
        .collect();
    json!({ "metadata": { "name": "p" }, "spec": { "containers": containers } })
}

/// Applies the decision's patch the way the apiserver would and returns the patched pod.
fn patched(value: &Value, decision: &Decision) -> Value {
    let mut result = value.clone();
    json_patch::patch(&mut result, &decision.patch).expect("patch applies");
    result
}

fn pull_secret_names(pod: &Value) -> Vec<String> {
    pod.pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|item| item["name"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn injected_for(images: &[&str], documents: &[String]) -> Vec<String> {
    let state = state(documents);
    let (view, value) = pod(pod_with_images(images));
    let decision = decide(&view, "ns", &state);
    pull_secret_names(&patched(&value, &decision))
}

#[test]
fn injects_what_the_kubelet_would_use_per_image() {
    let documents = [
        secret("ns", "r5000", &["registry.example.com:5000"]),
        secret("ns", "r6000", &["registry.example.com:6000"]),
        secret("ns", "hub", &["https://index.docker.io/v1/"]),
        secret("other", "elsewhere", &["registry.example.com:5000"]),
    ];
    let cases: &[(&[&str], &[&str])] = &[
        (&["registry.example.com:5000/team/app:1.0"], &["r5000"]),
        (
            &["registry.example.com:5000/a", "registry.example.com:6000/b"],
            &["r5000", "r6000"],
        ),
        (
            &["registry.example.com:6000/b", "registry.example.com:5000/a"],
            &["r6000", "r5000"],
        ),
        (&["nginx:1.25"], &["hub"]),
        (&["docker.io/library/nginx"], &["hub"]),
        (&["registry.example.com/app"], &[]),
        (&["registry.example.com:443/app"], &[]),
        (&["quay.io/x/y"], &[]),
    ];
    for (images, expected) in cases {
        assert_eq!(
            injected_for(images, &documents),
            *expected,
            "images {images:?}"
        );
    }
}

#[test]
fn docker_hub_fallback_is_suppressed_by_any_direct_match() {
    let documents = [
        secret("ns", "a-hub-v1", &["https://index.docker.io/v1/"]),
        secret("ns", "b-docker-io", &["docker.io"]),
    ];
    assert_eq!(injected_for(&["nginx"], &documents), ["b-docker-io"]);
    let only_fallback = [secret("ns", "a-hub-v1", &["https://index.docker.io/v1/"])];
    assert_eq!(injected_for(&["nginx"], &only_fallback), ["a-hub-v1"]);
    assert_eq!(
        injected_for(&["registry.example.com/x"], &only_fallback),
        Vec::<String>::new()
    );
}

#[test]
fn more_specific_paths_come_first() {
    let documents = [
        secret("ns", "a-host", &["quay.io"]),
        secret("ns", "b-team", &["quay.io/team"]),
        secret("ns", "c-app", &["quay.io/team/app"]),
    ];
    assert_eq!(
        injected_for(&["quay.io/team/app:1"], &documents),
        ["c-app", "b-team", "a-host"]
    );
    assert_eq!(
        injected_for(&["quay.io/teamster/x"], &documents),
        ["b-team", "a-host"]
    );
    assert_eq!(injected_for(&["quay.io/other/x"], &documents), ["a-host"]);
}

#[test]
fn init_and_ephemeral_containers_count() {
    let documents = [
        secret("ns", "init", &["init.example.com"]),
        secret("ns", "eph", &["debug.example.com"]),
    ];
    let state = state(&documents);
    let (view, value) = pod(json!({
        "metadata": { "name": "p" },
        "spec": {
            "initContainers": [{ "name": "i", "image": "init.example.com/setup" }],
            "containers": [{ "name": "c", "image": "nginx" }],
            "ephemeralContainers": [{ "name": "e", "image": "debug.example.com/tools" }],
        }
    }));
    let decision = decide(&view, "ns", &state);
    assert_eq!(
        pull_secret_names(&patched(&value, &decision)),
        ["init", "eph"]
    );
}

#[test]
fn existing_secrets_are_kept_in_place_and_not_repeated() {
    let documents = [
        secret("ns", "r5000", &["registry.example.com:5000"]),
        secret("ns", "r6000", &["registry.example.com:6000"]),
    ];
    let state = state(&documents);
    let (view, value) = pod(json!({
        "metadata": { "name": "p", "annotations": { "keep": "me" } },
        "spec": {
            "imagePullSecrets": [{ "name": "mine" }, { "name": "r6000" }],
            "containers": [
                { "name": "a", "image": "registry.example.com:5000/a" },
                { "name": "b", "image": "registry.example.com:6000/b" },
            ],
        }
    }));
    let decision = decide(&view, "ns", &state);
    let result = patched(&value, &decision);
    assert_eq!(pull_secret_names(&result), ["mine", "r6000", "r5000"]);
    assert_eq!(
        result.pointer("/metadata/annotations/keep"),
        Some(&json!("me"))
    );
    assert_eq!(
        result.pointer("/metadata/annotations/pullsecret-injector.io~1injected"),
        Some(&json!("r5000 (registry.example.com:5000/a)"))
    );
    // Every operation is an add: nothing removed or reordered.
    assert!(
        decision
            .patch
            .0
            .iter()
            .all(|op| matches!(op, PatchOperation::Add(_)))
    );
}

#[test]
fn empty_list_gets_appends_and_absent_list_gets_created() {
    let documents = [secret("ns", "r", &["r.example.com"])];
    let state = state(&documents);
    for spec_list in [json!([]), Value::Null] {
        let mut value = pod_with_images(&["r.example.com/x"]);
        value["spec"]["imagePullSecrets"] = spec_list.clone();
        let (view, value) = pod(value);
        let decision = decide(&view, "ns", &state);
        assert_eq!(
            pull_secret_names(&patched(&value, &decision)),
            ["r"],
            "list {spec_list}"
        );
    }
}

#[test]
fn a_second_pass_changes_nothing() {
    let documents = [secret("ns", "r", &["r.example.com"])];
    let state = state(&documents);
    let (view, value) = pod(pod_with_images(&["r.example.com/x", "r.example.com/y"]));
    let first = patched(&value, &decide(&view, "ns", &state));
    let (view, _) = pod(first.clone());
    let second = decide(&view, "ns", &state);
    assert!(second.patch.0.is_empty());
    assert!(second.injected.is_empty());
    assert_eq!(
        first.pointer("/metadata/annotations/pullsecret-injector.io~1injected"),
        Some(&json!("r (r.example.com/x, r.example.com/y)"))
    );
}

#[test]
fn reinvocation_after_a_sidecar_extends_the_annotation() {
    let documents = [
        secret("ns", "a", &["a.example.com"]),
        secret("ns", "b", &["b.example.com"]),
    ];
    let state = state(&documents);
    let (view, value) = pod(pod_with_images(&["a.example.com/app"]));
    let mut first = patched(&value, &decide(&view, "ns", &state));
    first["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "sidecar", "image": "b.example.com/proxy" }));
    let (view, value) = pod(first);
    let second = patched(&value, &decide(&view, "ns", &state));
    assert_eq!(pull_secret_names(&second), ["a", "b"]);
    assert_eq!(
        second.pointer("/metadata/annotations/pullsecret-injector.io~1injected"),
        Some(&json!("a (a.example.com/app); b (b.example.com/proxy)"))
    );
}

#[test]
fn opt_out_on_pod_or_namespace_changes_nothing() {
    let documents = [
        secret("ns", "r", &["r.example.com"]),
        secret("off", "r", &["r.example.com"]),
        namespace("off", true),
        namespace("ns", false),
    ];
    let state = state(&documents);
    let mut value = pod_with_images(&["r.example.com/x"]);
    let (view, _) = pod(value.clone());
    assert_eq!(
        decide(&view, "off", &state).opt_out,
        Some(OptOut::Namespace)
    );
    assert!(decide(&view, "off", &state).patch.0.is_empty());
    value["metadata"]["labels"] = json!({ INJECT_LABEL: "false" });
    let (view, _) = pod(value.clone());
    let decision = decide(&view, "ns", &state);
    assert_eq!(decision.opt_out, Some(OptOut::Pod));
    assert!(decision.patch.0.is_empty());
    value["metadata"]["labels"] = json!({ INJECT_LABEL: "true" });
    let (view, _) = pod(value);
    assert_eq!(decide(&view, "ns", &state).injected.len(), 1);
}

#[test]
fn a_namespaced_server_leaves_pods_of_other_namespaces_alone() {
    let documents = [
        secret("shop", "r", &["r.example.com"]),
        secret("other", "r", &["r.example.com"]),
    ];
    let served = Arc::new(std::collections::BTreeSet::from(["shop".to_owned()]));
    let state = ClusterState::clone(&state(&documents)).with_served_namespaces(Some(served));
    let (view, _) = pod(pod_with_images(&["r.example.com/x"]));
    assert_eq!(decide(&view, "shop", &state).injected.len(), 1);
    let decision = decide(&view, "other", &state);
    assert_eq!(decision.opt_out, Some(OptOut::NotServed));
    assert!(decision.injected.is_empty() && decision.patch.0.is_empty());
    assert_eq!(decision.warnings.len(), 1, "{:?}", decision.warnings);
    assert!(
        decision.warnings[0].contains("--namespaces"),
        "{:?}",
        decision.warnings
    );
}

#[test]
fn undecodable_secrets_are_never_injected_and_are_reported_without_content() {
    let password = "Sup3r-S3cret-Value";
    let bad_auth = format!(r#"{{"auths":{{"r.example.com":{{"auth":"!!{password}!!"}}}}}}"#);
    let documents = [
        broken_secret("ns", "bad", &bad_auth),
        broken_secret("ns", "garbage", "{not json"),
        secret("ns", "good", &["good.example.com"]),
    ];
    let state = state(&documents);
    let (view, value) = pod(pod_with_images(&[
        "r.example.com/app",
        "unserved.example.com/x",
    ]));
    let decision = decide(&view, "ns", &state);
    assert!(decision.injected.is_empty());
    assert!(
        patched(&value, &decision)
            .pointer("/spec/imagePullSecrets")
            .is_none()
    );
    assert_eq!(decision.warnings.len(), 2, "{:?}", decision.warnings);
    assert!(
        decision.warnings[0].contains("\"bad\"")
            && decision.warnings[0].contains("r.example.com/app")
    );
    assert!(decision.warnings[1].contains("\"garbage\""));
    assert_eq!(decision.undecodable_secrets, 2);
    for warning in &decision.warnings {
        assert!(
            !warning.contains(password),
            "warning leaks the credential: {warning}"
        );
    }
}

#[test]
fn an_undecodable_secret_already_on_the_pod_is_reported() {
    let documents = [broken_secret("ns", "bad", "[]")];
    let state = state(&documents);
    let mut value = pod_with_images(&["nginx"]);
    value["spec"]["imagePullSecrets"] = json!([{ "name": "bad" }]);
    let (view, _) = pod(value);
    let decision = decide(&view, "ns", &state);
    assert_eq!(decision.warnings.len(), 1);
    assert!(decision.warnings[0].contains("every image pull of this pod will fail"));
}

#[test]
fn invalid_images_are_skipped_with_a_short_warning() {
    let documents = [secret("ns", "hub", &["docker.io"])];
    let hostile = format!("NGINX{}", "x".repeat(100_000));
    let (view, _) = pod(pod_with_images(&[&hostile, "nginx:", "nginx"]));
    let decision = decide(&view, "ns", &state(&documents));
    assert_eq!(decision.invalid_images, 2);
    assert_eq!(decision.injected_names().collect::<Vec<_>>(), ["hub"]);
    assert_eq!(decision.warnings.len(), 2);
    assert!(decision.warnings.iter().all(|warning| warning.len() < 512));
}

#[test]
fn unknown_namespace_and_missing_fields_are_harmless() {
    let empty = ClusterState::default();
    for value in [
        json!({}),
        json!({ "spec": {} }),
        json!({ "spec": { "containers": null } }),
        json!({ "spec": { "containers": [{ "name": "noimage" }, { "image": "" }] } }),
        pod_with_images(&["nginx"]),
    ] {
        let (view, _) = pod(value);
        let decision = decide(&view, "missing", &empty);
        assert!(decision.patch.0.is_empty());
        assert!(decision.warnings.is_empty());
    }
}

#[test]
fn audit_annotations_name_secrets_and_registries() {
    let documents = [
        secret("ns", "r", &["r.example.com"]),
        secret("ns", "s", &["s.example.com"]),
    ];
    let (view, _) = pod(pod_with_images(&[
        "r.example.com/a",
        "s.example.com/b",
        "r.example.com/c",
    ]));
    let decision = decide(&view, "ns", &state(&documents));
    assert_eq!(decision.audit_annotations["injected-secrets"], "r,s");
    assert_eq!(
        decision.audit_annotations["injected-for"],
        "r (r.example.com/a, r.example.com/c); s (s.example.com/b)"
    );
}

// ---------------------------------------------------------------------------------------------
// PullSecretRules and ClusterPullSecrets

fn rule(namespace: &str, name: &str, mode: &str, registries: &[&str], secrets: &[&str]) -> String {
    json!({
        "apiVersion": "pullsecret-injector.io/v1alpha1", "kind": "PullSecretRule",
        "metadata": { "namespace": namespace, "name": name },
        "spec": { "registries": registries, "secrets": secrets, "mode": mode },
    })
    .to_string()
}

fn cluster_pull_secret(name: &str, source: (&str, &str), spec: Value) -> String {
    let mut spec = spec;
    spec["source"] = json!({ "namespace": source.0, "name": source.1 });
    json!({
        "apiVersion": "pullsecret-injector.io/v1alpha1", "kind": "ClusterPullSecret",
        "metadata": { "name": name },
        "spec": spec,
    })
    .to_string()
}

fn labelled_namespace(name: &str, labels: Value) -> String {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": labels } })
        .to_string()
}

fn decide_in(namespace: &str, images: &[&str], documents: &[String]) -> (Vec<String>, Decision) {
    let state = state(documents);
    let (view, value) = pod(pod_with_images(images));
    let decision = decide(&view, namespace, &state);
    (pull_secret_names(&patched(&value, &decision)), decision)
}

#[test]
fn an_exclusive_rule_overrides_discovery_for_the_images_it_matches() {
    let documents = [
        secret("ns", "discovered", &["registry.example.com"]),
        secret("ns", "mirror", &["mirror.example.com"]),
        secret("ns", "quay", &["quay.io"]),
        rule(
            "ns",
            "only-mirror",
            "exclusive",
            &["registry.example.com"],
            &["mirror"],
        ),
    ];
    assert_eq!(
        injected_for(&["registry.example.com/team/app:1"], &documents),
        ["mirror"]
    );
    // Images the rule does not match keep discovery.
    assert_eq!(injected_for(&["quay.io/x/y"], &documents), ["quay"]);
    assert_eq!(
        injected_for(&["quay.io/x/y", "registry.example.com/a"], &documents),
        ["quay", "mirror"]
    );
}

#[test]
fn an_add_rule_injects_its_secrets_as_well_as_discovery() {
    let documents = [
        secret("ns", "discovered", &["registry.example.com"]),
        secret("ns", "extra", &["other.example.com"]),
        rule("ns", "also-extra", "add", &["*.example.com"], &["extra"]),
    ];
    assert_eq!(
        injected_for(&["registry.example.com/app"], &documents),
        ["discovered", "extra"]
    );
    // The host glob follows the kubelet: one label only, so a.b.example.com is not matched.
    assert_eq!(
        injected_for(&["a.b.example.com/app"], &documents),
        Vec::<String>::new()
    );
}

#[test]
fn rule_patterns_use_the_keyring_rules_for_ports_and_paths() {
    let documents = [
        secret("ns", "s", &["unrelated.example"]),
        rule("ns", "port", "add", &["registry.example.com:5000"], &["s"]),
        rule("ns", "path", "add", &["quay.io/team"], &["s"]),
        rule("ns", "hub", "add", &["docker.io"], &["s"]),
    ];
    let cases: &[(&str, bool)] = &[
        ("registry.example.com:5000/app", true),
        ("registry.example.com/app", false),
        ("registry.example.com:6000/app", false),
        ("quay.io/team/app", true),
        ("quay.io/teamster/app", true),
        ("quay.io/other/app", false),
        ("nginx", true),
    ];
    for (image, matched) in cases {
        let expected: &[&str] = if *matched { &["s"] } else { &[] };
        assert_eq!(injected_for(&[image], &documents), expected, "{image}");
    }
}

#[test]
fn a_rule_naming_a_missing_or_undecodable_secret_warns_and_injects_nothing_broken() {
    let documents = [
        secret("ns", "good", &["other.example.com"]),
        broken_secret("ns", "broken", "{not json"),
        rule(
            "ns",
            "r",
            "exclusive",
            &["registry.example.com"],
            &["missing", "broken", "good"],
        ),
    ];
    let (injected, decision) = decide_in("ns", &["registry.example.com/app"], &documents);
    assert_eq!(injected, ["good"]);
    let warnings = decision.warnings.join("\n");
    assert!(warnings.contains("\"missing\""), "{warnings}");
    assert!(
        warnings.contains("\"broken\"") && warnings.contains("cannot decode"),
        "{warnings}"
    );
}

#[test]
fn a_cluster_credential_counts_in_selected_namespaces_before_its_copy_exists() {
    let documents = [
        secret("infra", "corp", &["registry.corp.example"]),
        labelled_namespace("team-a", json!({ "team": "a" })),
        labelled_namespace("team-b", json!({ "team": "b" })),
        cluster_pull_secret(
            "corp-registry",
            ("infra", "corp"),
            json!({ "namespaceSelector": { "matchLabels": { "team": "a" } }, "targetName": "corp-pull" }),
        ),
    ];
    let image = ["registry.corp.example/app:1"];
    assert_eq!(decide_in("team-a", &image, &documents).0, ["corp-pull"]);
    assert_eq!(
        decide_in("team-b", &image, &documents).0,
        Vec::<String>::new()
    );
    // Registries the source does not cover are not served.
    assert_eq!(
        decide_in("team-a", &["quay.io/x"], &documents).0,
        Vec::<String>::new()
    );
}

#[test]
fn an_empty_selector_serves_every_namespace_but_the_system_ones() {
    let documents = [
        secret("infra", "corp", &["registry.corp.example"]),
        cluster_pull_secret("corp", ("infra", "corp"), json!({})),
    ];
    let state = state(&documents);
    let image = ["registry.corp.example/app"];
    // A namespace nothing is known about yet (created a moment ago) is served too.
    for namespace in ["brand-new", "default", "infra"] {
        assert_eq!(
            decide_in(namespace, &image, &documents).0,
            ["corp"],
            "{namespace}"
        );
    }
    for namespace in ["kube-system", "kube-public", "kube-node-lease"] {
        assert_eq!(
            decide_in(namespace, &image, &documents).0,
            Vec::<String>::new(),
            "{namespace}"
        );
    }
    // The injector's own namespace is excluded as well.
    assert!(state.selects(&Default::default(), "injector"));
    let own =
        crate::cluster::statefile::load_state(&[], Some("injector"), Copies::Controller).unwrap();
    assert!(!own.selects(&Default::default(), "injector"));
}

#[test]
fn a_registries_override_replaces_the_source_keys() {
    let documents = [
        secret("infra", "corp", &["registry.corp.example"]),
        cluster_pull_secret(
            "corp",
            ("infra", "corp"),
            json!({ "registries": ["*.mirror.example"] }),
        ),
    ];
    assert_eq!(
        decide_in("apps", &["eu.mirror.example/app"], &documents).0,
        ["corp"]
    );
    assert_eq!(
        decide_in("apps", &["registry.corp.example/app"], &documents).0,
        Vec::<String>::new()
    );
}

#[test]
fn an_unmanaged_secret_with_the_target_name_is_not_claimed() {
    let documents = [
        secret("infra", "corp", &["registry.corp.example"]),
        secret("apps", "corp", &["elsewhere.example"]),
        cluster_pull_secret("corp", ("infra", "corp"), json!({})),
    ];
    let (injected, decision) = decide_in("apps", &["registry.corp.example/app"], &documents);
    assert_eq!(injected, Vec::<String>::new());
    assert!(
        decision.warnings.iter().any(|w| w.contains("not managed")),
        "{:?}",
        decision.warnings
    );
}

#[test]
fn a_managed_copy_is_the_credential_not_a_conflict() {
    let copy = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": { "namespace": "apps", "name": "corp", "labels": {
            "app.kubernetes.io/managed-by": "pullsecret-injector",
            "pullsecret-injector.io/cluster-pull-secret": "corp" } },
        "stringData": { ".dockerconfigjson": json!({"auths": {"registry.corp.example": {"auth": AUTH}}}).to_string() },
    })
    .to_string();
    let documents = [
        secret("infra", "corp", &["registry.corp.example"]),
        copy,
        cluster_pull_secret("corp", ("infra", "corp"), json!({})),
    ];
    let (injected, decision) = decide_in("apps", &["registry.corp.example/app"], &documents);
    assert_eq!(injected, ["corp"]);
    assert!(decision.warnings.is_empty(), "{:?}", decision.warnings);
}

/// A copy left in a namespace whose ClusterPullSecret's source is out of reach (outside the
/// served namespaces, so not in the cache) or whose ClusterPullSecret is gone is stale: never
/// injected, although it matches the image (discovery leaves managed copies alone).
#[test]
fn a_stale_managed_copy_is_never_injected() {
    let copy = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": { "namespace": "apps", "name": "corp", "labels": {
            "app.kubernetes.io/managed-by": "pullsecret-injector",
            "pullsecret-injector.io/cluster-pull-secret": "corp" } },
        "stringData": { ".dockerconfigjson": json!({"auths": {"registry.corp.example": {"auth": AUTH}}}).to_string() },
    })
    .to_string();
    let image = ["registry.corp.example/app"];
    // The source is not in the cache (namespaced mode does not watch its namespace).
    let out_of_scope = [
        copy.clone(),
        cluster_pull_secret("corp", ("infra", "corp"), json!({})),
    ];
    let (injected, _) = decide_in("apps", &image, &out_of_scope);
    assert_eq!(injected, Vec::<String>::new());
    // The ClusterPullSecret is gone, its copy not yet.
    let orphan = [secret("infra", "corp", &["registry.corp.example"]), copy];
    let (injected, _) = decide_in("apps", &image, &orphan);
    assert_eq!(injected, Vec::<String>::new());
}

/// The decision for one image in `namespace` when no controller writes copies.
fn decide_without_controller(
    namespace: &str,
    image: &str,
    documents: &[String],
) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("state.yaml");
    std::fs::write(&file, documents.join("\n")).expect("state file");
    let state = crate::cluster::statefile::load_state(&[file], None, Copies::Manual)
        .expect("valid test state");
    let (view, value) = pod(pod_with_images(&[image]));
    let decision = decide(&view, namespace, &state);
    (
        pull_secret_names(&patched(&value, &decision)),
        decision.warnings,
    )
}

#[test]
fn without_the_controller_only_a_copy_that_exists_is_injected() {
    let documents = [
        secret("infra", "corp", &["registry.corp.example"]),
        // Copied by hand: not labelled as managed, and that is fine when nobody else writes.
        secret("by-hand", "corp-pull", &["registry.corp.example"]),
        broken_secret("broken", "corp-pull", "{not json"),
        cluster_pull_secret(
            "corp",
            ("infra", "corp"),
            json!({ "targetName": "corp-pull" }),
        ),
    ];
    let image = "registry.corp.example/app";
    let (injected, warnings) = decide_without_controller("by-hand", image, &documents);
    assert_eq!(injected, ["corp-pull"]);
    assert!(warnings.is_empty(), "{warnings:?}");

    // No copy: nothing that would fail the pull is added, and the pod is told why.
    let (injected, warnings) = decide_without_controller("no-copy", image, &documents);
    assert_eq!(injected, Vec::<String>::new());
    assert_eq!(
        warnings,
        [
            "ClusterPullSecret \"corp\": no secret \"corp-pull\" in namespace \"no-copy\", and no controller copies it (serve --enable-controller, controller.enabled in the chart); not injected"
        ]
    );

    let (injected, warnings) = decide_without_controller("broken", image, &documents);
    assert_eq!(injected, Vec::<String>::new());
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("\"corp-pull\" in namespace \"broken\" cannot be decoded")),
        "{warnings:?}"
    );

    // With the controller the same hand-made copy is a conflict it will not claim (discovery
    // still finds it), and a missing copy counts: the controller is about to write it.
    let (injected, decision) = decide_in("by-hand", &[image], &documents);
    assert_eq!(injected, ["corp-pull"]);
    assert!(
        decision.warnings.iter().any(|w| w.contains("not managed")),
        "{:?}",
        decision.warnings
    );
    assert_eq!(decide_in("no-copy", &[image], &documents).0, ["corp-pull"]);
}

#[test]
fn missing_or_undecodable_sources_warn_and_inject_nothing() {
    let documents = [
        broken_secret("infra", "broken", "{not json"),
        cluster_pull_secret(
            "gone",
            ("infra", "nowhere"),
            json!({ "registries": ["registry.corp.example"] }),
        ),
        cluster_pull_secret(
            "bad",
            ("infra", "broken"),
            json!({ "registries": ["registry.corp.example"] }),
        ),
    ];
    let (injected, decision) = decide_in("apps", &["registry.corp.example/app"], &documents);
    assert_eq!(injected, Vec::<String>::new());
    let warnings = decision.warnings.join("\n");
    assert!(
        warnings.contains("\"gone\"") && warnings.contains("not found"),
        "{warnings}"
    );
    assert!(
        warnings.contains("\"bad\"") && warnings.contains("cannot be decoded"),
        "{warnings}"
    );
}

#[test]
fn an_exclusive_rule_also_overrides_cluster_credentials() {
    let documents = [
        secret("infra", "corp", &["registry.corp.example"]),
        secret("apps", "team", &["registry.corp.example"]),
        cluster_pull_secret("corp", ("infra", "corp"), json!({})),
        rule(
            "apps",
            "team-only",
            "exclusive",
            &["registry.corp.example"],
            &["team"],
        ),
    ];
    assert_eq!(
        decide_in("apps", &["registry.corp.example/app"], &documents).0,
        ["team"]
    );
    // Without the rule: discovery first, then the credential.
    assert_eq!(
        decide_in("apps", &["registry.corp.example/app"], &documents[..3]).0,
        ["team", "corp"]
    );
}

#[test]
fn annotations_stay_bounded_for_pods_with_thousands_of_images() {
    let documents = [secret("ns", "r", &["r.example.com"])];
    let images: Vec<String> = (0..5000)
        .map(|index| format!("r.example.com/app{index}"))
        .collect();
    let images: Vec<&str> = images.iter().map(String::as_str).collect();
    let (view, value) = pod(pod_with_images(&images));
    let decision = decide(&view, "ns", &state(&documents));
    let result = patched(&value, &decision);
    let annotation = result
        .pointer("/metadata/annotations/pullsecret-injector.io~1injected")
        .and_then(Value::as_str)
        .expect("annotation");
    assert_eq!(
        annotation,
        "r (r.example.com/app0, r.example.com/app1, r.example.com/app2, +4997 more)"
    );
    assert_eq!(decision.audit_annotations["injected-for"], annotation);
    assert_eq!(pull_secret_names(&result), ["r"]);
}

#[test]
fn the_patch_applies_whatever_part_of_metadata_is_missing() {
    let state = state(&[secret("ns", "r", &["r.example.com"])]);
    let containers = json!([{ "name": "c", "image": "r.example.com/x" }]);
    let cases: &[(&str, Option<Value>)] = &[
        ("no metadata (a pod template)", None),
        ("metadata: null", Some(Value::Null)),
        ("empty metadata", Some(json!({}))),
        (
            "labels, no annotations",
            Some(json!({ "labels": { "app": "x" } })),
        ),
        ("annotations: null", Some(json!({ "annotations": null }))),
        (
            "other annotations",
            Some(json!({ "annotations": { "keep": "me" } })),
        ),
    ];
    for (label, metadata) in cases {
        let mut value = json!({ "spec": { "containers": containers } });
        if let Some(metadata) = metadata {
            value["metadata"] = metadata.clone();
        }
        let (view, value) = pod(value);
        let decision = decide(&view, "ns", &state);
        let mut result = value.clone();
        json_patch::patch(&mut result, &decision.patch)
            .unwrap_or_else(|error| panic!("{label}: the patch does not apply: {error}"));
        assert_eq!(pull_secret_names(&result), ["r"], "{label}");
        assert_eq!(
            result.pointer("/metadata/annotations/pullsecret-injector.io~1injected"),
            Some(&json!("r (r.example.com/x)")),
            "{label}"
        );
        // What was there stays.
        for kept in ["/metadata/labels/app", "/metadata/annotations/keep"] {
            assert_eq!(result.pointer(kept), value.pointer(kept), "{label}: {kept}");
        }
    }
}

/// One image's choice: (secret, origin) pairs and the problems, as `choose` reports them.
fn choice_in(
    namespace: &str,
    image: &str,
    documents: &[String],
) -> (Vec<(String, Origin)>, Vec<Problem>) {
    let state = state(documents);
    let lookup = ImageRef::parse(image).expect("valid image").lookup_key();
    let choice = choose(&state, namespace, state.namespace(namespace), &lookup);
    let chosen = choice
        .chosen
        .into_iter()
        .map(|chosen| (chosen.secret, chosen.origin))
        .collect();
    (chosen, choice.problems)
}

fn owned(pairs: &[(&str, Origin)]) -> Vec<(String, Origin)> {
    pairs
        .iter()
        .map(|(secret, origin)| (secret.to_string(), origin.clone()))
        .collect()
}

#[test]
fn every_injection_records_its_origin_and_nothing_warns_without_cause() {
    let documents = [
        secret("apps", "discovered", &["registry.example.com"]),
        secret("apps", "extra", &["other.example"]),
        secret("apps", "mirror", &["mirror.example"]),
        rule(
            "apps",
            "also-extra",
            "add",
            &["registry.example.com"],
            &["extra"],
        ),
        rule(
            "apps",
            "mirror-only",
            "exclusive",
            &["quay.io"],
            &["mirror"],
        ),
        secret("infra", "corp", &["registry.corp.example"]),
        cluster_pull_secret(
            "corp-registry",
            ("infra", "corp"),
            json!({ "targetName": "corp-pull" }),
        ),
    ];
    let add = Origin::Rule {
        name: "also-extra".to_owned(),
        mode: RuleMode::Add,
    };
    let exclusive = Origin::Rule {
        name: "mirror-only".to_owned(),
        mode: RuleMode::Exclusive,
    };
    let credential = Origin::ClusterCredential {
        name: "corp-registry".to_owned(),
    };
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, Origin)]);
    let cases: &[Case] = &[
        (
            "apps",
            "registry.example.com/app",
            &[("discovered", Origin::Discovery), ("extra", add.clone())],
        ),
        ("apps", "quay.io/team/app", &[("mirror", exclusive)]),
        (
            "apps",
            "registry.corp.example/app",
            &[("corp-pull", credential.clone())],
        ),
        // In the source's namespace the copy would have another name: the credential serves it.
        (
            "infra",
            "registry.corp.example/app",
            &[("corp", Origin::Discovery), ("corp-pull", credential)],
        ),
        ("apps", "nginx", &[]),
    ];
    for (namespace, image, expected) in cases {
        let (chosen, problems) = choice_in(namespace, image, &documents);
        assert_eq!(chosen, owned(expected), "{namespace} {image}");
        assert_eq!(problems, [], "{namespace} {image}");
        let (injected, decision) = decide_in(namespace, &[image], &documents);
        let names: Vec<&str> = expected.iter().map(|(secret, _)| *secret).collect();
        assert_eq!(injected, names, "{namespace} {image}");
        assert_eq!(
            decision.warnings,
            Vec::<String>::new(),
            "{namespace} {image}"
        );
    }
}

#[test]
fn a_cluster_credential_never_serves_the_namespace_its_source_lives_in() {
    // Target name = source name: in the source's namespace the "copy" is the source itself.
    let documents = [
        secret("infra", "corp", &["registry.corp.example"]),
        cluster_pull_secret("corp", ("infra", "corp"), json!({})),
        cluster_pull_secret(
            "corp-mirror",
            ("infra", "corp"),
            json!({ "registries": ["mirror.corp.example"], "targetName": "corp" }),
        ),
    ];
    // Discovery finds the source; the credential adds nothing and claims no conflict.
    let (chosen, problems) = choice_in("infra", "registry.corp.example/app", &documents);
    assert_eq!(chosen, owned(&[("corp", Origin::Discovery)]));
    assert_eq!(problems, []);
    // A registry only the credential's override covers: nothing, and no warning either.
    let (chosen, problems) = choice_in("infra", "mirror.corp.example/app", &documents);
    assert_eq!(chosen, []);
    assert_eq!(problems, []);
    for image in ["registry.corp.example/app", "mirror.corp.example/app"] {
        let (_, decision) = decide_in("infra", &[image], &documents);
        assert_eq!(decision.warnings, Vec::<String>::new(), "{image}");
    }
    // Every other namespace is served by the credential itself.
    let (chosen, problems) = choice_in("apps", "mirror.corp.example/app", &documents);
    let credential = Origin::ClusterCredential {
        name: "corp-mirror".to_owned(),
    };
    assert_eq!(chosen, owned(&[("corp", credential)]));
    assert_eq!(problems, []);
}

#[test]
fn a_conflicting_secret_is_reported_as_the_problem_it_is() {
    let documents = [
        secret("infra", "corp", &["registry.corp.example"]),
        secret("apps", "corp", &["elsewhere.example"]),
        cluster_pull_secret("corp", ("infra", "corp"), json!({})),
    ];
    let (chosen, problems) = choice_in("apps", "registry.corp.example/app", &documents);
    assert_eq!(chosen, []);
    assert_eq!(
        problems,
        [Problem::TargetTaken {
            credential: "corp".to_owned(),
            namespace: "apps".to_owned(),
            target: "corp".to_owned(),
        }]
    );
    let (_, decision) = decide_in("apps", &["registry.corp.example/app"], &documents);
    assert_eq!(
        decision.warnings,
        [
            "ClusterPullSecret \"corp\": secret \"corp\" in namespace \"apps\" is not managed by it; not injected on its behalf"
        ]
    );
}

#[test]
fn a_key_that_misses_only_by_case_is_not_injected_and_is_warned_about() {
    let documents = [
        secret("ns", "lower", &["registry.example.com"]),
        secret("ns", "upper", &["https://Mirror.Example.com/v1/"]),
    ];
    let cases: &[(&str, &[&str], &str)] = &[
        // The image's host in another case than the key.
        ("Registry.Example.com/app", &[], "\"lower\""),
        // The key's host in another case than the image.
        ("mirror.example.com/app", &[], "\"upper\""),
    ];
    for (image, injected, named) in cases {
        let (names, decision) = decide_in("ns", &[image], &documents);
        assert_eq!(names, *injected, "{image}");
        assert_eq!(
            decision.warnings.len(),
            1,
            "{image}: {:?}",
            decision.warnings
        );
        let warning = &decision.warnings[0];
        assert!(warning.contains(named), "{warning}");
        assert!(
            warning.contains("the kubelet compares registry hosts case-sensitively"),
            "{warning}"
        );
    }
    // Exact matches warn about nothing, with or without uppercase keys in the namespace.
    for image in [
        "registry.example.com/app",
        "Mirror.Example.com/app",
        "quay.io/x",
    ] {
        let (_, decision) = decide_in("ns", &[image], &documents);
        assert_eq!(decision.warnings, Vec::<String>::new(), "{image}");
    }
    // A secret that serves the image exactly is not reported for another key of another case.
    let both = [
        secret("ns", "exact", &["registry.example.com"]),
        secret("ns", "other-case", &["Registry.example.com"]),
    ];
    let (names, decision) = decide_in("ns", &["registry.example.com/app"], &both);
    assert_eq!(names, ["exact"]);
    assert_eq!(decision.warnings.len(), 1, "{:?}", decision.warnings);
    assert!(decision.warnings[0].contains("\"other-case\""));
}

// ---------------------------------------------------------------------------------------------
// Rows printed by the parity run against the kubelet's Go code (tests/parity, `make parity`).

/// A namespace of secrets and a pod, and what must be injected as the kubelet's own functions
/// compute it (MATCHING.md §6).
/// A secret as a row states it: (name, type, data as (key, value)).
type GoSecret = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static [u8])],
);

struct GoCase {
    secrets: &'static [GoSecret],
    pod_secrets: &'static [&'static str],
    init: &'static [&'static str],
    containers: &'static [&'static str],
    ephemeral: &'static [&'static str],
    /// Image volumes' references.
    volumes: &'static [&'static str],
    /// (secret, lookup strings it was injected for)
    injected: &'static [(&'static str, &'static [&'static str])],
    invalid_images: usize,
}

/// Cases where we differed from Go until fixed, and quirks confirmed against it.
const GO_PARITY: &[GoCase] = &[GoCase {
    secrets: &[
        (
            "a",
            DOCKER_CONFIG_JSON_TYPE,
            &[(DOCKER_CONFIG_JSON_KEY, b"{\"auths\":{\"docker.io\":{}}}")],
        ),
        (
            "b",
            DOCKERCFG_TYPE,
            &[(DOCKERCFG_KEY, b"{\"https://index.docker.io/v1/\":{}}")],
        ),
        (
            "c",
            DOCKER_CONFIG_JSON_TYPE,
            &[(
                DOCKER_CONFIG_JSON_KEY,
                b"{\"auths\":{\"quay.io\":{\"auth\":\"x\"}}}",
            )],
        ),
        (
            "d",
            DOCKERCFG_TYPE,
            &[(DOCKERCFG_KEY, b"{\"quay.io/team\":{}}")],
        ),
    ],
    pod_secrets: &["missing"],
    init: &["busybox"],
    containers: &["nginx", "quay.io/x", "Bad"],
    ephemeral: &["quay.io/team/app:1"],
    volumes: &[],
    injected: &[
        (
            "a",
            &["docker.io/library/busybox", "docker.io/library/nginx"],
        ),
        ("d", &["quay.io/team/app"]),
    ],
    invalid_images: 1,
}];

#[test]
fn go_parity_table() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;

    for (index, case) in GO_PARITY.iter().enumerate() {
        let mut documents = vec![namespace("ns", false)];
        for (name, secret_type, data) in case.secrets {
            let data: serde_json::Map<String, Value> = data
                .iter()
                .map(|(key, value)| (key.to_string(), Value::from(BASE64.encode(value))))
                .collect();
            documents.push(
                json!({
                    "apiVersion": "v1", "kind": "Secret", "type": secret_type,
                    "metadata": { "namespace": "ns", "name": name },
                    "data": data,
                })
                .to_string(),
            );
        }
        let containers = |images: &[&str]| -> Vec<Value> {
            images
                .iter()
                .map(|image| json!({ "name": "c", "image": image }))
                .collect()
        };
        let references: Vec<Value> = case
            .pod_secrets
            .iter()
            .map(|name| json!({ "name": name }))
            .collect();
        let (view, _) = pod(json!({
            "metadata": { "name": "p" },
            "spec": {
                "initContainers": containers(case.init),
                "containers": containers(case.containers),
                "ephemeralContainers": containers(case.ephemeral),
                "imagePullSecrets": references,
                "volumes": case.volumes.iter().enumerate()
                    .map(|(i, reference)| json!({ "name": format!("v{i}"), "image": { "reference": reference } }))
                    .collect::<Vec<_>>(),
            },
        }));
        let decision = decide(&view, "ns", &state(&documents));
        let injected: Vec<(&str, Vec<&str>)> = decision
            .injected
            .iter()
            .map(|injection| {
                let registries = injection.registries.iter().map(String::as_str).collect();
                (injection.secret.as_str(), registries)
            })
            .collect();
        let want: Vec<(&str, Vec<&str>)> = case
            .injected
            .iter()
            .map(|(secret, registries)| (*secret, registries.to_vec()))
            .collect();
        assert_eq!(injected, want, "GO_PARITY[{index}]");
        assert_eq!(
            decision.invalid_images, case.invalid_images,
            "GO_PARITY[{index}]"
        );
    }
}

#[test]
fn the_namespace_mode_label_wins_over_the_default_both_ways() {
    use crate::state::snapshot::{MODE_LABEL, ModeSource};
    let documents = |label: Option<&str>| {
        let labels = match label {
            Some(value) => json!({ MODE_LABEL: value }),
            None => json!({}),
        };
        vec![
            labelled_namespace("shop", labels),
            secret("shop", "regcred", &["r.example.com"]),
        ]
    };
    for (label, default, mode, source) in [
        (None, Mode::On, Mode::On, ModeSource::Default),
        (None, Mode::Shadow, Mode::Shadow, ModeSource::Default),
        (
            Some("shadow"),
            Mode::On,
            Mode::Shadow,
            ModeSource::NamespaceLabel,
        ),
        (
            Some("on"),
            Mode::Shadow,
            Mode::On,
            ModeSource::NamespaceLabel,
        ),
        (
            Some("shadow"),
            Mode::Shadow,
            Mode::Shadow,
            ModeSource::NamespaceLabel,
        ),
        // A value it does not know does not switch anything on (or off).
        (
            Some("enforce"),
            Mode::Shadow,
            Mode::Shadow,
            ModeSource::Default,
        ),
        (Some("Shadow"), Mode::On, Mode::On, ModeSource::Default),
    ] {
        let state = ClusterState::clone(&state(&documents(label))).with_default_mode(default);
        assert_eq!(state.mode("shop"), (mode, source), "{label:?} {default:?}");
        let (view, value) = pod(pod_with_images(&["r.example.com/app:1"]));
        let decision = decide(&view, "shop", &state);
        assert_eq!(decision.mode, mode);
        // The decision is the same in both modes; only what is done with it differs.
        assert_eq!(decision.injected_names().collect::<Vec<_>>(), ["regcred"]);
        match mode {
            Mode::On => {
                assert_eq!(pull_secret_names(&patched(&value, &decision)), ["regcred"]);
                assert_eq!(decision.audit_annotations["injected-secrets"], "regcred");
            }
            Mode::Shadow => {
                assert!(decision.patch.0.is_empty(), "{:?}", decision.patch);
                assert_eq!(
                    decision.audit_annotations,
                    BTreeMap::from([
                        (
                            "shadow-would-inject-secrets".to_owned(),
                            "regcred".to_owned()
                        ),
                        (
                            "shadow-would-inject-for".to_owned(),
                            "regcred (r.example.com/app)".to_owned()
                        ),
                    ])
                );
            }
        }
    }
}

#[test]
fn shadow_mode_leaves_opt_outs_and_pods_without_a_match_alone() {
    use crate::state::snapshot::MODE_LABEL;
    let state = state(&[
        labelled_namespace("shop", json!({ MODE_LABEL: "shadow" })),
        secret("shop", "regcred", &["r.example.com"]),
    ]);
    let (view, _) = pod(pod_with_images(&["docker.io/library/nginx:1"]));
    let decision = decide(&view, "shop", &state);
    assert_eq!(decision.mode, Mode::Shadow);
    assert!(decision.injected.is_empty() && decision.audit_annotations.is_empty());
    let (view, _) = pod(json!({
        "metadata": { "name": "p", "labels": { INJECT_LABEL: "false" } },
        "spec": { "containers": [{ "name": "c", "image": "r.example.com/app:1" }] },
    }));
    let decision = decide(&view, "shop", &state);
    assert_eq!(decision.opt_out, Some(OptOut::Pod));
    assert!(decision.audit_annotations.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Image volumes: the kubelet pulls `volumes[].image.reference` with the pod's pull secrets and
// the same lookup as a container's image.

/// A pod whose images are all image volumes (named like the containers of
/// [`pod_with_images`]), with one container that has no image of its own.
fn pod_with_image_volumes(references: &[&str], pull_policy: Option<&str>) -> Value {
    let volumes: Vec<Value> = references
        .iter()
        .enumerate()
        .map(|(index, reference)| {
            let mut image = json!({ "reference": reference });
            if let Some(policy) = pull_policy {
                image["pullPolicy"] = json!(policy);
            }
            json!({ "name": format!("c{index}"), "image": image })
        })
        .collect();
    json!({ "metadata": { "name": "p" }, "spec": {
        "containers": [{ "name": "main" }],
        "volumes": volumes,
    } })
}

#[test]
fn image_volumes_are_decided_exactly_like_container_images() {
    use crate::state::snapshot::MODE_LABEL;
    let documents = [
        labelled_namespace("ns", json!({})),
        labelled_namespace("shadowed", json!({ MODE_LABEL: "shadow" })),
        secret("ns", "r5000", &["registry.example.com:5000"]),
        secret("ns", "hub", &["https://index.docker.io/v1/"]),
        secret("ns", "quay", &["quay.io/team"]),
        secret("ns", "mirror", &["mirror.example.com"]),
        secret("shadowed", "r5000", &["registry.example.com:5000"]),
        broken_secret(
            "ns",
            "broken",
            r#"{"auths": {"broken.example.com": {"auth": "!"}}}"#,
        ),
        rule(
            "ns",
            "only-mirror",
            "exclusive",
            &["models.example.com"],
            &["mirror"],
        ),
        rule("ns", "missing", "add", &["quay.io"], &["absent"]),
        secret("infra", "corp", &["registry.corp.example"]),
        cluster_pull_secret(
            "corp",
            ("infra", "corp"),
            json!({ "targetName": "corp-pull" }),
        ),
    ];
    let state = state(&documents);
    let cases: &[&[&str]] = &[
        &["registry.example.com:5000/models/llm:1"],
        &[
            "registry.example.com:5000/a",
            "nginx:1.25",
            "quay.io/team/x@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ],
        &[
            "models.example.com/weights:1",
            "registry.corp.example/data:2",
        ],
        &[
            "quay.io/other/x",
            "broken.example.com/x",
            "REGISTRY.example.com:5000/a",
        ],
        &["NGINX", "nginx:", "registry.example.com:5000/a"],
        &["registry.example.com:6000/unserved"],
    ];
    for namespace in ["ns", "shadowed"] {
        for images in cases {
            let (containers, _) = pod(pod_with_images(images));
            let by_container = decide(&containers, namespace, &state);
            for policy in [None, Some("Always"), Some("IfNotPresent"), Some("Never")] {
                let (view, value) = pod(pod_with_image_volumes(images, policy));
                let by_volume = decide(&view, namespace, &state);
                let context = format!("{namespace} {images:?} pullPolicy {policy:?}");
                assert_eq!(by_volume.injected, by_container.injected, "{context}");
                assert_eq!(
                    by_volume.audit_annotations, by_container.audit_annotations,
                    "{context}"
                );
                assert_eq!(by_volume.mode, by_container.mode, "{context}");
                assert_eq!(
                    by_volume.invalid_images, by_container.invalid_images,
                    "{context}"
                );
                assert_eq!(
                    by_volume.images_without_match, by_container.images_without_match,
                    "{context}"
                );
                // The same warnings, each naming the image volume where it named the container.
                let renamed: Vec<String> = by_volume
                    .warnings
                    .iter()
                    .map(|warning| warning.replace("image volume \"", "container \""))
                    .collect();
                assert_eq!(renamed, by_container.warnings, "{context}");
                assert_eq!(
                    pull_secret_names(&patched(&value, &by_volume)),
                    if by_volume.mode == Mode::On {
                        by_volume.injected_names().collect::<Vec<_>>()
                    } else {
                        Vec::new()
                    },
                    "{context}"
                );
            }
        }
    }
}

#[test]
fn a_pod_pulling_from_two_registries_gets_the_secret_of_each() {
    // The case of the report: the container's image and the image volume come from two
    // authenticated registries, each with its secret in the namespace.
    let documents = [
        secret("ns", "apps", &["apps.example.com"]),
        secret("ns", "models", &["models.example.com:5000"]),
    ];
    let (view, value) = pod(json!({
        "metadata": { "name": "p" },
        "spec": {
            "containers": [{ "name": "server", "image": "apps.example.com/server:1",
                             "volumeMounts": [{ "name": "weights", "mountPath": "/models" }] }],
            "volumes": [
                { "name": "scratch", "emptyDir": {} },
                { "name": "weights", "image": { "reference": "models.example.com:5000/llm:7", "pullPolicy": "IfNotPresent" } },
                { "name": "config", "configMap": { "name": "cfg" } },
            ],
        }
    }));
    let decision = decide(&view, "ns", &state(&documents));
    assert_eq!(
        pull_secret_names(&patched(&value, &decision)),
        ["apps", "models"]
    );
    assert_eq!(
        decision.audit_annotations["injected-for"],
        "apps (apps.example.com/server); models (models.example.com:5000/llm)"
    );
    assert!(decision.warnings.is_empty(), "{:?}", decision.warnings);
}

#[test]
fn image_volumes_without_a_usable_reference_warn_like_containers_and_change_nothing() {
    let documents = [secret("ns", "hub", &["docker.io"])];
    let state = state(&documents);
    for volumes in [
        json!(null),
        json!([]),
        json!([{ "name": "v" }]),
        json!([{ "name": "v", "image": null }]),
        json!([{ "name": "v", "image": {} }]),
        json!([{ "name": "v", "image": { "reference": null, "pullPolicy": "Always" } }]),
        json!([{ "name": "v", "image": { "reference": "" } }]),
        json!([{ "image": { "reference": "" } }]),
        json!([{ "name": "v", "emptyDir": {} }]),
    ] {
        let (view, _) = pod(json!({ "metadata": { "name": "p" }, "spec": {
            "containers": [{ "name": "c", "image": "registry.example.com/app" }],
            "volumes": volumes,
        } }));
        let decision = decide(&view, "ns", &state);
        assert!(
            decision.injected.is_empty() && decision.warnings.is_empty(),
            "{volumes}: {decision:?}"
        );
    }
    let hostile = format!("{}\u{0}", "X".repeat(100_000));
    let (view, _) = pod(json!({ "metadata": { "name": "p" }, "spec": {
        "containers": [{ "name": "c", "image": "nginx" }],
        "volumes": [
            { "name": "upper", "image": { "reference": "Team/Models:1" } },
            { "name": "hex", "image": { "reference": "0".repeat(64) } },
            { "name": "digest", "image": { "reference": "nginx@md5:abc" } },
            { "name": hostile.clone(), "image": { "reference": hostile } },
        ],
    } }));
    let decision = decide(&view, "ns", &state);
    assert_eq!(decision.injected_names().collect::<Vec<_>>(), ["hub"]);
    assert_eq!(decision.invalid_images, 4);
    assert_eq!(decision.warnings.len(), 4, "{:?}", decision.warnings);
    assert!(
        decision.warnings[0].starts_with(
            "image volume \"upper\": image \"Team/Models:1\" is not a valid image reference"
        ),
        "{}",
        decision.warnings[0]
    );
    assert!(decision.warnings.iter().all(|warning| warning.len() < 512));
}
