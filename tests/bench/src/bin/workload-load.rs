//! `workload-load`: how fast the workload controller brings many Workloads to Available on
//! the fake nodes, compared with applying the same Deployments directly.
//!
//! A benchmark, not a test: it prints figures and asserts nothing about them.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use futures::{StreamExt as _, TryStreamExt as _};
use govbroker_bench::{BENCH_LABEL, metric_sum_with, operator_binary, restart_operator, run_id};
use govbroker_crds::{Agency, CpuMemory, Workload, WorkloadPhase, WorkloadResources, WorkloadSpec};
use govbroker_domain::CASCADE_DELETE_ANNOTATION;
use govbroker_domain::workload::deployment;
use govbroker_e2e::{OPERATOR_HTTP_ADDR, http_get};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::Semaphore;

const LONG_ABOUT: &str = "\
Benchmark of the workload controller against the real local control plane.

It starts (or reuses) the local control plane, restarts the operator, and creates A
Central agencies (security level 2, one `prod` environment each, quota to spare), all
labelled govbroker.io/bench=<run id>, and waits until they are Ready (not measured).
Then it measures, on the fake nodes:

  baseline   W Deployments spread evenly over the agencies' namespaces, each exactly the
             Deployment the operator renders for the Workload (govbroker_domain::workload::
             deployment, hardened pod template included), created directly by a plain
             client with the given concurrency; seconds from the first create until every
             one reports all replicas available (seen on a watch). They are then deleted
             and their pods waited out.
  operator   the same W Workloads created with the same concurrency (through the
             admission webhook), until every Workload's status says Available for its
             current generation (seen on a watch); seconds, workloads/s, and the ratio
             operator/baseline (target <= 1.3 at 1,000 workloads over 100 agencies);
             then what the workload controller did per workload meanwhile (reconciles,
             status writes, Deployment applies; from the operator's /metrics).

Everything is deleted at the end unless --keep. Each replica requests 10m CPU and 16Mi so
that the fake nodes' CPU is no limit; their pod capacity is (the sum of the nodes'
allocatable pods, printed at the start): a run that needs more pods than the nodes hold
cannot finish, and is refused (the local cloud's default is 3 nodes of 500 pods; a
control plane started before that default keeps 750: restart it with `cargo xtask
cluster down` and `up`). For realistic numbers use a release build of the operator
(cargo build -p govbroker-operator --release); the debug build is used when no release
build exists.

It restarts the operator of the shared local control plane (ports 18080 and 18443), so do
not run it while end-to-end tests use that control plane.";

/// Benchmark of the workload controller: W workloads over A agencies until all Available.
#[derive(Parser, Debug)]
#[command(name = "workload-load", about, long_about = LONG_ABOUT)]
struct Args {
    /// Number of workloads, spread evenly over the agencies.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    workloads: u32,
    /// Number of agencies.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    agencies: u32,
    /// Replicas of each workload.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=10))]
    replicas: i32,
    /// Creates in flight at once, for the workloads and for the baseline.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// The operator binary. Default: release beside this binary's target directory if it
    /// exists, else debug.
    #[arg(long)]
    operator: Option<PathBuf>,
    /// Do not run the baseline.
    #[arg(long)]
    skip_baseline: bool,
    /// Keep the agencies (and the workloads) at the end.
    #[arg(long)]
    keep: bool,
    /// Deadline of each wait, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

fn main() -> ExitCode {
    govbroker_bench::main_of("workload-load", run(Args::parse()))
}

fn q(v: &str) -> Option<Quantity> {
    Some(Quantity(v.to_owned()))
}

fn agencies(run: &str, n: u32, per_agency: u32, replicas: i32) -> Vec<Agency> {
    // Room for the baseline and the workloads at once, with a margin.
    let pods = u64::from(per_agency) * replicas.unsigned_abs() as u64 * 2 + 10;
    let quota = json!({
        "cpu": format!("{}m", pods * 10),
        "memory": format!("{}Mi", pods * 16),
        "pods": pods.to_string(),
        "services": "10",
    });
    (0..n)
        .map(|i| {
            let name = format!("wl-{run}-{i:04}");
            // From JSON, so fields added to the type later need no change here.
            let mut agency: Agency = serde_json::from_value(json!({
                "apiVersion": "govbroker.io/v1alpha1",
                "kind": "Agency",
                "metadata": {"name": name},
                "spec": {
                    "displayName": format!("Cơ quan thử tải {i}"),
                    "level": "Central",
                    "securityLevel": 2,
                    "environments": [{"name": "prod", "quota": quota}],
                    "quota": quota,
                },
            }))
            .expect("a valid Agency");
            agency.metadata.labels = Some([(BENCH_LABEL.to_owned(), run.to_owned())].into());
            agency
        })
        .collect()
}

/// The `i`-th workload: its namespace and object.
fn workload(run: &str, i: u32, agencies: u32, replicas: i32) -> (String, Workload) {
    let namespace = format!("wl-{run}-{:04}-prod", i % agencies);
    let mut w = Workload::new(
        &format!("app-{i:05}"),
        WorkloadSpec {
            image: format!("registry.gov.vn/bench/app-{}:1", i % 7),
            replicas,
            command: Vec::new(),
            args: Vec::new(),
            resources: WorkloadResources {
                requests: CpuMemory {
                    cpu: q("10m"),
                    memory: q("16Mi"),
                },
                limits: CpuMemory::default(),
            },
            ports: Vec::new(),
            env: Vec::new(),
            claims: Vec::new(),
            health_path: None,
            paused: false,
        },
    );
    w.metadata.namespace = Some(namespace.clone());
    w.metadata.labels = Some([(BENCH_LABEL.to_owned(), run.to_owned())].into());
    (namespace, w)
}

fn retriable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        _ => true,
    }
}

