//! Prometheus metrics of the operator, in one registry owned by [`Metrics`].

use prometheus::{
    Encoder, HistogramOpts, HistogramTimer, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::Error;

/// Content type of the Prometheus text exposition format served on `/metrics`.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Buckets of the reconcile duration histogram, in seconds: from a cache hit to a
/// slow external data-service call.
const RECONCILE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The operator's metrics and the registry they are exposed from.
///
/// Built once at start-up and shared through [`crate::Context`].
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `govbroker_reconcile_total{controller}`: reconciles started.
    pub reconciles: IntCounterVec,
    /// `govbroker_reconcile_errors_total{controller,error}`: reconciles that failed, by
    /// [`Error::metric_label`].
    pub reconcile_errors: IntCounterVec,
    /// `govbroker_reconcile_duration_seconds{controller}`: how long reconciles took.
    pub reconcile_duration: HistogramVec,
    /// `govbroker_build_info{version}`: always 1, labelled with the crate version.
    pub build_info: IntGaugeVec,
    /// `govbroker_kube_writes_total{controller,kind}`: writes sent to the API server.
    /// A settled tree makes none; a restart over it must not either.
    pub kube_writes: IntCounterVec,
}

impl Metrics {
    /// Creates the metrics in a fresh registry and sets `govbroker_build_info`.
    pub fn new() -> Result<Self, Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "govbroker_reconcile_total",
                "Reconciles started, by controller.",
            ),
            &["controller"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "govbroker_reconcile_errors_total",
                "Reconciles that failed, by controller and error kind.",
            ),
            &["controller", "error"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "govbroker_reconcile_duration_seconds",
                "Duration of reconciles, by controller.",
            )
            .buckets(RECONCILE_BUCKETS.to_vec()),
            &["controller"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("govbroker_build_info", "Build information; always 1."),
            &["version"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        let kube_writes = IntCounterVec::new(
            Opts::new(
                "govbroker_kube_writes_total",
                "Writes (apply, patch, create, delete) sent to the Kubernetes API, by controller and kind.",
            ),
            &["controller", "kind"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        registry.register(Box::new(kube_writes.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            build_info,
            kube_writes,
        })
    }

    /// The registry, for components that register metrics of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts a reconcile of `controller` and returns a timer that records its
    /// duration when dropped (or on [`HistogramTimer::observe_duration`]).
    pub fn reconcile_started(&self, controller: &str) -> HistogramTimer {
        self.reconciles.with_label_values(&[controller]).inc();
        self.reconcile_duration
            .with_label_values(&[controller])
            .start_timer()
    }

    /// Counts a failed reconcile of `controller`, labelled by the kind of error.
    pub fn reconcile_failed(&self, controller: &str, error: &Error) {
        self.reconcile_errors
            .with_label_values(&[controller, error.metric_label()])
            .inc();
    }

    /// Encodes every metric in the Prometheus text exposition format
    /// (content type [`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        // The text encoder writes only UTF-8 (names, labels and help are `str`).
        String::from_utf8(buf).map_err(|e| Error::Metrics(prometheus::Error::Msg(e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_build_info_and_reconcile_metrics() {
        let metrics = Metrics::new().unwrap();
        drop(metrics.reconcile_started("agency"));
        metrics.reconcile_failed(
            "agency",
            &Error::Telemetry("only the label matters".to_owned()),
        );

        let text = metrics.encode().unwrap();
        let version = env!("CARGO_PKG_VERSION");
        for line in [
            format!("govbroker_build_info{{version=\"{version}\"}} 1"),
            "govbroker_reconcile_total{controller=\"agency\"} 1".to_owned(),
            "govbroker_reconcile_errors_total{controller=\"agency\",error=\"telemetry\"} 1"
                .to_owned(),
            "govbroker_reconcile_duration_seconds_count{controller=\"agency\"} 1".to_owned(),
            "# TYPE govbroker_reconcile_duration_seconds histogram".to_owned(),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
        assert!(CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
    }
}
