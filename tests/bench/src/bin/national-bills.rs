//! How long a national month's bills take, and how big the usage records are.
//!
//! Builds a month of daily usage records for a national tree of agencies (by default
//! 12,000: 63 provinces and 22 ministries with departments, districts and communes),
//! stores each as the JSON the ledger keeps, then times what the billing run does:
//! decode every record, rate every agency's month with a price change on the 16th,
//! and roll the totals up the tree. Prints the figures; asserts only that the roll-up of
//! the roots equals the sum of all bills.
//!
//! ```text
//! cargo run --release -p govbroker-bench --bin national-bills -- --agencies 12000
//! ```
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Result, ensure};
use clap::Parser;
use govbroker_domain::billing::{PriceSchedule, RateSet, Vnd, rate_month, roll_up};
use govbroker_domain::metering::{Day, DayUsage, Meter, Month, Quantity, UsageEntry};

/// Time a national month's bills.
#[derive(Debug, Parser)]
struct Args {
    /// Number of agencies.
    #[arg(long, default_value_t = 12_000)]
    agencies: usize,
    /// The month to bill.
    #[arg(long, default_value = "2026-11")]
    month: String,
}

/// A deterministic pseudo-random sequence (no extra crate).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

fn entries(agency: &str, big: bool, rng: &mut Lcg) -> Vec<UsageEntry> {
    let envs: &[&str] = if big { &["prod", "staging"] } else { &["prod"] };
    let workloads = if big { 5 } else { 2 };
    let mut out = Vec::new();
    for env in envs {
        let namespace = format!("{agency}-{env}");
        for w in 0..workloads {
            let workload = format!("Workload/dich-vu-{w}");
            let seconds = 86_400u128 - u128::from(rng.next(3600));
            for (meter, rate) in [
                (Meter::Cpu, 250 + u128::from(rng.next(2000))),
                (Meter::Memory, (256 + u128::from(rng.next(4096))) << 20),
            ] {
                out.push(UsageEntry {
                    environment: (*env).to_owned(),
                    namespace: namespace.clone(),
                    workload: workload.clone(),
                    meter,
                    quantity: Quantity(rate * seconds),
                });
            }
        }
        out.push(UsageEntry {
            environment: (*env).to_owned(),
            namespace: namespace.clone(),
            workload: "PersistentVolumeClaim/du-lieu".to_owned(),
            meter: Meter::Storage,
            quantity: Quantity((10u128 << 30) * 86_400),
        });
        if big {
            out.push(UsageEntry {
                environment: (*env).to_owned(),
                namespace,
                workload: "DataServiceClaim/csdl".to_owned(),
                meter: Meter::DataService {
                    class_name: "postgres-dung-chung".to_owned(),
                    plan: "co-ban".to_owned(),
                },
                quantity: Quantity(86_400),
            });
        }
    }
    out
}

fn main() -> Result<()> {
    let args = Args::parse();
    let month: Month = args.month.parse()?;
    let mut rng = Lcg(7);
    // The tree: roots (ministries, provinces) 1 in 140, then districts 1 in 16 under a
    // root, the rest communes under a district.
    let mut parents: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut names = Vec::with_capacity(args.agencies);
    let (mut roots, mut districts) = (Vec::new(), Vec::new());
    for i in 0..args.agencies {
        let (name, parent, big) = if i % 140 == 0 || roots.is_empty() {
            let n = format!("tinh-{i:05}");
            roots.push(n.clone());
            (n, None, true)
        } else if i % 16 == 0 || districts.is_empty() {
            let n = format!("huyen-{i:05}");
            districts.push(n.clone());
            (
                n,
                Some(roots[rng.next(roots.len() as u64) as usize].clone()),
                true,
            )
        } else {
            let n = format!("xa-{i:05}");
            (
                n,
                Some(districts[rng.next(districts.len() as u64) as usize].clone()),
                false,
            )
        };
        parents.insert(name.clone(), parent);
        names.push((name, big));
    }
    // A month of records, as the ledger stores them (JSON).
    let built = Instant::now();
    let mut stored: Vec<(String, Vec<Vec<u8>>)> = Vec::with_capacity(names.len());
    let mut bytes = 0usize;
    let mut records = 0usize;
    for (name, big) in &names {
        let mut days = Vec::new();
        for _day in month.iter_days() {
            let usage = DayUsage {
                usage: entries(name, *big, &mut rng),
                unobserved_bound: vec![],
            };
            let json = serde_json::to_vec(&usage)?;
            bytes += json.len();
            records += 1;
            days.push(json);
        }
        stored.push((name.clone(), days));
    }
    eprintln!(
        "built {records} day records ({} MiB of JSON, {} bytes per record on average) in {:.1?}",
        bytes >> 20,
        bytes / records.max(1),
        built.elapsed()
    );
    let rate = |from: &str, cpu: &str, mem: &str, sto: &str| -> Result<RateSet> {
        Ok(RateSet {
            effective_from: from.parse()?,
            cpu_per_vcpu_hour: cpu.parse()?,
            memory_per_gib_hour: mem.parse()?,
            storage_per_gib_month: sto.parse()?,
            data_service_per_plan_hour: BTreeMap::from([(
                ("postgres-dung-chung".to_owned(), "co-ban".to_owned()),
                "1500".parse()?,
            )]),
        })
    };
    let prices = PriceSchedule::new(
        "gia-2026",
        2,
        vec![
            rate("2026-01-01", "720", "96", "2976")?,
            rate(&format!("{month}-16"), "800", "100.5", "3000")?,
        ],
    )?;

    // The billing run.
    let started = Instant::now();
    let mut own: BTreeMap<String, Vnd> = BTreeMap::new();
    let mut lines = 0usize;
    for (name, days) in &stored {
        let decoded: Vec<(Day, DayUsage)> = month
            .iter_days()
            .zip(days)
            .map(|(d, json)| Ok((d, serde_json::from_slice(json)?)))
            .collect::<Result<_>>()?;
        let invoice = rate_month(name, month, decoded.iter().map(|(d, u)| (*d, u)), &prices)?;
        lines += invoice.lines.len();
        own.insert(name.clone(), invoice.total);
    }
    let rated = started.elapsed();
    let subtree = roll_up(&own, &parents);
    let total = started.elapsed();
    let national: Vnd = own.values().copied().sum();
    let roots_total: Vnd = parents
        .iter()
        .filter(|(_, p)| p.is_none())
        .map(|(a, _)| subtree[a])
        .sum();
    ensure!(
        roots_total == national,
        "roll-up {roots_total} ≠ sum {national}"
    );
    println!(
        "{} agencies, {records} day records, {lines} bill lines: decoded and rated in {rated:.2?}, rolled up in {:.2?} (total {total:.2?}); national total {national}",
        names.len(),
        total - rated,
    );
    Ok(())
}
