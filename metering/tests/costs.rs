//! Month-to-date cost and budgets on the real control plane: the collector's cost pass
//! writes `Agency.status.cost`, the `BudgetThreshold` condition and one `BudgetThreshold`
//! Event per threshold; an enforced, spent budget refuses new workloads, scale-ups and
//! larger resource requests at the operator's admission webhook until a platform admin
//! raises it; the collector's `/metrics` shows each agency's quota, cost and budget
//! used, and drops a deleted agency's series.
//!
//! Run under the shared lock: `flock /tmp/govbroker-cluster.lock cargo test -p
//! govbroker-metering --test costs`.

mod support;

use std::hash::{BuildHasher, Hasher};

use anyhow::{Context, ensure};
use govbroker_crds::{Agency, PriceList, Workload};
use govbroker_domain::metering::Day;
use govbroker_e2e::{
    DEFAULT_TIMEOUT, create_agency, eventually, scenario, unique_name, wait_agency_ready, wait_for,
};
use govbroker_metering::Metrics;
use govbroker_metering::costs;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use support::{commit_cpu, cpu_price_list};
use tokio_util::sync::CancellationToken;

/// A cost pass rates and writes every agency in the cluster, from its own test's ledger
/// prefix, so the tests here take turns: another test's pass would reset this test's
/// agency's cost and condition in the middle of its checks.
static COST_PASSES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn budgets_are_tracked_in_the_agency_status() {
    let _turn = COST_PASSES.lock().await;
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let prefix = format!("/govbroker-test-costs-{random:016x}");
    // The agency webhook must answer for Agencies to be created.
    let operator = govbroker_e2e::api::workspace_binary("govbroker-operator", "govbroker-operator")
        .expect("the operator binary");
    govbroker_e2e::operator(operator.to_str().expect("a UTF-8 path"));
    scenario("metering-costs", |t| async move {
        let name = unique_name("so-tai-chinh");
        let prices = cpu_price_list(&t.client).await?;
        let result = async {
            create_agency(
                &t,
                &name,
                serde_json::json!({"displayName": "Sở Tài chính", "level": "Central",
                    "securityLevel": 2, "owners": {"users": ["ke-toan@stc.gov.vn"]},
                    "priceList": prices,
                    "budget": {"monthlyVnd": 10000, "alertThresholds": [50, 80, 100]}}),
            )
            .await?;
            let agencies = Api::<Agency>::all(t.client.clone());

            // Today, 6 vCPU-hours: 6,000 ₫ of a 10,000 ₫ budget.
            let ledger = commit_cpu(&prefix, &name, 6).await?;
            let today = Day::of(jiff::Timestamp::now().as_second());
            let metrics = Metrics::new();
            let recorder = costs::recorder(&t.client, "test");
            costs::update_all(&t.client, &ledger, &metrics.costs, &recorder).await?;
            let cost = agencies
                .get(&name)
                .await?
                .status
                .and_then(|s| s.cost)
                .context("status.cost")?;
            ensure!(cost.month_to_date_vnd == 6_000, "{cost:?}");
            ensure!(cost.month_to_date == "6.000 ₫");
            ensure!(cost.budget_used_percent == Some(60));
            ensure!(cost.thresholds_reached == vec![50]);
            ensure!(cost.month == today.month().to_string());
            ensure!(
                metrics
                    .costs
                    .month_to_date
                    .with_label_values(&[&name])
                    .get()
                    == 6_000
            );
            // A second pass changes nothing and emits no second Event.
            costs::update_all(&t.client, &ledger, &metrics.costs, &recorder).await?;
            let events = Api::<Event>::all(t.client.clone())
                .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
                .await?;
            let budget: Vec<_> = events
                .items
                .iter()
                .filter(|e| e.reason.as_deref() == Some("BudgetThreshold"))
                .collect();
            ensure!(budget.len() == 1, "{budget:#?}");
            ensure!(
                budget[0]
                    .message
                    .as_deref()
                    .unwrap_or_default()
                    .contains("reached 50%"),
                "{budget:#?}"
            );
            ensure!(budget[0].series.is_none(), "{budget:#?}");
            // The condition says the same, once.
            let status = agencies.get(&name).await?.status.context("status")?;
            let condition = status
                .conditions
                .iter()
                .find(|c| c.type_ == "BudgetThreshold")
                .context("the BudgetThreshold condition")?;
            ensure!(
                condition.status == "True" && condition.reason == "Reached50Percent",
                "{condition:?}"
            );
            ensure!(
                condition.message.contains(
                    "month-to-date cost 6.000 ₫ reached 50% of the monthly budget 10.000 ₫"
                ),
                "{condition:?}"
            );
            anyhow::Ok(())
        }
        .await;
        cleanup(&t.client, &prices, &prefix).await;
        result
    })
    .await;
}

