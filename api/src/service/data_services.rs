//! Data services: the catalog of classes, claims in agencies' namespaces, their
//! credentials, and shares between agencies.
//!
//! Reads come from watch-fed caches after a SubjectAccessReview of the caller (claims per
//! namespace, shares per agency through the virtual subresource `agencies/datashares`);
//! every change is made through an impersonating client, so RBAC and the admission
//! webhook judge the caller. Credentials are never cached: a binding is read from its
//! Secret *as the caller*, so only callers who may read Secrets in the claim's namespace
//! receive it, and it never reaches a log.

mod convert;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use govbroker_crds::data_service_claim::ROTATE_PASSWORD_ANNOTATION;
use govbroker_crds::{
    DataServiceClaim, DataServiceClass, DataServiceEngine, DataShare, DataShareSpec, ShareAccess,
    ShareConsumer, ShareOwner,
};
use govbroker_domain::isolation::{namespace_name, virtual_subresource};
use govbroker_ledger::Target;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ObjectMeta, Patch};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api as KubeApi, Client, ResourceExt as _};
use prost::Message as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::operations::{Operation, operation};
use super::{Api, Method, Page, create_params, first_page, patch_params, target};
use crate::auth::{Caller, Permission};
use crate::error::ApiError;
use crate::proto;
use crate::validate;

pub use convert::{claim_to_proto, class_to_proto, share_to_proto};

/// The virtual subresource that lets a caller read the shares an agency owns or consumes
/// (`get agencies/datashares <agency>`).
pub const SHARES_SUBRESOURCE: &str = virtual_subresource::DATA_SHARES;
/// The label the broker puts on a binding Secret: the claim's name.
pub const CLAIM_LABEL: &str = "govbroker.io/data-service-claim";
/// The label the broker puts on a share's Secret in the consumer's namespaces: the
/// share's name.
pub const SHARE_LABEL: &str = "govbroker.io/data-share";
/// Longest environment name (the Agency CRD's rule).
pub const MAX_ENVIRONMENT: usize = 20;
/// Longest claim, class, plan or share name the API accepts (a DNS label).
pub const MAX_NAME: usize = 63;
/// Longest generated share name (a DNS subdomain).
const MAX_SHARE_NAME: usize = 253;
/// Most parameters of a claim (the CRD's rule).
pub const MAX_PARAMETERS: usize = 16;
/// Longest parameter value (the CRD's rule).
pub const MAX_PARAMETER_VALUE: usize = 1024;
/// Furthest a share may expire from now: beyond it an expiry is a typo.
pub const MAX_SHARE_YEARS: i64 = 10;

/// The methods of the DataServices service.
pub mod methods {
    use super::Method;
    /// DataServices/ListDataServiceClasses.
    pub const LIST_CLASSES: Method =
        Method::read("govbroker.v1.DataServices/ListDataServiceClasses");
    /// DataServices/CreateDataServiceClaim.
    pub const CREATE_CLAIM: Method =
        Method::write("govbroker.v1.DataServices/CreateDataServiceClaim");
    /// DataServices/GetDataServiceClaim.
    pub const GET_CLAIM: Method = Method::read("govbroker.v1.DataServices/GetDataServiceClaim");
    /// DataServices/ListDataServiceClaims.
    pub const LIST_CLAIMS: Method = Method::read("govbroker.v1.DataServices/ListDataServiceClaims");
    /// DataServices/DeleteDataServiceClaim.
    pub const DELETE_CLAIM: Method =
        Method::write("govbroker.v1.DataServices/DeleteDataServiceClaim");
    /// DataServices/GetDataServiceBinding: it changes nothing, but disclosing credentials
    /// is recorded like a change (who read which database's password, and when).
    pub const GET_BINDING: Method =
        Method::write("govbroker.v1.DataServices/GetDataServiceBinding");
    /// DataServices/RotateDataServicePassword.
    pub const ROTATE_PASSWORD: Method =
        Method::write("govbroker.v1.DataServices/RotateDataServicePassword");
    /// DataServices/CreateDataShare.
    pub const CREATE_SHARE: Method = Method::write("govbroker.v1.DataServices/CreateDataShare");
    /// DataServices/ListDataShares.
    pub const LIST_SHARES: Method = Method::read("govbroker.v1.DataServices/ListDataShares");
    /// DataServices/ApproveDataShare.
    pub const APPROVE_SHARE: Method = Method::write("govbroker.v1.DataServices/ApproveDataShare");
    /// DataServices/RevokeDataShare.
    pub const REVOKE_SHARE: Method = Method::write("govbroker.v1.DataServices/RevokeDataShare");
    /// DataServices/GetDataShareBinding: like GetDataServiceBinding, recorded like a
    /// change.
    pub const GET_SHARE_BINDING: Method =
        Method::write("govbroker.v1.DataServices/GetDataShareBinding");
}

