//! Shutdown on SIGTERM and SIGINT.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::Error;

/// Installs handlers for SIGTERM and SIGINT and cancels `shutdown` on the first of
/// them. Must be called inside the runtime; fails if a handler cannot be installed.
pub fn cancel_on_shutdown_signal(shutdown: CancellationToken) -> Result<(), Error> {
    let install = |kind, name| {
        signal(kind).map_err(|source| Error::Signal {
            signal: name,
            source,
        })
    };
    let mut term = install(SignalKind::terminate(), "SIGTERM")?;
    let mut int = install(SignalKind::interrupt(), "SIGINT")?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            () = shutdown.cancelled() => return,
        };
        info!(signal = name, "shutting down");
        shutdown.cancel();
    });
    Ok(())
}
