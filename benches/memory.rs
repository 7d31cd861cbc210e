//! Heap held per cached pull secret, and per pod tracked by the stuck-pod recovery, without a
//! cluster.
//!
//! Feeds a `StateBuilder` the objects of the scale benchmark (benches/load: 1,000 namespaces,
//! 50,000 `kubernetes.io/dockerconfigjson` Secrets with one `auths` key each, spread round-robin)
//! the way the watch does (apiserver list order, a snapshot per batch), then reports the heap
//! the final snapshot keeps alive, per secret: bytes requested, bytes glibc malloc spends on
//! them (its chunk sizes), and allocation count.
//!
//! The recovery part keeps, of each pod waiting on a failed pull, only what the decision needs
//! (`StuckPod`); it is measured against keeping the whole `Pod` objects (what a reflector
//! cache would hold), for pods shaped like `kubectl apply`'d Deployment pods.
//!
//! `cargo bench --bench memory` (`-- --secrets N --namespaces N --pods N` to change the shape).

/// The load benchmark's objects, so both measure the same secrets.
#[path = "load/reviews.rs"]
#[allow(dead_code)]
mod reviews;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicIsize, Ordering};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pullsecret_injector::admission::recovery::StuckPod;
use pullsecret_injector::state::snapshot::StateBuilder;

/// Counts live allocations and their bytes on top of the system allocator.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_CHUNK_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCATIONS: AtomicIsize = AtomicIsize::new(0);

/// What glibc malloc takes for a request on 64-bit: 8 bytes of header, 16-byte granules, at
/// least 32 bytes.
fn chunk_size(size: usize) -> isize {
    ((size + 8).next_multiple_of(16)).max(32) as isize
}

fn record(size: usize, sign: isize) {
    LIVE_BYTES.fetch_add(sign * size as isize, Ordering::Relaxed);
    LIVE_CHUNK_BYTES.fetch_add(sign * chunk_size(size), Ordering::Relaxed);
    LIVE_ALLOCATIONS.fetch_add(sign, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            record(layout.size(), 1);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            record(layout.size(), 1);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        record(layout.size(), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            record(layout.size(), -1);
            record(new_size, 1);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Clone, Copy)]
struct Heap {
    bytes: isize,
    chunk_bytes: isize,
    allocations: isize,
}

impl Heap {
    fn now() -> Heap {
        Heap {
            bytes: LIVE_BYTES.load(Ordering::Relaxed),
            chunk_bytes: LIVE_CHUNK_BYTES.load(Ordering::Relaxed),
            allocations: LIVE_ALLOCATIONS.load(Ordering::Relaxed),
        }
    }

    fn since(self, before: Heap) -> Heap {
        Heap {
            bytes: self.bytes - before.bytes,
            chunk_bytes: self.chunk_bytes - before.chunk_bytes,
            allocations: self.allocations - before.allocations,
        }
    }

    fn report(self, what: &str, count: usize, unit: &str) {
        let per = |value: isize| value as f64 / count as f64;
        println!(
            "{what:<34} {:>8.1} B/{unit} requested  {:>8.1} B/{unit} malloc  {:>6.2} allocations/{unit}",
            per(self.bytes),
            per(self.chunk_bytes),
            per(self.allocations),
        );
    }
}

/// A namespace as the apiserver returns it: only the label it gives every namespace.
fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                name.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// Events the watch applies between two snapshots (its `ready_chunks`).
const BATCH: usize = 512;

fn main() {
    let mut secrets = 50_000;
    let mut namespaces = 1_000;
    let mut pods = 5_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> usize {
            args.next()
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("{arg} needs a number"))
        };
        match arg.as_str() {
            "--secrets" => secrets = value(),
            "--namespaces" => namespaces = value(),
            "--pods" => pods = value(),
            // What `cargo bench` passes to every bench binary.
            "--bench" => {}
            _ => panic!("unknown argument {arg}; use --secrets N --namespaces N --pods N"),
        }
    }
    let names: Vec<String> = (0..namespaces).map(|i| format!("scale-{i:04}")).collect();

    let empty = Heap::now();
    let mut builder = StateBuilder::new();
    for name in &names {
        builder.apply_namespace(&namespace(name));
    }
    builder.snapshot();
    let with_namespaces = Heap::now();

    // A list returns objects in key order: by namespace, then by name.
    let started = std::time::Instant::now();
    let mut pending = 0;
    for (ns_index, name) in names.iter().enumerate() {
        for index in (ns_index..secrets).step_by(namespaces) {
            builder.apply_secret(&reviews::pull_secret(name, index, namespaces, 0));
            pending += 1;
            if pending == BATCH {
                // The builder keeps the published snapshot, as the server's cache does.
                builder.snapshot();
                pending = 0;
            }
        }
    }
    let snapshot = builder.snapshot();
    let elapsed = started.elapsed();
    let synced = Heap::now();
    assert_eq!(snapshot.secret_count(), secrets);

    println!(
        "{secrets} secrets over {namespaces} namespaces, built in {:.2} s",
        elapsed.as_secs_f64()
    );
    synced
        .since(with_namespaces)
        .report("secrets (namespaces already known)", secrets, "secret");
    synced
        .since(empty)
        .report("namespaces + secrets", secrets, "secret");
    drop(snapshot);
    drop(builder);

    stuck_pods(pods);
}