/// The caches of the data-service resources, each kept current by a watch.
pub struct DataServiceStores {
    /// Every DataServiceClass.
    pub classes: Store<DataServiceClass>,
    /// Every DataServiceClaim, in every namespace.
    pub claims: Store<DataServiceClaim>,
    /// Every DataShare.
    pub shares: Store<DataShare>,
}

impl DataServiceStores {
    /// Starts the watches with the API's own client; they stop on `shutdown`.
    pub fn watch(client: &Client, shutdown: &CancellationToken) -> DataServiceStores {
        DataServiceStores {
            classes: crate::server::watched(client, "dataserviceclasses", shutdown),
            claims: crate::server::watched(client, "dataserviceclaims", shutdown),
            shares: crate::server::watched(client, "datashares", shutdown),
        }
    }

    /// Whether every cache has been filled once (call once: a store wakes one waiter).
    pub async fn wait_until_ready(&self) -> bool {
        let (a, b, c) = tokio::join!(
            self.classes.wait_until_ready(),
            self.claims.wait_until_ready(),
            self.shares.wait_until_ready()
        );
        a.is_ok() && b.is_ok() && c.is_ok()
    }
}

fn claim_what(namespace: &str, name: &str) -> String {
    format!("data-service claim \"{name}\" in namespace \"{namespace}\"")
}

fn share_what(name: &str) -> String {
    format!("data share \"{name}\"")
}

/// That `what` (a claim, a share) does not exist.
fn not_found(what: &str) -> ApiError {
    ApiError::NotFound(format!("{what} does not exist"))
}

/// The namespace of an agency's environment, both checked.
fn namespace_of(agency: &str, environment: &str) -> Result<String, ApiError> {
    validate::agency_name("agency", agency)?;
    validate::slug("environment", environment, MAX_ENVIRONMENT)?;
    Ok(namespace_name(agency, environment))
}

/// A claim's address (agency, environment, name), checked; returns its namespace.
fn claim_address(agency: &str, environment: &str, name: &str) -> Result<String, ApiError> {
    let namespace = namespace_of(agency, environment)?;
    validate::slug("name", name, MAX_NAME)?;
    Ok(namespace)
}

fn claim_read_permission(verb: &'static str, namespace: &str, name: Option<&str>) -> Permission {
    let permission = match name {
        Some(name) => Permission::on(verb, "dataserviceclaims", name),
        None => Permission::all(verb, "dataserviceclaims"),
    };
    permission.in_namespace(namespace)
}

fn share_read_permission(agency: &str) -> Permission {
    Permission::on("get", "agencies", agency).with_subresource(SHARES_SUBRESOURCE)
}

/// Sort key of a share in lists: newest first, then by name.
fn share_sort_key(share: &DataShare) -> String {
    let created = share
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or_default();
    format!("{:020}/{}", i64::MAX - created, share.name_any())
}

/// A phase as the API reports it: Pending until the broker says.
fn phase_name(phase: Option<impl std::fmt::Debug>) -> String {
    phase
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "Pending".to_owned())
}

/// A status message as the tail of an answer: ` (message)`, or nothing.
fn detail(message: Option<String>) -> String {
    message.map(|m| format!(" ({m})")).unwrap_or_default()
}

/// The phase a share is in, as the API reports it.
fn share_phase(share: &DataShare) -> String {
    phase_name(share.status.as_ref().and_then(|s| s.phase))
}

impl Api {
    /// The agency and environment a namespace belongs to, from the agency cache (the
    /// namespace is `<agency>-<environment>`; names with dashes are told apart by which
    /// agency has that environment).
    fn agency_of_namespace(&self, namespace: &str) -> Option<(String, String)> {
        namespace
            .match_indices('-')
            .map(|(i, _)| (&namespace[..i], &namespace[i + 1..]))
            .find_map(|(agency, environment)| {
                let found = self.agencies.get(&ObjectRef::new(agency))?;
                found
                    .spec
                    .environments
                    .iter()
                    .any(|e| e.name == environment)
                    .then(|| (agency.to_owned(), environment.to_owned()))
            })
    }

    /// The Secret `name` in `namespace`, read as the caller. A refusal names who may
    /// read it (`readers`); a missing Secret is explained by `missing`; other errors speak
    /// of `what`.
    async fn secret_as(
        &self,
        caller: &Caller,
        namespace: &str,
        name: &str,
        readers: &str,
        what: &str,
        missing: impl FnOnce() -> ApiError,
    ) -> Result<Secret, ApiError> {
        let api = self.namespaced_as::<Secret>(caller, namespace)?;
        api.get(name).await.map_err(|e| match e {
            kube::Error::Api(s) if s.code == 403 => ApiError::PermissionDenied(format!(
                "{} may not get secrets in namespace \"{namespace}\": {readers}",
                caller.user
            )),
            kube::Error::Api(s) if s.code == 404 => missing(),
            other => ApiError::from_kube(other, what),
        })
    }

