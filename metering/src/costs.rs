//! Month-to-date cost and budgets: rates each agency's month so far from the ledger,
//! writes `Agency.status.cost` (server-side apply, field manager `govbroker-metering`,
//! so the agency controller's fields are untouched), sets the `BudgetThreshold`
//! condition and emits a `BudgetThreshold` Event once per threshold and month, and
//! exports per-agency cost gauges.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use govbroker_crds::QuotaResource;
use govbroker_crds::{Agency, AgencyCostStatus, PriceList};
use govbroker_domain::billing::{
    BUDGET_CONDITION, BudgetStatus, PriceSchedule, Vnd, budget_condition, budget_status,
    format_vnd, rate_month, schedule_for_month,
};
use govbroker_domain::metering::{Day, Month};
use govbroker_domain::quantity::Amounts;
use govbroker_ledger::usage::UsageLedger;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus::core::{Collector as _, MetricVec, MetricVecBuilder};
use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry};

/// Field manager of the cost status.
pub const FIELD_MANAGER: &str = "govbroker-metering";

/// The price list of agencies that name none.
pub const DEFAULT_PRICE_LIST: &str = "default";

/// Per-agency gauges.
#[derive(Clone)]
pub struct CostGauges {
    /// Month-to-date cost in đồng.
    pub month_to_date: IntGaugeVec,
    /// Month-to-date cost as a percentage of the budget.
    pub budget_percent: IntGaugeVec,
    /// The agency's quota (`status.quota.hard`) per resource, in base units.
    pub quota_hard: GaugeVec,
    /// What the agency's namespaces request now (`status.quota.used`) per resource.
    pub quota_used: GaugeVec,
}

impl CostGauges {
    /// Creates and registers the gauges.
    pub fn new(registry: &Registry) -> CostGauges {
        let month_to_date = IntGaugeVec::new(
            Opts::new(
                "govbroker_agency_month_to_date_cost_vnd",
                "Month-to-date cost of an agency's own namespaces, in đồng",
            ),
            &["agency"],
        )
        .expect("metric");
        let budget_percent = IntGaugeVec::new(
            Opts::new(
                "govbroker_agency_budget_used_percent",
                "Month-to-date cost as a percentage of the agency's monthly budget",
            ),
            &["agency"],
        )
        .expect("metric");
        let quota = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(name, help), &["agency", "resource"]).expect("metric")
        };
        let quota_hard = quota(
            "govbroker_agency_quota_hard",
            "An agency's quota per resource (cores, bytes or a count), from its status",
        );
        let quota_used = quota(
            "govbroker_agency_quota_used",
            "What an agency's namespaces request now per resource (cores, bytes or a count)",
        );
        let _ = registry.register(Box::new(month_to_date.clone()));
        let _ = registry.register(Box::new(budget_percent.clone()));
        let _ = registry.register(Box::new(quota_hard.clone()));
        let _ = registry.register(Box::new(quota_used.clone()));
        CostGauges {
            month_to_date,
            budget_percent,
            quota_hard,
            quota_used,
        }
    }

    /// Sets the quota gauges of `agency` from its status (a resource without a quota
    /// has no series), and notes in `live` which series the agency has now.
    pub fn set_quota(&self, agency: &Agency, live: &mut LiveSeries) {
        let name = agency.name_any();
        live.agencies.insert(name.clone());
        if agency.spec.budget.is_some() {
            live.budgeted.insert(name.clone());
        }
        for (resource, hard, used) in quota_samples(agency) {
            if let Some(hard) = hard {
                self.quota_hard
                    .with_label_values(&[&name, resource.field()])
                    .set(hard);
                live.quota_hard
                    .insert((name.clone(), resource.field().to_owned()));
            }
            self.quota_used
                .with_label_values(&[&name, resource.field()])
                .set(used);
            live.quota_used
                .insert((name.clone(), resource.field().to_owned()));
        }
    }

    /// Removes every per-agency series that `live` (a complete pass over the agencies)
    /// no longer has: all series of a deleted agency, the budget gauge of an agency
    /// whose budget was removed, the quota series of a resource no longer in its
    /// status. Without this, a deleted agency's gauges would stay until a restart.
    pub fn retain(&self, live: &LiveSeries) {
        let agency_of =
            |labels: &BTreeMap<String, String>| labels.get("agency").cloned().unwrap_or_default();
        let quota_key = |labels: &BTreeMap<String, String>| {
            (
                agency_of(labels),
                labels.get("resource").cloned().unwrap_or_default(),
            )
        };
        remove_unless(&self.month_to_date, |l| {
            live.agencies.contains(&agency_of(l))
        });
        remove_unless(&self.budget_percent, |l| {
            live.budgeted.contains(&agency_of(l))
        });
        remove_unless(&self.quota_hard, |l| {
            live.quota_hard.contains(&quota_key(l))
        });
        remove_unless(&self.quota_used, |l| {
            live.quota_used.contains(&quota_key(l))
        });
    }
}

