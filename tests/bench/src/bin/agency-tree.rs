//! `agency-tree`: how fast the operator turns a realistic tree of agencies into isolated
//! namespaces, compared with writing the same objects directly, and what it costs.
//!
//! A benchmark, not a test: it prints figures and asserts nothing about them.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use futures::{StreamExt as _, TryStreamExt as _};
use govbroker_bench::{
    AgencyObjects, BENCH_LABEL, TreeShape, agency_objects, agency_tree, ancestors, blocking,
    by_name, metric_sum_with, operator_binary, operator_pid, proc_status_kib, restart_operator,
    run_id,
};
use govbroker_crds::Agency;
use govbroker_domain::CASCADE_DELETE_ANNOTATION;
use govbroker_e2e::{Cluster, OPERATOR_HTTP_ADDR, http_get, metric_sum};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

const LONG_ABOUT: &str = "\
Benchmark of the agency controller against the real local control plane.

It starts (or reuses) the local control plane, restarts the operator, and creates a
realistic tree of exactly N agencies labelled govbroker.io/bench=<run id>: one ministry,
about N/40 provinces, ten districts per province and communes for the rest, each with a
`prod` environment, one owner, security levels 1-3 and quotas that fit. Levels are
created parents first (the webhook checks that the parent exists), each with bounded
concurrency. It measures:

  operator   seconds from the first create until every Agency is Ready=True for its
             current generation (seen on a watch), and agencies/s;
  baseline   the same objects (Namespace, ResourceQuota, LimitRange, NetworkPolicies,
             RoleBindings, ClusterRole and ClusterRoleBinding per agency, built by the
             same govbroker_domain::isolation functions) created directly by a plain
             client with the same concurrency, once before the operator's run and
             once after it (after the cleanup), and the ratio of the operator's time
             to the mean of the two (target <= 1.5 at 1,000 agencies);
  memory     the operator's peak (VmHWM) and current RSS;
  writes     API writes per agency (govbroker_kube_writes_total);
  restart    a restarted operator over the settled tree: time until every agency was
             reconciled again (govbroker_reconcile_total{controller=\"agency\"} >= the
             number of agencies in the cluster) and
             the writes it made (target: 0 writes, < 60 s).

The baseline runs first and is cleaned up before the operator is restarted, so the
operator's memory figures are its own. It runs again after the operator's agencies are
deleted: the same work took this machine's control plane up to a third longer from one
minute to the next, and bracketing the operator's run between two baselines keeps that
drift out of the ratio; both are printed. Everything is deleted at the end unless --keep
(which also skips the second baseline).
For realistic numbers use a release build of the operator
(cargo build -p govbroker-operator --release); the debug build is used when no release
build exists.

It restarts the operator of the shared local control plane (ports 16443 and 18080), so
do not run it while end-to-end tests use that control plane: a restart by someone else
during a measurement is detected and reported.";

/// Benchmark of the agency controller: a tree of N agencies until all are Ready.
#[derive(Parser, Debug)]
#[command(name = "agency-tree", about, long_about = LONG_ABOUT)]
struct Args {
    /// Number of agencies in the tree (exactly).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    agencies: u32,
    /// The operator binary. Default: govbroker-operator of the release profile beside
    /// this binary's target directory if it exists, else of the debug profile.
    #[arg(long)]
    operator: Option<PathBuf>,
    /// Do not run the baseline (direct creation of the same objects).
    #[arg(long)]
    skip_baseline: bool,
    /// Do not measure a restart of the operator over the settled tree.
    #[arg(long)]
    skip_restart: bool,
    /// Keep the agencies at the end instead of deleting them.
    #[arg(long)]
    keep: bool,
    /// Creates in flight at once, for the operator's agencies and for the baseline.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Deadline of each wait for all Ready and for the cleanups, in seconds (the restart
    /// has its own 10-minute deadline).
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
}

fn main() -> ExitCode {
    govbroker_bench::main_of("agency-tree", run(Args::parse()))
}

async fn metrics() -> Result<String> {
    blocking(|| {
        let (code, body) = http_get(OPERATOR_HTTP_ADDR, "/metrics")?;
        if code != 200 {
            bail!("GET /metrics answered {code}");
        }
        Ok(body)
    })
    .await
}

/// The operator's API writes so far (`+ 0.0`: an empty sum is -0.0).
fn writes_in(exposition: &str) -> f64 {
    metric_sum(exposition, "govbroker_kube_writes_total") + 0.0
}

async fn writes() -> Result<f64> {
    Ok(writes_in(&metrics().await?))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Prints `line` every few seconds with the time since `start`, until dropped.
struct Progress(tokio::task::JoinHandle<()>);

impl Progress {
    fn every(start: Instant, line: impl Fn() -> String + Send + 'static) -> Progress {
        Progress(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3));
            tick.tick().await;
            loop {
                tick.tick().await;
                println!("  [{:>6.1}s] {}", secs(start.elapsed()), line());
            }
        }))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn retriable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        _ => true,
    }
}

