//! Workloads: what a `Workload` becomes, and whether it may.
//!
//! Pure functions shared by the admission webhook, the workload controller and the API:
//!
//! - [`validate`]: a spec's own mistakes (a malformed image reference, an absurd
//!   resource request, limits below requests), refused before anything is stored;
//! - [`ImagePolicy`]: which registries each security level may pull from;
//! - [`per_replica`], [`demand`] and [`check_quota`]: what a workload holds in quota and
//!   whether it fits in what is left, with the exact remainder when it does not;
//! - [`deployment`], [`service`] and [`pod_disruption_budget`]: the objects the
//!   controller applies, with a pod template hardened for the namespace's Pod Security
//!   level ([`crate::isolation::pod_security_profile`]);
//! - [`events`]: which Events a reconcile pass records on the Workload.

use std::collections::BTreeMap;
use std::fmt;

use govbroker_crds::{
    InjectAs, QuotaResource, Workload, WorkloadPhase, WorkloadSpec, WorkloadStatus,
};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvFromSource, EnvVar, HTTPGetAction,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretEnvSource, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::isolation::{AGENCY_LABEL, MANAGED_BY, MANAGED_BY_LABEL, pod_security_profile};
use crate::quantity::{Amount, Amounts};

/// Annotation on a workload's pod template: a digest of the injected binding Secrets'
/// data. A Secret mounted as files or read through `envFrom` does not restart the pods
/// that use it, so a rotated password would otherwise reach only pods started later; a
/// new digest changes the template and the Deployment replaces its pods.
pub const BINDINGS_DIGEST_ANNOTATION: &str = "govbroker.io/bindings-digest";
/// Label on every object rendered for a workload, and on its pods: the workload's name.
pub const WORKLOAD_LABEL: &str = "govbroker.io/workload";
/// Name of the application container.
pub const CONTAINER_NAME: &str = "app";
/// Directory under which `as: File` bindings are mounted, one folder per claim.
pub const BINDINGS_DIR: &str = "/var/run/govbroker/data-services";
/// User and group id the hardened pods run as.
pub const RUN_AS_ID: i64 = 10001;
/// CPU request of a replica that states none (matches the namespaces' LimitRange).
pub const DEFAULT_CPU_REQUEST: &str = "100m";
/// Memory request of a replica that states none (matches the namespaces' LimitRange).
pub const DEFAULT_MEMORY_REQUEST: &str = "128Mi";
/// The most CPU one replica may request or be limited to: 64 cores.
pub const MAX_CPU_PER_REPLICA: Amount = Amount::from_units(64);
/// The most memory one replica may request or be limited to: 256Gi.
pub const MAX_MEMORY_PER_REPLICA: Amount = Amount::from_units(256 << 30);
/// The least memory a replica may request: 4Mi (less cannot start a process).
pub const MIN_MEMORY_PER_REPLICA: Amount = Amount::from_units(4 << 20);
/// The most replicas a workload may ask for.
pub const MAX_REPLICAS: i32 = 100;

/// Name of the binding Secret of a DataServiceClaim (written by the data-service broker).
pub fn binding_secret_name(claim: &str) -> String {
    format!("{claim}-binding")
}

/// The default variable prefix of a claim's binding: `ho-so` gives `HO_SO_`.
pub fn default_env_prefix(claim: &str) -> String {
    let mut prefix: String = claim
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    if prefix.starts_with(|c: char| c.is_ascii_digit()) {
        prefix.insert(0, '_');
    }
    prefix.push('_');
    prefix
}

// ---------------------------------------------------------------------------------
// Image references and the image policy
// ---------------------------------------------------------------------------------

/// A parsed container image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host (with port), `docker.io` when the reference names none.
    pub registry: String,
    /// The repository path inside the registry, e.g. `library/nginx`.
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest (`sha256:...`), if any.
    pub digest: Option<String>,
}

impl ImageRef {
    /// `registry/repository`, what the image policy matches against.
    pub fn location(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

fn path_component_ok(c: &str) -> bool {
    // [a-z0-9]+ separated by '.', '_', '__' or runs of '-'.
    let bytes = c.as_bytes();
    if bytes.is_empty()
        || !bytes[0].is_ascii_lowercase() && !bytes[0].is_ascii_digit()
        || !bytes[bytes.len() - 1].is_ascii_lowercase() && !bytes[bytes.len() - 1].is_ascii_digit()
    {
        return false;
    }
    let mut prev_sep: Option<u8> = None;
    let mut underscores = 0;
    for &b in bytes {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => {
                prev_sep = None;
                underscores = 0;
            }
            b'.' => {
                if prev_sep.is_some() {
                    return false;
                }
                prev_sep = Some(b);
            }
            b'_' => {
                underscores += 1;
                if underscores > 2 || prev_sep.is_some_and(|p| p != b'_') {
                    return false;
                }
                prev_sep = Some(b);
            }
            b'-' => {
                if prev_sep.is_some_and(|p| p != b'-') {
                    return false;
                }
                prev_sep = Some(b);
            }
            _ => return false,
        }
    }
    true
}

fn host_ok(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Parses an image reference as container runtimes do:
/// `[registry[:port]/]path[:tag][@algorithm:hex]`. The first path component is a
/// registry when it contains a '.' or a ':' or is `localhost`.
pub fn parse_image(reference: &str) -> Result<ImageRef, String> {
    let bad = |why: &str| format!("image \"{reference}\" is not a valid image reference: {why}");
    if reference.is_empty() {
        return Err(bad("it is empty"));
    }
    if reference.len() > 512 {
        return Err(bad("it is longer than 512 characters"));
    }
    if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad("it contains spaces"));
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => {
            let Some((algorithm, hex)) = digest.split_once(':') else {
                return Err(bad(
                    "a digest is written algorithm:hex, e.g. sha256:<64 hex digits>",
                ));
            };
            let hex_ok =
                hex.len() >= 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if algorithm != "sha256" && algorithm != "sha512" || !hex_ok {
                return Err(bad(
                    "a digest is sha256:<64 lowercase hex digits> (or sha512)",
                ));
            }
            if algorithm == "sha256" && hex.len() != 64 || algorithm == "sha512" && hex.len() != 128
            {
                return Err(bad("the digest has the wrong length"));
            }
            (rest, Some(digest.to_owned()))
        }
        None => (reference, None),
    };
    // A tag follows the last ':' after the last '/'.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
        if !ok {
            return Err(bad(
                "a tag is 1-128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
            ));
        }
    }
    let mut components: Vec<&str> = name.split('/').collect();
    let registry = if components.len() > 1
        && (components[0].contains('.')
            || components[0].contains(':')
            || components[0] == "localhost")
    {
        let host = components.remove(0);
        if !host_ok(host) {
            return Err(bad(&format!("\"{host}\" is not a registry host name")));
        }
        host.to_owned()
    } else {
        "docker.io".to_owned()
    };
    if components.is_empty() || components.iter().any(|c| !path_component_ok(c)) {
        return Err(bad(
            "repository names are lowercase letters, digits and single '.', '_' or '-' between them, separated by '/'",
        ));
    }
    if registry == "docker.io" && components.len() == 1 {
        components.insert(0, "library");
    }
    Ok(ImageRef {
        registry,
        repository: components.join("/"),
        tag: tag.map(str::to_owned),
        digest,
    })
}

