//! What the Lease holder writes: the ClusterPullSecret controller ([`cluster_pull_secret`]),
//! which copies Secrets, the recovery of pods stuck on a pull ([`pod_recovery`]), and the Lease
//! election ([`leader`]) that lets one replica write.
//! May use `cluster` and the layers below it; not `cli`.

pub mod cluster_pull_secret;
pub mod leader;
pub mod pod_recovery;