/// Deletes a test's PriceList and its ledger keys.
async fn cleanup(client: &kube::Client, prices: &str, prefix: &str) {
    let _ = Api::<PriceList>::all(client.clone())
        .delete(prices, &DeleteParams::default())
        .await;
    if let Err(e) = govbroker_e2e::api::clear_ledger(prefix) {
        eprintln!("could not delete the test's ledger keys under {prefix}/: {e:#}");
    }
}

/// The value of the first sample of `metric` whose labels contain every one of `labels`.
fn sample(exposition: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The collector's `/metrics`, served by its own server on a free port and scraped over
/// HTTP.
async fn scrape(metrics: &Metrics) -> anyhow::Result<String> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let serving = CancellationToken::new();
    let server = tokio::spawn(metrics.clone().serve(addr, serving.clone()));
    let exposition = eventually("the collector's metrics", DEFAULT_TIMEOUT, || async {
        // A blocking GET: off the test's one runtime thread, which serves it.
        let got = tokio::task::spawn_blocking(move || {
            govbroker_e2e::http_get(&addr.to_string(), "/metrics")
        })
        .await?;
        Ok(got
            .ok()
            .filter(|(code, _)| *code == 200)
            .map(|(_, body)| body))
    })
    .await;
    serving.cancel();
    let _ = server.await;
    exposition
}

fn workload(name: &str, replicas: i32) -> anyhow::Result<Workload> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "govbroker.io/v1alpha1", "kind": "Workload",
        "metadata": {"name": name},
        "spec": {"image": "registry.gov.vn/so-tai-chinh/ke-toan:1", "replicas": replicas,
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}
    }))?)
}

/// The message of a refused request, or an error when it was admitted.
fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> anyhow::Result<String> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 403 => Ok(e.message),
        other => anyhow::bail!("expected a refusal (403), got {other:?}"),
    }
}

