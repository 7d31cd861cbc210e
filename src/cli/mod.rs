//! The commands besides `serve`: `review`, `apply` and `explain` over state files
//! ([`commands`], [`apply`], [`explain`]), `explain pod/NAME` against the live cluster
//! ([`pod_explain`]), the development certificates of `certs` ([`certs`]), the pull `audit` of
//! the live cluster ([`audit`]), and the one-shot writes the Helm chart's hooks run
//! ([`chart_hooks`]).
//! May use `cluster` and the layers below it; not `controller`.

pub mod apply;
pub mod audit;
pub mod certs;
pub mod chart_hooks;
pub mod commands;
pub mod explain;
pub mod pod_explain;
