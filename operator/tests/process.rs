//! The operator binary against the real local control plane: it connects, reports
//! ready, serves metrics, and stops cleanly on SIGTERM.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use govbroker_e2e::{DEFAULT_TIMEOUT, cluster, eventually, http_get};
use tokio::io::AsyncReadExt as _;

/// A free loopback port for the operator's HTTP server.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn operator_connects_reports_ready_serves_metrics_and_stops_on_sigterm() -> Result<()> {
    let cluster = cluster();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut operator = tokio::process::Command::new(env!("CARGO_BIN_EXE_govbroker-operator"))
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args(["--metrics-addr", &addr])
        // The shared test operator owns the webhook; this one must not take it over.
        .args(["--webhook=false"])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;

    eventually("the operator to report ready", DEFAULT_TIMEOUT, || async {
        Ok(match http_get(&addr, "/readyz") {
            Ok((200, _)) => Some(()),
            _ => None,
        })
    })
    .await?;
    let (code, _) = http_get(&addr, "/healthz")?;
    ensure!(code == 200, "/healthz answered {code}");
    let (code, metrics) = http_get(&addr, "/metrics")?;
    ensure!(code == 200, "/metrics answered {code}");
    ensure!(
        metrics.contains("govbroker_build_info"),
        "metrics lack govbroker_build_info:\n{metrics}"
    );

    let pid = operator.id().context("operator already exited")?;
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -TERM failed");
    let exit = tokio::time::timeout(Duration::from_secs(20), operator.wait())
        .await
        .context("the operator did not stop within 20s of SIGTERM")??;
    let mut log = String::new();
    if let Some(mut stderr) = operator.stderr.take() {
        stderr.read_to_string(&mut log).await?;
    }
    ensure!(exit.success(), "operator exited with {exit}; log:\n{log}");
    ensure!(
        log.contains("connected to the Kubernetes API server")
            && log.contains("https://127.0.0.1:"),
        "the log does not say where it connected:\n{log}"
    );
    ensure!(log.contains("shutting down"), "no shutdown message:\n{log}");
    Ok(())
}
