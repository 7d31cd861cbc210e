// TEMPORARY STUB (replaced by the real module)
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
pub const DOCKERCFG_KEY: &str = ".dockercfg";
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid JSON")]
    Json,
}
pub fn registry_keys(
    secret_type: &str,
    data: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<Option<Vec<String>>, DecodeError> {
    let (bytes, nested) = match secret_type {
        DOCKER_CONFIG_JSON_TYPE => (data.get(DOCKER_CONFIG_JSON_KEY), true),
        DOCKERCFG_TYPE => (data.get(DOCKERCFG_KEY), false),
        _ => return Ok(None),
    };
    let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| DecodeError::Json)?;
    let auths = if nested {
        v.get("auths").cloned().unwrap_or_default()
    } else {
        v
    };
    Ok(Some(
        auths
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default(),
    ))
}
