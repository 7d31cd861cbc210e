//! Writing and deleting the copies: created, updated in place or replaced when the source's
//! type changed, deleted when a namespace stops matching; each namespace's failure on its own.

use super::*;

/// Why a copy could not be written or deleted in one namespace. The texts are fixed: the API
/// server's own message is never copied, since an admission policy's message may quote the
/// object, credentials included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFailure {
    /// 403: a ResourceQuota of the namespace.
    Quota,
    /// 403: the namespace is being deleted.
    Terminating,
    /// 404 on create: the namespace does not exist (any more).
    NamespaceNotFound,
    /// 403 for another reason: RBAC or an admission webhook.
    Forbidden,
    /// 422: validation or an admission policy.
    Invalid,
    /// 409: the Secret changed meanwhile, or appeared while it was being created.
    Conflict,
    /// Another status, or no answer at all (`None`).
    Other(Option<u16>),
}

impl CopyFailure {
    pub fn classify(error: &kube::Error) -> CopyFailure {
        let kube::Error::Api(status) = error else {
            return CopyFailure::Other(None);
        };
        match status.code {
            403 if status.message.contains("exceeded quota") => CopyFailure::Quota,
            403 if status.message.contains("being terminated") => CopyFailure::Terminating,
            403 => CopyFailure::Forbidden,
            404 => CopyFailure::NamespaceNotFound,
            409 => CopyFailure::Conflict,
            422 => CopyFailure::Invalid,
            code => CopyFailure::Other(Some(code)),
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            CopyFailure::Quota => "quota",
            CopyFailure::Terminating => "terminating",
            CopyFailure::NamespaceNotFound => "namespace_not_found",
            CopyFailure::Forbidden => "forbidden",
            CopyFailure::Invalid => "invalid",
            CopyFailure::Conflict => "conflict",
            CopyFailure::Other(_) => "other",
        }
    }

    pub fn describe(self) -> String {
        match self {
            CopyFailure::Quota => {
                "a ResourceQuota of the namespace refuses another Secret (403)".to_owned()
            }
            CopyFailure::Terminating => "the namespace is being deleted (403)".to_owned(),
            CopyFailure::NamespaceNotFound => "the namespace does not exist (404)".to_owned(),
            CopyFailure::Forbidden => {
                "forbidden (403): RBAC or an admission webhook refuses it".to_owned()
            }
            CopyFailure::Invalid => {
                "refused as invalid (422), e.g. by a ValidatingAdmissionPolicy".to_owned()
            }
            CopyFailure::Conflict => {
                "the Secret changed while it was being written (409)".to_owned()
            }
            CopyFailure::Other(Some(code)) => format!("the API server answered {code}"),
            CopyFailure::Other(None) => "no answer from the API server".to_owned(),
        }
    }
}

/// A failed write in one namespace: what was being done, and why it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Failed {
    pub(super) action: &'static str,
    pub(super) failure: CopyFailure,
}

impl Failed {
    pub(super) fn of(action: &'static str) -> impl Fn(kube::Error) -> Failed {
        move |error| Failed {
            action,
            failure: CopyFailure::classify(&error),
        }
    }

    pub(super) fn reason(self) -> String {
        format!("{}: {}", self.action, self.failure.describe())
    }
}

/// The Secrets minted for `resource` (owner label and owner reference), in the namespaces this
/// injector serves.
pub(super) async fn list_minted(
    context: &Context,
    resource: &ClusterPullSecret,
) -> Result<Vec<Secret>, kube::Error> {
    let params = ListParams::default().labels(&format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{MINTED_FOR_LABEL}={}",
        resource.name_any()
    ));
    let mut minted = Vec::new();
    for (_, secrets) in context.cache.scope().apis::<Secret>(&context.client) {
        minted.extend(
            secrets
                .list(&params)
                .await?
                .into_iter()
                .filter(|secret| minting::minted_for(secret, resource)),
        );
    }
    Ok(minted)
}

/// Deletes the live credentials this resource minted that it no longer uses: every one when it
/// has no `credentialProvider` any more, else those not at the current `spec.source`.
pub(super) async fn remove_stale_minted(
    context: &Context,
    resource: &ClusterPullSecret,
    report: &mut Report,
) -> Result<(), kube::Error> {
    let source = &resource.spec.source;
    let minting = resource.spec.credential_provider.is_some();
    for minted in list_minted(context, resource).await? {
        let namespace = minted.namespace().unwrap_or_default();
        if minting && namespace == source.namespace && minted.name_any() == source.name {
            continue;
        }
        match delete_copy(context, &minted).await {
            Ok(()) => {
                tracing::info!(cluster_pull_secret = %resource.name_any(), namespace, secret = %minted.name_any(), "minted credential no longer used: deleted");
            }
            Err(failed) => report.failed(context, resource, &namespace, failed),
        }
    }
    Ok(())
}

