//! The one-shot jobs the Helm chart runs as hooks, with the injector's own image (it has no
//! shell and no kubectl):
//!
//! - `enable-fail-policy` (post-install, post-upgrade, post-rollback): waits until the
//!   Deployment has rolled out with every replica available, then sets `failurePolicy: Fail`
//!   on the webhook configuration the chart registered with `Ignore`. Until then a missing or
//!   unready injector cannot refuse pods, so an install can never stop pod creation.
//! - `delete-cluster-pull-secrets` (pre-delete, with the controller): deletes the release's
//!   ClusterPullSecrets and waits until they are gone, while the controller still runs and
//!   removes their copies and finalizer; otherwise they would outlive it in `Terminating`.
//!   Then it warns about every other ClusterPullSecret the controller manages (made with
//!   `kubectl`): they outlive the uninstall with their finalizer, a Ready condition nobody
//!   updates and their copies. Each gets a Warning Event saying so and how to remove it.
//!
//! Each prints what it did on stdout and fails with one line saying what is missing.

use std::fmt;
use std::time::Duration;

use clap::{Args, Subcommand};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::wait::await_condition;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::time::Instant;

use crate::state::crd::ClusterPullSecret;

const FIELD_MANAGER: &str = "pullsecret-injector-hook";
/// Pause before retrying a watch that failed.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Args)]
pub struct HookArgs {
    #[command(subcommand)]
    pub hook: Hook,
    /// Give up after this many seconds (keep it below helm's --timeout, 5 minutes by default).
    #[arg(
        long,
        global = true,
        default_value_t = 210,
        env = "PULLSECRET_INJECTOR_HOOK_TIMEOUT_SECONDS"
    )]
    pub timeout_seconds: u64,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Hook {
    /// Wait until the Deployment has rolled out with every replica available, then set
    /// failurePolicy Fail on every webhook of the MutatingWebhookConfiguration.
    EnableFailPolicy(EnableFailPolicyArgs),
    /// Delete these ClusterPullSecrets and wait until they are gone (the controller removes
    /// their copies, then their finalizer); warn about the others the controller manages.
    DeleteClusterPullSecrets(DeleteClusterPullSecretsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct EnableFailPolicyArgs {
    /// Namespace of the Deployment.
    #[arg(long, env = "PULLSECRET_INJECTOR_HOOK_NAMESPACE")]
    pub namespace: String,
    /// The injector's Deployment.
    #[arg(long, env = "PULLSECRET_INJECTOR_HOOK_DEPLOYMENT")]
    pub deployment: String,
    /// The MutatingWebhookConfiguration to switch to failurePolicy Fail.
    #[arg(long, env = "PULLSECRET_INJECTOR_HOOK_WEBHOOK_CONFIGURATION")]
    pub webhook_configuration: String,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteClusterPullSecretsArgs {
    /// Names of the release's own ClusterPullSecrets (none: only the warning about others).
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    NotReady(String),
}

pub async fn run(args: &HookArgs) -> Result<(), HookError> {
    let client = Client::try_default().await?;
    let timeout = Duration::from_secs(args.timeout_seconds);
    match &args.hook {
        Hook::EnableFailPolicy(hook) => enable_fail_policy(client, hook, timeout).await,
        Hook::DeleteClusterPullSecrets(hook) => {
            delete_cluster_pull_secrets(client, &hook.names, timeout).await
        }
    }
}

/// How far a Deployment's rollout is, as `kubectl rollout status` judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    pub wanted: i32,
    pub updated: i32,
    pub total: i32,
    pub available: i32,
    /// The controller has seen the Deployment's latest spec.
    pub observed: bool,
}

impl Rollout {
    pub fn of(deployment: &Deployment) -> Rollout {
        let wanted = deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.replicas)
            .unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        Rollout {
            wanted,
            updated: status.updated_replicas.unwrap_or(0),
            total: status.replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            observed: status.observed_generation >= deployment.metadata.generation,
        }
    }

    /// Every replica runs the current spec and is available, and no old one is left.
    pub fn complete(&self) -> bool {
        self.observed
            && self.wanted > 0
            && self.updated >= self.wanted
            && self.total <= self.updated
            && self.available >= self.updated
    }
}

impl fmt::Display for Rollout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} replicas available, {} updated, {} in all",
            self.available, self.wanted, self.updated, self.total
        )
    }
}

