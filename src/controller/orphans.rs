//! Copies and minted credentials whose ClusterPullSecret is gone without its finalizer having
//! run (removed by hand, or the resource force-deleted): the Lease holder sweeps them. (A minted
//! Secret also carries an owner reference, so the garbage collector removes it too.)
//!
//! A copy is a Secret labelled `app.kubernetes.io/managed-by: pullsecret-injector` with the
//! owner label naming its ClusterPullSecret; a minted credential has the minted-for label
//! instead. Every sweep lists those copies and the
//! ClusterPullSecrets, both from the API (not the cache: a sweep must not act on a lagging
//! picture), and deletes a copy only when its owner is absent from a complete list, with the
//! copy's UID as precondition so a Secret recreated meanwhile is never touched. In namespaced
//! mode only the listed namespaces are swept.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::{Client, ResourceExt};

use crate::cluster::scope::Scope;
use crate::controller::leader::Leadership;
use crate::controller::minting::MINTED_FOR_LABEL;
use crate::state::crd::{ClusterPullSecret, MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_LABEL};
use crate::telemetry::Metrics;

/// The labels naming the ClusterPullSecret a managed Secret belongs to: copies, then minted
/// credentials.
const OWNER_LABELS: [&str; 2] = [OWNER_LABEL, MINTED_FOR_LABEL];

/// The Secrets to delete: managed copies and minted credentials whose owner is not among
/// `owners`.
pub fn orphans<'a>(
    copies: &'a [PartialObjectMeta<Secret>],
    owners: &BTreeSet<String>,
) -> Vec<&'a PartialObjectMeta<Secret>> {
    copies
        .iter()
        .filter(|copy| {
            let labels = copy.labels();
            labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
                && owner_of(copy).is_some_and(|owner| !owners.contains(owner))
        })
        .collect()
}

/// The ClusterPullSecret a managed Secret names as its owner.
fn owner_of(secret: &PartialObjectMeta<Secret>) -> Option<&str> {
    OWNER_LABELS
        .iter()
        .find_map(|label| secret.labels().get(*label))
        .map(String::as_str)
}

/// Sweeps every `interval` while this replica leads, until the process ends; a sweep is
/// dropped the moment the term ends.
pub async fn run(
    client: Client,
    scope: Scope,
    metrics: Metrics,
    interval: Duration,
    mut leadership: Leadership,
) {
    while leadership.acquired().await {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let tick = leadership.while_leading(ticks.tick()).await;
            if tick.is_none() {
                break;
            }
            match leadership
                .while_leading(sweep(&client, &scope, &metrics))
                .await
            {
                None => break,
                Some(Err(error)) => {
                    tracing::warn!(%error, "cannot sweep orphaned copies; trying again later");
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

/// One sweep; the number of copies deleted.
pub async fn sweep(
    client: &Client,
    scope: &Scope,
    metrics: &Metrics,
) -> Result<usize, kube::Error> {
    let mut copies = Vec::new();
    for label in OWNER_LABELS {
        let selector =
            ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{label}"));
        for (_, secrets) in scope.apis::<Secret>(client) {
            copies.extend(secrets.list_metadata(&selector).await?.items);
        }
    }
    if copies.is_empty() {
        return Ok(0);
    }
    let owners: BTreeSet<String> = Api::<ClusterPullSecret>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let mut deleted = 0;
    for copy in orphans(&copies, &owners) {
        let namespace = copy.namespace().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: copy.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match Api::<Secret>::namespaced(client.clone(), &namespace)
            .delete(&copy.name_any(), &params)
            .await
        {
            Ok(_) => {
                deleted += 1;
                metrics.observe_write("delete");
                tracing::info!(namespace, secret = %copy.name_any(), owner = owner_of(copy).unwrap_or(""), minted = copy.labels().contains_key(MINTED_FOR_LABEL), "deleted a copy whose ClusterPullSecret is gone");
            }
            // Gone already, or replaced meanwhile (the UID precondition failed): nothing to do.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn copy(name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Secret> {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": { "name": name, "namespace": "shop", "labels": labels },
        }))
        .expect("metadata")
    }

    #[test]
    fn only_managed_copies_of_absent_owners_are_orphans() {
        let managed = (MANAGED_BY_LABEL, MANAGED_BY_VALUE);
        let copies = vec![
            copy("kept", &[managed, (OWNER_LABEL, "corp")]),
            copy("orphan", &[managed, (OWNER_LABEL, "gone")]),
            copy(
                "foreign",
                &[(MANAGED_BY_LABEL, "helm"), (OWNER_LABEL, "gone")],
            ),
            copy("unowned", &[managed]),
            copy("minted-orphan", &[managed, (MINTED_FOR_LABEL, "gone")]),
            copy("minted-kept", &[managed, (MINTED_FOR_LABEL, "corp")]),
            copy("minted-foreign", &[(MINTED_FOR_LABEL, "gone")]),
        ];
        let owners = BTreeSet::from(["corp".to_owned()]);
        let names: Vec<String> = orphans(&copies, &owners)
            .iter()
            .map(|c| c.name_any())
            .collect();
        assert_eq!(names, ["orphan", "minted-orphan"]);
        assert!(
            orphans(
                &copies,
                &BTreeSet::from(["corp".to_owned(), "gone".to_owned()])
            )
            .is_empty()
        );
    }
}
