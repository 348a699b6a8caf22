//! Waiting for watch caches to be filled, from many tasks at once.
//!
//! `Store::wait_until_ready` wakes only one of several concurrent waiters (its one-shot
//! channel keeps a single waker), so concurrent reconciles waiting on it can hang
//! forever. [`Ready`] waits on the stores once, in its own task, and lets any number of
//! tasks wait on a `watch` channel instead.

use std::future::Future;

use tokio::sync::watch;

use crate::Error;

/// Becomes ready once every cache it was made from is filled. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ready(watch::Receiver<Option<Result<(), String>>>);

impl Ready {
    /// Spawns one task that awaits `filled` (e.g. the stores' `wait_until_ready`).
    pub fn spawn<F>(filled: F) -> Self
    where
        F: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let outcome = filled.await.map_err(|e| e.to_string());
            let _ = tx.send(Some(outcome));
        });
        Self(rx)
    }

    /// Waits until the caches are filled; an error if they never will be.
    pub async fn wait(&self) -> Result<(), Error> {
        let mut rx = self.0.clone();
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::Cache("the cache task ended".to_owned()))?
            .clone();
        match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(Error::Cache(e)),
            None => Err(Error::Cache("not ready".to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn many_waiters_are_all_released() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let ready = Ready::spawn(async move {
            let _ = rx.await;
            Ok(())
        });
        let waiters: Vec<_> = (0..20)
            .map(|_| {
                let r = ready.clone();
                tokio::spawn(async move { r.wait().await })
            })
            .collect();
        tx.send(()).unwrap();
        for w in waiters {
            let result = tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .expect("every waiter is released");
            assert!(result.unwrap().is_ok());
        }
    }
}
