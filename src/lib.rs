//! pullsecret-injector: a mutating admission webhook that appends to each Pod the
//! `imagePullSecrets` the kubelet would actually use for its images.
//!
//! Data flows one way: cluster state ([`watch`] or [`statefile`]) → immutable snapshot
//! ([`state`]) → pure decision ([`decision`], built on [`reference`], [`dockerconfig`] and
//! [`keyring`]) → response ([`admission`]) → HTTP ([`server`]) or the offline commands ([`cli`]).
//! The custom resources ([`crd`]) feed the same snapshot; the ClusterPullSecret
//! [`controller`] writes copies on the replica the [`leader`] election picks.

pub mod admission;
pub mod certs;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod decision;
pub mod dockerconfig;
pub mod explain;
pub mod keyring;
pub mod leader;
pub mod pod;
pub mod reference;
pub mod server;
pub mod state;
pub mod statefile;
pub mod telemetry;
pub mod text;
pub mod watch;
