//! pullsecret-injector: a mutating admission webhook that appends to each Pod the
//! `imagePullSecrets` the kubelet would actually use for its images.
//!
//! Data flows one way: cluster state ([`watch`] or [`statefile`]) → immutable snapshot
//! ([`state`]) → pure decision ([`decision`], built on [`reference`], [`dockerconfig`] and
//! [`keyring`]) → response ([`admission`]) → HTTP ([`server`]) or the offline commands ([`cli`]).

pub mod admission;
pub mod certs;
pub mod cli;
pub mod decision;
pub mod dockerconfig;
pub mod explain;
pub mod keyring;
pub mod pod;
pub mod reference;
pub mod server;
pub mod state;
pub mod statefile;
pub mod telemetry;
pub mod text;
pub mod watch;
