//! `PriceList`: VND rates for what agencies use, with effective dates and append-only
//! revisions.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// VND rates for CPU, memory, storage and data-service plans, each with the date from
/// which it applies.
///
/// A price list is never edited in place: each change is a new entry of
/// `spec.revisions`, and existing revisions cannot be changed or removed (the API server
/// refuses it). Bills are rated with the **latest** revision and say which one they
/// used. A price change announced for the 16th is a new revision whose `rates` add a
/// set effective from the 16th; a correction of past prices (re-rating) is a new
/// revision with the corrected sets and the reason, and the earlier revision stays for
/// anyone checking an earlier bill. Each revision says from which day it is in force
/// (`adoptedOn`): a month's bill is rated with the revision in force at the month's end,
/// so a later revision never changes an earlier month's bill unless that month is
/// re-rated on purpose. Who made each change is in the API server's audit log and the
/// object's `managedFields`; `reason` says why.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "govbroker.io",
    version = "v1alpha1",
    kind = "PriceList",
    plural = "pricelists",
    shortname = "pl",
    category = "govbroker",
    status = "PriceListStatus",
    doc = "VND rates per vCPU-hour, GiB-hour of memory, GiB-month of storage and data-service plan-hour, each effective from a date (Asia/Ho_Chi_Minh), in append-only revisions. Cluster-scoped; agencies name theirs in spec.priceList.",
    printcolumn = r#"{"name":"Display Name","type":"string","jsonPath":".spec.displayName","priority":1}"#,
    printcolumn = r#"{"name":"Revision","type":"integer","description":"The latest revision, which bills are rated with","jsonPath":".status.latestRevision"}"#,
    printcolumn = r#"{"name":"Effective","type":"string","description":"Effective date of the latest revision's newest rates","jsonPath":".status.latestEffectiveFrom"}"#,
    printcolumn = r#"{"name":"CPU/h","type":"string","description":"VND per vCPU-hour in the latest revision's newest rates","jsonPath":".status.cpuPerVcpuHour"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","description":"Why the latest revision was made","jsonPath":".status.latestReason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 63").message("a price list name is a lowercase ASCII slug (a-z, 0-9 and '-') of at most 63 characters, such as gia-2026"),
)]
#[serde(rename_all = "camelCase")]
pub struct PriceListSpec {
    /// What the price list is, in Vietnamese, e.g. "Bảng giá dịch vụ đám mây dùng chung
    /// 2026".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,

    /// The revisions, from 1 to 32, each number once (list them oldest first). A month's
    /// bill uses the highest-numbered revision adopted on or before the month's last day
    /// (see `adoptedOn`). Revisions are append-only: add a new revision to change a
    /// price; an existing revision can never be changed or removed, and a revision added
    /// to an existing list must say when it is adopted.
    #[schemars(
        length(min = 1, max = 32),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["revision"])
    )]
    #[x_kube(validation = Rule::new("oldSelf.all(o, self.exists(n, n.revision == o.revision))").message("price list revisions cannot be removed once created: add a new revision (with a reason) instead"))]
    #[x_kube(validation = Rule::new("self.all(n, has(n.adoptedOn) || oldSelf.exists(o, o.revision == n.revision))").message("a revision added to an existing price list needs adoptedOn (YYYY-MM-DD), the day from which it is in force, so the bills of months that ended before it keep the revision they were issued with"))]
    pub revisions: Vec<PriceListRevision>,
}

/// One revision of a price list: the full set of dated rates and why it was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self == oldSelf").message("a price list revision cannot be changed once created: add a new revision (with a reason) instead"),
)]
pub struct PriceListRevision {
    /// The revision number, from 1; a new revision takes a higher number than every
    /// earlier one.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub revision: i32,

    /// Why this revision was made, e.g. the decision that set the prices or the error a
    /// correction fixes ("Quyết định 123/QĐ-BTTTT ngày 2026-10-20").
    #[schemars(length(min = 1, max = 500))]
    pub reason: String,

    /// The billing day (Asia/Ho_Chi_Minh, `YYYY-MM-DD`) from which this revision is in
    /// force: the bill of a month is rated with the highest-numbered revision adopted on
    /// or before the month's last day, so adding a revision in December leaves
    /// November's bill as it was issued (a past month changes only through re-rating).
    /// A revision without it (allowed only when the price list is created) counts as in
    /// force for every month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 10, max = 10),
        regex(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
    )]
    pub adopted_on: Option<String>,

    /// Rate sets, each applying from its `effectiveFrom` date until the next set's date
    /// (each date once; list them in date order).
    /// Usage on a day before the first set cannot be billed with this revision.
    #[schemars(
        length(min = 1, max = 16),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["effectiveFrom"])
    )]
    pub rates: Vec<PriceRates>,
}

