use super::*;

#[test]
fn yaml_streams_json_and_lists_are_all_read() {
    let yaml = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Secret
  type: kubernetes.io/dockerconfigjson
  metadata: {name: a, namespace: one}
  data:
    .dockerconfigjson: eyJhdXRocyI6eyJyLmV4YW1wbGUuY29tIjp7fX19
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: ignored, namespace: one}
---
---
apiVersion: v1
kind: Secret
type: kubernetes.io/dockercfg
metadata: {name: legacy}
stringData:
  .dockercfg: '{"legacy.example.com": {}}'
"#;
    let state = state_from_str("state.yaml", yaml).expect("valid");
    assert_eq!(state.secret_count(), 2);
    assert!(state.namespace("one").unwrap().secrets().contains_key("a"));
    assert!(
        state
            .namespace("default")
            .unwrap()
            .secrets()
            .contains_key("legacy")
    );

    let json = r#"{"kind":"Namespace","metadata":{"name":"x","labels":{"pullsecret-injector.io/inject":"false"}}}
{"kind":"Namespace","metadata":{"name":"y"}}"#;
    let state = state_from_str("state.json", json).expect("valid");
    assert!(state.namespace("x").unwrap().opted_out());
    assert!(!state.namespace("y").unwrap().opted_out());
}

#[test]
fn errors_name_the_source_and_document() {
    let cases = [
        (
            "a: b\n---\n- just\n- a list\n",
            "state.yaml: document 2: not an object",
        ),
        (
            "a: b\n---\nkey: [unclosed\n",
            "state.yaml: document 2: invalid YAML/JSON",
        ),
        (
            "{\"kind\": \"Secret\", \"metadata\": {\"name\": \"s\"}, \"data\": {\"x\": \"%%%\"}}",
            "state.yaml: document 1: invalid Secret",
        ),
        (
            "{\"kind\": \"Namespace\", \"metadata\": 5}",
            "state.yaml: document 1: invalid Namespace",
        ),
        ("{\"a\": ", "state.yaml: document 1: invalid YAML/JSON"),
    ];
    for (text, expected) in cases {
        let error = state_from_str("state.yaml", text)
            .expect_err(text)
            .to_string();
        assert!(
            error.starts_with(expected),
            "{error:?} should start with {expected:?}"
        );
        assert!(!error.contains('\n'), "one line: {error:?}");
    }
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let error = load_state(
        &[PathBuf::from("/nonexistent/state.yaml")],
        None,
        Copies::Controller,
    )
    .expect_err("missing");
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/state.yaml: cannot read:")
    );
}

#[test]
fn custom_resources_in_state_files_are_read() {
    let yaml = r#"
apiVersion: pullsecret-injector.io/v1alpha1
kind: PullSecretRule
metadata: {name: r}
spec: {registries: [quay.io], secrets: [q]}
---
apiVersion: pullsecret-injector.io/v1alpha1
kind: ClusterPullSecret
metadata: {name: c}
spec: {source: {namespace: infra, name: corp}}
---
apiVersion: other.example/v1
kind: PullSecretRule
metadata: {name: not-ours}
spec: {anything: 1}
"#;
    let state = state_from_str("state.yaml", yaml).expect("valid");
    let rules = state.namespace("default").expect("rule namespace").rules();
    assert_eq!(rules.len(), 1);
    assert!(rules[0].matches("quay.io/x/y"));
    assert_eq!(state.credentials().len(), 1);
    assert_eq!(state.credentials()[0].target_name, "c");
}

#[test]
fn an_invalid_custom_resource_names_its_kind() {
    let yaml = "apiVersion: pullsecret-injector.io/v1alpha1\nkind: PullSecretRule\nmetadata: {name: r}\nspec: {registries: quay.io}\n";
    let error = state_from_str("state.yaml", yaml).expect_err("invalid");
    assert!(
        error.to_string().contains("invalid PullSecretRule"),
        "{error}"
    );
}

#[test]
fn namespace_label_changes_reselect_and_notify() {
    use crate::state::snapshot::StateBuilder;
    let ns = |labels: &str| -> k8s_openapi::api::core::v1::Namespace {
        serde_yaml::from_str(&format!("metadata: {{name: apps, labels: {labels}}}")).unwrap()
    };
    let cps: crate::state::crd::ClusterPullSecret = serde_yaml::from_str(
        "apiVersion: pullsecret-injector.io/v1alpha1\nkind: ClusterPullSecret\nmetadata: {name: c}\nspec: {source: {namespace: infra, name: corp}, namespaceSelector: {matchLabels: {corp: 'true'}}}",
    )
    .unwrap();
    let mut builder = StateBuilder::new();
    builder.apply_cluster_pull_secret(&cps);
    builder.apply_namespace(&ns("{corp: 'true'}"));
    let state = builder.snapshot();
    assert!(builder.take_namespace_changes());
    assert_eq!(state.credentials_for("apps").count(), 1);
    builder.apply_namespace(&ns("{corp: 'true'}"));
    assert!(
        !builder.take_namespace_changes(),
        "no change, no notification"
    );
    builder.apply_namespace(&ns("{}"));
    let state = builder.snapshot();
    assert!(builder.take_namespace_changes());
    assert_eq!(state.credentials_for("apps").count(), 0);
}

#[test]
fn the_summary_counts_what_was_read_and_what_was_ignored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state.yaml");
    let manifests = dir.path().join("manifests.yaml");
    std::fs::write(
        &state,
        "kind: Namespace\nmetadata: {name: a}\n---\nkind: Secret\ntype: Opaque\nmetadata: {name: s, namespace: a}\n",
    )
    .expect("write");
    std::fs::write(
        &manifests,
        "kind: List\nitems:\n- {kind: Pod, metadata: {name: p}}\n- {kind: Pod, metadata: {name: q}}\n---\nkind: Deployment\nmetadata: {name: d}\n---\nmetadata: {name: kindless}\n",
    )
    .expect("write");
    let (_, summaries) =
        load_state_summarized(&[state.clone(), manifests.clone()], None, Copies::Manual)
            .expect("readable");
    assert_eq!(
        summaries,
        [
            SourceSummary {
                source_name: state.display().to_string(),
                read: 2,
                ignored: BTreeMap::new(),
            },
            SourceSummary {
                source_name: manifests.display().to_string(),
                read: 0,
                ignored: BTreeMap::from([
                    ("<none>".to_owned(), 1),
                    ("Deployment".to_owned(), 1),
                    ("Pod".to_owned(), 2),
                ]),
            },
        ]
    );
}