/// A Deployment's pod as `kubectl apply` makes it, with one container waiting on a pull.
fn deployment_pod(index: usize) -> Pod {
    let image = format!(
        "registry.example.com:5000/team/app-{}:1.{index}",
        index % 50
    );
    let manifest = format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"app-{index}","namespace":"team-{ns}"}},"spec":{{"template":{{"spec":{{"containers":[{{"name":"app","image":"{image}"}},{{"name":"proxy","image":"nginx:1.25"}}]}}}}}}}}"#,
        ns = index % 100
    );
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": format!("app-{index}-5d8f7c9b4-x{index:05}"),
            "namespace": format!("team-{}", index % 100),
            "uid": format!("0b6f3c9e-0000-4000-8000-{index:012}"),
            "labels": { "app": format!("app-{index}"), "pod-template-hash": "5d8f7c9b4" },
            "annotations": { "kubectl.kubernetes.io/last-applied-configuration": manifest },
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet",
                                  "name": format!("app-{index}-5d8f7c9b4"),
                                  "uid": format!("1c7a4d0f-0000-4000-8000-{index:012}"),
                                  "controller": true, "blockOwnerDeletion": true }],
        },
        "spec": {
            "containers": [
                { "name": "app", "image": image, "imagePullPolicy": "IfNotPresent",
                  "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } } },
                { "name": "proxy", "image": "nginx:1.25", "ports": [{ "containerPort": 80 }] },
            ],
            "imagePullSecrets": [{ "name": "old-credentials" }],
            "serviceAccountName": "default",
            "nodeName": "node-1",
        },
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                { "name": "app", "image": image, "imageID": "", "ready": false, "restartCount": 0,
                  "state": { "waiting": { "reason": "ImagePullBackOff",
                             "message": format!("Back-off pulling image \"{image}\"") } } },
                { "name": "proxy", "image": "nginx:1.25", "imageID": "", "ready": true,
                  "restartCount": 0, "state": { "running": { "startedAt": "2026-11-25T00:00:00Z" } } },
            ],
        },
    }))
    .expect("pod")
}

/// Heap held per stuck pod: `StuckPod` (what recovery keeps) against the whole `Pod`.
fn stuck_pods(count: usize) {
    let before = Heap::now();
    let whole: Vec<Pod> = (0..count).map(deployment_pod).collect();
    let with_pods = Heap::now();
    let kept: std::collections::HashMap<String, StuckPod> = whole
        .iter()
        .filter_map(StuckPod::from_pod)
        .map(|stuck| (stuck.uid.clone(), stuck))
        .collect();
    assert_eq!(kept.len(), count);
    drop(whole);
    let with_stuck = Heap::now();
    with_pods
        .since(before)
        .report("whole Pod objects (a reflector)", count, "pod");
    with_stuck
        .since(before)
        .report("StuckPod (recovery keeps)", count, "pod");
    drop(kept);
}
