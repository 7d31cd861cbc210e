use serde_json::{Value, json};

use super::*;
use crate::cluster::statefile::state_from_str;
use crate::state::snapshot::{INJECT_LABEL, MODE_LABEL};

use crate::admission::fixtures::{AUTH, secret};

fn broken(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": { "namespace": namespace, "name": name },
        "stringData": { ".dockerconfigjson": "{\"auths\": [" },
    })
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": labels } })
}

fn state(documents: &[Value]) -> ClusterState {
    let text: Vec<String> = documents.iter().map(Value::to_string).collect();
    ClusterState::clone(&state_from_str("test", &text.join("\n")).expect("state"))
}

fn pod(images: &[&str], secrets: &[&str], annotation: Option<&str>) -> PodView {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({ "name": format!("c{i}"), "image": image }))
        .collect();
    let refs: Vec<Value> = secrets.iter().map(|name| json!({ "name": name })).collect();
    let annotations = match annotation {
        Some(text) => json!({ INJECTED_ANNOTATION: text }),
        None => json!({}),
    };
    serde_json::from_value(json!({
        "metadata": { "name": "p", "annotations": annotations },
        "spec": { "containers": containers, "imagePullSecrets": refs },
    }))
    .expect("pod")
}

fn run(state: &ClusterState, namespace: &str, pod: &PodView, existing: bool) -> Vec<Finding> {
    audit(
        &Workload {
            workload: WorkloadRef {
                kind: if existing { "Pod" } else { "Deployment" }.to_owned(),
                namespace: namespace.to_owned(),
                name: "w".to_owned(),
            },
            pod,
            existing_pod: existing,
            controlled: false,
            failing_pulls: &[],
        },
        state,
        at(NOW),
    )
}

/// The audit's clock in these tests.
const NOW: &str = "2026-01-01T12:00:00Z";

fn at(time: &str) -> Timestamp {
    time.parse().expect("time")
}

fn kinds(findings: &[Finding]) -> Vec<(FindingKind, Vec<String>)> {
    findings
        .iter()
        .map(|f| (f.kind, f.secrets.clone()))
        .collect()
}

fn cluster() -> ClusterState {
    state(&[
        namespace("shop", json!({})),
        namespace("infra", json!({})),
        namespace("quiet", json!({ MODE_LABEL: "shadow" })),
        secret("shop", "regcred", &["r.example.com"]),
        broken("shop", "broken"),
        secret("infra", "corp", &["corp.example.com"]),
        secret("quiet", "quietcred", &["r.example.com"]),
    ])
}

#[test]
fn healthy_workloads_have_no_finding() {
    let state = cluster();
    for (images, secrets) in [
        (vec!["r.example.com/app:1"], vec![]),
        (vec!["r.example.com/app:1"], vec!["regcred"]),
        // Public images with no credential anywhere are none of the audit's business.
        (vec!["nginx:1", "quay.io/public/x:1"], vec![]),
        (vec!["not a reference"], vec![]),
    ] {
        let pod = pod(&images, &secrets, None);
        assert_eq!(
            kinds(&run(&state, "shop", &pod, false)),
            vec![],
            "{images:?} {secrets:?}"
        );
    }
}

#[test]
fn each_kind_of_finding_on_its_own_workload() {
    let state = cluster();
    type Expected = Vec<(FindingKind, Vec<String>)>;
    let cases: Vec<(&str, PodView, Expected)> = vec![
        (
            "shop",
            pod(&["r.example.com/app:1"], &["gone"], None),
            vec![(FindingKind::MissingSecret, vec!["gone".into()])],
        ),
        (
            "shop",
            pod(&["r.example.com/app:1"], &["broken", "broken"], None),
            vec![(FindingKind::UndecodableSecret, vec!["broken".into()])],
        ),
        (
            "shop",
            pod(&["corp.example.com/team/app:1"], &[], None),
            vec![(FindingKind::CredentialElsewhere, vec!["infra/corp".into()])],
        ),
        (
            "quiet",
            pod(&["r.example.com/app:1"], &[], None),
            vec![(FindingKind::NotInjected, vec!["quietcred".into()])],
        ),
    ];
    for (namespace, pod, expected) in cases {
        let findings = run(&state, namespace, &pod, false);
        assert_eq!(kinds(&findings), expected);
        for finding in &findings {
            assert_eq!(finding.severity, finding.kind.severity());
            assert!(!finding.message.contains(AUTH), "{}", finding.message);
        }
    }
}

