//! The pure admission, no I/O: the Pod fields it reads ([`pod`]), the decision ([`decision`]),
//! the `admission.k8s.io/v1` AdmissionReview envelope around it ([`review`]), and the same
//! decision applied to an existing pod stuck on a pull ([`recovery`]), and the pull audit of
//! workloads ([`audit`]).
//! May use `state` and `kubelet` (and `text`).

pub mod audit;
pub mod decision;
#[cfg(test)]
mod fixtures;
pub mod pod;
pub mod recovery;
pub mod review;
