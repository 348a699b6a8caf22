//! Fuzzes the HTTP face from its own OpenAPI document with schemathesis: whatever a
//! caller sends, the API answers without a server error and keeps running.

mod support;

use std::process::Command;

use anyhow::{Result, bail};
use govbroker_e2e::{cluster, http_get, unique_name};

/// Examples per operation: enough to reach every field's edge cases, bounded for CI.
const EXAMPLES: &str = "30";

#[test]
fn schemathesis_finds_no_server_error() -> Result<()> {
    let server = support::server();
    let st = govbroker_e2e::tools::schemathesis()?;
    // An authenticated caller with no rights: requests get past authentication into
    // validation and authorization, and nothing the fuzzer sends can change the cloud.
    let token = cluster().token(&unique_name("fuzzer"), &[])?;
    let report = std::env::temp_dir().join(format!("{}-schemathesis", unique_name("api")));
    std::fs::create_dir_all(&report)?;
    let output = Command::new(&st)
        // schemathesis keeps a cache in its working directory: not in the repository.
        .current_dir(&report)
        .arg("run")
        .arg(format!("{}/openapi.json", server.url))
        .arg("--tls-verify")
        .arg(&server.ca_file)
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", EXAMPLES])
        .args(["--exclude-path-regex", "/watch$"])
        .args([
            "--workers",
            "2",
            "--seed",
            "1",
            "--request-timeout",
            "20",
            "--no-color",
        ])
        .arg("--report-dir")
        .arg(&report)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("schemathesis found problems:\n{text}");
    }
    // It really ran: the summary names the operations it tested.
    if !text.contains("ListAgencies") && !text.contains("/v1/agencies") {
        bail!("schemathesis did not test the API's operations:\n{text}");
    }
    let (status, _) = http_get(govbroker_e2e::api::API_HEALTH_ADDR, "/healthz")?;
    if status != 200 {
        bail!("the API is not healthy after fuzzing: {status}");
    }
    println!("{text}");
    Ok(())
}
