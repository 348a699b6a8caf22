//! `DataServiceClass`: a shared database or cache server and the plans agencies may claim
//! on it.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Every information-system security level, the default of
/// `spec.allowedSecurityLevels`.
pub const ALL_SECURITY_LEVELS: [u8; 5] = [1, 2, 3, 4, 5];

/// A kind of shared data service the platform brokers: an engine on one shared server,
/// the plans agencies may choose from, and which security levels may use it.
///
/// Platform operators create one DataServiceClass per shared server. Agencies claim an
/// instance of it (a database, a Redis user) with a DataServiceClaim naming the class and
/// one of its plans; the broker provisions the instance on the server with the admin
/// credentials of `spec.server.adminSecretRef` and hands the agency a binding Secret.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "govbroker.io",
    version = "v1alpha1",
    kind = "DataServiceClass",
    plural = "dataserviceclasses",
    shortname = "dsc",
    category = "govbroker",
    status = "DataServiceClassStatus",
    doc = "A shared data-service server (PostgreSQL or Redis) and the plans agencies may claim on it. Cluster-scoped; created by platform operators. See spec for the fields.",
    printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".spec.engine"}"#,
    printcolumn = r#"{"name":"Host","type":"string","description":"Host name or IP address of the shared server","jsonPath":".spec.server.host"}"#,
    printcolumn = r#"{"name":"Port","type":"integer","jsonPath":".spec.server.port"}"#,
    printcolumn = r#"{"name":"Plans","type":"integer","description":"Number of plans (counted by the broker)","jsonPath":".status.plans"}"#,
    printcolumn = r#"{"name":"TLS","type":"boolean","jsonPath":".spec.server.tls.enabled","priority":1}"#,
    printcolumn = r#"{"name":"Levels","type":"string","description":"Security levels that may claim this class","jsonPath":".spec.allowedSecurityLevels","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"boolean","description":"Whether the broker reached the server with the admin credentials","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.plans.all(p, self.plans.exists_one(q, q.name == p.name))").message("plan names must be unique within a DataServiceClass"),
    validation = Rule::new("self.engine != 'postgres' || self.plans.all(p, !has(p.limits) || (!has(p.limits.memory) && !has(p.limits.maxKeys)))").message("a postgres plan may limit maxConnections and storage only; memory and maxKeys are Redis limits"),
    validation = Rule::new("self.engine != 'redis' || self.plans.all(p, !has(p.limits) || (!has(p.limits.maxConnections) && !has(p.limits.storage)))").message("a redis plan may limit memory and maxKeys only; maxConnections and storage are PostgreSQL limits"),
)]
pub struct DataServiceClassSpec {
    /// The engine of the shared server: `postgres` (each claim gets its own database and
    /// login role) or `redis` (each claim gets its own ACL user and key prefix).
    pub engine: DataServiceEngine,

    /// Where the shared server is and how the broker logs in to it as administrator.
    pub server: SharedServer,

    /// The plans agencies may claim, from 1 to 20; each claim names one. Names are unique
    /// within the class. Limits must fit the engine: maxConnections and storage for
    /// postgres, memory and maxKeys for redis.
    #[schemars(length(min = 1, max = 20))]
    pub plans: Vec<DataServicePlan>,

    /// The information-system security levels (1-5) of the agencies that may claim this
    /// class. Defaults to every level. A level-4 agency's data, for example, should live
    /// only on a server whose class lists 4 (typically a dedicated server).
    #[serde(default = "all_security_levels")]
    #[schemars(
        length(min = 1, max = 5),
        inner(range(min = 1, max = 5)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub allowed_security_levels: Vec<u8>,

    /// Whether data of an instance of this class may be shared (with a DataShare) to an
    /// agency of a lower security level than its owner. Default false: data of a
    /// higher-security agency is never shared down.
    #[serde(default)]
    pub allow_share_down: bool,
}

fn all_security_levels() -> Vec<u8> {
    ALL_SECURITY_LEVELS.to_vec()
}

/// The engine of a shared data-service server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataServiceEngine {
    /// PostgreSQL: a claim is a database with its own login role.
    Postgres,
    /// Redis: a claim is an ACL user restricted to its own key prefix.
    Redis,
}

impl DataServiceEngine {
    /// The engine's name as written in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            DataServiceEngine::Postgres => "postgres",
            DataServiceEngine::Redis => "redis",
        }
    }
}

/// A shared server: its address, TLS, and the Secret holding its admin credentials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharedServer {
    /// Host name or IP address the broker and the agencies' workloads connect to, e.g.
    /// `pg-dung-chung.hanoi.gov.vn` or `10.20.0.15`.
    #[schemars(
        length(min = 1, max = 253),
        regex(
            pattern = r"^([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$|^[0-9A-Fa-f:.]+$"
        )
    )]
    pub host: String,

    /// TCP port of the server, 1-65535 (PostgreSQL listens on 5432, Redis on 6379 by
    /// default).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// TLS towards the server. Enabled unless said otherwise.
    #[serde(default)]
    pub tls: ServerTls,

    /// The Secret holding the server's admin credentials (keys `username` and
    /// `password`), which the broker uses to create and drop databases and users.
    /// Credentials are never written into the class itself. Keep the Secret in a
    /// namespace only the platform can read, e.g. `govbroker-system`.
    pub admin_secret_ref: SecretRef,
}

