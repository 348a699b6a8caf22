//! Workloads: an agency's applications in one of its environments.
//!
//! Reads come from a watch-fed cache after a SubjectAccessReview of the caller (`get` or
//! `list workloads` in the namespace `<agency>-<environment>`); every change is made
//! through an impersonating client, so RBAC (the agency's owners hold `admin` there)
//! and the operator's admission webhook (image policy, sane resources) judge the caller.
//! Requests are checked here first with the same rules
//! ([`govbroker_domain::workload::validate`]) so that a mistake is an
//! `invalid_argument` naming the field, and nothing is created.

use std::pin::Pin;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use govbroker_crds::{
    ClaimBinding, CpuMemory, InjectAs, PortProtocol, QuotaResource, Workload, WorkloadEnvVar,
    WorkloadPort, WorkloadResources, WorkloadSpec,
};
use govbroker_domain::isolation::namespace_name;
use govbroker_domain::quantity::Amount;
use govbroker_domain::workload::{MAX_REPLICAS, parse_image, validate as validate_spec};
use govbroker_ledger::Target;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, Patch, WatchEvent, WatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt as _};
use prost::Message as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::operations::{Operation, operation};
use super::{Api, Method, create_params, first_page, patch_params, target};
use crate::auth::{Caller, Permission};
use crate::error::ApiError;
use crate::proto;
use crate::validate;

/// Longest environment name (the Agency CRD's rule).
const MAX_ENVIRONMENT: usize = 20;
/// Longest workload name (the Workload CRD's rule).
const MAX_NAME: usize = 50;

/// The methods of the Workloads service.
pub mod methods {
    use super::Method;
    /// Workloads/CreateWorkload.
    pub const CREATE: Method = Method::write("govbroker.v1.Workloads/CreateWorkload");
    /// Workloads/GetWorkload.
    pub const GET: Method = Method::read("govbroker.v1.Workloads/GetWorkload");
    /// Workloads/ListWorkloads.
    pub const LIST: Method = Method::read("govbroker.v1.Workloads/ListWorkloads");
    /// Workloads/ScaleWorkload.
    pub const SCALE: Method = Method::write("govbroker.v1.Workloads/ScaleWorkload");
    /// Workloads/PauseWorkload.
    pub const PAUSE: Method = Method::write("govbroker.v1.Workloads/PauseWorkload");
    /// Workloads/ResumeWorkload.
    pub const RESUME: Method = Method::write("govbroker.v1.Workloads/ResumeWorkload");
    /// Workloads/DeleteWorkload.
    pub const DELETE: Method = Method::write("govbroker.v1.Workloads/DeleteWorkload");
    /// Workloads/WatchWorkload.
    pub const WATCH: Method = Method::read("govbroker.v1.Workloads/WatchWorkload");
}

/// Starts the watch of every Workload with the API's own client; it stops on `shutdown`.
pub fn watch(client: &Client, shutdown: &CancellationToken) -> Store<Workload> {
    crate::server::watched(client, "workloads", shutdown)
}

/// The stream of a WatchWorkload call.
pub type WorkloadEvents =
    Pin<Box<dyn Stream<Item = Result<proto::WorkloadEvent, ApiError>> + Send>>;

fn what(namespace: &str, name: &str) -> String {
    format!("workload \"{name}\" in namespace \"{namespace}\"")
}

/// The namespace of an agency's environment, both checked.
fn namespace_of(agency: &str, environment: &str, prefix: &str) -> Result<String, ApiError> {
    let field = |f: &str| {
        if prefix.is_empty() {
            f.to_owned()
        } else {
            format!("{prefix}.{f}")
        }
    };
    validate::agency_name(&field("agency"), agency)?;
    validate::slug(&field("environment"), environment, MAX_ENVIRONMENT)?;
    Ok(namespace_name(agency, environment))
}

/// A workload's address, checked; returns its namespace.
fn address(agency: &str, environment: &str, name: &str) -> Result<String, ApiError> {
    let namespace = namespace_of(agency, environment, "")?;
    check_name("name", name)?;
    Ok(namespace)
}

fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    validate::slug(field, name, MAX_NAME)?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(ApiError::invalid(
            field,
            "must start with a lowercase letter",
        ));
    }
    Ok(())
}

fn check_replicas(field: &str, replicas: i32) -> Result<(), ApiError> {
    if !(0..=MAX_REPLICAS).contains(&replicas) {
        return Err(ApiError::invalid(
            field,
            format!("{replicas} is outside 0-{MAX_REPLICAS}"),
        ));
    }
    Ok(())
}

