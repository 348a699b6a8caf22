//! `Workload`: an agency's application, rendered to a Deployment and a Service inside its
//! quota and security level.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An agency's application: a container image run as a number of replicas, inside the
/// agency's quota and the Pod Security rules of its security level.
///
/// Created in one of the agency's namespaces (e.g. `so-y-te-ha-noi-prod`). The operator
/// renders it into a Deployment, a Service (when ports are named) and a
/// PodDisruptionBudget (when more than one replica runs), all named like the Workload
/// and owned by it, so deleting the Workload deletes them. The pod template is hardened
/// for the namespace's Pod Security level without any setting here. Before anything is
/// applied the request is checked against the namespace's quota: a Workload that does
/// not fit gets the condition `QuotaExceeded` saying how much is left, instead of pods
/// that are silently refused.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "govbroker.io",
    version = "v1alpha1",
    kind = "Workload",
    plural = "workloads",
    shortname = "wl",
    category = "govbroker",
    namespaced,
    status = "WorkloadStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas"
    ),
    doc = "An agency's application (image, replicas, resources, ports, environment, data-service bindings) rendered by the operator into a Deployment, a Service and a PodDisruptionBudget inside the agency's quota and security level.",
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image","priority":1}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","description":"Replicas asked for","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","description":"Replicas whose pods are ready","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Available","type":"integer","description":"Replicas available to serve","jsonPath":".status.availableReplicas"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 50").message("a workload name starts with a lowercase letter, contains only a-z, 0-9 and '-', and has at most 50 characters (it names a Deployment, a Service and their pods)"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.healthPath) || (has(self.ports) && size(self.ports) > 0)").message("spec.healthPath is probed on the first port: name at least one port in spec.ports"),
)]
pub struct WorkloadSpec {
    /// The container image, e.g. `registry.gov.vn/so-tttt/cong-dich-vu:1.4.2` or with a
    /// digest (`...@sha256:<64 hex digits>`). At security levels with an image policy,
    /// only the allowed registries are accepted (see `docs/workloads.md`).
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new("!self.matches('\\\\s')").message("spec.image must not contain spaces"))]
    pub image: String,

    /// How many pods run the image, 0 to 100. Changing it scales the workload within the
    /// namespace's quota (`kubectl scale workload <name> --replicas=3`).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,

    /// Overrides the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub command: Vec<String>,

    /// Arguments to the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub args: Vec<String>,

    /// CPU and memory of each replica. Requests are what the quota counts (defaults:
    /// 100m CPU, 128Mi memory); limits, when given, must not be below the requests.
    #[serde(default)]
    pub resources: WorkloadResources,

    /// Ports the application listens on. The first port is probed by `healthPath`; all of
    /// them are exposed by a Service of the workload's name inside the agency.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.port == p.port && q.protocol == p.protocol))").message("spec.ports must not list the same port and protocol twice"))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.name == p.name))").message("spec.ports names must be unique"))]
    pub ports: Vec<WorkloadPort>,

    /// Environment variables of the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.all(e, self.exists_one(f, f.name == e.name))").message("spec.env names must be unique"))]
    pub env: Vec<WorkloadEnvVar>,

    /// DataServiceClaims in the same namespace whose binding Secret (`<claim>-binding`:
    /// host, port, username, password, database or prefix, uri) is handed to the
    /// container as environment variables or as files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(c, self.exists_one(d, d.name == c.name))").message("spec.claims must not name the same claim twice"))]
    pub claims: Vec<ClaimBinding>,

    /// An HTTP path (e.g. `/healthz`) probed on the first port for readiness and
    /// liveness. Without it a pod is ready as soon as it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^/[^\s]*$"))]
    pub health_path: Option<String>,

    /// Stops every replica (the Deployment is scaled to 0) while keeping the workload,
    /// its Service and its settings; `false` starts them again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

fn default_replicas() -> i32 {
    1
}

/// CPU and memory of each replica.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadResources {
    /// What each replica reserves and the quota counts.
    #[serde(default, skip_serializing_if = "CpuMemory::is_empty")]
    pub requests: CpuMemory,
    /// The most each replica may use. Left out: no limit.
    #[serde(default, skip_serializing_if = "CpuMemory::is_empty")]
    pub limits: CpuMemory,
}

/// An amount of CPU and memory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CpuMemory {
    /// CPU in cores (`250m`, `1`, `1.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory in bytes (`256Mi`, `2Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

impl CpuMemory {
    /// Whether neither amount is given.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none()
    }
}

