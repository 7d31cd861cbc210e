//! The pure admission, no I/O: the Pod fields it reads ([`pod`]), the decision ([`decision`])
//! and the `admission.k8s.io/v1` AdmissionReview envelope around it ([`review`]).
//! May use `state` and `kubelet` (and `text`).

pub mod decision;
pub mod pod;
pub mod review;