fn quantity(field: &str, text: &str) -> Result<Option<Quantity>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    Amount::parse_non_negative(text).map_err(|e| ApiError::invalid(field, e.to_string()))?;
    Ok(Some(Quantity(text.to_owned())))
}

/// The Workload a CreateWorkload message asks for, checked field by field.
pub fn workload_from_proto(
    message: &proto::Workload,
    namespace: &str,
) -> Result<Workload, ApiError> {
    check_name("workload.name", &message.name)?;
    validate::text("workload.image", &message.image, 512, true)?;
    parse_image(&message.image).map_err(|e| ApiError::invalid("workload.image", e))?;
    check_replicas("workload.replicas", message.replicas)?;
    let mut ports = Vec::new();
    for (i, p) in message.ports.iter().enumerate() {
        let field = format!("workload.ports[{i}]");
        validate::slug(&format!("{field}.name"), &p.name, 15)?;
        if !(1..=65535).contains(&p.port) {
            return Err(ApiError::invalid(
                format!("{field}.port"),
                "must be 1-65535",
            ));
        }
        let protocol = match p.protocol.to_ascii_uppercase().as_str() {
            "" | "TCP" => PortProtocol::Tcp,
            "UDP" => PortProtocol::Udp,
            other => {
                return Err(ApiError::invalid(
                    format!("{field}.protocol"),
                    format!("{other:?} is not TCP or UDP"),
                ));
            }
        };
        ports.push(WorkloadPort {
            name: p.name.clone(),
            port: p.port,
            protocol,
        });
    }
    let mut env = Vec::new();
    for (i, e) in message.env.iter().enumerate() {
        let field = format!("workload.env[{i}].name");
        let ok = !e.name.is_empty()
            && e.name.len() <= 128
            && !e.name.starts_with(|c: char| c.is_ascii_digit())
            && e.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(ApiError::invalid(
                field,
                "letters, digits and '_', not starting with a digit, at most 128",
            ));
        }
        validate::text(&format!("workload.env[{i}].value"), &e.value, 4096, false)?;
        env.push(WorkloadEnvVar {
            name: e.name.clone(),
            value: e.value.clone(),
        });
    }
    let mut claims = Vec::new();
    for (i, c) in message.claims.iter().enumerate() {
        let field = format!("workload.claims[{i}]");
        validate::slug(&format!("{field}.name"), &c.name, 63)?;
        let inject_as = match c.r#as.to_ascii_lowercase().as_str() {
            "" | "env" => InjectAs::Env,
            "file" => InjectAs::File,
            other => {
                return Err(ApiError::invalid(
                    format!("{field}.as"),
                    format!("{other:?} is not env or file"),
                ));
            }
        };
        claims.push(ClaimBinding {
            name: c.name.clone(),
            inject_as,
            prefix: (!c.prefix.is_empty()).then(|| c.prefix.clone()),
        });
    }
    let spec = WorkloadSpec {
        image: message.image.clone(),
        replicas: message.replicas,
        command: message.command.clone(),
        args: message.args.clone(),
        resources: WorkloadResources {
            requests: CpuMemory {
                cpu: quantity("workload.cpu_request", &message.cpu_request)?,
                memory: quantity("workload.memory_request", &message.memory_request)?,
            },
            limits: CpuMemory {
                cpu: quantity("workload.cpu_limit", &message.cpu_limit)?,
                memory: quantity("workload.memory_limit", &message.memory_limit)?,
            },
        },
        ports,
        env,
        claims,
        health_path: (!message.health_path.is_empty()).then(|| message.health_path.clone()),
        paused: message.paused,
    };
    let problems = validate_spec(&spec);
    if !problems.is_empty() {
        return Err(ApiError::invalid("workload", problems.join("; ")));
    }
    let mut workload = Workload::new(&message.name, spec);
    workload.metadata.namespace = Some(namespace.to_owned());
    Ok(workload)
}

