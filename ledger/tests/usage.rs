//! Usage records against the real ledger etcd of the local control plane (`cargo xtask
//! cluster up`; endpoints from `GOVBROKER_LEDGER_ENDPOINTS`, default
//! `http://127.0.0.1:12381`). Each test writes under its own prefix and deletes it at the
//! end (set `GOVBROKER_KEEP_TEST_STATE=1` to keep it).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

use anyhow::{Context, Result, ensure};
use etcd_client::{Client, DeleteOptions};
use govbroker_domain::metering::{Attribution, Day, Integrator, Meter, Month, Quantity};
use govbroker_ledger::LedgerOptions;
use govbroker_ledger::usage::{AgencyCheckpoint, AgencyCommit, UsageError, UsageLedger};

fn endpoints() -> Vec<String> {
    std::env::var("GOVBROKER_LEDGER_ENDPOINTS")
        .or_else(|_| std::env::var("GOVBROKER_LEDGER_ETCD"))
        .unwrap_or_else(|_| "http://127.0.0.1:12381".into())
        .split(',')
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect()
}

/// A prefix of its own for one test, deleted when the test ends (pass or fail).
struct Scratch {
    prefix: String,
}

impl Scratch {
    fn new(test: &str) -> Self {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self {
            prefix: format!("/govbroker-test-{test}-{random:016x}"),
        }
    }

    async fn ledger(&self) -> Result<UsageLedger> {
        UsageLedger::connect(&endpoints(), &self.prefix, LedgerOptions::default())
            .await
            .context("connecting to the ledger etcd (is `cargo xtask cluster up` running?)")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var("GOVBROKER_KEEP_TEST_STATE").is_ok_and(|v| v == "1") {
            eprintln!("keeping the test's keys under {}/", self.prefix);
            return;
        }
        let prefix = format!("{}/", self.prefix);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut client = Client::connect(endpoints(), None).await?;
                client
                    .delete(prefix, Some(DeleteOptions::new().with_prefix()))
                    .await?;
                anyhow::Ok(())
            })
        })
        .join();
    }
}

/// 2026-11-15 00:00 in Vietnam.
fn t0() -> i64 {
    "2026-11-15".parse::<Day>().unwrap().start()
}

fn who(agency: &str) -> Attribution {
    Attribution {
        agency: agency.into(),
        environment: "prod".into(),
        namespace: format!("{agency}-prod"),
        workload: "Workload/portal".into(),
    }
}

/// The commits of everything an integrator counted, from its open intervals.
fn commits(
    integrator: &mut Integrator,
    watermark: i64,
    revisions: &BTreeMap<String, i64>,
) -> Vec<AgencyCommit> {
    integrator.advance(watermark);
    let mut by_agency: BTreeMap<String, AgencyCommit> = BTreeMap::new();
    for ((agency, day), buckets) in integrator.take_days() {
        by_agency
            .entry(agency.clone())
            .or_insert_with(|| AgencyCommit {
                checkpoint: AgencyCheckpoint {
                    agency: agency.clone(),
                    watermark,
                    epoch: 0,
                    open: BTreeMap::new(),
                },
                days: BTreeMap::new(),
                expected_revision: revisions.get(&agency).copied().unwrap_or(0),
            })
            .days
            .insert(day, buckets);
    }
    for (uid, open) in integrator.open_intervals() {
        if let Some(commit) = by_agency.get_mut(&open.attribution.agency) {
            commit.checkpoint.open.insert(uid.clone(), open.clone());
        }
    }
    by_agency.into_values().collect()
}

fn cpu_total(days: &BTreeMap<Day, govbroker_domain::metering::DayUsage>) -> u128 {
    days.values()
        .flat_map(|d| d.usage.iter())
        .filter(|e| e.meter == Meter::Cpu)
        .map(|e| e.quantity.0)
        .sum()
}