/// The rates in effect from one date.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PriceRates {
    /// First day (a date in Asia/Ho_Chi_Minh, `YYYY-MM-DD`) on which these rates apply.
    /// A day is billed entirely at the rates in effect on it.
    #[schemars(
        length(min = 10, max = 10),
        regex(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
    )]
    pub effective_from: String,

    /// VND per vCPU-hour of CPU requests of running pods, a decimal string with at most
    /// 6 fractional digits, e.g. "720" or "712.5".
    #[schemars(length(max = 19), regex(pattern = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"))]
    pub cpu_per_vcpu_hour: String,

    /// VND per GiB-hour of memory requests of running pods, e.g. "96".
    #[schemars(length(max = 19), regex(pattern = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"))]
    pub memory_per_gib_hour: String,

    /// VND per GiB-month of PersistentVolumeClaim capacity (a GiB held for a whole
    /// calendar month costs exactly this), e.g. "2976".
    #[schemars(length(max = 19), regex(pattern = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"))]
    pub storage_per_gib_month: String,

    /// VND per hour of one data-service instance, per class and plan (each pair at most
    /// once).
    #[serde(default)]
    #[schemars(
        length(max = 50),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["className", "plan"])
    )]
    pub data_services: Vec<PlanPrice>,
}

/// The price of one data-service plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanPrice {
    /// The DataServiceClass, e.g. `postgres-dung-chung`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub class_name: String,
    /// The plan of the class, e.g. `co-ban`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub plan: String,
    /// VND per instance-hour, e.g. "1500".
    #[schemars(length(max = 19), regex(pattern = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"))]
    pub per_hour: String,
}

/// A summary of the latest revision, for `kubectl get`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PriceListStatus {
    /// The latest revision number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<i32>,
    /// The effective date of the latest revision's newest rate set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_effective_from: Option<String>,
    /// VND per vCPU-hour of that rate set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_per_vcpu_hour: Option<String>,
    /// Why the latest revision was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_reason: Option<String>,
}

impl PriceListSpec {
    /// The latest revision (the highest number; the current month's bill uses it
    /// unless it is adopted later).
    pub fn latest(&self) -> Option<&PriceListRevision> {
        self.revisions.iter().max_by_key(|r| r.revision)
    }

    /// A revision by number.
    pub fn revision(&self, number: i32) -> Option<&PriceListRevision> {
        self.revisions.iter().find(|r| r.revision == number)
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt as _;

    use super::*;

    #[test]
    fn crd_is_cluster_scoped_and_revisions_are_append_only() {
        let crd = PriceList::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.short_names, Some(vec!["pl".to_owned()]));
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["govbroker".to_owned()])
        );
        let value = serde_json::to_value(&crd).unwrap();
        let spec = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let revisions = &spec["properties"]["revisions"];
        let rule = &revisions["x-kubernetes-validations"][0];
        assert!(rule["rule"].as_str().unwrap().contains("oldSelf.all"));
        assert!(
            rule["message"]
                .as_str()
                .unwrap()
                .contains("add a new revision")
        );
        assert_eq!(revisions["maxItems"], 32);
        assert_eq!(revisions["x-kubernetes-list-type"], "map");
        let item_rule = &revisions["items"]["x-kubernetes-validations"][0];
        assert_eq!(item_rule["rule"], "self == oldSelf");
        let rates = &revisions["items"]["properties"]["rates"]["items"]["properties"];
        assert!(rates["cpuPerVcpuHour"]["pattern"].is_string());
    }

    #[test]
    fn spec_reads_back() {
        let spec: PriceListSpec = serde_json::from_value(serde_json::json!({
            "displayName": "Bảng giá 2026",
            "revisions": [{
                "revision": 1,
                "reason": "Quyết định 1",
                "rates": [{
                    "effectiveFrom": "2026-01-01",
                    "cpuPerVcpuHour": "720",
                    "memoryPerGibHour": "96",
                    "storagePerGibMonth": "2976",
                    "dataServices": [{"className": "postgres-dung-chung", "plan": "co-ban", "perHour": "1500"}]
                }]
            }]
        }))
        .unwrap();
        assert_eq!(spec.latest().unwrap().revision, 1);
        assert_eq!(
            spec.revision(1).unwrap().rates[0].data_services[0].plan,
            "co-ban"
        );
        assert!(spec.revision(2).is_none());
    }
}