#[tokio::test]
async fn an_enforced_budget_refuses_new_workloads_scale_ups_and_larger_requests_until_raised() {
    let _turn = COST_PASSES.lock().await;
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let prefix = format!("/govbroker-test-budget-{random:016x}");
    let operator = govbroker_e2e::api::workspace_binary("govbroker-operator", "govbroker-operator")
        .expect("the operator binary");
    govbroker_e2e::operator(operator.to_str().expect("a UTF-8 path"));
    scenario("metering-budget-enforced", |t| async move {
        let name = unique_name("so-ke-hoach");
        let prices = cpu_price_list(&t.client).await?;
        let result = async {
            let quota =
                serde_json::json!({"cpu": "4", "memory": "4Gi", "pods": "20", "services": "5"});
            create_agency(
                &t,
                &name,
                serde_json::json!({"displayName": "Sở Kế hoạch và Đầu tư", "level": "Central",
                    "securityLevel": 2, "priceList": prices,
                    "environments": [{"name": "prod", "quota": quota}], "quota": quota,
                    "budget": {"monthlyVnd": 5000, "alertThresholds": [50, 100],
                        "enforce": true}}),
            )
            .await?;
            let agencies = Api::<Agency>::all(t.client.clone());
            let namespace = format!("{name}-prod");
            wait_agency_ready(&t, &name).await?;
            let workloads = Api::<Workload>::namespaced(t.client.clone(), &namespace);
            let pp = PostParams::default();
            // Nothing spent yet: admitted.
            workloads
                .create(&pp, &workload("cong-thong-tin", 1)?)
                .await?;

            // 6 vCPU-hours: 6.000 ₫ of a 5.000 ₫ budget.
            let ledger = commit_cpu(&prefix, &name, 6).await?;
            let metrics = Metrics::new();
            let recorder = costs::recorder(&t.client, "test");
            costs::update_all(&t.client, &ledger, &metrics.costs, &recorder).await?;

            // Scraped from the collector's /metrics: the quota per resource, the cost
            // and the budget used.
            let exposition = scrape(&metrics).await?;
            let agency_label = format!("agency=\"{name}\"");
            for (metric, labels, want) in [
                ("govbroker_agency_quota_hard", "resource=\"cpu\"", 4.0),
                (
                    "govbroker_agency_quota_hard",
                    "resource=\"memory\"",
                    4.0 * 1024f64.powi(3),
                ),
                ("govbroker_agency_quota_hard", "resource=\"pods\"", 20.0),
                ("govbroker_agency_month_to_date_cost_vnd", "", 6000.0),
                ("govbroker_agency_budget_used_percent", "", 120.0),
            ] {
                let got = sample(&exposition, metric, &[&agency_label, labels]);
                ensure!(
                    got == Some(want),
                    "{metric}{{{labels}}} = {got:?}, want {want}:\n{exposition}"
                );
            }
            ensure!(
                sample(
                    &exposition,
                    "govbroker_agency_quota_used",
                    &[&agency_label, "resource=\"cpu\""]
                )
                .is_some(),
                "no quota used series:\n{exposition}"
            );

            // The webhook reads the cost from its agency cache: wait until it refuses.
            let message = eventually(
                "the spent budget to refuse a new workload",
                DEFAULT_TIMEOUT,
                || async {
                    match workloads.create(&pp, &workload("bao-cao", 1)?).await {
                        Ok(_) => {
                            workloads
                                .delete("bao-cao", &DeleteParams::default())
                                .await?;
                            Ok(None)
                        }
                        Err(e) => refusal::<()>(Err(e)).map(Some),
                    }
                },
            )
            .await?;
            for part in [
                &format!("agency {name} has spent 6.000 ₫"),
                "monthly budget of 5.000 ₫",
                "spec.budget.enforce",
                &format!("kubectl patch agency {name}"),
            ] {
                ensure!(message.contains(part), "{part:?} missing from: {message}");
            }
            // A scale-up through the workload and through its scale subresource: refused.
            let up = serde_json::json!({"spec": {"replicas": 3}});
            refusal(
                workloads
                    .patch(
                        "cong-thong-tin",
                        &PatchParams::default(),
                        &Patch::Merge(&up),
                    )
                    .await,
            )?;
            let message = refusal(
                workloads
                    .patch_scale(
                        "cong-thong-tin",
                        &PatchParams::default(),
                        &Patch::Merge(&up),
                    )
                    .await,
            )?;
            ensure!(message.contains("budget"), "{message}");
            // Scaling down stays allowed.
            let down = serde_json::json!({"spec": {"replicas": 0}});
            workloads
                .patch_scale(
                    "cong-thong-tin",
                    &PatchParams::default(),
                    &Patch::Merge(&down),
                )
                .await?;
            // Larger requests per replica: refused, naming what grows; smaller: admitted.
            let requests = |cpu: &str, memory: &str| {
                serde_json::json!({"spec": {"resources": {"requests": {"cpu": cpu, "memory": memory}}}})
            };
            let message = refusal(
                workloads
                    .patch(
                        "cong-thong-tin",
                        &PatchParams::default(),
                        &Patch::Merge(&requests("500m", "128Mi")),
                    )
                    .await,
            )?;
            for part in [
                "raising the requests per replica (cpu from 100m to 500m) is refused",
                &format!("agency {name} has spent 6.000 ₫"),
                "lowering requests",
            ] {
                ensure!(message.contains(part), "{part:?} missing from: {message}");
            }
            refusal(
                workloads
                    .patch(
                        "cong-thong-tin",
                        &PatchParams::default(),
                        &Patch::Merge(&requests("100m", "1Gi")),
                    )
                    .await,
            )?;
            let lowered = workloads
                .patch(
                    "cong-thong-tin",
                    &PatchParams::default(),
                    &Patch::Merge(&requests("50m", "64Mi")),
                )
                .await?;
            ensure!(
                lowered.spec.resources.requests.cpu.as_ref().map(|q| q.0.as_str()) == Some("50m"),
                "{:?}",
                lowered.spec.resources
            );

            // A platform admin raises the budget: new workloads are admitted again, and
            // the agency controller's status write keeps the collector's condition.
            let raise = serde_json::json!({"spec": {"budget": {"monthlyVnd": 20000}}});
            let raised = agencies
                .patch(&name, &PatchParams::default(), &Patch::Merge(&raise))
                .await?;
            let generation = raised.metadata.generation;
            eventually(
                "a new workload to be admitted after the raise",
                DEFAULT_TIMEOUT,
                || async {
                    match workloads.create(&pp, &workload("bao-cao", 1)?).await {
                        Ok(_) => Ok(Some(())),
                        Err(kube::Error::Api(e)) if e.code == 403 => Ok(None),
                        Err(e) => Err(e.into()),
                    }
                },
            )
            .await?;
            let agency = wait_for(
                &agencies,
                &name,
                "the agency controller to observe the raise",
                DEFAULT_TIMEOUT,
                move |a: Option<&Agency>| {
                    a.and_then(|a| a.status.as_ref())
                        .is_some_and(|s| s.observed_generation == generation)
                },
            )
            .await?
            .context("the agency")?;
            let conditions = agency.status.context("status")?.conditions;
            let budget = conditions
                .iter()
                .find(|c| c.type_ == "BudgetThreshold")
                .context("the BudgetThreshold condition after the agency controller wrote")?;
            ensure!(budget.reason == "Reached100Percent", "{budget:?}");
            ensure!(
                conditions.iter().any(|c| c.type_ == "Ready"),
                "{conditions:?}"
            );
            anyhow::Ok(())
        }
        .await;
        cleanup(&t.client, &prices, &prefix).await;
        result
    })
    .await;
}

