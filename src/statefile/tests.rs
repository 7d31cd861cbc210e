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
    let error = load_state(&[PathBuf::from("/nonexistent/state.yaml")], None).expect_err("missing");
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/state.yaml: cannot read:")
    );
}
