//! The offline commands as a user runs them: the real binary, files in a temporary directory,
//! stdout, stderr and the exit code. `apply` over every workload kind with and without template
//! metadata, `review` against the webhook's own answer, `explain -o json`, the warnings on
//! mistaken input, and the exit-code table of the README.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_pullsecret-injector");
const INJECTED: &str = "pullsecret-injector.io/injected";

/// The README's exit codes.
const SUCCESS: i32 = 0;
const FAILURE: i32 = 1;
const INPUT_ERROR: i32 = 2;

/// A dockerconfigjson Secret for `keys`, with a placeholder credential.
fn secret(namespace: &str, name: &str, keys: &[&str]) -> Value {
    let auths: serde_json::Map<String, Value> = keys
        .iter()
        .map(|key| (key.to_string(), json!({ "auth": "ZGVtbzpkZW1v" })))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": { "namespace": namespace, "name": name },
        "stringData": { ".dockerconfigjson": json!({ "auths": auths }).to_string() },
    })
}

fn namespace(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } })
}

/// The state most tests use: `regcred` for registry.example.com and `hub` for Docker Hub in
/// `shop`, and the namespace `empty` with no secret.
fn shop_state() -> Value {
    json!({ "apiVersion": "v1", "kind": "List", "items": [
        namespace("shop"),
        namespace("empty"),
        secret("shop", "regcred", &["registry.example.com"]),
        secret("shop", "hub", &["https://index.docker.io/v1/"]),
    ]})
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().expect("temp dir"))
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, text).expect("write test file");
        path
    }

    fn json(&self, name: &str, value: &Value) -> PathBuf {
        self.file(name, &value.to_string())
    }

    fn state(&self) -> PathBuf {
        self.json("state.json", &shop_state())
    }
}

/// Runs the binary from the repository root with `args`, `stdin` on its standard input.
fn run(args: &[&str], stdin: &str) -> Output {
    run_to(args, stdin, Stdio::piped())
}

fn run_to(args: &[&str], stdin: &str, stdout: Stdio) -> Output {
    let mut child = Command::new(BINARY)
        .args(args)
        // Relative paths are the README's, from the repository root.
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pullsecret-injector");
    let mut input = child.stdin.take().expect("stdin");
    // A command that fails early may not read its input: a broken pipe here is fine.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    child.wait_with_output().expect("wait")
}

fn path(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code, not a signal")
}

/// `apply`'s output, one JSON value per YAML document.
fn documents(output: &Output) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&stdout(output))
        .map(|document| Value::deserialize(document).expect("apply prints YAML"))
        .collect()
}

fn names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|item| item["name"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// apply

/// Every kind `apply` handles, with where its pod template is.
const WORKLOADS: &[(&str, &str, &str)] = &[
    ("v1", "Pod", ""),
    ("apps/v1", "Deployment", "/spec/template"),
    ("apps/v1", "StatefulSet", "/spec/template"),
    ("apps/v1", "DaemonSet", "/spec/template"),
    ("apps/v1", "ReplicaSet", "/spec/template"),
    ("batch/v1", "Job", "/spec/template"),
    ("batch/v1", "CronJob", "/spec/jobTemplate/spec/template"),
];

/// A workload of `kind` whose pod runs `image`; its template has `metadata` when given.
fn workload(api_version: &str, kind: &str, template_path: &str, metadata: Option<Value>) -> Value {
    let name = format!(
        "{}-{}",
        kind.to_lowercase(),
        if metadata.is_some() { "meta" } else { "bare" }
    );
    let mut pod = json!({ "spec": { "containers": [{ "name": "app", "image": "registry.example.com/team/app:1" }] } });
    if let Some(metadata) = metadata {
        pod["metadata"] = metadata;
    }
    if template_path.is_empty() {
        let mut object = pod;
        object["metadata"] = json!({ "name": name, "namespace": "shop" });
        object["apiVersion"] = json!(api_version);
        object["kind"] = json!(kind);
        return object;
    }
    let mut object = json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": { "name": name, "namespace": "shop" },
    });
    // Build the path down to the template.
    let mut at = &mut object;
    for token in template_path.trim_start_matches('/').split('/') {
        at = at
            .as_object_mut()
            .expect("object")
            .entry(token)
            .or_insert_with(|| json!({}));
    }
    *at = pod;
    object
}

#[test]
fn apply_injects_into_the_pod_template_of_every_workload_kind_with_or_without_its_metadata() {
    let dir = Dir::new();
    let mut manifests = Vec::new();
    for (api_version, kind, template_path) in WORKLOADS {
        for metadata in [None, Some(json!({ "labels": { "app": "web" } }))] {
            manifests.push(workload(api_version, kind, template_path, metadata));
        }
    }
    let text: Vec<String> = manifests
        .iter()
        .map(|m| serde_yaml::to_string(m).expect("yaml"))
        .collect();
    let file = dir.file("manifests.yaml", &text.join("---\n"));
    let output = run(
        &["apply", "--state", path(&dir.state()), "-f", path(&file)],
        "",
    );
    assert_eq!(code(&output), SUCCESS, "{}", stderr(&output));
    assert_eq!(stderr(&output), "", "no warning expected");
    let out = documents(&output);
    assert_eq!(out.len(), manifests.len());
    for (before, after) in manifests.iter().zip(&out) {
        let kind = before["kind"].as_str().expect("kind");
        let name = after["metadata"]["name"].as_str().unwrap_or_default();
        let (_, _, template_path) = WORKLOADS.iter().find(|w| w.1 == kind).expect("known kind");
        let template = after.pointer(template_path).expect("template kept");
        assert_eq!(
            names(template.pointer("/spec/imagePullSecrets")),
            ["regcred"],
            "{kind}/{name}: {after}"
        );
        assert_eq!(
            template.pointer(&format!(
                "/metadata/annotations/{}",
                INJECTED.replace('/', "~1")
            )),
            Some(&json!("regcred (registry.example.com/team/app)")),
            "{kind}/{name}"
        );
        // What the template had is kept; nothing else of the document changes.
        let before_template = before.pointer(template_path).expect("template");
        assert_eq!(
            template.pointer("/metadata/labels"),
            before_template.pointer("/metadata/labels"),
            "{kind}/{name}"
        );
        assert_eq!(
            template["spec"]["containers"],
            before_template["spec"]["containers"]
        );
        let mut rest = after.clone();
        let mut rest_before = before.clone();
        if !template_path.is_empty() {
            *rest.pointer_mut(template_path).expect("template") = Value::Null;
            *rest_before.pointer_mut(template_path).expect("template") = Value::Null;
            assert_eq!(
                rest, rest_before,
                "{kind}/{name}: only the template changes"
            );
        }
    }
}

