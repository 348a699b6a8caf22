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

    // Two threads: the controllers run on this one (`block_on`), and one worker runs
    // what is spawned: the probe, metrics and webhook servers and the client's
    // connections, so an admission review is answered while the controllers are busy
    // (listing 12,000 agencies at start-up takes seconds of CPU). A worker per core
    // cost as much CPU as the work: the operator mostly waits on the API server, which
    // shares the cores, and its workers kept waking each other (docs/agencies.md, "One
    // worker thread").
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
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
