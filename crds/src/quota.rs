//! The quota vocabulary shared by Agency and QuotaRequest.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Amounts of each resource an agency may hold, as Kubernetes quantities (`4`, `1500m`,
/// `16Gi`). A resource left out is not granted at all. Amounts must not be negative.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    /// CPU requested by all pods together, in cores (`2`, `1.5`, `500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory requested by all pods together (`512Mi`, `16Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Local ephemeral storage requested by all pods together (`10Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<Quantity>,
    /// Persistent storage requested by all PersistentVolumeClaims together (`100Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Quantity>,
    /// Number of pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<Quantity>,
    /// Number of Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Quantity>,
    /// Number of PersistentVolumeClaims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claims: Option<Quantity>,
    /// Data-service instances (DataServiceClaims) the agency may hold per
    /// DataServiceClass, over all its namespaces, e.g. `{postgres-dung-chung: 3}`. A class
    /// not listed cannot be claimed. Counted per agency: not divided among its children
    /// or environments (an environment's quota may not name it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "integer", "format": "int32", "minimum": 0, "maximum": 100000}))]
    pub data_services: BTreeMap<String, i32>,
}

/// One quota resource: its field name in [`ResourceAmounts`], its name in a
/// Kubernetes ResourceQuota, and whether it counts bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuotaResource {
    /// CPU (cores).
    Cpu,
    /// Memory (bytes).
    Memory,
    /// Ephemeral storage (bytes).
    EphemeralStorage,
    /// Persistent storage (bytes).
    Storage,
    /// Pod count.
    Pods,
    /// Service count.
    Services,
    /// PersistentVolumeClaim count.
    PersistentVolumeClaims,
}

impl QuotaResource {
    /// Every resource, in the order they are shown.
    pub const ALL: [QuotaResource; 7] = [
        QuotaResource::Cpu,
        QuotaResource::Memory,
        QuotaResource::EphemeralStorage,
        QuotaResource::Storage,
        QuotaResource::Pods,
        QuotaResource::Services,
        QuotaResource::PersistentVolumeClaims,
    ];

    /// The field name in the Agency and QuotaRequest specs.
    pub fn field(self) -> &'static str {
        match self {
            QuotaResource::Cpu => "cpu",
            QuotaResource::Memory => "memory",
            QuotaResource::EphemeralStorage => "ephemeralStorage",
            QuotaResource::Storage => "storage",
            QuotaResource::Pods => "pods",
            QuotaResource::Services => "services",
            QuotaResource::PersistentVolumeClaims => "persistentVolumeClaims",
        }
    }

    /// The resource name in a Kubernetes ResourceQuota's `hard` and `used`.
    pub fn resource_quota_key(self) -> &'static str {
        match self {
            QuotaResource::Cpu => "requests.cpu",
            QuotaResource::Memory => "requests.memory",
            QuotaResource::EphemeralStorage => "requests.ephemeral-storage",
            QuotaResource::Storage => "requests.storage",
            QuotaResource::Pods => "pods",
            QuotaResource::Services => "services",
            QuotaResource::PersistentVolumeClaims => "persistentvolumeclaims",
        }
    }

    /// Whether amounts are bytes (shown with binary suffixes such as `Gi`).
    pub fn is_bytes(self) -> bool {
        matches!(
            self,
            QuotaResource::Memory | QuotaResource::EphemeralStorage | QuotaResource::Storage
        )
    }
}

impl ResourceAmounts {
    /// Whether no resource is named at all.
    pub fn is_empty(&self) -> bool {
        QuotaResource::ALL.iter().all(|r| self.get(*r).is_none()) && self.data_services.is_empty()
    }

    /// The amount of one resource, if granted.
    pub fn get(&self, resource: QuotaResource) -> Option<&Quantity> {
        match resource {
            QuotaResource::Cpu => self.cpu.as_ref(),
            QuotaResource::Memory => self.memory.as_ref(),
            QuotaResource::EphemeralStorage => self.ephemeral_storage.as_ref(),
            QuotaResource::Storage => self.storage.as_ref(),
            QuotaResource::Pods => self.pods.as_ref(),
            QuotaResource::Services => self.services.as_ref(),
            QuotaResource::PersistentVolumeClaims => self.persistent_volume_claims.as_ref(),
        }
    }

    /// Sets (or with `None` removes) the amount of one resource.
    pub fn set(&mut self, resource: QuotaResource, value: Option<Quantity>) {
        let slot = match resource {
            QuotaResource::Cpu => &mut self.cpu,
            QuotaResource::Memory => &mut self.memory,
            QuotaResource::EphemeralStorage => &mut self.ephemeral_storage,
            QuotaResource::Storage => &mut self.storage,
            QuotaResource::Pods => &mut self.pods,
            QuotaResource::Services => &mut self.services,
            QuotaResource::PersistentVolumeClaims => &mut self.persistent_volume_claims,
        };
        *slot = value;
    }
}
