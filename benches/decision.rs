//! Decision micro-benchmarks: pods of 1, 3 and 20 containers against namespaces holding 1, 50
//! and 500 pull secrets (exact hosts, host globs and path prefixes), plus a whole review
//! (parse + decide + encode) of a realistic kubectl-made Pod; and the parsers on hostile sizes,
//! at four sizes each, where constant time per byte shows they are linear (the unit tests
//! check their answers, not their speed).

use std::hint::black_box;
use std::sync::Arc;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pullsecret_injector::kubelet::keyring::Keyring;
use pullsecret_injector::state::snapshot::StateBuilder;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prometheus_client::registry::Registry;
use pullsecret_injector::admission::decision::decide;
use pullsecret_injector::admission::pod::PodView;
use pullsecret_injector::admission::review::review;
use pullsecret_injector::cluster::statefile::state_from_str;
use pullsecret_injector::kubelet::dockerconfig::{
    self, DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE,
};
use pullsecret_injector::kubelet::reference::ImageRef;
use pullsecret_injector::server::answer;
use pullsecret_injector::state::snapshot::ClusterState;
use pullsecret_injector::telemetry::{self, LogFormat, Metrics};
use serde_json::{Value, json};

/// `count` secrets over a mix of registry key shapes, like a real namespace accumulates.
fn namespace_state(count: usize) -> Arc<ClusterState> {
    let documents: Vec<String> = (0..count)
        .map(|index| {
            let key = match index % 5 {
                0 => format!("registry{index}.example.com"),
                1 => format!("https://registry{index}.example.com:5000/v2/"),
                2 => format!("*.team{index}.example.com"),
                3 => format!("quay.io/org{index}/"),
                _ => format!("https://index.docker.io/v1/{index}"),
            };
            let config = json!({ "auths": { key: { "auth": "dXNlcjpwYXNz" } } }).to_string();
            json!({
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                "metadata": { "namespace": "bench", "name": format!("secret-{index:04}") },
                "stringData": { ".dockerconfigjson": config },
            })
            .to_string()
        })
        .collect();
    state_from_str("bench", &documents.join("\n")).expect("valid bench state")
}

fn pod(containers: usize) -> Value {
    let images = [
        "registry0.example.com/app/api:1.4.2",
        "nginx:1.25",
        "quay.io/org3/sidecar@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "a.team2.example.com/tools/debug:latest",
        "registry1.example.com:5000/batch/worker:2",
    ];
    let containers: Vec<Value> = (0..containers)
        .map(|index| json!({ "name": format!("c{index}"), "image": images[index % images.len()] }))
        .collect();
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "web", "namespace": "bench" },
            "spec": { "containers": containers } })
}

fn decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    for secrets in [1, 50, 500] {
        let state = namespace_state(secrets);
        for containers in [1, 3, 20] {
            let view: PodView = serde_json::from_value(pod(containers)).expect("pod");
            group.bench_with_input(
                BenchmarkId::new(
                    format!("{containers}-containers"),
                    format!("{secrets}-secrets"),
                ),
                &view,
                |b, view| b.iter(|| decide(black_box(view), "bench", &state)),
            );
        }
    }
    group.finish();
}

/// A kubectl-shaped Pod CREATE review (~4 KB, with managedFields and last-applied annotation).
fn review_body() -> Vec<u8> {
    let mut object = pod(3);
    object["metadata"]["labels"] = json!({ "app": "web", "tier": "frontend", "version": "1.4.2" });
    object["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": object.to_string(),
    });
    object["metadata"]["managedFields"] = json!([{
        "manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
        "time": "2026-11-23T10:00:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": { "f:metadata": { "f:labels": { ".": {}, "f:app": {}, "f:tier": {} } },
                      "f:spec": { "f:containers": { "k:{\"name\":\"c0\"}": { ".": {}, "f:image": {} } } } }
    }]);
    for container in object["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
    {
        container["resources"] = json!({ "requests": { "cpu": "100m", "memory": "128Mi" } });
        container["ports"] = json!([{ "containerPort": 8080, "protocol": "TCP" }]);
        container["env"] = json!([{ "name": "LOG_LEVEL", "value": "info" }, { "name": "REGION", "value": "eu-west-1" }]);
        container["volumeMounts"] = json!([{ "name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true }]);
    }
    object["spec"]["volumes"] = json!([{ "name": "kube-api-access-x7k2p", "projected": { "sources": [
        { "serviceAccountToken": { "expirationSeconds": 3607, "path": "token" } },
        { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } }
    ] } }]);
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "requestKind": { "group": "", "version": "v1", "kind": "Pod" },
            "requestResource": { "group": "", "version": "v1", "resource": "pods" },
            "name": "web", "namespace": "bench", "operation": "CREATE",
            "userInfo": { "username": "admin", "groups": ["system:masters", "system:authenticated"] },
            "object": object, "oldObject": null, "dryRun": false,
            "options": { "kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-client-side-apply" }
        }
    })
    .to_string()
    .into_bytes()
}