/// Which registries each security level may pull images from.
///
/// Written (in the operator's `--image-policy` setting) as rules separated by ';', each
/// `<levels>=<prefix>,<prefix>...`, where `<levels>` is a level (`3`) or a range
/// (`3-5`) and a prefix is a registry host (`registry.gov.vn`) or a registry and path
/// (`registry.gov.vn/so-y-te`). For example
/// `3-5=registry.gov.vn,harbor.gov.vn/shared` lets levels 3 to 5 use only those, and
/// levels 1 and 2 any registry. A level no rule names may use any registry; a level
/// named with an empty list may use none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImagePolicy {
    allowed: BTreeMap<u8, Vec<String>>,
}

impl ImagePolicy {
    /// The policy that allows every registry at every level.
    pub fn allow_all() -> ImagePolicy {
        ImagePolicy::default()
    }

    /// Parses the setting described on [`ImagePolicy`].
    pub fn parse(text: &str) -> Result<ImagePolicy, String> {
        let mut allowed = BTreeMap::new();
        for rule in text.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let Some((levels, prefixes)) = rule.split_once('=') else {
                return Err(format!(
                    "image policy rule \"{rule}\" is not <levels>=<registry>,<registry>..."
                ));
            };
            let level = |t: &str| -> Result<u8, String> {
                t.trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|l| (1..=5).contains(l))
                    .ok_or_else(|| {
                        format!("image policy rule \"{rule}\": \"{t}\" is not a security level 1-5")
                    })
            };
            let (from, to) = match levels.split_once('-') {
                Some((a, b)) => (level(a)?, level(b)?),
                None => (level(levels)?, level(levels)?),
            };
            if from > to {
                return Err(format!(
                    "image policy rule \"{rule}\": the range is reversed"
                ));
            }
            let list: Vec<String> = prefixes
                .split(',')
                .map(|p| p.trim().trim_end_matches('/').to_owned())
                .filter(|p| !p.is_empty())
                .collect();
            for l in from..=to {
                allowed.insert(l, list.clone());
            }
        }
        Ok(ImagePolicy { allowed })
    }

    /// The registries allowed at `level`, or `None` when any is.
    pub fn allowed(&self, level: u8) -> Option<&[String]> {
        self.allowed.get(&level).map(Vec::as_slice)
    }

    /// Whether `image` may run at `level`; the error says what is allowed.
    pub fn check(&self, level: u8, image: &ImageRef) -> Result<(), String> {
        let Some(allowed) = self.allowed(level) else {
            return Ok(());
        };
        let location = image.location();
        let fits = allowed.iter().any(|prefix| {
            location == *prefix
                || location
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        if fits {
            return Ok(());
        }
        if allowed.is_empty() {
            Err(format!(
                "image \"{location}\" is refused: no registry is allowed at security level {level}"
            ))
        } else {
            Err(format!(
                "image \"{location}\" is refused: at security level {level} images must come from {}",
                allowed.join(", ")
            ))
        }
    }
}

// ---------------------------------------------------------------------------------
// Validation and quota
// ---------------------------------------------------------------------------------

fn parse_resource(
    q: Option<&Quantity>,
    field: &str,
    default: Option<&str>,
) -> Result<Option<Amount>, String> {
    let text = match (q, default) {
        (Some(q), _) => q.0.as_str(),
        (None, Some(d)) => d,
        (None, None) => return Ok(None),
    };
    Amount::parse_non_negative(text)
        .map(Some)
        .map_err(|e| format!("{field}: {e}"))
}

/// What one replica requests: cpu, memory and one pod. Requests left out take the
/// namespace defaults ([`DEFAULT_CPU_REQUEST`], [`DEFAULT_MEMORY_REQUEST`]).
pub fn per_replica(spec: &WorkloadSpec) -> Result<Amounts, String> {
    let r = &spec.resources.requests;
    let cpu = parse_resource(
        r.cpu.as_ref(),
        "spec.resources.requests.cpu",
        Some(DEFAULT_CPU_REQUEST),
    )?;
    let memory = parse_resource(
        r.memory.as_ref(),
        "spec.resources.requests.memory",
        Some(DEFAULT_MEMORY_REQUEST),
    )?;
    let mut amounts = Amounts::new();
    amounts.set(QuotaResource::Cpu, cpu.unwrap_or(Amount::ZERO));
    amounts.set(QuotaResource::Memory, memory.unwrap_or(Amount::ZERO));
    amounts.set(QuotaResource::Pods, Amount::from_units(1));
    Ok(amounts)
}

/// `amounts` times `n`.
fn times(amounts: &Amounts, n: i32) -> Amounts {
    let mut out = Amounts::new();
    for (resource, amount) in amounts.iter() {
        out.set(resource, Amount::from_milli(amount.milli() * i128::from(n)));
    }
    out
}

/// What a workload holds in its namespace's quota with `replicas` running: each replica's
/// requests and pod, plus one Service when it has ports.
pub fn demand(per_replica: &Amounts, replicas: i32, has_service: bool) -> Amounts {
    let mut total = times(per_replica, replicas.max(0));
    total.set(
        QuotaResource::Services,
        Amount::from_units(i64::from(has_service)),
    );
    total
}

/// The replicas a workload runs: none while paused.
pub fn effective_replicas(spec: &WorkloadSpec) -> i32 {
    if spec.paused { 0 } else { spec.replicas }
}

/// Everything wrong with a spec by itself, in words a person can act on. Empty when it
/// is valid. Checked at admission (the webhook) and by the API before anything is
/// created.
pub fn validate(spec: &WorkloadSpec) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = parse_image(&spec.image) {
        problems.push(e);
    }
    if !(0..=MAX_REPLICAS).contains(&spec.replicas) {
        problems.push(format!(
            "spec.replicas: {} is outside 0-{MAX_REPLICAS}",
            spec.replicas
        ));
    }
    let bounds = [
        (QuotaResource::Cpu, MAX_CPU_PER_REPLICA, Amount::ZERO),
        (
            QuotaResource::Memory,
            MAX_MEMORY_PER_REPLICA,
            MIN_MEMORY_PER_REPLICA,
        ),
    ];
    let resources = &spec.resources;
    for (resource, max, min) in bounds {
        let (req, lim) = match resource {
            QuotaResource::Cpu => (
                resources.requests.cpu.as_ref(),
                resources.limits.cpu.as_ref(),
            ),
            _ => (
                resources.requests.memory.as_ref(),
                resources.limits.memory.as_ref(),
            ),
        };
        let name = resource.field();
        let request = match parse_resource(req, &format!("spec.resources.requests.{name}"), None) {
            Ok(a) => a,
            Err(e) => {
                problems.push(e);
                None
            }
        };
        let limit = match parse_resource(lim, &format!("spec.resources.limits.{name}"), None) {
            Ok(a) => a,
            Err(e) => {
                problems.push(e);
                None
            }
        };
        for (what, amount) in [("requests", request), ("limits", limit)] {
            let Some(amount) = amount else { continue };
            if amount > max {
                problems.push(format!(
                    "spec.resources.{what}.{name}: {} per replica is more than any node offers (at most {})",
                    amount.format(resource),
                    max.format(resource)
                ));
            }
            if amount < min {
                problems.push(format!(
                    "spec.resources.{what}.{name}: {} is too little to start a process (at least {})",
                    amount.format(resource),
                    min.format(resource)
                ));
            }
        }
        let effective_request = request.unwrap_or_else(|| {
            Amount::parse(match resource {
                QuotaResource::Cpu => DEFAULT_CPU_REQUEST,
                _ => DEFAULT_MEMORY_REQUEST,
            })
            .unwrap_or(Amount::ZERO)
        });
        if let Some(limit) = limit
            && limit < effective_request
        {
            problems.push(format!(
                "spec.resources.limits.{name} ({}) is below the request ({})",
                limit.format(resource),
                effective_request.format(resource)
            ));
        }
    }
    if spec.health_path.is_some() && spec.ports.is_empty() {
        problems.push(
            "spec.healthPath is probed on the first port: name at least one port in spec.ports"
                .to_owned(),
        );
    }
    problems
}

