//! `DataShare`: one agency grants another read access to one of its data-service claims.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A consented, audited grant: the owner agency lets a consumer agency read the data of
/// one of its DataServiceClaims until `spec.expiresAt`.
///
/// Anyone allowed to create DataShares may propose one; it takes effect only once an
/// owner of the owner agency sets `spec.approved: true`. The platform's admission webhook
/// then records who approved and when in `spec.approval` (values a client sends there
/// are replaced), and the broker creates a read-only login for the consumer. Setting
/// `spec.revoked: true` ends the grant for good; so does the expiry.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "govbroker.io",
    version = "v1alpha1",
    kind = "DataShare",
    plural = "datashares",
    shortname = "dshare",
    category = "govbroker",
    status = "DataShareStatus",
    doc = "A consented, audited grant of read access to one agency's DataServiceClaim for another agency, until an expiry. Takes effect once the owner agency approves; revocable. Cluster-scoped.",
    printcolumn = r#"{"name":"Owner","type":"string","description":"The agency whose data is shared","jsonPath":".spec.owner.agency"}"#,
    printcolumn = r#"{"name":"Claim","type":"string","description":"The shared DataServiceClaim (in the owner's namespace)","jsonPath":".spec.owner.claim"}"#,
    printcolumn = r#"{"name":"Consumer","type":"string","description":"The agency granted access","jsonPath":".spec.consumer.agency"}"#,
    printcolumn = r#"{"name":"Access","type":"string","jsonPath":".spec.access"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","description":"When the grant ends (RFC 3339)","jsonPath":".spec.expiresAt"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Approved By","type":"string","jsonPath":".spec.approval.approvedBy","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.consumer.agency != self.owner.agency").message("a DataShare grants access to another agency: spec.consumer.agency must differ from spec.owner.agency"),
    validation = Rule::new("self.owner.namespace.startsWith(self.owner.agency + '-')").message("spec.owner.namespace must be one of the owner agency's namespaces, <agency>-<environment> (e.g. so-y-te-ha-noi-prod)"),
    validation = Rule::new("self.owner == oldSelf.owner && self.consumer == oldSelf.consumer && self.access == oldSelf.access").message("owner, consumer and access of a DataShare cannot change: create a new DataShare"),
    validation = Rule::new("!oldSelf.approved || self.approved").message("an approval cannot be withdrawn: set spec.revoked to true to end the share"),
    validation = Rule::new("!oldSelf.approved || self.expiresAt == oldSelf.expiresAt").message("spec.expiresAt cannot change once the share is approved: create a new DataShare for a new period"),
    validation = Rule::new("!oldSelf.revoked || self.revoked").message("a revoked DataShare stays revoked: create a new DataShare to grant access again"),
)]
pub struct DataShareSpec {
    /// The agency whose data is shared, and which of its claims.
    pub owner: ShareOwner,

    /// The agency granted access.
    pub consumer: ShareConsumer,

    /// What the consumer may do with the data. Only `ReadOnly` exists: the consumer gets
    /// a login that can read, never write.
    pub access: ShareAccess,

    /// When the grant ends, as an RFC 3339 date-time, e.g. `2026-12-31T23:59:59+07:00`.
    /// Required: no data is shared forever. Cannot change once approved.
    pub expires_at: Time,

    /// Why the consumer needs the data (the legal basis or the public service it serves),
    /// shown to the owners who approve and kept in the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub purpose: Option<String>,

    /// Consent of the owner side: an owner of the owner agency sets it to true. Until
    /// then the share is Pending and grants nothing. Cannot be set back to false; revoke
    /// instead.
    #[serde(default)]
    pub approved: bool,

    /// Who approved and when. Stamped by the platform's admission webhook from the
    /// authenticated request that set `approved: true`; a value a client sends is
    /// replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ShareApproval>,

    /// Set to true by an owner of either agency to end the share before it expires. Final:
    /// a revoked share cannot be revived.
    #[serde(default)]
    pub revoked: bool,
}

