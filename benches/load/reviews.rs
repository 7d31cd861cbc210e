//! Realistic Pod CREATE AdmissionReviews, shaped like those the apiserver sends for pods made by
//! `kubectl apply`, `kubectl run`, the ReplicaSet controller and a Job with sidecars.

use std::collections::BTreeMap;

use bytes::Bytes;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

/// The `auths` key of the `slot`-th secret of a namespace: exact hosts, ports with `/v2/`, host
/// globs, path prefixes, each registry in one secret. Slots 0-4 are the registries the review
/// images use, so a pod matches one secret per private image, as in a tidy namespace.
pub fn secret_key(slot: usize) -> String {
    match slot % 5 {
        0 => format!("registry{slot}.example.com"),
        1 => format!("https://registry{slot}.example.com:5000/v2/"),
        2 => format!("*.team{slot}.example.com"),
        3 => format!("quay.io/org{slot}/"),
        _ => format!("ghcr.io/org{slot}"),
    }
}

/// A `.dockerconfigjson` payload like `kubectl create secret docker-registry` writes.
pub fn docker_config(slot: usize, index: usize, generation: u64) -> Vec<u8> {
    let auth = format!("user{index}:token-{generation:016x}-{index:08}");
    let encoded = base64_encode(auth.as_bytes());
    json!({ "auths": { secret_key(slot): {
        "username": format!("user{index}"),
        "password": format!("token-{generation:016x}-{index:08}"),
        "email": "ci@example.com",
        "auth": encoded,
    } } })
    .to_string()
    .into_bytes()
}

/// Secret `index` of a set spread round-robin over `namespaces` namespaces.
pub fn pull_secret(namespace: &str, index: usize, namespaces: usize, generation: u64) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("secret-{index:05}")),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".to_owned()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_owned(),
            ByteString(docker_config(index / namespaces, index, generation)),
        )])),
        ..Secret::default()
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn image(slot: usize, tag: &str) -> String {
    match slot % 7 {
        0 => format!("registry0.example.com/shop/api:{tag}"),
        1 => "nginx:1.27".to_owned(),
        2 => format!("registry1.example.com:5000/batch/worker:{tag}"),
        3 => "quay.io/org3/sidecar@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_owned(),
        4 => format!("a.team2.example.com/tools/debug:{tag}"),
        5 => "docker.io/library/busybox:1.36".to_owned(),
        _ => format!("ghcr.io/org4/agent:{tag}"),
    }
}

fn container(name: &str, image: String, env: usize) -> Value {
    let env: Vec<Value> = (0..env)
        .map(|i| json!({ "name": format!("SETTING_{i}"), "value": format!("value-{i}-of-{name}") }))
        .collect();
    json!({
        "name": name, "image": image, "imagePullPolicy": "IfNotPresent",
        "ports": [{ "containerPort": 8080, "name": "http", "protocol": "TCP" }],
        "env": env,
        "resources": { "limits": { "cpu": "500m", "memory": "256Mi" },
                       "requests": { "cpu": "100m", "memory": "128Mi" } },
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "volumeMounts": [{ "name": "kube-api-access-x7k2p", "readOnly": true,
                           "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount" }],
    })
}

