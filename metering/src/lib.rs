//! The metering collector of govbroker.
//!
//! It watches Pods, PersistentVolumeClaims and DataServiceClaims in agency namespaces,
//! integrates what each holds over time ([`govbroker_domain::metering`]), attributes it
//! to agency, environment, namespace and workload (the owner chain Pod → ReplicaSet →
//! Deployment → Workload), and writes per-agency, per-day usage and checkpoints to the
//! ledger etcd ([`govbroker_ledger::usage`]). It is a binary of its own,
//! `govbroker-metering`, so that it can be scaled, fenced and restarted independently of
//! the operator's controllers; `docs/billing.md` describes the model.
//!
//! - [`objects`]: what each object holds and since when (pure).
//! - [`collector`]: the watch-integrate-checkpoint loop.
//! - [`costs`]: month-to-date cost and budgets in `Agency.status.cost`, budget Events.
//! - [`metrics`]: its Prometheus metrics.
#![forbid(unsafe_code)]

pub mod collector;
pub mod costs;
pub mod metrics;
pub mod objects;

pub use collector::{CollectorConfig, CollectorError, run};
pub use metrics::Metrics;
