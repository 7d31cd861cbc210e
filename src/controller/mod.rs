//! What the Lease holder writes: the ClusterPullSecret controller ([`cluster_pull_secret`]),
//! which copies Secrets (minting the source first with a kubelet credential provider plugin
//! when asked: [`credential_provider`], [`minting`]), the recovery of pods stuck on a pull
//! ([`pod_recovery`]), the Lease election ([`leader`]) that lets one replica write, the sweep of
//! copies whose resource went without its finalizer ([`orphans`]), the pull audit on a schedule
//! ([`audit`]), and the retry timing they share ([`backoff`]); the controller's client-side
//! rate limit ([`rate_limit`]).
//! May use `cluster` and the layers below it; not `cli`.

pub mod audit;
pub mod backoff;
pub mod cluster_pull_secret;
pub mod credential_provider;
pub mod leader;
pub mod minting;
pub mod orphans;
pub mod pod_recovery;
pub mod rate_limit;
