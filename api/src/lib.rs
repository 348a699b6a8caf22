//! The govbroker provisioning API.
//!
//! This crate will hold the API that lets agency IT teams and finance staff work with
//! govbroker without kubectl: a tonic gRPC service and its HTTP/JSON face, the protos,
//! authentication (TokenReview, then impersonation or SubjectAccessReview so that
//! Kubernetes RBAC decides who may do what), the audit trail, and the billing views
//! and exports.
//!
//! It arrives in a later task; for now the crate only reserves its place in the
//! workspace.
#![forbid(unsafe_code)]
