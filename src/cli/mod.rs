pub mod certs;
pub mod commands;
pub mod explain;