/// The copies of the resource `name`, in the namespaces this injector serves.
pub(super) async fn list_copies(context: &Context, name: &str) -> Result<Vec<Secret>, kube::Error> {
    let params = ListParams::default().labels(&copies_selector(name));
    let mut copies = Vec::new();
    for (_, secrets) in context.cache.scope().apis::<Secret>(&context.client) {
        copies.extend(secrets.list(&params).await?);
    }
    Ok(copies)
}

/// The labels, annotation, type and data a copy must have.
pub(super) fn desired_copy(
    resource: &ClusterPullSecret,
    source: &Secret,
    namespace: &str,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(resource.target_name()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
                (OWNER_LABEL.to_owned(), resource.name_any()),
            ])),
            annotations: Some(BTreeMap::from([(
                SOURCE_ANNOTATION.to_owned(),
                format!(
                    "{}/{}",
                    resource.spec.source.namespace, resource.spec.source.name
                ),
            )])),
            ..ObjectMeta::default()
        },
        type_: source.type_.clone(),
        data: source.data.clone(),
        ..Secret::default()
    }
}

pub(super) enum Copied {
    Served,
    /// A Secret this resource does not manage has the target name.
    Conflict(String),
}

pub(super) async fn create_copy(
    context: &Context,
    resource: &ClusterPullSecret,
    source: &Secret,
    namespace: &str,
) -> Result<Copied, Failed> {
    let api: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
    let copy = desired_copy(resource, source, namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    context.limiter.acquire().await;
    match api.create(&params, &copy).await {
        Ok(_) => {
            context.metrics.observe_write("create");
            tracing::info!(cluster_pull_secret = %resource.name_any(), namespace, secret = %resource.target_name(), "copy created");
            Ok(Copied::Served)
        }
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            let owner = api
                .get_opt(&resource.target_name())
                .await
                .map_err(Failed::of("read"))?
                .and_then(|secret| {
                    is_managed(secret.labels())
                        .then(|| secret.labels().get(OWNER_LABEL).cloned())
                        .flatten()
                });
            match owner {
                // Ours, created since the list: looked at again with the next attempt.
                Some(owner) if owner == resource.name_any() => Err(Failed {
                    action: "create",
                    failure: CopyFailure::Conflict,
                }),
                Some(owner) => Ok(Copied::Conflict(format!(
                    "Secret {} is managed for ClusterPullSecret {owner}",
                    resource.target_name()
                ))),
                None => Ok(Copied::Conflict(format!(
                    "Secret {} exists and is not managed by pullsecret-injector",
                    resource.target_name()
                ))),
            }
        }
        Err(error) => Err(Failed::of("create")(error)),
    }
}

/// Brings a copy in line with the source in place (same object, same UID); when the source's
/// type changed, which the API server refuses in place, replaces it: delete exactly this
/// object, then create.
pub(super) async fn update_copy(
    context: &Context,
    resource: &ClusterPullSecret,
    source: &Secret,
    mut copy: Secret,
) -> Result<(), Failed> {
    let namespace = copy.namespace().unwrap_or_default();
    let desired = desired_copy(resource, source, &namespace);
    if copy.type_ != desired.type_ {
        delete_copy(context, &copy).await?;
        tracing::info!(cluster_pull_secret = %resource.name_any(), namespace, secret = %copy.name_any(), "source type changed: replacing the copy");
        return match create_copy(context, resource, source, &namespace).await? {
            Copied::Served => Ok(()),
            // Someone else's Secret took the name in between.
            Copied::Conflict(_) => Err(Failed {
                action: "replace",
                failure: CopyFailure::Conflict,
            }),
        };
    }
    let labels = copy.metadata.labels.get_or_insert_with(BTreeMap::new);
    let annotations = copy.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let metadata_current = desired
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && desired
            .metadata
            .annotations
            .iter()
            .flatten()
            .all(|(k, v)| annotations.get(k) == Some(v));
    if metadata_current && copy.data == desired.data {
        return Ok(());
    }
    labels.extend(desired.metadata.labels.unwrap_or_default());
    annotations.extend(desired.metadata.annotations.unwrap_or_default());
    copy.data = desired.data;
    copy.string_data = None;
    let api: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    context.limiter.acquire().await;
    // Carries the resourceVersion listed: a Secret changed since is not overwritten (409).
    api.replace(&copy.name_any(), &params, &copy)
        .await
        .map_err(Failed::of("update"))?;
    context.metrics.observe_write("update");
    tracing::info!(cluster_pull_secret = %resource.name_any(), namespace, secret = %copy.name_any(), "copy updated in place");
    Ok(())
}

pub(super) async fn delete_copy(context: &Context, copy: &Secret) -> Result<(), Failed> {
    let namespace = copy.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    // Only the very object listed: never a Secret someone created since under that name.
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: copy.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    context.limiter.acquire().await;
    match api.delete(&copy.name_any(), &params).await {
        Ok(_) => {
            context.metrics.observe_write("delete");
            tracing::info!(namespace, secret = %copy.name_any(), "copy deleted");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.is_not_found() || status.is_conflict() => Ok(()),
        Err(error) => Err(Failed::of("delete")(error)),
    }
}
