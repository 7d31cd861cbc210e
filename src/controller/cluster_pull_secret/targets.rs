//! Which namespaces a ClusterPullSecret's copies belong in: the admission decision's own
//! selection, and the fresh read that confirms a namespace no longer matches before its copy goes.

use super::*;

pub(super) fn copies_selector(name: &str) -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{OWNER_LABEL}={name}")
}

/// The namespaces that should hold a copy, by the same rules the admission decision uses. A
/// namespace in shadow mode gets none: shadow mode changes nothing in a namespace, and its copy
/// is written the moment the namespace is switched on.
pub fn target_namespaces(state: &ClusterState, resource: &ClusterPullSecret) -> BTreeSet<String> {
    let selector = resource.spec.namespace_selector.clone().unwrap_or_default();
    state
        .existing_namespaces()
        .filter(|namespace| state.selects(&selector, namespace))
        .filter(|namespace| state.mode(namespace).0 == Mode::On)
        .filter(|namespace| !is_source_slot(resource, namespace))
        .map(str::to_owned)
        .collect()
}

/// Whether the copy in `namespace` would be the source itself.
pub(super) fn is_source_slot(resource: &ClusterPullSecret, namespace: &str) -> bool {
    namespace == resource.spec.source.namespace
        && resource.target_name() == resource.spec.source.name
}

/// Whether a namespace the snapshot no longer selects may still be selected: the namespace
/// watch is out of sync, or a fresh read says it is selected (the cache lags behind), or the
/// read fails.
pub(super) async fn may_still_be_selected(
    context: &Context,
    state: &ClusterState,
    resource: &ClusterPullSecret,
    namespace: &str,
    namespaces_in_sync: bool,
) -> bool {
    if !namespaces_in_sync {
        return true;
    }
    let api: Api<Namespace> = Api::all(context.client.clone());
    context.limiter.acquire().await;
    match api.get_opt(namespace).await {
        Ok(None) => false,
        Ok(Some(fresh)) => {
            let selector = resource.spec.namespace_selector.clone().unwrap_or_default();
            let terminating = fresh.metadata.deletion_timestamp.is_some();
            let mode = fresh
                .labels()
                .get(MODE_LABEL)
                .and_then(|value| Mode::from_label(value))
                .unwrap_or(state.default_mode());
            !is_source_slot(resource, namespace)
                && mode == Mode::On
                && state.selects_with(&selector, namespace, Some((fresh.labels(), terminating)))
        }
        Err(error) => {
            tracing::debug!(namespace, %error, "cannot read the namespace; keeping its copy for now");
            true
        }
    }
}
