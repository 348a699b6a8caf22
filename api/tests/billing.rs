//! The Billing service against the real control plane, ledger and RBAC: bills rated
//! from usage records with a mid-month price change, the subtree roll-up, exports, and
//! who may read them.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use govbroker_api::proto;
use govbroker_api::proto::billing_client::BillingClient;
use govbroker_crds::{Agency, AgencyLevel, AgencySpec, Owners, PriceList};
use govbroker_domain::metering::{Attribution, Day, Integrator, Meter};
use govbroker_e2e::api::{FINANCE, PLATFORM_ADMINS};
use govbroker_e2e::{cluster, eventually, label_for_test, scenario, unique_name};
use govbroker_ledger::LedgerOptions;
use govbroker_ledger::usage::{AgencyCheckpoint, AgencyCommit, UsageLedger};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use tonic::Code;
use tonic::transport::Channel;

type Billing =
    BillingClient<tonic::service::interceptor::InterceptedService<Channel, support::Bearer>>;

async fn billing(token: &str) -> Result<Billing> {
    Ok(BillingClient::with_interceptor(
        support::channel().await?,
        support::Bearer(Some(token.to_owned())),
    ))
}

/// A bill exported as `client`, in `format` (csv or xlsx).
async fn export(
    client: &Billing,
    agency: &str,
    month: &str,
    format: &str,
) -> Result<proto::ExportBillResponse> {
    Ok(client
        .clone()
        .export_bill(proto::ExportBillRequest {
            agency: agency.to_owned(),
            month: month.to_owned(),
            format: format.to_owned(),
        })
        .await?
        .into_inner())
}

fn agency(
    name: &str,
    level: AgencyLevel,
    parent: Option<&str>,
    owner: &str,
    prices: &str,
) -> Agency {
    Agency::new(
        name,
        AgencySpec {
            budget: None,
            price_list: Some(prices.to_owned()),
            display_name: format!("Cơ quan {name}"),
            level,
            parent: parent.map(str::to_owned),
            security_level: 2,
            owners: Owners {
                users: vec![owner.to_owned()],
                ..Default::default()
            },
            viewers: Owners::default(),
            environments: Vec::new(),
            quota: Default::default(),
        },
    )
}

/// Usage of one agency: `seconds` of `rate` milli-cores (or bytes) on `day`.
fn usage(
    integrator: &mut Integrator,
    agency: &str,
    day: &str,
    meter: Meter,
    rate: u64,
    seconds: i64,
) -> Result<()> {
    let start = day.parse::<Day>()?.start() + 3600;
    let who = Attribution {
        agency: agency.to_owned(),
        environment: "prod".to_owned(),
        namespace: format!("{agency}-prod"),
        workload: "Workload/cong".to_owned(),
    };
    let key = format!("{agency}/{day}/{}", meter.label());
    integrator.observe(&key, start, Some((who, vec![(meter, rate)])));
    integrator.observe(&key, start + seconds, None);
    Ok(())
}

