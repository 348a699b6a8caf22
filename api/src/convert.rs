//! Between the custom resources and the API's messages.

use govbroker_crds::{
    Agency, AgencyLevel, AgencySpec, Environment, Owners, QuotaRequest, QuotaResource,
    ResourceAmounts, ServiceAccountRef,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt as _;

use crate::error::ApiError;
use crate::proto;
use crate::validate;

/// The text of one resource in a message.
pub fn amount_field(amounts: &proto::ResourceAmounts, resource: QuotaResource) -> &str {
    match resource {
        QuotaResource::Cpu => &amounts.cpu,
        QuotaResource::Memory => &amounts.memory,
        QuotaResource::EphemeralStorage => &amounts.ephemeral_storage,
        QuotaResource::Storage => &amounts.storage,
        QuotaResource::Pods => &amounts.pods,
        QuotaResource::Services => &amounts.services,
        QuotaResource::PersistentVolumeClaims => &amounts.persistent_volume_claims,
    }
}

/// Resource amounts as a message.
pub fn amounts_to_proto(amounts: &ResourceAmounts) -> proto::ResourceAmounts {
    let text = |r: QuotaResource| amounts.get(r).map(|q| q.0.clone()).unwrap_or_default();
    proto::ResourceAmounts {
        cpu: text(QuotaResource::Cpu),
        memory: text(QuotaResource::Memory),
        ephemeral_storage: text(QuotaResource::EphemeralStorage),
        storage: text(QuotaResource::Storage),
        pods: text(QuotaResource::Pods),
        services: text(QuotaResource::Services),
        persistent_volume_claims: text(QuotaResource::PersistentVolumeClaims),
    }
}

/// A message's amounts as the CRD's (validate first).
pub fn amounts_from_proto(amounts: Option<&proto::ResourceAmounts>) -> ResourceAmounts {
    let mut out = ResourceAmounts::default();
    if let Some(amounts) = amounts {
        for resource in QuotaResource::ALL {
            let text = amount_field(amounts, resource);
            if !text.is_empty() {
                out.set(resource, Some(Quantity(text.to_owned())));
            }
        }
    }
    out
}

fn principals_to_proto(owners: &Owners) -> proto::Principals {
    proto::Principals {
        users: owners.users.clone(),
        groups: owners.groups.clone(),
        service_accounts: owners
            .service_accounts
            .iter()
            .map(|sa| format!("{}/{}", sa.namespace, sa.name))
            .collect(),
    }
}

fn principals_from_proto(
    field: &str,
    value: Option<&proto::Principals>,
) -> Result<Owners, ApiError> {
    let Some(value) = value else {
        return Ok(Owners::default());
    };
    validate::principals(field, value)?;
    let mut service_accounts = Vec::new();
    for (i, sa) in value.service_accounts.iter().enumerate() {
        let (namespace, name) =
            validate::service_account(&format!("{field}.service_accounts[{i}]"), sa)?;
        service_accounts.push(ServiceAccountRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
    }
    Ok(Owners {
        users: value.users.clone(),
        groups: value.groups.clone(),
        service_accounts,
    })
}

fn time(t: Option<&Time>) -> String {
    t.map(|t| t.0.to_string()).unwrap_or_default()
}

fn condition(c: &Condition) -> proto::Condition {
    proto::Condition {
        r#type: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: c.last_transition_time.0.to_string(),
    }
}

/// An Agency as a message.
pub fn agency_to_proto(agency: &Agency) -> proto::Agency {
    let spec = &agency.spec;
    let status = agency.status.as_ref().map(|s| {
        let quota = s.quota.clone().unwrap_or_default();
        proto::AgencyStatus {
            ready: s
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            namespaces: s.namespaces.clone(),
            hard: Some(amounts_to_proto(&quota.hard)),
            used: Some(amounts_to_proto(&quota.used)),
            granted_to_children: Some(amounts_to_proto(&quota.granted_to_children)),
            children: s.children,
            conditions: s.conditions.iter().map(condition).collect(),
            observed_generation: s.observed_generation.unwrap_or_default(),
        }
    });
    proto::Agency {
        name: agency.name_any(),
        display_name: spec.display_name.clone(),
        level: spec.level.as_str().to_owned(),
        parent: spec.parent.clone().unwrap_or_default(),
        security_level: u32::from(spec.security_level),
        owners: Some(principals_to_proto(&spec.owners)),
        viewers: Some(principals_to_proto(&spec.viewers)),
        environments: spec
            .environments
            .iter()
            .map(|e| proto::Environment {
                name: e.name.clone(),
                quota: Some(amounts_to_proto(&e.quota)),
            })
            .collect(),
        quota: Some(amounts_to_proto(&spec.quota)),
        status,
        resource_version: agency.resource_version().unwrap_or_default(),
        created_at: time(agency.metadata.creation_timestamp.as_ref()),
    }
}

/// A level's name, checked.
pub fn level(field: &str, text: &str) -> Result<AgencyLevel, ApiError> {
    match text {
        "Central" => Ok(AgencyLevel::Central),
        "Province" => Ok(AgencyLevel::Province),
        "District" => Ok(AgencyLevel::District),
        "Commune" => Ok(AgencyLevel::Commune),
        "" => Err(ApiError::invalid(
            field,
            "is required: Central, Province, District or Commune",
        )),
        other => Err(ApiError::invalid(
            field,
            format!("{other:?} is not a level: use Central, Province, District or Commune"),
        )),
    }
}

/// Security level 1-5.
pub fn security_level(field: &str, value: u32) -> Result<u8, ApiError> {
    match u8::try_from(value) {
        Ok(level @ 1..=5) => Ok(level),
        _ => Err(ApiError::invalid(
            field,
            format!("{value} is not a security level: use 1 (public) to 5 (most sensitive)"),
        )),
    }
}

/// The display name, checked.
pub fn display_name(field: &str, text: &str) -> Result<String, ApiError> {
    validate::text(field, text, validate::MAX_DISPLAY_NAME, true)?;
    Ok(text.trim().to_owned())
}

/// Environments, checked.
pub fn environments(
    field: &str,
    list: &[proto::Environment],
) -> Result<Vec<Environment>, ApiError> {
    if list.len() > govbroker_domain::tree::MAX_ENVIRONMENTS {
        return Err(ApiError::invalid(
            field,
            format!(
                "lists {} environments; at most {}",
                list.len(),
                govbroker_domain::tree::MAX_ENVIRONMENTS
            ),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            validate::slug(&format!("{field}[{i}].name"), &e.name, 20)?;
            validate::amounts(&format!("{field}[{i}].quota"), e.quota.as_ref(), false)?;
            Ok(Environment {
                name: e.name.clone(),
                quota: amounts_from_proto(e.quota.as_ref()),
            })
        })
        .collect()
}

/// Owners or viewers, checked.
pub fn principals(field: &str, value: Option<&proto::Principals>) -> Result<Owners, ApiError> {
    principals_from_proto(field, value)
}

/// A new Agency from a message, every field checked; output-only fields are ignored.
pub fn agency_from_proto(message: &proto::Agency) -> Result<Agency, ApiError> {
    validate::agency_name("agency.name", &message.name)?;
    let level = level("agency.level", &message.level)?;
    let parent = if message.parent.is_empty() {
        None
    } else {
        validate::agency_name("agency.parent", &message.parent)?;
        Some(message.parent.clone())
    };
    validate::amounts("agency.quota", message.quota.as_ref(), false)?;
    let spec = AgencySpec {
        budget: None,
        price_list: None,
        display_name: display_name("agency.display_name", &message.display_name)?,
        level,
        parent,
        security_level: security_level("agency.security_level", message.security_level)?,
        owners: principals("agency.owners", message.owners.as_ref())?,
        viewers: principals("agency.viewers", message.viewers.as_ref())?,
        environments: environments("agency.environments", &message.environments)?,
        quota: amounts_from_proto(message.quota.as_ref()),
    };
    Ok(Agency::new(&message.name, spec))
}

/// A QuotaRequest as a message.
pub fn quota_request_to_proto(qr: &QuotaRequest) -> proto::QuotaRequest {
    let status = qr.status.clone().unwrap_or_default();
    let decision = qr.spec.decision.as_ref().map(|d| proto::QuotaDecision {
        outcome: format!("{:?}", d.outcome),
        reason: d.reason.clone(),
        decided_by: d.decided_by.clone().unwrap_or_default(),
        decided_at: time(d.decided_at.as_ref()),
    });
    proto::QuotaRequest {
        name: qr.name_any(),
        agency: qr.spec.agency.clone(),
        quota: Some(amounts_to_proto(&qr.spec.quota)),
        justification: qr.spec.justification.clone(),
        phase: status
            .phase
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "Pending".to_owned()),
        decision,
        message: status.message.unwrap_or_default(),
        created_at: time(qr.metadata.creation_timestamp.as_ref()),
    }
}