/// Runs `op` (given the attempt number) again while it fails in a way that may pass in
/// a moment (overload, a webhook briefly unreachable while the operator restarts, a
/// dropped connection), at most 7 times with growing pauses.
async fn retrying<T, F, Fut>(mut op: F) -> Result<T, kube::Error>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0u32;
    loop {
        match op(attempt).await {
            Err(e) if attempt < 6 && retriable(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            }
            other => return other,
        }
    }
}

/// Creates `obj`, retrying transient failures.
async fn create<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    retrying(|attempt| async move {
        match api.create(&PostParams::default(), obj).await {
            // An earlier attempt went through after all.
            Err(kube::Error::Api(s)) if s.code == 409 && attempt > 0 => Ok(()),
            other => other.map(|_| ()),
        }
    })
    .await
    .with_context(|| {
        format!(
            "creating {} {}",
            K::kind(&Default::default()),
            obj.name_any()
        )
    })
}

/// Treats "not found" as done, for deletions.
fn ignore_missing<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

fn is_ready(a: &Agency) -> bool {
    a.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            && s.observed_generation.is_some()
            && s.observed_generation == a.metadata.generation
    })
}

fn not_ready_reason(a: &Agency) -> String {
    let Some(status) = &a.status else {
        return "no status yet".to_owned();
    };
    let conditions: Vec<String> = status
        .conditions
        .iter()
        .map(|c| format!("{}={} ({}: {})", c.type_, c.status, c.reason, c.message))
        .collect();
    format!(
        "generation {:?}, observed {:?}, {}",
        a.metadata.generation,
        status.observed_generation,
        if conditions.is_empty() {
            "no conditions".to_owned()
        } else {
            conditions.join("; ")
        }
    )
}