/// Creates `obj`, retrying transient failures.
async fn create<K>(api: Api<K>, obj: K) -> Result<()>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut attempt = 0u32;
    loop {
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt > 0 => return Ok(()),
            Err(e) if attempt < 6 && retriable(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("creating {}", obj.name_any()));
            }
        }
    }
}

/// Creates every object with at most `concurrency` in flight.
async fn create_all<K>(items: Vec<(Api<K>, K)>, concurrency: u32) -> Result<()>
where
    K: Resource
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency as usize));
    let mut tasks = Vec::new();
    for (api, obj) in items {
        let permit = permits.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            let result = create(api, obj).await;
            drop(permit);
            result
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Waits on a watch (by label) until `total` objects satisfy `done`; prints progress.
async fn wait_all<K>(
    api: Api<K>,
    selector: &str,
    total: usize,
    timeout: Duration,
    what: &str,
    done: impl Fn(&K) -> bool + Send + 'static,
) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let start = Instant::now();
    let mut ready: HashSet<String> = HashSet::new();
    let mut stream = watcher(api, watcher::Config::default().labels(selector))
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut last_print = Instant::now();
    let waiting = async {
        while ready.len() < total {
            let Some(obj) = stream.try_next().await? else {
                bail!("the watch ended");
            };
            let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
            if done(&obj) {
                ready.insert(key);
            } else {
                ready.remove(&key);
            }
            if last_print.elapsed() > Duration::from_secs(5) {
                println!(
                    "  [{:>6.1}s] {what}: {}/{total}",
                    start.elapsed().as_secs_f64(),
                    ready.len()
                );
                last_print = Instant::now();
            }
        }
        Ok(())
    };
    tokio::time::timeout(timeout, waiting)
        .await
        .with_context(|| format!("timed out after {timeout:?} waiting for {what}"))?
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat` (clock ticks
/// of 1/100 s, as on every Linux the project runs on).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command (which may hold spaces) in parentheses: state is field 3,
    // utime 14 and stime 15.
    let rest = stat.rsplit_once(')').context("no command in stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields
            .get(i)
            .context("short stat")?
            .parse::<u64>()
            .context("a tick count")? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// What the workload controller has done so far: reconciles, status writes, Deployment
/// applies (from the operator's `/metrics`).
fn controller_counts() -> Result<[f64; 3]> {
    let (code, text) = http_get(OPERATOR_HTTP_ADDR, "/metrics")?;
    if code != 200 {
        bail!("the operator's /metrics answered {code}");
    }
    Ok([
        metric_sum_with(
            &text,
            "govbroker_reconcile_total",
            "controller=\"workload\"",
        ),
        metric_sum_with(
            &text,
            "govbroker_kube_writes_total",
            "controller=\"workload\",kind=\"Workload\"",
        ),
        metric_sum_with(
            &text,
            "govbroker_kube_writes_total",
            "controller=\"workload\",kind=\"Deployment\"",
        ),
    ])
}

async fn delete_agencies(client: &Client, selector: &str) -> Result<()> {
    let api = Api::<Agency>::all(client.clone());
    let list = api.list(&ListParams::default().labels(selector)).await?;
    let cascade = json!({"metadata": {"annotations": {CASCADE_DELETE_ANNOTATION: "true"}}});
    for a in list.items {
        let _ = api
            .patch(
                &a.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&cascade),
            )
            .await;
        let _ = api.delete(&a.name_any(), &DeleteParams::background()).await;
    }
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    let cluster = govbroker_e2e::cluster();
    let client = cluster.admin().await?;
    let run = run_id();
    let selector = format!("{BENCH_LABEL}={run}");
    let timeout = Duration::from_secs(args.timeout);
    let per_agency = args.workloads.div_ceil(args.agencies);

    let capacity: i64 = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|n| {
            n.status
                .as_ref()?
                .allocatable
                .as_ref()?
                .get("pods")?
                .0
                .parse::<i64>()
                .ok()
        })
        .sum();
    let needed = i64::from(args.workloads) * i64::from(args.replicas);
    println!(
        "workload-load: run {run}: {} workloads x {} replica(s) over {} agencies; the fake nodes hold {capacity} pods",
        args.workloads, args.replicas, args.agencies
    );
    if needed > capacity {
        bail!(
            "{needed} pods do not fit on the fake nodes ({capacity} pods): run fewer --workloads (e.g. --workloads {})",
            capacity * 9 / 10 / i64::from(args.replicas)
        );
    }

    let (binary, kind) = operator_binary(args.operator.clone())?;
    println!("operator: {} ({kind})", binary.display());
    let operator = restart_operator(cluster, &binary).await?;

    // Agencies (not measured).
    let started = Instant::now();
    let agencies = agencies(&run, args.agencies, per_agency, args.replicas);
    create_all(
        agencies
            .into_iter()
            .map(|a| (Api::<Agency>::all(client.clone()), a))
            .collect(),
        args.concurrency,
    )
    .await?;
    wait_all(
        Api::<Agency>::all(client.clone()),
        &selector,
        args.agencies as usize,
        timeout,
        "agencies Ready",
        |a: &Agency| {
            a.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        },
    )
    .await?;
    println!(
        "setup: {} agencies Ready in {:.1}s",
        args.agencies,
        started.elapsed().as_secs_f64()
    );

    let items: Vec<(String, Workload)> = (0..args.workloads)
        .map(|i| workload(&run, i, args.agencies, args.replicas))
        .collect();

    let mut baseline = None;
    if !args.skip_baseline {
        let raw_selector = format!("{BENCH_LABEL}=raw-{run}");
        let deployments: Vec<(Api<Deployment>, Deployment)> = items
            .iter()
            .map(|(ns, w)| {
                let mut d = deployment(w, None, 2);
                d.metadata.name = Some(format!("raw-{}", w.name_any()));
                d.metadata
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert(BENCH_LABEL.to_owned(), format!("raw-{run}"));
                (Api::namespaced(client.clone(), ns), d)
            })
            .collect();
        let start = Instant::now();
        create_all(deployments, args.concurrency).await?;
        let created = start.elapsed();
        let replicas = args.replicas;
        wait_all(
            Api::<Deployment>::all(client.clone()),
            &raw_selector,
            items.len(),
            timeout,
            "Deployments available (baseline)",
            move |d: &Deployment| {
                d.status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0)
                    >= replicas
            },
        )
        .await?;
        let took = start.elapsed();
        println!(
            "baseline: {} Deployments available in {:.1}s ({:.1}/s; creating them took {:.1}s)",
            items.len(),
            took.as_secs_f64(),
            items.len() as f64 / took.as_secs_f64(),
            created.as_secs_f64()
        );
        baseline = Some(took);
        // Clear them (and wait for their pods) so the workloads start from the same place.
        for (ns, w) in &items {
            let _ = Api::<Deployment>::namespaced(client.clone(), ns)
                .delete(
                    &format!("raw-{}", w.name_any()),
                    &DeleteParams::foreground(),
                )
                .await;
        }
        let pods = Api::<Pod>::all(client.clone());
        let deadline = Instant::now() + timeout;
        loop {
            let left = pods
                .list(&ListParams::default().labels("govbroker.io/workload"))
                .await?
                .items
                .iter()
                .filter(|p| {
                    p.namespace()
                        .is_some_and(|ns| ns.starts_with(&format!("wl-{run}-")))
                })
                .count();
            if left == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("{left} baseline pods still exist after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    let counts_before = controller_counts()?;
    let cpu_before = cpu_seconds(operator)?;
    let start = Instant::now();
    create_all(
        items
            .iter()
            .map(|(ns, w)| (Api::namespaced(client.clone(), ns), w.clone()))
            .collect(),
        args.concurrency,
    )
    .await?;
    let created = start.elapsed();
    wait_all(
        Api::<Workload>::all(client.clone()),
        &selector,
        items.len(),
        timeout,
        "Workloads Available",
        |w: &Workload| {
            w.status.as_ref().is_some_and(|s| {
                s.phase == Some(WorkloadPhase::Available)
                    && s.observed_generation == w.metadata.generation
            })
        },
    )
    .await?;
    let took = start.elapsed();
    println!(
        "operator: {} Workloads Available in {:.1}s ({:.1}/s; creating them took {:.1}s)",
        items.len(),
        took.as_secs_f64(),
        items.len() as f64 / took.as_secs_f64(),
        created.as_secs_f64()
    );
    if let Some(baseline) = baseline {
        println!(
            "ratio operator/baseline: {:.2} (target <= 1.3)",
            took.as_secs_f64() / baseline.as_secs_f64()
        );
    }
    let counts_after = controller_counts()?;
    let cpu = cpu_seconds(operator)? - cpu_before;
    println!(
        "operator CPU meanwhile: {cpu:.1} s ({:.1} ms per workload)",
        cpu * 1000.0 / items.len() as f64
    );
    let per = |i: usize| (counts_after[i] - counts_before[i]) / items.len() as f64;
    println!(
        "per workload: {:.2} reconciles, {:.2} status writes, {:.2} Deployment applies",
        per(0),
        per(1),
        per(2)
    );

    if args.keep {
        println!("keeping everything labelled {selector}");
    } else {
        delete_agencies(&client, &selector).await?;
        println!("deleted the run's agencies (their namespaces go with them)");
    }
    Ok(())
}