#[test]
fn apply_injects_for_the_image_volumes_of_every_workload_kind_and_warns_about_bad_references() {
    let dir = Dir::new();
    let mut manifests = Vec::new();
    for (api_version, kind, template_path) in WORKLOADS {
        let mut manifest = workload(api_version, kind, template_path, None);
        let spec = manifest
            .pointer_mut(&format!("{template_path}/spec"))
            .expect("pod spec");
        // The container's image needs no secret; the image volume's does.
        spec["containers"][0]["image"] = json!("quay.io/public/app:1");
        spec["containers"][0]["volumeMounts"] =
            json!([{ "name": "models", "mountPath": "/models" }]);
        spec["volumes"] = json!([
            { "name": "scratch", "emptyDir": {} },
            { "name": "models", "image": { "reference": "registry.example.com/team/models:1", "pullPolicy": "IfNotPresent" } },
            { "name": "unset", "image": {} },
            { "name": "bad", "image": { "reference": "Registry.Example.com/Team/Models" } },
        ]);
        manifests.push(manifest);
    }
    let text: Vec<String> = manifests
        .iter()
        .map(|m| serde_yaml::to_string(m).expect("yaml"))
        .collect();
    let file = dir.file("manifests.yaml", &text.join("---\n"));
    let output = run(
        &["apply", "--state", path(&dir.state()), "-f", path(&file)],
        "",
    );
    assert_eq!(code(&output), SUCCESS, "{}", stderr(&output));
    let out = documents(&output);
    assert_eq!(out.len(), manifests.len());
    for ((before, after), (_, kind, template_path)) in manifests.iter().zip(&out).zip(WORKLOADS) {
        let template = after.pointer(template_path).expect("template kept");
        assert_eq!(
            names(template.pointer("/spec/imagePullSecrets")),
            ["regcred"],
            "{kind}: {after}"
        );
        assert_eq!(
            template.pointer(&format!(
                "/metadata/annotations/{}",
                INJECTED.replace('/', "~1")
            )),
            Some(&json!("regcred (registry.example.com/team/models)")),
            "{kind}"
        );
        let before_template = before.pointer(template_path).expect("template");
        assert_eq!(
            template["spec"]["volumes"],
            before_template["spec"]["volumes"]
        );
    }
    // One warning per document for the unparsable reference, naming the volume; never a refusal.
    let warnings = stderr(&output);
    let bad: Vec<&str> = warnings
        .lines()
        .filter(|line| line.contains("image volume \"bad\": image \"Registry.Example.com/Team/Models\" is not a valid image reference"))
        .collect();
    assert_eq!(bad.len(), WORKLOADS.len(), "{warnings}");
    assert!(!warnings.contains("unset"), "{warnings}");
}

#[test]
fn apply_keeps_existing_secrets_handles_lists_and_stdin_and_passes_other_kinds_through() {
    let dir = Dir::new();
    let manifests = json!({ "apiVersion": "v1", "kind": "List", "items": [
        { "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "mine" },
          "spec": { "template": { "spec": {
              "imagePullSecrets": [{ "name": "my-own" }],
              "containers": [{ "name": "a", "image": "registry.example.com/a" }, { "name": "b", "image": "nginx" }] } } } },
        { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" }, "data": { "k": "v" } },
        { "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "public" },
          "spec": { "containers": [{ "name": "q", "image": "quay.io/x/y" }] } },
    ]});
    // The namespace comes from -n for documents without one.
    let output = run(
        &[
            "apply",
            "--state",
            path(&dir.state()),
            "-f",
            "-",
            "-n",
            "shop",
        ],
        &manifests.to_string(),
    );
    assert_eq!(code(&output), SUCCESS, "{}", stderr(&output));
    let out = documents(&output);
    assert_eq!(out.len(), 1);
    let items = out[0]["items"].as_array().expect("items");
    assert_eq!(
        names(items[0].pointer("/spec/template/spec/imagePullSecrets")),
        ["my-own", "regcred", "hub"]
    );
    assert_eq!(items[1], manifests["items"][1], "other kinds pass through");
    assert_eq!(
        items[2], manifests["items"][2],
        "nothing to inject: unchanged"
    );
}

#[test]
fn apply_leaves_a_workload_without_a_pod_template_unchanged_and_says_so() {
    let dir = Dir::new();
    let manifests = dir.file(
        "m.yaml",
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly, namespace: shop}\nspec: {schedule: '@daily'}\n",
    );
    let output = run(
        &[
            "apply",
            "--state",
            path(&dir.state()),
            "-f",
            path(&manifests),
        ],
        "",
    );
    assert_eq!(code(&output), SUCCESS);
    assert_eq!(
        documents(&output)[0]["spec"],
        json!({ "schedule": "@daily" })
    );
    assert_eq!(
        stderr(&output),
        format!(
            "Warning: {}: document 1: CronJob/nightly has no pod template at spec.jobTemplate.spec.template; left unchanged\n",
            manifests.display()
        )
    );
}

