//! The kubelet's rules, reproduced exactly: image references ([`mod@reference`]),
//! registry-credential Secrets ([`dockerconfig`]) and the credential keyring ([`keyring`]).
//! The bottom layer: uses nothing else of the crate but [`crate::text`].

pub mod dockerconfig;
pub mod keyring;
pub mod reference;