    /// The audit target of a share named `name`: the owner agency, if the cache knows it.
    fn share_target(&self, name: &str) -> Target {
        let agency = self
            .data_services
            .shares
            .get(&ObjectRef::new(name))
            .map(|s| s.spec.owner.agency.clone());
        target("DataShare", name, agency.as_deref())
    }

    /// Whether the caller may read the shares of the share's owner or consumer agency
    /// (decisions remembered in `allowed` for the length of one call).
    async fn may_read_share(
        &self,
        caller: &Caller,
        share: &DataShare,
        allowed: &mut BTreeMap<String, bool>,
    ) -> Result<bool, ApiError> {
        for agency in [&share.spec.owner.agency, &share.spec.consumer.agency] {
            if self
                .can_once(caller, allowed, agency, || share_read_permission(agency))
                .await?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// ListDataServiceClasses.
    pub async fn list_data_service_classes(
        &self,
        caller: Caller,
        request: proto::ListDataServiceClassesRequest,
    ) -> Result<proto::ListDataServiceClassesResponse, ApiError> {
        let page_size = validate::page_size("page_size", request.page_size)?;
        let after = validate::cursor("page_token", &request.page_token)?;
        let engine = match request.engine.as_str() {
            "" => None,
            "postgres" => Some(DataServiceEngine::Postgres),
            "redis" => Some(DataServiceEngine::Redis),
            other => {
                return Err(ApiError::invalid(
                    "engine",
                    format!("{other:?} is not an engine: use postgres or redis"),
                ));
            }
        };
        if request.security_level != 0 {
            crate::convert::security_level("security_level", request.security_level)?;
        }
        self.identity
            .require(&caller, &Permission::all("list", "dataserviceclasses"))
            .await?;
        let mut classes: Vec<Arc<DataServiceClass>> = self
            .data_services
            .classes
            .state()
            .into_iter()
            .filter(|c| {
                engine.is_none_or(|e| c.spec.engine == e)
                    && (request.security_level == 0
                        || c.spec
                            .allowed_security_levels
                            .iter()
                            .any(|l| u32::from(*l) == request.security_level))
                    && after.as_ref().is_none_or(|after| &c.name_any() > after)
            })
            .collect();
        let next_page_token = first_page(&mut classes, page_size, |c| c.name_any());
        Ok(proto::ListDataServiceClassesResponse {
            classes: classes.iter().map(|c| class_to_proto(c)).collect(),
            next_page_token,
        })
    }

    /// CreateDataServiceClaim.
    pub async fn create_data_service_claim(
        &self,
        caller: Caller,
        request: proto::CreateDataServiceClaimRequest,
    ) -> Result<proto::DataServiceClaim, ApiError> {
        let Some(message) = &request.claim else {
            return Err(ApiError::invalid("claim", "is required"));
        };
        let namespace =
            namespace_of(&message.agency, &message.environment).map_err(|e| match e {
                ApiError::InvalidArgument { field, reason } => {
                    ApiError::invalid(format!("claim.{field}"), reason)
                }
                other => other,
            })?;
        let claim = convert::claim_from_proto(message, &namespace)?;
        // The class and plan must exist (the catalog is readable by every agency).
        let class = self
            .data_services
            .classes
            .get(&ObjectRef::new(&claim.spec.class_name))
            .ok_or_else(|| {
                ApiError::invalid(
                    "claim.class_name",
                    format!(
                        "there is no data-service class {:?}: see ListDataServiceClasses (govctl db classes)",
                        claim.spec.class_name
                    ),
                )
            })?;
        if !class.spec.plans.iter().any(|p| p.name == claim.spec.plan) {
            let plans: Vec<&str> = class.spec.plans.iter().map(|p| p.name.as_str()).collect();
            return Err(ApiError::invalid(
                "claim.plan",
                format!(
                    "class {:?} has no plan {:?}; its plans: {}",
                    claim.spec.class_name,
                    claim.spec.plan,
                    plans.join(", ")
                ),
            ));
        }
        let api = self.namespaced_as::<DataServiceClaim>(&caller, &namespace)?;
        let created = api
            .create(&create_params(), &claim)
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 404 => ApiError::NotFound(format!(
                    "namespace \"{namespace}\" does not exist: agency \"{}\" has no environment \"{}\"",
                    message.agency, message.environment
                )),
                other => ApiError::from_kube(other, &claim_what(&namespace, &message.name)),
            })?;
        Ok(claim_to_proto(
            &created,
            &message.agency,
            &message.environment,
        ))
    }

