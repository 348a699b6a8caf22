//! `Agency`: one state agency, a node of the government tree.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::quota::ResourceAmounts;

/// A state agency: a ministry, a province, a district or a commune, with its place in the
/// government tree, its security level, its owners, and the namespaces and quota it rents
/// from the platform.
///
/// The operator turns every Agency into one namespace per environment
/// (`<agency>-<environment>`) with a ResourceQuota, a LimitRange, default-deny
/// NetworkPolicies, Pod Security labels for its security level, and RBAC for its owners.
/// The sum of the quotas of an agency's environments and of its children never exceeds
/// its own quota.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "govbroker.io",
    version = "v1alpha1",
    kind = "Agency",
    plural = "agencies",
    shortname = "ag",
    category = "govbroker",
    status = "AgencyStatus",
    selectable = ".spec.parent",
    selectable = ".spec.level",
    printcolumn = r#"{"name":"Display Name","type":"string","jsonPath":".spec.displayName","priority":1}"#,
    printcolumn = r#"{"name":"Level","type":"string","jsonPath":".spec.level"}"#,
    printcolumn = r#"{"name":"Parent","type":"string","jsonPath":".spec.parent"}"#,
    printcolumn = r#"{"name":"Sec","type":"integer","description":"Information-system security level (1-5)","jsonPath":".spec.securityLevel"}"#,
    printcolumn = r#"{"name":"CPU","type":"string","description":"CPU requested in the agency's namespaces / its quota","jsonPath":".status.cpu"}"#,
    printcolumn = r#"{"name":"Memory","type":"string","description":"Memory requested in the agency's namespaces / its quota","jsonPath":".status.memory"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Cost","type":"string","description":"Month-to-date cost of the agency's own namespaces (Asia/Ho_Chi_Minh month)","jsonPath":".status.cost.monthToDate","priority":1}"#,
    printcolumn = r#"{"name":"Budget","type":"integer","description":"Month-to-date cost as a percentage of the monthly budget","jsonPath":".status.cost.budgetUsedPercent","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 42").message("an agency name is a lowercase ASCII slug (a-z, 0-9 and '-') of at most 42 characters, such as so-tttt-da-nang; put the Vietnamese name in spec.displayName"),
    validation = Rule::new("self.spec.environments.all(e, size(self.metadata.name) + size(e.name) <= 62)").message("each environment becomes the namespace <agency>-<environment>, which must fit in 63 characters: shorten the agency or the environment name"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.level == 'Central' ? !has(self.parent) : has(self.parent)").message("a Central agency has no parent; a Province, District or Commune must name its parent agency in spec.parent"),
    validation = Rule::new("self.environments.all(e, self.environments.exists_one(f, f.name == e.name))").message("environment names must be unique within an agency"),
)]
pub struct AgencySpec {
    /// The agency's official name in Vietnamese (UTF-8, with diacritics), e.g.
    /// "Sở Thông tin và Truyền thông Đà Nẵng". The object's name is its ASCII slug.
    #[schemars(length(min = 1, max = 256))]
    pub display_name: String,

    /// Administrative level: Central (ministries and central bodies), Province,
    /// District or Commune. A Commune may sit directly under a Province (the 2025
    /// two-level map) or under a District.
    pub level: AgencyLevel,

    /// Name of the parent Agency. Required for every level but Central. Changing it
    /// moves the agency and its whole subtree; usage history and bills stay with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,

    /// Information-system security level, 1 (lowest) to 5 (highest). Levels 1-2 get the
    /// Pod Security "baseline" profile, 3-5 "restricted" and egress limited to DNS and
    /// bound data services. A child may not be classified above its parent, whose
    /// owners can read the child's namespaces.
    #[schemars(range(min = 1, max = 5))]
    pub security_level: u8,

    /// Who administers the agency: they get admin rights in its namespaces and read
    /// access to it and to its descendants.
    #[serde(default)]
    pub owners: Owners,

    /// Who may read the agency, its descendants and their namespaces without changing
    /// anything (auditors, supervising staff).
    #[serde(default, skip_serializing_if = "Owners::is_empty")]
    pub viewers: Owners,

    /// The agency's environments. Each becomes a namespace `<agency>-<name>` with its
    /// own share of the agency's quota.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub environments: Vec<Environment>,

    /// Everything the agency may hold: its environments' quotas plus what it grants to
    /// its child agencies must fit within it.
    #[serde(default)]
    pub quota: ResourceAmounts,

    /// The agency's monthly budget for the platform, in VND, and the percentages at
    /// which to warn. Without it no budget is tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,

    /// Name of the PriceList the agency's usage is rated with. Without it, the
    /// platform's default price list (named `default`) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub price_list: Option<String>,
}

/// A monthly budget in VND with alert thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.alertThresholds.all(t, self.alertThresholds.exists_one(u, u == t))").message("budget.alertThresholds must not repeat a percentage"),
)]
pub struct Budget {
    /// The budget per calendar month (Asia/Ho_Chi_Minh) in whole đồng, e.g. 50000000
    /// for 50.000.000 ₫.
    #[schemars(range(min = 0, max = 1_000_000_000_000_000i64))]
    pub monthly_vnd: i64,

