//! The ClusterPullSecret controller ([`cluster_pull_secret`]), which writes Secret copies, the
//! Lease election ([`leader`]) that lets one replica write, and the one-shot writes the Helm
//! chart's hooks run ([`chart_hooks`]).
//! May use `cluster` and the layers below it; not `cli`.

pub mod chart_hooks;
pub mod cluster_pull_secret;
pub mod leader;