/// The owner side of a share: the agency and the claim whose data is shared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
pub struct ShareOwner {
    /// Name (slug) of the owner Agency, e.g. `so-y-te-ha-noi`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub agency: String,
    /// The owner agency's namespace holding the claim, e.g. `so-y-te-ha-noi-prod`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
    /// Name of the DataServiceClaim whose data is shared, e.g. `ho-so-benh-an`.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub claim: String,
}

/// The consumer side of a share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
pub struct ShareConsumer {
    /// Name (slug) of the Agency granted access, e.g. `bhxh-ha-noi`. Its owners receive
    /// the read-only binding Secret in its namespaces.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub agency: String,
}

/// What a consumer may do with shared data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ShareAccess {
    /// Read the data, never change it.
    ReadOnly,
}

/// Who approved a share and when, recorded by the platform.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareApproval {
    /// The authenticated user who set `approved: true`, e.g.
    /// `tran.thi.b@soyte.hanoi.gov.vn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// When the approval was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Time>,
}

/// Where a share stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataShareStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending (waiting for approval), Granted, Expired or Revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DataSharePhase>,
    /// Who approved the grant that took effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_by: Option<String>,
    /// When access was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<Time>,
    /// Who revoked the share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    /// When the share was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Time>,
    /// The DataServiceClass of the shared claim while the consumer holds a login on its
    /// server, so that the login can be removed even after the claim is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// The binding Secret, of that name in each of the consumer agency's namespaces,
    /// holding the read-only credentials while the share is granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_secret: Option<String>,
    /// What happened, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions of the share. `Granted` with reasons such as `AwaitingApproval`,
    /// `ClaimNotFound`, `ShareDownForbidden` (the consumer's security level is lower than
    /// the owner's and the class does not allow it), `Expired` or `Revoked`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Phase of a share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DataSharePhase {
    /// Waiting for the owner side's approval (or for the broker).
    Pending,
    /// The consumer can read the data.
    Granted,
    /// Past `spec.expiresAt`; access removed.
    Expired,
    /// Revoked; access removed.
    Revoked,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt as _;

    use super::*;

    #[test]
    fn a_share_reads_pending_by_default() {
        let share: DataShare = serde_yaml::from_str(
            r#"
apiVersion: govbroker.io/v1alpha1
kind: DataShare
metadata: {name: benh-an-cho-bhxh}
spec:
  owner: {agency: so-y-te-ha-noi, namespace: so-y-te-ha-noi-prod, claim: ho-so-benh-an}
  consumer: {agency: bhxh-ha-noi}
  access: ReadOnly
  expiresAt: "2026-12-31T23:59:59+07:00"
"#,
        )
        .unwrap();
        assert!(!share.spec.approved, "nothing is shared without consent");
        assert!(!share.spec.revoked);
        assert_eq!(share.spec.access, ShareAccess::ReadOnly);
        let back: DataShare =
            serde_json::from_value(serde_json::to_value(&share).unwrap()).unwrap();
        assert_eq!(back.spec, share.spec);
    }

    #[test]
    fn a_share_without_expiry_does_not_read() {
        let err = serde_json::from_value::<DataShareSpec>(serde_json::json!({
            "owner": {"agency": "a", "namespace": "a-prod", "claim": "c"},
            "consumer": {"agency": "b"},
            "access": "ReadOnly",
        }))
        .unwrap_err();
        assert!(err.to_string().contains("expiresAt"), "{err}");
    }

    #[test]
    fn crd_carries_the_consent_rules() {
        let crd = DataShare::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.short_names, Some(vec!["dshare".to_owned()]));
        let value = serde_json::to_value(&crd).unwrap();
        let spec = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["properties"]["access"]["enum"],
            serde_json::json!(["ReadOnly"])
        );
        let required = spec["required"].as_array().unwrap();
        assert!(required.contains(&"expiresAt".into()));
        let messages: Vec<&str> = spec["x-kubernetes-validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["message"].as_str().unwrap())
            .collect();
        for fragment in [
            "consumer.agency must differ",
            "owner agency's namespaces",
            "cannot change",
            "cannot be withdrawn",
            "expiresAt cannot change",
            "stays revoked",
        ] {
            assert!(
                messages.iter().any(|m| m.contains(fragment)),
                "no rule says {fragment:?}: {messages:?}"
            );
        }
    }
}