/// The same pod with its images moved to image volumes, its container left without one.
fn as_image_volumes(pod: &PodView) -> PodView {
    let mut moved = pod.clone();
    if let Some(spec) = moved.spec.as_mut() {
        let containers = spec.containers.take().unwrap_or_default();
        spec.volumes = Some(
            containers
                .into_iter()
                .map(|container| crate::admission::pod::VolumeView {
                    name: container.name,
                    image: Some(crate::admission::pod::ImageVolumeView {
                        reference: container.image,
                    }),
                })
                .collect(),
        );
        spec.containers = Some(vec![crate::admission::pod::ContainerView::default()]);
    }
    moved
}

#[test]
fn image_volumes_are_audited_like_container_images() {
    let state = cluster();
    let cases = [
        ("shop", pod(&["r.example.com/app:1"], &[], None)),
        ("shop", pod(&["corp.example.com/team/models:1"], &[], None)),
        ("quiet", pod(&["r.example.com/models:1"], &[], None)),
        ("shop", pod(&["r.example.com/app:1"], &["broken"], None)),
    ];
    for (namespace, containers) in cases {
        let volumes = as_image_volumes(&containers);
        let by_container = run(&state, namespace, &containers, true);
        let by_volume = run(&state, namespace, &volumes, true);
        assert_eq!(by_volume, by_container, "{namespace}");
    }
    let found = run(
        &state,
        "shop",
        &as_image_volumes(&pod(&["corp.example.com/m:1"], &[], None)),
        false,
    );
    assert_eq!(
        kinds(&found),
        [(
            FindingKind::CredentialElsewhere,
            vec!["infra/corp".to_owned()]
        )]
    );
    assert_eq!(found[0].image.as_deref(), Some("corp.example.com/m:1"));
}

#[test]
fn an_existing_pod_is_compared_with_what_it_would_get_now() {
    let state = cluster();
    // Created before regcred existed: it would get it now.
    let before = pod(&["r.example.com/app:1"], &[], None);
    let findings = run(&state, "shop", &before, true);
    assert_eq!(
        kinds(&findings),
        [(FindingKind::SecretsDiffer, vec!["regcred".to_owned()])]
    );
    assert!(
        findings[0].message.contains("would also get regcred"),
        "{}",
        findings[0].message
    );
    // Injected then, still chosen now: nothing differs.
    let injected = pod(
        &["r.example.com/app:1"],
        &["regcred"],
        Some("regcred (r.example.com/app)"),
    );
    assert_eq!(kinds(&run(&state, "shop", &injected, true)), vec![]);
    // Injected once by a secret no longer chosen (the image changed registry in between).
    let stale = pod(
        &["other.example.com/app:1"],
        &["regcred"],
        Some("regcred (r.example.com/app)"),
    );
    let findings = run(&state, "shop", &stale, true);
    assert_eq!(
        kinds(&findings),
        [(FindingKind::SecretsDiffer, vec!["regcred".to_owned()])]
    );
    assert!(
        findings[0].message.contains("would no longer get regcred"),
        "{}",
        findings[0].message
    );
    // A secret the pod's spec names itself is kept, whatever the webhook would choose.
    let own = pod(&["other.example.com/app:1"], &["regcred"], None);
    assert_eq!(kinds(&run(&state, "shop", &own, true)), vec![]);
    // In shadow mode a new pod gets nothing injected: a pod injected earlier differs.
    let shadowed = pod(
        &["r.example.com/app:1"],
        &["quietcred"],
        Some("quietcred (r.example.com/app)"),
    );
    let findings = run(&state, "quiet", &shadowed, true);
    assert_eq!(
        kinds(&findings),
        [(FindingKind::SecretsDiffer, vec!["quietcred".to_owned()])]
    );
    assert!(
        findings[0]
            .message
            .contains("would no longer get quietcred"),
        "{}",
        findings[0].message
    );
}

#[test]
fn opted_out_and_unserved_namespaces_get_nothing_injected() {
    let mut documents = vec![
        namespace("out", json!({ INJECT_LABEL: "false" })),
        secret("out", "outcred", &["r.example.com"]),
        secret("kube-system", "syscred", &["r.example.com"]),
    ];
    documents.push(namespace("kube-system", json!({})));
    let state = state(&documents);
    for namespace in ["out", "kube-system"] {
        let pod = pod(&["r.example.com/app:1"], &[], None);
        let findings = run(&state, namespace, &pod, false);
        assert_eq!(kinds(&findings).len(), 1, "{findings:?}");
        assert_eq!(findings[0].kind, FindingKind::NotInjected);
    }
}