/// A watch of the bench's agencies: how many exist and how many are Ready for their
/// current generation, and why the others are not.
struct ReadyWatch {
    counts: watch::Receiver<(usize, usize)>,
    not_ready: Arc<Mutex<BTreeMap<String, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ReadyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReadyWatch {
    /// Starts the watch and returns once its initial list is done.
    async fn start(client: Client, selector: &str) -> Result<ReadyWatch> {
        let api = Api::<Agency>::all(client);
        let (tx, counts) = watch::channel((0, 0));
        let (init_tx, init_rx) = tokio::sync::oneshot::channel();
        let not_ready = Arc::new(Mutex::new(BTreeMap::new()));
        let state = not_ready.clone();
        let config = watcher::Config::default().labels(selector);
        let task = tokio::spawn(async move {
            let mut init_tx = Some(init_tx);
            let mut ready = HashSet::new();
            let mut all = HashSet::new();
            let mut stream = watcher(api, config).default_backoff().boxed();
            while let Some(event) = stream.next().await {
                let event = match event {
                    Ok(ev) => ev,
                    Err(e) => {
                        eprintln!("  (watch of agencies: {e}; retrying)");
                        continue;
                    }
                };
                match event {
                    watcher::Event::Apply(a) | watcher::Event::InitApply(a) => {
                        let name = a.name_any();
                        all.insert(name.clone());
                        let mut reasons = state.lock().unwrap_or_else(|e| e.into_inner());
                        if is_ready(&a) {
                            ready.insert(name.clone());
                            reasons.remove(&name);
                        } else {
                            ready.remove(&name);
                            reasons.insert(name, not_ready_reason(&a));
                        }
                    }
                    watcher::Event::Delete(a) => {
                        let name = a.name_any();
                        all.remove(&name);
                        ready.remove(&name);
                        state
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&name);
                    }
                    watcher::Event::Init => {}
                    watcher::Event::InitDone => {
                        if let Some(tx) = init_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                }
                let _ = tx.send((all.len(), ready.len()));
            }
        });
        tokio::time::timeout(Duration::from_secs(60), init_rx)
            .await
            .context("the watch of agencies did not list within 60s")?
            .context("the watch of agencies stopped")?;
        Ok(ReadyWatch {
            counts,
            not_ready,
            task,
        })
    }

    fn ready(&self) -> usize {
        self.counts.borrow().1
    }

    /// Waits until `n` agencies are Ready, or fails after `timeout` listing a few that
    /// are not.
    async fn wait_all_ready(&mut self, n: usize, timeout: Duration) -> Result<()> {
        let waited = tokio::time::timeout(timeout, self.counts.wait_for(|(_, ready)| *ready >= n))
            .await
            .map(|r| r.map(|_| ()));
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => bail!("the watch of agencies stopped"),
            Err(_) => {
                let (seen, ready) = *self.counts.borrow();
                let reasons = self.not_ready.lock().unwrap_or_else(|e| e.into_inner());
                let sample: Vec<String> = reasons
                    .iter()
                    .take(10)
                    .map(|(name, why)| format!("  {name}: {why}"))
                    .collect();
                bail!(
                    "only {ready} of {n} agencies were Ready after {timeout:?} ({seen} seen); some that are not:\n{}",
                    sample.join("\n")
                )
            }
        }
    }
}

/// Creates each level's agencies with at most `concurrency` creates in flight, a level
/// only once the previous one is complete.
async fn create_tree(
    client: &Client,
    levels: &[Vec<Agency>],
    concurrency: usize,
    created: &AtomicUsize,
) -> Result<()> {
    let api = Api::<Agency>::all(client.clone());
    for level in levels {
        futures::stream::iter(level.iter().map(|a| {
            let api = api.clone();
            async move {
                create(&api, a).await?;
                created.fetch_add(1, Ordering::Relaxed);
                Ok::<_, anyhow::Error>(())
            }
        }))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    }
    Ok(())
}

/// Creates one agency's objects in order (the namespace first), as the operator does.
async fn create_objects(client: &Client, objects: &AgencyObjects) -> Result<usize> {
    let mut n = 0;
    for env in &objects.environments {
        create(&Api::<Namespace>::all(client.clone()), &env.namespace).await?;
        let ns = env.namespace.name_any();
        create(
            &Api::<ResourceQuota>::namespaced(client.clone(), &ns),
            &env.resource_quota,
        )
        .await?;
        create(
            &Api::<LimitRange>::namespaced(client.clone(), &ns),
            &env.limit_range,
        )
        .await?;
        let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &ns);
        for p in &env.network_policies {
            create(&policies, p).await?;
        }
        let bindings = Api::<RoleBinding>::namespaced(client.clone(), &ns);
        for b in &env.role_bindings {
            create(&bindings, b).await?;
        }
        n += 3 + env.network_policies.len() + env.role_bindings.len();
    }
    for (role, binding) in &objects.cluster_rbac {
        create(&Api::<ClusterRole>::all(client.clone()), role).await?;
        create(&Api::<ClusterRoleBinding>::all(client.clone()), binding).await?;
    }
    Ok(n + 2 * objects.cluster_rbac.len())
}

