//! `DataServiceClaim`: an agency's instance of a data-service class and plan.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An agency's instance of a shared data service: a PostgreSQL database or a Redis user on
/// the server of a DataServiceClass, sized by one of its plans.
///
/// Created in one of the agency's namespaces (e.g. `so-y-te-ha-noi-prod`). The broker
/// provisions the instance, writes its connection details and credentials into the
/// binding Secret named in `status.bindingSecret` in the same namespace, and reports the
/// endpoint. Deleting the claim drops the instance only with `deletionPolicy: Delete`.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "govbroker.io",
    version = "v1alpha1",
    kind = "DataServiceClaim",
    plural = "dataserviceclaims",
    shortname = "dsclaim",
    category = "govbroker",
    namespaced,
    status = "DataServiceClaimStatus",
    doc = "An agency's instance of a shared data service (a PostgreSQL database or a Redis user) of a DataServiceClass and one of its plans. Lives in one of the agency's namespaces; the broker provisions it and hands over a binding Secret.",
    printcolumn = r#"{"name":"Class","type":"string","jsonPath":".spec.className"}"#,
    printcolumn = r#"{"name":"Plan","type":"string","jsonPath":".spec.plan"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","description":"host:port to connect to","jsonPath":".status.endpoint"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","description":"The binding Secret in this namespace","jsonPath":".status.bindingSecret"}"#,
    printcolumn = r#"{"name":"Deletion","type":"string","description":"What deleting the claim does to the data","jsonPath":".spec.deletionPolicy","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DataServiceClaimSpec {
    /// Name of the DataServiceClass to claim from, e.g. `postgres-dung-chung`. Cannot
    /// change after creation: create a new claim for another class.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.className cannot change after the claim is created: create a new DataServiceClaim for another class"))]
    pub class_name: String,

    /// Name of one of the class's plans, e.g. `co-ban`. Cannot change after creation:
    /// create a new claim and move the data to change size.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.plan cannot change after the claim is created: create a new DataServiceClaim with the other plan"))]
    pub plan: String,

    /// Engine-specific settings for the broker, at most 16 entries; keys are letters,
    /// digits, '_', '-' and '.' (at most 63 characters), values at most 1024 characters.
    /// PostgreSQL accepts `extensions` (comma-separated trusted extensions, e.g.
    /// `unaccent,pg_trgm`) and the database settings `timezone`, `statement_timeout`,
    /// `lock_timeout`, `idle_in_transaction_session_timeout` and `work_mem`; Redis accepts
    /// none. The admission webhook refuses anything else with the accepted list.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16, "additionalProperties" = {"type": "string", "maxLength": 1024}))]
    #[x_kube(validation = Rule::new("self.all(k, size(k) <= 63 && k.matches('^[A-Za-z0-9][-A-Za-z0-9_.]*$'))").message("spec.parameters keys start with a letter or digit and contain only letters, digits, '_', '-' and '.', at most 63 characters"))]
    pub parameters: BTreeMap<String, String>,

    /// What happens to the data when the claim is deleted: `Retain` (the default) keeps
    /// the database or Redis keys on the server for a platform operator to archive or
    /// hand over; `Delete` drops them. Public data is never destroyed by accident.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// What deleting a claim does to its data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Drop the database (or the Redis user and its keys) when the claim is deleted.
    Delete,
    /// Keep the data on the server when the claim is deleted; only access is removed.
    #[default]
    Retain,
}

/// What the broker observed of a claim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataServiceClaimStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Provisioning, Ready, Failed or Deleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ClaimPhase>,
    /// Where to connect, `host:port`, e.g. `pg-dung-chung.hanoi.gov.vn:5432`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Name of the Secret in the claim's namespace holding the connection details and
    /// credentials (`host`, `port`, `username`, `password`, and `database` or
    /// `prefix`), and `uri`, for workloads to mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_secret: Option<String>,
    /// True when the claim is being deleted and its data is kept on the server because
    /// `deletionPolicy` is Retain; `message` says where it stays.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retained: bool,
    /// The value of the claim's `govbroker.io/rotate-password` annotation that the broker
    /// last acted on. Setting the annotation to a new value (e.g. the date) rotates the
    /// password: the role gets a new one and the binding Secret follows at once; open
    /// connections stay open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_rotation: Option<String>,
    /// Size of the PostgreSQL database in bytes, sampled by the broker (at most every
    /// 10 minutes, and again when the class changes) for metering as storage and against
    /// the plan's `storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_bytes: Option<i64>,
    /// Number of keys under the Redis instance's prefix, counted by the broker (at most
    /// every 10 minutes, and again when the class changes) against the plan's `maxKeys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<i64>,
    /// Memory used by the Redis instance's keys in bytes (the sum of `MEMORY USAGE`),
    /// measured with the key count, against the plan's `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
    /// The PostgreSQL extensions of `parameters` the broker has created in the claim's
    /// database. A reconcile creates only those missing from this list, so a settled
    /// claim opens no session to its database for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
    /// What happened, in words a person can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions of the claim. `WithinPlan` says whether the measured use (storage,
    /// keys) is within the plan's limits. `Ready` with reasons such as `Provisioned`,
    /// `ClassNotFound`, `PlanNotFound`, `SecurityLevelNotAllowed`, `QuotaExceeded` or
    /// `ServerUnavailable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Annotation on a DataServiceClaim: a new value rotates the instance's password.
pub const ROTATE_PASSWORD_ANNOTATION: &str = "govbroker.io/rotate-password";

/// Phase of a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ClaimPhase {
    /// Accepted, not yet provisioned (e.g. the class is not ready).
    Pending,
    /// The broker is creating the instance on the server.
    Provisioning,
    /// The instance exists and the binding Secret is written.
    Ready,
    /// Provisioning failed; the conditions say why.
    Failed,
    /// The claim is being deleted; the data is dropped or retained per `deletionPolicy`.
    Deleting,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt as _;

    use super::*;

    #[test]
    fn deletion_policy_defaults_to_retain() {
        let spec: DataServiceClaimSpec = serde_json::from_value(
            serde_json::json!({"className": "postgres-dung-chung", "plan": "co-ban"}),
        )
        .unwrap();
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
        assert!(spec.parameters.is_empty());
        let crd = serde_json::to_value(DataServiceClaim::crd()).unwrap();
        let policy = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["deletionPolicy"];
        assert_eq!(policy["default"], "Retain");
        assert_eq!(policy["enum"], serde_json::json!(["Delete", "Retain"]));
    }

    #[test]
    fn crd_is_namespaced_and_class_and_plan_are_immutable() {
        let crd = DataServiceClaim::crd();
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["dsclaim".to_owned()]));
        let value = serde_json::to_value(&crd).unwrap();
        let spec = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"];
        for field in ["className", "plan"] {
            let rule = &spec[field]["x-kubernetes-validations"][0];
            assert_eq!(rule["rule"], "self == oldSelf", "{field}");
            assert!(
                rule["message"].as_str().unwrap().contains("cannot change"),
                "{field}"
            );
        }
        assert_eq!(spec["parameters"]["maxProperties"], 16);
        assert_eq!(
            spec["parameters"]["additionalProperties"]["maxLength"],
            1024
        );
    }
}
