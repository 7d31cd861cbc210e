//! pullsecret-injector: a mutating admission webhook that appends to each Pod the
//! `imagePullSecrets` the kubelet would actually use for its images.
//!
//! One folder per layer, bottom to top; a module uses only layers below its own
//! (`tests/layers.rs` checks it):
//!
//! - [`text`]: clipping and quoting user text in messages, usable by every layer;
//! - [`kubelet`]: the kubelet's rules: image references, registry-credential Secrets, keyring;
//! - [`state`]: the custom resources and the immutable cluster-state snapshot;
//! - [`admission`]: the pure admission: pod fields, decision, AdmissionReview envelope;
//! - [`telemetry`]: logs and Prometheus metrics;
//! - [`cluster`]: where snapshots come from: live watches or state files;
//! - [`controller`] and [`cli`] (side by side): the ClusterPullSecret controller with its
//!   Lease election and the Helm chart's hooks, and the offline commands;
//! - [`server`]: `serve`, TLS, HTTP, probes, shutdown.
//!
//! Data flows one way: cluster state ([`cluster::watch`] or [`cluster::statefile`]) → immutable
//! snapshot ([`state::snapshot`]) → pure decision ([`admission::decision`], built on
//! [`kubelet::reference`], [`kubelet::dockerconfig`] and [`kubelet::keyring`]) → response
//! ([`admission::review`]) → HTTP ([`server`]) or the offline commands ([`cli`]).
//! The custom resources ([`state::crd`]) feed the same snapshot; the ClusterPullSecret
//! controller ([`controller::cluster_pull_secret`]) writes copies on the replica the
//! [`controller::leader`] election picks.

pub mod admission;
pub mod cli;
pub mod cluster;
pub mod controller;
pub mod kubelet;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod text;