/// Writes what `integrator` observed into the API's ledger, as collector `test-<id>`.
async fn write_usage(mut integrator: Integrator, id: &str) -> Result<()> {
    let ledger = UsageLedger::connect(
        &[govbroker_e2e::api::LEDGER_ENDPOINT.to_owned()],
        &support::server().ledger_prefix,
        LedgerOptions::default(),
    )
    .await?;
    let fence = ledger.acquire(&format!("test-{id}"), 10).await?;
    let mut commits: BTreeMap<String, AgencyCommit> = BTreeMap::new();
    for ((agency, day), buckets) in integrator.take_days() {
        commits
            .entry(agency.clone())
            .or_insert_with(|| AgencyCommit {
                checkpoint: AgencyCheckpoint {
                    agency: agency.clone(),
                    ..Default::default()
                },
                days: BTreeMap::new(),
                expected_revision: 0,
            })
            .days
            .insert(day, buckets);
    }
    let commits: Vec<AgencyCommit> = commits.into_values().collect();
    ledger.commit(&fence, &commits).await?;
    ledger.release(&fence).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bills_are_rated_rolled_up_exported_and_guarded() {
    support::server();
    scenario("api-billing", |t| async move {
        let id = unique_name("b");
        let (owner_p, owner_c, owner_x) = (
            format!("owner-p-{id}"),
            format!("owner-c-{id}"),
            format!("owner-x-{id}"),
        );
        let root = unique_name("tinh");
        let child = format!("{root}-xa");
        let other = unique_name("khac");
        let prices = unique_name("gia");

        // Prices: 720 ₫/vCPU-hour until the 15th, 800 from the 16th; memory 96 ₫/GiB-hour.
        let price_list: PriceList = serde_json::from_value(serde_json::json!({
            "apiVersion": "govbroker.io/v1alpha1", "kind": "PriceList",
            "metadata": {"name": prices},
            "spec": {"revisions": [{"revision": 1, "reason": "Quyết định thử", "rates": [
                {"effectiveFrom": "2026-01-01", "cpuPerVcpuHour": "720",
                 "memoryPerGibHour": "96", "storagePerGibMonth": "2976"},
                {"effectiveFrom": "2026-11-16", "cpuPerVcpuHour": "800",
                 "memoryPerGibHour": "96", "storagePerGibMonth": "2976"}]}]}
        }))?;
        let lists = Api::<PriceList>::all(t.client.clone());
        lists.create(&PostParams::default(), &price_list).await?;
        let result = async {
            let agencies = Api::<Agency>::all(t.client.clone());
            for mut ag in [
                agency(&root, AgencyLevel::Central, None, &owner_p, &prices),
                agency(
                    &child,
                    AgencyLevel::Province,
                    Some(&root),
                    &owner_c,
                    &prices,
                ),
                agency(&other, AgencyLevel::Central, None, &owner_x, &prices),
            ] {
                label_for_test(&mut ag, &t.namespace);
                agencies.create(&PostParams::default(), &ag).await?;
            }
            for name in [&root, &child, &other] {
                eventually(
                    &format!("agency {name} Ready"),
                    Duration::from_secs(60),
                    || {
                        let agencies = agencies.clone();
                        let name = name.clone();
                        async move {
                            let a = agencies.get(&name).await?;
                            Ok(a.status
                                .iter()
                                .flat_map(|s| &s.conditions)
                                .any(|c| c.type_ == "Ready" && c.status == "True")
                                .then_some(()))
                        }
                    },
                )
                .await?;
            }

            // Usage in the API's ledger: the child ran 1 vCPU for an hour on the 10th
            // and on the 20th (720 + 800 = 1,520 ₫); the root held 2 GiB for an hour
            // on the 5th (192 ₫).
            let mut integrator = Integrator::default();
            usage(
                &mut integrator,
                &child,
                "2026-11-10",
                Meter::Cpu,
                1000,
                3600,
            )?;
            usage(
                &mut integrator,
                &child,
                "2026-11-20",
                Meter::Cpu,
                1000,
                3600,
            )?;
            usage(
                &mut integrator,
                &root,
                "2026-11-05",
                Meter::Memory,
                2 << 30,
                3600,
            )?;
            write_usage(integrator, &id).await?;

            let c = cluster();
            let as_parent = billing(&c.token(&owner_p, &[])?).await?;
            let as_child = billing(&c.token(&owner_c, &[])?).await?;
            let as_other = billing(&c.token(&owner_x, &[])?).await?;
            let as_finance = billing(&c.token(&format!("fin-{id}"), &[FINANCE])?).await?;
            let get = |agency: &str| proto::GetBillRequest {
                agency: agency.to_owned(),
                month: "2026-11".to_owned(),
                price_list_revision: 0,
            };

            // RBAC takes a moment to reach the API's authorizer cache: retry the first.
            let bill = eventually(
                "the parent's owner reads the commune's bill",
                Duration::from_secs(30),
                || {
                    let mut client = as_parent.clone();
                    let req = get(&child);
                    async move { Ok(client.get_bill(req).await.ok().map(|r| r.into_inner())) }
                },
            )
            .await?;
            ensure!(bill.total_vnd == 1_520, "commune bill: {bill:#?}");
            ensure!(bill.total == "1.520 ₫");
            ensure!(bill.lines.len() == 2, "{bill:#?}");
            ensure!(bill.lines[0].amount_vnd == 720 && bill.lines[0].to == "2026-11-15");
            ensure!(bill.lines[1].amount_vnd == 800 && bill.lines[1].from == "2026-11-16");
            let province = as_parent.clone().get_bill(get(&root)).await?.into_inner();
            ensure!(province.total_vnd == 192, "{province:#?}");
            ensure!(province.subtree_total_vnd == 1_712, "{province:#?}");
            let list = as_finance
                .clone()
                .list_bills(proto::ListBillsRequest {
                    agency: root.clone(),
                    month: "2026-11".to_owned(),
                })
                .await?
                .into_inner();
            ensure!(list.bills.len() == 2, "{list:#?}");
            ensure!(list.bills[0].agency == root && list.bills[0].subtree_total_vnd == 1_712);
            ensure!(list.bills[1].agency == child && list.bills[1].total_vnd == 1_520);
            let csv = export(&as_child, &child, "2026-11", "csv").await?;
            ensure!(csv.file_name == format!("{child}-2026-11.csv"));
            ensure!(
                csv.content.contains(",TOTAL,") && csv.content.contains(",1520,"),
                "{}",
                csv.content
            );

            let xlsx = export(&as_child, &child, "2026-11", "xlsx").await?;
            ensure!(xlsx.file_name.ends_with(".xlsx") && xlsx.content_base64.starts_with("UEs"));

            // A child's owner cannot read the parent's bill; another agency reads none.
            let denied = as_child.clone().get_bill(get(&root)).await;
            ensure!(
                matches!(&denied, Err(s) if s.code() == Code::PermissionDenied),
                "{denied:?}"
            );
            let denied = as_other.clone().get_bill(get(&child)).await;
            ensure!(
                matches!(&denied, Err(s) if s.code() == Code::PermissionDenied),
                "{denied:?}"
            );
            let bad = as_finance
                .clone()
                .get_bill(proto::GetBillRequest {
                    month: "2026-13".to_owned(),
                    ..get(&child)
                })
                .await;
            ensure!(
                matches!(&bad, Err(s) if s.code() == Code::InvalidArgument),
                "{bad:?}"
            );

            // The HTTP face.
            let response = support::http()?
                .get(format!(
                    "{}/v1/bills/{child}?month=2026-11",
                    support::server().url
                ))
                .bearer_auth(c.token(&owner_c, &[])?)
                .send()
                .await?;
            ensure!(response.status() == 200, "HTTP {}", response.status());
            let json: serde_json::Value = response.json().await?;
            ensure!(json["totalVnd"] == "1520", "{json}");
            anyhow::Ok(())
        }
        .await;
        let _ = lists.delete(&prices, &DeleteParams::default()).await;
        result.context("billing scenario")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_read_and_past_months_are_re_rated_by_admins_keeping_earlier_bills() {
    support::server();
    scenario("api-billing-rerate", |t| async move {
        let id = unique_name("r");
        let owner = format!("owner-{id}");
        let stranger = format!("stranger-{id}");
        let name = unique_name("so-gtvt");
        let other = unique_name("khac");
        let prices = unique_name("gia");
        // Revision 1: 720 ₫/vCPU-hour. Revision 2 (the latest, a mistake): 900 ₫.
        let rates = |cpu: &str| {
            serde_json::json!([{"effectiveFrom": "2026-01-01", "cpuPerVcpuHour": cpu,
                "memoryPerGibHour": "96", "storagePerGibMonth": "2976"}])
        };
        let price_list: PriceList = serde_json::from_value(serde_json::json!({
            "apiVersion": "govbroker.io/v1alpha1", "kind": "PriceList",
            "metadata": {"name": prices},
            "spec": {"revisions": [
                {"revision": 1, "reason": "Quyết định 1", "rates": rates("720")},
                {"revision": 2, "reason": "Quyết định 2 (nhầm)", "rates": rates("900")}]}
        }))?;
        let lists = Api::<PriceList>::all(t.client.clone());
        lists.create(&PostParams::default(), &price_list).await?;
        let result = async {
            let agencies = Api::<Agency>::all(t.client.clone());
            for (agency_name, agency_owner) in [(&name, &owner), (&other, &stranger)] {
                let mut ag = agency(
                    agency_name,
                    AgencyLevel::Central,
                    None,
                    agency_owner,
                    &prices,
                );
                label_for_test(&mut ag, &t.namespace);
                agencies.create(&PostParams::default(), &ag).await?;
            }
            // One vCPU for an hour on 10 October; 2 GiB for an hour on 2 November.
            let mut integrator = Integrator::default();
            usage(&mut integrator, &name, "2026-10-10", Meter::Cpu, 1000, 3600)?;
            usage(
                &mut integrator,
                &name,
                "2026-11-02",
                Meter::Memory,
                2 << 30,
                3600,
            )?;
            write_usage(integrator, &id).await?;

            let c = cluster();
            let as_owner = billing(&c.token(&owner, &[])?).await?;
            let as_stranger = billing(&c.token(&stranger, &[])?).await?;
            let as_finance = billing(&c.token(&format!("fin-{id}"), &[FINANCE])?).await?;
            let as_admin = billing(&c.token(&format!("admin-{id}"), &[PLATFORM_ADMINS])?).await?;

            // Usage: integer quantities by workload and resource, across a month end.
            let period = |from: &str, to: &str| proto::GetUsageRequest {
                agency: name.clone(),
                from: from.to_owned(),
                to: to.to_owned(),
            };
            let usage = eventually(
                "the owner reads the agency's usage",
                Duration::from_secs(60),
                || {
                    let mut client = as_owner.clone();
                    let req = period("2026-10-01", "2026-11-30");
                    async move { Ok(client.get_usage(req).await.ok().map(|r| r.into_inner())) }
                },
            )
            .await?;
            ensure!(usage.days_recorded == 2, "{usage:#?}");
            ensure!(usage.lines.len() == 2, "{usage:#?}");
            let cpu = &usage.lines[0];
            ensure!(
                cpu.resource == "cpu"
                    && cpu.quantity == "3600000"
                    && cpu.unit == "milli-core-seconds"
                    && cpu.workload == "Workload/cong"
                    && cpu.environment == "prod"
                    && cpu.unobserved_bound == "0",
                "{cpu:#?}"
            );
            let memory = &usage.lines[1];
            ensure!(
                memory.resource == "memory" && memory.quantity == ((2u128 << 30) * 3600).to_string(),
                "{memory:#?}"
            );
            let october_end = as_owner
                .clone()
                .get_usage(period("2026-10-11", "2026-10-31"))
                .await?
                .into_inner();
            ensure!(october_end.lines.is_empty() && october_end.days_recorded == 0);
            let backwards = as_owner
                .clone()
                .get_usage(period("2026-10-31", "2026-10-01"))
                .await;
            ensure!(
                matches!(&backwards, Err(s) if s.code() == Code::InvalidArgument),
                "{backwards:?}"
            );
            let denied = as_stranger
                .clone()
                .get_usage(period("2026-10-01", "2026-10-31"))
                .await;
            ensure!(
                matches!(&denied, Err(s) if s.code() == Code::PermissionDenied),
                "{denied:?}"
            );

            // October on request: the latest revision (900 ₫).
            let get = || proto::GetBillRequest {
                agency: name.clone(),
                month: "2026-10".to_owned(),
                price_list_revision: 0,
            };
            let before = as_finance.clone().get_bill(get()).await?.into_inner();
            ensure!(before.total_vnd == 900 && before.price_list_revision == 2, "{before:#?}");
            ensure!(before.earlier_versions.is_empty() && before.rerate_reason.is_empty());

            // Only platform admins re-rate, only past months, only with a reason.
            let rerate = |revision: i32, reason: &str| proto::RerateBillRequest {
                agency: name.clone(),
                month: "2026-10".to_owned(),
                price_list_revision: revision,
                reason: reason.to_owned(),
            };
            for client in [&as_owner, &as_finance] {
                let denied = client.clone().rerate_bill(rerate(1, "sửa")).await;
                ensure!(
                    matches!(&denied, Err(s) if s.code() == Code::PermissionDenied),
                    "{denied:?}"
                );
            }
            let no_reason = as_admin.clone().rerate_bill(rerate(1, "")).await;
            ensure!(
                matches!(&no_reason, Err(s) if s.code() == Code::InvalidArgument),
                "{no_reason:?}"
            );
            let this_month = as_admin
                .clone()
                .rerate_bill(proto::RerateBillRequest {
                    month: Day::of(jiff::Timestamp::now().as_second())
                        .month()
                        .to_string(),
                    ..rerate(1, "sửa")
                })
                .await;
            ensure!(
                matches!(&this_month, Err(s) if s.code() == Code::InvalidArgument),
                "{this_month:?}"
            );

            // Re-rated with revision 1: 720 ₫ is the bill now; 900 ₫ stays listed.
            let reason = "Quyết định 3/QĐ-STC: revision 2 was wrong";
            let rerated = as_admin
                .clone()
                .rerate_bill(rerate(1, reason))
                .await?
                .into_inner();
            ensure!(
                rerated.total_vnd == 720 && rerated.price_list_revision == 1,
                "{rerated:#?}"
            );
            let bill = as_owner.clone().get_bill(get()).await?.into_inner();
            ensure!(bill.total_vnd == 720 && bill.rerate_reason == reason, "{bill:#?}");
            ensure!(bill.rerated_by == format!("admin-{id}") && !bill.rerated_at.is_empty());
            ensure!(bill.earlier_versions.len() == 1, "{bill:#?}");
            ensure!(
                bill.earlier_versions[0].total_vnd == 900
                    && bill.earlier_versions[0].price_list_revision == 2,
                "{bill:#?}"
            );
            let csv = export(&as_owner, &name, "2026-10", "csv").await?;
            ensure!(csv.content.contains(",720,"), "{}", csv.content);

            // Through the HTTP face, a second re-rate: both earlier bills are kept.
            let response = support::http()?
                .post(format!(
                    "{}/v1/bills/{name}/rerate?month=2026-10&priceListRevision=2&reason=l%E1%BA%A7n%202",
                    support::server().url
                ))
                .bearer_auth(c.token(&format!("admin-{id}"), &[PLATFORM_ADMINS])?)
                .send()
                .await?;
            ensure!(response.status() == 200, "HTTP {}", response.status());
            let bill = as_owner.clone().get_bill(get()).await?.into_inner();
            ensure!(bill.total_vnd == 900 && bill.rerate_reason == "lần 2", "{bill:#?}");
            let earlier: Vec<i64> = bill.earlier_versions.iter().map(|v| v.total_vnd).collect();
            ensure!(earlier == vec![900, 720], "{bill:#?}");
            let response = support::http()?
                .get(format!(
                    "{}/v1/usage/{name}?from=2026-10-01&to=2026-10-31",
                    support::server().url
                ))
                .bearer_auth(c.token(&owner, &[])?)
                .send()
                .await?;
            ensure!(response.status() == 200, "HTTP {}", response.status());
            let json: serde_json::Value = response.json().await?;
            ensure!(json["lines"][0]["quantity"] == "3600000", "{json}");
            anyhow::Ok(())
        }
        .await;
        let _ = lists.delete(&prices, &DeleteParams::default()).await;
        result.context("re-rating scenario")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_month_keeps_the_price_list_revision_in_force_when_it_ended() {
    support::server();
    scenario("api-billing-revision-in-force", |t| async move {
        let id = unique_name("v");
        let owner = format!("owner-{id}");
        let name = unique_name("so-tc");
        let prices = unique_name("gia");
        let revision = |n: i32, adopted: &str, cpu: &str| {
            serde_json::json!({"revision": n, "reason": format!("Quyết định {n}"),
                "adoptedOn": adopted,
                "rates": [{"effectiveFrom": "2026-01-01", "cpuPerVcpuHour": cpu,
                           "memoryPerGibHour": "96", "storagePerGibMonth": "2976"}]})
        };
        let price_list: PriceList = serde_json::from_value(serde_json::json!({
            "apiVersion": "govbroker.io/v1alpha1", "kind": "PriceList",
            "metadata": {"name": prices},
            "spec": {"revisions": [revision(1, "2026-01-01", "720")]}
        }))?;
        let lists = Api::<PriceList>::all(t.client.clone());
        lists.create(&PostParams::default(), &price_list).await?;
        let result = async {
            let agencies = Api::<Agency>::all(t.client.clone());
            let mut ag = agency(&name, AgencyLevel::Central, None, &owner, &prices);
            label_for_test(&mut ag, &t.namespace);
            agencies.create(&PostParams::default(), &ag).await?;
            // One vCPU for an hour on 10 October, and on the first day of this month.
            let this_month = Day::of(jiff::Timestamp::now().as_second()).month();
            let first_day = this_month.first_day().to_string();
            let mut integrator = Integrator::default();
            usage(&mut integrator, &name, "2026-10-10", Meter::Cpu, 1000, 3600)?;
            usage(&mut integrator, &name, &first_day, Meter::Cpu, 1000, 3600)?;
            write_usage(integrator, &id).await?;

            let c = cluster();
            let as_finance = billing(&c.token(&format!("fin-{id}"), &[FINANCE])?).await?;
            let get = |month: &str, revision: i32| proto::GetBillRequest {
                agency: name.clone(),
                month: month.to_owned(),
                price_list_revision: revision,
            };
            let october = eventually(
                "finance reads October's bill",
                Duration::from_secs(60),
                || {
                    let mut client = as_finance.clone();
                    let req = get("2026-10", 0);
                    async move { Ok(client.get_bill(req).await.ok().map(|r| r.into_inner())) }
                },
            )
            .await?;
            ensure!(
                october.total_vnd == 720 && october.price_list_revision == 1,
                "{october:#?}"
            );

            // After October, the price list gets revision 2 (900 ₫ from January on),
            // adopted on the first day of this month.
            let mut current = lists.get(&prices).await?;
            current
                .spec
                .revisions
                .push(serde_json::from_value(revision(2, &first_day, "900"))?);
            lists
                .replace(&prices, &PostParams::default(), &current)
                .await?;

            // October's bill is unchanged: revision 1 was in force when it ended.
            let october_after = as_finance
                .clone()
                .get_bill(get("2026-10", 0))
                .await?
                .into_inner();
            ensure!(
                october_after.total_vnd == 720 && october_after.price_list_revision == 1,
                "{october_after:#?}"
            );
            let csv = export(&as_finance, &name, "2026-10", "csv").await?;
            ensure!(csv.content.contains(",720,"), "{}", csv.content);
            // Revision 2 would bill it 900 ₫: only a re-rate or a preview uses it.
            let preview = as_finance
                .clone()
                .get_bill(get("2026-10", 2))
                .await?
                .into_inner();
            ensure!(
                preview.total_vnd == 900 && preview.price_list_revision == 2,
                "{preview:#?}"
            );
            // This month is billed with revision 2, in force since its first day.
            let now = as_finance
                .clone()
                .get_bill(get(&this_month.to_string(), 0))
                .await?
                .into_inner();
            ensure!(
                now.total_vnd == 900 && now.price_list_revision == 2,
                "{now:#?}"
            );
            anyhow::Ok(())
        }
        .await;
        let _ = lists.delete(&prices, &DeleteParams::default()).await;
        result.context("revision in force scenario")
    })
    .await;
}
