//! Shared by the integration tests that need it; each uses only part of it.
#![allow(dead_code)]

pub mod apiserver;
pub mod ecr;
pub mod plugins;
