//! Where snapshots come from: live watches of the cluster ([`watch`]) and the state files of
//! the offline commands ([`statefile`]).
//! May use `telemetry`, `admission`, `state` and `kubelet` (and `text`).

pub mod statefile;
pub mod watch;
