//! Between the data-service resources and the API's messages.

use std::collections::BTreeMap;

use govbroker_crds::{
    DataServiceClaim, DataServiceClaimSpec, DataServiceClass, DataShare, DeletionPolicy,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt as _;

use super::{MAX_NAME, MAX_PARAMETER_VALUE, MAX_PARAMETERS};
use crate::error::ApiError;
use crate::proto;
use crate::validate;

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

/// A class as a message (without its admin Secret's whereabouts).
pub fn class_to_proto(class: &DataServiceClass) -> proto::DataServiceClass {
    let spec = &class.spec;
    let status = class.status.clone().unwrap_or_default();
    proto::DataServiceClass {
        name: class.name_any(),
        engine: spec.engine.as_str().to_owned(),
        host: spec.server.host.clone(),
        port: u32::try_from(spec.server.port).unwrap_or_default(),
        tls: spec.server.tls.enabled,
        plans: spec
            .plans
            .iter()
            .map(|p| {
                let limits = p.limits.clone().unwrap_or_default();
                proto::DataServicePlan {
                    name: p.name.clone(),
                    description: p.description.clone(),
                    max_connections: limits
                        .max_connections
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or_default(),
                    storage: limits.storage.map(|q| q.0).unwrap_or_default(),
                    memory: limits.memory.map(|q| q.0).unwrap_or_default(),
                    max_keys: limits.max_keys.unwrap_or_default(),
                    price_ref: p.price_ref.clone().unwrap_or_default(),
                }
            })
            .collect(),
        allowed_security_levels: spec
            .allowed_security_levels
            .iter()
            .map(|l| u32::from(*l))
            .collect(),
        allow_share_down: spec.allow_share_down,
        ready: status.ready.unwrap_or(false),
        conditions: status.conditions.iter().map(condition).collect(),
    }
}

/// A claim as a message; `agency` and `environment` are where it lives (empty when the
/// namespace is no agency's).
pub fn claim_to_proto(
    claim: &DataServiceClaim,
    agency: &str,
    environment: &str,
) -> proto::DataServiceClaim {
    let spec = &claim.spec;
    let status = claim
        .status
        .as_ref()
        .map(|s| proto::DataServiceClaimStatus {
            phase: s.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
            endpoint: s.endpoint.clone().unwrap_or_default(),
            binding_secret: s.binding_secret.clone().unwrap_or_default(),
            retained: s.retained,
            message: s.message.clone().unwrap_or_default(),
            conditions: s.conditions.iter().map(condition).collect(),
            observed_generation: s.observed_generation.unwrap_or_default(),
            password_rotation: s.password_rotation.clone().unwrap_or_default(),
            storage_bytes: s.storage_bytes.unwrap_or_default(),
        });
    proto::DataServiceClaim {
        name: claim.name_any(),
        agency: agency.to_owned(),
        environment: environment.to_owned(),
        namespace: claim.namespace().unwrap_or_default(),
        class_name: spec.class_name.clone(),
        plan: spec.plan.clone(),
        parameters: spec
            .parameters
            .iter()
            .map(|(key, value)| proto::DataServiceParameter {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        deletion_policy: format!("{:?}", spec.deletion_policy),
        status,
        created_at: time(claim.metadata.creation_timestamp.as_ref()),
    }
}

/// Whether `key` is a parameter key the CRD accepts.
fn parameter_key_ok(key: &str) -> bool {
    key.len() <= 63
        && key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A new claim in `namespace` from a message, every field checked; output-only fields
/// are ignored.
pub fn claim_from_proto(
    message: &proto::DataServiceClaim,
    namespace: &str,
) -> Result<DataServiceClaim, ApiError> {
    validate::slug("claim.name", &message.name, MAX_NAME)?;
    validate::slug("claim.class_name", &message.class_name, MAX_NAME)?;
    validate::slug("claim.plan", &message.plan, MAX_NAME)?;
    if message.parameters.len() > MAX_PARAMETERS {
        return Err(ApiError::invalid(
            "claim.parameters",
            format!(
                "has {} entries; at most {MAX_PARAMETERS}",
                message.parameters.len()
            ),
        ));
    }
    let mut parameters = BTreeMap::new();
    for (i, p) in message.parameters.iter().enumerate() {
        let field = format!("claim.parameters[{i}]");
        if !parameter_key_ok(&p.key) {
            return Err(ApiError::invalid(
                format!("{field}.key"),
                format!(
                    "{:?} is not a parameter key: start with a letter or digit and use only letters, digits, '_', '-' and '.', at most 63 characters",
                    p.key
                ),
            ));
        }
        validate::text(
            &format!("{field}.value"),
            &p.value,
            MAX_PARAMETER_VALUE,
            false,
        )?;
        if parameters.insert(p.key.clone(), p.value.clone()).is_some() {
            return Err(ApiError::invalid(
                format!("{field}.key"),
                format!("{:?} is given twice", p.key),
            ));
        }
    }
    let deletion_policy = match message.deletion_policy.as_str() {
        "" | "Retain" => DeletionPolicy::Retain,
        "Delete" => DeletionPolicy::Delete,
        other => {
            return Err(ApiError::invalid(
                "claim.deletion_policy",
                format!(
                    "{other:?} is not a deletion policy: use Retain (keep the data) or Delete (drop it)"
                ),
            ));
        }
    };
    let mut claim = DataServiceClaim::new(
        &message.name,
        DataServiceClaimSpec {
            class_name: message.class_name.clone(),
            plan: message.plan.clone(),
            parameters,
            deletion_policy,
        },
    );
    claim.metadata.namespace = Some(namespace.to_owned());
    Ok(claim)
}

/// The keys of a binding Secret as a message. The values are credentials: they go to the
/// caller and nowhere else.
pub fn binding_to_proto(
    claim: &str,
    namespace: &str,
    secret: &Secret,
) -> proto::DataServiceBinding {
    let text = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key).cloned())
            })
            .unwrap_or_default()
    };
    proto::DataServiceBinding {
        claim: claim.to_owned(),
        namespace: namespace.to_owned(),
        secret_name: secret.name_any(),
        host: text("host"),
        port: text("port").parse().unwrap_or_default(),
        username: text("username"),
        password: text("password"),
        database: text("database"),
        prefix: text("prefix"),
        uri: text("uri"),
        sslmode: text("sslmode"),
        ca_crt: text("ca.crt"),
    }
}

