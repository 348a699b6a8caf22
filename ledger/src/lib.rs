//! govbroker's ledger: its own etcd, separate from the cluster's.
//!
//! Today it holds the audit trail of the provisioning API; metering usage joins it later.
