//! `db-provision`: how fast the broker provisions PostgreSQL claims on the local shared
//! server, compared with issuing the same SQL directly.
//!
//! A benchmark, not a test: it prints figures and asserts nothing about them.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use futures::{StreamExt as _, TryStreamExt as _};
use govbroker_bench::{BENCH_LABEL, operator_binary, restart_operator, run_id};
use govbroker_crds::{Agency, ClaimPhase, DataServiceClaim, DataServiceClass};
use govbroker_domain::CASCADE_DELETE_ANNOTATION;
use govbroker_domain::data_services::{
    PostgresLimits, create_database, create_role, drop_instance,
};
use govbroker_e2e::data_services::ServerAdmin;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt as _};
use serde_json::json;

const LONG_ABOUT: &str = "\
Benchmark of the data-service broker against the real local control plane and the
local cloud's PostgreSQL (127.0.0.1:15432).

It restarts the operator (release build if there is one), creates a DataServiceClass
for the local server and A agencies (each with a `prod` namespace and quota for the
class), then measures:

  operator   seconds from the first DataServiceClaim create until all C claims
             (spread evenly over the agencies, created with bounded concurrency) are
             Ready, seen on a watch: admission, finalizer, role, database, binding
             Secret, egress policy and status;
  baseline   the same SQL (CREATE ROLE ... CONNECTION LIMIT, CREATE DATABASE,
             REVOKE/GRANT) issued directly over admin connections with the same
             concurrency, and the ratio operator/baseline (target <= 2).

Everything it made is removed at the end (claims with deletionPolicy Delete, so the
databases are dropped), unless --keep. Do not run it while end-to-end tests use the
shared local control plane.";

/// Benchmark of the broker: C PostgreSQL claims over A agencies until all are Ready.
#[derive(Parser, Debug)]
#[command(name = "db-provision", about, long_about = LONG_ABOUT)]
struct Args {
    /// Number of claims.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    claims: u32,
    /// Number of agencies the claims are spread over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    agencies: u32,
    /// Creates (and SQL sessions) in flight at once, for both runs.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Keep what was created.
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    govbroker_bench::main_of("db-provision", run(Args::parse()))
}

async fn run(args: Args) -> Result<()> {
    let cluster = govbroker_e2e::cluster();
    let (binary, which) = operator_binary(None)?;
    println!("operator: {} ({which})", binary.display());
    restart_operator(cluster, &binary).await?;
    let client = Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&cluster.kubeconfig)?,
            &Default::default(),
        )
        .await?,
    )?;
    let admin = cluster.postgres_admin()?;
    let run = run_id();
    let label = format!("{BENCH_LABEL}={run}");
    println!(
        "run {run}: {} claims over {} agencies, concurrency {}",
        args.claims, args.agencies, args.concurrency
    );

    let setup = setup(&client, &admin, &run, &args).await?;
    let outcome = async {
        let operator = operator_run(&client, &setup, &label, &args).await?;
        let baseline = baseline_run(&admin, &run, &args).await?;
        println!();
        println!("claims                {}", args.claims);
        println!(
            "operator              {:.1} s ({:.1} claims/s)",
            operator.as_secs_f64(),
            f64::from(args.claims) / operator.as_secs_f64()
        );
        println!(
            "baseline (direct SQL) {:.1} s ({:.1} claims/s)",
            baseline.as_secs_f64(),
            f64::from(args.claims) / baseline.as_secs_f64()
        );
        println!(
            "ratio                 {:.2} (target <= 2)",
            operator.as_secs_f64() / baseline.as_secs_f64()
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if !args.keep {
        cleanup(&client, &admin, &setup, &run, &args).await?;
    }
    outcome
}

/// What the run created before measuring.
struct Setup {
    class: String,
    namespace: String,
    /// The agencies' prod namespaces.
    targets: Vec<String>,
    agencies: Vec<String>,
}

async fn setup(client: &Client, admin: &ServerAdmin, run: &str, args: &Args) -> Result<Setup> {
    let namespace = format!("bench-{run}");
    let class = format!("bench-pg-{run}");
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": namespace, "labels": {BENCH_LABEL: run}},
            }))?,
        )
        .await?;
    Api::<Secret>::namespaced(client.clone(), &namespace)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "pg-admin"},
                "stringData": {"username": admin.user, "password": admin.password},
            }))?,
        )
        .await?;
    let per_agency = args.claims.div_ceil(args.agencies);
    Api::<DataServiceClass>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": class, "labels": {BENCH_LABEL: run}},
                "spec": {
                    "engine": "postgres",
                    "server": {
                        "host": admin.host, "port": admin.port, "tls": {"enabled": false},
                        "adminSecretRef": {"namespace": namespace, "name": "pg-admin"},
                    },
                    "plans": [{"name": "nho", "description": "bench", "limits": {"maxConnections": 5}}],
                },
            }))?,
        )
        .await?;
    let agencies: Vec<String> = (0..args.agencies)
        .map(|i| format!("bench-{run}-{i:03}"))
        .collect();
    println!("setup: {} agencies ...", agencies.len());
    let api = Api::<Agency>::all(client.clone());
    futures::stream::iter(agencies.iter().cloned())
        .map(|name| {
            let api = api.clone();
            let class = class.clone();
            async move {
                let agency: Agency = serde_json::from_value(json!({
                    "apiVersion": "govbroker.io/v1alpha1", "kind": "Agency",
                    "metadata": {"name": name, "labels": {BENCH_LABEL: run}},
                    "spec": {
                        "displayName": format!("Cơ quan {name}"), "level": "Central",
                        "securityLevel": 2,
                        "environments": [{"name": "prod", "quota": {"cpu": "1"}}],
                        "quota": {"cpu": "1", "dataServices": {class: per_agency}},
                    },
                }))?;
                api.create(&PostParams::default(), &agency).await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let targets: Vec<String> = agencies.iter().map(|a| format!("{a}-prod")).collect();
    let namespaces = Api::<Namespace>::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let present: HashSet<String> = namespaces
            .list_metadata(&ListParams::default().labels("govbroker.io/environment"))
            .await?
            .into_iter()
            .map(|n| n.name_any())
            .collect();
        if targets.iter().all(|t| present.contains(t)) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the agencies' namespaces did not appear within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(Setup {
        class,
        namespace,
        targets,
        agencies,
    })
}

