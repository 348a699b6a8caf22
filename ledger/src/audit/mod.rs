//! The provisioning API's audit trail: every mutating call, approval and denied attempt,
//! numbered, hash-chained and stored in the ledger etcd.
//!
//! [`chain`] is the pure part (data model, hash rule, verification) that `govctl` uses on
//! records fetched through the API; [`store`] keeps the chain in etcd.

pub mod chain;
pub mod error;
pub mod store;
