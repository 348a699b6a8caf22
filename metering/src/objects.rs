//! What each watched object holds, and since when: pure functions of the objects the
//! collector sees (no client, no clock; `now` is passed in).
//!
//! The instants come from the objects themselves wherever Kubernetes records them, so
//! that a collector that sees an event late still counts the right seconds:
//! - a pod holds its effective requests from the moment its first container started
//!   running (`status.containerStatuses[].state.running.startedAt`, else
//!   `status.startTime`) until it stops: the latest `finishedAt` of its containers when it
//!   Succeeded or Failed, or the instant its deletion was requested
//!   (`metadata.deletionTimestamp` minus `deletionGracePeriodSeconds`), whichever comes
//!   first, and never later than when the collector saw it go;
//! - a PersistentVolumeClaim holds its capacity (`status.capacity.storage`, else its
//!   request) from its creation until its deletion is requested;
//! - a DataServiceClaim holds one instance of its class and plan while its phase is
//!   `Ready`, from the `Ready` condition's `lastTransitionTime`, and, once the broker has
//!   measured it, its database size (`status.storageBytes`) as storage: each sample
//!   holds until the collector sees the next (the broker samples every 10 minutes at
//!   most, so a database's growth is billed up to one sample late).
//!
//! Every instant is clamped to the collector's `floor` (what is already counted) and to
//! `now`, so an instant can never make a second count twice.

use std::collections::BTreeMap;

use govbroker_crds::{ClaimPhase, DataServiceClaim};
use govbroker_domain::metering::{Meter, Rates, pod_effective_requests, storage_bytes};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

/// UTC Unix seconds of a Kubernetes timestamp.
pub fn seconds(time: &Time) -> i64 {
    time.0.as_second()
}

/// What a pod holds now: its rates and since when, or `None` when it is not running.
pub fn pod_holds(pod: &Pod) -> Option<(i64, Rates)> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let started = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .map(seconds)
        .min()
        .or_else(|| status.start_time.as_ref().map(seconds))?;
    Some((started, pod_effective_requests(spec).rates()))
}

/// When a pod that is no longer running stopped, if the pod says so.
pub fn pod_stopped(pod: &Pod) -> Option<i64> {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(seconds)
        .max();
    // A deleted pod stops counting when its deletion was requested: the deletion
    // timestamp minus the grace period the API server added to it.
    let deleted = pod.metadata.deletion_timestamp.as_ref().map(|t| {
        seconds(t)
            - pod
                .metadata
                .deletion_grace_period_seconds
                .unwrap_or(0)
                .max(0)
    });
    match (finished, deleted) {
        (Some(f), Some(d)) => Some(f.min(d)),
        (f, d) => f.or(d),
    }
}

/// What a PersistentVolumeClaim holds (bytes of capacity) and since when.
pub fn pvc_holds(pvc: &PersistentVolumeClaim) -> Option<(i64, Rates)> {
    let capacity = pvc
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .or_else(|| {
            pvc.spec
                .as_ref()?
                .resources
                .as_ref()?
                .requests
                .as_ref()?
                .get("storage")
        })?;
    let bytes = storage_bytes(&capacity.0)?;
    let created = pvc.metadata.creation_timestamp.as_ref().map(seconds)?;
    Some((created, vec![(Meter::Storage, bytes)]))
}

/// What a DataServiceClaim holds (one instance of its plan, plus its measured database
/// size as storage) and since when.
pub fn claim_holds(claim: &DataServiceClaim) -> Option<(i64, Rates)> {
    let status = claim.status.as_ref()?;
    if status.phase != Some(ClaimPhase::Ready) {
        return None;
    }
    let since = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| seconds(&c.last_transition_time))
        .or_else(|| claim.metadata.creation_timestamp.as_ref().map(seconds))?;
    let mut rates = vec![(
        Meter::DataService {
            class_name: claim.spec.class_name.clone(),
            plan: claim.spec.plan.clone(),
        },
        1,
    )];
    if let Some(bytes) = status
        .storage_bytes
        .and_then(|b| u64::try_from(b).ok())
        .filter(|b| *b > 0)
    {
        rates.push((Meter::Storage, bytes));
    }
    Some((since, rates))
}

/// The controlling owner of an object, if any.
pub fn controller_of(owners: Option<&Vec<OwnerReference>>) -> Option<(String, String)> {
    let owners = owners?;
    owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())
        .map(|o| (o.kind.clone(), o.name.clone()))
}

/// Controlling owners of the ReplicaSets, Deployments and StatefulSets... the collector
/// has seen, per namespace: `(kind, name) → (kind, name)` of their owner.
#[derive(Clone, Debug, Default)]
pub struct Owners {
    by_namespace: BTreeMap<String, OwnerMap>,
}

/// `(kind, name)` of an object → `(kind, name)` of its controlling owner.
type OwnerMap = BTreeMap<(String, String), (String, String)>;

impl Owners {
    /// Records (or with `None`, forgets) the owner of `kind/name` in `namespace`.
    pub fn set(
        &mut self,
        namespace: &str,
        kind: &str,
        name: &str,
        owner: Option<(String, String)>,
    ) {
        let key = (kind.to_owned(), name.to_owned());
        match owner {
            Some(owner) => {
                self.by_namespace
                    .entry(namespace.to_owned())
                    .or_default()
                    .insert(key, owner);
            }
            None => {
                if let Some(map) = self.by_namespace.get_mut(namespace) {
                    map.remove(&key);
                }
            }
        }
    }