/// TLS towards a shared server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.enabled || !has(self.caSecretRef)").message("tls.caSecretRef is only used with tls.enabled: true"),
)]
pub struct ServerTls {
    /// Whether connections to the server use TLS. Default true; turn it off only for a
    /// server on loopback or on a trusted private network.
    #[serde(default = "enabled")]
    pub enabled: bool,

    /// A Secret whose key `ca.crt` holds the CA certificate that signed the server's
    /// certificate. Without it the system's trusted roots are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,
}

fn enabled() -> bool {
    true
}

impl Default for ServerTls {
    fn default() -> Self {
        ServerTls {
            enabled: true,
            ca_secret_ref: None,
        }
    }
}

/// A Secret by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
pub struct SecretRef {
    /// Namespace of the Secret, e.g. `govbroker-system`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
    /// Name of the Secret, e.g. `pg-dung-chung-admin`.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// One plan of a DataServiceClass: a named size with limits and, later, a price.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataServicePlan {
    /// The plan's name, a lowercase slug that claims refer to in `spec.plan`, e.g.
    /// `co-ban` or `small`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// What the plan is for, shown to agency IT teams choosing one, e.g. "Cơ sở dữ liệu
    /// nhỏ cho cổng dịch vụ công cấp xã (20 kết nối, 10Gi)".
    #[schemars(length(min = 1, max = 500))]
    pub description: String,

    /// Limits the broker applies to every instance of this plan. Which limits apply
    /// depends on the class's engine; a limit left out is not enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<PlanLimits>,

    /// The line of a PriceList that prices one hour of an instance of this plan, e.g.
    /// `postgres-co-ban`. Used by billing; a plan without one is not billed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub price_ref: Option<String>,
}

/// Limits of a plan. PostgreSQL plans use maxConnections and storage, Redis plans memory
/// and maxKeys; the class refuses a limit that does not fit its engine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanLimits {
    /// PostgreSQL: the most connections the instance's login role may hold at once
    /// (1-1000; the role's CONNECTION LIMIT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_connections: Option<i32>,

    /// PostgreSQL: the most disk the database may use, as a quantity (`10Gi`, `500Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Quantity>,

    /// Redis: the most memory the instance's keys may use, as a quantity (`256Mi`, `1Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,

    /// Redis: the most keys the instance may hold (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_keys: Option<i64>,
}

/// What the broker observed of a DataServiceClass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataServiceClassStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Summary: true when the broker reached the server and logged in with the admin
    /// credentials, so claims of this class can be provisioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Number of plans in the spec, for `kubectl get` (a printer column cannot count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plans: Option<i32>,
    /// Conditions of the class. `Ready` with reasons such as `Connected`,
    /// `ServerUnavailable`, `AdminSecretMissing`, `AuthenticationFailed` or `TlsFailed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt as _;

    use super::*;

    const EXAMPLE: &str = r#"
apiVersion: govbroker.io/v1alpha1
kind: DataServiceClass
metadata:
  name: postgres-dung-chung
spec:
  engine: postgres
  server:
    host: pg-dung-chung.hanoi.gov.vn
    port: 5432
    adminSecretRef: {namespace: govbroker-system, name: pg-dung-chung-admin}
  plans:
    - name: co-ban
      description: Cơ sở dữ liệu nhỏ cho cổng dịch vụ công cấp xã
      limits: {maxConnections: 20, storage: 10Gi}
      priceRef: postgres-co-ban
"#;

    #[test]
    fn example_reads_with_secure_defaults() {
        let class: DataServiceClass = serde_yaml::from_str(EXAMPLE).unwrap();
        assert_eq!(class.spec.engine, DataServiceEngine::Postgres);
        assert_eq!(class.spec.allowed_security_levels, ALL_SECURITY_LEVELS);
        assert!(
            !class.spec.allow_share_down,
            "sharing down is off by default"
        );
        assert!(class.spec.server.tls.enabled, "TLS is on by default");
        let limits = class.spec.plans[0].limits.as_ref().unwrap();
        assert_eq!(limits.max_connections, Some(20));
        let back: DataServiceClass =
            serde_json::from_value(serde_json::to_value(&class).unwrap()).unwrap();
        assert_eq!(back.spec, class.spec);
    }

    #[test]
    fn crd_is_cluster_scoped_with_kubectl_niceties_and_rules() {
        let crd = DataServiceClass::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.short_names, Some(vec!["dsc".to_owned()]));
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["govbroker".to_owned()])
        );
        let columns: Vec<_> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        for column in ["Engine", "Host", "Port", "Plans", "Ready", "Age"] {
            assert!(columns.contains(&column), "no column {column}: {columns:?}");
        }
        let schema = serde_json::to_string(&crd).unwrap();
        for rule in [
            "plan names must be unique",
            "a postgres plan may limit maxConnections and storage only",
            "a redis plan may limit memory and maxKeys only",
            "tls.caSecretRef is only used with tls.enabled: true",
        ] {
            assert!(schema.contains(rule), "missing rule {rule:?}");
        }
        assert!(schema.contains(r#""x-kubernetes-list-type":"set""#));
    }

    #[test]
    fn engine_names_are_lowercase() {
        for engine in [DataServiceEngine::Postgres, DataServiceEngine::Redis] {
            assert_eq!(
                serde_json::to_value(engine).unwrap(),
                serde_json::Value::from(engine.as_str())
            );
        }
    }
}
