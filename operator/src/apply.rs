//! Server-side apply of the objects a controller owns, skipped when nothing changed.
//!
//! Every applied object carries a hash of what was applied ([`APPLIED_HASH_ANNOTATION`]).
//! Controllers keep metadata-only caches of what they own; when the cached hash equals
//! the desired one, the apply is skipped. A restarted operator over a settled tree
//! therefore sends no writes at all.

use std::fmt::Debug;

use kube::api::{DeleteParams, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Index;
use crate::{Context, Error};

/// Annotation holding the hash of the applied object.
pub const APPLIED_HASH_ANNOTATION: &str = "govbroker.io/applied-hash";

/// FNV-1a, 64 bits: stable across Rust versions and processes, unlike `DefaultHasher`.
pub fn stable_hash(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The hash in an object's [`APPLIED_HASH_ANNOTATION`], as a number (8 bytes to keep
/// in a cache instead of a 16-character string).
pub fn applied_hash(annotations: &std::collections::BTreeMap<String, String>) -> Option<u64> {
    annotations
        .get(APPLIED_HASH_ANNOTATION)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
}

/// Where a controller looks up what it last applied to an object it owns.
pub trait AppliedHashes {
    /// The applied hash of the object `namespace/name`; `None` if it does not exist or
    /// carries none.
    fn applied_hash(&self, namespace: Option<&str>, name: &str) -> Option<u64>;

    /// Told that `hash` was just applied to `namespace/name` (a cache that the watch
    /// feeds may remember it until the watch shows it).
    fn applied(&self, _namespace: Option<&str>, _name: &str, _hash: u64) {}
}

impl<K: Resource<DynamicType = ()> + Clone> AppliedHashes for Store<PartialObjectMeta<K>> {
    fn applied_hash(&self, namespace: Option<&str>, name: &str) -> Option<u64> {
        let mut key = ObjectRef::<PartialObjectMeta<K>>::new(name);
        if let Some(ns) = namespace {
            key = key.within(ns);
        }
        self.get(&key).and_then(|m| applied_hash(m.annotations()))
    }
}

/// A value kept in an [`Index`] that knows the applied hash of its object.
pub trait HasAppliedHash {
    /// The object's applied hash, if it carries one.
    fn hash(&self) -> Option<u64>;
}

impl HasAppliedHash for Option<u64> {
    fn hash(&self) -> Option<u64> {
        *self
    }
}

impl<V: HasAppliedHash + Clone + Send + Sync + 'static> AppliedHashes for Index<V> {
    fn applied_hash(&self, namespace: Option<&str>, name: &str) -> Option<u64> {
        self.applied_not_seen(namespace, name)
            .or_else(|| self.get(namespace, name).and_then(|v| v.hash()))
    }

    fn applied(&self, namespace: Option<&str>, name: &str, hash: u64) {
        // Already shown (the watch can beat the response): nothing to remember.
        if self.get(namespace, name).and_then(|v| v.hash()) != Some(hash) {
            Index::applied(self, namespace, name, hash);
        }
    }
}

/// What a controller needs to apply its children: its field manager and the context.
#[derive(Clone, Copy)]
pub struct Applier<'a> {
    /// The shared context (client, metrics).
    pub ctx: &'a Context,
    /// The controller's name, for metrics.
    pub controller: &'static str,
    /// The field manager of server-side apply.
    pub field_manager: &'static str,
}

impl Applier<'_> {
    /// Applies `desired` unless `cache` says the object already carries its hash.
    /// Returns whether a write was sent.
    pub async fn apply<K>(&self, cache: &impl AppliedHashes, mut desired: K) -> Result<bool, Error>
    where
        K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
    {
        let hash = stable_hash(&serde_json::to_vec(&desired).map_err(Error::Serialize)?);
        let (namespace, name) = (desired.namespace(), desired.name_any());
        let wanted = u64::from_str_radix(&hash, 16).ok();
        if wanted.is_some() && cache.applied_hash(namespace.as_deref(), &name) == wanted {
            return Ok(false);
        }
        desired
            .annotations_mut()
            .insert(APPLIED_HASH_ANNOTATION.to_owned(), hash);
        self.apply_now(&desired).await?;
        if let Some(wanted) = wanted {
            cache.applied(namespace.as_deref(), &name, wanted);
        }
        Ok(true)
    }

    /// Applies `desired` now, without a cache to compare with (for the few objects a
    /// controller reads before writing anyway).
    pub async fn apply_now<K>(&self, desired: &K) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
    {
        let name = desired.name_any();
        let namespace = desired.namespace();
        // Built by hand so one function serves namespaced and cluster-scoped kinds.
        let request = kube::core::Request::new(K::url_path(&(), namespace.as_deref()))
            .patch(
                &name,
                &PatchParams::apply(self.field_manager).force(),
                &Patch::Apply(desired),
            )
            .map_err(|e| Error::Kube(kube::Error::BuildRequest(e)))?;
        self.count::<K>();
        self.ctx.client.request::<K>(request).await?;
        Ok(())
    }

    /// Deletes an object; "already gone" is success.
    pub async fn delete<K>(&self, api: &Api<K>, name: &str) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        self.count::<K>();
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Counts one write of kind `K`.
    pub fn count<K: Resource<DynamicType = ()>>(&self) {
        self.ctx
            .metrics
            .kube_writes
            .with_label_values(&[self.controller, &K::kind(&())])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_fnv1a() {
        // Reference values of FNV-1a 64.
        assert_eq!(stable_hash(b""), "cbf29ce484222325");
        assert_eq!(stable_hash(b"a"), "af63dc4c8601ec8c");
    }
}
