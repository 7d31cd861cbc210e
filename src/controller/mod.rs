//! The ClusterPullSecret controller ([`cluster_pull_secret`]), which writes Secret copies, and
//! the Lease election ([`leader`]) that lets one replica write.
//! May use `cluster` and the layers below it; not `cli`.

pub mod cluster_pull_secret;
pub mod leader;
