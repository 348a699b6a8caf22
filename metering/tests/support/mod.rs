//! What the metering tests share.

use std::collections::BTreeMap;

use govbroker_domain::metering::{Attribution, Day, Integrator, Meter};
use govbroker_ledger::LedgerOptions;
use govbroker_ledger::usage::{AgencyCheckpoint, AgencyCommit, UsageLedger};

/// Writes `vcpu_hours` of CPU today (one hour from local midnight) for `agency` into the
/// ledger under `prefix`, as a collector that then releases its fence (so a real
/// collector may take it at once); returns the ledger for reading.
pub async fn commit_cpu(
    prefix: &str,
    agency: &str,
    vcpu_hours: u64,
) -> anyhow::Result<UsageLedger> {
    let ledger = UsageLedger::connect(
        &[govbroker_e2e::api::LEDGER_ENDPOINT.to_owned()],
        prefix,
        LedgerOptions::default(),
    )
    .await?;
    let fence = ledger.acquire("test", 10).await?;
    let today = Day::of(jiff::Timestamp::now().as_second());
    let mut integrator = Integrator::default();
    let who = Attribution {
        agency: agency.to_owned(),
        environment: "prod".into(),
        namespace: format!("{agency}-prod"),
        workload: "Pod/x".into(),
    };
    integrator.observe(
        "x",
        today.start(),
        Some((who, vec![(Meter::Cpu, vcpu_hours * 1000)])),
    );
    integrator.observe("x", today.start() + 3600, None);
    let days = integrator
        .take_days()
        .into_iter()
        .map(|((_, d), b)| (d, b))
        .collect::<BTreeMap<_, _>>();
    let commit = AgencyCommit {
        checkpoint: AgencyCheckpoint {
            agency: agency.to_owned(),
            // Counted up to now, so a collector resuming from it sees no gap.
            watermark: jiff::Timestamp::now().as_second(),
            ..Default::default()
        },
        days,
        expected_revision: 0,
    };
    ledger.commit(&fence, &[commit]).await?;
    ledger.release(&fence).await?;
    Ok(ledger)
}

/// Creates a PriceList of a test's own: 1.000 ₫ per vCPU-hour, nothing else priced;
/// returns its name.
pub async fn cpu_price_list(client: &kube::Client) -> anyhow::Result<String> {
    use govbroker_crds::PriceList;
    let name = govbroker_e2e::unique_name("gia");
    let pl: PriceList = serde_json::from_value(serde_json::json!({
        "apiVersion": "govbroker.io/v1alpha1", "kind": "PriceList",
        "metadata": {"name": name},
        "spec": {"revisions": [{"revision": 1, "reason": "thử", "rates": [
            {"effectiveFrom": "2020-01-01", "cpuPerVcpuHour": "1000",
             "memoryPerGibHour": "0", "storagePerGibMonth": "0"}]}]}
    }))?;
    kube::Api::<PriceList>::all(client.clone())
        .create(&kube::api::PostParams::default(), &pl)
        .await?;
    Ok(name)
}