/// What a workload's namespace has left for it, resource by resource: its quota's
/// `hard` minus `used` by everything, plus what the workload itself holds now (which
/// `used` already counts). Resources the quota does not limit are absent.
pub fn room_for_workload(hard: &Amounts, used: &Amounts, held_now: &Amounts) -> Amounts {
    let mut room = Amounts::new();
    for (resource, limit) in hard.iter() {
        let left = limit - used.get(resource) + held_now.get(resource);
        room.set(
            resource,
            if left.is_negative() {
                Amount::ZERO
            } else {
                left
            },
        );
    }
    room
}

/// Why a workload does not fit: every resource short, what is left for the workload
/// and how many replicas would fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// The replicas asked for.
    pub replicas: i32,
    /// Each resource of which more is needed than is left, `available` being the exact
    /// remainder for this workload.
    pub short: Vec<crate::Shortfall>,
    /// What is left for this workload of every resource the quota limits.
    pub remaining: Amounts,
    /// The most replicas that fit now.
    pub max_replicas: i32,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} replica(s) do not fit in the namespace's quota: ",
            self.replicas
        )?;
        for (i, s) in self.short.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "{} {} needed, {} left",
                s.resource.field(),
                s.needed.format(s.resource),
                s.available.format(s.resource)
            )?;
        }
        write!(
            f,
            ". At most {} replica(s) fit; scale down, lower the requests, or ask for more quota (QuotaRequest)",
            self.max_replicas
        )
    }
}

