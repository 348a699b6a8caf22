//! The govbroker provisioning API: agencies, quota requests and the audit trail over
//! tonic gRPC and HTTP/JSON on one port.
//!
//! Callers present a bearer token, checked with a Kubernetes TokenReview; the API then
//! acts as the caller (impersonation) for writes and checks reads served from its
//! watch-fed cache with a SubjectAccessReview, so Kubernetes RBAC decides everything,
//! the same way for kubectl and for the API. Every mutating call and every refusal is
//! appended to a hash-chained audit trail in govbroker's ledger etcd.
//!
//! - [`service`]: the operations, independent of transport;
//! - [`grpc`] and [`http`]: the two faces; [`proto`]: the generated messages;
//! - [`auth`]: identity and authorization; [`validate`] and [`convert`]: the edge.
#![forbid(unsafe_code)]

pub mod auth;
pub mod convert;
pub mod error;
pub mod grpc;
pub mod http;
pub mod proto;
pub mod server;
pub mod service;
pub mod settings;
pub mod validate;

pub use error::ApiError;
pub use settings::Settings;
