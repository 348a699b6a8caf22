//! Connecting to the Kubernetes API server at start-up, with retries.

use std::time::Duration;

use kube::client::ClientBuilder;
use kube::{Client, Config};
use tokio_util::sync::CancellationToken;
use tower::limit::ConcurrencyLimitLayer;
use tracing::{error, info};

use crate::readiness::ReadyEvent;
use crate::{Error, Readiness};

/// First delay between two connection attempts.
const FIRST_DELAY: Duration = Duration::from_secs(1);
/// Longest delay between two connection attempts.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// API requests sent at once (waiting for their response headers). The kube client
/// speaks HTTP/1.1 and opens a connection per request in flight, each with its TLS
/// state and read buffers kept in its pool: 64 agency reconciles applying a dozen
/// objects each opened some 700, over 13 MiB of the operator's memory, and more than the
/// API server's own limit of 200 mutating requests in flight. A watch holds its slot
/// only until its response starts.
const MAX_REQUESTS_IN_FLIGHT: usize = 64;

/// Exponential backoff: the delay doubles after every failure, up to a maximum.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `first` and never exceeds `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            next: first.min(max),
            max,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

/// Connects to the API server with the usual configuration resolution (KUBECONFIG,
/// `~/.kube/config`, in-cluster service account) and checks that it answers.
///
/// Retries with backoff, recording each outcome in `readiness`, until it succeeds;
/// returns `None` if `shutdown` is cancelled first.
pub async fn connect(readiness: &Readiness, shutdown: &CancellationToken) -> Option<Client> {
    let mut backoff = Backoff::new(FIRST_DELAY, MAX_DELAY);
    let mut attempt = 0_u64;
    loop {
        attempt += 1;
        let result = tokio::select! {
            result = try_connect() => result,
            () = shutdown.cancelled() => return None,
        };
        let error = match result {
            Ok(client) => return Some(client),
            Err(error) => error,
        };
        let event = match error {
            Error::KubeConfig(_) => ReadyEvent::KubeConfigMissing,
            _ => ReadyEvent::ApiFailed,
        };
        readiness.record(event);
        let delay = backoff.next_delay();
        error!(
            error = %error.chain(),
            attempt,
            retry_in_secs = delay.as_secs(),
            "cannot reach the Kubernetes API server; retrying"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return None,
        }
    }
}

/// One attempt: infer the configuration, build a client, ask for the server version.
async fn try_connect() -> Result<Client, Error> {
    let config = Config::infer().await?;
    let url = config.cluster_url.clone();
    let client = ClientBuilder::try_from(config)?
        .with_layer(&ConcurrencyLimitLayer::new(MAX_REQUESTS_IN_FLIGHT))
        .build();
    let version = client
        .apiserver_version()
        .await
        .map_err(|source| Error::Connect {
            url: url.to_string(),
            source,
        })?;
    info!(
        url = %url,
        version = %version.git_version,
        platform = %version.platform,
        "connected to the Kubernetes API server"
    );
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<u64> = (0..5).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
    }
}
