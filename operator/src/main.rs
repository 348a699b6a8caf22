//! The `govbroker-operator` binary: parses settings, installs logging and runs the
//! operator (see [`govbroker_operator::run`]).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use govbroker_operator::{Settings, telemetry};

fn main() -> ExitCode {
    let settings = Settings::parse();
    if let Err(e) = telemetry::init(settings.log_format, &settings.log_filter) {
        eprintln!("govbroker-operator: {e}");
        return ExitCode::FAILURE;
    }
    // Only ring is compiled in, but be explicit so a dependency enabling another rustls
    // provider cannot make the TLS client set-up ambiguous. Err means one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    // One thread runs everything. The operator mostly waits on the API server, which
    // shares the machine's cores with it; with a worker per core its threads kept
    // waking each other (futex, scheduler) for every watch event and answer, which
    // cost about as much CPU as the work itself (docs/agencies.md, "One thread").
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(govbroker_operator::Error::Runtime)
        .and_then(|runtime| runtime.block_on(govbroker_operator::run(settings)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "govbroker-operator failed");
            ExitCode::FAILURE
        }
    }
}