/// Baseline: the same objects created directly; returns the wall time and object count.
async fn baseline(
    client: &Client,
    n: usize,
    run: &str,
    concurrency: usize,
    timeout: Duration,
) -> Result<(Duration, usize)> {
    let label = format!("{run}-baseline");
    let levels = agency_tree(n, run, "bl-", &label);
    let tree = by_name(&levels);
    let objects: Vec<AgencyObjects> = levels
        .iter()
        .flatten()
        .map(|a| agency_objects(a, &ancestors(&tree, a), &label))
        .collect::<Result<_>>()?;
    let total: usize = objects.iter().map(AgencyObjects::count).sum();
    println!(
        "baseline: creating {total} objects for {n} fake agencies directly, {concurrency} agencies in flight"
    );
    let done_agencies = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let progress = {
        let done = done_agencies.clone();
        Progress::every(start, move || {
            format!(
                "baseline: agencies done {}/{n}",
                done.load(Ordering::Relaxed)
            )
        })
    };
    let created = futures::stream::iter(objects.iter().map(|o| {
        let done = done_agencies.clone();
        async move {
            let count = create_objects(client, o).await?;
            done.fetch_add(1, Ordering::Relaxed);
            Ok::<_, anyhow::Error>(count)
        }
    }))
    .buffer_unordered(concurrency)
    .try_collect::<Vec<usize>>()
    .await;
    let elapsed = start.elapsed();
    drop(progress);
    let outcome = created.map(|counts| (elapsed, counts.iter().sum()));
    if let Ok((elapsed, count)) = &outcome {
        println!(
            "baseline: {count} objects created in {:.1}s ({:.1} agencies/s)",
            secs(*elapsed),
            n as f64 / secs(*elapsed)
        );
    }
    println!("baseline: cleaning up");
    let cleaned = cleanup_baseline(client, &label, concurrency, timeout).await;
    let outcome = outcome?;
    cleaned?;
    Ok(outcome)
}

async fn cleanup_baseline(
    client: &Client,
    label: &str,
    concurrency: usize,
    timeout: Duration,
) -> Result<()> {
    let selector = format!("{BENCH_LABEL}={label}");
    let list = ListParams::default().labels(&selector);
    Api::<ClusterRoleBinding>::all(client.clone())
        .delete_collection(&DeleteParams::background(), &list)
        .await
        .context("deleting the baseline's ClusterRoleBindings")?;
    Api::<ClusterRole>::all(client.clone())
        .delete_collection(&DeleteParams::background(), &list)
        .await
        .context("deleting the baseline's ClusterRoles")?;
    let namespaces = Api::<Namespace>::all(client.clone());
    let names: Vec<String> = namespaces
        .list_metadata(&list)
        .await
        .context("listing the baseline's namespaces")?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    futures::stream::iter(names.iter().map(|name| {
        let namespaces = namespaces.clone();
        async move {
            retrying(|_| async {
                ignore_missing(namespaces.delete(name, &DeleteParams::background()).await)
            })
            .await
            .with_context(|| format!("deleting namespace {name}"))
        }
    }))
    .buffer_unordered(concurrency)
    .try_collect::<Vec<()>>()
    .await?;
    wait_gone("baseline namespaces", timeout, || {
        let namespaces = namespaces.clone();
        let list = list.clone();
        async move { Ok(namespaces.list_metadata(&list).await?.items.len()) }
    })
    .await
}