/// The fields the apiserver's defaulting and admission add to every pod spec.
fn defaulted_spec(containers: Vec<Value>, init: Vec<Value>) -> Value {
    let mut spec = json!({
        "containers": containers,
        "dnsPolicy": "ClusterFirst", "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0, "restartPolicy": "Always", "schedulerName": "default-scheduler",
        "securityContext": {}, "serviceAccount": "default", "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30,
        "tolerations": [
            { "effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300 },
            { "effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300 }
        ],
        "volumes": [{ "name": "kube-api-access-x7k2p", "projected": { "defaultMode": 420, "sources": [
            { "serviceAccountToken": { "expirationSeconds": 3607, "path": "token" } },
            { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
            { "downwardAPI": { "items": [{ "path": "namespace", "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } }] } }
        ] } }],
    });
    if !init.is_empty() {
        spec["initContainers"] = Value::Array(init);
    }
    spec
}

/// One review variant: `(label, object, user)`.
fn variant(kind: usize, namespace: &str) -> (Value, &'static str) {
    match kind % 4 {
        // kubectl apply of a Pod manifest: last-applied annotation, client-side-apply fields.
        0 => {
            let containers = vec![
                container("api", image(0, "1.4.2"), 4),
                container("proxy", image(1, "1.4.2"), 2),
                container("metrics", image(3, "1.4.2"), 2),
            ];
            let manifest = json!({ "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": "web", "namespace": namespace, "labels": { "app": "web" } },
                "spec": { "containers": [
                    { "name": "api", "image": image(0, "1.4.2") },
                    { "name": "proxy", "image": image(1, "1.4.2") },
                    { "name": "metrics", "image": image(3, "1.4.2") } ] } });
            let object = json!({ "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": "web", "namespace": namespace,
                    "labels": { "app": "web", "tier": "frontend", "version": "1.4.2" },
                    "annotations": { "kubectl.kubernetes.io/last-applied-configuration": manifest.to_string() },
                    "managedFields": [{ "manager": "kubectl-client-side-apply", "operation": "Update",
                        "apiVersion": "v1", "time": "2026-11-23T10:00:00Z", "fieldsType": "FieldsV1",
                        "fieldsV1": { "f:metadata": { "f:annotations": { ".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {} },
                                                      "f:labels": { ".": {}, "f:app": {}, "f:tier": {}, "f:version": {} } },
                                      "f:spec": { "f:containers": {
                                          "k:{\"name\":\"api\"}": { ".": {}, "f:image": {}, "f:name": {} },
                                          "k:{\"name\":\"proxy\"}": { ".": {}, "f:image": {}, "f:name": {} },
                                          "k:{\"name\":\"metrics\"}": { ".": {}, "f:image": {}, "f:name": {} } } } } }] },
                "spec": defaulted_spec(containers, vec![]),
                "status": { "phase": "Pending", "qosClass": "Burstable" } });
            (object, "admin")
        }
        // A ReplicaSet controller create: generateName, ownerReferences, an init container.
        1 => {
            let containers = vec![
                container("app", image(2, "2.0.1"), 6),
                container("log-shipper", image(6, "0.9"), 3),
            ];
            let init = vec![container("migrate", image(2, "2.0.1"), 2)];
            let object = json!({ "apiVersion": "v1", "kind": "Pod",
                "metadata": { "generateName": "worker-7d4b9c8f6-", "namespace": namespace,
                    "labels": { "app": "worker", "pod-template-hash": "7d4b9c8f6" },
                    "annotations": { "prometheus.io/scrape": "true", "prometheus.io/port": "9090" },
                    "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "worker-7d4b9c8f6",
                        "uid": "0b7a3c9e-1f2d-4e5a-9b8c-7d6e5f4a3b2c", "controller": true, "blockOwnerDeletion": true }],
                    "managedFields": [{ "manager": "kube-controller-manager", "operation": "Update",
                        "apiVersion": "v1", "time": "2026-11-23T10:00:00Z", "fieldsType": "FieldsV1",
                        "fieldsV1": { "f:metadata": { "f:generateName": {}, "f:labels": { ".": {}, "f:app": {}, "f:pod-template-hash": {} },
                                      "f:ownerReferences": { ".": {}, "k:{\"uid\":\"0b7a3c9e-1f2d-4e5a-9b8c-7d6e5f4a3b2c\"}": {} } },
                                      "f:spec": { "f:containers": { "k:{\"name\":\"app\"}": { ".": {} }, "k:{\"name\":\"log-shipper\"}": { ".": {} } } } } }] },
                "spec": defaulted_spec(containers, init),
                "status": { "phase": "Pending", "qosClass": "Burstable" } });
            (
                object,
                "system:serviceaccount:kube-system:replicaset-controller",
            )
        }
        // kubectl run: one container, a `run` label, nothing else.
        2 => {
            let containers = vec![container("debug", image(4, "latest"), 10)];
            let object = json!({ "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": "debug", "namespace": namespace, "labels": { "run": "debug" },
                    "managedFields": [{ "manager": "kubectl-run", "operation": "Update", "apiVersion": "v1",
                        "time": "2026-11-23T10:00:00Z", "fieldsType": "FieldsV1",
                        "fieldsV1": { "f:metadata": { "f:labels": { ".": {}, "f:run": {} } },
                                      "f:spec": { "f:containers": { "k:{\"name\":\"debug\"}": { ".": {}, "f:image": {}, "f:name": {} } } } } }] },
                "spec": defaulted_spec(containers, vec![]),
                "status": { "phase": "Pending", "qosClass": "Burstable" } });
            (object, "admin")
        }
        // A Job controller create with sidecars: five containers, an existing pull secret.
        _ => {
            let containers = (0..5)
                .map(|i| container(&format!("step-{i}"), image(i + 1, "3.1"), 1))
                .collect();
            let mut spec = defaulted_spec(containers, vec![]);
            spec["restartPolicy"] = json!("Never");
            spec["imagePullSecrets"] = json!([{ "name": "existing-cred" }]);
            let object = json!({ "apiVersion": "v1", "kind": "Pod",
                "metadata": { "generateName": "report-28731600-", "namespace": namespace,
                    "labels": { "batch.kubernetes.io/job-name": "report-28731600", "job-name": "report-28731600",
                                "batch.kubernetes.io/controller-uid": "5f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b" },
                    "ownerReferences": [{ "apiVersion": "batch/v1", "kind": "Job", "name": "report-28731600",
                        "uid": "5f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", "controller": true, "blockOwnerDeletion": true }] },
                "spec": spec,
                "status": { "phase": "Pending", "qosClass": "BestEffort" } });
            (object, "system:serviceaccount:kube-system:job-controller")
        }
    }
}

fn review(kind: usize, namespace: &str, serial: usize) -> Value {
    let (object, user) = variant(kind, namespace);
    let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let field_manager = match kind % 4 {
        0 => "kubectl-client-side-apply",
        2 => "kubectl-run",
        _ => "kube-controller-manager",
    };
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("705ab4f5-6393-11e8-b7cc-{serial:012x}"),
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "requestKind": { "group": "", "version": "v1", "kind": "Pod" },
            "requestResource": { "group": "", "version": "v1", "resource": "pods" },
            "name": name, "namespace": namespace, "operation": "CREATE",
            "userInfo": { "username": user, "uid": "3c2b1a09-8f7e-6d5c-4b3a-291807f6e5d4",
                          "groups": ["system:serviceaccounts", "system:authenticated"] },
            "object": object, "oldObject": null, "dryRun": false,
            "options": { "kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": field_manager }
        }
    })
}

