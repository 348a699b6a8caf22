//! `govbroker-metering`: the metering collector. Runs terms of
//! [`govbroker_metering::run`] until SIGINT/SIGTERM; a term that ends with an error is
//! followed by a new one, which resumes from the ledger's checkpoints.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use govbroker_ledger::LedgerOptions;
use govbroker_metering::{CollectorConfig, Metrics};
use tokio_util::sync::CancellationToken;

/// The metering collector of govbroker.
#[derive(Debug, Parser)]
#[command(name = "govbroker-metering", version, about)]
struct Settings {
    /// Ledger etcd endpoints, comma-separated.
    #[arg(
        long,
        env = "GOVBROKER_LEDGER_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:12381"
    )]
    ledger_endpoints: Vec<String>,
    /// Key prefix in the ledger etcd.
    #[arg(long, env = "GOVBROKER_LEDGER_PREFIX", default_value = "/govbroker")]
    ledger_prefix: String,
    /// Seconds between writes of usage and checkpoints.
    #[arg(long, env = "GOVBROKER_METERING_FLUSH_SECONDS", default_value_t = 30)]
    flush_seconds: u64,
    /// Seconds between updates of the Agencies' month-to-date cost and budget status
    /// (0: never).
    #[arg(long, env = "GOVBROKER_METERING_COST_SECONDS", default_value_t = 300)]
    cost_seconds: u64,
    /// TTL in seconds of the collector's fence lease (a successor waits at most this).
    #[arg(long, env = "GOVBROKER_METERING_LEASE_SECONDS", default_value_t = 45)]
    lease_seconds: i64,
    /// This collector's identity in the fence (default: host name and pid).
    #[arg(long, env = "GOVBROKER_METERING_HOLDER")]
    holder: Option<String>,
    /// Address of the HTTP server for /metrics and /healthz.
    #[arg(
        long,
        env = "GOVBROKER_METERING_METRICS_ADDR",
        default_value = "127.0.0.1:18090"
    )]
    metrics_addr: std::net::SocketAddr,
    /// Which logs to write, as a tracing filter.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_filter: String,
}

fn main() -> ExitCode {
    let settings = Settings::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&settings.log_filter))
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("govbroker-metering: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let holder = settings.holder.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "collector".into());
            format!("{host}-{}", std::process::id())
        });
        let config = CollectorConfig {
            endpoints: settings.ledger_endpoints.clone(),
            prefix: settings.ledger_prefix.clone(),
            holder,
            flush_interval: Duration::from_secs(settings.flush_seconds.max(1)),
            lease_ttl: settings.lease_seconds,
            ledger: LedgerOptions::default(),
            cost_interval: (settings.cost_seconds > 0)
                .then(|| Duration::from_secs(settings.cost_seconds)),
        };
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            signal.cancel();
        });
        let metrics = Metrics::new();
        {
            let metrics = metrics.clone();
            let addr = settings.metrics_addr;
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) = metrics.serve(addr, shutdown).await {
                    tracing::warn!(error = %e, %addr, "cannot serve metrics");
                }
            });
        }
        let client = match kube::Client::try_default().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no Kubernetes client");
                return ExitCode::FAILURE;
            }
        };
        while !shutdown.is_cancelled() {
            match govbroker_metering::run(client.clone(), config.clone(), metrics.clone(), shutdown.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "the collector's term ended; starting a new one from the checkpoints");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            }
        }
        ExitCode::SUCCESS
    })
}
