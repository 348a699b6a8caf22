//! Pod churn against the metering collector: what it costs in CPU and memory, and how
//! many ledger transactions it writes.
//!
//! Creates `--agencies` agency namespaces and `--pods` pods bound straight to the fake
//! nodes (the fake kubelet makes them Running; binding directly skips the scheduler so
//! the count is not limited by the fake nodes' capacity), starts the collector binary
//! with a ledger prefix of its own, then deletes and re-creates pods at `--churn` per
//! second for `--seconds`: paced by a timer, each request in its own task (at most
//! `--parallel` in flight), so the rate does not depend on one request's latency. Prints the collector's CPU (from /proc, user + system) and
//! peak resident memory over the churn, and the ledger etcd's revisions per second
//! (each collector transaction is one revision; other writers to the ledger during the
//! run would add to it). Deletes everything it made at the end and waits until the
//! namespace controller has removed it (several minutes at 10,000 pods).
//!
//! Hold the shared cluster lock while it runs (it fills the fake nodes):
//! ```text
//! cargo build -p govbroker-metering -p govbroker-bench
//! flock /tmp/govbroker-cluster.lock target/debug/metering-churn --agencies 1000 --pods 10000 --churn 50 --seconds 120
//! ```
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, VecDeque};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use futures::StreamExt;
use govbroker_domain::isolation::{AGENCY_LABEL, ENVIRONMENT_LABEL};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use tokio::sync::Semaphore;

/// Pod churn against the metering collector.
#[derive(Debug, Parser)]
struct Args {
    /// Agencies (one namespace each).
    #[arg(long, default_value_t = 1000)]
    agencies: usize,
    /// Pods kept running.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Pod starts plus stops per second.
    #[arg(long, default_value_t = 50)]
    churn: usize,
    /// Seconds of churn.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// The collector's flush interval.
    #[arg(long, default_value_t = 30)]
    flush_seconds: u64,
    /// Concurrent API requests while creating pods.
    #[arg(long, default_value_t = 32)]
    parallel: usize,
}

const BENCH_LABEL: &str = "govbroker.io/bench";

fn pod(name: &str, node: &str) -> Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {BENCH_LABEL: "metering-churn"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "app", "image": "registry.gov.vn/bench:1",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    }))?)
}

/// CPU seconds (user + system) and resident memory (KiB) of a process, from /proc.
fn usage(pid: u32) -> Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((ticks / 100.0, rss))
}

async fn ledger_revision() -> Result<i64> {
    let mut client = etcd_client_connect().await?;
    let r = client.get("/", None).await?;
    Ok(r.header().map(|h| h.revision()).unwrap_or(0))
}

async fn etcd_client_connect() -> Result<etcd_client::Client> {
    Ok(etcd_client::Client::connect([govbroker_e2e::api::LEDGER_ENDPOINT], None).await?)
}

/// Counts one churn request as done (it succeeded) or failed.
fn count(ok: bool, done: &AtomicUsize, failed: &AtomicUsize) {
    if ok {
        done.fetch_add(1, Ordering::Relaxed);
    } else {
        failed.fetch_add(1, Ordering::Relaxed);
    }
}

struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = govbroker_e2e::cluster();
    // The collector watches DataServiceClaims too: without their CRD it would retry the
    // failing list every second, which would count in its CPU.
    cluster.install_crds()?;
    let client = cluster.admin().await?;
    let run = format!("{:x}", std::process::id());
    let nodes: Vec<String> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    anyhow::ensure!(!nodes.is_empty(), "no nodes");

    // Namespaces, one per agency.
    let namespaces: Vec<String> = (0..args.agencies)
        .map(|i| format!("bench-{run}-{i:04}"))
        .collect();
    let ns_api = Api::<Namespace>::all(client.clone());
    futures::stream::iter(namespaces.iter().enumerate())
        .for_each_concurrent(args.parallel, |(i, name)| {
            let ns_api = ns_api.clone();
            let run = &run;
            async move {
                let ns: Namespace = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "labels": {
                        AGENCY_LABEL: format!("bench-{run}-{i:04}"),
                        ENVIRONMENT_LABEL: "prod", BENCH_LABEL: "metering-churn"}}
                }))
                .expect("namespace");
                if let Err(e) = ns_api.create(&PostParams::default(), &ns).await {
                    eprintln!("namespace {name}: {e}");
                }
            }
        })
        .await;

    // The collector, with a ledger prefix of its own.
    let prefix = format!("/govbroker-bench-{run}");
    let binary = govbroker_e2e::api::workspace_binary("govbroker-metering", "govbroker-metering")?;
    let collector = Collector(
        Command::new(&binary)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("RUST_LOG", "warn")
            .args(["--ledger-prefix", &prefix, "--cost-seconds", "0"])
            .args(["--flush-seconds", &args.flush_seconds.to_string()])
            .spawn()?,
    );
    let pid = collector.0.id();

    // The steady population.
    let started = Instant::now();
    let mut next = 0usize;
    let mut live: BTreeMap<usize, (String, String)> = BTreeMap::new();
    let create = |i: usize| {
        let ns = namespaces[i % namespaces.len()].clone();
        let name = format!("p-{i:06}");
        let node = nodes[i % nodes.len()].clone();
        let client = client.clone();
        async move {
            let api = Api::<Pod>::namespaced(client, &ns);
            let result = api
                .create(&PostParams::default(), &pod(&name, &node).expect("pod"))
                .await;
            (i, ns, name, result.is_ok())
        }
    };
    let mut created =
        futures::stream::iter((0..args.pods).map(create)).buffer_unordered(args.parallel);
    while let Some((i, ns, name, ok)) = created.next().await {
        if ok {
            live.insert(i, (ns, name));
        }
    }
    next = next.max(args.pods);
    let (cpu_before_churn, rss_after_fill) = usage(pid)?;
    eprintln!(
        "{} pods in {} namespaces created in {:.0?}; collector so far {cpu_before_churn:.1} CPU-s, {} MiB",
        live.len(),
        namespaces.len(),
        started.elapsed(),
        rss_after_fill / 1024
    );
    tokio::time::sleep(Duration::from_secs(args.flush_seconds + 5)).await;

    // Churn: one stop and one start every 2/churn seconds, each request its own task
    // (at most --parallel in flight), so the rate holds while the API server takes
    // longer than the interval to answer one request.
    let (cpu0, _) = usage(pid)?;
    let rev0 = ledger_revision().await?;
    let churn_start = Instant::now();
    let mut peak_rss = 0u64;
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let slots = Arc::new(Semaphore::new(args.parallel));
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut live: VecDeque<(String, String)> = live.into_values().collect();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(2.0 / args.churn.max(1) as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut last_sample = Instant::now();
    let mut behind_reported = 0;
    while churn_start.elapsed() < Duration::from_secs(args.seconds) {
        ticks.tick().await;
        while let Ok(pod) = started_rx.try_recv() {
            live.push_back(pod);
        }
        if let Some((ns, name)) = live.pop_front() {
            let api = Api::<Pod>::namespaced(client.clone(), &ns);
            let permit = slots.clone().acquire_owned().await?;
            let (d, f) = (done.clone(), failed.clone());
            tasks.spawn(async move {
                let result = api
                    .delete(&name, &DeleteParams::default().grace_period(0))
                    .await;
                count(result.is_ok(), &d, &f);
                drop(permit);
            });
        }
        let permit = slots.clone().acquire_owned().await?;
        let job = create(next);
        next += 1;
        let (d, f, tx) = (done.clone(), failed.clone(), started_tx.clone());
        tasks.spawn(async move {
            let (_, ns, name, ok) = job.await;
            count(ok, &d, &f);
            if ok {
                let _ = tx.send((ns, name));
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
        if last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            peak_rss = peak_rss.max(usage(pid)?.1);
            let second = churn_start.elapsed().as_secs();
            let want = (second as usize) * args.churn;
            let got = done.load(Ordering::Relaxed);
            if second >= behind_reported + 10 && got + args.churn < want {
                behind_reported = second;
                eprintln!("second {second}: {got} requests done of {want} (behind)");
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let ops = done.load(Ordering::Relaxed);
    while let Ok(pod) = started_rx.try_recv() {
        live.push_back(pod);
    }
    let elapsed = churn_start.elapsed().as_secs_f64();
    let (cpu1, rss) = usage(pid)?;
    let rev1 = ledger_revision().await?;
    println!(
        "churn: {} pods in {} agency namespaces, {:.1} starts+stops/s for {elapsed:.0} s (asked {}; {} requests failed; flush every {} s)",
        live.len(),
        namespaces.len(),
        ops as f64 / elapsed,
        args.churn,
        failed.load(Ordering::Relaxed),
        args.flush_seconds
    );
    println!(
        "collector: {:.3} cores ({:.1} CPU-s), resident {} MiB (peak {} MiB); filling {} pods took {:.1} CPU-s",
        (cpu1 - cpu0) / elapsed,
        cpu1 - cpu0,
        rss / 1024,
        peak_rss.max(rss) / 1024,
        args.pods,
        cpu_before_churn
    );
    println!(
        "ledger: {:.1} transactions/s ({} revisions)",
        (rev1 - rev0) as f64 / elapsed,
        rev1 - rev0
    );
    drop(collector);

    // Clean up.
    futures::stream::iter(namespaces.iter())
        .for_each_concurrent(args.parallel, |name| {
            let ns_api = ns_api.clone();
            async move {
                let _ = ns_api.delete(name, &DeleteParams::background()).await;
            }
        })
        .await;
    // Wait until the namespace controller has removed them all: it works through them
    // for minutes, and other tests' namespaces queue behind them meanwhile, so the
    // benchmark keeps the cluster (and the lock) until the cluster is clean.
    let cleaning = Instant::now();
    let selector = format!("{BENCH_LABEL}=metering-churn");
    loop {
        let left = ns_api
            .list_metadata(&ListParams::default().labels(&selector))
            .await?
            .items
            .len();
        if left == 0 {
            eprintln!("namespaces removed in {:.0?}", cleaning.elapsed());
            break;
        }
        if cleaning.elapsed() > Duration::from_secs(1800) {
            eprintln!("{left} namespaces still terminating after 30 minutes; giving up");
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if let Ok(mut etcd) = etcd_client_connect().await {
        let _ = etcd
            .delete(
                format!("{prefix}/"),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await;
    }
    Ok(())
}
