//! govbroker's ledger: its own etcd, separate from the cluster's.
//!
//! It holds the audit trail of the provisioning API (see `docs/audit.md`) and metering
//! usage per agency and billing day ([`usage`], see `docs/billing.md`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), govbroker_ledger::LedgerError> {
//! use govbroker_ledger::{AuditEntry, AuditLog, AuditQuery, Actor, Outcome, Target, digest};
//!
//! let log = AuditLog::connect(&["http://127.0.0.1:12381".into()], "/govbroker").await?;
//! let record = log
//!     .append(AuditEntry {
//!         time: jiff::Timestamp::now(),
//!         actor: Actor { user: "alice".into(), groups: vec!["finance".into()] },
//!         method: "govbroker.v1.Agencies/UpdateAgency".into(),
//!         target: Target { kind: "Agency".into(), name: "so-tai-chinh".into(), agency: Some("so-tai-chinh".into()) },
//!         request_digest: digest(b"<request bytes>"),
//!         outcome: Outcome::ok(),
//!     })
//!     .await?;
//! let page = log
//!     .list(&AuditQuery { agency: Some("so-tai-chinh".into()), ..AuditQuery::default() })
//!     .await?;
//! assert!(page.records.iter().any(|r| r.seq == record.seq));
//! # Ok(()) }
//! ```

pub mod audit;
pub mod usage;

pub use audit::chain::{
    Actor, AuditEntry, AuditRecord, ChainBreak, ChainHead, ChainSummary, ChainVerifier,
    GENESIS_PREV_HASH, Outcome, Target, digest, is_digest, verify_chain,
};
pub use audit::error::{LedgerError, TransportError};
pub use audit::store::{
    AuditLog, AuditPage, AuditQuery, DEFAULT_PREFIX, LedgerOptions, MAX_PAGE, MAX_RECORD_BYTES,
    MAX_SCAN,
};