/// Whether `replicas` of a workload fit in `room` ([`room_for_workload`]). Resources
/// absent from `room` are not limited.
pub fn check_quota(
    per_replica: &Amounts,
    replicas: i32,
    has_service: bool,
    room: &Amounts,
) -> Result<(), QuotaExceeded> {
    let need = demand(per_replica, replicas, has_service);
    let short: Vec<crate::Shortfall> = need
        .shortfall(room)
        .into_iter()
        .filter(|s| room.contains(s.resource))
        .collect();
    if short.is_empty() {
        return Ok(());
    }
    // The most replicas that fit: limited by each resource a replica needs, and by the
    // Service when there is none left for it.
    let service_fits = !has_service
        || !room.contains(QuotaResource::Services)
        || room.get(QuotaResource::Services) >= Amount::from_units(1);
    let mut max = if service_fits { replicas } else { 0 };
    for (resource, each) in per_replica.iter() {
        if each.is_zero() || !room.contains(resource) {
            continue;
        }
        let fit = room.get(resource).milli() / each.milli();
        max = max.min(i32::try_from(fit).unwrap_or(i32::MAX));
    }
    Err(QuotaExceeded {
        replicas,
        short,
        remaining: room.clone(),
        max_replicas: max.max(0),
    })
}

// ---------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------

/// Labels on a workload's objects and pods (the selector is the last two).
pub fn labels(workload: &Workload, agency: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = selector(workload);
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    labels.insert("app.kubernetes.io/name".to_owned(), name_of(workload));
    if let Some(agency) = agency {
        labels.insert(AGENCY_LABEL.to_owned(), agency.to_owned());
    }
    labels
}

fn name_of(workload: &Workload) -> String {
    workload.metadata.name.clone().unwrap_or_default()
}

fn selector(workload: &Workload) -> BTreeMap<String, String> {
    BTreeMap::from([(WORKLOAD_LABEL.to_owned(), name_of(workload))])
}

/// The controller owner reference to the workload (none before it has a uid).
fn owner(workload: &Workload) -> Vec<OwnerReference> {
    workload
        .metadata
        .uid
        .as_ref()
        .map(|uid| OwnerReference {
            api_version: format!("{}/{}", govbroker_crds::GROUP, govbroker_crds::VERSION),
            kind: "Workload".to_owned(),
            name: name_of(workload),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
        .into_iter()
        .collect()
}

fn meta(workload: &Workload, agency: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name_of(workload)),
        namespace: workload.metadata.namespace.clone(),
        labels: Some(labels(workload, agency)),
        owner_references: Some(owner(workload)),
        ..Default::default()
    }
}

fn quantities(
    cm: &govbroker_crds::CpuMemory,
    defaults: bool,
) -> Option<BTreeMap<String, Quantity>> {
    let mut map = BTreeMap::new();
    let canonical = |q: &Quantity, r: QuotaResource| {
        Amount::parse(&q.0).map_or_else(|_| q.clone(), |a| a.to_quantity(r))
    };
    match (&cm.cpu, defaults) {
        (Some(q), _) => {
            map.insert("cpu".to_owned(), canonical(q, QuotaResource::Cpu));
        }
        (None, true) => {
            map.insert("cpu".to_owned(), Quantity(DEFAULT_CPU_REQUEST.to_owned()));
        }
        (None, false) => {}
    }
    match (&cm.memory, defaults) {
        (Some(q), _) => {
            map.insert("memory".to_owned(), canonical(q, QuotaResource::Memory));
        }
        (None, true) => {
            map.insert(
                "memory".to_owned(),
                Quantity(DEFAULT_MEMORY_REQUEST.to_owned()),
            );
        }
        (None, false) => {}
    }
    (!map.is_empty()).then_some(map)
}

