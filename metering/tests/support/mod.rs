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