/// Waits until `condition` holds for the object `name` (absent: `None`), at most until
/// `deadline`. Watch failures (RBAC that has not reached the authorizer yet, an apiserver
/// restart) are retried; `false` means the deadline passed.
async fn wait_until<K>(
    api: &Api<K>,
    name: &str,
    condition: impl Fn(Option<&K>) -> bool + Clone + Send + 'static,
    deadline: Instant,
) -> bool
where
    K: Clone + fmt::Debug + Send + DeserializeOwned + Resource + 'static,
{
    loop {
        match tokio::time::timeout_at(
            deadline,
            await_condition(api.clone(), name, condition.clone()),
        )
        .await
        {
            Ok(Ok(_)) => return true,
            Err(_) => return false,
            Ok(Err(error)) => {
                eprintln!("watching {name}: {error}; retrying");
                if tokio::time::timeout_at(deadline, tokio::time::sleep(RETRY_PAUSE))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        }
    }
}

async fn enable_fail_policy(
    client: Client,
    hook: &EnableFailPolicyArgs,
    timeout: Duration,
) -> Result<(), HookError> {
    let deadline = Instant::now() + timeout;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &hook.namespace);
    let name = format!("{}/{}", hook.namespace, hook.deployment);
    println!("waiting for Deployment {name} to roll out");
    let rolled_out = wait_until(
        &deployments,
        &hook.deployment,
        |d: Option<&Deployment>| {
            d.is_some_and(|d| Rollout::of(d).complete() || Rollout::of(d).wanted == 0)
        },
        deadline,
    )
    .await;
    let rollout = deployments
        .get(&hook.deployment)
        .await
        .map(|d| Rollout::of(&d))?;
    if rollout.wanted == 0 {
        return Err(HookError::NotReady(format!(
            "Deployment {name} has no replicas: with failurePolicy Fail every covered pod would be refused; failurePolicy stays Ignore"
        )));
    }
    if !rolled_out {
        return Err(HookError::NotReady(format!(
            "Deployment {name} did not roll out within {}s ({rollout}); failurePolicy stays Ignore: see `kubectl -n {} describe deployment {}` and its pods",
            timeout.as_secs(),
            hook.namespace,
            hook.deployment
        )));
    }
    println!("Deployment {name} rolled out ({rollout})");

    let configurations: Api<MutatingWebhookConfiguration> = Api::all(client);
    let configuration = configurations.get(&hook.webhook_configuration).await?;
    let webhooks: Vec<serde_json::Value> = configuration
        .webhooks
        .iter()
        .flatten()
        .map(|webhook| json!({ "name": webhook.name, "failurePolicy": "Fail" }))
        .collect();
    if webhooks.is_empty() {
        return Err(HookError::NotReady(format!(
            "MutatingWebhookConfiguration {} has no webhooks",
            configuration.name_any()
        )));
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    configurations
        .patch(
            &hook.webhook_configuration,
            &params,
            &Patch::Strategic(json!({ "webhooks": webhooks })),
        )
        .await?;
    println!(
        "MutatingWebhookConfiguration {}: failurePolicy Fail",
        hook.webhook_configuration
    );
    Ok(())
}

async fn delete_cluster_pull_secrets(
    client: Client,
    names: &[String],
    timeout: Duration,
) -> Result<(), HookError> {
    let deadline = Instant::now() + timeout;
    let api: Api<ClusterPullSecret> = Api::all(client);
    for name in names {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => println!("ClusterPullSecret {name}: deleting"),
            Err(kube::Error::Api(status)) if status.is_not_found() => {
                println!("ClusterPullSecret {name}: already gone");
            }
            Err(error) => return Err(error.into()),
        }
    }
    for name in names {
        if !wait_until(
            &api,
            name,
            |cps: Option<&ClusterPullSecret>| cps.is_none(),
            deadline,
        )
        .await
        {
            let finalizers = api
                .get_opt(name)
                .await?
                .map(|cps| cps.finalizers().join(", "))
                .unwrap_or_default();
            return Err(HookError::NotReady(format!(
                "ClusterPullSecret {name} is still there after {}s (finalizers: {finalizers}); the controller removes its copies and finalizer: is a replica running and holding the Lease? To uninstall without it: helm uninstall --no-hooks, then remove the finalizer (kubectl patch clusterpullsecret {name} --type merge -p '{{\"metadata\":{{\"finalizers\":null}}}}') and delete the copies (label pullsecret-injector.io/cluster-pull-secret={name})",
                timeout.as_secs()
            )));
        }
        println!("ClusterPullSecret {name}: deleted, copies removed");
    }
    // A warning never stops an uninstall.
    if let Err(error) = warn_about_the_others(&api, names).await {
        eprintln!("cannot look for ClusterPullSecrets left behind: {error}");
    }
    Ok(())
}

/// The controller's finalizer: a ClusterPullSecret carrying it has copies the controller
/// would remove.
const COPIES_FINALIZER: &str = "pullsecret-injector.io/copies";