/// A Workload as the API shows it.
pub fn workload_to_proto(w: &Workload, agency: &str, environment: &str) -> proto::Workload {
    let spec = &w.spec;
    let q = |v: &Option<Quantity>| v.as_ref().map(|q| q.0.clone()).unwrap_or_default();
    let status = w.status.clone().unwrap_or_default();
    let mut remaining = proto::ResourceAmounts::default();
    for (key, value) in &status.quota_remaining {
        let v = value.0.clone();
        match key.as_str() {
            k if k == QuotaResource::Cpu.field() => remaining.cpu = v,
            k if k == QuotaResource::Memory.field() => remaining.memory = v,
            k if k == QuotaResource::Pods.field() => remaining.pods = v,
            k if k == QuotaResource::Services.field() => remaining.services = v,
            _ => {}
        }
    }
    proto::Workload {
        agency: agency.to_owned(),
        environment: environment.to_owned(),
        name: w.name_any(),
        image: spec.image.clone(),
        replicas: spec.replicas,
        command: spec.command.clone(),
        args: spec.args.clone(),
        cpu_request: q(&spec.resources.requests.cpu),
        memory_request: q(&spec.resources.requests.memory),
        cpu_limit: q(&spec.resources.limits.cpu),
        memory_limit: q(&spec.resources.limits.memory),
        ports: spec
            .ports
            .iter()
            .map(|p| proto::WorkloadPort {
                name: p.name.clone(),
                port: p.port,
                protocol: p.protocol.as_str().to_owned(),
            })
            .collect(),
        env: spec
            .env
            .iter()
            .map(|e| proto::EnvVar {
                name: e.name.clone(),
                value: e.value.clone(),
            })
            .collect(),
        claims: spec
            .claims
            .iter()
            .map(|c| proto::ClaimBinding {
                name: c.name.clone(),
                r#as: match c.inject_as {
                    InjectAs::Env => "env".to_owned(),
                    InjectAs::File => "file".to_owned(),
                },
                prefix: c.prefix.clone().unwrap_or_default(),
            })
            .collect(),
        health_path: spec.health_path.clone().unwrap_or_default(),
        paused: spec.paused,
        status: Some(proto::WorkloadStatus {
            phase: status
                .phase
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "Pending".to_owned()),
            replicas: status.replicas,
            ready_replicas: status.ready_replicas,
            available_replicas: status.available_replicas,
            message: status.message.clone().unwrap_or_default(),
            quota_remaining: Some(remaining),
            conditions: status
                .conditions
                .iter()
                .map(|c| proto::Condition {
                    r#type: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_transition_time: c.last_transition_time.0.to_string(),
                })
                .collect(),
            observed_generation: status.observed_generation.unwrap_or_default(),
            generation: w.metadata.generation.unwrap_or_default(),
        }),
        resource_version: w.resource_version().unwrap_or_default(),
        created_at: w
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
    }
}

impl Api {
    /// CreateWorkload.
    pub async fn create_workload(
        &self,
        caller: Caller,
        request: proto::CreateWorkloadRequest,
    ) -> Result<proto::Workload, ApiError> {
        let Some(message) = &request.workload else {
            return Err(ApiError::invalid("workload", "is required"));
        };
        let namespace = namespace_of(&message.agency, &message.environment, "workload")?;
        let mut message = message.clone();
        if message.replicas == 0 && !message.paused {
            // proto3 cannot tell 0 from unset: a new workload runs one replica unless paused.
            message.replicas = 1;
        }
        let workload = workload_from_proto(&message, &namespace)?;
        let created = self
            .namespaced_as::<Workload>(&caller, &namespace)?
            .create(&create_params(), &workload)
            .await
            .map_err(|e| ApiError::from_kube(e, &what(&namespace, &message.name)))?;
        Ok(workload_to_proto(
            &created,
            &message.agency,
            &message.environment,
        ))
    }