fn claim_name(i: u32) -> String {
    format!("csdl-{i:04}")
}

async fn operator_run(
    client: &Client,
    setup: &Setup,
    label: &str,
    args: &Args,
) -> Result<Duration> {
    let ready = Arc::new(Mutex::new(HashSet::<String>::new()));
    let want = args.claims as usize;
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let watching = {
        let ready = ready.clone();
        let stream = watcher(
            Api::<DataServiceClaim>::all(client.clone()),
            watcher::Config::default().labels(label),
        )
        .applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(claim)) = stream.next().await {
                if claim.status.as_ref().and_then(|s| s.phase) == Some(ClaimPhase::Ready) {
                    let mut set = ready.lock().unwrap_or_else(|e| e.into_inner());
                    set.insert(format!(
                        "{}/{}",
                        claim.namespace().unwrap_or_default(),
                        claim.name_any()
                    ));
                    if set.len() >= want {
                        let _ = done_tx.send(true);
                    }
                }
            }
        })
    };
    let start = Instant::now();
    let progress = {
        let ready = ready.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let n = ready.lock().unwrap_or_else(|e| e.into_inner()).len();
                println!(
                    "  [{:>6.1}s] {n}/{want} claims Ready",
                    start.elapsed().as_secs_f64()
                );
            }
        })
    };
    let (bench_key, bench_value) = label.split_once('=').unwrap_or_default();
    futures::stream::iter(0..args.claims)
        .map(|i| {
            let ns = setup.targets[(i % args.agencies) as usize].clone();
            let class = setup.class.clone();
            let api = Api::<DataServiceClaim>::namespaced(client.clone(), &ns);
            async move {
                let claim: DataServiceClaim = serde_json::from_value(json!({
                    "apiVersion": "govbroker.io/v1alpha1", "kind": "DataServiceClaim",
                    "metadata": {"name": claim_name(i), "labels": {bench_key: bench_value}},
                    "spec": {"className": class, "plan": "nho", "deletionPolicy": "Delete"},
                }))?;
                api.create(&PostParams::default(), &claim)
                    .await
                    .with_context(|| format!("creating claim {} in {ns}", claim_name(i)))?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(args.concurrency as usize)
        .try_collect::<Vec<()>>()
        .await?;
    let waited = tokio::time::timeout(Duration::from_secs(1800), done_rx.wait_for(|d| *d)).await;
    let elapsed = start.elapsed();
    progress.abort();
    watching.abort();
    if waited.is_err() {
        bail!("not every claim was Ready within 30 minutes");
    }
    Ok(elapsed)
}

fn baseline_names(run: &str, i: u32) -> String {
    format!("gbbase_{run}_{i:04}")
}

async fn session(admin: &ServerAdmin) -> Result<tokio_postgres::Client> {
    let (client, connection) = admin
        .postgres_config("postgres")
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn baseline_run(admin: &ServerAdmin, run: &str, args: &Args) -> Result<Duration> {
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let workers = (0..args.concurrency).map(|_| {
        let next = next.clone();
        let admin = admin.clone();
        let run = run.to_owned();
        let total = args.claims;
        async move {
            let pg = session(&admin).await?;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let name = baseline_names(&run, i);
                let password = format!("{:032x}", u128::from(i) * 7919 + 1);
                let mut statements = vec![create_role(
                    &name,
                    &password,
                    PostgresLimits {
                        max_connections: Some(5),
                    },
                )?];
                statements.extend(create_database(&name, &name)?);
                for statement in statements {
                    pg.batch_execute(&statement).await?;
                }
            }
        }
    });
    futures::future::try_join_all(workers).await?;
    Ok(start.elapsed())
}

async fn cleanup(
    client: &Client,
    admin: &ServerAdmin,
    setup: &Setup,
    run: &str,
    args: &Args,
) -> Result<()> {
    println!("cleanup ...");
    let pg = session(admin).await?;
    for i in 0..args.claims {
        let name = baseline_names(run, i);
        for statement in drop_instance(&name, &name)? {
            pg.batch_execute(&statement).await?;
        }
    }
    for ns in &setup.targets {
        Api::<DataServiceClaim>::namespaced(client.clone(), ns)
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let left = Api::<DataServiceClaim>::all(client.clone())
            .list_metadata(&ListParams::default().labels(&format!("{BENCH_LABEL}={run}")))
            .await?
            .items
            .len();
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{left} claims were not deleted within 600 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let agencies = Api::<Agency>::all(client.clone());
    for name in &setup.agencies {
        let _ = agencies
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {CASCADE_DELETE_ANNOTATION: "true"}}}),
                ),
            )
            .await;
        let _ = agencies.delete(name, &DeleteParams::background()).await;
    }
    let _ = Api::<DataServiceClass>::all(client.clone())
        .delete(&setup.class, &DeleteParams::background())
        .await;
    let _ = Api::<Namespace>::all(client.clone())
        .delete(&setup.namespace, &DeleteParams::background())
        .await;
    Ok(())
}
