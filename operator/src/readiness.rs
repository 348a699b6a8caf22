//! Whether the operator is ready, as answered on `/readyz`.
//!
//! The operator is ready once it has talked to the Kubernetes API server, and stops
//! being ready when it shuts down. The transitions are pure ([`ReadyState::on`]);
//! [`Readiness`] shares the current state between the start-up code and the HTTP
//! server.

use std::sync::Arc;

use tokio::sync::watch;

/// The readiness of the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyState {
    /// Started; no answer from the API server yet.
    Starting,
    /// No Kubernetes client configuration could be found; retrying.
    NoKubeConfig,
    /// The API server did not answer; retrying.
    ApiUnreachable,
    /// The API server answered; the controllers start and the webhook is being set up.
    Connected,
    /// Controllers are running and the admission webhook is configured.
    Ready,
    /// Shutting down; stays so until the process ends.
    ShuttingDown,
}

/// Something that changes readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyEvent {
    /// No client configuration was found.
    KubeConfigMissing,
    /// A request to the API server failed.
    ApiFailed,
    /// The API server answered.
    ApiAnswered,
    /// The admission webhook serves and is configured (or is not run by this process).
    Serving,
    /// Shutdown was requested.
    ShutdownRequested,
}

impl ReadyState {
    /// The state after `event`. Shutting down is final.
    pub fn on(self, event: ReadyEvent) -> ReadyState {
        match (self, event) {
            (ReadyState::ShuttingDown, _) | (_, ReadyEvent::ShutdownRequested) => {
                ReadyState::ShuttingDown
            }
            (_, ReadyEvent::KubeConfigMissing) => ReadyState::NoKubeConfig,
            (_, ReadyEvent::ApiFailed) => ReadyState::ApiUnreachable,
            (_, ReadyEvent::ApiAnswered) => ReadyState::Connected,
            (ReadyState::Connected | ReadyState::Ready, ReadyEvent::Serving) => ReadyState::Ready,
            (state, ReadyEvent::Serving) => state,
        }
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(self) -> bool {
        self == ReadyState::Ready
    }

    /// The short, stable body `/readyz` answers with.
    pub fn reason(self) -> &'static str {
        match self {
            ReadyState::Starting => "connecting to the Kubernetes API server",
            ReadyState::NoKubeConfig => {
                "no Kubernetes client configuration (KUBECONFIG, ~/.kube/config, in-cluster); retrying"
            }
            ReadyState::ApiUnreachable => "Kubernetes API server unreachable; retrying",
            ReadyState::Connected => "starting the controllers and the admission webhook",
            ReadyState::Ready => "ok",
            ReadyState::ShuttingDown => "shutting down",
        }
    }
}

/// Shared handle on the current [`ReadyState`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<watch::Sender<ReadyState>>);

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// A new handle in [`ReadyState::Starting`].
    pub fn new() -> Self {
        Self(Arc::new(watch::Sender::new(ReadyState::Starting)))
    }

    /// The current state.
    pub fn get(&self) -> ReadyState {
        *self.0.borrow()
    }

    /// Applies `event` and returns the new state.
    pub fn record(&self, event: ReadyEvent) -> ReadyState {
        self.0.send_modify(|state| *state = state.on(event));
        self.get()
    }

    /// The API server answered.
    pub fn connected(&self) -> ReadyState {
        self.record(ReadyEvent::ApiAnswered)
    }

    /// The admission webhook serves and is configured, or this process runs none.
    pub fn serving(&self) -> ReadyState {
        self.record(ReadyEvent::Serving)
    }

    /// Records that shutdown was requested.
    pub fn shutting_down(&self) -> ReadyState {
        self.record(ReadyEvent::ShutdownRequested)
    }

    /// A receiver that sees every change, for code that waits on readiness.
    pub fn subscribe(&self) -> watch::Receiver<ReadyState> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::ReadyEvent::*;
    use super::*;

    #[test]
    fn not_ready_until_the_api_answers() {
        let readiness = Readiness::new();
        assert_eq!(readiness.get(), ReadyState::Starting);
        assert!(!readiness.get().is_ready());

        assert_eq!(
            readiness.record(KubeConfigMissing),
            ReadyState::NoKubeConfig
        );
        assert_eq!(readiness.record(ApiFailed), ReadyState::ApiUnreachable);
        assert!(!readiness.get().is_ready());

        assert_eq!(readiness.connected(), ReadyState::Connected);
        assert!(
            !readiness.get().is_ready(),
            "not ready before the webhook is configured"
        );
        assert_eq!(readiness.serving(), ReadyState::Ready);
        assert!(readiness.get().is_ready());
        assert_eq!(readiness.get().reason(), "ok");
    }

    #[test]
    fn shutting_down_is_final() {
        for start in [
            ReadyState::Starting,
            ReadyState::ApiUnreachable,
            ReadyState::Ready,
        ] {
            let down = start.on(ShutdownRequested);
            assert_eq!(down, ReadyState::ShuttingDown);
            for event in [KubeConfigMissing, ApiFailed, ApiAnswered, ShutdownRequested] {
                assert_eq!(down.on(event), ReadyState::ShuttingDown);
            }
            assert!(!down.is_ready());
        }
    }

    #[test]
    fn serving_before_connecting_changes_nothing() {
        assert_eq!(ReadyState::Starting.on(Serving), ReadyState::Starting);
        assert_eq!(
            ReadyState::ApiUnreachable.on(Serving),
            ReadyState::ApiUnreachable
        );
    }

    #[test]
    fn a_failure_after_ready_is_not_ready() {
        assert_eq!(ReadyState::Ready.on(ApiFailed), ReadyState::ApiUnreachable);
    }
}
