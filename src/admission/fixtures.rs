//! Test documents shared by the admission tests.

use serde_json::{Value, json};

/// The `auth` of every test credential: base64("user:pass").
pub const AUTH: &str = "dXNlcjpwYXNz";

/// A dockerconfigjson Secret document with the given `auths` keys.
pub fn secret(namespace: &str, name: &str, keys: &[&str]) -> Value {
    let auths: serde_json::Map<String, Value> = keys
        .iter()
        .map(|key| (key.to_string(), json!({ "auth": AUTH })))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": { "namespace": namespace, "name": name },
        "stringData": { ".dockerconfigjson": json!({ "auths": auths }).to_string() },
    })
}
