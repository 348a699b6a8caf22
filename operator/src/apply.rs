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
    /// Applies `desired` unless the cached copy in `cache` already carries its hash.
    /// Returns whether a write was sent.
    pub async fn apply<K>(
        &self,
        cache: &Store<PartialObjectMeta<K>>,
        mut desired: K,
    ) -> Result<bool, Error>
    where
        K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
    {
        let hash = stable_hash(&serde_json::to_vec(&desired).map_err(Error::Serialize)?);
        desired
            .annotations_mut()
            .insert(APPLIED_HASH_ANNOTATION.to_owned(), hash.clone());
        let name = desired.name_any();
        let namespace = desired.namespace();
        let mut key = ObjectRef::<PartialObjectMeta<K>>::new(&name);
        if let Some(ns) = &namespace {
            key = key.within(ns);
        }
        let current = cache
            .get(&key)
            .and_then(|m| m.annotations().get(APPLIED_HASH_ANNOTATION).cloned());
        if current.as_deref() == Some(hash.as_str()) {
            return Ok(false);
        }
        self.apply_now(&desired).await?;
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
