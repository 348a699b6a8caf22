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

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{Context, Error};

/// Names of the registered controllers, as used in the `controller` metric label.
pub const CONTROLLERS: &[&str] = &[];

/// Runs every controller until `shutdown` is cancelled or one of them returns.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    info!(controllers = ?CONTROLLERS, "starting controllers");
    // Every controller gets `ctx.clone()`; drop this line with the first one.
    let _ = &ctx;
    tokio::select! {
        () = shutdown.cancelled() => Ok(()),
        // result = agency::run(ctx.clone(), shutdown.clone()) => result,
    }
}
