//! Writes the CRD YAML of every govbroker kind into `charts/govbroker/crds/`, or with
//! `--check` verifies that the checked-in files match the Rust types.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Generate the govbroker CRD YAML from the Rust types.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Do not write anything; exit non-zero and name each stale file when the
    /// checked-in YAML differs from what the types generate.
    #[arg(long)]
    check: bool,
    /// Directory of the CRD files; defaults to the chart's `crds/` directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = args.dir.unwrap_or_else(govbroker_crds::chart_crd_dir);
    match run(&dir, args.check) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("crdgen: {e}");
            ExitCode::from(2)
        }
    }
}

/// Returns whether the directory is (now) up to date.
fn run(dir: &std::path::Path, check: bool) -> Result<bool, govbroker_crds::Error> {
    let rendered = govbroker_crds::render_all(&govbroker_crds::all_crds())?;
    if check {
        let stale = govbroker_crds::check_dir(dir, &rendered)?;
        for file in &stale {
            eprintln!("crdgen: stale: {file}");
        }
        if !stale.is_empty() {
            eprintln!(
                "crdgen: run `cargo run -p govbroker-crds --bin crdgen` and commit the result"
            );
        }
        return Ok(stale.is_empty());
    }
    for path in govbroker_crds::write_dir(dir, &rendered)? {
        println!("crdgen: updated {}", path.display());
    }
    println!(
        "crdgen: {} CRD(s) up to date in {}",
        rendered.len(),
        dir.display()
    );
    Ok(true)
}