/// Re-counts what is left every 2 s until nothing is, printing progress; fails after
/// `timeout`.
async fn wait_gone<F, Fut>(what: &str, timeout: Duration, mut count: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    let start = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let left = match count().await {
            Ok(left) => left,
            Err(e) if start.elapsed() < timeout => {
                println!("  {what}: counting failed ({e:#}); trying again");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if left == 0 {
            println!("  {what}: all gone in {:.1}s", secs(start.elapsed()));
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("{left} {what} still there after {timeout:?}");
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            println!("  [{:>6.1}s] {what}: {left} left", secs(start.elapsed()));
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Deletes the bench's agencies (cascade annotation on each) and waits until they and
/// their namespaces are gone.
async fn cleanup_agencies(
    client: &Client,
    selector: &str,
    namespaces: HashSet<String>,
    concurrency: usize,
    timeout: Duration,
) -> Result<()> {
    let api = Api::<Agency>::all(client.clone());
    let names: Vec<String> = api
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .context("listing the bench's agencies")?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    println!("cleanup: deleting {} agencies", names.len());
    let cascade = json!({"metadata": {"annotations": {CASCADE_DELETE_ANNOTATION: "true"}}});
    for delete in [false, true] {
        futures::stream::iter(names.iter().map(|name| {
            let api = api.clone();
            let cascade = &cascade;
            async move {
                retrying(|_| async {
                    if delete {
                        ignore_missing(api.delete(name, &DeleteParams::background()).await)
                    } else {
                        ignore_missing(
                            api.patch(name, &PatchParams::default(), &Patch::Merge(cascade))
                                .await,
                        )
                    }
                })
                .await
                .with_context(|| format!("deleting agency {name}"))
            }
        }))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    }
    let list = ListParams::default().labels(selector);
    wait_gone("agencies", timeout, || {
        let api = api.clone();
        let list = list.clone();
        async move { Ok(api.list_metadata(&list).await?.items.len()) }
    })
    .await?;
    let ns_api = Api::<Namespace>::all(client.clone());
    wait_gone("agency namespaces", timeout, || {
        let ns_api = ns_api.clone();
        let namespaces = &namespaces;
        async move {
            Ok(ns_api
                .list_metadata(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|n| namespaces.contains(&n.name_any()))
                .count())
        }
    })
    .await
}

/// What the restart measured.
struct Restart {
    /// From the restart command until every agency was reconciled (counter >= N).
    since_restart: Duration,
    /// The same, from the moment the new process answered /readyz.
    since_ready: Duration,
    /// Writes the restarted operator sent until its reconciles settled.
    writes: f64,
}

/// What the run measured, printed at the end.
#[derive(Default)]
struct Summary {
    ready: Option<Duration>,
    /// Before the operator's run and, unless --keep, after it.
    baselines: Vec<(Duration, usize)>,
    peak_kib: Option<u64>,
    rss_kib: Option<u64>,
    writes: Option<f64>,
    restart: Option<Restart>,
    notes: Vec<String>,
}

async fn run(args: Args) -> Result<()> {
    let n = args.agencies as usize;
    let concurrency = args.concurrency as usize;
    let timeout = Duration::from_secs(args.timeout);
    let (binary, which) = operator_binary(args.operator.clone())?;
    println!("operator binary: {} ({which})", binary.display());

    let cluster: &'static Cluster = blocking(|| Ok(govbroker_e2e::cluster())).await?;
    let client = cluster.admin().await?;
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or_default();
    let run = run_id();
    let shape = TreeShape::of(n);
    println!(
        "run {run}: {n} agencies (1 ministry, {} provinces, {} districts, {} communes) on {nodes} fake nodes, {concurrency} creates in flight",
        shape.provinces, shape.districts, shape.communes
    );

    let mut summary = Summary::default();
    if args.skip_baseline {
        println!("baseline: skipped (--skip-baseline)");
    } else {
        summary
            .baselines
            .push(baseline(&client, n, &run, concurrency, timeout).await?);
    }

    println!("operator: restarting");
    let pid = restart_operator(cluster, &binary).await?;
    println!("operator: ready (pid {pid}); creating the tree");
    let selector = format!("{BENCH_LABEL}={run}");
    let levels = agency_tree(n, &run, "", &run);
    let namespaces: HashSet<String> = levels
        .iter()
        .flatten()
        .flat_map(|a| {
            a.spec
                .environments
                .iter()
                .map(|e| govbroker_domain::isolation::namespace_name(&a.name_any(), &e.name))
        })
        .collect();
    let outcome = measure(
        &args,
        cluster,
        &binary,
        &client,
        &selector,
        &levels,
        pid,
        &mut summary,
    )
    .await;
    if let Err(e) = &outcome {
        eprintln!("agency-tree: {e:#}");
        eprintln!(
            "  operator log: {}",
            cluster.state_dir.join("logs/operator.log").display()
        );
    }
    if args.keep {
        println!("keeping the agencies (--keep): label {selector}");
    } else if let Err(e) =
        cleanup_agencies(&client, &selector, namespaces, concurrency, timeout).await
    {
        summary.notes.push(format!("cleanup incomplete: {e:#}"));
    } else if !args.skip_baseline && outcome.is_ok() {
        println!("baseline again, to bracket the operator's run");
        // A failure here must not lose the operator's figures measured above.
        match baseline(&client, n, &run, concurrency, timeout).await {
            Ok(measured) => summary.baselines.push(measured),
            Err(e) => summary.notes.push(format!(
                "second baseline failed (ratio to the first only): {e:#}"
            )),
        }
    }
    print_summary(n, nodes, &summary);
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    cluster: &'static Cluster,
    binary: &Path,
    client: &Client,
    selector: &str,
    levels: &[Vec<Agency>],
    pid: u32,
    summary: &mut Summary,
) -> Result<()> {
    let n = args.agencies as usize;
    let timeout = Duration::from_secs(args.timeout);
    let writes_before = writes().await?;
    let mut ready = ReadyWatch::start(client.clone(), selector).await?;
    let created = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let progress = {
        let created = created.clone();
        let counts = ready.counts.clone();
        Progress::every(start, move || {
            format!(
                "operator: created {}/{n}, ready {}/{n}",
                created.load(Ordering::Relaxed),
                counts.borrow().1
            )
        })
    };
    create_tree(client, levels, args.concurrency as usize, &created).await?;
    println!(
        "operator: all {n} agencies created in {:.1}s ({} Ready so far)",
        secs(start.elapsed()),
        ready.ready()
    );
    ready.wait_all_ready(n, timeout).await?;
    let elapsed = start.elapsed();
    drop(progress);
    summary.ready = Some(elapsed);
    println!(
        "operator: all Ready in {:.1}s ({:.1} agencies/s)",
        secs(elapsed),
        n as f64 / secs(elapsed)
    );

    // Writes that follow the last Ready (parents' status catching up) belong to the
    // tree too: wait until the counter stands still for 2 s (at most 30 s).
    let mut last = writes().await?;
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = writes().await?;
        if now == last {
            break;
        }
        last = now;
    }
    let written = last - writes_before;
    summary.writes = Some(written / n as f64);
    summary.peak_kib = proc_status_kib(pid, "VmHWM").ok();
    summary.rss_kib = proc_status_kib(pid, "VmRSS").ok();
    if operator_pid(cluster).ok() != Some(pid) {
        summary.notes.push(
            "the operator was restarted by someone else during the run: its figures are unreliable"
                .to_owned(),
        );
    }
    println!(
        "operator: {written} API writes ({:.1} per agency), peak memory {:.1} MiB",
        written / n as f64,
        summary.peak_kib.map(mib).unwrap_or_default()
    );

    if args.skip_restart {
        println!("restart: skipped (--skip-restart)");
        return Ok(());
    }
    // Every Agency in the cluster is reconciled at start-up, the bench's and any other.
    let total = Api::<Agency>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await
        .context("counting agencies")?
        .items
        .len()
        .max(n);
    println!(
        "restart: restarting the operator over the settled tree ({n} bench agencies, {} others)",
        total - n
    );
    let restart_started = Instant::now();
    let pid = restart_operator(cluster, binary).await?;
    let ready_after = restart_started.elapsed();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(600);
    let mut last_print = Instant::now();
    // The counter standing still this long below the target means reconciles are stuck,
    // not slow: say so instead of waiting out the 10 minutes.
    let stall_limit = Duration::from_secs(120);
    let mut last_change = (f64::NAN, Instant::now());
    loop {
        if operator_pid(cluster).ok() != Some(pid) {
            bail!("the operator was restarted by someone else during the restart measurement");
        }
        let (reconciled, written) = match metrics().await {
            Ok(text) => (
                metric_sum_with(&text, "govbroker_reconcile_total", "controller=\"agency\"") + 0.0,
                writes_in(&text),
            ),
            Err(e) if Instant::now() < deadline => {
                println!("  restart: reading /metrics failed ({e:#}); trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if reconciled >= total as f64 {
            let elapsed = start.elapsed();
            println!(
                "restart: {reconciled} reconciles (>= {total}) {:.1}s after the restart began ({:.1}s after /readyz), {written} writes so far",
                secs(ready_after + elapsed),
                secs(elapsed)
            );
            // Writes made by late reconciles count too: wait until the reconcile
            // counter stands still for 2 s (at most 60 s) before reading them.
            let mut last = reconciled;
            let mut written = written;
            let quiet = Instant::now();
            while quiet.elapsed() < Duration::from_secs(60) {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let text = metrics().await?;
                let now =
                    metric_sum_with(&text, "govbroker_reconcile_total", "controller=\"agency\"");
                written = writes_in(&text);
                if now == last {
                    break;
                }
                last = now;
            }
            println!(
                "restart: reconciles settled at {last}, {written} writes by the restarted operator"
            );
            summary.restart = Some(Restart {
                since_restart: ready_after + elapsed,
                since_ready: elapsed,
                writes: written,
            });
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the restarted operator made only {reconciled} reconciles for {total} agencies within 10 minutes ({written} writes)"
            );
        }
        if reconciled != last_change.0 {
            last_change = (reconciled, Instant::now());
        } else if reconciled > 0.0 && last_change.1.elapsed() > stall_limit {
            bail!(
                "the restarted operator is stuck: {reconciled} reconciles for {total} agencies and no new one for {stall_limit:?} ({written} writes); some agencies were never reconciled after the restart (see {})",
                cluster.state_dir.join("logs/operator.log").display()
            );
        }
        if last_print.elapsed() >= Duration::from_secs(3) {
            println!(
                "  [{:>6.1}s] restart: reconciles {reconciled}/{total}, writes {written}",
                secs(start.elapsed()),
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_summary(n: usize, nodes: usize, s: &Summary) {
    println!();
    println!("agency-tree benchmark: {n} agencies on {nodes} fake nodes");
    match s.ready {
        Some(d) => println!(
            "  operator: all Ready in {:.1}s ({:.1} agencies/s)",
            secs(d),
            n as f64 / secs(d)
        ),
        None => println!("  operator: not all Ready (see above)"),
    }
    let labels = ["before the operator's run", "after it"];
    for ((d, objects), label) in s.baselines.iter().zip(labels) {
        let ratio = s
            .ready
            .map(|op| format!(", ratio {:.2}", secs(op) / secs(*d)))
            .unwrap_or_default();
        println!(
            "  baseline: same {objects} objects created directly in {:.1}s ({label}){ratio}",
            secs(*d)
        );
    }
    match (s.ready, s.baselines.len()) {
        (_, 0) => println!("  baseline: not run"),
        (Some(op), count) => {
            let mean = s.baselines.iter().map(|(d, _)| secs(*d)).sum::<f64>() / count as f64;
            println!(
                "  ratio:    {:.2} to the mean baseline {mean:.1}s (target <= 1.5 at 1,000)",
                secs(op) / mean
            );
        }
        (None, _) => {}
    }
    if let Some(peak) = s.peak_kib {
        println!(
            "  operator peak memory: {:.1} MiB (RSS now {:.1} MiB)",
            mib(peak),
            s.rss_kib.map(mib).unwrap_or_default()
        );
    }
    if let Some(w) = s.writes {
        println!("  API writes per agency: {w:.1}");
    }
    match &s.restart {
        Some(r) => println!(
            "  restart: converged in {:.1}s ({:.1}s after /readyz) with {} writes",
            secs(r.since_restart),
            secs(r.since_ready),
            r.writes
        ),
        None => println!("  restart: not measured"),
    }
    for note in &s.notes {
        println!("  note: {note}");
    }
}