    /// GetWorkload.
    pub async fn get_workload(
        &self,
        caller: Caller,
        request: proto::GetWorkloadRequest,
    ) -> Result<proto::Workload, ApiError> {
        let namespace = address(&request.agency, &request.environment, &request.name)?;
        self.identity
            .require(
                &caller,
                &Permission::on("get", "workloads", &request.name).in_namespace(&namespace),
            )
            .await?;
        let workload = self
            .workloads
            .get(&ObjectRef::new(&request.name).within(&namespace))
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "{} does not exist",
                    what(&namespace, &request.name)
                ))
            })?;
        Ok(workload_to_proto(
            &workload,
            &request.agency,
            &request.environment,
        ))
    }

    /// ListWorkloads.
    pub async fn list_workloads(
        &self,
        caller: Caller,
        request: proto::ListWorkloadsRequest,
    ) -> Result<proto::ListWorkloadsResponse, ApiError> {
        let namespace = namespace_of(&request.agency, &request.environment, "")?;
        let page_size = validate::page_size("page_size", request.page_size)?;
        let after = validate::cursor("page_token", &request.page_token)?;
        self.identity
            .require(
                &caller,
                &Permission::all("list", "workloads").in_namespace(&namespace),
            )
            .await?;
        let mut items: Vec<Arc<Workload>> = self
            .workloads
            .state()
            .into_iter()
            .filter(|w| {
                w.namespace().as_deref() == Some(namespace.as_str())
                    && after.as_ref().is_none_or(|after| &w.name_any() > after)
            })
            .collect();
        let next_page_token = first_page(&mut items, page_size, |w| w.name_any());
        Ok(proto::ListWorkloadsResponse {
            workloads: items
                .iter()
                .map(|w| workload_to_proto(w, &request.agency, &request.environment))
                .collect(),
            next_page_token,
        })
    }

    async fn patch_workload(
        &self,
        caller: &Caller,
        (agency, environment, name): (&str, &str, &str),
        spec: serde_json::Value,
    ) -> Result<proto::Workload, ApiError> {
        let namespace = address(agency, environment, name)?;
        let updated = self
            .namespaced_as::<Workload>(caller, &namespace)?
            .patch(
                name,
                &patch_params(),
                &Patch::Merge(&json!({ "spec": spec })),
            )
            .await
            .map_err(|e| ApiError::from_kube(e, &what(&namespace, name)))?;
        Ok(workload_to_proto(&updated, agency, environment))
    }

    /// ScaleWorkload.
    pub async fn scale_workload(
        &self,
        caller: Caller,
        request: proto::ScaleWorkloadRequest,
    ) -> Result<proto::Workload, ApiError> {
        check_replicas("replicas", request.replicas)?;
        self.patch_workload(
            &caller,
            (&request.agency, &request.environment, &request.name),
            json!({ "replicas": request.replicas }),
        )
        .await
    }

    /// PauseWorkload.
    pub async fn pause_workload(
        &self,
        caller: Caller,
        request: proto::PauseWorkloadRequest,
    ) -> Result<proto::Workload, ApiError> {
        self.patch_workload(
            &caller,
            (&request.agency, &request.environment, &request.name),
            json!({ "paused": true }),
        )
        .await
    }

    /// ResumeWorkload.
    pub async fn resume_workload(
        &self,
        caller: Caller,
        request: proto::ResumeWorkloadRequest,
    ) -> Result<proto::Workload, ApiError> {
        // `null` removes the field (the CRD's default is false).
        self.patch_workload(
            &caller,
            (&request.agency, &request.environment, &request.name),
            json!({ "paused": null }),
        )
        .await
    }

    /// DeleteWorkload.
    pub async fn delete_workload(
        &self,
        caller: Caller,
        request: proto::DeleteWorkloadRequest,
    ) -> Result<proto::DeleteWorkloadResponse, ApiError> {
        let namespace = address(&request.agency, &request.environment, &request.name)?;
        self.namespaced_as::<Workload>(&caller, &namespace)?
            .delete(&request.name, &DeleteParams::background())
            .await
            .map_err(|e| ApiError::from_kube(e, &what(&namespace, &request.name)))?;
        Ok(proto::DeleteWorkloadResponse {})
    }

    /// WatchWorkload: the workload now, then its changes, read as the caller (RBAC's
    /// `get` and `watch` on workloads in the namespace).
    pub async fn watch_workload(
        &self,
        caller: Caller,
        request: proto::WatchWorkloadRequest,
    ) -> Result<WorkloadEvents, ApiError> {
        let namespace = address(&request.agency, &request.environment, &request.name)?;
        let api = self.namespaced_as::<Workload>(&caller, &namespace)?;
        let name = request.name.clone();
        let current = api
            .get(&name)
            .await
            .map_err(|e| ApiError::from_kube(e, &what(&namespace, &name)))?;
        let version = current.resource_version().unwrap_or_default();
        let params = WatchParams::default().fields(&format!("metadata.name={name}"));
        let changes = api
            .watch(&params, &version)
            .await
            .map_err(|e| ApiError::from_kube(e, &what(&namespace, &name)))?;
        let (agency, environment) = (request.agency.clone(), request.environment.clone());
        let snapshot = proto::WorkloadEvent {
            r#type: "SNAPSHOT".to_owned(),
            workload: Some(workload_to_proto(&current, &agency, &environment)),
        };
        let changes = changes
            .map_err(move |e| ApiError::from_kube(e, &what(&namespace, &name)))
            .try_filter_map(move |event| {
                let (agency, environment) = (agency.clone(), environment.clone());
                async move {
                    let (kind, w) = match event {
                        WatchEvent::Added(w) | WatchEvent::Modified(w) => ("MODIFIED", w),
                        WatchEvent::Deleted(w) => ("DELETED", w),
                        WatchEvent::Bookmark(_) => return Ok(None),
                        WatchEvent::Error(status) => {
                            return Err(ApiError::unavailable(format!(
                                "the watch ended ({}): watch again",
                                status.message
                            )));
                        }
                    };
                    Ok(Some(proto::WorkloadEvent {
                        r#type: kind.to_owned(),
                        workload: Some(workload_to_proto(&w, &agency, &environment)),
                    }))
                }
            });
        Ok(Box::pin(
            futures::stream::once(async move { Ok(snapshot) }).chain(changes),
        ))
    }
}

