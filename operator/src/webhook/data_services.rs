//! Admission of data-service claims and shares.
//!
//! A DataServiceClaim must live in an agency's namespace, name an existing class and
//! plan that serve the agency's security level, and fit the agency's quota of instances
//! of that class. A DataShare must name existing agencies and an existing claim of the
//! owner, must not carry data down the security levels unless the class allows it, is
//! approved only by an owner of the owner agency (the platform stamps who and when) and
//! revoked only by an owner of either agency (stamped in annotations).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use govbroker_crds::{
    Agency, DataServiceClaim, DataServiceClass, DataServiceEngine, DataShare, ShareApproval,
};
use govbroker_domain::data_services::{postgres_parameters, redis_parameters};
use govbroker_domain::data_shares::{claim_fits_quota, share_down_refusal};
use govbroker_domain::isolation::{AGENCY_LABEL, namespace_name};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::{Api, ResourceExt as _};
use serde_json::json;

use super::agency::lookup;
use super::{Refusal, WebhookState, is_owner, is_platform_admin, refuse};

/// Annotation: who revoked a DataShare, stamped by the webhook.
pub const REVOKED_BY_ANNOTATION: &str = "govbroker.io/revoked-by";
/// Annotation: when a DataShare was revoked (RFC 3339), stamped by the webhook.
pub const REVOKED_AT_ANNOTATION: &str = "govbroker.io/revoked-at";

/// A refusal: why and what to say.
type Refused = (Refusal, String);

/// Admits or refuses the creation of a DataServiceClaim, and a change of its parameters.
pub fn admit_claim(
    request: AdmissionRequest<DataServiceClaim>,
    state: WebhookState,
) -> BoxFuture<'static, AdmissionResponse> {
    Box::pin(async move {
        let response = AdmissionResponse::from(&request);
        let Some(claim) = &request.object else {
            return response;
        };
        let checked = match request.operation {
            Operation::Create => {
                let namespace = request.namespace.clone().unwrap_or_default();
                check_claim(&state, &namespace, claim).await
            }
            // Only the parameters of a claim can change (CEL holds class and plan); the
            // finalizer's updates, with the class perhaps gone, pass untouched.
            Operation::Update
                if request
                    .old_object
                    .as_ref()
                    .is_some_and(|old| old.spec.parameters != claim.spec.parameters) =>
            {
                match class(&state, &claim.spec.class_name).await {
                    Ok(class) => check_parameters(&class, claim),
                    Err(refused) => Err(refused),
                }
            }
            _ => Ok(()),
        };
        match checked {
            Ok(()) => response,
            Err((why, message)) => refuse(response, why, message),
        }
    })
}

/// The agency that owns `namespace`, from the namespace's label.
async fn agency_of_namespace(
    state: &WebhookState,
    namespace: &str,
) -> Result<Option<Arc<Agency>>, Refused> {
    let ns = Api::<Namespace>::all(state.client.clone())
        .get_opt(namespace)
        .await
        .map_err(|e| unavailable(format!("cannot read namespace {namespace}: {e}")))?;
    let Some(agency) = ns.as_ref().and_then(|n| n.labels().get(AGENCY_LABEL)) else {
        return Ok(None);
    };
    Ok(lookup(state, agency).await)
}

fn unavailable(message: String) -> Refused {
    (Refusal::Unavailable, message)
}

async fn class(state: &WebhookState, name: &str) -> Result<DataServiceClass, Refused> {
    Api::<DataServiceClass>::all(state.client.clone())
        .get_opt(name)
        .await
        .map_err(|e| unavailable(format!("cannot read DataServiceClass \"{name}\": {e}")))?
        .ok_or_else(|| {
            (
                Refusal::Invalid,
                format!(
                    "there is no DataServiceClass \"{name}\": spec.className must name one (kubectl get dataserviceclasses)"
                ),
            )
        })
}