#[test]
fn a_controlled_pod_is_only_compared() {
    let state = cluster();
    let pod = pod(&["corp.example.com/app:1"], &["gone"], None);
    let findings = audit(
        &Workload {
            workload: WorkloadRef {
                kind: "Pod".into(),
                namespace: "shop".into(),
                name: "w-1".into(),
            },
            pod: &pod,
            existing_pod: true,
            controlled: true,
            failing_pulls: &[],
        },
        &state,
        at(NOW),
    );
    assert_eq!(kinds(&findings), vec![]);
}

#[test]
fn severities_are_ordered_and_fixed_per_kind() {
    assert!(Severity::Error > Severity::Warning && Severity::Warning > Severity::Info);
    let severities: Vec<Severity> = FindingKind::ALL.iter().map(|k| k.severity()).collect();
    assert_eq!(
        severities,
        [
            Severity::Error,
            Severity::Error,
            Severity::Warning,
            Severity::Warning,
            Severity::Info,
            Severity::Error,
            Severity::Warning,
            Severity::Warning
        ]
    );
}

/// A ClusterPullSecret for every namespace whose source `infra/ecr` a provider mints, with
/// `credential` as its `status.credential`.
fn minted(credential: Value, provider: bool) -> Vec<Value> {
    let mut spec = json!({
        "source": { "namespace": "infra", "name": "ecr" },
        "targetName": "ecr-copy",
    });
    if provider {
        spec["credentialProvider"] =
            json!({ "name": "ecr-credential-provider", "images": ["ecr.example.com/app"] });
    }
    vec![
        namespace("shop", json!({})),
        namespace("infra", json!({})),
        namespace("quiet", json!({ MODE_LABEL: "shadow" })),
        secret("infra", "ecr", &["ecr.example.com"]),
        json!({
            "apiVersion": "pullsecret-injector.io/v1alpha1", "kind": "ClusterPullSecret",
            "metadata": { "name": "ecr" },
            "spec": spec,
            "status": { "credential": credential },
        }),
    ]
}

const FAILURE: &str = "plugin exited with status 1: AccessDenied";

