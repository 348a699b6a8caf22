//! Start-up: connect to Kubernetes and the ledger, fill the caches, serve both faces on
//! one port, stop cleanly on SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use futures::StreamExt as _;
use govbroker_crds::{Agency, QuotaRequest};
use govbroker_ledger::AuditLog;
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use kube::{Api as KubeApi, Client};
use prometheus::{Encoder as _, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::Identity;
use crate::grpc::Grpc;
use crate::service::Api;
use crate::settings::Settings;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is wrong.
    #[error("{0}")]
    Settings(String),
    /// Kubernetes could not be configured.
    #[error("cannot configure the Kubernetes client (set KUBECONFIG or run in a pod): {0}")]
    Kube(String),
    /// The ledger could not be reached.
    #[error("the ledger etcd cannot be reached: {0}")]
    Ledger(#[from] govbroker_ledger::LedgerError),
    /// TLS could not be set up.
    #[error("TLS: {0}")]
    Tls(String),
    /// Serving failed.
    #[error("serving on {addr}: {source}")]
    Serve {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Runs the API until SIGTERM or SIGINT.
pub async fn run(settings: Settings) -> Result<(), ServerError> {
    settings.check().map_err(ServerError::Settings)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::Config::infer()
        .await
        .map_err(|e| ServerError::Kube(e.to_string()))?;
    let client = Client::try_from(config.clone()).map_err(|e| ServerError::Kube(e.to_string()))?;

    let audit = AuditLog::connect(&settings.ledger_endpoints, &settings.ledger_prefix).await?;
    info!(endpoints = %audit.endpoints(), "ledger connected");
    let billing = crate::service::billing::BillingSource {
        usage: govbroker_ledger::usage::UsageLedger::connect(
            &settings.ledger_endpoints,
            &settings.ledger_prefix,
            govbroker_ledger::LedgerOptions::default(),
        )
        .await?,
        client: client.clone(),
    };

    let shutdown = CancellationToken::new();
    let agencies = watched::<Agency>(&client, "agencies", &shutdown);
    let quota_requests = watched::<QuotaRequest>(&client, "quotarequests", &shutdown);

    let data_services = crate::service::data_services::DataServiceStores::watch(&client, &shutdown);
    let workloads = crate::service::workloads::watch(&client, &shutdown);

    let registry = Registry::new();
    let (calls, audit_failures) =
        Api::counters(&registry).map_err(|e| ServerError::Settings(e.to_string()))?;
    let api = Arc::new(Api {
        identity: Identity::new(client, config, settings.token_audience.clone()),
        agencies: agencies.clone(),
        quota_requests: quota_requests.clone(),
        data_services,
        workloads: workloads.clone(),
        audit,
        billing,
        calls,
        audit_failures,
    });

    let ready = Arc::new(AtomicBool::new(false));
    {
        let ready = ready.clone();
        let api = api.clone();
        tokio::spawn(async move {
            // One waiter per store: kube's store wakes a single waiter.
            let (a, q, d, w) = tokio::join!(
                agencies.wait_until_ready(),
                quota_requests.wait_until_ready(),
                api.data_services.wait_until_ready(),
                workloads.wait_until_ready()
            );
            if a.is_ok() && q.is_ok() && d && w.is_ok() {
                info!("caches filled; ready");
                ready.store(true, Ordering::SeqCst);
            }
        });
    }

    let app = Grpc(api.clone())
        .routes()
        .into_axum_router()
        .merge(crate::http::router(api))
        .fallback(crate::http::not_found);

    let health_listener = tokio::net::TcpListener::bind(settings.health_addr)
        .await
        .map_err(|source| ServerError::Serve {
            addr: settings.health_addr,
            source,
        })?;
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(health_listener, health(ready, registry))
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                warn!(error = %e, "the health server stopped");
            }
        });
    }

    govbroker_signals(shutdown.clone())?;
    let addr = settings.listen;
    if settings.plaintext {
        info!(%addr, "serving gRPC and HTTP/JSON without TLS (loopback only)");
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Serve { addr, source })?;
        use axum::serve::ListenerExt as _;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(|source| ServerError::Serve { addr, source })?;
    } else {
        let tls = govbroker_tls::load_or_generate(
            settings.tls_cert_dir.as_deref(),
            &settings.tls_hosts,
            "govbroker-api",
        )
        .map_err(|e| ServerError::Tls(e.to_string()))?;
        let mut server_config = tls.server_config;
        server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let handle = axum_server::Handle::new();
        {
            let handle = handle.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                handle.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
            });
        }
        info!(%addr, "serving gRPC and HTTP/JSON over TLS");
        // TCP_NODELAY: without it small gRPC answers wait for delayed ACKs (~40 ms).
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(server_config)),
        )
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
        axum_server::bind(addr)
            .acceptor(acceptor)
            .handle(handle)
            .serve(app.into_make_service())
            .await
            .map_err(|source| ServerError::Serve { addr, source })?;
    }
    info!("stopped");
    Ok(())
}

/// A store of every `K` in the cluster, kept current by a watch with `client` (the API's
/// own) until `shutdown`; `what` names the watch in logs.
pub(crate) fn watched<K>(
    client: &Client,
    what: &'static str,
    shutdown: &CancellationToken,
) -> reflector::Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let api = KubeApi::<K>::all(client.clone());
    let shutdown = shutdown.clone();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                next = stream.next() => match next {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => warn!(what, error = %e, "watch failed; retrying"),
                    None => return,
                },
            }
        }
    });
    store
}

fn health(ready: Arc<AtomicBool>, registry: Registry) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "filling caches")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let families = registry.gather();
                async move {
                    let mut out = Vec::new();
                    let _ = TextEncoder::new().encode(&families, &mut out);
                    String::from_utf8(out).unwrap_or_default()
                }
            }),
        )
}

fn govbroker_signals(shutdown: CancellationToken) -> Result<(), ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| ServerError::Settings(e.to_string()))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| ServerError::Settings(e.to_string()))?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        info!("shutting down");
        shutdown.cancel();
    });
    Ok(())
}