async fn check_claim(
    state: &WebhookState,
    namespace: &str,
    claim: &DataServiceClaim,
) -> Result<(), Refused> {
    let Some(agency) = agency_of_namespace(state, namespace).await? else {
        return Err((
            Refusal::Invalid,
            format!(
                "namespace {namespace} belongs to no agency: create DataServiceClaims in one of an agency's namespaces, <agency>-<environment> (e.g. so-y-te-ha-noi-prod)"
            ),
        ));
    };
    let agency_name = agency.name_any();
    let class_name = &claim.spec.class_name;
    let class = class(state, class_name).await?;
    if !class.spec.plans.iter().any(|p| p.name == claim.spec.plan) {
        let plans: Vec<&str> = class.spec.plans.iter().map(|p| p.name.as_str()).collect();
        return Err((
            Refusal::Invalid,
            format!(
                "DataServiceClass \"{class_name}\" has no plan \"{}\": spec.plan must be one of {}",
                claim.spec.plan,
                plans.join(", ")
            ),
        ));
    }
    check_parameters(&class, claim)?;
    let level = agency.spec.security_level;
    if !class.spec.allowed_security_levels.contains(&level) {
        return Err((
            Refusal::Invalid,
            format!(
                "agency \"{agency_name}\" is at security level {level}, but DataServiceClass \"{class_name}\" serves only levels {:?}: choose a class for level {level}",
                class.spec.allowed_security_levels
            ),
        ));
    }
    // One admission at a time per agency, counting the claims admitted moments ago that
    // a list does not show yet: two claims created at once cannot both take the last one.
    let admitted = state.admitted_claims.of(&agency_name);
    let mut admitted = admitted.lock().await;
    let now = Instant::now();
    admitted.retain(|(_, _, at)| now.duration_since(*at) < ADMITTED_TTL);
    let mut used = claims_of_class(state, &agency, class_name).await?;
    used.extend(
        admitted
            .iter()
            .filter(|(class, _, _)| class == class_name)
            .map(|(_, claim, _)| claim.clone()),
    );
    let allowed = agency.spec.quota.data_services.get(class_name).copied();
    claim_fits_quota(&agency_name, class_name, allowed, used.len())
        .map_err(|e| (Refusal::Conflict, e.to_string()))?;
    admitted.push((
        class_name.clone(),
        format!("{namespace}/{}", claim.name_any()),
        now,
    ));
    Ok(())
}

/// How long an admitted claim counts against the quota before a list must show it: far
/// longer than the moment between admission and storage.
const ADMITTED_TTL: Duration = Duration::from_secs(30);

/// Claims admitted per agency in the last [`ADMITTED_TTL`], each agency's behind a lock
/// held while its quota is checked. The operator serves the webhook from one process, so
/// this closes the gap between counting and storing; a claim refused after this webhook
/// (by another) holds a place for at most the TTL.
#[derive(Clone, Default)]
pub struct AdmittedClaims(Arc<std::sync::Mutex<HashMap<String, AgencyClaims>>>);

/// One agency's recently admitted claims.
type AgencyClaims = Arc<tokio::sync::Mutex<Vec<AdmittedClaim>>>;

/// One admitted claim: its class, `namespace/name`, and when.
type AdmittedClaim = (String, String, Instant);

impl AdmittedClaims {
    /// The admitted claims of `agency`, to lock while checking its quota.
    fn of(&self, agency: &str) -> AgencyClaims {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(agency.to_owned()).or_default().clone()
    }
}

/// Whether the broker can honour the claim's parameters on its class's engine.
fn check_parameters(class: &DataServiceClass, claim: &DataServiceClaim) -> Result<(), Refused> {
    let parameters = &claim.spec.parameters;
    match class.spec.engine {
        DataServiceEngine::Postgres => postgres_parameters(parameters).map(|_| ()),
        DataServiceEngine::Redis => redis_parameters(parameters),
    }
    .map_err(|e| (Refusal::Invalid, e.to_string()))
}

/// The claims of `class` the agency's namespaces hold now, as `namespace/name`
/// (including ones being deleted, whose data may still be on the server).
async fn claims_of_class(
    state: &WebhookState,
    agency: &Agency,
    class: &str,
) -> Result<BTreeSet<String>, Refused> {
    let mut used = BTreeSet::new();
    for env in &agency.spec.environments {
        let namespace = namespace_name(&agency.name_any(), &env.name);
        let claims = Api::<DataServiceClaim>::namespaced(state.client.clone(), &namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| unavailable(format!("cannot count the claims in {namespace}: {e}")))?;
        used.extend(
            claims
                .items
                .iter()
                .filter(|c| c.spec.class_name == class)
                .map(|c| format!("{namespace}/{}", c.name_any())),
        );
    }
    Ok(used)
}

/// Admits, refuses or stamps a DataShare create or update.
pub fn admit_share(
    request: AdmissionRequest<DataShare>,
    state: WebhookState,
) -> BoxFuture<'static, AdmissionResponse> {
    Box::pin(async move {
        let response = AdmissionResponse::from(&request);
        let Some(share) = &request.object else {
            return response;
        };
        match check_share(&request, &state, share).await {
            Ok(patch) if patch.is_empty() => response,
            Ok(patch) => super::patched(response, json!(patch), "stamping the share"),
            Err((why, message)) => refuse(response, why, message),
        }
    })
}