/// The per-agency series a cost pass found reason to keep: the agencies that exist,
/// those with a budget, and (agency, resource) pairs of their quota status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveSeries {
    /// Agencies listed by the pass.
    pub agencies: BTreeSet<String>,
    /// Those with `spec.budget`.
    pub budgeted: BTreeSet<String>,
    /// (agency, resource) with a hard quota in the status.
    pub quota_hard: BTreeSet<(String, String)>,
    /// (agency, resource) with a usage or a quota in the status.
    pub quota_used: BTreeSet<(String, String)>,
}

/// Removes the series of `vec` whose labels `keep` refuses.
fn remove_unless<T: MetricVecBuilder>(
    vec: &MetricVec<T>,
    keep: impl Fn(&BTreeMap<String, String>) -> bool,
) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: BTreeMap<String, String> = metric
                .get_label()
                .iter()
                .map(|l| (l.name().to_owned(), l.value().to_owned()))
                .collect();
            if keep(&labels) {
                continue;
            }
            let by_name: HashMap<&str, &str> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            // A series that is already gone (removed meanwhile) is what was wanted.
            let _ = vec.remove(&by_name);
        }
    }
}

/// An agency's quota per resource from its status: (resource, hard, used) in base units
/// (cores, bytes, counts), for the resources it has a quota or a usage for. Gauges are
/// floats; quota values are far from money, and a core is 1000 milli-cores exactly.
pub fn quota_samples(agency: &Agency) -> Vec<(QuotaResource, Option<f64>, f64)> {
    let Some(quota) = agency.status.as_ref().and_then(|s| s.quota.as_ref()) else {
        return Vec::new();
    };
    let hard = Amounts::from_spec_lenient(&quota.hard);
    let used = Amounts::from_spec_lenient(&quota.used);
    let base = |a: govbroker_domain::quantity::Amount| a.milli() as f64 / 1000.0;
    QuotaResource::ALL
        .into_iter()
        .filter(|r| hard.contains(*r) || used.contains(*r))
        .map(|r| (r, hard.get_opt(r).map(base), base(used.get(r))))
        .collect()
}

/// The thresholds reached now that were not reached before (same month).
pub fn newly_reached(previous: Option<&AgencyCostStatus>, month: Month, now: &[u32]) -> Vec<u32> {
    let before: &[u32] = match previous {
        Some(p) if p.month == month.to_string() => &p.thresholds_reached,
        _ => &[],
    };
    now.iter()
        .copied()
        .filter(|t| !before.contains(t))
        .collect()
}

/// The cost status of an agency from its month-to-date bill.
pub fn cost_status(agency: &Agency, month: Month, total: Vnd, now: i64) -> AgencyCostStatus {
    let mut status = AgencyCostStatus {
        month: month.to_string(),
        month_to_date_vnd: total.0,
        month_to_date: format_vnd(total),
        forecast_vnd: govbroker_domain::billing::forecast(
            total,
            now - month.start(),
            month.seconds(),
        )
        .0,
        budget_used_percent: None,
        thresholds_reached: Vec::new(),
    };
    if let Some(budget) = &agency.spec.budget {
        let b = budget_status(
            Vnd(budget.monthly_vnd),
            &budget.alert_thresholds,
            month,
            total,
            now,
        );
        status.budget_used_percent = Some(b.percent_used);
        status.thresholds_reached = b.thresholds_reached;
        status.forecast_vnd = b.forecast.0;
    }
    status
}

/// The agency's `BudgetThreshold` condition (see [`budget_condition`]), or none when it
/// has no budget (applying no condition removes the one this field manager set before).
pub fn budget_condition_of(
    agency: &Agency,
    month: Month,
    cost: &AgencyCostStatus,
    previous: Option<&Condition>,
    now: i64,
) -> Option<Condition> {
    let budget = agency.spec.budget.as_ref()?;
    let status = BudgetStatus {
        budget: Vnd(budget.monthly_vnd),
        month_to_date: Vnd(cost.month_to_date_vnd),
        forecast: Vnd(cost.forecast_vnd),
        percent_used: cost.budget_used_percent.unwrap_or_default(),
        thresholds_reached: cost.thresholds_reached.clone(),
    };
    let now = k8s_openapi::jiff::Timestamp::from_second(now)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    Some(budget_condition(
        month,
        &status,
        previous,
        agency.metadata.generation,
        Time(now),
    ))
}

