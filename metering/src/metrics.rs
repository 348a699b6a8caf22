//! Prometheus metrics of the collector.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The collector's metrics, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    /// The registry to expose.
    pub registry: Registry,
    /// Watch events handled, by kind.
    pub events: IntCounterVec,
    /// Watch failures, by kind.
    pub watch_errors: IntCounterVec,
    /// Agency commits written to the ledger.
    pub ledger_writes: IntCounter,
    /// Flushes that failed to write.
    pub ledger_write_errors: IntCounter,
    /// Objects holding something now.
    pub open_intervals: IntGauge,
    /// UTC second of the last successful flush: the collector's lag is `time() - this`.
    pub last_flush: IntGauge,
    /// Duration of successful flushes.
    pub flush_seconds: Histogram,
    /// Per-agency cost gauges.
    pub costs: crate::costs::CostGauges,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let events = IntCounterVec::new(
            Opts::new(
                "govbroker_metering_events_total",
                "Watch events handled by the metering collector",
            ),
            &["kind"],
        )
        .expect("metric");
        let watch_errors = IntCounterVec::new(
            Opts::new(
                "govbroker_metering_watch_errors_total",
                "Watch failures of the metering collector",
            ),
            &["kind"],
        )
        .expect("metric");
        let ledger_writes = IntCounter::new(
            "govbroker_metering_ledger_agency_writes_total",
            "Agency usage commits (day records + checkpoint) written to the ledger",
        )
        .expect("metric");
        let ledger_write_errors = IntCounter::new(
            "govbroker_metering_ledger_write_errors_total",
            "Flushes of the metering collector that could not write to the ledger",
        )
        .expect("metric");
        let open_intervals = IntGauge::new(
            "govbroker_metering_open_intervals",
            "Pods, volumes and data-service claims currently holding billable resources",
        )
        .expect("metric");
        let last_flush = IntGauge::new(
            "govbroker_metering_last_flush_timestamp_seconds",
            "When the collector last wrote usage (lag = time() - this)",
        )
        .expect("metric");
        let flush_seconds = Histogram::with_opts(HistogramOpts::new(
            "govbroker_metering_flush_duration_seconds",
            "Duration of the collector's writes to the ledger",
        ))
        .expect("metric");
        for m in [
            Box::new(events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(watch_errors.clone()),
            Box::new(ledger_writes.clone()),
            Box::new(ledger_write_errors.clone()),
            Box::new(open_intervals.clone()),
            Box::new(last_flush.clone()),
            Box::new(flush_seconds.clone()),
        ] {
            registry.register(m).expect("metric registered once");
        }
        let costs = crate::costs::CostGauges::new(&registry);
        Metrics {
            costs,
            registry,
            events,
            watch_errors,
            ledger_writes,
            ledger_write_errors,
            open_intervals,
            last_flush,
            flush_seconds,
        }
    }
}

impl Metrics {
    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        use prometheus::Encoder as _;
        let mut out = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Serves `/metrics` (and `/healthz`) on `addr` until `shutdown`.
    pub async fn serve(
        self,
        addr: std::net::SocketAddr,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<()> {
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let app = axum::Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/metrics",
                get(move || {
                    let metrics = self.clone();
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4",
                            )],
                            metrics.encode(),
                        )
                    }
                }),
            );
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