/// A port the application listens on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPort {
    /// Lowercase name of the port, e.g. `http`.
    #[schemars(
        length(min = 1, max = 15),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Port number, 1-65535. Ports below 1024 need privileges that hardened pods do not
    /// have at restricted levels: prefer 8080 and the like.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// TCP (the default) or UDP.
    #[serde(default)]
    pub protocol: PortProtocol,
}

/// Transport protocol of a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PortProtocol {
    /// TCP.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

impl PortProtocol {
    /// The protocol as Kubernetes writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            PortProtocol::Tcp => "TCP",
            PortProtocol::Udp => "UDP",
        }
    }
}

/// An environment variable with a literal value. Credentials belong in data-service
/// bindings (`spec.claims`), not here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
pub struct WorkloadEnvVar {
    /// Name, e.g. `LOG_LEVEL`: letters, digits and '_', not starting with a digit.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub name: String,
    /// Value.
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// A DataServiceClaim whose binding Secret the container receives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimBinding {
    /// Name of the DataServiceClaim in the workload's namespace.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// `Env` (the default): every key of the binding becomes a variable
    /// `<PREFIX>HOST`, `<PREFIX>PORT`, `<PREFIX>USERNAME`, ... `File`: the keys are files
    /// in `/var/run/govbroker/data-services/<claim>/`.
    #[serde(default, rename = "as")]
    pub inject_as: InjectAs,
    /// Prefix of the variables with `as: Env`. Default: the claim's name in upper case
    /// with '-' turned into '_', and a trailing '_' (claim `ho-so` gives `HO_SO_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub prefix: Option<String>,
}

/// How a binding is handed to the container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum InjectAs {
    /// As environment variables with a prefix.
    #[default]
    Env,
    /// As files in a read-only volume.
    File,
}

/// What the operator observed of a workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Progressing, Available, Paused, QuotaExceeded or ImageRefused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<WorkloadPhase>,
    /// Replicas the Deployment is asked to run (0 while paused or not applied).
    #[serde(default)]
    pub replicas: i32,
    /// Replicas whose pods are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Replicas available to serve.
    #[serde(default)]
    pub available_replicas: i32,
    /// What is happening, in words a person can act on (e.g. how much quota is left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The quota left for this workload in its namespace when it last did not fit,
    /// per resource (`cpu`, `memory`, `pods`, `services`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quota_remaining: BTreeMap<String, Quantity>,
    /// Conditions: `Available`, `Progressing`, `QuotaExceeded` and `ImageRefused`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Phase of a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum WorkloadPhase {
    /// Accepted; its Deployment is not applied yet (e.g. a binding Secret is missing).
    Pending,
    /// The Deployment is rolling out or not all replicas are available.
    Progressing,
    /// Every replica asked for is available.
    Available,
    /// `spec.paused` is set: no replica runs.
    Paused,
    /// The request does not fit in the namespace's quota; nothing was changed.
    QuotaExceeded,
    /// The image is not allowed at the agency's security level; nothing was changed.
    ImageRefused,
}

impl WorkloadPhase {
    /// The phase as written in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadPhase::Pending => "Pending",
            WorkloadPhase::Progressing => "Progressing",
            WorkloadPhase::Available => "Available",
            WorkloadPhase::Paused => "Paused",
            WorkloadPhase::QuotaExceeded => "QuotaExceeded",
            WorkloadPhase::ImageRefused => "ImageRefused",
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt as _;

    use super::*;

    #[test]
    fn defaults_and_shape() {
        let spec: WorkloadSpec = serde_json::from_value(serde_json::json!({
            "image": "registry.gov.vn/app:1",
            "claims": [{"name": "ho-so"}],
            "ports": [{"name": "http", "port": 8080}]
        }))
        .unwrap();
        assert_eq!(spec.replicas, 1);
        assert_eq!(spec.claims[0].inject_as, InjectAs::Env);
        assert_eq!(spec.ports[0].protocol, PortProtocol::Tcp);
        assert!(!spec.paused);
        let crd = Workload::crd();
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["wl".to_owned()]));
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["govbroker".to_owned()])
        );
        let value = serde_json::to_value(&crd).unwrap();
        let version = &value["spec"]["versions"][0];
        assert_eq!(
            version["subresources"]["scale"]["specReplicasPath"],
            ".spec.replicas"
        );
        let replicas =
            &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["replicas"];
        assert_eq!(replicas["maximum"].as_f64(), Some(100.0));
        assert_eq!(replicas["default"], 1);
    }
}
