//! The offline commands: `review`, `apply` and `explain` over state files ([`commands`],
//! [`explain`]), and the development certificates of `certs` ([`certs`]).
//! May use `cluster` and the layers below it; not `controller`.

pub mod certs;
pub mod commands;
pub mod explain;
