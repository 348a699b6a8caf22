//! `api-load`: requests per second and latency of the provisioning API's unary reads,
//! against the same reads made directly on kube-apiserver by the same identity.
//!
//! A benchmark, not a test: it prints figures and asserts nothing about them.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use govbroker_api::proto;
use govbroker_api::proto::agencies_client::AgenciesClient;
use govbroker_crds::Agency;
use govbroker_e2e::api::{PLATFORM_ADMINS, api_server};
use kube::Api;
use kube::api::ListParams;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const LONG_ABOUT: &str = "\
Load generator for the provisioning API against the real local control plane.

It starts (or reuses) the local control plane, (re)starts the operator and the API
from this profile's binaries (use --release for realistic figures), mints a token for a
platform admin, and for each call runs:

  latency     one caller, --duration seconds: p50 and p99 (the API's overhead over the
              raw call at p50 is the target: under 2 ms);
  throughput  --concurrency callers on one HTTP/2 connection, --duration seconds:
              requests/s (GetAgency target: at least 2,000/s);

for the API over gRPC with TLS (GetAgency served from the watch-fed cache after a
briefly cached SubjectAccessReview; ListAgencies with page size 100) and, as the raw
baseline, the same reads made directly against kube-apiserver with the same token
(GET agency; LIST agencies limit 100). It prints both and their ratios.";

#[derive(Parser)]
#[command(name = "api-load", about = "Load generator for the provisioning API", long_about = LONG_ABOUT)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent callers in the throughput runs.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The agency read by GetAgency (must exist; the demo tree has bo-tttt).
    #[arg(long)]
    agency: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Call {
    Get,
    List,
}

#[derive(Clone)]
struct Target {
    api: AgenciesClient<InterceptedService<Channel, Bearer>>,
    raw: Api<Agency>,
    agency: String,
}

#[derive(Clone)]
struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

impl Target {
    async fn once(&mut self, raw: bool, call: Call) -> Result<()> {
        match (raw, call) {
            (false, Call::Get) => {
                self.api
                    .get_agency(proto::GetAgencyRequest {
                        name: self.agency.clone(),
                    })
                    .await?;
            }
            (false, Call::List) => {
                self.api
                    .list_agencies(proto::ListAgenciesRequest {
                        page_size: 100,
                        ..Default::default()
                    })
                    .await?;
            }
            (true, Call::Get) => {
                self.raw.get(&self.agency).await?;
            }
            (true, Call::List) => {
                self.raw.list(&ListParams::default().limit(100)).await?;
            }
        }
        Ok(())
    }
}

/// Latencies (µs) of `callers` loops over `duration`, and the elapsed time.
async fn run(
    target: &Target,
    raw: bool,
    call: Call,
    callers: usize,
    duration: Duration,
) -> Result<(Vec<u64>, Duration)> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let mut target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                target.once(raw, call).await?;
                latencies.push(t.elapsed().as_micros() as u64);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_unstable();
    Ok((all, started.elapsed()))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

async fn bench(args: Args) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = tokio::task::spawn_blocking(api_server).await?;
    let cluster = govbroker_e2e::cluster();
    let token = cluster.token("api-load@bench", &[PLATFORM_ADMINS])?;
    let admin = cluster.admin().await?;
    let agency = match args.agency {
        Some(a) => a,
        None => Api::<Agency>::all(admin.clone())
            .list(&ListParams::default().limit(1))
            .await?
            .items
            .first()
            .and_then(|a| a.metadata.name.clone())
            .context("no agency to read: run `cargo xtask cloud up` first (it seeds the demo tree) or pass --agency")?,
    };
    let channel = Channel::from_shared(server.url.clone())?
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&server.ca_pem))
                .domain_name("localhost"),
        )?
        .connect()
        .await?;
    let bearer = Bearer(format!("Bearer {token}").parse()?);
    let target = Target {
        api: AgenciesClient::with_interceptor(channel, bearer),
        raw: Api::all(cluster.client_with_token(&token).await?),
        agency: agency.clone(),
    };
    // Warm both paths (connections, caches, the authorization decision).
    let mut warm = target.clone();
    for call in [Call::Get, Call::List] {
        for raw in [false, true] {
            warm.once(raw, call).await.with_context(|| {
                format!("a first {} call failed", if raw { "raw" } else { "API" })
            })?;
        }
    }

    let duration = Duration::from_secs(args.duration);
    println!(
        "api-load: agency {agency}, {}s per run, {} callers for throughput\n",
        args.duration, args.concurrency
    );
    println!(
        "{:<12} {:<5} {:>10} {:>10} {:>12}",
        "call", "via", "p50 ms", "p99 ms", "req/s"
    );
    for (call, name) in [(Call::Get, "GetAgency"), (Call::List, "ListAgencies")] {
        let mut row = Vec::new();
        for raw in [false, true] {
            let (lat, _) = run(&target, raw, call, 1, duration).await?;
            let (many, elapsed) = run(&target, raw, call, args.concurrency, duration).await?;
            let rps = many.len() as f64 / elapsed.as_secs_f64();
            let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
            println!(
                "{:<12} {:<5} {:>10.3} {:>10.3} {:>12.0}",
                name,
                if raw { "raw" } else { "api" },
                p50,
                p99,
                rps
            );
            row.push((p50, rps));
        }
        let ((api_p50, api_rps), (raw_p50, raw_rps)) = (row[0], row[1]);
        println!(
            "{:<12} p50 overhead {:+.3} ms (target < 2 ms); throughput ratio api/raw {:.2}\n",
            name,
            api_p50 - raw_p50,
            api_rps / raw_rps.max(1.0)
        );
    }
    let (_, metrics) = govbroker_e2e::http_get(govbroker_e2e::api::API_HEALTH_ADDR, "/metrics")?;
    let errors: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("govbroker_api_calls_total") && !l.contains("outcome=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    if errors > 0.0 {
        bail!("the API answered {errors} calls with an error during the run; see its log");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match bench(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("api-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
