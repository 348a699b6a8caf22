//! `QuotaRequest`: an agency asks its parent for more capacity.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::quota::ResourceAmounts;

/// An agency asks for a new quota. An owner of the agency's parent (or a platform
/// admin) decides by setting `spec.decision`; the platform records who decided and
/// when, and an approved request becomes the agency's quota if the parent has room.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "govbroker.io",
    version = "v1alpha1",
    kind = "QuotaRequest",
    plural = "quotarequests",
    shortname = "qr",
    category = "govbroker",
    status = "QuotaRequestStatus",
    printcolumn = r#"{"name":"Agency","type":"string","jsonPath":".spec.agency"}"#,
    printcolumn = r#"{"name":"CPU","type":"string","description":"CPU quota asked for","jsonPath":".spec.quota.cpu"}"#,
    printcolumn = r#"{"name":"Memory","type":"string","description":"Memory quota asked for","jsonPath":".spec.quota.memory"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Decided By","type":"string","jsonPath":".status.decidedBy"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.agency == oldSelf.agency && self.quota == oldSelf.quota && self.justification == oldSelf.justification").message("agency, quota and justification of a QuotaRequest cannot change: create a new request"),
    validation = Rule::new("!has(oldSelf.decision) || (has(self.decision) && self.decision.outcome == oldSelf.decision.outcome && self.decision.reason == oldSelf.decision.reason)").message("a decision is final: create a new QuotaRequest to ask again"),
)]
pub struct QuotaRequestSpec {
    /// Name of the Agency whose quota should change.
    #[schemars(length(min = 1, max = 63))]
    pub agency: String,

    /// The quota the agency asks to hold once approved. Only the resources named here
    /// change; the others keep their current amount.
    pub quota: ResourceAmounts,

    /// Why the agency needs it (shown to the people who decide).
    #[schemars(length(min = 1, max = 2000))]
    pub justification: String,

    /// The decision, set by an owner of the agency's parent or a platform admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<QuotaDecision>,
}

/// A decision on a quota request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.outcome == 'Approved' || size(self.reason) > 0").message("say why a request is rejected in spec.decision.reason"),
)]
pub struct QuotaDecision {
    /// Approved or Rejected.
    pub outcome: DecisionOutcome,
    /// Why; required when rejecting.
    #[serde(default)]
    #[schemars(length(max = 2000))]
    pub reason: String,
    /// Who decided. Set by the platform from the authenticated request; any value a
    /// client sends is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When the decision was made. Set by the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Time>,
}

/// Outcome of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DecisionOutcome {
    /// The agency gets the quota it asked for.
    Approved,
    /// The agency's quota stays as it is.
    Rejected,
}

/// Where a quota request stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaRequestStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Approved (and applied to the agency), Rejected, or Failed (approved but
    /// could not be applied, see message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<QuotaRequestPhase>,
    /// Who decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Time>,
    /// What happened, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions of the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Phase of a quota request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum QuotaRequestPhase {
    /// Waiting for a decision.
    Pending,
    /// Approved and applied to the agency's quota.
    Approved,
    /// Rejected.
    Rejected,
    /// Approved, but it could not be applied (e.g. the parent no longer has room).
    Failed,
}
