//! Test tools from package registries, installed by the tests themselves under
//! `<target>/tools` so a fresh machine needs nothing installed by hand.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, Result};

use super::run;

/// The schemathesis release the fuzz test uses (PyPI).
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// `<target>`, found from the running test binary (`<target>/<profile>/deps/<test>`).
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .nth(3)
        .map(PathBuf::from)
        .context("finding the target directory from the test binary")
}

/// The `st` command of schemathesis, installed into a virtualenv under
/// `<target>/tools/schemathesis-<version>` on first use.
pub fn schemathesis() -> Result<PathBuf> {
    let venv = target_dir()?.join(format!("tools/schemathesis-{SCHEMATHESIS_VERSION}"));
    let st = venv.join("bin/st");
    if st.exists() {
        return Ok(st);
    }
    eprintln!(
        "installing schemathesis {SCHEMATHESIS_VERSION} into {}",
        venv.display()
    );
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("schemathesis=={SCHEMATHESIS_VERSION}"),
    ]))?;
    Ok(st)
}