    /// GetDataServiceClaim.
    pub async fn get_data_service_claim(
        &self,
        caller: Caller,
        request: proto::GetDataServiceClaimRequest,
    ) -> Result<proto::DataServiceClaim, ApiError> {
        let namespace = claim_address(&request.agency, &request.environment, &request.name)?;
        // Permission first, so a caller cannot learn which claims exist.
        self.identity
            .require(
                &caller,
                &claim_read_permission("get", &namespace, Some(&request.name)),
            )
            .await?;
        let claim = self
            .data_services
            .claims
            .get(&ObjectRef::new(&request.name).within(&namespace))
            .ok_or_else(|| not_found(&claim_what(&namespace, &request.name)))?;
        Ok(claim_to_proto(
            &claim,
            &request.agency,
            &request.environment,
        ))
    }

    /// ListDataServiceClaims.
    pub async fn list_data_service_claims(
        &self,
        caller: Caller,
        request: proto::ListDataServiceClaimsRequest,
    ) -> Result<proto::ListDataServiceClaimsResponse, ApiError> {
        let page_size = validate::page_size("page_size", request.page_size)?;
        let after = validate::cursor("page_token", &request.page_token)?;
        // The namespaces to look in: one environment, one agency's, or every one.
        let namespaces: Option<Vec<String>> =
            match (request.agency.as_str(), request.environment.as_str()) {
                ("", "") => None,
                ("", _) => {
                    return Err(ApiError::invalid(
                        "environment",
                        "needs agency: name the agency whose environment to list",
                    ));
                }
                (agency, "") => {
                    validate::agency_name("agency", agency)?;
                    Some(
                        self.agencies
                            .get(&ObjectRef::new(agency))
                            .map(|a| {
                                a.spec
                                    .environments
                                    .iter()
                                    .map(|e| namespace_name(agency, &e.name))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    )
                }
                (agency, environment) => Some(vec![namespace_of(agency, environment)?]),
            };
        if !request.class_name.is_empty() {
            validate::slug("class_name", &request.class_name, MAX_NAME)?;
        }
        // With one namespace named, a caller who may not list there is told so.
        if let Some([namespace]) = namespaces.as_deref() {
            self.identity
                .require(&caller, &claim_read_permission("list", namespace, None))
                .await?;
        }
        let mut candidates: Vec<(String, Arc<DataServiceClaim>)> = self
            .data_services
            .claims
            .state()
            .into_iter()
            .filter_map(|c| {
                let namespace = c.namespace().unwrap_or_default();
                let key = format!("{namespace}/{}", c.name_any());
                let wanted = namespaces.as_ref().is_none_or(|n| n.contains(&namespace))
                    && (request.class_name.is_empty() || c.spec.class_name == request.class_name)
                    && after.as_ref().is_none_or(|after| &key > after);
                wanted.then_some((key, c))
            })
            .collect();
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
        let see_all = self
            .identity
            .can(&caller, &Permission::all("list", "dataserviceclaims"))
            .await?;
        let mut allowed = BTreeMap::new();
        let mut page = Page::new(page_size);
        for (key, claim) in candidates {
            if !page.has_room() {
                break;
            }
            let namespace = claim.namespace().unwrap_or_default();
            let may = see_all
                || self
                    .can_once(&caller, &mut allowed, &namespace, || {
                        claim_read_permission("list", &namespace, None)
                    })
                    .await?;
            if may {
                let (agency, environment) =
                    self.agency_of_namespace(&namespace).unwrap_or_default();
                page.push(key, claim_to_proto(&claim, &agency, &environment));
            }
        }
        let (claims, next_page_token) = page.finish();
        Ok(proto::ListDataServiceClaimsResponse {
            claims,
            next_page_token,
        })
    }

    /// DeleteDataServiceClaim.
    pub async fn delete_data_service_claim(
        &self,
        caller: Caller,
        request: proto::DeleteDataServiceClaimRequest,
    ) -> Result<proto::DeleteDataServiceClaimResponse, ApiError> {
        let namespace = claim_address(&request.agency, &request.environment, &request.name)?;
        let api = self.namespaced_as::<DataServiceClaim>(&caller, &namespace)?;
        api.delete(&request.name, &DeleteParams::background())
            .await
            .map_err(|e| ApiError::from_kube(e, &claim_what(&namespace, &request.name)))?;
        Ok(proto::DeleteDataServiceClaimResponse {})
    }

    /// GetDataServiceBinding: the binding Secret, read as the caller.
    pub async fn get_data_service_binding(
        &self,
        caller: Caller,
        request: proto::GetDataServiceBindingRequest,
    ) -> Result<proto::DataServiceBinding, ApiError> {
        let namespace = claim_address(&request.agency, &request.environment, &request.name)?;
        let secret = self
            .secret_as(
                &caller,
                &namespace,
                &format!("{}-binding", request.name),
                "credentials go only to callers who may read Secrets there (the agency's owners)",
                &format!("the binding of {}", claim_what(&namespace, &request.name)),
                || self.no_binding_yet(&namespace, &request.name),
            )
            .await?;
        // Only a Secret the broker made for this claim is a binding.
        if secret.labels().get(CLAIM_LABEL) != Some(&request.name) {
            return Err(self.no_binding_yet(&namespace, &request.name));
        }
        Ok(convert::binding_to_proto(
            &request.name,
            &namespace,
            &secret,
        ))
    }

    /// RotateDataServicePassword: sets the claim's rotation annotation (to the time of
    /// the call) as the caller; the broker rotates the password and records the value in
    /// `status.passwordRotation`.
    pub async fn rotate_data_service_password(
        &self,
        caller: Caller,
        request: proto::RotateDataServicePasswordRequest,
    ) -> Result<proto::DataServiceClaim, ApiError> {
        let namespace = claim_address(&request.agency, &request.environment, &request.name)?;
        let api = self.namespaced_as::<DataServiceClaim>(&caller, &namespace)?;
        let requested = jiff::Timestamp::now().to_string();
        let patch = json!({"metadata": {"annotations": {ROTATE_PASSWORD_ANNOTATION: requested}}});
        let patched = api
            .patch(&request.name, &patch_params(), &Patch::Merge(&patch))
            .await
            .map_err(|e| ApiError::from_kube(e, &claim_what(&namespace, &request.name)))?;
        Ok(claim_to_proto(
            &patched,
            &request.agency,
            &request.environment,
        ))
    }

    /// Why a claim has no binding (said only to callers who may read its Secrets).
    fn no_binding_yet(&self, namespace: &str, name: &str) -> ApiError {
        let what = claim_what(namespace, name);
        match self
            .data_services
            .claims
            .get(&ObjectRef::new(name).within(namespace))
        {
            None => not_found(&what),
            Some(claim) => {
                let status = claim.status.clone().unwrap_or_default();
                ApiError::NotFound(format!(
                    "{what} has no credentials yet: it is {}{}",
                    phase_name(status.phase),
                    detail(status.message)
                ))
            }
        }
    }

    /// CreateDataShare.
    pub async fn create_data_share(
        &self,
        caller: Caller,
        request: proto::CreateDataShareRequest,
    ) -> Result<proto::DataShare, ApiError> {
        if !request.name.is_empty() {
            validate::slug("name", &request.name, MAX_NAME)?;
        }
        validate::agency_name("owner_agency", &request.owner_agency)?;
        validate::slug(
            "owner_environment",
            &request.owner_environment,
            MAX_ENVIRONMENT,
        )?;
        validate::slug("claim", &request.claim, MAX_NAME)?;
        validate::agency_name("consumer_agency", &request.consumer_agency)?;
        if request.consumer_agency == request.owner_agency {
            return Err(ApiError::invalid(
                "consumer_agency",
                "is the owner agency: a share grants access to another agency",
            ));
        }
        let expires_at = share_expiry("expires_at", &request.expires_at, jiff::Timestamp::now())?;
        validate::text("purpose", &request.purpose, validate::MAX_TEXT, false)?;
        let purpose = request.purpose.trim();
        let share = DataShare {
            metadata: ObjectMeta {
                name: (!request.name.is_empty()).then(|| request.name.clone()),
                generate_name: request
                    .name
                    .is_empty()
                    .then(|| format!("{}-", request.claim)),
                ..Default::default()
            },
            spec: DataShareSpec {
                owner: ShareOwner {
                    agency: request.owner_agency.clone(),
                    namespace: namespace_name(&request.owner_agency, &request.owner_environment),
                    claim: request.claim.clone(),
                },
                consumer: ShareConsumer {
                    agency: request.consumer_agency.clone(),
                },
                access: ShareAccess::ReadOnly,
                expires_at: Time(expires_at),
                purpose: (!purpose.is_empty()).then(|| purpose.to_owned()),
                approved: false,
                approval: None,
                revoked: false,
            },
            status: None,
        };
        let api = KubeApi::<DataShare>::all(self.identity.client_for(&caller)?);
        let created = api.create(&create_params(), &share).await.map_err(|e| {
            let what = if request.name.is_empty() {
                format!("a data share of claim \"{}\"", request.claim)
            } else {
                share_what(&request.name)
            };
            ApiError::from_kube(e, &what)
        })?;
        Ok(share_to_proto(&created))
    }

    /// ListDataShares.
    pub async fn list_data_shares(
        &self,
        caller: Caller,
        request: proto::ListDataSharesRequest,
    ) -> Result<proto::ListDataSharesResponse, ApiError> {
        let page_size = validate::page_size("page_size", request.page_size)?;
        let after = validate::cursor("page_token", &request.page_token)?;
        if !matches!(
            request.phase.as_str(),
            "" | "Pending" | "Granted" | "Expired" | "Revoked"
        ) {
            return Err(ApiError::invalid(
                "phase",
                format!(
                    "{:?} is not a phase: use Pending, Granted, Expired or Revoked",
                    request.phase
                ),
            ));
        }
        if !request.agency.is_empty() {
            validate::agency_name("agency", &request.agency)?;
            self.identity
                .require(&caller, &share_read_permission(&request.agency))
                .await?;
        }
        let mut candidates: Vec<(String, Arc<DataShare>)> = self
            .data_services
            .shares
            .state()
            .into_iter()
            .filter(|s| {
                request.agency.is_empty()
                    || s.spec.owner.agency == request.agency
                    || s.spec.consumer.agency == request.agency
            })
            .filter(|s| request.phase.is_empty() || share_phase(s) == request.phase)
            .map(|s| (share_sort_key(&s), s))
            .filter(|(key, _)| after.as_ref().is_none_or(|after| key > after))
            .collect();
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
        let mut allowed = BTreeMap::new();
        let mut page = Page::new(page_size);
        for (key, share) in candidates {
            if !page.has_room() {
                break;
            }
            // With one agency named, the caller may read its shares (checked above).
            if !request.agency.is_empty()
                || self.may_read_share(&caller, &share, &mut allowed).await?
            {
                page.push(key, share_to_proto(&share));
            }
        }
        let (shares, next_page_token) = page.finish();
        Ok(proto::ListDataSharesResponse {
            shares,
            next_page_token,
        })
    }

    /// A share from the cache, for a caller who may read it.
    async fn readable_share(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<Arc<DataShare>, ApiError> {
        validate::slug("name", name, MAX_SHARE_NAME)?;
        let share = self
            .data_services
            .shares
            .get(&ObjectRef::new(name))
            .ok_or_else(|| not_found(&share_what(name)))?;
        if !self
            .may_read_share(caller, &share, &mut BTreeMap::new())
            .await?
        {
            return Err(ApiError::PermissionDenied(format!(
                "{} may not read the shares of agency \"{}\" or \"{}\" (get agencies/{SHARES_SUBRESOURCE}, group govbroker.io): ask the agency's owners",
                caller.user, share.spec.owner.agency, share.spec.consumer.agency
            )));
        }
        Ok(share)
    }

    /// Sets the flag `field` of the spec of a share the caller may read, as the caller,
    /// unless `refusal` says why not (the end of a sentence about the share).
    async fn set_share_flag(
        &self,
        caller: &Caller,
        name: &str,
        field: &str,
        refusal: impl FnOnce(&DataShare) -> Option<String>,
    ) -> Result<proto::DataShare, ApiError> {
        let share = self.readable_share(caller, name).await?;
        if let Some(why) = refusal(&share) {
            return Err(ApiError::FailedPrecondition(format!(
                "{} {why}",
                share_what(name)
            )));
        }
        let api = KubeApi::<DataShare>::all(self.identity.client_for(caller)?);
        let patch = json!({"spec": {field: true}});
        let patched = api
            .patch(name, &patch_params(), &Patch::Merge(&patch))
            .await
            .map_err(|e| ApiError::from_kube(e, &share_what(name)))?;
        Ok(share_to_proto(&patched))
    }

    /// ApproveDataShare: sets `spec.approved` as the caller; the admission webhook checks
    /// that the caller owns the owner agency and records who approved and when.
    pub async fn approve_data_share(
        &self,
        caller: Caller,
        request: proto::ApproveDataShareRequest,
    ) -> Result<proto::DataShare, ApiError> {
        self.set_share_flag(&caller, &request.name, "approved", |share| {
            if share.spec.revoked {
                Some("was revoked: propose a new share".to_owned())
            } else if share.spec.approved {
                let by = share
                    .spec
                    .approval
                    .as_ref()
                    .and_then(|a| a.approved_by.as_ref())
                    .map(|by| format!(" by {by}"))
                    .unwrap_or_default();
                Some(format!("is already approved{by}"))
            } else {
                None
            }
        })
        .await
    }

    /// RevokeDataShare: sets `spec.revoked` as the caller (final).
    pub async fn revoke_data_share(
        &self,
        caller: Caller,
        request: proto::RevokeDataShareRequest,
    ) -> Result<proto::DataShare, ApiError> {
        self.set_share_flag(&caller, &request.name, "revoked", |share| {
            share.spec.revoked.then(|| "is already revoked".to_owned())
        })
        .await
    }

    /// GetDataShareBinding: the consumer's Secret `<share>-share` in
    /// `<consumer agency>-<environment>`, read as the caller (so RBAC decides who gets
    /// it: the consumer agency's owners).
    pub async fn get_data_share_binding(
        &self,
        caller: Caller,
        request: proto::GetDataShareBindingRequest,
    ) -> Result<proto::DataServiceBinding, ApiError> {
        validate::slug("environment", &request.environment, MAX_ENVIRONMENT)?;
        let share = self.readable_share(&caller, &request.name).await?;
        let consumer = &share.spec.consumer.agency;
        let namespace = namespace_name(consumer, &request.environment);
        let secret = self
            .secret_as(
                &caller,
                &namespace,
                &share_secret_name(&request.name),
                &format!(
                    "a share's credentials go only to callers who may read Secrets in the \
                     consumer agency's namespaces (the owners of agency \"{consumer}\")"
                ),
                &format!(
                    "the credentials of {} in namespace \"{namespace}\"",
                    share_what(&request.name)
                ),
                || no_share_binding_yet(&share, &namespace, &request.environment),
            )
            .await?;
        // Only a Secret the broker made for this share holds its credentials, and a
        // revoked share's are being removed.
        if secret.labels().get(SHARE_LABEL) != Some(&request.name) || share.spec.revoked {
            return Err(no_share_binding_yet(
                &share,
                &namespace,
                &request.environment,
            ));
        }
        Ok(convert::binding_to_proto(
            &share.spec.owner.claim,
            &namespace,
            &secret,
        ))
    }
}

/// The name of a share's Secret in the consumer's namespaces.
fn share_secret_name(share: &str) -> String {
    format!("{share}-share")
}

/// Why a share has no credentials in `namespace` (said only to callers who may read its
/// Secrets): not granted yet, ended, or no such environment.
fn no_share_binding_yet(share: &DataShare, namespace: &str, environment: &str) -> ApiError {
    let what = share_what(&share.name_any());
    let status = share.status.clone().unwrap_or_default();
    let phase = share_phase(share);
    let detail = detail(status.message);
    ApiError::NotFound(match phase.as_str() {
        _ if share.spec.revoked => format!("{what} was revoked: it grants nothing"),
        "Granted" => format!(
            "{what} is granted, but there are no credentials in namespace \"{namespace}\": \
             is \"{environment}\" an environment of agency \"{}\"?",
            share.spec.consumer.agency
        ),
        "Pending" if !share.spec.approved => format!(
            "{what} is not granted yet: it awaits approval by an owner of agency \"{}\"",
            share.spec.owner.agency
        ),
        "Pending" => format!("{what} is not granted yet: it is Pending{detail}"),
        ended => format!("{what} grants nothing: it is {ended}{detail}"),
    })
}

/// A share's expiry: RFC 3339, in the future, and within [`MAX_SHARE_YEARS`].
pub fn share_expiry(
    field: &str,
    value: &str,
    now: jiff::Timestamp,
) -> Result<jiff::Timestamp, ApiError> {
    let Some(at) = validate::time(field, value)? else {
        return Err(ApiError::invalid(
            field,
            "is required: no data is shared forever; give an RFC 3339 time such as 2026-12-31T23:59:59+07:00",
        ));
    };
    if at <= now {
        return Err(ApiError::invalid(
            field,
            format!("{value} is not in the future"),
        ));
    }
    let latest = now
        .checked_add(jiff::SignedDuration::from_hours(24 * 366 * MAX_SHARE_YEARS))
        .unwrap_or(now);
    if at > latest {
        return Err(ApiError::invalid(
            field,
            format!(
                "{value} is more than {MAX_SHARE_YEARS} years away: grant for a shorter period and renew"
            ),
        ));
    }
    Ok(at)
}

fn claim_target(agency: &str, environment: &str, name: &str) -> Target {
    target(
        "DataServiceClaim",
        &format!("{}/{name}", namespace_name(agency, environment)),
        Some(agency),
    )
}

operation!(proto::ListDataServiceClassesRequest => proto::ListDataServiceClassesResponse, methods::LIST_CLASSES,
    |_r| target("DataServiceClass", "", None),
    |api, caller, req| api.list_data_service_classes(caller, req));
operation!(proto::CreateDataServiceClaimRequest => proto::DataServiceClaim, methods::CREATE_CLAIM,
    |r| {
        let empty = proto::DataServiceClaim::default();
        let c = r.claim.as_ref().unwrap_or(&empty);
        claim_target(&c.agency, &c.environment, &c.name)
    },
    |api, caller, req| api.create_data_service_claim(caller, req));
operation!(proto::GetDataServiceClaimRequest => proto::DataServiceClaim, methods::GET_CLAIM,
    |r| claim_target(&r.agency, &r.environment, &r.name),
    |api, caller, req| api.get_data_service_claim(caller, req));
operation!(proto::ListDataServiceClaimsRequest => proto::ListDataServiceClaimsResponse, methods::LIST_CLAIMS,
    |r| target("DataServiceClaim", "", Some(&r.agency)),
    |api, caller, req| api.list_data_service_claims(caller, req));
operation!(proto::DeleteDataServiceClaimRequest => proto::DeleteDataServiceClaimResponse, methods::DELETE_CLAIM,
    |r| claim_target(&r.agency, &r.environment, &r.name),
    |api, caller, req| api.delete_data_service_claim(caller, req));
operation!(proto::GetDataServiceBindingRequest => proto::DataServiceBinding, methods::GET_BINDING,
    |r| claim_target(&r.agency, &r.environment, &r.name),
    |api, caller, req| api.get_data_service_binding(caller, req));
operation!(proto::RotateDataServicePasswordRequest => proto::DataServiceClaim, methods::ROTATE_PASSWORD,
    |r| claim_target(&r.agency, &r.environment, &r.name),
    |api, caller, req| api.rotate_data_service_password(caller, req));
operation!(proto::CreateDataShareRequest => proto::DataShare, methods::CREATE_SHARE,
    |r| target("DataShare", &r.name, Some(&r.owner_agency)),
    |api, caller, req| api.create_data_share(caller, req),
    |created| Some(created.name.clone()));
operation!(proto::ListDataSharesRequest => proto::ListDataSharesResponse, methods::LIST_SHARES,
    |r| target("DataShare", "", Some(&r.agency)),
    |api, caller, req| api.list_data_shares(caller, req));

/// Approve, revoke and the share's credentials name a share only; their audit target's
/// agency comes from the cache. The credentials are so recorded in the owner agency's
/// trail, with the share's other actions: the data's owner sees who fetched access to it.
macro_rules! share_operation {
    ($request:ty => $response:ty, $method:expr, $run:ident) => {
        impl Operation for $request {
            type Response = $response;
            const METHOD: Method = $method;
            fn target(&self, api: &Api) -> Target {
                api.share_target(&self.name)
            }
            fn encoded(&self) -> Vec<u8> {
                self.encode_to_vec()
            }
            fn run(
                self,
                api: Arc<Api>,
                caller: Caller,
            ) -> BoxFuture<'static, Result<$response, ApiError>> {
                Box::pin(async move { api.$run(caller, self).await })
            }
        }
    };
}

share_operation!(
    proto::ApproveDataShareRequest => proto::DataShare,
    methods::APPROVE_SHARE,
    approve_data_share
);
share_operation!(
    proto::RevokeDataShareRequest => proto::DataShare,
    methods::REVOKE_SHARE,
    revoke_data_share
);
share_operation!(
    proto::GetDataShareBindingRequest => proto::DataServiceBinding,
    methods::GET_SHARE_BINDING,
    get_data_share_binding
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_expiries_are_in_the_future_and_bounded() {
        let now: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        assert!(share_expiry("expires_at", "2026-12-31T23:59:59+07:00", now).is_ok());
        for bad in [
            "",
            "tomorrow",
            "2026-05-31T00:00:00Z",
            "2040-01-01T00:00:00Z",
        ] {
            let err = share_expiry("expires_at", bad, now).unwrap_err();
            assert!(
                matches!(err, ApiError::InvalidArgument { ref field, .. } if field == "expires_at"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn claim_addresses_name_the_bad_field() {
        assert_eq!(
            claim_address("so-y-te", "prod", "csdl").unwrap(),
            "so-y-te-prod"
        );
        for (agency, environment, name, field) in [
            ("", "prod", "c", "agency"),
            ("so-y-te", "Prod", "c", "environment"),
            ("so-y-te", "prod", "c;drop", "name"),
            (
                "so-y-te",
                "a-very-long-environment-name",
                "c",
                "environment",
            ),
        ] {
            let err = claim_address(agency, environment, name).unwrap_err();
            assert!(
                matches!(err, ApiError::InvalidArgument { field: ref f, .. } if f == field),
                "{agency}/{environment}/{name}: {err}"
            );
        }
    }

    #[test]
    fn permissions_name_the_namespace() {
        assert_eq!(
            claim_read_permission("get", "so-y-te-prod", Some("csdl")).describe(),
            "get dataserviceclaims \"csdl\" in namespace \"so-y-te-prod\""
        );
    }
}
