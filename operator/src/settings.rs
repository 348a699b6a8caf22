//! Settings of the operator, parsed once at start-up by clap from flags and
//! `GOVBROKER_*` environment variables. Nothing else reads the environment.

use std::net::SocketAddr;

/// Command-line flags and environment of `govbroker-operator`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "govbroker-operator", version, about)]
pub struct Settings {
    /// Address of the HTTP server for /healthz, /readyz and /metrics.
    ///
    /// The default listens on every interface so that kubelet probes and Prometheus
    /// reach the pod; on a workstation use 127.0.0.1:8080.
    #[arg(long, env = "GOVBROKER_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Log line format: human-readable text, or one JSON object per line.
    #[arg(long, env = "GOVBROKER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Which logs to write, as a tracing filter such as `info` or
    /// `info,govbroker_operator=debug,kube=warn`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
}

/// Format of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn flags_parse() {
        // Flags win over the environment, so this holds whatever GOVBROKER_* is set.
        let set = Settings::try_parse_from([
            "govbroker-operator",
            "--metrics-addr=127.0.0.1:9090",
            "--log-format=json",
        ])
        .unwrap();
        assert_eq!(set.metrics_addr, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(set.log_format, LogFormat::Json);
    }
}