#[tokio::test]
async fn usage_accumulates_per_day_and_restart_resumes_exactly() -> Result<()> {
    let scratch = Scratch::new("usage-resume");
    let ledger = scratch.ledger().await?;
    let fence = ledger.acquire("collector-a", 10).await?;
    let mut integrator = Integrator::default();
    // 23:00 on the 15th, a 500m pod starts in so-y-te; it runs past midnight.
    let start = t0() + 23 * 3600;
    integrator.observe(
        "pod-1",
        start,
        Some((who("so-y-te"), vec![(Meter::Cpu, 500)])),
    );
    let batch = commits(&mut integrator, start + 1800, &BTreeMap::new());
    let revisions = ledger.commit(&fence, &batch).await?;
    let batch = commits(&mut integrator, start + 5400, &revisions);
    ledger.commit(&fence, &batch).await?;
    // The collector dies. Its successor loads the checkpoints and continues.
    ledger.release(&fence).await?;
    let fence = ledger.acquire("collector-b", 10).await?;
    ensure!(fence.holder.epoch == 2, "epochs grow: {:?}", fence.holder);
    let stored = ledger.load_checkpoints().await?;
    ensure!(stored.len() == 1);
    let revisions: BTreeMap<String, i64> = stored
        .iter()
        .map(|s| (s.checkpoint.agency.clone(), s.revision))
        .collect();
    let mut resumed = Integrator::resume(stored[0].checkpoint.open.clone());
    ensure!(resumed.open_interval("pod-1").unwrap().since == start + 5400);
    resumed.observe("pod-1", start + 7200, None);
    let batch = commits(&mut resumed, start + 7200, &revisions);
    ledger.commit(&fence, &batch).await?;
    let month: Month = "2026-11".parse()?;
    let days = ledger.agency_month("so-y-te", month).await?;
    // 1 hour on the 15th, 1 hour on the 16th, at 500 milli-cores: nothing twice.
    let d15: Day = "2026-11-15".parse()?;
    ensure!(days.len() == 2, "{days:?}");
    ensure!(days[&d15].usage[0].quantity == Quantity(3600 * 500));
    ensure!(days[&d15.next()].usage[0].quantity == Quantity(3600 * 500));
    ensure!(cpu_total(&days) == 7200 * 500);
    let national = ledger.month(month).await?;
    ensure!(national.len() == 1 && national["so-y-te"].len() == 2);
    Ok(())
}

