//! What the Lease holder writes: the ClusterPullSecret controller ([`cluster_pull_secret`]),
//! which copies Secrets (minting the source first with a kubelet credential provider plugin
//! when asked: [`credential_provider`], [`minting`]), the recovery of pods stuck on a pull ([`pod_recovery`]), and the Lease
//! election ([`leader`]) that lets one replica write, the sweep of copies whose resource went
//! without its finalizer ([`orphans`]), the pull audit on a schedule ([`audit`]); and the one-shot writes the Helm chart's hooks run
//! ([`chart_hooks`]).
//! May use `cluster` and the layers below it; not `cli`.

pub mod audit;
pub mod backoff;
pub mod chart_hooks;
pub mod cluster_pull_secret;
pub mod credential_provider;
pub mod leader;
pub mod minting;
pub mod orphans;
pub mod pod_recovery;
