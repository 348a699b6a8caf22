//! The [`Context`] shared by every controller.

use std::sync::Arc;

use kube::Client;

use crate::events::Events;
use crate::{Metrics, Readiness, Settings};

/// What every controller needs, built once at start-up after the API server answered
/// and shared as `Arc<Context>`.
///
/// Controllers read settings from here, never from the environment.
#[derive(Clone)]
pub struct Context {
    /// Client of the Kubernetes API server.
    pub client: Client,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Settings parsed at start-up.
    pub settings: Arc<Settings>,
    /// What `/readyz` answers; the webhook reports when it is configured.
    pub readiness: Readiness,
    /// The one Event recorder of every controller.
    pub events: Events,
}

impl Context {
    /// Bundles the shared parts.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        settings: Arc<Settings>,
        readiness: Readiness,
    ) -> Self {
        Self {
            events: Events::new(client.clone()),
            client,
            metrics,
            settings,
            readiness,
        }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
