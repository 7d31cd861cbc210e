//! What the admission decision reads: the custom resources ([`crd`]) and the immutable
//! [`snapshot::ClusterState`] with the [`snapshot::StateBuilder`] that feeds it.
//! May use `kubelet` (and `text`).

pub mod crd;
pub mod snapshot;