#[test]
fn a_minted_credential_that_expired_or_expires_before_its_refresh_is_found() {
    let pod = pod(&["ecr.example.com/app:1", "nginx:1"], &[], None);
    let failing = json!({
        "mintedAt": "2026-01-01T00:00:00Z", "expiresAt": "2026-01-01T13:00:00Z",
        "nextRefreshAt": "2026-01-01T12:10:00Z",
        "consecutiveFailures": 3, "lastFailure": FAILURE,
    });
    let cases = [
        // Expired: every pull that needs it fails now.
        (
            json!({
                "mintedAt": "2026-01-01T00:00:00Z", "expiresAt": "2026-01-01T11:00:00Z",
                "nextRefreshAt": "2026-01-01T12:05:00Z",
                "consecutiveFailures": 5, "lastFailure": FAILURE,
            }),
            Some((
                FindingKind::CredentialExpired,
                "expired at 2026-01-01T11:00:00Z",
            )),
        ),
        // Its next refresh comes after it expires.
        (
            json!({
                "mintedAt": "2026-01-01T00:00:00Z", "expiresAt": "2026-01-01T13:00:00Z",
                "nextRefreshAt": "2026-01-01T14:00:00Z",
            }),
            Some((
                FindingKind::CredentialExpiring,
                "expires at 2026-01-01T13:00:00Z, before its next refresh at 2026-01-01T14:00:00Z",
            )),
        ),
        // The refresh is failing, one hour of thirteen left.
        (
            failing.clone(),
            Some((FindingKind::CredentialExpiring, FAILURE)),
        ),
        // A refresh failed, but most of the lifetime is left and retries come before expiry.
        (
            json!({
                "mintedAt": "2026-01-01T11:00:00Z", "expiresAt": "2026-01-01T23:00:00Z",
                "nextRefreshAt": "2026-01-01T12:05:00Z",
                "consecutiveFailures": 1, "lastFailure": FAILURE,
            }),
            None,
        ),
        // Healthy: refreshed well before it expires.
        (
            json!({
                "mintedAt": "2026-01-01T11:00:00Z", "expiresAt": "2026-01-01T23:00:00Z",
                "nextRefreshAt": "2026-01-01T20:36:00Z",
            }),
            None,
        ),
        // No stated lifetime: it never expires.
        (
            json!({ "mintedAt": "2026-01-01T11:00:00Z", "nextRefreshAt": "2026-01-01T23:00:00Z" }),
            None,
        ),
    ];
    for (credential, expected) in cases {
        let state = state(&minted(credential.clone(), true));
        let findings = run(&state, "shop", &pod, false);
        let Some((kind, said)) = expected else {
            assert_eq!(kinds(&findings), vec![], "{credential}");
            continue;
        };
        assert_eq!(
            kinds(&findings),
            [(kind, vec!["ecr-copy".to_owned()])],
            "{credential}"
        );
        let finding = &findings[0];
        assert_eq!(finding.severity, kind.severity());
        assert_eq!(finding.image.as_deref(), Some("ecr.example.com/app:1"));
        for part in [said, "ClusterPullSecret \"ecr\"", "with \"ecr-copy\""] {
            assert!(
                finding.message.contains(part),
                "{part}: {}",
                finding.message
            );
        }
        assert!(!finding.message.contains(AUTH), "{}", finding.message);
    }
    // Whoever names the secret pulls with it: a pod listing the copy itself, a pod of the
    // source's namespace listing the source.
    let mut documents = minted(failing.clone(), true);
    documents.push(secret("shop", "ecr-copy", &["ecr.example.com"]));
    let state = state(&documents);
    let named = self::pod(&["ecr.example.com/app:1"], &["ecr-copy"], None);
    assert_eq!(
        kinds(&run(&state, "shop", &named, true)),
        [(FindingKind::CredentialExpiring, vec!["ecr-copy".to_owned()])]
    );
    let source = self::pod(&["ecr.example.com/app:1"], &["ecr"], None);
    assert_eq!(
        kinds(&run(&state, "infra", &source, false)),
        [(
            FindingKind::CredentialExpiring,
            vec!["ecr".to_owned(), "ecr-copy".to_owned()]
        )]
    );
    // A pod that does not get the credential (shadow mode) is not told it expires.
    assert_eq!(
        kinds(&run(&state, "quiet", &pod, false)),
        [(FindingKind::NotInjected, vec!["ecr-copy".to_owned()])]
    );
    // Nor a pod whose images need another registry.
    let other = self::pod(&["other.example.com/app:1"], &[], None);
    assert_eq!(kinds(&run(&state, "shop", &other, false)), vec![]);
    // Only a provider's credential is minted: a status without `credentialProvider` is not read.
    let state = self::state(&minted(failing, false));
    assert_eq!(kinds(&run(&state, "shop", &pod, false)), vec![]);
}

/// A pod of a namespace switched from shadow to on, stuck on a pull its namespace now has the
/// secret for: a warning (so `--fail-on warning` fails), not only the informational
/// comparison; a stuck pull no secret serves, or one the pod has the secret for, is not.
#[test]
fn a_pod_that_cannot_pull_while_a_secret_serves_the_image_is_a_warning() {
    let state = cluster();
    let stuck = pod(&["r.example.com/app:1"], &[], None);
    let failing = ["r.example.com/app:1".to_owned()];
    let run_stuck = |pod: &PodView, failing: &[String], controlled: bool| {
        audit(
            &Workload {
                workload: WorkloadRef {
                    kind: "Pod".into(),
                    namespace: "shop".into(),
                    name: "w-1".into(),
                },
                pod,
                existing_pod: true,
                controlled,
                failing_pulls: failing,
            },
            &state,
            at(NOW),
        )
    };
    for controlled in [false, true] {
        let findings = run_stuck(&stuck, &failing, controlled);
        let failing_found: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.kind == FindingKind::PullFailing)
            .collect();
        assert_eq!(failing_found.len(), 1, "{findings:?}");
        assert_eq!(failing_found[0].severity, Severity::Warning);
        assert_eq!(failing_found[0].secrets, ["regcred"]);
        assert!(
            failing_found[0].message.contains("ImagePullBackOff"),
            "{}",
            failing_found[0].message
        );
    }
    let has_it = pod(&["r.example.com/app:1"], &["regcred"], None);
    let unserved = pod(&["elsewhere.example.com/app:1"], &[], None);
    for (pod, failing) in [
        (&stuck, Vec::new()),
        (&has_it, failing.to_vec()),
        (&unserved, vec!["elsewhere.example.com/app:1".to_owned()]),
    ] {
        let findings = run_stuck(pod, &failing, true);
        assert!(
            findings.iter().all(|f| f.kind != FindingKind::PullFailing),
            "{findings:?}"
        );
    }
}
