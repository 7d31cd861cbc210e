//! Reading what the cluster says back: Secrets and their copies, status conditions, Events.
//! Every scenario reads them through these functions, so they all read them the same way.

use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::Suite;
use super::util::poll;

/// The Secret `ns/name`, or `None` when it does not exist.
pub fn secret(s: &Suite, ns: &str, name: &str) -> Result<Option<Value>> {
    s.get_json_opt(&["secret", name, "-n", ns])
}

/// What a copy of a Secret must equal: its `data`.
pub fn secret_data(secret: &Value) -> Value {
    secret["data"].clone()
}

/// Waits for the Secret `ns/target` with the current data of `source` (namespace, name), and
/// returns it.
pub fn wait_secret_copy(
    s: &Suite,
    ns: &str,
    target: &str,
    source: (&str, &str),
    timeout: Duration,
) -> Result<Value> {
    poll(
        &format!("copy {ns}/{target} equal to its source"),
        timeout,
        || {
            let source = s.get_json(&["secret", source.1, "-n", source.0])?;
            Ok(secret(s, ns, target)?.filter(|copy| secret_data(copy) == secret_data(&source)))
        },
    )
}

/// Waits until the Secret `ns/name` no longer exists.
pub fn wait_secret_gone(s: &Suite, ns: &str, name: &str, timeout: Duration) -> Result<()> {
    poll(
        &format!("secret {ns}/{name} to be deleted"),
        timeout,
        || Ok(secret(s, ns, name)?.is_none().then_some(())),
    )
}

/// The password for `host` in the dockerconfigjson Secret `ns/name`, `None` without the Secret.
pub fn secret_password(s: &Suite, ns: &str, name: &str, host: &str) -> Result<Option<String>> {
    let Some(secret) = secret(s, ns, name)? else {
        return Ok(None);
    };
    let data = secret["data"][".dockerconfigjson"]
        .as_str()
        .context("no .dockerconfigjson")?;
    let config: Value = serde_json::from_slice(&BASE64.decode(data)?)?;
    Ok(config["auths"][host]["password"]
        .as_str()
        .map(str::to_owned))
}

/// A condition of a resource's status (a ClusterPullSecret, a pod) as (status, reason,
/// message); fields it lacks are empty.
pub fn condition(resource: &Value, type_: &str) -> Option<(String, String, String)> {
    resource["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let field = |name: &str| c[name].as_str().unwrap_or_default().to_owned();
            (field("status"), field("reason"), field("message"))
        })
}

/// The Events in `ns` (every namespace with `None`), those matching `selector` if given.
pub fn events(s: &Suite, ns: Option<&str>, selector: Option<&str>) -> Result<Vec<Value>> {
    let mut args = vec!["events"];
    match ns {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("-A"),
    }
    if let Some(selector) = selector {
        args.extend(["--field-selector", selector]);
    }
    let list = s.get_json(&args)?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// Messages of the Events with `reason` about object `name` in `ns`.
pub fn event_messages(s: &Suite, ns: &str, name: &str, reason: &str) -> Result<Vec<String>> {
    let selector = format!("involvedObject.name={name},reason={reason}");
    Ok(events(s, Some(ns), Some(&selector))?
        .iter()
        .filter_map(|event| event["message"].as_str().map(str::to_owned))
        .collect())
}

/// Every Event of the cluster as kubectl prints it: leak checks search this very text.
pub fn all_events_json(s: &Suite) -> Result<String> {
    Ok(s.kubectl(&["get", "events", "-A", "-o", "json"])?.stdout)
}
