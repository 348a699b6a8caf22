//! Command-line settings of the API server.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Log output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// govbroker's provisioning API: agencies, quota requests and the audit trail over gRPC
/// and HTTP/JSON on one port, with Kubernetes RBAC deciding what each caller may do.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "govbroker-api",
    version,
    after_help = "EXAMPLES:\n  \
    # TLS with a certificate generated (and kept) in ./api-pki, ledger on loopback:\n  \
    govbroker-api --listen 127.0.0.1:18500 --tls-cert-dir ./api-pki\n\n  \
    # Plaintext for a loopback-only development setup:\n  \
    govbroker-api --listen 127.0.0.1:18500 --plaintext\n\n\
    The Kubernetes connection comes from KUBECONFIG or the in-cluster service account.\n\
    The OpenAPI document is served at /openapi.json; /healthz, /readyz and /metrics\n\
    on --health-addr."
)]
pub struct Settings {
    /// Address for gRPC and HTTP/JSON (one port).
    #[arg(long, env = "GOVBROKER_API_LISTEN", default_value = "127.0.0.1:18500")]
    pub listen: SocketAddr,
    /// Plain-HTTP address of /healthz, /readyz and /metrics (kept off the API port so
    /// probes and Prometheus need no token and no TLS).
    #[arg(
        long,
        env = "GOVBROKER_API_HEALTH_ADDR",
        default_value = "127.0.0.1:18501"
    )]
    pub health_addr: SocketAddr,
    /// Directory with tls.crt and tls.key (and ca.crt). If it has none, a CA and a
    /// certificate are generated there and kept. Without it, they live in memory.
    #[arg(long, env = "GOVBROKER_API_TLS_CERT_DIR")]
    pub tls_cert_dir: Option<PathBuf>,
    /// Host names and addresses the generated certificate is valid for.
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
    pub tls_hosts: Vec<String>,
    /// Serve without TLS. Refused unless --listen is a loopback address.
    #[arg(long)]
    pub plaintext: bool,
    /// The ledger etcd's endpoints (comma-separated), where the audit trail lives.
    #[arg(
        long,
        env = "GOVBROKER_LEDGER_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:12381"
    )]
    pub ledger_endpoints: Vec<String>,
    /// Key prefix of govbroker's data in the ledger etcd.
    #[arg(long, env = "GOVBROKER_LEDGER_PREFIX", default_value = govbroker_ledger::DEFAULT_PREFIX)]
    pub ledger_prefix: String,
    /// Audiences to ask for when checking tokens (default: the API server's own).
    #[arg(long)]
    pub token_audience: Vec<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Settings {
    /// Checks combinations clap cannot: plaintext only on loopback.
    pub fn check(&self) -> Result<(), String> {
        if self.plaintext && !self.listen.ip().is_loopback() {
            return Err(format!(
                "--plaintext sends bearer tokens in the clear, so it is allowed only on a loopback address, not {}: drop --plaintext (TLS is the default) or listen on 127.0.0.1",
                self.listen
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_only_on_loopback() {
        let s = Settings::parse_from(["govbroker-api", "--plaintext", "--listen", "0.0.0.0:1"]);
        assert!(s.check().unwrap_err().contains("loopback"));
        let s = Settings::parse_from(["govbroker-api", "--plaintext"]);
        assert!(s.check().is_ok());
    }
}