#[tokio::test]
async fn a_deleted_agencys_series_leave_the_collector_metrics() {
    let _turn = COST_PASSES.lock().await;
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let prefix = format!("/govbroker-test-gauges-{random:016x}");
    let operator = govbroker_e2e::api::workspace_binary("govbroker-operator", "govbroker-operator")
        .expect("the operator binary");
    govbroker_e2e::operator(operator.to_str().expect("a UTF-8 path"));
    scenario("metering-gauges-deleted", |t| async move {
        let gone = unique_name("so-giai-the");
        let kept = unique_name("so-con-lai");
        let prices = cpu_price_list(&t.client).await?;
        let result = async {
            let agencies = Api::<Agency>::all(t.client.clone());
            for name in [&gone, &kept] {
                create_agency(
                    &t,
                    name,
                    serde_json::json!({"displayName": "Sở thử", "level": "Central",
                        "securityLevel": 2, "priceList": prices,
                        "quota": {"cpu": "2", "pods": "10"}, "budget": {"monthlyVnd": 10000}}),
                )
                .await?;
                wait_for(
                    &agencies,
                    name,
                    "the agency's quota status",
                    DEFAULT_TIMEOUT,
                    |a: Option<&Agency>| {
                        a.and_then(|a| a.status.as_ref())
                            .and_then(|s| s.quota.as_ref())
                            .is_some_and(|q| !q.hard.is_empty())
                    },
                )
                .await?;
            }
            let ledger = commit_cpu(&prefix, &gone, 1).await?;
            let metrics = Metrics::new();
            let recorder = costs::recorder(&t.client, "test");
            costs::update_all(&t.client, &ledger, &metrics.costs, &recorder).await?;
            let exposition = scrape(&metrics).await?;
            let gone_label = format!("agency=\"{gone}\"");
            let kept_label = format!("agency=\"{kept}\"");
            for (metric, labels, want) in [
                ("govbroker_agency_quota_hard", "resource=\"cpu\"", 2.0),
                ("govbroker_agency_quota_used", "resource=\"cpu\"", 0.0),
                ("govbroker_agency_month_to_date_cost_vnd", "", 1000.0),
                ("govbroker_agency_budget_used_percent", "", 10.0),
            ] {
                let got = sample(&exposition, metric, &[&gone_label, labels]);
                ensure!(
                    got == Some(want),
                    "{metric}{{{labels}}} = {got:?}, want {want}:\n{exposition}"
                );
            }

            // The agency is deleted (the operator removes what it made); the next cost
            // pass drops every series labelled with it and keeps the other agency's.
            agencies.delete(&gone, &DeleteParams::default()).await?;
            wait_for(
                &agencies,
                &gone,
                "the agency to be gone",
                DEFAULT_TIMEOUT,
                |a: Option<&Agency>| a.is_none(),
            )
            .await?;
            costs::update_all(&t.client, &ledger, &metrics.costs, &recorder).await?;
            let exposition = scrape(&metrics).await?;
            let stale: Vec<&str> = exposition
                .lines()
                .filter(|l| l.contains(&gone_label))
                .collect();
            ensure!(stale.is_empty(), "series of the deleted agency: {stale:#?}");
            ensure!(
                sample(
                    &exposition,
                    "govbroker_agency_quota_hard",
                    &[&kept_label, "resource=\"cpu\""]
                ) == Some(2.0),
                "the kept agency lost its quota series:\n{exposition}"
            );
            ensure!(
                sample(
                    &exposition,
                    "govbroker_agency_month_to_date_cost_vnd",
                    &[&kept_label]
                ) == Some(0.0),
                "the kept agency lost its cost series:\n{exposition}"
            );
            anyhow::Ok(())
        }
        .await;
        cleanup(&t.client, &prices, &prefix).await;
        result
    })
    .await;
}
