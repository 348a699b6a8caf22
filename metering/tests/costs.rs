//! Month-to-date cost and budgets on the real control plane: the collector's cost pass
//! writes `Agency.status.cost` and emits one `BudgetThreshold` Event per threshold.
//!
//! Run under the shared lock: `flock /tmp/govbroker-cluster.lock cargo test -p
//! govbroker-metering --test costs`.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

use anyhow::{Context, ensure};
use govbroker_crds::{Agency, PriceList};
use govbroker_domain::metering::{Attribution, Day, Integrator, Meter};
use govbroker_e2e::{label_for_test, scenario, unique_name};
use govbroker_ledger::LedgerOptions;
use govbroker_ledger::usage::{AgencyCheckpoint, AgencyCommit, UsageLedger};
use govbroker_metering::Metrics;
use govbroker_metering::costs;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};

#[tokio::test]
async fn budgets_are_tracked_in_the_agency_status() {
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
        let prices = unique_name("gia");
        let lists = Api::<PriceList>::all(t.client.clone());
        let pl: PriceList = serde_json::from_value(serde_json::json!({
            "apiVersion": "govbroker.io/v1alpha1", "kind": "PriceList",
            "metadata": {"name": prices},
            "spec": {"revisions": [{"revision": 1, "reason": "thử", "rates": [
                {"effectiveFrom": "2020-01-01", "cpuPerVcpuHour": "1000",
                 "memoryPerGibHour": "0", "storagePerGibMonth": "0"}]}]}
        }))?;
        lists.create(&PostParams::default(), &pl).await?;
        let result = async {
            let mut agency: Agency = serde_json::from_value(serde_json::json!({
                "apiVersion": "govbroker.io/v1alpha1", "kind": "Agency",
                "metadata": {"name": name},
                "spec": {"displayName": "Sở Tài chính", "level": "Central", "securityLevel": 2,
                    "owners": {"users": ["ke-toan@stc.gov.vn"]},
                    "priceList": prices,
                    "budget": {"monthlyVnd": 10000, "alertThresholds": [50, 80, 100]}}
            }))?;
            label_for_test(&mut agency, &t.namespace);
            let agencies = Api::<Agency>::all(t.client.clone());
            agencies.create(&PostParams::default(), &agency).await?;

            // Today, 6 vCPU-hours: 6,000 ₫ of a 10,000 ₫ budget.
            let ledger = UsageLedger::connect(
                &[govbroker_e2e::api::LEDGER_ENDPOINT.to_owned()],
                &prefix,
                LedgerOptions::default(),
            )
            .await?;
            let fence = ledger.acquire("test", 10).await?;
            let today = Day::of(jiff::Timestamp::now().as_second());
            let mut integrator = Integrator::default();
            let who = Attribution {
                agency: name.clone(),
                environment: "prod".into(),
                namespace: format!("{name}-prod"),
                workload: "Pod/x".into(),
            };
            integrator.observe("x", today.start(), Some((who, vec![(Meter::Cpu, 6000)])));
            integrator.observe("x", today.start() + 3600, None);
            let days = integrator
                .take_days()
                .into_iter()
                .map(|((_, d), b)| (d, b))
                .collect::<BTreeMap<_, _>>();
            let commit = AgencyCommit {
                checkpoint: AgencyCheckpoint {
                    agency: name.clone(),
                    ..Default::default()
                },
                days,
                expected_revision: 0,
            };
            ledger.commit(&fence, &[commit]).await?;

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
            anyhow::Ok(())
        }
        .await;
        let _ = lists.delete(&prices, &DeleteParams::default()).await;
        if let Ok(mut etcd) =
            etcd_client::Client::connect([govbroker_e2e::api::LEDGER_ENDPOINT], None).await
        {
            let _ = etcd
                .delete(
                    format!("{prefix}/"),
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                )
                .await;
        }
        result
    })
    .await;
}
