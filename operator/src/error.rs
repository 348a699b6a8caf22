//! The operator's error type.

use std::net::SocketAddr;

/// Everything that can go wrong in the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    /// The admission webhook could not start.
    #[error("webhook: {0}")]
    Webhook(String),

    /// A watch cache stopped before it was filled (the operator is shutting down).
    #[error("cache: {0}")]
    Cache(String),

    /// An object could not be serialised (a bug, not a runtime condition).
    #[error("cannot serialise an object: {0}")]
    Serialize(#[source] serde_json::Error),

    /// The API server did not answer the first request at start-up.
    #[error("cannot reach the Kubernetes API server at {url}: {source}")]
    Connect {
        /// The API server URL from the client configuration.
        url: String,
        /// The client's error.
        source: kube::Error,
    },

    /// No usable Kubernetes client configuration was found (KUBECONFIG,
    /// ~/.kube/config, in-cluster service account).
    #[error("no usable Kubernetes client configuration: {0}")]
    KubeConfig(#[from] kube::config::InferConfigError),

    /// A Prometheus metric could not be registered or encoded.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),

    /// The HTTP server could not listen on its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the settings.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The HTTP server failed while serving.
    #[error("HTTP server: {0}")]
    Http(#[source] std::io::Error),

    /// A signal handler could not be installed.
    #[error("cannot install the {signal} handler: {source}")]
    Signal {
        /// Name of the signal, such as `SIGTERM`.
        signal: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The async runtime could not be started.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),

    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),

    /// Logging could not be set up (for example an invalid filter).
    #[error("cannot set up logging: {0}")]
    Telemetry(String),

    /// The data-service broker could not do its work (never carries a password).
    #[error("data service: {0}")]
    DataService(String),
}

impl Error {
    /// A short, stable label for the `error` label of
    /// `govbroker_reconcile_errors_total`; one per variant.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Serialize(_) => "serialize",
            Error::Webhook(_) => "webhook",
            Error::Cache(_) => "cache",
            Error::Connect { .. } => "connect",
            Error::KubeConfig(_) => "kubeconfig",
            Error::Metrics(_) => "metrics",
            Error::Bind { .. } => "bind",
            Error::Http(_) => "http",
            Error::Signal { .. } => "signal",
            Error::Runtime(_) => "runtime",
            Error::Task(_) => "task",
            Error::Telemetry(_) => "telemetry",
            Error::DataService(_) => "data_service",
        }
    }

    /// This error followed by its causes, for logs: `Display` of the enum shows only
    /// the first level, which for network errors hides the useful part
    /// (such as "Connection refused").
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        text
    }
}
