//! Watch caches: waiting for them to be filled, and compact indexes of owned objects.
//!
//! `Store::wait_until_ready` wakes only one of several concurrent waiters (its one-shot
//! channel keeps a single waker), so concurrent reconciles waiting on it can hang
//! forever. [`Ready`] waits on the stores once, in its own task, and lets any number of
//! tasks wait on a `watch` channel instead.
//!
//! A reflector `Store` keeps whole objects: even a trimmed `PartialObjectMeta` costs
//! about 2 KiB (the `ObjectMeta` struct, two label and annotation maps, its key). At
//! national scale a controller owns some 150,000 objects, so what it needs of each (the
//! applied hash, a label or two) is kept in an [`Index`] instead, about 100 bytes each.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};

use futures::{Stream, TryStreamExt as _};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Resource, ResourceExt};
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

/// The key of an object in an [`Index`]: `namespace/name`, or `name` for cluster-scoped
/// kinds.
pub fn key(namespace: Option<&str>, name: &str) -> Box<str> {
    match namespace {
        Some(ns) => format!("{ns}/{name}").into_boxed_str(),
        None => name.into(),
    }
}

/// What a controller remembers of each object of one kind, by [`key`]: a value `V`
/// extracted from each object as it arrives (the object itself is dropped). Fed by
/// [`Index::watch`]; cheap to clone.
///
/// It also remembers the hashes the controller applied ([`Index::applied`]) until the
/// watch shows the object again: the watch lags a write by a moment (seconds on a busy
/// API server), and a reconcile in that moment would otherwise apply the same again.
pub struct Index<V> {
    entries: Arc<RwLock<HashMap<Box<str>, V>>>,
    applied: Arc<Mutex<HashMap<Box<str>, u64>>>,
    ready: watch::Receiver<bool>,
}

impl<V> Clone for Index<V> {
    fn clone(&self) -> Self {
        Self {
            entries: self.entries.clone(),
            applied: self.applied.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Index<V> {
    /// Starts filling an index from `watch` (a watcher's events), keeping `extract(obj)`
    /// for each object. Returns the index and the objects that changed (applied or
    /// deleted), to wake whoever depends on them; the index is filled only while that
    /// stream is polled, and has taken each event in before the stream yields it.
    pub fn watch<K>(
        events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
        extract: fn(&K) -> V,
    ) -> (
        Self,
        impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    )
    where
        K: Resource + Clone + Send + 'static,
    {
        let (ready_tx, ready) = watch::channel(false);
        let index = Self {
            entries: Arc::default(),
            applied: Arc::default(),
            ready,
        };
        let entries = index.entries.clone();
        let applied = index.applied.clone();
        // A re-list (after a watch expired) is gathered aside and swapped in at its end,
        // so the index never shows a partial list.
        let mut relisted: Option<HashMap<Box<str>, V>> = None;
        let stream = events
            .map_ok(move |event| {
                let key_of = |o: &K| key(o.namespace().as_deref(), &o.name_any());
                if let watcher::Event::Apply(o) | watcher::Event::Delete(o) = &event {
                    // The watch caught up with what was applied (or went past it).
                    applied
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key_of(o));
                }
                match &event {
                    watcher::Event::Init => relisted = Some(HashMap::new()),
                    watcher::Event::InitApply(o) => {
                        relisted
                            .get_or_insert_with(HashMap::new)
                            .insert(key_of(o), extract(o));
                    }
                    watcher::Event::InitDone => {
                        let mut fresh = relisted.take().unwrap_or_default();
                        fresh.shrink_to_fit();
                        *entries.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                        ready_tx.send_replace(true);
                    }
                    watcher::Event::Apply(o) => {
                        entries
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(key_of(o), extract(o));
                    }
                    watcher::Event::Delete(o) => {
                        entries
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&key_of(o));
                    }
                }
                event
            })
            .touched_objects();
        (index, stream)
    }

    /// Remembers that `hash` was just applied to `namespace/name`, until the watch shows
    /// that object again.
    pub fn applied(&self, namespace: Option<&str>, name: &str, hash: u64) {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key(namespace, name), hash);
    }

    /// The hash applied to `namespace/name` that the watch does not show yet.
    pub fn applied_not_seen(&self, namespace: Option<&str>, name: &str) -> Option<u64> {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key(namespace, name))
            .copied()
    }

    /// The value kept for the object at `namespace/name`, if it exists.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<V> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key(namespace, name))
            .cloned()
    }

    /// The values for which `keep` is true.
    pub fn filter(&self, mut keep: impl FnMut(&V) -> bool) -> Vec<V> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|v| keep(v))
            .cloned()
            .collect()
    }

    /// Waits until the first list is in; any number of tasks may wait.
    pub async fn wait_until_ready(&self) -> Result<(), Error> {
        self.ready
            .clone()
            .wait_for(|ready| *ready)
            .await
            .map(|_| ())
            .map_err(|_| Error::Cache("the watch feeding an index ended".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn config_map(name: &str, data: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("ns".to_owned()),
                ..ObjectMeta::default()
            },
            data: Some([("v".to_owned(), data.to_owned())].into()),
            ..ConfigMap::default()
        }
    }

    fn value(c: &ConfigMap) -> String {
        c.data
            .as_ref()
            .and_then(|d| d.get("v"))
            .cloned()
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn an_index_keeps_the_extracted_values_and_swaps_in_a_relist() {
        use watcher::Event;
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let (index, changed) = Index::watch(rx.map(Ok::<_, watcher::Error>), value);
        let mut changed = Box::pin(changed);
        for event in [
            Event::Init,
            Event::InitApply(config_map("a", "1")),
            Event::InitApply(config_map("b", "2")),
        ] {
            tx.unbounded_send(event).unwrap();
        }
        changed.next().await;
        changed.next().await;
        assert_eq!(
            index.get(Some("ns"), "a"),
            None,
            "a list in progress is not shown"
        );
        tx.unbounded_send(Event::InitDone).unwrap();
        tx.unbounded_send(Event::Apply(config_map("a", "3")))
            .unwrap();
        let touched = changed.next().await.unwrap().unwrap();
        assert_eq!(touched.metadata.name.as_deref(), Some("a"));
        index.wait_until_ready().await.unwrap();
        assert_eq!(index.get(Some("ns"), "a").as_deref(), Some("3"));
        assert_eq!(index.get(Some("ns"), "b").as_deref(), Some("2"));
        assert_eq!(index.get(None, "b"), None);

        // A relist without "b": it is gone once the relist is complete.
        for event in [
            Event::Delete(config_map("a", "3")),
            Event::Init,
            Event::InitApply(config_map("c", "4")),
            Event::InitDone,
        ] {
            tx.unbounded_send(event).unwrap();
        }
        drop(tx);
        while changed.next().await.is_some() {}
        assert_eq!(index.filter(|_| true), ["4"]);
    }

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