fn whole_review(c: &mut Criterion) {
    let state = namespace_state(50);
    let body = review_body();
    c.bench_function(
        &format!("review/{}-byte-pod-create/50-secrets", body.len()),
        |b| {
            b.iter(|| {
                let reviewed = review(black_box(&body), &state).expect("review");
                serde_json::to_vec(&reviewed.response).expect("encode")
            })
        },
    );
}

/// What the webhook does per request once the body is read: the review, metrics, the info log
/// line of an injection (JSON, written to /dev/null: a file costs the same here) and the encoding.
fn handler(c: &mut Criterion) {
    let log = std::fs::File::create("/dev/null").expect("open /dev/null");
    telemetry::init_logging_to(LogFormat::Json, "info", Arc::new(log), false)
        .expect("install the logger");
    let metrics = Metrics::new(&mut Registry::default());
    let state = namespace_state(50);
    let body = review_body();
    c.bench_function(
        &format!("handler/{}-byte-pod-create/50-secrets", body.len()),
        |b| b.iter(|| answer(black_box(&body), &state, &metrics).expect("answer")),
    );
}

/// Sizes of the hostile inputs; a linear parser takes the same time per byte at each.
const LONG_INPUT_SIZES: [usize; 4] = [25_000, 50_000, 100_000, 200_000];

/// Image references of `n` repeated pieces, shaped like the ones that would make a naive
/// backtracking parser quadratic.
fn long_references(n: usize) -> [(&'static str, String); 4] {
    [
        ("slashes", format!("{}a", "a/".repeat(n))),
        ("colons", format!("a{}", ":".repeat(n))),
        ("dashes", "a-".repeat(n) + "a"),
        ("long-domain", format!("{}.com/a", "d".repeat(n))),
    ]
}

fn long_inputs(c: &mut Criterion) {
    let mut group = c.benchmark_group("long-input");
    group.sample_size(20);
    for size in LONG_INPUT_SIZES {
        for (shape, input) in long_references(size) {
            group.throughput(Throughput::Bytes(input.len() as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("reference-{shape}"), size),
                &input,
                |b, input| b.iter(|| ImageRef::parse(black_box(input))),
            );
        }
        // A dockerconfigjson with `size / 10` registry keys.
        let keys: Vec<String> = (0..size / 10)
            .map(|i| format!(r#""r{i}.io":{{"auth":"Og=="}}"#))
            .collect();
        let payload = format!(r#"{{"auths":{{{}}}}}"#, keys.join(","));
        group.throughput(Throughput::Bytes(payload.len() as u64));
        let data = BTreeMap::from([(DOCKER_CONFIG_JSON_KEY.to_owned(), payload.into_bytes())]);
        group.bench_with_input(
            BenchmarkId::new("dockerconfig-keys", size),
            &data,
            |b, data| {
                b.iter(|| dockerconfig::registry_keys(DOCKER_CONFIG_JSON_TYPE, black_box(data)))
            },
        );
    }
    group.finish();
}

fn registry_secret(namespace: &str, name: &str, key: &str) -> Secret {
    let config = json!({ "auths": { key: { "auth": "dXNlcjpwYXNz" } } }).to_string();
    Secret {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some(DOCKER_CONFIG_JSON_TYPE.to_owned()),
        data: Some(BTreeMap::from([(
            DOCKER_CONFIG_JSON_KEY.to_owned(),
            ByteString(config.into_bytes()),
        )])),
        ..Secret::default()
    }
}

/// What one secret change costs the watch at scale: building a namespace's keyring over 10,000
/// secrets (half of them for the same registry), and publishing a snapshot after one secret
/// changed, with 10,000 secrets in one namespace or 5 in each of 1,000 namespaces.
fn scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale");
    group.sample_size(10);
    let owners: Vec<(Arc<str>, [String; 1])> = (0..10_000)
        .map(|i| {
            let key = if i % 2 == 0 {
                "registry.example.com".to_owned()
            } else {
                format!("registry{i}.example.com")
            };
            (Arc::from(format!("secret-{i:05}")), [key])
        })
        .collect();
    group.bench_function("keyring/10000-secrets-one-namespace", |b| {
        b.iter(|| Keyring::new(black_box(&owners).iter().cloned()))
    });
    let shapes: [(&str, usize, usize); 2] = [
        ("10000-secrets-one-namespace", 1, 10_000),
        ("1000-namespaces-5-secrets-each", 1_000, 5),
    ];
    for (name, namespaces, per_namespace) in shapes {
        let mut builder = StateBuilder::new();
        for ns in 0..namespaces {
            for i in 0..per_namespace {
                let namespace = format!("ns-{ns:04}");
                let key = format!("registry{}.example.com", i % 7);
                builder.apply_secret(&registry_secret(&namespace, &format!("s-{i:05}"), &key));
            }
        }
        builder.snapshot();
        let mut round = 0usize;
        group.bench_function(format!("publish-one-change/{name}"), |b| {
            b.iter(|| {
                round += 1;
                let namespace = format!("ns-{:04}", round % namespaces);
                let key = format!("churn{round}.example.com");
                builder.apply_secret(&registry_secret(&namespace, "s-00000", &key));
                builder.snapshot()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decision, whole_review, handler, long_inputs, scale);
criterion_main!(benches);
