//! The admission webhook: the agency tree's rules and quota-request decisions, checked
//! before anything is written.
//!
//! Served over TLS by the operator. The certificate is read from `--webhook-cert-dir`
//! or generated at start-up; either way the webhook configurations are applied with the
//! matching `caBundle`, so the API server always trusts the running operator.

mod agency;
mod data_services;
mod quota_request;
mod workload;

pub use data_services::{REVOKED_AT_ANNOTATION, REVOKED_BY_ANNOTATION};

pub use quota_request::merged_quota;

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use futures::future::BoxFuture;
use govbroker_crds::Agency;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use kube::api::{Patch, PatchParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::runtime::reflector::Store;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cache::Index;
use crate::controllers::workload::AgencyNamespace;
use crate::{Context, Error};

/// Name of both webhook configurations.
pub const CONFIGURATION_NAME: &str = "govbroker";
/// Field manager of the webhook configurations.
const FIELD_MANAGER: &str = "govbroker-webhook";

/// What the admission handlers read: the agency tree and the settings.
#[derive(Clone)]
pub struct WebhookState {
    /// Every Agency, kept current by a watch.
    pub agencies: Store<Agency>,
    /// Groups whose members may do anything (platform admins).
    pub admin_groups: Arc<Vec<String>>,
    /// For live reads when the cache lags.
    pub client: kube::Client,
    /// What this webhook admitted moments ago, which the cache may not show yet.
    pub recent: agency::Recent,
    /// The operator's own user name, which may apply approved quota changes.
    pub own_user: Arc<String>,
    /// Which registries each security level may pull workload images from.
    pub image_policy: Arc<govbroker_domain::workload::ImagePolicy>,
    /// Data-service claims admitted moments ago, counted against quota until listed.
    pub admitted_claims: data_services::AdmittedClaims,
    /// Every agency namespace's agency and security level, kept by the workload
    /// controller's watch.
    pub namespaces: Index<AgencyNamespace>,
}

/// Serves the webhook until `shutdown`, after applying the webhook configurations.
pub async fn run(
    ctx: Arc<Context>,
    agencies: Store<Agency>,
    namespaces: Index<AgencyNamespace>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let settings = &ctx.settings;
    let tls = govbroker_tls::load_or_generate(
        settings.webhook_cert_dir.as_deref(),
        &settings.webhook_hosts(),
        "govbroker-webhook",
    )
    .map_err(|e| Error::Webhook(e.to_string()))?;
    let server_config =
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls.server_config));
    let own_user = own_user(&ctx.client).await?;
    info!(user = %own_user, "the operator acts as");
    let state = WebhookState {
        own_user: Arc::new(own_user),
        agencies: agencies.clone(),
        admin_groups: Arc::new(settings.platform_admin_groups.clone()),
        client: ctx.client.clone(),
        recent: agency::Recent::default(),
        image_policy: Arc::new(settings.image_policy.clone()),
        admitted_claims: data_services::AdmittedClaims::default(),
        namespaces,
    };
    let app = Router::new()
        .route(
            "/validate/agency",
            post(review::<Agency>(agency::validate, Stage::Validating)),
        )
        .route(
            "/mutate/agency",
            post(review::<Agency>(agency::link_parent, Stage::Mutating)),
        )
        .route(
            "/validate/dataserviceclaim",
            post(review::<govbroker_crds::DataServiceClaim>(
                data_services::admit_claim,
                Stage::Validating,
            )),
        )
        .route(
            "/mutate/datashare",
            post(review::<govbroker_crds::DataShare>(
                data_services::admit_share,
                Stage::Mutating,
            )),
        )
        .route(
            "/mutate/quotarequest",
            post(review::<govbroker_crds::QuotaRequest>(
                quota_request::admit,
                Stage::Mutating,
            )),
        )
        .route(
            workload::PATH,
            post(review::<govbroker_crds::Workload>(
                workload::validate,
                Stage::Validating,
            )),
        )
        .route(
            workload::SCALE_PATH,
            post(review::<k8s_openapi::api::autoscaling::v1::Scale>(
                workload::validate_scale,
                Stage::Validating,
            )),
        )
        .with_state(state);

    let handle = axum_server::Handle::new();
    // TCP_NODELAY: without it small answers wait for delayed ACKs (~40 ms per review).
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(server_config)
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
    let server = axum_server::bind(settings.webhook_addr)
        .acceptor(acceptor)
        .handle(handle.clone());
    let serving = tokio::spawn(server.serve(app.into_make_service()));
    {
        let handle = handle.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        });
    }
    handle.listening().await;
    info!(addr = %settings.webhook_addr, "serving the admission webhook");

    // Rules are answered from the agency cache, and from live reads while the cache is
    // still filling or lags (see `agency::lookup`).
    apply_configurations(&ctx, &tls.ca_bundle).await?;
    info!("webhook configurations applied");
    ctx.readiness.serving();

    serving.await.map_err(Error::Task)?.map_err(Error::Http)
}