    /// The top of the owner chain of an object whose controlling owner is `owner`
    /// (`None`: the object itself, `kind/name`), as `Kind/name`. At most 8 steps: a
    /// cycle cannot loop.
    pub fn top(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        owner: Option<(String, String)>,
    ) -> String {
        let mut current = match owner {
            Some(owner) => owner,
            None => return format!("{kind}/{name}"),
        };
        let map = self.by_namespace.get(namespace);
        for _ in 0..8 {
            match map.and_then(|m| m.get(&current)) {
                Some(next) => current = next.clone(),
                None => break,
            }
        }
        format!("{}/{}", current.0, current.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_running_pod_holds_its_requests_from_its_first_start() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}
            ]},
            "status": {"phase": "Running", "startTime": "2026-11-15T00:00:00Z",
                "containerStatuses": [
                    {"name": "a", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                     "state": {"running": {"startedAt": "2026-11-15T00:00:07Z"}}},
                    {"name": "b", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                     "state": {"running": {"startedAt": "2026-11-15T00:00:05Z"}}}
                ]}
        }));
        let (since, rates) = pod_holds(&p).unwrap();
        assert_eq!(since, 1_794_700_805);
        assert_eq!(rates, vec![(Meter::Cpu, 500), (Meter::Memory, 128 << 20)]);
        assert_eq!(pod_stopped(&p), None);
        let mut pending = p.clone();
        pending.status.as_mut().unwrap().phase = Some("Pending".into());
        assert!(pod_holds(&pending).is_none());
    }

    #[test]
    fn a_pod_stops_at_its_finish_or_deletion() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "deletionTimestamp": "2026-11-15T00:01:00Z"},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "a", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-15T00:00:30Z"}}}
            ]}
        }));
        assert_eq!(pod_stopped(&p), Some(1_794_700_830));
        let deleted = pod(serde_json::json!({
            "metadata": {"name": "p", "deletionTimestamp": "2026-11-15T00:01:00Z",
                "deletionGracePeriodSeconds": 30}
        }));
        assert_eq!(pod_stopped(&deleted), Some(1_794_700_830));
    }

    #[test]
    fn claims_and_volumes() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data", "creationTimestamp": "2026-11-15T00:00:00Z"},
            "spec": {"resources": {"requests": {"storage": "5Gi"}}},
            "status": {"capacity": {"storage": "10Gi"}}
        }))
        .unwrap();
        assert_eq!(
            pvc_holds(&pvc),
            Some((1_794_700_800, vec![(Meter::Storage, 10 << 30)]))
        );
        let claim: DataServiceClaim = serde_json::from_value(serde_json::json!({
            "apiVersion": "govbroker.io/v1alpha1", "kind": "DataServiceClaim",
            "metadata": {"name": "db", "namespace": "ns", "creationTimestamp": "2026-11-14T00:00:00Z"},
            "spec": {"className": "postgres-dung-chung", "plan": "co-ban"},
            "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True",
                "reason": "Provisioned", "message": "", "lastTransitionTime": "2026-11-15T00:00:00Z"}]}
        }))
        .unwrap();
        let (since, rates) = claim_holds(&claim).unwrap();
        assert_eq!(since, 1_794_700_800);
        assert_eq!(rates.len(), 1, "not measured yet: no storage");
        assert_eq!(rates[0].0.label(), "postgres-dung-chung/co-ban");
        // Measured by the broker: the database's size is held as storage too.
        let mut measured = claim.clone();
        measured.status.as_mut().unwrap().storage_bytes = Some(7_500_000);
        let (_, rates) = claim_holds(&measured).unwrap();
        assert_eq!(rates[1], (Meter::Storage, 7_500_000));
        // Not Ready: nothing, measured or not.
        measured.status.as_mut().unwrap().phase = Some(ClaimPhase::Pending);
        assert_eq!(claim_holds(&measured), None);
    }

    #[test]
    fn owner_chains_end_at_the_workload() {
        let mut owners = Owners::default();
        let ks = |k: &str, n: &str| Some((k.to_owned(), n.to_owned()));
        owners.set("ns", "ReplicaSet", "portal-7d9", ks("Deployment", "portal"));
        owners.set("ns", "Deployment", "portal", ks("Workload", "portal"));
        assert_eq!(
            owners.top("ns", "Pod", "portal-7d9-x", ks("ReplicaSet", "portal-7d9")),
            "Workload/portal"
        );
        assert_eq!(owners.top("ns", "Pod", "debug", None), "Pod/debug");
        assert_eq!(
            owners.top("other", "Pod", "p", ks("ReplicaSet", "portal-7d9")),
            "ReplicaSet/portal-7d9"
        );
        owners.set("ns", "Deployment", "portal", ks("ReplicaSet", "portal-7d9"));
        let _ = owners.top("ns", "Pod", "p", ks("ReplicaSet", "portal-7d9")); // a cycle ends
        owners.set("ns", "Deployment", "portal", None);
        assert_eq!(
            owners.top("ns", "Pod", "p", ks("ReplicaSet", "portal-7d9")),
            "Deployment/portal"
        );
    }
}
