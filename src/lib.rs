//! pullsecret-injector: a mutating admission webhook that appends to each Pod the
//! `imagePullSecrets` the kubelet would actually use for its images.
//!
//! Data flows one way: cluster state ([`watch`] or [`statefile`]) → immutable snapshot
//! ([`state`]) → pure decision ([`decision`], built on [`reference`], [`dockerconfig`] and
//! [`keyring`]) → response ([`admission`]) → HTTP ([`server`]) or the offline commands ([`cli`]).
//! The custom resources ([`crd`]) feed the same snapshot; the ClusterPullSecret
//! [`controller`] writes copies on the replica the [`leader`] election picks.

pub mod admission;
pub mod cli;
pub mod cluster;
pub mod controller;
pub mod kubelet;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod text;
