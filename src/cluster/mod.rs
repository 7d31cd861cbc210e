//! Where snapshots come from: live watches of the cluster ([`watch`]), in the namespaces the
//! injector serves ([`scope`]), one read of a namespace of the live cluster for `explain`
//! ([`live`]), and the state files of the offline commands ([`statefile`]).
//! May use `telemetry`, `admission`, `state` and `kubelet` (and `text`).

pub mod live;
pub mod scope;
pub mod statefile;
pub mod watch;