// ---------------------------------------------------------------------------------------------
// review

/// An AdmissionReview of a Pod CREATE in `namespace`, uid `e2b1-uid`.
fn pod_create_review(namespace: &str, object: &Value) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "e2b1-uid", "namespace": namespace, "operation": "CREATE",
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "userInfo": { "username": "someone" }, "object": object,
        }
    })
    .to_string()
}

#[test]
fn review_answers_exactly_what_the_webhook_answers() {
    let dir = Dir::new();
    let state_file = dir.state();
    let cases = [
        json!({ "metadata": { "generateName": "web-" }, "spec": { "containers": [
            { "name": "a", "image": "registry.example.com/team/app:1" }, { "name": "b", "image": "nginx" } ] } }),
        json!({ "spec": { "containers": [{ "name": "bare", "image": "registry.example.com/x" }] } }),
        json!({ "metadata": { "name": "none" }, "spec": { "containers": [{ "name": "q", "image": "quay.io/x" }] } }),
        json!({ "metadata": { "name": "bad" }, "spec": { "containers": [{ "name": "i", "image": "NOT valid" }] } }),
        json!({ "metadata": { "name": "unreadable" }, "spec": { "containers": 5 } }),
    ];
    let state_text = std::fs::read_to_string(&state_file).expect("state");
    let state = pullsecret_injector::cluster::statefile::state_from_str("state", &state_text)
        .expect("state");
    let metrics = pullsecret_injector::telemetry::Metrics::new(&mut Default::default());
    for object in cases {
        let body = pod_create_review("shop", &object);
        let output = run(&["review", "--state", path(&state_file)], &body);
        assert_eq!(code(&output), SUCCESS, "{}", stderr(&output));
        let cli: Value = serde_json::from_slice(&output.stdout).expect("review prints JSON");
        let webhook = pullsecret_injector::server::answer(body.as_bytes(), &state, &metrics)
            .expect("the webhook answers");
        let webhook: Value = serde_json::from_slice(&webhook).expect("JSON");
        assert_eq!(cli, webhook, "{object}");
        assert_eq!(cli["response"]["uid"], "e2b1-uid");
        assert_eq!(cli["response"]["allowed"], true);
    }
}

#[test]
fn review_of_the_example_injects_and_decodes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read_to_string(root.join("examples/review.json")).expect("example");
    let output = run(
        &["review", "--state", path(&root.join("examples/state.yaml"))],
        &body,
    );
    assert_eq!(code(&output), SUCCESS, "{}", stderr(&output));
    let answer: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let response = &answer["response"];
    assert_eq!(response["uid"], "7f0b2c4e-1a53-4d2e-9b8e-3c2f5d6a1e90");
    assert_eq!(response["patchType"], "JSONPatch");
    use base64::Engine;
    let patch = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("patch"))
        .expect("base64");
    let patch: Value = serde_json::from_slice(&patch).expect("JSON patch");
    assert_eq!(
        patch[0],
        json!({ "op": "add", "path": "/spec/imagePullSecrets", "value": [{ "name": "registry-5000" }, { "name": "dockerhub" }] })
    );
    assert_eq!(
        response["auditAnnotations"]["injected-secrets"],
        "registry-5000,dockerhub"
    );
}

// ---------------------------------------------------------------------------------------------
// explain