/// Rates every agency's month so far and updates its status, Events and gauges, and
/// drops the gauges of agencies that are gone. Errors of one agency (no price list,
/// unpriced usage) are logged and skip it.
pub async fn update_all(
    client: &Client,
    ledger: &UsageLedger,
    gauges: &CostGauges,
    recorder: &Recorder,
) -> Result<usize, kube::Error> {
    let now = jiff::Timestamp::now().as_second();
    let month = Day::of(now).month();
    let agencies: Api<Agency> = Api::all(client.clone());
    let lists: Api<PriceList> = Api::all(client.clone());
    let mut schedules: BTreeMap<String, Option<PriceSchedule>> = BTreeMap::new();
    let mut updated = 0;
    let mut live = LiveSeries::default();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = agencies.list(&params).await?;
        for agency in &page.items {
            let name = agency.name_any();
            gauges.set_quota(agency, &mut live);
            let list_name = agency
                .spec
                .price_list
                .clone()
                .unwrap_or_else(|| DEFAULT_PRICE_LIST.to_owned());
            if !schedules.contains_key(&list_name) {
                let schedule = match lists.get_opt(&list_name).await? {
                    Some(pl) => schedule_for_month(&pl, month)
                        .map_err(|e| tracing::warn!(error = %e, "price list unusable"))
                        .ok(),
                    None => None,
                };
                schedules.insert(list_name.clone(), schedule);
            }
            let Some(schedule) = schedules[&list_name].as_ref() else {
                continue;
            };
            let days = match ledger.agency_month(&name, month).await {
                Ok(days) => days,
                Err(e) => {
                    tracing::warn!(error = %e, agency = %name, "cannot read usage");
                    continue;
                }
            };
            let invoice =
                match rate_month(&name, month, days.iter().map(|(d, u)| (*d, u)), schedule) {
                    Ok(i) => i,
                    Err(e) => {
                        tracing::warn!(error = %e, agency = %name, "cannot rate usage");
                        continue;
                    }
                };
            let status = cost_status(agency, month, invoice.total, now);
            gauges
                .month_to_date
                .with_label_values(&[&name])
                .set(status.month_to_date_vnd);
            if let Some(p) = status.budget_used_percent {
                gauges
                    .budget_percent
                    .with_label_values(&[&name])
                    .set(i64::from(p));
            }
            let previous = agency.status.as_ref().and_then(|s| s.cost.as_ref());
            let previous_condition = agency
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == BUDGET_CONDITION));
            let condition = budget_condition_of(agency, month, &status, previous_condition, now);
            if previous == Some(&status) && previous_condition == condition.as_ref() {
                continue;
            }
            for threshold in newly_reached(previous, month, &status.thresholds_reached) {
                let budget = agency.spec.budget.as_ref().map_or(0, |b| b.monthly_vnd);
                let event = Event {
                    type_: EventType::Warning,
                    reason: "BudgetThreshold".to_owned(),
                    note: Some(format!(
                        "month-to-date cost {} reached {threshold}% of the monthly budget {} ({month}); forecast to month end {}",
                        status.month_to_date,
                        format_vnd(Vnd(budget)),
                        format_vnd(Vnd(status.forecast_vnd))
                    )),
                    action: "Metering".to_owned(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &agency.object_ref(&())).await {
                    tracing::warn!(error = %e, agency = %name, "could not emit the budget Event");
                }
            }
            let patch = serde_json::json!({
                "apiVersion": Agency::api_version(&()),
                "kind": Agency::kind(&()),
                "status": {"cost": status, "conditions": condition.as_slice()},
            });
            agencies
                .patch_status(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(patch),
                )
                .await?;
            updated += 1;
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => {
                // Every agency has been listed: the series of those that are gone go.
                gauges.retain(&live);
                return Ok(updated);
            }
        }
    }
}

