//! Admission of QuotaRequests: only an agency's owners ask for its quota, only the
//! parent's owners (or platform admins) decide, an approval must fit in the parent's
//! room, and the platform stamps who decided and when.

use govbroker_crds::{Agency, DecisionOutcome, QuotaRequest};
use govbroker_domain::quantity::Amounts;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde_json::json;

use futures::future::BoxFuture;

use super::agency::{check_spec, lookup};
use super::{Refusal, WebhookState, is_owner, is_platform_admin, refuse};

/// Admits, refuses or stamps a QuotaRequest create or update.
pub fn admit(
    request: AdmissionRequest<QuotaRequest>,
    state: WebhookState,
) -> BoxFuture<'static, AdmissionResponse> {
    Box::pin(async move { admit_now(&request, &state).await })
}

async fn admit_now(
    request: &AdmissionRequest<QuotaRequest>,
    state: &WebhookState,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let Some(qr) = &request.object else {
        return response;
    };
    let user = request.user_info.username.clone().unwrap_or_default();
    let groups = request.user_info.groups.clone().unwrap_or_default();
    let admin = is_platform_admin(&groups, &state.admin_groups);
    let Some(agency) = lookup(state, &qr.spec.agency).await else {
        return refuse(
            response,
            Refusal::Invalid,
            format!(
                "agency \"{}\" does not exist: spec.agency must name an existing Agency",
                qr.spec.agency
            ),
        );
    };
    if let Err(e) = Amounts::from_spec(&qr.spec.quota, "spec.quota") {
        return refuse(response, Refusal::Invalid, e);
    }

    let old_decision = request
        .old_object
        .as_ref()
        .and_then(|o| o.spec.decision.clone());
    if request.operation == Operation::Create && !admin && !is_owner(&agency, &user, &groups) {
        return refuse(
            response,
            Refusal::Forbidden,
            format!(
                "only owners of agency \"{}\" or platform admins may ask for its quota; {user} is neither",
                qr.spec.agency
            ),
        );
    }
    match (&old_decision, &qr.spec.decision) {
        (None, Some(decision)) => {
            if let Err(message) = may_decide(&agency, state, &user, &groups, admin).await {
                return refuse(response, Refusal::Forbidden, message);
            }
            if decision.outcome == DecisionOutcome::Approved {
                let mut spec = agency.spec.clone();
                spec.quota = merged_quota(&agency, qr);
                if let Err((why, message)) = check_spec(state, &qr.spec.agency, &spec).await {
                    return refuse(
                        response,
                        why,
                        format!("cannot approve: the new quota does not fit.\n{message}"),
                    );
                }
            }
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            let patch = json!([
                {"op": "add", "path": "/spec/decision/decidedBy", "value": user},
                {"op": "add", "path": "/spec/decision/decidedAt", "value": now},
            ]);
            super::patched(response, patch, "stamping the decision")
        }
        (Some(old), Some(new))
            if old.decided_by != new.decided_by || old.decided_at != new.decided_at =>
        {
            refuse(
                response,
                Refusal::Invalid,
                "spec.decision.decidedBy and decidedAt are recorded by the platform and cannot change",
            )
        }
        _ => response,
    }
}

/// Only owners of the requesting agency's parent, or platform admins, decide.
async fn may_decide(
    agency: &Agency,
    state: &WebhookState,
    user: &str,
    groups: &[String],
    admin: bool,
) -> Result<(), String> {
    if admin {
        return Ok(());
    }
    let name = agency.metadata.name.clone().unwrap_or_default();
    let Some(parent_name) = &agency.spec.parent else {
        return Err(format!(
            "agency \"{name}\" has no parent: only platform admins decide on its quota"
        ));
    };
    match lookup(state, parent_name).await {
        Some(parent) if is_owner(&parent, user, groups) => Ok(()),
        _ => Err(format!(
            "only owners of \"{parent_name}\" (the parent of \"{name}\") or platform admins may decide on this request; {user} is neither"
        )),
    }
}

/// The agency's quota with the resources named in the request replaced.
pub fn merged_quota(agency: &Agency, qr: &QuotaRequest) -> govbroker_crds::ResourceAmounts {
    let mut quota = agency.spec.quota.clone();
    for resource in govbroker_crds::QuotaResource::ALL {
        if let Some(value) = qr.spec.quota.get(resource) {
            quota.set(resource, Some(value.clone()));
        }
    }
    for (class, count) in &qr.spec.quota.data_services {
        quota.data_services.insert(class.clone(), *count);
    }
    quota
}