/// What is left of a ClusterPullSecret made outside the chart once the controller is gone,
/// and how to remove it.
pub fn left_behind_message(name: &str, copies: i32) -> String {
    format!(
        "ClusterPullSecret {name} was not made by the chart and outlives the uninstall with its finalizer, a Ready condition nobody updates and its copies in {copies} namespaces. To remove it: kubectl patch clusterpullsecret {name} --type merge -p '{{\"metadata\":{{\"finalizers\":null}}}}'; kubectl delete clusterpullsecret {name}; kubectl delete secret -A -l pullsecret-injector.io/cluster-pull-secret={name} (or delete it before uninstalling, while the controller runs)"
    )
}

/// Prints a warning and records a Warning Event on each ClusterPullSecret the controller
/// manages that the release does not delete.
async fn warn_about_the_others(
    api: &Api<ClusterPullSecret>,
    deleted: &[String],
) -> Result<(), HookError> {
    let recorder = Recorder::new(
        api.clone().into_client(),
        Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: None,
        },
    );
    // Retried briefly: the hook's RBAC is created just before its Job.
    let mut attempts = 0;
    let list = loop {
        match api.list(&ListParams::default()).await {
            Ok(list) => break list,
            Err(error) if attempts < 5 => {
                attempts += 1;
                eprintln!("listing ClusterPullSecrets: {error}; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    for resource in list {
        let name = resource.name_any();
        if deleted.contains(&name) || !resource.finalizers().iter().any(|f| f == COPIES_FINALIZER) {
            continue;
        }
        let copies = resource
            .status
            .as_ref()
            .map_or(0, |status| status.namespace_count);
        let message = left_behind_message(&name, copies);
        println!("warning: {message}");
        let event = Event {
            type_: EventType::Warning,
            reason: "LeftAfterUninstall".to_owned(),
            note: Some(message),
            action: "Uninstall".to_owned(),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, &resource.object_ref(&())).await {
            eprintln!("ClusterPullSecret {name}: cannot record the warning Event: {error}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn deployment(generation: i64, spec: i32, status: DeploymentStatus) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(spec),
                ..DeploymentSpec::default()
            }),
            status: Some(status),
        }
    }

    fn status(observed: i64, updated: i32, total: i32, available: i32) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: Some(observed),
            updated_replicas: Some(updated),
            replicas: Some(total),
            available_replicas: Some(available),
            ..DeploymentStatus::default()
        }
    }

    /// The chart runs the hook without names when it has no clusterPullSecrets of its own.
    #[test]
    fn the_delete_hook_takes_no_names_too() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Command {
            #[command(flatten)]
            hook: HookArgs,
        }
        let parsed = Command::try_parse_from(["hook", "delete-cluster-pull-secrets"])
            .expect("no names is valid");
        assert!(matches!(
            parsed.hook.hook,
            Hook::DeleteClusterPullSecrets(DeleteClusterPullSecretsArgs { ref names }) if names.is_empty()
        ));
    }

    #[test]
    fn the_left_behind_warning_says_what_is_left_and_how_to_remove_it() {
        let message = left_behind_message("corp", 3);
        for part in [
            "ClusterPullSecret corp",
            "copies in 3 namespaces",
            "kubectl patch clusterpullsecret corp --type merge -p '{\"metadata\":{\"finalizers\":null}}'",
            "kubectl delete secret -A -l pullsecret-injector.io/cluster-pull-secret=corp",
        ] {
            assert!(message.contains(part), "{part}: {message}");
        }
    }

    #[test]
    fn a_rollout_is_complete_only_with_every_new_replica_available_and_no_old_one() {
        let cases = [
            (deployment(2, 2, status(2, 2, 2, 2)), true),
            // The controller has not seen the new spec yet.
            (deployment(3, 2, status(2, 2, 2, 2)), false),
            // A new pod is not available yet.
            (deployment(2, 2, status(2, 2, 2, 1)), false),
            // An old pod is still running next to the new ones.
            (deployment(2, 2, status(2, 2, 3, 3)), false),
            // Only one of two replicas replaced.
            (deployment(2, 2, status(2, 1, 2, 2)), false),
            // Nothing to wait for is not a rollout Fail can rely on.
            (deployment(1, 0, status(1, 0, 0, 0)), false),
            // No status at all: just created.
            (
                Deployment {
                    status: None,
                    ..deployment(1, 2, DeploymentStatus::default())
                },
                false,
            ),
        ];
        for (deployment, complete) in cases {
            let rollout = Rollout::of(&deployment);
            assert_eq!(rollout.complete(), complete, "{rollout:?}");
        }
    }
}
