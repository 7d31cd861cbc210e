pub mod dockerconfig;
pub mod keyring;
pub mod reference;
