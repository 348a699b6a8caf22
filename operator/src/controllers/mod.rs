//! The controllers of the operator. Each one registers here.
//!
//! A controller is a module of this folder with an entry point
//! `pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error>`
//! that runs until `shutdown` is cancelled. To add one:
//!
//! 1. add `pub mod <name>;` below and its name to [`CONTROLLERS`],
//! 2. add an arm `result = <name>::run(ctx.clone(), shutdown.clone()) => result,` to
//!    the `tokio::select!` in [`run`].
//!
//! If any controller returns, the others are stopped and the operator shuts down.

pub mod agency;
pub mod quota_request;

use std::sync::Arc;

use futures::{StreamExt as _, TryStreamExt as _};
use govbroker_crds::Agency;
use kube::Api;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{Context, Error, webhook};

/// Names of the registered controllers, as used in the `controller` metric label.
pub const CONTROLLERS: &[&str] = &[agency::CONTROLLER, quota_request::CONTROLLER];

/// Every Agency, watched once and shared by the controllers and the webhook.
#[derive(Clone)]
pub struct AgencyTree {
    /// The cache, complete once `wait_until_ready` returns.
    pub store: Store<Agency>,
    /// Changed agencies, for controllers to subscribe to.
    pub events: ReflectHandle<Agency>,
}

/// Starts the shared agency watch; it runs until `shutdown`.
fn watch_agencies(ctx: &Context, shutdown: CancellationToken) -> AgencyTree {
    let (store, writer) = reflector::store_shared(1024);
    let events = writer
        .subscribe()
        .expect("a shared store can be subscribed to");
    let stream = reflector::reflector(
        writer,
        watcher(
            Api::<Agency>::all(ctx.client.clone()),
            watcher::Config::default().any_semantic(),
        )
        .map_ok(|ev| {
            ev.modify(|a| {
                a.metadata.managed_fields = None;
            })
        }),
    )
    .default_backoff();
    tokio::spawn(async move {
        tokio::select! {
            () = stream.for_each(|_| std::future::ready(())) => {}
            () = shutdown.cancelled() => {}
        }
    });
    AgencyTree { store, events }
}

/// Runs every controller and the admission webhook until `shutdown` is cancelled or one
/// of them returns.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    info!(controllers = ?CONTROLLERS, "starting controllers");
    let tree = watch_agencies(&ctx, shutdown.clone());
    tokio::select! {
        () = shutdown.cancelled() => Ok(()),
        result = async {
            if ctx.settings.webhook {
                webhook::run(ctx.clone(), tree.store.clone(), shutdown.clone()).await
            } else {
                std::future::pending().await
            }
        } => result,
        result = agency::run(ctx.clone(), tree.clone(), shutdown.clone()) => result,
        result = quota_request::run(ctx.clone(), tree.clone(), shutdown.clone()) => result,
    }
}
