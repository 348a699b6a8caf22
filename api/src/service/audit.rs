//! Audit: the trail, read per agency (guarded by `agencies/audit` on the agency) or whole
//! (guarded by `agencies/audit` on all agencies: platform admins).

use govbroker_domain::isolation::virtual_subresource;
use govbroker_ledger::{AuditQuery, AuditRecord};

use super::Api;
use crate::auth::{Caller, Permission};
use crate::error::ApiError;
use crate::proto;
use crate::validate;

/// A ledger record as a message.
pub fn record_to_proto(record: &AuditRecord) -> proto::AuditRecord {
    proto::AuditRecord {
        seq: record.seq,
        time: govbroker_ledger::audit::chain::rfc3339_nanos::format(&record.time),
        user: record.actor.user.clone(),
        groups: record.actor.groups.clone(),
        method: record.method.clone(),
        target_kind: record.target.kind.clone(),
        target_name: record.target.name.clone(),
        agency: record.target.agency.clone().unwrap_or_default(),
        request_digest: record.request_digest.clone(),
        outcome: record.outcome.code.clone(),
        message: record.outcome.message.clone(),
        prev_hash: record.prev_hash.clone(),
        hash: record.hash.clone(),
    }
}

impl Api {
    /// ListAuditRecords.
    pub async fn list_audit_records(
        &self,
        caller: Caller,
        request: proto::ListAuditRecordsRequest,
    ) -> Result<proto::ListAuditRecordsResponse, ApiError> {
        let limit = validate::page_size("page_size", request.page_size)?;
        let since = validate::time("since", &request.since)?;
        let until = validate::time("until", &request.until)?;
        let after_seq = validate::cursor("page_token", &request.page_token)?
            .map(|c| {
                c.parse::<u64>()
                    .map_err(|_| ApiError::invalid("page_token", "is not a token this API issued"))
            })
            .transpose()?;
        let permission = if request.agency.is_empty() {
            Permission::all("get", "agencies").with_subresource(virtual_subresource::AUDIT)
        } else {
            validate::agency_name("agency", &request.agency)?;
            Permission::on("get", "agencies", &request.agency)
                .with_subresource(virtual_subresource::AUDIT)
        };
        self.identity.require(&caller, &permission).await?;
        let query = AuditQuery {
            agency: (!request.agency.is_empty()).then(|| request.agency.clone()),
            since,
            until,
            after_seq,
            limit,
        };
        let unreadable = |e: govbroker_ledger::LedgerError| {
            ApiError::unavailable(format!("the audit ledger cannot be read: {e}"))
        };
        // The head first: records appended after it may follow in the page, never
        // precede it.
        let head = self.audit.head().await.map_err(unreadable)?;
        let page = self.audit.list(&query).await.map_err(unreadable)?;
        Ok(proto::ListAuditRecordsResponse {
            records: page.records.iter().map(record_to_proto).collect(),
            next_page_token: page
                .next_after_seq
                .map(|s| validate::page_token(&s.to_string()))
                .unwrap_or_default(),
            head_seq: head.seq,
            head_hash: head.hash,
        })
    }
}
