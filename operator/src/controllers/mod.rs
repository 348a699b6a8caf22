//! The controllers of the operator. Each one registers here.
//!
//! A controller is a module of this folder with an entry point
//! `pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error>`
//! that runs until `shutdown` is cancelled (the agency and workload controllers also take
//! the caches they share with the webhook). To add one:
//!
//! 1. add `pub mod <name>;` below and its name to [`CONTROLLERS`],
//! 2. add an arm `result = <name>::run(ctx.clone(), shutdown.clone()) => result,` to
//!    the `tokio::select!` in [`run`].
//!
//! If any controller returns, the others are stopped and the operator shuts down.

pub mod agency;
pub mod data_service_claim;
pub mod data_service_class;
pub mod data_share;
pub mod quota_request;
mod shared_server;
pub mod workload;

use std::sync::Arc;

use govbroker_crds::Agency;
use kube::runtime::reflector;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{Context, Error, webhook};

/// Names of the registered controllers, as used in the `controller` metric label.
pub const CONTROLLERS: &[&str] = &[
    agency::CONTROLLER,
    quota_request::CONTROLLER,
    data_service_claim::CONTROLLER,
    data_service_class::CONTROLLER,
    data_share::CONTROLLER,
    workload::CONTROLLER,
];

/// Runs every controller and the admission webhook until `shutdown` is cancelled or one
/// of them returns.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    info!(controllers = ?CONTROLLERS, "starting controllers");
    // The agency controller's cache of every Agency is shared with the webhook; it fills
    // once the agency controller runs. Nothing else may wait on it: the controller does,
    // and `Store::wait_until_ready` wakes only one waiter (see `cache`).
    let (store, agencies) = reflector::store::<Agency>();
    // Likewise the workload controller's index of agency namespaces, which the Workload
    // webhook reads.
    let (namespaces, namespace_events) = workload::agency_namespaces(&ctx.client);
    let webhook_namespaces = namespaces.clone();
    tokio::select! {
        () = shutdown.cancelled() => Ok(()),
        result = async {
            if ctx.settings.webhook {
                webhook::run(ctx.clone(), store.clone(), webhook_namespaces, shutdown.clone()).await
            } else {
                ctx.readiness.serving();
                std::future::pending().await
            }
        } => result,
        result = quota_request::run(ctx.clone(), shutdown.clone()) => result,
        result = data_service_claim::run(ctx.clone(), shutdown.clone()) => result,
        result = data_service_class::run(ctx.clone(), shutdown.clone()) => result,
        result = data_share::run(ctx.clone(), shutdown.clone()) => result,
        result = workload::run(ctx.clone(), (namespaces, namespace_events), shutdown.clone()) => result,
        result = agency::run(ctx.clone(), agencies, shutdown.clone()) => result,
    }
}