/// Who the API server says this process is (a SelfSubjectReview).
async fn own_user(client: &kube::Client) -> Result<String, Error> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&Default::default(), &SelfSubjectReview::default())
        .await?;
    Ok(review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default())
}

type Handler<K> = fn(AdmissionRequest<K>, WebhookState) -> BoxFuture<'static, AdmissionResponse>;

/// When a webhook runs relative to the API server's check of the CRD schema.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Validating: after the schema check, so an object that does not decode is a
    /// mistake and is denied, saying why.
    Validating,
    /// Mutating: before the schema check, so an object that does not even decode into
    /// its type is admitted unchanged and the schema refuses it with the field's own
    /// message (e.g. `Unsupported value`).
    Mutating,
}

/// Wraps a handler into an axum route that decodes the review and never fails
/// silently (see [`Stage`] for an object that does not decode).
fn review<K>(
    handler: Handler<K>,
    stage: Stage,
) -> impl Fn(
    State<WebhookState>,
    Json<AdmissionReview<DynamicObject>>,
) -> BoxFuture<'static, Json<AdmissionReview<DynamicObject>>>
+ Clone
+ Send
+ 'static
where
    K: Resource + DeserializeOwned + Clone + Send + 'static,
{
    move |State(state): State<WebhookState>, Json(raw): Json<AdmissionReview<DynamicObject>>| {
        Box::pin(async move {
            let typed = serde_json::to_value(&raw)
                .and_then(serde_json::from_value::<AdmissionReview<K>>)
                .map_err(|e| e.to_string())
                .and_then(|review| {
                    let request: Result<AdmissionRequest<K>, _> = review.try_into();
                    request.map_err(|e| e.to_string())
                });
            let response = match typed {
                Ok(request) => handler(request, state).await,
                Err(e) => match TryInto::<AdmissionRequest<DynamicObject>>::try_into(raw) {
                    Ok(request) if stage == Stage::Mutating => {
                        info!(error = %e, "an object that does not match its type: left to schema validation");
                        AdmissionResponse::from(&request)
                    }
                    _ => {
                        warn!(error = %e, "unreadable admission review");
                        AdmissionResponse::invalid(e)
                    }
                },
            };
            Json(response.into_review())
        })
    }
}

fn rule(resource: &str, operations: &[&str]) -> RuleWithOperations {
    scoped_rule("Cluster", resource, operations)
}

/// A rule for govbroker's `resource` of `scope` (`Cluster` or `Namespaced`).
fn scoped_rule(scope: &str, resource: &str, operations: &[&str]) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![govbroker_crds::GROUP.to_owned()]),
        api_versions: Some(vec![govbroker_crds::VERSION.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        operations: Some(operations.iter().map(|o| (*o).to_owned()).collect()),
        scope: Some(scope.to_owned()),
    }
}

fn client_config(ctx: &Context, ca_bundle: &[u8], path: &str) -> WebhookClientConfig {
    let settings = &ctx.settings;
    match &settings.webhook_url {
        Some(url) => WebhookClientConfig {
            url: Some(format!("{}{path}", url.trim_end_matches('/'))),
            ca_bundle: Some(ByteString(ca_bundle.to_vec())),
            service: None,
        },
        None => WebhookClientConfig {
            url: None,
            ca_bundle: Some(ByteString(ca_bundle.to_vec())),
            service: Some(ServiceReference {
                namespace: settings.webhook_service_namespace.clone(),
                name: settings.webhook_service_name.clone(),
                path: Some(path.to_owned()),
                port: Some(443),
            }),
        },
    }
}

