//! Errors of the etcd-backed audit log.

use std::time::Duration;

/// Why the ledger's etcd could not be reached or did not answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The etcd client failed (connection refused, reset, gRPC unavailable, ...).
    #[error(transparent)]
    Etcd(#[from] etcd_client::Error),
    /// No answer within the request timeout (etcd hung, overloaded or black-holed).
    #[error("no answer within {after:?}")]
    TimedOut {
        /// The timeout that expired.
        after: Duration,
    },
}

/// What went wrong in an audit-log operation.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// etcd is down, unreachable or not answering in time. Safe to retry the operation:
    /// an append either committed completely or not at all (a retry after a timeout may
    /// record the event twice, which the chain tolerates).
    #[error(
        "the ledger etcd at {endpoints} is unavailable during {operation}: {source}; check that \
         it is running and reachable (locally: `cargo xtask cluster up`), then retry"
    )]
    Unavailable {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// What the log was doing.
        operation: &'static str,
        /// The underlying failure.
        #[source]
        source: TransportError,
    },
    /// etcd answered but refused the request (e.g. too large, permission denied).
    #[error("the ledger etcd at {endpoints} refused {operation}: {source}")]
    Rejected {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// What the log was doing.
        operation: &'static str,
        /// etcd's answer.
        #[source]
        source: etcd_client::Error,
    },
    /// Other writers kept appending first; every retry lost the race.
    #[error(
        "could not append to the audit log after {attempts} attempts: other writers appended \
         first every time; retry later (if this persists, the ledger is overloaded)"
    )]
    Conflict {
        /// Attempts made.
        attempts: u32,
    },
    /// A stored key does not hold what the layout says it must.
    #[error(
        "audit log key {key} is corrupt: {reason}; run `govctl audit verify` and restore the \
         key from an export or backup"
    )]
    Corrupt {
        /// The offending etcd key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The entry cannot be recorded as given (a bug in the caller).
    #[error("invalid audit entry: {0}")]
    InvalidEntry(String),
    /// The query cannot be answered as given.
    #[error("invalid audit query: {0}")]
    InvalidQuery(String),
    /// The arguments to connect are unusable (no endpoints, bad URL, bad prefix).
    #[error("cannot connect to the ledger etcd: {0}")]
    InvalidConfig(String),
}

impl LedgerError {
    /// Classifies an etcd client error: transport-level failures mean "unavailable, retry",
    /// anything else is etcd refusing this particular request.
    pub(crate) fn from_etcd(
        endpoints: &str,
        operation: &'static str,
        err: etcd_client::Error,
    ) -> Self {
        use etcd_client::Error as E;
        let transport = match &err {
            E::TransportError(_) | E::IoError(_) | E::EndpointError(_) => true,
            E::GRpcStatus(status) => TRANSIENT_GRPC_CODES.contains(&i32::from(status.code())),
            _ => false,
        };
        if transport {
            Self::Unavailable {
                endpoints: endpoints.to_owned(),
                operation,
                source: TransportError::Etcd(err),
            }
        } else {
            Self::Rejected {
                endpoints: endpoints.to_owned(),
                operation,
                source: err,
            }
        }
    }

    /// True when retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Conflict { .. })
    }
}

/// gRPC status codes (fixed by the gRPC specification) that mean the server could not
/// serve the request right now rather than that it refused it: CANCELLED (1), UNKNOWN (2,
/// what a reset connection surfaces as), DEADLINE_EXCEEDED (4), ABORTED (10) and
/// UNAVAILABLE (14). Numbers, because etcd-client does not re-export tonic's `Code` and
/// the ledger does not depend on tonic itself.
const TRANSIENT_GRPC_CODES: [i32; 5] = [1, 2, 4, 10, 14];