fn workload_target(agency: &str, name: &str) -> Target {
    target("Workload", name, Some(agency))
}

operation!(proto::CreateWorkloadRequest => proto::Workload, methods::CREATE,
    |r| {
        let w = r.workload.clone().unwrap_or_default();
        workload_target(&w.agency, &w.name)
    },
    |api, caller, req| api.create_workload(caller, req));
operation!(proto::GetWorkloadRequest => proto::Workload, methods::GET,
    |r| workload_target(&r.agency, &r.name),
    |api, caller, req| api.get_workload(caller, req));
operation!(proto::ListWorkloadsRequest => proto::ListWorkloadsResponse, methods::LIST,
    |r| workload_target(&r.agency, ""),
    |api, caller, req| api.list_workloads(caller, req));
operation!(proto::ScaleWorkloadRequest => proto::Workload, methods::SCALE,
    |r| workload_target(&r.agency, &r.name),
    |api, caller, req| api.scale_workload(caller, req));
operation!(proto::PauseWorkloadRequest => proto::Workload, methods::PAUSE,
    |r| workload_target(&r.agency, &r.name),
    |api, caller, req| api.pause_workload(caller, req));
operation!(proto::ResumeWorkloadRequest => proto::Workload, methods::RESUME,
    |r| workload_target(&r.agency, &r.name),
    |api, caller, req| api.resume_workload(caller, req));
operation!(proto::DeleteWorkloadRequest => proto::DeleteWorkloadResponse, methods::DELETE,
    |r| workload_target(&r.agency, &r.name),
    |api, caller, req| api.delete_workload(caller, req));
operation!(proto::WatchWorkloadRequest => WorkloadEvents, methods::WATCH,
    |r| workload_target(&r.agency, &r.name),
    |api, caller, req| api.watch_workload(caller, req));

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> proto::Workload {
        proto::Workload {
            agency: "so-tttt".into(),
            environment: "prod".into(),
            name: "cong-dich-vu".into(),
            image: "registry.gov.vn/app:1".into(),
            replicas: 2,
            cpu_request: "250m".into(),
            ports: vec![proto::WorkloadPort {
                name: "http".into(),
                port: 8080,
                protocol: String::new(),
            }],
            claims: vec![proto::ClaimBinding {
                name: "ho-so".into(),
                r#as: "file".into(),
                prefix: String::new(),
            }],
            ..Default::default()
        }
    }

    fn field_of(result: Result<Workload, ApiError>) -> String {
        match result {
            Err(ApiError::InvalidArgument { field, .. }) => field,
            other => panic!("expected invalid_argument, got {other:?}"),
        }
    }

    #[test]
    fn a_message_becomes_a_workload_and_back() {
        let w = workload_from_proto(&message(), "so-tttt-prod").unwrap();
        assert_eq!(w.namespace().as_deref(), Some("so-tttt-prod"));
        assert_eq!(w.spec.claims[0].inject_as, InjectAs::File);
        let back = workload_to_proto(&w, "so-tttt", "prod");
        assert_eq!(back.cpu_request, "250m");
        assert_eq!(back.claims[0].r#as, "file");
        assert_eq!(back.ports[0].protocol, "TCP");
    }

    #[test]
    fn mistakes_are_invalid_arguments_naming_the_field() {
        let mut m = message();
        m.image = "Not An Image".into();
        assert_eq!(field_of(workload_from_proto(&m, "ns")), "workload.image");
        let mut m = message();
        m.cpu_request = "1000".into();
        assert_eq!(field_of(workload_from_proto(&m, "ns")), "workload");
        let mut m = message();
        m.replicas = 5000;
        assert_eq!(field_of(workload_from_proto(&m, "ns")), "workload.replicas");
        let mut m = message();
        m.memory_request = "lots".into();
        assert_eq!(
            field_of(workload_from_proto(&m, "ns")),
            "workload.memory_request"
        );
        let mut m = message();
        m.claims[0].r#as = "smoke".into();
        assert_eq!(
            field_of(workload_from_proto(&m, "ns")),
            "workload.claims[0].as"
        );
    }
}