async fn apply_configurations(ctx: &Context, ca_bundle: &[u8]) -> Result<(), Error> {
    let validating = ValidatingWebhookConfiguration {
        metadata: kube::api::ObjectMeta {
            name: Some(CONFIGURATION_NAME.to_owned()),
            ..Default::default()
        },
        webhooks: Some(vec![
            ValidatingWebhook {
                name: "agencies.govbroker.io".to_owned(),
                admission_review_versions: vec!["v1".to_owned()],
                client_config: client_config(ctx, ca_bundle, "/validate/agency"),
                failure_policy: Some("Fail".to_owned()),
                side_effects: "None".to_owned(),
                timeout_seconds: Some(10),
                rules: Some(vec![rule("agencies", &["CREATE", "UPDATE", "DELETE"])]),
                ..Default::default()
            },
            ValidatingWebhook {
                name: "dataserviceclaims.govbroker.io".to_owned(),
                admission_review_versions: vec!["v1".to_owned()],
                client_config: client_config(ctx, ca_bundle, "/validate/dataserviceclaim"),
                failure_policy: Some("Fail".to_owned()),
                side_effects: "None".to_owned(),
                timeout_seconds: Some(10),
                rules: Some(vec![scoped_rule(
                    "Namespaced",
                    "dataserviceclaims",
                    &["CREATE", "UPDATE"],
                )]),
                ..Default::default()
            },
        ]),
    };
    let mutating = MutatingWebhookConfiguration {
        metadata: kube::api::ObjectMeta {
            name: Some(CONFIGURATION_NAME.to_owned()),
            ..Default::default()
        },
        webhooks: Some(vec![
            MutatingWebhook {
                name: "agencies.govbroker.io".to_owned(),
                admission_review_versions: vec!["v1".to_owned()],
                client_config: client_config(ctx, ca_bundle, "/mutate/agency"),
                failure_policy: Some("Fail".to_owned()),
                side_effects: "None".to_owned(),
                timeout_seconds: Some(10),
                rules: Some(vec![rule("agencies", &["CREATE", "UPDATE"])]),
                ..Default::default()
            },
            MutatingWebhook {
                name: "datashares.govbroker.io".to_owned(),
                admission_review_versions: vec!["v1".to_owned()],
                client_config: client_config(ctx, ca_bundle, "/mutate/datashare"),
                failure_policy: Some("Fail".to_owned()),
                side_effects: "None".to_owned(),
                timeout_seconds: Some(10),
                rules: Some(vec![rule("datashares", &["CREATE", "UPDATE"])]),
                ..Default::default()
            },
            MutatingWebhook {
                name: "quotarequests.govbroker.io".to_owned(),
                admission_review_versions: vec!["v1".to_owned()],
                client_config: client_config(ctx, ca_bundle, "/mutate/quotarequest"),
                failure_policy: Some("Fail".to_owned()),
                side_effects: "None".to_owned(),
                timeout_seconds: Some(10),
                rules: Some(vec![rule("quotarequests", &["CREATE", "UPDATE"])]),
                ..Default::default()
            },
        ]),
    };
    let mut validating = validating;
    if let Some(webhooks) = validating.webhooks.as_mut() {
        webhooks.push(workload::webhook(ctx, ca_bundle));
        webhooks.push(workload::scale_webhook(ctx, ca_bundle));
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Api::<ValidatingWebhookConfiguration>::all(ctx.client.clone())
        .patch(CONFIGURATION_NAME, &params, &Patch::Apply(&validating))
        .await?;
    Api::<MutatingWebhookConfiguration>::all(ctx.client.clone())
        .patch(CONFIGURATION_NAME, &params, &Patch::Apply(&mutating))
        .await?;
    Ok(())
}

/// `response` with a JSON patch (RFC 6902) applied to the object; if the patch cannot be
/// encoded, a denial that says what was being done (never a silent admit).
pub fn patched(
    response: AdmissionResponse,
    patch: serde_json::Value,
    doing: &str,
) -> AdmissionResponse {
    match serde_json::from_value::<json_patch::Patch>(patch)
        .map_err(|e| e.to_string())
        .and_then(|p| response.clone().with_patch(p).map_err(|e| e.to_string()))
    {
        Ok(with_patch) => with_patch,
        Err(e) => response.deny(format!("internal error {doing}: {e}")),
    }
}

/// Why the webhook refuses a change. The code reaches the client through the API
/// server, so the provisioning API (and anyone else) can tell the three apart without
/// reading the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The requester may not make this change (403 Forbidden).
    Forbidden,
    /// The change is malformed or breaks the tree's rules (422 Invalid).
    Invalid,
    /// The change is well formed but the tree's state does not allow it now: the parent
    /// has no room, the agency still has children (409 Conflict).
    Conflict,
    /// What the decision needs could not be read (503 Service Unavailable).
    Unavailable,
}

/// `response` denied for `why`, with `message`.
pub fn refuse(
    response: AdmissionResponse,
    why: Refusal,
    message: impl ToString,
) -> AdmissionResponse {
    let mut response = response.deny(message);
    let (code, reason) = match why {
        Refusal::Forbidden => (403, "Forbidden"),
        Refusal::Invalid => (422, "Invalid"),
        Refusal::Conflict => (409, "Conflict"),
        Refusal::Unavailable => (503, "ServiceUnavailable"),
    };
    response.result.code = code;
    response.result.reason = reason.to_owned();
    response
}

/// Whether the requester is a platform admin: in `system:masters` or an admin group.
pub fn is_platform_admin(groups: &[String], admin_groups: &[String]) -> bool {
    groups
        .iter()
        .any(|g| g == "system:masters" || admin_groups.contains(g))
}

/// Whether the requester (user and groups) is one of the agency's owners.
pub fn is_owner(agency: &Agency, user: &str, groups: &[String]) -> bool {
    let owners = &agency.spec.owners;
    owners.users.iter().any(|u| u == user)
        || owners.groups.iter().any(|g| groups.contains(g))
        || owners
            .service_accounts
            .iter()
            .any(|sa| user == format!("system:serviceaccount:{}:{}", sa.namespace, sa.name))
}