#[tokio::test]
async fn a_stale_collector_cannot_write() -> Result<()> {
    let scratch = Scratch::new("usage-fence");
    let ledger = scratch.ledger().await?;
    let first = ledger.acquire("collector-a", 2).await?;
    // While the first holds the fence, nobody else gets it.
    match ledger.acquire("collector-b", 2).await {
        Err(UsageError::Held { holder, epoch }) => {
            ensure!(holder == "collector-a" && epoch == 1)
        }
        other => anyhow::bail!("expected Held, got {other:?}"),
    }
    ledger.refresh(&first).await?;
    // The first stops renewing (a long GC pause, a partition); its lease expires.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let second = loop {
        match ledger.acquire("collector-b", 10).await {
            Ok(fence) => break fence,
            Err(UsageError::Held { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    ensure!(second.holder.epoch == 2);
    let mut integrator = Integrator::default();
    integrator.observe("p", t0(), Some((who("xa-hoa-vang"), vec![(Meter::Cpu, 1)])));
    let batch = commits(&mut integrator, t0() + 10, &BTreeMap::new());
    // The stale collector wakes up and tries to write: refused, nothing written.
    match ledger.commit(&first, &batch).await {
        Err(UsageError::Fenced { epoch: 1, .. }) => {}
        other => anyhow::bail!("expected Fenced, got {other:?}"),
    }
    ensure!(matches!(
        ledger.refresh(&first).await,
        Err(UsageError::Fenced { .. })
    ));
    ensure!(matches!(
        ledger.heartbeat(&first, t0()).await,
        Err(UsageError::Fenced { .. })
    ));
    ensure!(ledger.load_checkpoints().await?.is_empty());
    // The holder writes.
    ledger.commit(&second, &batch).await?;
    ledger.heartbeat(&second, t0() + 10).await?;
    ensure!(ledger.watermark().await?.unwrap().watermark == t0() + 10);
    // Writing from a stale checkpoint revision is a conflict, not a double count.
    match ledger.commit(&second, &batch).await {
        Err(UsageError::Conflict { agency }) => ensure!(agency == "xa-hoa-vang"),
        other => anyhow::bail!("expected Conflict, got {other:?}"),
    }
    let days = ledger
        .agency_month("xa-hoa-vang", "2026-11".parse()?)
        .await?;
    ensure!(cpu_total(&days) == 10);
    Ok(())
}

#[tokio::test]
async fn large_batches_are_split_into_transactions() -> Result<()> {
    let scratch = Scratch::new("usage-batch");
    let ledger = scratch.ledger().await?;
    let fence = ledger.acquire("collector-a", 10).await?;
    let mut integrator = Integrator::default();
    for i in 0..300 {
        integrator.observe(
            &format!("pod-{i}"),
            t0() + 23 * 3600,
            Some((
                who(&format!("xa-{i:03}")),
                vec![(Meter::Cpu, 100), (Meter::Memory, 1 << 20)],
            )),
        );
    }
    // Two days per agency: 300 × 3 puts in 8 transactions.
    let batch = commits(&mut integrator, t0() + 25 * 3600, &BTreeMap::new());
    let revisions = ledger.commit(&fence, &batch).await?;
    ensure!(revisions.len() == 300);
    let national = ledger.month("2026-11".parse()?).await?;
    ensure!(national.len() == 300);
    let total: u128 = national.values().map(cpu_total).sum();
    ensure!(total == 300 * 100 * 7200);
    ensure!(ledger.load_checkpoints().await?.len() == 300);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_ledger_is_unavailable_within_seconds() -> Result<()> {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let options = LedgerOptions {
        connect_timeout: std::time::Duration::from_secs(1),
        request_timeout: std::time::Duration::from_secs(1),
        ..LedgerOptions::default()
    };
    let started = std::time::Instant::now();
    let error = UsageLedger::connect(
        &[format!("http://127.0.0.1:{port}")],
        "/govbroker-x",
        options,
    )
    .await
    .expect_err("nothing listens there");
    ensure!(error.is_retryable(), "{error}");
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn re_rated_bills_are_appended_with_compare_and_swap() -> Result<()> {
    use govbroker_domain::billing::{BillVersion, Invoice, Vnd};
    let scratch = Scratch::new("usage-bills");
    let ledger = scratch.ledger().await?;
    let month: Month = "2026-10".parse()?;
    let version = |total: i64, reason: &str| BillVersion {
        invoice: Invoice {
            agency: "so-y-te".into(),
            month,
            price_list: "default".into(),
            price_list_revision: 2,
            lines: vec![],
            total: Vnd(total),
            unobserved_bound: Vnd::ZERO,
        },
        reason: reason.into(),
        rerated_by: "admin".into(),
        rerated_at: 1_790_000_000,
    };
    let (none, revision) = ledger.bill_versions("so-y-te", month).await?;
    ensure!(none.is_empty() && revision == 0);
    let first = vec![version(900, "trước"), version(800, "sai giá")];
    ledger
        .store_bill_versions("so-y-te", month, &first, 0)
        .await?
        .map_err(|e| anyhow::anyhow!(e))?;
    let (stored, revision) = ledger.bill_versions("so-y-te", month).await?;
    ensure!(stored == first, "{stored:?}");
    // A second writer that read before the first wrote is refused, not merged.
    let lost = ledger
        .store_bill_versions("so-y-te", month, &[version(1, "cũ")], 0)
        .await?;
    ensure!(lost.is_err(), "a stale re-rate was stored");
    let mut second = stored.clone();
    second.push(version(850, "lần 2"));
    ledger
        .store_bill_versions("so-y-te", month, &second, revision)
        .await?
        .map_err(|e| anyhow::anyhow!(e))?;
    let stale = ledger
        .store_bill_versions("so-y-te", month, &first, revision)
        .await?;
    ensure!(stale.is_err(), "a re-rate from a stale read was stored");
    ensure!(ledger.bill_versions("so-y-te", month).await?.0 == second);
    // Other months and agencies are separate.
    ensure!(
        ledger
            .bill_versions("so-y-te", month.next())
            .await?
            .0
            .is_empty()
    );
    ensure!(ledger.bill_versions("so-tttt", month).await?.0.is_empty());
    Ok(())
}