/// A share as a message.
pub fn share_to_proto(share: &DataShare) -> proto::DataShare {
    let spec = &share.spec;
    let approval = spec.approval.clone();
    let status = share.status.as_ref().map(|s| proto::DataShareStatus {
        phase: s.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
        granted_by: s.granted_by.clone().unwrap_or_default(),
        granted_at: time(s.granted_at.as_ref()),
        revoked_by: s.revoked_by.clone().unwrap_or_default(),
        revoked_at: time(s.revoked_at.as_ref()),
        message: s.message.clone().unwrap_or_default(),
        conditions: s.conditions.iter().map(condition).collect(),
        binding_secret: s.binding_secret.clone().unwrap_or_default(),
    });
    proto::DataShare {
        name: share.name_any(),
        owner_agency: spec.owner.agency.clone(),
        owner_namespace: spec.owner.namespace.clone(),
        claim: spec.owner.claim.clone(),
        consumer_agency: spec.consumer.agency.clone(),
        access: format!("{:?}", spec.access),
        expires_at: spec.expires_at.0.to_string(),
        purpose: spec.purpose.clone().unwrap_or_default(),
        approved: spec.approved,
        approved_by: approval
            .as_ref()
            .and_then(|a| a.approved_by.clone())
            .unwrap_or_default(),
        approved_at: time(approval.as_ref().and_then(|a| a.approved_at.as_ref())),
        revoked: spec.revoked,
        status,
        created_at: time(share.metadata.creation_timestamp.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> proto::DataServiceClaim {
        proto::DataServiceClaim {
            name: "csdl-ho-tich".into(),
            agency: "so-tu-phap".into(),
            environment: "prod".into(),
            class_name: "postgres-dung-chung".into(),
            plan: "co-ban".into(),
            parameters: vec![proto::DataServiceParameter {
                key: "extensions".into(),
                value: "postgis".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_claim_round_trips_with_retain_by_default() {
        let claim = claim_from_proto(&message(), "so-tu-phap-prod").unwrap();
        assert_eq!(claim.spec.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(claim.namespace().as_deref(), Some("so-tu-phap-prod"));
        let back = claim_to_proto(&claim, "so-tu-phap", "prod");
        assert_eq!(back.parameters, message().parameters);
        assert_eq!(back.deletion_policy, "Retain");
        assert_eq!(back.namespace, "so-tu-phap-prod");
    }

    type Change = Box<dyn Fn(&mut proto::DataServiceClaim)>;

    #[test]
    fn bad_claims_name_the_field() {
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|m| m.name = "Tên".into()), "claim.name"),
            (
                Box::new(|m| m.class_name = String::new()),
                "claim.class_name",
            ),
            (Box::new(|m| m.plan = "a b".into()), "claim.plan"),
            (
                Box::new(|m| m.parameters[0].key = "; DROP".into()),
                "claim.parameters[0].key",
            ),
            (
                Box::new(|m| m.parameters[0].value = "x\u{0}".into()),
                "claim.parameters[0].value",
            ),
            (
                Box::new(|m| m.deletion_policy = "Destroy".into()),
                "claim.deletion_policy",
            ),
            (
                Box::new(|m| {
                    m.parameters = (0..17)
                        .map(|i| proto::DataServiceParameter {
                            key: format!("k{i}"),
                            value: String::new(),
                        })
                        .collect()
                }),
                "claim.parameters",
            ),
        ];
        for (change, want) in cases {
            let mut m = message();
            change(&mut m);
            let err = claim_from_proto(&m, "ns").unwrap_err();
            assert!(
                matches!(err, ApiError::InvalidArgument { ref field, .. } if field == want),
                "{want}: {err}"
            );
        }
    }

    #[test]
    fn a_binding_reads_every_key() {
        use k8s_openapi::ByteString;
        let mut secret = Secret::default();
        secret.metadata.name = Some("c-binding".into());
        secret.data = Some(
            [
                ("host", "127.0.0.1"),
                ("port", "15432"),
                ("username", "gb_u"),
                ("password", "pw"),
                ("database", "gb_d"),
                ("uri", "postgresql://gb_u:pw@127.0.0.1:15432/gb_d"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect(),
        );
        let b = binding_to_proto("c", "a-prod", &secret);
        assert_eq!(
            (b.port, b.database.as_str(), b.prefix.as_str()),
            (15432, "gb_d", "")
        );
        assert_eq!(b.secret_name, "c-binding");
    }

    #[test]
    fn a_binding_carries_the_tls_settings_of_its_secret() {
        let data = [
            ("host", "pg.gov.vn"),
            ("port", "5432"),
            ("sslmode", "verify-full"),
            (
                "ca.crt",
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), k8s_openapi::ByteString(v.as_bytes().to_vec())))
        .collect();
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("csdl-binding".into()),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        let binding = binding_to_proto("csdl", "ns", &secret);
        assert_eq!(binding.port, 5432);
        assert_eq!(binding.sslmode, "verify-full");
        assert!(binding.ca_crt.starts_with("-----BEGIN CERTIFICATE-----"));
        let plain = binding_to_proto("csdl", "ns", &Secret::default());
        assert!(plain.sslmode.is_empty() && plain.ca_crt.is_empty());
    }
}
