//! A PostgreSQL data-service claim on the real broker and the local cloud's PostgreSQL:
//! the collector bills its instance per plan-hour and its database size
//! (`status.storageBytes`, measured by the broker) as storage over the same seconds.
//!
//! Run under the shared lock: `flock -o /tmp/govbroker-cluster.lock cargo test -p
//! govbroker-metering --test claim_storage`.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use govbroker_crds::{ClaimPhase, DataServiceClaim};
use govbroker_domain::billing::{PriceSchedule, RateSet, rate_month};
use govbroker_domain::metering::{Day, Meter};
use govbroker_e2e::data_services::{agency_for_claims, delete_local_class, local_class};
use govbroker_e2e::{DEFAULT_TIMEOUT, TestEnv, eventually, scenario, wait_for};
use govbroker_ledger::LedgerOptions;
use govbroker_ledger::usage::UsageLedger;
use govbroker_metering::{CollectorConfig, Metrics};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_databases_measured_size_is_billed_as_storage() {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let prefix = format!("/govbroker-test-claim-storage-{random:016x}");
    let operator = govbroker_e2e::api::workspace_binary("govbroker-operator", "govbroker-operator")
        .expect("the operator binary");
    govbroker_e2e::operator(operator.to_str().expect("a UTF-8 path"));
    let cleanup = prefix.clone();
    scenario("metering-claim-storage", |t| async move {
        let class = local_class(&t, "postgres").await?;
        let result = claim_storage(&t, &class, &prefix).await;
        delete_local_class(&t, &class).await;
        if let Err(e) = govbroker_e2e::api::clear_ledger(&cleanup) {
            eprintln!("could not delete the test's ledger keys under {cleanup}/: {e:#}");
        }
        result
    })
    .await;
}

async fn claim_storage(t: &TestEnv, class: &str, prefix: &str) -> Result<()> {
    let (agency, namespace) =
        agency_for_claims(t, "so-du-lieu", 2, "chu@test.gov.vn", &[(class, 1)]).await?;
    let stop = CancellationToken::new();
    let collector = tokio::spawn(govbroker_metering::run(
        t.client.clone(),
        CollectorConfig {
            endpoints: vec![govbroker_e2e::api::LEDGER_ENDPOINT.to_owned()],
            prefix: prefix.to_owned(),
            holder: "test-claim-storage".to_owned(),
            flush_interval: Duration::from_secs(1),
            lease_ttl: 3,
            ledger: LedgerOptions::default(),
            cost_interval: None,
        },
        Metrics::new(),
        stop.clone(),
    ));
    let claims: Api<DataServiceClaim> = Api::namespaced(t.client.clone(), &namespace);
    let claim: DataServiceClaim = serde_json::from_value(serde_json::json!({
        "apiVersion": "govbroker.io/v1alpha1", "kind": "DataServiceClaim",
        "metadata": {"name": "ho-so"},
        "spec": {"className": class, "plan": "nho", "deletionPolicy": "Delete"}
    }))?;
    claims.create(&PostParams::default(), &claim).await?;
    let result = async {
        let ready = wait_for(
            &claims,
            "ho-so",
            "the claim Ready with its size measured",
            DEFAULT_TIMEOUT,
            |c: Option<&DataServiceClaim>| {
                c.and_then(|c| c.status.as_ref()).is_some_and(|s| {
                    s.phase == Some(ClaimPhase::Ready) && s.storage_bytes.is_some()
                })
            },
        )
        .await?
        .context("the claim")?;
        let bytes = ready
            .status
            .as_ref()
            .and_then(|s| s.storage_bytes)
            .context("storageBytes")?;
        ensure!(bytes > 0, "a PostgreSQL database has a size: {bytes}");
        // Hold it for a few seconds of usage, then stop the collector (its last flush
        // counts up to the moment it stops).
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.cancel();
        collector.await??;

        let ledger = UsageLedger::connect(
            &[govbroker_e2e::api::LEDGER_ENDPOINT.to_owned()],
            prefix,
            LedgerOptions::default(),
        )
        .await?;
        let now = jiff::Timestamp::now().as_second();
        let month = Day::of(now).month();
        let days = ledger.agency_month(&agency, month).await?;
        let sum = |meter: &Meter| -> u128 {
            days.values()
                .flat_map(|d| d.usage.iter())
                .filter(|e| e.workload == "DataServiceClaim/ho-so" && &e.meter == meter)
                .map(|e| e.quantity.0)
                .sum()
        };
        let plan = Meter::DataService {
            class_name: class.to_owned(),
            plan: "nho".to_owned(),
        };
        let instance_seconds = sum(&plan);
        ensure!(instance_seconds >= 3, "instance-seconds: {days:#?}");
        // The same seconds, at the measured size: byte-seconds of storage.
        ensure!(
            sum(&Meter::Storage) == bytes as u128 * instance_seconds,
            "storage {} ≠ {bytes} B × {instance_seconds} s: {days:#?}",
            sum(&Meter::Storage)
        );
        // Rated at the storage rate: 2^30 × month-seconds byte-seconds per GiB-month.
        let rates = RateSet {
            effective_from: "2020-01-01".parse()?,
            cpu_per_vcpu_hour: "0".parse()?,
            memory_per_gib_hour: "0".parse()?,
            storage_per_gib_month: "1000000000".parse()?,
            data_service_per_plan_hour: BTreeMap::from([(
                (class.to_owned(), "nho".to_owned()),
                "3600".parse()?,
            )]),
        };
        let prices = PriceSchedule::new("test", 1, vec![rates])?;
        let invoice = rate_month(&agency, month, days.iter().map(|(d, u)| (*d, u)), &prices)?;
        let storage_line = invoice
            .lines
            .iter()
            .find(|l| l.meter == Meter::Storage && l.workload == "DataServiceClaim/ho-so")
            .context("a storage line for the claim")?;
        let unit = (1u128 << 30) * month.seconds() as u128;
        let numerator = bytes as u128 * instance_seconds * 1_000_000_000;
        let expected = ((2 * numerator + unit) / (2 * unit)) as i64;
        ensure!(
            storage_line.amount.0 == expected,
            "storage line {:?} ≠ hand-computed {expected}",
            storage_line.amount
        );
        anyhow::Ok(())
    }
    .await;
    // The broker drops the database before the class goes.
    let _ = claims.delete("ho-so", &DeleteParams::default()).await;
    let _ = eventually("the claim gone", DEFAULT_TIMEOUT, || async {
        Ok(claims.get_opt("ho-so").await?.is_none().then_some(()))
    })
    .await;
    result
}
