//! QuotaRequests: filed and decided as the caller (the webhook checks who may decide
//! and whether the parent has room); listed from the cache per agency, guarded by the
//! virtual subresource `agencies/quotarequests`.

use std::collections::BTreeMap;
use std::sync::Arc;

use govbroker_crds::{QuotaRequest, QuotaRequestSpec};
use govbroker_domain::isolation::virtual_subresource;
use kube::api::{ObjectMeta, Patch};
use kube::{Api as KubeApi, ResourceExt as _};
use serde_json::json;

use super::{Api, Page, create_params, patch_params};
use crate::auth::{Caller, Permission};
use crate::convert;
use crate::error::ApiError;
use crate::proto;
use crate::validate;

fn what(name: &str) -> String {
    format!("quota request \"{name}\"")
}

fn read_permission(agency: &str) -> Permission {
    Permission::on("get", "agencies", agency).with_subresource(virtual_subresource::QUOTA_REQUESTS)
}

/// Sort key of a request in lists: newest first, then by name.
fn sort_key(qr: &QuotaRequest) -> String {
    let created = qr
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or_default();
    // Newest first: order by the complement of the creation time.
    format!("{:020}/{}", i64::MAX - created, qr.name_any())
}

impl Api {
    /// CreateQuotaRequest.
    pub async fn create_quota_request(
        &self,
        caller: Caller,
        request: proto::CreateQuotaRequestRequest,
    ) -> Result<proto::QuotaRequest, ApiError> {
        validate::agency_name("agency", &request.agency)?;
        validate::amounts("quota", request.quota.as_ref(), true)?;
        validate::text(
            "justification",
            &request.justification,
            validate::MAX_TEXT,
            true,
        )?;
        let qr = QuotaRequest {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", request.agency)),
                ..Default::default()
            },
            spec: QuotaRequestSpec {
                agency: request.agency.clone(),
                quota: convert::amounts_from_proto(request.quota.as_ref()),
                justification: request.justification.trim().to_owned(),
                decision: None,
            },
            status: None,
        };
        let api = KubeApi::<QuotaRequest>::all(self.identity.client_for(&caller)?);
        let params = create_params();
        let created = api.create(&params, &qr).await.map_err(|e| {
            ApiError::from_kube(
                e,
                &format!("a quota request for agency \"{}\"", request.agency),
            )
        })?;
        Ok(convert::quota_request_to_proto(&created))
    }

    /// ListQuotaRequests.
    pub async fn list_quota_requests(
        &self,
        caller: Caller,
        request: proto::ListQuotaRequestsRequest,
    ) -> Result<proto::ListQuotaRequestsResponse, ApiError> {
        let page_size = validate::page_size("page_size", request.page_size)?;
        let after = validate::cursor("page_token", &request.page_token)?;
        if !request.agency.is_empty() {
            validate::agency_name("agency", &request.agency)?;
            self.identity
                .require(&caller, &read_permission(&request.agency))
                .await?;
        }
        if !matches!(
            request.phase.as_str(),
            "" | "Pending" | "Approved" | "Rejected" | "Failed"
        ) {
            return Err(ApiError::invalid(
                "phase",
                format!(
                    "{:?} is not a phase: use Pending, Approved, Rejected or Failed",
                    request.phase
                ),
            ));
        }
        let mut candidates: Vec<(String, Arc<QuotaRequest>)> = self
            .quota_requests
            .state()
            .into_iter()
            .filter(|qr| request.agency.is_empty() || qr.spec.agency == request.agency)
            .map(|qr| (sort_key(&qr), qr))
            .filter(|(key, _)| after.as_ref().is_none_or(|after| key > after))
            .collect();
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
        let mut allowed = BTreeMap::new();
        let mut page = Page::new(page_size);
        for (key, qr) in candidates {
            let message = convert::quota_request_to_proto(&qr);
            if !request.phase.is_empty() && message.phase != request.phase {
                continue;
            }
            if !page.has_room() {
                break;
            }
            let agency = &qr.spec.agency;
            if self
                .can_once(&caller, &mut allowed, agency, || read_permission(agency))
                .await?
            {
                page.push(key, message);
            }
        }
        let (quota_requests, next_page_token) = page.finish();
        Ok(proto::ListQuotaRequestsResponse {
            quota_requests,
            next_page_token,
        })
    }

    /// ApproveQuotaRequest and RejectQuotaRequest.
    pub async fn decide_quota_request(
        &self,
        caller: Caller,
        request: proto::DecideQuotaRequestRequest,
        outcome: govbroker_crds::DecisionOutcome,
    ) -> Result<proto::QuotaRequest, ApiError> {
        validate::slug("name", &request.name, 253)?;
        validate::text("reason", &request.reason, validate::MAX_TEXT, true)?;
        let qr = self
            .quota_requests
            .get(&kube::runtime::reflector::ObjectRef::new(&request.name));
        // Who may read the agency's requests may learn whether one exists.
        let Some(qr) = qr else {
            return Err(ApiError::NotFound(format!(
                "{} does not exist",
                what(&request.name)
            )));
        };
        self.identity
            .require(&caller, &read_permission(&qr.spec.agency))
            .await?;
        if let Some(decision) = &qr.spec.decision {
            return Err(ApiError::FailedPrecondition(format!(
                "{} was already {:?} by {}: file a new request to change the decision",
                what(&request.name),
                decision.outcome,
                decision.decided_by.as_deref().unwrap_or("someone")
            )));
        }
        let patch =
            json!({"spec": {"decision": {"outcome": outcome, "reason": request.reason.trim()}}});
        let api = KubeApi::<QuotaRequest>::all(self.identity.client_for(&caller)?);
        let params = patch_params();
        let decided = api
            .patch(&request.name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| ApiError::from_kube(e, &what(&request.name)))?;
        Ok(convert::quota_request_to_proto(&decided))
    }
}
