//! The offline commands: `review`, `apply` and `explain` over state files ([`commands`],
//! [`apply`], [`explain`]), `explain pod/NAME` against the live cluster ([`pod_explain`]), and the
//! development certificates of `certs` ([`certs`]), and the pull `audit` of the live cluster
//! ([`audit`]).
//! May use `cluster` and the layers below it; not `controller`.

pub mod apply;
pub mod audit;
pub mod certs;
pub mod commands;
pub mod explain;
pub mod pod_explain;