/// The container's security context for a Pod Security profile: never root, no
/// privilege escalation, no capabilities; at `restricted` also seccomp RuntimeDefault.
/// It satisfies the profile whatever the image, so agencies need no setting.
pub fn container_security_context(security_level: u8) -> SecurityContext {
    let restricted = pod_security_profile(security_level) == "restricted";
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_ID),
        run_as_group: Some(RUN_AS_ID),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Default::default()
        }),
        seccomp_profile: restricted.then(|| SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Deployment of a workload in a namespace at `security_level`.
///
/// Replicas are `spec.replicas` (0 while paused). Updates replace one pod at a time
/// without a surge pod (maxSurge 0, maxUnavailable 1), so a rollout never needs more
/// quota than the workload already holds.
pub fn deployment(workload: &Workload, agency: Option<&str>, security_level: u8) -> Deployment {
    let spec = &workload.spec;
    let restricted = pod_security_profile(security_level) == "restricted";
    let mut env: Vec<EnvVar> = spec
        .env
        .iter()
        .map(|e| EnvVar {
            name: e.name.clone(),
            value: Some(e.value.clone()),
            ..Default::default()
        })
        .collect();
    env.sort_by(|a, b| a.name.cmp(&b.name));
    let mut env_from = Vec::new();
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for claim in &spec.claims {
        let secret = binding_secret_name(&claim.name);
        match claim.inject_as {
            InjectAs::Env => env_from.push(EnvFromSource {
                prefix: Some(
                    claim
                        .prefix
                        .clone()
                        .unwrap_or_else(|| default_env_prefix(&claim.name)),
                ),
                secret_ref: Some(SecretEnvSource {
                    name: secret,
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            InjectAs::File => {
                let volume = format!("binding-{}", claim.name);
                let volume: String = volume.chars().take(63).collect();
                volumes.push(Volume {
                    name: volume.clone(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(secret),
                        default_mode: Some(0o440),
                        optional: Some(false),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                mounts.push(VolumeMount {
                    name: volume,
                    mount_path: format!("{BINDINGS_DIR}/{}", claim.name),
                    read_only: Some(true),
                    ..Default::default()
                });
            }
        }
    }
    let probe = spec.health_path.as_ref().and_then(|path| {
        spec.ports.first().map(|port| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.clone()),
                port: IntOrString::String(port.name.clone()),
                ..Default::default()
            }),
            period_seconds: Some(10),
            ..Default::default()
        })
    });
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(spec.image.clone()),
        command: (!spec.command.is_empty()).then(|| spec.command.clone()),
        args: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: (!env.is_empty()).then_some(env),
        env_from: (!env_from.is_empty()).then_some(env_from),
        ports: (!spec.ports.is_empty()).then(|| {
            spec.ports
                .iter()
                .map(|p| ContainerPort {
                    name: Some(p.name.clone()),
                    container_port: p.port,
                    protocol: Some(p.protocol.as_str().to_owned()),
                    ..Default::default()
                })
                .collect()
        }),
        resources: Some(ResourceRequirements {
            requests: quantities(&spec.resources.requests, true),
            limits: quantities(&spec.resources.limits, false),
            ..Default::default()
        }),
        readiness_probe: probe.clone(),
        liveness_probe: probe.map(|p| Probe {
            initial_delay_seconds: Some(10),
            failure_threshold: Some(6),
            ..p
        }),
        security_context: Some(container_security_context(security_level)),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Default::default()
    };
    let pod_labels = labels(workload, agency);
    Deployment {
        metadata: meta(workload, agency),
        spec: Some(DeploymentSpec {
            replicas: Some(effective_replicas(spec)),
            selector: LabelSelector {
                match_labels: Some(selector(workload)),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(0)),
                    max_unavailable: Some(IntOrString::Int(1)),
                }),
            }),
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_ID),
                        run_as_group: Some(RUN_AS_ID),
                        fs_group: Some(RUN_AS_ID),
                        seccomp_profile: restricted.then(|| SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The workload's Service, when it names ports: a ClusterIP Service of the same name.
pub fn service(workload: &Workload, agency: Option<&str>) -> Option<Service> {
    let spec = &workload.spec;
    if spec.ports.is_empty() {
        return None;
    }
    Some(Service {
        metadata: meta(workload, agency),
        spec: Some(ServiceSpec {
            selector: Some(selector(workload)),
            ports: Some(
                spec.ports
                    .iter()
                    .map(|p| ServicePort {
                        name: Some(p.name.clone()),
                        port: p.port,
                        target_port: Some(IntOrString::String(p.name.clone())),
                        protocol: Some(p.protocol.as_str().to_owned()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A PodDisruptionBudget keeping all but one replica up during node drains, when more
/// than one replica runs.
pub fn pod_disruption_budget(
    workload: &Workload,
    agency: Option<&str>,
) -> Option<PodDisruptionBudget> {
    if effective_replicas(&workload.spec) <= 1 {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: meta(workload, agency),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector(workload)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

// ---------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------

/// An Event the workload controller records on a Workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadEvent {
    /// `Warning` (the owners must act) rather than `Normal`.
    pub warning: bool,
    /// The Event's reason, CamelCase (`kubectl get events` shows it).
    pub reason: &'static str,
    /// What happened, in words.
    pub note: String,
}

/// What a reconcile pass changed in the workload's Deployment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentChange {
    /// The Deployment's replicas before and after, when an apply changed them.
    pub scaled: Option<(i32, i32)>,
    /// The injected binding Secrets changed, so the pods are being replaced.
    pub bindings_changed: bool,
}

/// The Events one reconcile pass records, given the status before and after it and what
/// it changed in the Deployment.
///
/// Only transitions are recorded, so a settled workload records nothing however often
/// it is reconciled: `Scaled` and `BindingsChanged` when the Deployment changed;
/// `QuotaExceeded` and `ImageRefused` (warnings) when the workload enters that phase or
/// its spec changes while in it (a further scale beyond the quota says again how much is
/// left); `Available` when it becomes available.
pub fn events(
    previous: Option<&WorkloadStatus>,
    next: &WorkloadStatus,
    change: DeploymentChange,
) -> Vec<WorkloadEvent> {
    let mut events = Vec::new();
    if let Some((from, to)) = change.scaled {
        let note = if to == 0 {
            format!("scaled from {from} to 0 replicas (paused or asked for none)")
        } else {
            format!("scaled from {from} to {to} replica(s)")
        };
        events.push(WorkloadEvent {
            warning: false,
            reason: "Scaled",
            note,
        });
    }
    if change.bindings_changed {
        events.push(WorkloadEvent {
            warning: false,
            reason: "BindingsChanged",
            note: "a binding Secret changed (e.g. a rotated password): the pods are replaced so that they read it".to_owned(),
        });
    }
    let before = previous.and_then(|s| s.phase);
    let new_spec = previous.and_then(|s| s.observed_generation) != next.observed_generation;
    let message = next.message.clone().unwrap_or_default();
    match next.phase {
        Some(phase @ (WorkloadPhase::QuotaExceeded | WorkloadPhase::ImageRefused))
            if before != Some(phase) || new_spec =>
        {
            events.push(WorkloadEvent {
                warning: true,
                reason: if phase == WorkloadPhase::QuotaExceeded {
                    "QuotaExceeded"
                } else {
                    "ImageRefused"
                },
                note: message,
            });
        }
        Some(WorkloadPhase::Available) if before != Some(WorkloadPhase::Available) => {
            events.push(WorkloadEvent {
                warning: false,
                reason: "Available",
                note: message,
            });
        }
        _ => {}
    }
    events
}

// ---------------------------------------------------------------------------------
// Growth (what an enforced, spent budget refuses)
// ---------------------------------------------------------------------------------

/// How a change makes a workload hold more, which an enforced, spent budget refuses at
/// admission (`billing::budget_refusal`). Shrinking, pausing and other edits are no
/// growth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Growth {
    /// A new workload.
    Created,
    /// More replicas (`spec.replicas` or the `scale` subresource).
    ScaledUp {
        /// Replicas before.
        from: i32,
        /// Replicas asked for.
        to: i32,
    },
    /// A paused workload with replicas resumed.
    Resumed {
        /// The replicas it starts.
        replicas: i32,
    },
    /// Larger requests per replica: (resource, before, after) for each that grows, in
    /// canonical form (`100m`, `256Mi`).
    LargerRequests(Vec<(QuotaResource, String, String)>),
}

impl fmt::Display for Growth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Growth::Created => write!(f, "a new workload"),
            Growth::ScaledUp { from, to } => {
                write!(f, "scaling up from {from} to {to} replica(s)")
            }
            Growth::Resumed { replicas } => {
                write!(f, "resuming a paused workload with {replicas} replica(s)")
            }
            Growth::LargerRequests(changes) => {
                write!(f, "raising the requests per replica (")?;
                for (i, (resource, from, to)) in changes.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{} from {from} to {to}", resource.field())?;
                }
                write!(f, ")")
            }
        }
    }
}

/// How the change from `old` (none for a create) to `new` makes the workload hold more,
/// if it does. Replicas come first (a change that adds replicas and raises requests is
/// refused as a scale-up); requests compare what each replica reserves, with the
/// namespace defaults for requests left out, so writing the default explicitly is no
/// growth. Raising one request while lowering another is growth: the webhook knows no
/// prices to weigh them. A spec whose requests do not parse is no growth here (the
/// spec validation refuses it).
pub fn growth(old: Option<&WorkloadSpec>, new: &WorkloadSpec) -> Option<Growth> {
    let Some(old) = old else {
        return Some(Growth::Created);
    };
    if new.replicas > old.replicas {
        return Some(Growth::ScaledUp {
            from: old.replicas,
            to: new.replicas,
        });
    }
    if old.paused && !new.paused && new.replicas > 0 {
        return Some(Growth::Resumed {
            replicas: new.replicas,
        });
    }
    let (Ok(before), Ok(after)) = (per_replica(old), per_replica(new)) else {
        return None;
    };
    let larger: Vec<(QuotaResource, String, String)> = [QuotaResource::Cpu, QuotaResource::Memory]
        .into_iter()
        .filter(|r| after.get(*r) > before.get(*r))
        .map(|r| (r, before.get(r).format(r), after.get(r).format(r)))
        .collect();
    (!larger.is_empty()).then_some(Growth::LargerRequests(larger))
}

#[cfg(test)]
mod tests {
    use govbroker_crds::{ClaimBinding, CpuMemory, WorkloadPort};

    use super::*;

    fn q(s: &str) -> Option<Quantity> {
        Some(Quantity(s.to_owned()))
    }

    fn spec(image: &str) -> WorkloadSpec {
        WorkloadSpec {
            image: image.to_owned(),
            replicas: 1,
            command: Vec::new(),
            args: Vec::new(),
            resources: Default::default(),
            ports: Vec::new(),
            env: Vec::new(),
            claims: Vec::new(),
            health_path: None,
            paused: false,
        }
    }

    #[test]
    fn growth_is_new_workloads_more_replicas_resuming_and_larger_requests() {
        let base = WorkloadSpec {
            resources: govbroker_crds::WorkloadResources {
                requests: CpuMemory {
                    cpu: q("100m"),
                    memory: q("128Mi"),
                },
                limits: CpuMemory::default(),
            },
            ..spec("registry.gov.vn/a/b:1")
        };
        let with = |cpu: Option<&str>, memory: Option<&str>| WorkloadSpec {
            resources: govbroker_crds::WorkloadResources {
                requests: CpuMemory {
                    cpu: cpu.and_then(q),
                    memory: memory.and_then(q),
                },
                limits: CpuMemory::default(),
            },
            ..base.clone()
        };
        assert_eq!(growth(None, &base), Some(Growth::Created));
        assert_eq!(growth(Some(&base), &base), None);
        let three = WorkloadSpec {
            replicas: 3,
            ..base.clone()
        };
        assert_eq!(
            growth(Some(&base), &three),
            Some(Growth::ScaledUp { from: 1, to: 3 })
        );
        assert_eq!(growth(Some(&three), &base), None);
        // Raising either request grows, in canonical units; lowering does not.
        let cpu_up = with(Some("0.5"), Some("128Mi"));
        let grown = growth(Some(&base), &cpu_up).unwrap();
        assert_eq!(
            grown,
            Growth::LargerRequests(vec![(QuotaResource::Cpu, "100m".into(), "500m".into())])
        );
        assert_eq!(
            grown.to_string(),
            "raising the requests per replica (cpu from 100m to 500m)"
        );
        let both = growth(Some(&base), &with(Some("200m"), Some("1Gi"))).unwrap();
        assert_eq!(
            both.to_string(),
            "raising the requests per replica (cpu from 100m to 200m, memory from 128Mi to 1Gi)"
        );
        assert_eq!(growth(Some(&cpu_up), &base), None);
        assert_eq!(growth(Some(&base), &with(Some("50m"), Some("64Mi"))), None);
        // One up and one down is still growth: no prices to weigh them here.
        assert!(matches!(
            growth(Some(&base), &with(Some("50m"), Some("256Mi"))),
            Some(Growth::LargerRequests(ref v)) if v.len() == 1 && v[0].0 == QuotaResource::Memory
        ));
        // Left out means the namespace default, so spelling the default out is no
        // growth, and dropping a request larger than the default is a decrease.
        let defaults = with(None, None);
        let explicit = with(Some(DEFAULT_CPU_REQUEST), Some(DEFAULT_MEMORY_REQUEST));
        assert_eq!(growth(Some(&defaults), &explicit), None);
        let big = with(Some("2"), Some("4Gi"));
        assert_eq!(growth(Some(&big), &defaults), None);
        // Resuming a paused workload starts its replicas; pausing does not grow.
        let paused = WorkloadSpec {
            paused: true,
            ..base.clone()
        };
        assert_eq!(growth(Some(&base), &paused), None);
        assert_eq!(
            growth(Some(&paused), &base),
            Some(Growth::Resumed { replicas: 1 })
        );
        let none = WorkloadSpec {
            replicas: 0,
            ..base.clone()
        };
        let paused_none = WorkloadSpec {
            paused: true,
            ..none.clone()
        };
        assert_eq!(growth(Some(&paused_none), &none), None);
        // An unparsable request is the validation's to refuse.
        assert_eq!(growth(Some(&base), &with(Some("lots"), None)), None);
    }

    fn workload(spec: WorkloadSpec) -> Workload {
        let mut w = Workload::new("cong-dich-vu", spec);
        w.metadata.namespace = Some("so-tttt-prod".to_owned());
        w.metadata.uid = Some("uid-1".to_owned());
        w
    }

    #[test]
    fn image_references() {
        let r = parse_image("nginx").unwrap();
        assert_eq!(r.location(), "docker.io/library/nginx");
        let r = parse_image("registry.gov.vn:5000/so-tttt/app:1.4.2").unwrap();
        assert_eq!(r.registry, "registry.gov.vn:5000");
        assert_eq!(r.repository, "so-tttt/app");
        assert_eq!(r.tag.as_deref(), Some("1.4.2"));
        let digest = format!("registry.gov.vn/app@sha256:{}", "a".repeat(64));
        assert!(parse_image(&digest).unwrap().digest.is_some());
        assert!(parse_image("localhost/app:dev").is_ok());
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx:-x",
            "registry.gov.vn/app@sha256:abc",
            "bad image",
            "a//b",
            "-x/app",
            "registry.gov.vn/App:1",
            "reg..gov/app",
        ] {
            assert!(parse_image(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn image_policy_by_level() {
        let policy = ImagePolicy::parse("3-5=registry.gov.vn, harbor.gov.vn/shared/ ;1=").unwrap();
        let ok = parse_image("registry.gov.vn/so-tttt/app:1").unwrap();
        let shared = parse_image("harbor.gov.vn/shared/app:1").unwrap();
        let other = parse_image("harbor.gov.vn/sharedx/app:1").unwrap();
        let hub = parse_image("nginx:1.27").unwrap();
        assert!(policy.check(4, &ok).is_ok());
        assert!(policy.check(4, &shared).is_ok());
        let e = policy.check(4, &other).unwrap_err();
        assert!(
            e.contains("security level 4") && e.contains("registry.gov.vn, harbor.gov.vn/shared"),
            "{e}"
        );
        assert!(policy.check(2, &hub).is_ok());
        assert!(policy.check(1, &hub).unwrap_err().contains("no registry"));
        assert!(ImagePolicy::parse("6=x").is_err());
        assert!(ImagePolicy::parse("5-3=x").is_err());
        assert!(ImagePolicy::parse("nonsense").is_err());
        assert_eq!(ImagePolicy::parse("").unwrap(), ImagePolicy::allow_all());
    }

    #[test]
    fn validation_refuses_absurd_requests_and_bad_images() {
        assert!(validate(&spec("registry.gov.vn/app:1")).is_empty());
        let mut s = spec("registry.gov.vn/app:1");
        s.resources.requests = CpuMemory {
            cpu: q("1000"),
            memory: q("1Ti"),
        };
        let problems = validate(&s);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("more than any node offers"),
            "{problems:?}"
        );
        s.resources.requests = CpuMemory {
            cpu: q("1"),
            memory: q("1Gi"),
        };
        s.resources.limits = CpuMemory {
            cpu: q("500m"),
            memory: None,
        };
        assert!(validate(&s)[0].contains("below the request"));
        s.resources.limits = CpuMemory::default();
        s.resources.requests.memory = q("12x");
        assert!(validate(&s)[0].contains("spec.resources.requests.memory"));
        s.resources.requests.memory = q("1Ki");
        assert!(validate(&s)[0].contains("too little"));
        assert!(!validate(&spec("UPPER/case")).is_empty());
    }

    #[test]
    fn quota_check_reports_the_exact_remainder() {
        let mut s = spec("registry.gov.vn/app:1");
        s.resources.requests = CpuMemory {
            cpu: q("300m"),
            memory: q("256Mi"),
        };
        let each = per_replica(&s).unwrap();
        let hard = Amounts::from_resource_quota(&BTreeMap::from([
            ("requests.cpu".to_owned(), Quantity("2".to_owned())),
            ("requests.memory".to_owned(), Quantity("4Gi".to_owned())),
            ("pods".to_owned(), Quantity("10".to_owned())),
            ("services".to_owned(), Quantity("1".to_owned())),
        ]));
        // Others use 500m; this workload holds 2 replicas and its Service.
        let held = demand(&each, 2, true);
        let used = held.add(&Amounts::from_resource_quota(&BTreeMap::from([(
            "requests.cpu".to_owned(),
            Quantity("500m".to_owned()),
        )])));
        let room = room_for_workload(&hard, &used, &held);
        assert_eq!(
            room.get(QuotaResource::Cpu),
            Amount::parse("1500m").unwrap()
        );
        assert!(check_quota(&each, 5, true, &room).is_ok());
        let e = check_quota(&each, 6, true, &room).unwrap_err();
        assert_eq!(e.max_replicas, 5);
        assert_eq!(e.short.len(), 1);
        assert_eq!(e.short[0].resource, QuotaResource::Cpu);
        assert_eq!(e.short[0].needed, Amount::parse("1800m").unwrap());
        assert_eq!(e.short[0].available, Amount::parse("1500m").unwrap());
        let text = e.to_string();
        assert!(
            text.contains("cpu 1800m needed, 1500m left") && text.contains("At most 5"),
            "{text}"
        );
    }

    #[test]
    fn rendering_hardens_pods_and_injects_bindings() {
        let mut s = spec("registry.gov.vn/app:1");
        s.replicas = 3;
        s.ports = vec![WorkloadPort {
            name: "http".into(),
            port: 8080,
            protocol: Default::default(),
        }];
        s.health_path = Some("/healthz".into());
        s.claims = vec![
            ClaimBinding {
                name: "ho-so".into(),
                inject_as: InjectAs::Env,
                prefix: None,
            },
            ClaimBinding {
                name: "cache".into(),
                inject_as: InjectAs::File,
                prefix: None,
            },
        ];
        let w = workload(s);
        let d = deployment(&w, Some("so-tttt"), 3);
        let ds = d.spec.as_ref().unwrap();
        assert_eq!(ds.replicas, Some(3));
        let pod = ds.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_owned()])
        );
        let from = c.env_from.as_ref().unwrap();
        assert_eq!(from[0].prefix.as_deref(), Some("HO_SO_"));
        assert_eq!(from[0].secret_ref.as_ref().unwrap().name, "ho-so-binding");
        assert_eq!(
            c.volume_mounts.as_ref().unwrap()[0].mount_path,
            "/var/run/govbroker/data-services/cache"
        );
        assert_eq!(
            c.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"].0,
            "100m"
        );
        assert!(c.readiness_probe.is_some());
        assert_eq!(
            d.metadata.owner_references.as_ref().unwrap()[0].kind,
            "Workload"
        );
        assert!(service(&w, None).is_some());
        assert!(pod_disruption_budget(&w, None).is_some());
        // Baseline levels get no seccomp requirement; paused workloads run nothing.
        let mut w = w;
        w.spec.paused = true;
        let d = deployment(&w, None, 2);
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(0));
        let c = &d
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        assert!(
            c.security_context
                .as_ref()
                .unwrap()
                .seccomp_profile
                .is_none()
        );
        assert!(pod_disruption_budget(&w, None).is_none());
    }

    #[test]
    fn env_prefixes() {
        assert_eq!(default_env_prefix("ho-so"), "HO_SO_");
        assert_eq!(default_env_prefix("1db"), "_1DB_");
    }

    fn status(phase: WorkloadPhase, generation: i64, message: &str) -> WorkloadStatus {
        WorkloadStatus {
            observed_generation: Some(generation),
            phase: Some(phase),
            message: Some(message.to_owned()),
            ..Default::default()
        }
    }

    fn reasons(events: &[WorkloadEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.reason).collect()
    }

    #[test]
    fn events_record_transitions_only() {
        use WorkloadPhase::*;
        let none = DeploymentChange::default();
        // Becoming available is recorded once; staying available records nothing.
        let progressing = status(Progressing, 1, "0/2 replicas available, 0 ready");
        let available = status(Available, 1, "2/2 replicas available");
        let e = events(Some(&progressing), &available, none);
        assert_eq!(reasons(&e), ["Available"]);
        assert!(!e[0].warning);
        assert_eq!(e[0].note, "2/2 replicas available");
        assert!(events(Some(&available), &available, none).is_empty());
        assert!(events(None, &progressing, none).is_empty());

        // A refusal is a warning on entering it, and again for a new spec in it.
        let over = status(QuotaExceeded, 2, "6 replica(s) do not fit");
        let e = events(Some(&available), &over, none);
        assert_eq!(reasons(&e), ["QuotaExceeded"]);
        assert!(e[0].warning);
        assert_eq!(e[0].note, "6 replica(s) do not fit");
        assert!(events(Some(&over), &over, none).is_empty());
        let further = status(QuotaExceeded, 3, "8 replica(s) do not fit");
        assert_eq!(
            reasons(&events(Some(&over), &further, none)),
            ["QuotaExceeded"]
        );
        let refused = status(ImageRefused, 1, "image refused");
        assert_eq!(reasons(&events(None, &refused, none)), ["ImageRefused"]);
        assert!(events(Some(&refused), &refused, none).is_empty());

        // What changed in the Deployment comes first.
        let change = DeploymentChange {
            scaled: Some((4, 5)),
            bindings_changed: true,
        };
        let e = events(Some(&over), &status(Progressing, 4, "4/5"), change);
        assert_eq!(reasons(&e), ["Scaled", "BindingsChanged"]);
        assert_eq!(e[0].note, "scaled from 4 to 5 replica(s)");
        let paused = DeploymentChange {
            scaled: Some((5, 0)),
            bindings_changed: false,
        };
        let e = events(Some(&available), &status(Paused, 5, "paused"), paused);
        assert!(e[0].note.contains("to 0 replicas"), "{}", e[0].note);
    }
}
