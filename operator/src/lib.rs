//! The govbroker operator.
//!
//! The binary `govbroker-operator` parses [`Settings`], installs logging and calls
//! [`run`], which
//!
//! 1. serves `/healthz`, `/readyz` and `/metrics` ([`http`]) at once,
//! 2. connects to the Kubernetes API server, retrying with backoff while `/readyz`
//!    answers 503 ([`connect`]),
//! 3. builds the one shared [`Context`] and runs the [`controllers`] until SIGTERM or
//!    SIGINT ([`signals`]), then stops everything gracefully.
#![forbid(unsafe_code)]

pub mod apply;
pub mod cache;
pub mod connect;
pub mod context;
pub mod controllers;
pub mod error;
pub mod events;
pub mod http;
pub mod metrics;
pub mod readiness;
pub mod settings;
pub mod signals;
pub mod telemetry;
pub mod webhook;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

pub use context::Context;
pub use error::Error;
pub use metrics::Metrics;
pub use readiness::{Readiness, ReadyState};
pub use settings::{LogFormat, Settings};

/// Runs the operator until SIGTERM or SIGINT, then shuts down gracefully.
///
/// Returns `Ok(())` after a requested shutdown; an error only when something could not
/// start (the HTTP port is taken, a signal handler cannot be installed) or a
/// controller failed for good. An unreachable API server is not an error: it is
/// retried until it answers or the process is told to stop.
pub async fn run(settings: Settings) -> Result<(), Error> {
    let settings = Arc::new(settings);
    let metrics = Arc::new(Metrics::new()?);
    let readiness = Readiness::new();
    let shutdown = CancellationToken::new();
    signals::cancel_on_shutdown_signal(shutdown.clone())?;

    let listener = tokio::net::TcpListener::bind(settings.metrics_addr)
        .await
        .map_err(|source| Error::Bind {
            addr: settings.metrics_addr,
            source,
        })?;
    info!(addr = %settings.metrics_addr, "serving /healthz, /readyz and /metrics");
    let server = tokio::spawn(http::serve(
        listener,
        http::HttpState {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
        },
        shutdown.clone(),
    ));

    let result = match connect::connect(&readiness, &shutdown).await {
        Some(client) => {
            let ctx = Arc::new(Context::new(client, metrics, settings, readiness.clone()));
            readiness.connected();
            controllers::run(ctx, shutdown.clone()).await
        }
        None => Ok(()),
    };

    // Whatever ended the controllers, stop serving and report not-ready meanwhile.
    readiness.shutting_down();
    shutdown.cancel();
    let served = server.await.map_err(Error::Task)?;
    info!("stopped");
    result.and(served)
}
