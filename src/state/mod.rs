pub mod crd;
pub mod snapshot;