/// The Event recorder of the collector.
pub fn recorder(client: &Client, holder: &str) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(holder.to_owned()),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agency(budget: Option<i64>) -> Agency {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "govbroker.io/v1alpha1", "kind": "Agency",
            "metadata": {"name": "so-y-te"},
            "spec": {"displayName": "Sở Y tế", "level": "Central", "securityLevel": 2,
                "budget": budget.map(|b| serde_json::json!({"monthlyVnd": b}))}
        }))
        .unwrap()
    }

    #[test]
    fn quota_samples_are_in_base_units() {
        let mut a = agency(None);
        assert!(quota_samples(&a).is_empty());
        a.status = Some(
            serde_json::from_value(serde_json::json!({
                "quota": {"hard": {"cpu": "2", "memory": "1Gi", "pods": "10"},
                          "used": {"cpu": "500m", "memory": "256Mi"}}
            }))
            .unwrap(),
        );
        let samples = quota_samples(&a);
        assert_eq!(
            samples,
            vec![
                (QuotaResource::Cpu, Some(2.0), 0.5),
                (QuotaResource::Memory, Some(1_073_741_824.0), 268_435_456.0),
                (QuotaResource::Pods, Some(10.0), 0.0),
            ]
        );
    }

    #[test]
    fn series_of_deleted_agencies_and_removed_quotas_are_dropped() {
        let registry = Registry::new();
        let gauges = CostGauges::new(&registry);
        let with_quota = |name: &str, budget: Option<i64>, quota: serde_json::Value| {
            let mut a = agency(budget);
            a.metadata.name = Some(name.to_owned());
            a.status = Some(serde_json::from_value(serde_json::json!({"quota": quota})).unwrap());
            a
        };
        let quota = serde_json::json!({"hard": {"cpu": "2", "pods": "10"}, "used": {"cpu": "1"}});
        let mut live = LiveSeries::default();
        for a in [
            with_quota("so-a", Some(100), quota.clone()),
            with_quota("so-b", Some(100), quota.clone()),
        ] {
            gauges.set_quota(&a, &mut live);
            gauges
                .month_to_date
                .with_label_values(&[&a.name_any()])
                .set(5);
            gauges
                .budget_percent
                .with_label_values(&[&a.name_any()])
                .set(5);
        }
        gauges.retain(&live);
        let text = || {
            use prometheus::Encoder as _;
            let mut out = Vec::new();
            prometheus::TextEncoder::new()
                .encode(&registry.gather(), &mut out)
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text().matches("agency=\"so-b\"").count(), 6, "{}", text());

        // so-b is deleted; so-a loses its budget and its pods quota.
        let mut live = LiveSeries::default();
        let a = with_quota(
            "so-a",
            None,
            serde_json::json!({"hard": {"cpu": "2"}, "used": {"cpu": "1"}}),
        );
        gauges.set_quota(&a, &mut live);
        gauges.retain(&live);
        let after = text();
        assert!(!after.contains("so-b"), "{after}");
        assert!(!after.contains("resource=\"pods\""), "{after}");
        assert!(
            !after.contains("govbroker_agency_budget_used_percent{"),
            "{after}"
        );
        assert!(
            after.contains("govbroker_agency_quota_hard{agency=\"so-a\",resource=\"cpu\"} 2"),
            "{after}"
        );
        assert!(
            after.contains("govbroker_agency_month_to_date_cost_vnd{agency=\"so-a\"} 5"),
            "{after}"
        );
    }

    #[test]
    fn thresholds_fire_once_per_month() {
        let month: Month = "2026-11".parse().unwrap();
        let now = month.start() + 15 * 86_400;
        let status = cost_status(&agency(Some(1_000_000)), month, Vnd(850_000), now);
        assert_eq!(status.thresholds_reached, vec![50, 80]);
        assert_eq!(status.budget_used_percent, Some(85));
        assert_eq!(status.forecast_vnd, 1_700_000);
        assert_eq!(status.month_to_date, "850.000 ₫");
        assert_eq!(
            newly_reached(None, month, &status.thresholds_reached),
            vec![50, 80]
        );
        let before = AgencyCostStatus {
            thresholds_reached: vec![50],
            ..status.clone()
        };
        assert_eq!(newly_reached(Some(&before), month, &[50, 80]), vec![80]);
        let last_month = AgencyCostStatus {
            month: "2026-10".to_owned(),
            ..status.clone()
        };
        assert_eq!(newly_reached(Some(&last_month), month, &[50]), vec![50]);
        let none = cost_status(&agency(None), month, Vnd(10), now);
        assert_eq!(none.budget_used_percent, None);
        assert!(none.thresholds_reached.is_empty());
    }
}
