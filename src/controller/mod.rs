pub mod cluster_pull_secret;
pub mod leader;