#[test]
fn explain_json_reports_every_key_the_fallback_and_what_decided() {
    let dir = Dir::new();
    let output = run(
        &[
            "explain",
            "--state",
            path(&dir.state()),
            "-n",
            "shop",
            "-o",
            "json",
            "registry.example.com/team/app:1",
            "nginx",
            "quay.io/x",
            "NOT valid",
        ],
        "",
    );
    assert_eq!(code(&output), SUCCESS, "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    let list: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let list = list.as_array().expect("one entry per image");
    assert_eq!(list.len(), 4);

    let direct = &list[0];
    assert_eq!(direct["image"], "registry.example.com/team/app:1");
    assert_eq!(direct["namespace"], "shop");
    assert_eq!(direct["reference"], "registry.example.com/team/app:1");
    assert_eq!(direct["lookup"], "registry.example.com/team/app");
    // Every key of every secret, in kubelet order (reverse byte order of the index keys).
    let keys = direct["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["indexKey"], "registry.example.com");
    assert_eq!(keys[0]["matched"], true);
    assert_eq!(keys[1]["indexKey"], "index.docker.io");
    assert_eq!(keys[1]["matched"], false);
    assert_eq!(
        keys[1]["reason"],
        "host differs (key \"index.docker.io\", image \"registry.example.com\")"
    );
    assert_eq!(direct["dockerHubFallback"], json!({ "state": "notNeeded" }));
    assert_eq!(direct["discovered"], json!(["regcred"]));
    assert_eq!(
        direct["decided"],
        json!([{ "secret": "regcred", "decidedBy": "discovery" }])
    );
    assert_eq!(direct["result"], json!(["regcred"]));

    let hub = &list[1];
    assert_eq!(hub["lookup"], "docker.io/library/nginx");
    assert_eq!(
        hub["dockerHubFallback"],
        json!({ "state": "used", "secrets": ["hub"] })
    );
    assert_eq!(hub["result"], json!(["hub"]));

    let none = &list[2];
    assert_eq!(
        none["dockerHubFallback"],
        json!({ "state": "notDockerHub" })
    );
    assert_eq!(none["result"], json!([]));

    let invalid = &list[3];
    assert!(
        invalid["invalid"]
            .as_str()
            .is_some_and(|why| why.contains("invalid reference format"))
    );
    assert_eq!(invalid["lookup"], Value::Null);
    assert_eq!(invalid["result"], json!([]));
}

// ---------------------------------------------------------------------------------------------
// Mistaken input: answers stand, with a warning on stderr

#[test]
fn a_namespace_the_state_does_not_know_is_warned_about() {
    let dir = Dir::new();
    let state = dir.state();
    let output = run(
        &["explain", "--state", path(&state), "-n", "shp", "nginx"],
        "",
    );
    assert_eq!(code(&output), SUCCESS);
    assert!(stdout(&output).contains("result: no secret"));
    assert_eq!(
        stderr(&output),
        "Warning: namespace \"shp\" does not appear in the state (no Namespace object, registry-credential Secret or PullSecretRule of it): only ClusterPullSecrets can serve it; is the name right?\n"
    );
    // A namespace the state lists without any secret is known: no warning.
    let output = run(
        &["explain", "--state", path(&state), "-n", "empty", "nginx"],
        "",
    );
    assert_eq!(stderr(&output), "");
    // apply: once per unknown namespace, whatever the number of documents in it.
    let pod = |name: &str, namespace: &str| {
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name, "namespace": namespace },
                "spec": { "containers": [{ "name": "c", "image": "nginx" }] } })
        .to_string()
    };
    let manifests = dir.file(
        "m.json",
        &[pod("a", "shpo"), pod("b", "shpo"), pod("c", "shop")].join("\n"),
    );
    let output = run(
        &["apply", "--state", path(&state), "-f", path(&manifests)],
        "",
    );
    assert_eq!(code(&output), SUCCESS);
    assert_eq!(
        stderr(&output).matches("Warning: ").count(),
        1,
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("namespace \"shpo\" does not appear in the state"));
    // review: the request's namespace.
    let review = pod_create_review(
        "shpo",
        &json!({ "spec": { "containers": [{ "name": "c", "image": "nginx" }] } }),
    );
    let output = run(&["review", "--state", path(&state)], &review);
    assert_eq!(code(&output), SUCCESS);
    assert!(
        stderr(&output).contains("namespace \"shpo\" does not appear in the state"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_manifests_file_given_as_state_and_an_empty_state_are_warned_about() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifests = root.join("examples/manifests.yaml");
    let output = run(
        &[
            "explain",
            "--state",
            path(&manifests),
            "-n",
            "shop",
            "nginx",
        ],
        "",
    );
    assert_eq!(code(&output), SUCCESS);
    assert!(stdout(&output).contains("result: no secret"));
    assert_eq!(
        stderr(&output),
        format!(
            "Warning: {}: ignored objects that are not cluster state (1 ConfigMap, 1 CronJob, 1 Deployment, 1 Pod): is it a manifests file? --state takes Secrets, Namespaces, PullSecretRules and ClusterPullSecrets\n\
             Warning: the state holds no registry-credential Secret, Namespace, PullSecretRule or ClusterPullSecret: every answer is \"no secret\"\n",
            manifests.display()
        )
    );
    let dir = Dir::new();
    for (name, text) in [
        ("empty.yaml", ""),
        (
            "opaque.yaml",
            "kind: Secret\ntype: Opaque\nmetadata: {name: s, namespace: shop}\n",
        ),
    ] {
        let file = dir.file(name, text);
        let output = run(
            &["explain", "--state", path(&file), "-n", "shop", "nginx"],
            "",
        );
        assert_eq!(code(&output), SUCCESS);
        assert_eq!(
            stderr(&output),
            "Warning: the state holds no registry-credential Secret, Namespace, PullSecretRule or ClusterPullSecret: every answer is \"no secret\"\n",
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Exit codes (README, "Exit codes")

#[test]
fn exit_codes_follow_the_documented_table() {
    let dir = Dir::new();
    let state = dir.state();
    let state = path(&state);
    let pod = dir.json(
        "pod.json",
        &json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p", "namespace": "shop" },
                 "spec": { "containers": [{ "name": "c", "image": "nginx" }] } }),
    );
    let pod = path(&pod);
    let broken_yaml = dir.file("broken.yaml", "a: b\n---\nkey: [unclosed\n");
    let not_an_object = dir.file("list.yaml", "- just\n- a list\n");
    let bad_template = dir.file(
        "bad-template.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec: {containers: 5}\n",
    );
    let invalid_secret = dir.file(
        "invalid-secret.yaml",
        "kind: Secret\nmetadata: {name: s}\ndata: {x: '%%%'}\n",
    );
    let missing = dir.0.path().join("missing.yaml");
    let missing = path(&missing);
    let a_file = dir.file("a-file", "");
    let ok_review =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/review.json"))
            .expect("example review");

    // Success.
    expect(&["apply", "--state", state, "-f", pod], "", SUCCESS, "");
    expect(
        &["explain", "--state", state, "-n", "shop", "nginx"],
        "",
        SUCCESS,
        "",
    );
    expect(&["review", "--state", state], &ok_review, SUCCESS, "");
    expect(&["crds"], "", SUCCESS, "");

    // Usage errors (clap's messages, with a usage line).
    for (args, message) in [
        (vec!["apply", "--state", state], "--filename"),
        (
            vec!["explain", "--state", state, "--no-such-flag", "x"],
            "--no-such-flag",
        ),
        (vec!["explain", "--state", state, "-o", "xml", "x"], "xml"),
    ] {
        let output = run(&args, "");
        assert_eq!(code(&output), INPUT_ERROR, "{args:?}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {}",
            stderr(&output)
        );
    }

    // Input errors: one line, naming the file and the document; nothing on stdout.
    let input_error = |args: &[&str], stdin: &str, message: &str| {
        let output = expect(args, stdin, INPUT_ERROR, message);
        assert_eq!(stderr(&output).lines().count(), 1, "{args:?}: one line");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
    };
    let certs_dir = dir.0.path().join("certs");
    input_error(&["certs", "--out-dir", path(&certs_dir)], "", "--dns");
    input_error(
        &["apply", "--state", missing, "-f", pod],
        "",
        "missing.yaml: cannot read",
    );
    input_error(
        &["apply", "--state", state, "-f", missing],
        "",
        "missing.yaml: cannot read",
    );
    input_error(
        &["explain", "--state", path(&broken_yaml), "x"],
        "",
        "broken.yaml: document 2: invalid YAML/JSON",
    );
    input_error(
        &["apply", "--state", state, "-f", path(&not_an_object)],
        "",
        "list.yaml: document 1: not an object",
    );
    input_error(
        &["explain", "--state", path(&invalid_secret), "x"],
        "",
        "invalid-secret.yaml: document 1: invalid Secret",
    );
    input_error(
        &["apply", "--state", state, "-f", path(&bad_template)],
        "",
        "bad-template.yaml: document 1: invalid pod template: Deployment/web",
    );
    input_error(
        &["apply", "--state", state, "-f", "-"],
        "{\"a\": ",
        "<stdin>: document 1: invalid YAML/JSON",
    );
    let review = ["review", "--state", state];
    input_error(
        &review,
        "not json",
        "<stdin>: request body is not an AdmissionReview",
    );
    input_error(
        &review,
        r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#,
        "unsupported review",
    );
    input_error(
        &review,
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        "AdmissionReview has no request",
    );

    // Failures that are not the input's fault.
    expect(
        &["crds", "--out-dir", path(&a_file)],
        "",
        FAILURE,
        "a-file: cannot create",
    );
}

/// Runs the command and checks its exit code and that stderr mentions `message`.
fn expect(args: &[&str], stdin: &str, exit: i32, message: &str) -> Output {
    let output = run(args, stdin);
    let err = stderr(&output);
    assert_eq!(code(&output), exit, "{args:?}: {err}");
    assert!(
        err.contains(message),
        "{args:?}: {err:?} should mention {message:?}"
    );
    output
}

#[test]
fn output_that_cannot_be_written_exits_with_the_failure_code() {
    let dir = Dir::new();
    let state = dir.state();
    let pod = dir.json(
        "pod.json",
        &json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p", "namespace": "shop" }, "spec": { "containers": [] } }),
    );
    let review =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/review.json"))
            .expect("example review");
    for (args, stdin) in [
        (
            vec!["apply", "--state", path(&state), "-f", path(&pod)],
            String::new(),
        ),
        (
            vec!["explain", "--state", path(&state), "-n", "shop", "nginx"],
            String::new(),
        ),
        (
            vec![
                "explain",
                "--state",
                path(&state),
                "-n",
                "shop",
                "-o",
                "json",
                "nginx",
            ],
            String::new(),
        ),
        (vec!["review", "--state", path(&state)], review),
        (vec!["crds"], String::new()),
    ] {
        // /dev/full: every write fails with ENOSPC.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let output = run_to(&args, &stdin, Stdio::from(full));
        assert_eq!(code(&output), FAILURE, "{args:?}: {}", stderr(&output));
        assert_eq!(
            stderr(&output).lines().collect::<Vec<_>>(),
            [stderr(&output).trim_end()],
            "{args:?}: one line"
        );
        assert!(
            stderr(&output).starts_with("pullsecret-injector: "),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The README's quick look, as written

#[test]
fn the_quick_look_commands_work_on_the_examples() {
    let output = run(
        &[
            "apply",
            "--state",
            "examples/state.yaml",
            "-f",
            "examples/manifests.yaml",
        ],
        "",
    );
    assert_eq!(code(&output), SUCCESS, "{}", stderr(&output));
    let out = documents(&output);
    let kinds: Vec<&str> = out
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["Pod", "Deployment", "CronJob", "ConfigMap"]);
    assert_eq!(
        names(out[0].pointer("/spec/imagePullSecrets")),
        ["registry-6000", "registry-5000", "dockerhub"]
    );
    assert_eq!(
        names(out[1].pointer("/spec/template/spec/imagePullSecrets")),
        ["my-own-secret", "quay-team-robot"]
    );
    // The CronJob's image is served only by a secret the kubelet cannot decode: nothing
    // injected, and the warning says so.
    assert_eq!(
        out[2].pointer("/spec/jobTemplate/spec/template/spec/imagePullSecrets"),
        None
    );
    assert!(
        stderr(&output).contains(
            "Warning: CronJob/report: secret \"broken\" cannot be decoded by the kubelet"
        ),
        "{}",
        stderr(&output)
    );
    assert_eq!(out[3]["data"]["note"], "other kinds pass through unchanged");

    let output = run(
        &[
            "explain",
            "--state",
            "examples/state.yaml",
            "-n",
            "shop",
            "nginx:1.25",
            "quay.io/team/app",
        ],
        "",
    );
    assert_eq!(code(&output), SUCCESS, "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "image \"nginx:1.25\" in namespace \"shop\"",
        "  reference: docker.io/library/nginx:1.25",
        "  lookup:    docker.io/library/nginx",
        "  keys, in kubelet order:",
        "quay-team-legacy         image path does not start with \"/team\"",
        "  undecodable: broken (entry \"ghcr.io\": field \"auth\": illegal base64 data at input byte 3) - never injected",
        "  Docker Hub fallback: used: dockerhub",
        "  result: dockerhub (by discovery)",
        "  rule  match  PullSecretRule quay-team-robot-only (exclusive): [quay.io/team] -> [quay-team-robot]",
        "  result: quay-team-robot (by PullSecretRule quay-team-robot-only (exclusive))",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    // Kubelet order: index keys in reverse byte order.
    let keys: Vec<&str> = text
        .lines()
        .take_while(|line| !line.starts_with("  undecodable"))
        .filter_map(|line| {
            line.strip_prefix("    no     ")
                .or(line.strip_prefix("    match  "))
        })
        .map(|line| line.split_whitespace().next().unwrap_or(""))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(keys, sorted);
    // Every key of examples/state.yaml that could serve docker.io images is listed.
    assert_eq!(keys.len(), 6);
}

#[test]
fn the_own_namespace_is_never_served_by_cluster_pull_secrets() {
    let image = "registry.platform.example/tools/x:1";
    let result = |extra: &[&str]| {
        let mut args = vec![
            "explain",
            "--state",
            "examples/state.yaml",
            "-n",
            "shop",
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        args.push(image);
        let output = run(&args, "");
        assert_eq!(code(&output), SUCCESS, "{}", stderr(&output));
        let list: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        list[0]["clusterCredentials"][0]["servesNamespace"].clone()
    };
    assert_eq!(result(&[]), json!(true));
    assert_eq!(result(&["--own-namespace", "shop"]), json!(false));
}

#[test]
fn audit_refuses_state_files_and_unknown_severities_and_says_when_the_cluster_is_unreachable() {
    let dir = Dir::new();
    let state = dir.state();
    expect(
        &["audit", "--state", path(&state)],
        "",
        INPUT_ERROR,
        "unexpected argument '--state'",
    );
    expect(&["audit", "--fail-on", "fatal"], "", INPUT_ERROR, "fatal");
    expect(&["audit", "-o", "yaml"], "", INPUT_ERROR, "yaml");
    // Nothing listens on port 9: one line naming the live cluster, the failure code.
    let kubeconfig = dir.file(
        "kubeconfig",
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n\
         users: [{name: u, user: {}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n\
         current-context: c\n",
    );
    let output = Command::new(BINARY)
        .args(["audit", "--fail-on", "info"])
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("run audit");
    let err = stderr(&output);
    assert_eq!(code(&output), FAILURE, "{err}");
    assert!(
        err.starts_with("pullsecret-injector: live cluster: ") && err.lines().count() == 1,
        "{err:?}"
    );
    assert!(output.stdout.is_empty());
}

// ---------------------------------------------------------------------------------------------
// A CLI that never says two things at once

/// `shop` labelled `pullsecret-injector.io/inject: "false"`, with a secret that matches ghcr.io.
fn opted_out_state(dir: &Dir) -> PathBuf {
    dir.json(
        "opted-out.json",
        &json!({ "apiVersion": "v1", "kind": "List", "items": [
            { "apiVersion": "v1", "kind": "Namespace",
              "metadata": { "name": "shop", "labels": { "pullsecret-injector.io/inject": "false" } } },
            secret("shop", "ghcr", &["ghcr.io"]),
        ]}),
    )
}

#[test]
fn explain_in_an_opted_out_namespace_says_nothing_is_injected_in_text_and_json() {
    let dir = Dir::new();
    let state = opted_out_state(&dir);
    let image = "ghcr.io/team/app:1";
    let output = expect(
        &["explain", "--state", path(&state), "-n", "shop", image],
        "",
        SUCCESS,
        "",
    );
    let text = stdout(&output);
    assert!(
        text.contains("  mode:      none: the namespace is labelled pullsecret-injector.io/inject=false: the webhook injects nothing"),
        "{text}"
    );
    assert!(
        text.contains("  result: no secret: the namespace is labelled pullsecret-injector.io/inject=false (without that, matching would choose ghcr)"),
        "{text}"
    );
    assert!(!text.contains("injects the result"), "{text}");
    assert!(!text.contains("result: ghcr"), "{text}");

    let output = expect(
        &[
            "explain",
            "--state",
            path(&state),
            "-n",
            "shop",
            "-o",
            "json",
            image,
        ],
        "",
        SUCCESS,
        "",
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json[0]["namespaceOptedOut"], true);
    assert_eq!(json[0]["result"], json!([]));
    assert_eq!(json[0]["decided"], json!([]));
    assert_eq!(json[0]["withheld"], json!(["ghcr"]));
    // apply agrees: nothing injected.
    let pod = dir.json(
        "pod.json",
        &json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p", "namespace": "shop" },
                 "spec": { "containers": [{ "name": "c", "image": image }] } }),
    );
    let output = expect(
        &[
            "apply",
            "--state",
            path(&state),
            "-f",
            path(&pod),
            "-o",
            "json",
        ],
        "",
        SUCCESS,
        "",
    );
    let applied: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(applied.pointer("/spec/imagePullSecrets"), None);
}

#[test]
fn the_state_recipe_is_one_that_works_without_the_crds_and_dumps_only_registry_secrets() {
    for command in ["review", "apply", "explain"] {
        let help = stdout(&run(&[command, "--help"], ""));
        assert!(
            help.contains("kubectl get namespaces -o yaml > namespaces.yaml"),
            "{command}: {help}"
        );
        assert!(
            help.contains("--field-selector type=kubernetes.io/dockerconfigjson"),
            "{command}: {help}"
        );
    }
    // No recipe anywhere in the help dumps every Secret or names a CRD beside namespaces.
    for command in [
        vec!["--help"],
        vec!["explain", "--help"],
        vec!["apply", "--help"],
    ] {
        let help = stdout(&run(&command, ""));
        for line in help.lines().filter(|line| line.contains("kubectl get")) {
            assert!(
                !line.contains("get secrets") || line.contains("--field-selector type="),
                "{line}"
            );
            assert!(
                !(line.contains("namespaces") && line.contains("pullsecretrules")),
                "{line}"
            );
        }
    }
    // A state with Secrets but no Namespace object: the labels are unknown, and it is said.
    let dir = Dir::new();
    let state = dir.json(
        "secrets.json",
        &secret("shop", "regcred", &["registry.example.com"]),
    );
    expect(
        &[
            "explain",
            "--state",
            path(&state),
            "-n",
            "shop",
            "registry.example.com/a",
        ],
        "",
        SUCCESS,
        "Warning: the state has no Namespace object for \"shop\": its labels (the pullsecret-injector.io/inject=false opt-out, the mode, ClusterPullSecret selectors) are unknown",
    );
}

#[test]
fn help_says_what_each_command_takes() {
    let audit = stdout(&run(&["audit", "--help"], ""));
    assert!(!audit.contains("--state"), "{audit}");
    expect(
        &["audit", "--state", "x.yaml"],
        "",
        INPUT_ERROR,
        "unexpected argument '--state'",
    );
    let explain = stdout(&run(&["explain", "--help"], ""));
    assert!(!explain.contains("for manifests"), "{explain}");
    assert!(
        explain.contains(
            "The namespace whose secrets, rules and labels the images are explained against"
        ),
        "{explain}"
    );
    // --state is required where it is: clap says so in the usage line.
    for command in ["review", "apply"] {
        let help = stdout(&run(&[command, "--help"], ""));
        assert!(
            help.lines()
                .any(|line| line.starts_with("Usage:") && line.contains("--state <FILE>")),
            "{command}: {help}"
        );
    }
    expect(
        &["review"],
        "",
        INPUT_ERROR,
        "the following required arguments were not provided",
    );
    // The exit codes in the top-level help, in order.
    let help = stdout(&run(&["--help"], ""))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let codes: Vec<usize> = ["0 done", "1 could not", "2 usage", "3 `audit"]
        .iter()
        .map(|code| {
            help.find(code)
                .unwrap_or_else(|| panic!("{code:?} in {help}"))
        })
        .collect();
    assert!(codes.is_sorted(), "{help}");
}

fn review_body(kind: &str, resource: &str, object: &Value, with_user: bool) -> String {
    let mut request = json!({
        "uid": "u-1", "kind": { "group": "", "version": "v1", "kind": kind },
        "resource": { "group": "", "version": "v1", "resource": resource },
        "namespace": "shop", "operation": "CREATE", "object": object,
    });
    if with_user {
        request["userInfo"] = json!({ "username": "someone" });
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request })
        .to_string()
}

#[test]
fn review_reads_a_file_says_when_the_review_is_not_about_a_pod_and_needs_no_user_info() {
    let dir = Dir::new();
    let state = dir.state();
    let pod = json!({ "metadata": { "name": "p" },
                      "spec": { "containers": [{ "name": "c", "image": "registry.example.com/a" }] } });
    // -f FILE, and a hand-written review without userInfo.
    let file = dir.file("review.json", &review_body("Pod", "pods", &pod, false));
    let output = expect(
        &["review", "--state", path(&state), "-f", path(&file)],
        "",
        SUCCESS,
        "",
    );
    let response: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(response["response"]["allowed"], true);
    assert!(response["response"]["patch"].is_string(), "{response}");
    // Another kind: allowed unchanged, and said so.
    let configmap = dir.file(
        "configmap.json",
        &review_body(
            "ConfigMap",
            "configmaps",
            &json!({ "metadata": { "name": "c" } }),
            true,
        ),
    );
    let output = expect(
        &["review", "--state", path(&state), "-f", path(&configmap)],
        "",
        SUCCESS,
        "Warning: the review is for CREATE ConfigMap, not a Pod CREATE: the webhook allows it unchanged",
    );
    let response: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(response["response"]["allowed"], true);
    assert_eq!(response["response"].get("patch"), None);
    // Errors name the file.
    let broken = dir.file("broken.json", "not json");
    expect(
        &["review", "--state", path(&state), "-f", path(&broken)],
        "",
        INPUT_ERROR,
        "broken.json: request body is not an AdmissionReview",
    );
}

#[test]
fn explain_reasons_say_what_differs_and_pod_forms_are_kubectls() {
    let dir = Dir::new();
    let state = dir.json(
        "state.json",
        &json!({ "apiVersion": "v1", "kind": "List", "items": [
            namespace("shop"),
            secret("shop", "quay", &["quay.io"]),
            secret("shop", "glob", &["*.example.com"]),
        ]}),
    );
    let output = expect(
        &[
            "explain",
            "--state",
            path(&state),
            "-n",
            "shop",
            "-o",
            "json",
            "nginx",
            "registry.other.org/a",
        ],
        "",
        SUCCESS,
        "",
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let reason = |image: usize, secret: &str| {
        json[image]["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|key| key["secret"] == secret)
            .map(|key| key["reason"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(
        reason(0, "quay"),
        "host differs (key \"quay.io\", image \"docker.io\")"
    );
    assert_eq!(
        reason(1, "quay"),
        "host label count differs (key 2, image 3)"
    );
    assert_eq!(
        reason(1, "glob"),
        "host \"registry.other.org\" does not match the glob \"*.example.com\" (label 2: \"other\" against \"example\")"
    );
    // pods/NAME and po/NAME are kubectl's pod forms: never a Docker Hub image.
    for target in ["pods/web", "po/web", "pod/web"] {
        expect(
            &["explain", "--state", path(&state), target],
            "",
            INPUT_ERROR,
            "explain pod/NAME takes one pod and reads the live cluster",
        );
    }
    expect(
        &[
            "explain",
            "--state",
            path(&state),
            "-n",
            "shop",
            "docker.io/pods/web",
        ],
        "",
        SUCCESS,
        "",
    );
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    let dir = Dir::new();
    let state = dir.state();
    // More than a pipe's buffer, so the command is still writing when the reader goes.
    let images: Vec<String> = (0..400)
        .map(|i| format!("registry.example.com/app-{i}:1"))
        .collect();
    let mut args = vec![
        "explain",
        "--state",
        path(&state),
        "-n",
        "shop",
        "-o",
        "json",
    ];
    args.extend(images.iter().map(String::as_str));
    let mut child = Command::new(BINARY)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = [0u8; 1];
    let mut out = child.stdout.take().expect("stdout");
    std::io::Read::read_exact(&mut out, &mut first).expect("first byte");
    drop(out);
    let output = child.wait_with_output().expect("wait");
    assert_eq!(code(&output), SUCCESS, "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
}

#[test]
fn certs_never_replaces_half_a_ca_and_refuses_what_is_not_a_certificate() {
    let dir = Dir::new();
    let out = dir.0.path().join("certs");
    std::fs::create_dir_all(&out).expect("dir");
    let key = out.join("ca.key");
    std::fs::write(&key, "the only copy of a CA key").expect("key");
    expect(
        &["certs", "--out-dir", path(&out), "--dns", "localhost"],
        "",
        INPUT_ERROR,
        "ca.key exists without",
    );
    assert_eq!(
        std::fs::read_to_string(&key).expect("key"),
        "the only copy of a CA key"
    );
    let fresh = dir.0.path().join("fresh");
    expect(
        &[
            "certs",
            "--out-dir",
            path(&fresh),
            "--dns",
            "localhost",
            "--days",
            "0",
        ],
        "",
        INPUT_ERROR,
        "--days",
    );
    expect(
        &["certs", "--out-dir", path(&fresh), "--dns", "not a name"],
        "",
        INPUT_ERROR,
        "is not a DNS name",
    );
    assert!(!fresh.exists(), "nothing written");
    expect(
        &[
            "certs",
            "--out-dir",
            path(&fresh),
            "--dns",
            "*.svc.example",
            "--ip",
            "127.0.0.1",
        ],
        "",
        SUCCESS,
        "",
    );
}

const COMMENTED: &str = "# The web tier.\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web   # kept\n  namespace: shop\nspec:\n  containers:\n    - name: app\n      image: registry.example.com/web:1  # pinned\n---\n# Untouched.\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  key:   'value'\n";

#[test]
fn apply_keeps_documents_it_does_not_change_byte_for_byte_and_adds_only_the_injected_lines() {
    let dir = Dir::new();
    let state = dir.state();
    let manifests = dir.file("app.yaml", COMMENTED);
    let output = expect(
        &["apply", "--state", path(&state), "-f", path(&manifests)],
        "",
        SUCCESS,
        "",
    );
    let out = stdout(&output);
    let (pod, rest) = out.split_once("\n---\n").expect("two documents");
    assert_eq!(rest, COMMENTED.split_once("\n---\n").expect("two").1);
    let added: Vec<&str> = pod
        .lines()
        .filter(|line| !COMMENTED.lines().any(|original| original == *line))
        .collect();
    assert_eq!(added.len(), 4, "{pod}");
    assert!(added[0].starts_with("  annotations:"), "{added:?}");
    assert!(
        added[1].starts_with("    pullsecret-injector.io/injected: "),
        "{added:?}"
    );
    // The document indents its lists under their key; the added one too.
    assert_eq!(added[2..], ["  imagePullSecrets:", "    - name: regcred"]);
    // Every original line is still there, in order.
    let kept: Vec<&str> = pod.lines().filter(|line| !added.contains(line)).collect();
    assert_eq!(
        kept,
        COMMENTED
            .split_once("\n---\n")
            .expect("two")
            .0
            .lines()
            .collect::<Vec<_>>()
    );
    // A layout that cannot be edited in place is re-serialized, and said so.
    let flow = dir.file(
        "flow.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec: {containers: [{name: c, image: registry.example.com/a}]}\n",
    );
    let output = expect(
        &["apply", "--state", path(&state), "-f", path(&flow)],
        "",
        SUCCESS,
        "cannot be edited in place; printed re-serialized",
    );
    assert_eq!(
        names(documents(&output)[0].pointer("/spec/imagePullSecrets")),
        ["regcred"]
    );
}

#[test]
fn apply_takes_directories_keeps_json_json_and_has_output_formats() {
    let dir = Dir::new();
    let state = dir.state();
    let tree = dir.0.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).expect("dirs");
    let pod = |name: &str| {
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name, "namespace": "shop" },
                "spec": { "containers": [{ "name": "c", "image": "registry.example.com/a" }] } })
    };
    std::fs::write(tree.join("a.json"), pod("a").to_string()).expect("a");
    std::fs::write(tree.join("notes.txt"), "not a manifest").expect("txt");
    std::fs::write(
        tree.join("sub/b.yaml"),
        serde_yaml::to_string(&pod("b")).expect("yaml"),
    )
    .expect("b");
    // JSON in, JSON out.
    let output = expect(
        &["apply", "--state", path(&state), "-f", path(&tree)],
        "",
        SUCCESS,
        "",
    );
    let applied: Value = serde_json::from_slice(&output.stdout).expect("JSON out");
    assert_eq!(
        names(applied.pointer("/spec/imagePullSecrets")),
        ["regcred"]
    );
    // -R reads subdirectories; -o json makes a List of several.
    let output = expect(
        &[
            "apply",
            "--state",
            path(&state),
            "-f",
            path(&tree),
            "-R",
            "-o",
            "json",
        ],
        "",
        SUCCESS,
        "",
    );
    let list: Value = serde_json::from_slice(&output.stdout).expect("JSON list");
    assert_eq!(list["kind"], "List");
    let pods: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(pods, ["a", "b"]);
    let output = expect(
        &[
            "apply",
            "--state",
            path(&state),
            "-f",
            path(&tree),
            "-R",
            "-o",
            "yaml",
        ],
        "",
        SUCCESS,
        "",
    );
    assert_eq!(documents(&output).len(), 2);
    let empty = dir.0.path().join("empty");
    std::fs::create_dir_all(&empty).expect("empty");
    expect(
        &["apply", "--state", path(&state), "-f", path(&empty)],
        "",
        INPUT_ERROR,
        "no .yaml, .yml or .json file in this directory",
    );
    // A state file given as manifests: said so.
    expect(
        &["apply", "--state", path(&state), "-f", path(&state)],
        "",
        SUCCESS,
        "Warning: no Pod or workload",
    );
}