/// The checks of a share change, and the JSON patch that stamps it.
async fn check_share(
    request: &AdmissionRequest<DataShare>,
    state: &WebhookState,
    share: &DataShare,
) -> Result<Vec<serde_json::Value>, Refused> {
    let user = request.user_info.username.clone().unwrap_or_default();
    let groups = request.user_info.groups.clone().unwrap_or_default();
    let admin = is_platform_admin(&groups, &state.admin_groups);
    let spec = &share.spec;
    let old = request.old_object.as_ref().map(|o| &o.spec);

    if request.operation == Operation::Create {
        let owner = existing_agency(state, &spec.owner.agency, "spec.owner.agency").await?;
        let consumer =
            existing_agency(state, &spec.consumer.agency, "spec.consumer.agency").await?;
        let namespace = &spec.owner.namespace;
        let in_owner = agency_of_namespace(state, namespace)
            .await?
            .is_some_and(|a| a.name_any() == spec.owner.agency);
        if !in_owner {
            return Err((
                Refusal::Invalid,
                format!(
                    "namespace {namespace} is not a namespace of agency \"{}\": spec.owner.namespace must be one of its environments' namespaces",
                    spec.owner.agency
                ),
            ));
        }
        let claim = Api::<DataServiceClaim>::namespaced(state.client.clone(), namespace)
            .get_opt(&spec.owner.claim)
            .await
            .map_err(|e| unavailable(format!("cannot read the claim: {e}")))?
            .ok_or_else(|| {
                (
                    Refusal::Invalid,
                    format!(
                        "there is no DataServiceClaim \"{}\" in namespace {namespace}: spec.owner.claim must name one",
                        spec.owner.claim
                    ),
                )
            })?;
        let class = class(state, &claim.spec.class_name).await?;
        if let Some(refusal) = share_down_refusal(
            &spec.owner.agency,
            owner.spec.security_level,
            &spec.consumer.agency,
            consumer.spec.security_level,
            &class.name_any(),
            class.spec.allow_share_down,
        ) {
            return Err((Refusal::Invalid, refusal));
        }
    }

    let mut patch = Vec::new();
    let was_approved = old.is_some_and(|o| o.approved);
    if spec.approved && !was_approved {
        let owner = lookup(state, &spec.owner.agency).await;
        if !admin && !owner.is_some_and(|o| is_owner(&o, &user, &groups)) {
            return Err((
                Refusal::Forbidden,
                format!(
                    "only owners of agency \"{}\" (whose data is shared) or platform admins may approve this share; {user} is neither",
                    spec.owner.agency
                ),
            ));
        }
        let approval = ShareApproval {
            approved_by: Some(user.clone()),
            approved_at: Some(Time(k8s_openapi::jiff::Timestamp::now())),
        };
        patch.push(json!({"op": "add", "path": "/spec/approval", "value": approval}));
    } else {
        // Only the platform writes the approval: keep what it stamped (or nothing).
        let recorded = old.and_then(|o| o.approval.clone());
        if spec.approval != recorded {
            patch.push(match recorded {
                Some(value) => json!({"op": "add", "path": "/spec/approval", "value": value}),
                None => json!({"op": "remove", "path": "/spec/approval"}),
            });
        }
    }

    let was_revoked = old.is_some_and(|o| o.revoked);
    let annotations = share.annotations();
    let old_annotations = request.old_object.as_ref().map(|o| o.annotations());
    let recorded = |key: &str| old_annotations.and_then(|a| a.get(key)).cloned();
    if spec.revoked && !was_revoked {
        let mut may = admin;
        for agency in [&spec.owner.agency, &spec.consumer.agency] {
            may = may
                || lookup(state, agency)
                    .await
                    .is_some_and(|a| is_owner(&a, &user, &groups));
        }
        if !may {
            return Err((
                Refusal::Forbidden,
                format!(
                    "only owners of agency \"{}\" or \"{}\", or platform admins, may revoke this share; {user} is neither",
                    spec.owner.agency, spec.consumer.agency
                ),
            ));
        }
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        stamp(&mut patch, annotations, REVOKED_BY_ANNOTATION, Some(user));
        let at = serde_json::to_value(&now)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned));
        stamp(&mut patch, annotations, REVOKED_AT_ANNOTATION, at);
    } else {
        for key in [REVOKED_BY_ANNOTATION, REVOKED_AT_ANNOTATION] {
            if annotations.get(key) != recorded(key).as_ref() {
                stamp(&mut patch, annotations, key, recorded(key));
            }
        }
    }
    Ok(patch)
}

/// Appends the JSON patch that sets annotation `key` to `value` (or removes it).
fn stamp(
    patch: &mut Vec<serde_json::Value>,
    annotations: &std::collections::BTreeMap<String, String>,
    key: &str,
    value: Option<String>,
) {
    let path = format!(
        "/metadata/annotations/{}",
        key.replace('~', "~0").replace('/', "~1")
    );
    match value {
        Some(value) => {
            let annotations_exist = !annotations.is_empty()
                || patch.iter().any(|p| p["path"] == "/metadata/annotations");
            if !annotations_exist {
                patch.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
            }
            patch.push(json!({"op": "add", "path": path, "value": value}));
        }
        None if annotations.contains_key(key) => {
            patch.push(json!({"op": "remove", "path": path}));
        }
        None => {}
    }
}

async fn existing_agency(
    state: &WebhookState,
    name: &str,
    field: &str,
) -> Result<Arc<Agency>, Refused> {
    lookup(state, name).await.ok_or_else(|| {
        (
            Refusal::Invalid,
            format!("agency \"{name}\" does not exist: {field} must name an existing Agency"),
        )
    })
}
