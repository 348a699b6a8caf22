//! Logging set-up.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::{Error, LogFormat};

/// Installs the global log subscriber with the given format and filter.
pub fn init(format: LogFormat, filter: &str) -> Result<(), Error> {
    let filter = EnvFilter::try_new(filter).map_err(|e| Error::Telemetry(e.to_string()))?;
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    }
    .map_err(|e| Error::Telemetry(e.to_string()))
}
