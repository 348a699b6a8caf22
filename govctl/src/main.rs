//! `govctl`: parses the command line, runs the command, and turns its outcome into the
//! documented exit code (`govctl --help` lists them).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

fn main() -> ExitCode {
    let matches = govctl::Cli::command().get_matches();
    let cli = match govctl::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let token_on_command_line =
        matches.value_source("token") == Some(clap::parser::ValueSource::CommandLine);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("govctl: starting the runtime: {e}");
            return ExitCode::from(govctl::exit::OTHER);
        }
    };
    match runtime.block_on(govctl::run(cli, token_on_command_line)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("govctl: {failure}");
            ExitCode::from(failure.code)
        }
    }
}