    /// Percentages of the monthly budget (1-1000) at which the operator emits an Event
    /// and sets the `BudgetThreshold` condition, once per threshold and month. Default
    /// 50, 80 and 100.
    #[serde(default = "default_alert_thresholds")]
    #[schemars(length(max = 10), inner(range(min = 1, max = 1000)))]
    pub alert_thresholds: Vec<u32>,

    /// When true, new Workloads and scale-ups (more replicas) in the agency's namespaces
    /// are refused at admission once the month-to-date cost (`status.cost`) has reached
    /// `monthlyVnd`, until the month ends or a platform admin raises the budget; scaling
    /// down and deleting stay allowed. Default false (the thresholds only warn).
    #[serde(default)]
    pub enforce: bool,
}

fn default_alert_thresholds() -> Vec<u32> {
    vec![50, 80, 100]
}

/// Administrative level of an agency. Levels nest Central > Province > District > Commune.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum AgencyLevel {
    /// A ministry or another central body.
    Central,
    /// A province or a centrally-run city, or one of its departments.
    Province,
    /// A district (abolished in 2025, still present in older records).
    District,
    /// A commune people's committee.
    Commune,
}

impl AgencyLevel {
    /// The level's name as written in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            AgencyLevel::Central => "Central",
            AgencyLevel::Province => "Province",
            AgencyLevel::District => "District",
            AgencyLevel::Commune => "Commune",
        }
    }
}

/// Owners (or viewers) of an agency: users, groups and service accounts as Kubernetes
/// knows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Owners {
    /// User names, as authenticated by the cluster (e.g. `nguyen.van.a@danang.gov.vn`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Group names (e.g. `danang:so-tttt:it`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Service accounts, e.g. for the agency's CI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<ServiceAccountRef>,
}

impl Owners {
    /// Whether no user, group or service account is named.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty() && self.service_accounts.is_empty()
    }
}

/// A service account by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
pub struct ServiceAccountRef {
    /// Namespace of the service account.
    pub namespace: String,
    /// Name of the service account.
    pub name: String,
}

/// One environment of an agency, e.g. `prod` or `staging`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
pub struct Environment {
    /// Lowercase name; the namespace is `<agency>-<name>`.
    #[schemars(
        length(min = 1, max = 20),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// This environment's share of the agency's quota, enforced by a ResourceQuota in
    /// its namespace. Data-service instances are counted per agency, not here.
    #[serde(default)]
    #[x_kube(validation = Rule::new("!has(self.dataServices)").message("data-service instances are counted per agency: set them in spec.quota.dataServices, not in an environment's quota"))]
    pub quota: ResourceAmounts,
}

/// What the operator observed of an agency.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgencyStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The agency's namespaces, one per environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Quota arithmetic of the agency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<AgencyQuotaStatus>,
    /// CPU requested in the agency's namespaces / its quota, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory requested in the agency's namespaces / its quota, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Number of child agencies.
    #[serde(default)]
    pub children: u32,
    /// What the agency's usage costs this month, from the metering ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<AgencyCostStatus>,
    /// Ready, QuotaExceeded and ParentMissing (set by the operator) and BudgetThreshold
    /// (set by the metering collector when a budget alert threshold is crossed), with
    /// reasons a person can act on. Keyed by type, so each writer owns its own conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Quota arithmetic of an agency.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgencyQuotaStatus {
    /// The agency's quota (`spec.quota`).
    #[serde(default, skip_serializing_if = "ResourceAmounts::is_empty")]
    pub hard: ResourceAmounts,
    /// Requested now in the agency's own namespaces (from their ResourceQuotas).
    #[serde(default, skip_serializing_if = "ResourceAmounts::is_empty")]
    pub used: ResourceAmounts,
    /// Granted to the agency's environments.
    #[serde(default, skip_serializing_if = "ResourceAmounts::is_empty")]
    pub environments: ResourceAmounts,
    /// Granted to child agencies (the sum of their `spec.quota`).
    #[serde(default, skip_serializing_if = "ResourceAmounts::is_empty")]
    pub granted_to_children: ResourceAmounts,
}

/// What an agency's usage costs this month (its own namespaces; subtree totals are in
/// the bill).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgencyCostStatus {
    /// The month, `YYYY-MM` (Asia/Ho_Chi_Minh).
    pub month: String,
    /// Month-to-date cost in whole đồng.
    pub month_to_date_vnd: i64,
    /// Month-to-date cost as written for people, e.g. `1.234.567 ₫`.
    pub month_to_date: String,
    /// Forecast to the month's end at the pace so far, in whole đồng.
    pub forecast_vnd: i64,
    /// Month-to-date cost as a percentage of `spec.budget.monthlyVnd` (rounded down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_used_percent: Option<u32>,
    /// The budget's alert thresholds reached this month.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds_reached: Vec<u32>,
}
