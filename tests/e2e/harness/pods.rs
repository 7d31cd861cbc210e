//! Pods on the node: waiting for them to run or to fail their pull, the pod of a Deployment,
//! and what the scenarios read from their status.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::Value;

use super::Suite;
use super::objects::{condition, event_messages, events};
use super::util::{poll, pull_secrets};

/// How long a pod may take to pull a local image and start (an upper bound, not a measurement).
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a failed pull waits for the kubelet's Event saying it lacked the pod's secrets.
const KUBELET_EVENT_GRACE: Duration = Duration::from_secs(5);

/// Waits until every container of the pod runs (init containers completed). A pull failure
/// ends the wait at once with the kubelet's message.
pub fn wait_running(s: &Suite, ns: &str, pod: &str) -> Result<Value> {
    let mut first_failure: Option<Instant> = None;
    let outcome = poll(&format!("pod {ns}/{pod} to run"), START_TIMEOUT, || {
        let json = s.pod(ns, pod)?;
        if let Some((container, reason, message)) = waiting_on_pull(&json) {
            // The kubelet may pull once without the pod's secrets when it could not read
            // them yet (the Node authorizer learns of a freshly bound pod through a watch);
            // it says so in an Event and pulls again with them after its back-off. Any other
            // failed pull fails at once (after a moment for that Event to arrive).
            let since = *first_failure.get_or_insert_with(Instant::now);
            if kubelet_lacked_secrets(s, ns, pod)? {
                return Ok(None);
            }
            if since.elapsed() < KUBELET_EVENT_GRACE {
                return Ok(None);
            }
            return Ok(Some(Err(format!(
                "container {container} of {ns}/{pod} is in {reason}: {message}"
            ))));
        }
        let statuses = json["status"]["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let running = json["status"]["phase"] == "Running"
            && !statuses.is_empty()
            && statuses.iter().all(|c| c["state"]["running"].is_object());
        Ok(running.then_some(Ok(json)))
    })?;
    outcome.map_err(anyhow::Error::msg)
}

/// Whether the kubelet reported that it could not read some of the pod's pull secrets
/// (Event `FailedToRetrieveImagePullSecret`): its pull went without them and will be retried.
fn kubelet_lacked_secrets(s: &Suite, ns: &str, pod: &str) -> Result<bool> {
    let selector = format!("involvedObject.name={pod},reason=FailedToRetrieveImagePullSecret");
    Ok(!events(s, Some(ns), Some(&selector))?.is_empty())
}

/// Waits until `container` of the pod cannot pull, and returns the kubelet's message.
pub fn wait_pull_failure(s: &Suite, ns: &str, pod: &str, container: &str) -> Result<String> {
    let message = poll(
        &format!("container {container} of {ns}/{pod} to fail its pull"),
        START_TIMEOUT,
        || {
            let json = s.pod(ns, pod)?;
            let all = container_statuses(&json);
            if let Some(status) = all.iter().find(|c| c["name"] == container) {
                ensure!(
                    !status["state"]["running"].is_object(),
                    "container {container} of {ns}/{pod} is running"
                );
            }
            Ok(waiting_on_pull(&json)
                .filter(|(name, _, _)| name == container)
                .map(|(_, _, message)| message))
        },
    )?;
    // The waiting message of ImagePullBackOff is generic; the pull error is in the events.
    poll(
        &format!("the Failed event of {ns}/{pod}"),
        START_TIMEOUT,
        || {
            let text = event_messages(s, ns, pod, "Failed")?
                .into_iter()
                .filter(|text| text.contains("Failed to pull image"))
                .collect::<Vec<_>>()
                .join("\n");
            Ok((!text.is_empty()).then(|| format!("{message}\n{text}")))
        },
    )
}

fn container_statuses(pod: &Value) -> Vec<Value> {
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|key| pod["status"][key].as_array().cloned().unwrap_or_default())
        .collect()
}

/// (container, reason, message) of the first container waiting on a failed pull.
fn waiting_on_pull(pod: &Value) -> Option<(String, String, String)> {
    container_statuses(pod).iter().find_map(|status| {
        let waiting = &status["state"]["waiting"];
        let reason = waiting["reason"].as_str()?;
        matches!(
            reason,
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName"
        )
        .then(|| {
            (
                status["name"].as_str().unwrap_or_default().to_owned(),
                reason.to_owned(),
                waiting["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
    })
}

/// The pod's exact imagePullSecrets.
pub fn expect_secrets(pod: &Value, expected: &[&str]) -> Result<()> {
    let got = pull_secrets(pod);
    ensure!(
        got == expected,
        "pod {} has imagePullSecrets {got:?}, expected {expected:?}",
        pod["metadata"]["name"]
    );
    Ok(())
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    condition(pod, "Ready").is_some_and(|(status, _, _)| status == "True")
}

/// The single live pod of a Deployment's `app` label, and its UID.
pub fn deployment_pod(
    s: &Suite,
    ns: &str,
    app: &str,
    timeout: Duration,
) -> Result<(String, String)> {
    poll(&format!("the pod of deployment {app}"), timeout, || {
        let pods = s.get_json(&["pods", "-n", ns, "-l", &format!("app={app}")])?;
        let live: Vec<&Value> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
            .collect();
        Ok(match live.as_slice() {
            [pod] => Some((
                pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                pod["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )),
            _ => None,
        })
    })
}

/// Waits for a Running pod of `app` other than `old`, and returns it.
pub fn replacement(s: &Suite, ns: &str, app: &str, old: &str, timeout: Duration) -> Result<Value> {
    let name = poll("a replacement pod", timeout, || {
        let (name, _) = deployment_pod(s, ns, app, timeout)?;
        Ok((name != old).then_some(name))
    })?;
    wait_running(s, ns, &name)
}