/// `count` bodies cycling through the four variants and `namespaces`, each with its own uid.
pub fn bodies(count: usize, namespaces: &[String]) -> Vec<Bytes> {
    (0..count)
        .map(|serial| {
            let namespace = &namespaces[serial % namespaces.len()];
            Bytes::from(review(serial, namespace, serial).to_string())
        })
        .collect()
}

/// Byte sizes of the four variants, for the report.
pub fn variant_sizes() -> Vec<usize> {
    (0..4)
        .map(|kind| review(kind, "bench", kind).to_string().len())
        .collect()
}

/// A canned answer the baseline returns without reading the request: the size and shape of a
/// real response that injects two secrets.
/// Replaced by the request's uid in every canned answer.
pub const CANNED_UID: &str = "705ab4f5-6393-11e8-b7cc-000000000000";

/// The baseline's answer: allowed, with a patch like the webhook's (valid for the pods the
/// overhead phase creates), and `CANNED_UID` where the request's uid goes.
pub fn canned_response() -> Bytes {
    let patch = json!([
        { "op": "add", "path": "/spec/imagePullSecrets", "value": [{ "name": "secret-0000" }, { "name": "secret-0003" }] },
        { "op": "add", "path": "/metadata/annotations", "value": { "pullsecret-injector.io/injected": "secret-0000,secret-0003" } }
    ]);
    Bytes::from(
        json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
            "uid": CANNED_UID, "allowed": true,
            "patch": base64_encode(patch.to_string().as_bytes()), "patchType": "JSONPatch",
            "auditAnnotations": { "injected": "secret-0000,secret-0003" } } })
        .to_string(),
    )
}
