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

    /// Serve the admission webhook and keep its configurations in the cluster. Off only
    /// for a second operator beside the one that owns the webhook (e.g. in tests).
    #[arg(long, env = "GOVBROKER_WEBHOOK", default_value_t = true, action = clap::ArgAction::Set)]
    pub webhook: bool,

    /// Address of the admission webhook's HTTPS server.
    #[arg(long, env = "GOVBROKER_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    pub webhook_addr: SocketAddr,

    /// URL at which the API server reaches the webhook, when the operator runs outside
    /// the cluster (e.g. `https://127.0.0.1:18443` for the local cloud). Without it the
    /// webhook is reached through the Service named by `--webhook-service-*`.
    #[arg(long, env = "GOVBROKER_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// Namespace of the webhook's Service (in-cluster installs).
    #[arg(
        long,
        env = "GOVBROKER_WEBHOOK_SERVICE_NAMESPACE",
        default_value = "govbroker-system"
    )]
    pub webhook_service_namespace: String,

    /// Name of the webhook's Service (in-cluster installs).
    #[arg(
        long,
        env = "GOVBROKER_WEBHOOK_SERVICE_NAME",
        default_value = "govbroker-webhook"
    )]
    pub webhook_service_name: String,

    /// Directory with `tls.crt`, `tls.key` (and optionally `ca.crt`) for the webhook. If it
    /// holds none, a CA and certificate are generated into it and reused by later starts.
    /// Without it a certificate is generated in memory at every start.
    #[arg(long, env = "GOVBROKER_WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<std::path::PathBuf>,

    /// Groups whose members are platform admins: they may decide any quota request and
    /// are not bound by agency ownership. `system:masters` always is.
    #[arg(
        long = "platform-admin-group",
        env = "GOVBROKER_PLATFORM_ADMIN_GROUPS",
        value_delimiter = ',',
        default_value = "govbroker:platform-admins"
    )]
    pub platform_admin_groups: Vec<String>,

    /// Which registries each security level may pull workload images from: rules
    /// separated by ';', each `<levels>=<registry or registry/path>,...`, e.g.
    /// `3-5=registry.gov.vn,harbor.gov.vn/shared`. Levels no rule names may use any
    /// registry; an empty setting allows every registry everywhere. Checked when a
    /// Workload is admitted and again by the workload controller.
    #[arg(
        long,
        env = "GOVBROKER_IMAGE_POLICY",
        default_value = "3-5=registry.gov.vn",
        value_parser = govbroker_domain::workload::ImagePolicy::parse
    )]
    pub image_policy: govbroker_domain::workload::ImagePolicy,

    /// Which logs to write, as a tracing filter such as `info` or
    /// `info,govbroker_operator=debug,kube=warn`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
}

impl Settings {
    /// Host names and addresses the webhook certificate must cover.
    pub fn webhook_hosts(&self) -> Vec<String> {
        let mut hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let (ns, name) = (&self.webhook_service_namespace, &self.webhook_service_name);
        hosts.push(format!("{name}.{ns}.svc"));
        hosts.push(format!("{name}.{ns}.svc.cluster.local"));
        if let Some(host) = self
            .webhook_url
            .as_deref()
            .and_then(|u| u.split("://").nth(1))
            .and_then(|rest| rest.split(['/', ':']).next())
            .filter(|h| !h.is_empty() && !hosts.iter().any(|x| x == h))
        {
            hosts.push(host.to_owned());
        }
        hosts
    }
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
