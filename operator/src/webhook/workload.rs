//! Admission of Workloads: only in an agency's namespace, a valid image reference and
//! sane resources ([`govbroker_domain::workload::validate`]), an image from a
//! registry the agency's security level allows (the operator's `--image-policy`), and
//! no new workload, scale-up, resume or larger resource requests once the agency's
//! enforced budget is spent ([`govbroker_domain::workload::growth`]).

use futures::future::BoxFuture;
use govbroker_crds::Workload;
use govbroker_domain::metering::Day;
use govbroker_domain::workload::{Growth, growth, parse_image, validate as validate_spec};
use k8s_openapi::api::admissionregistration::v1::{RuleWithOperations, ValidatingWebhook};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};

use super::{Refusal, WebhookState, refuse};
use crate::Context;
use crate::controllers::workload::AgencyNamespace;

/// Path of the handler.
pub const PATH: &str = "/validate/workload";

/// The validating webhook entry for Workloads.
pub fn webhook(ctx: &Context, ca_bundle: &[u8]) -> ValidatingWebhook {
    ValidatingWebhook {
        name: "workloads.govbroker.io".to_owned(),
        admission_review_versions: vec!["v1".to_owned()],
        client_config: super::client_config(ctx, ca_bundle, PATH),
        failure_policy: Some("Fail".to_owned()),
        side_effects: "None".to_owned(),
        timeout_seconds: Some(10),
        rules: Some(vec![RuleWithOperations {
            api_groups: Some(vec![govbroker_crds::GROUP.to_owned()]),
            api_versions: Some(vec![govbroker_crds::VERSION.to_owned()]),
            resources: Some(vec!["workloads".to_owned()]),
            operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
            scope: Some("Namespaced".to_owned()),
        }]),
        ..Default::default()
    }
}

/// The namespace `name`'s agency and security level, from the shared index, or read live
/// when the index does not have it (not filled yet, or the namespace is seconds old).
async fn agency_namespace(
    state: &WebhookState,
    name: &str,
) -> Result<Option<AgencyNamespace>, kube::Error> {
    if let Some(ns) = state.namespaces.get(None, name) {
        return Ok(Some(ns));
    }
    Ok(Api::<Namespace>::all(state.client.clone())
        .get_metadata_opt(name)
        .await?
        .map(|ns| AgencyNamespace::of(&ns)))
}

/// Admits or refuses a Workload create or update.
pub fn validate(
    request: AdmissionRequest<Workload>,
    state: WebhookState,
) -> BoxFuture<'static, AdmissionResponse> {
    Box::pin(async move { validate_now(&request, &state).await })
}

async fn validate_now(
    request: &AdmissionRequest<Workload>,
    state: &WebhookState,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let Some(workload) = &request.object else {
        return response;
    };
    // Status and scale writes change no image or resources worth re-checking.
    if request.sub_resource.is_some() {
        return response;
    }
    let problems = validate_spec(&workload.spec);
    if !problems.is_empty() {
        return refuse(
            response,
            Refusal::Invalid,
            format!("the workload is invalid: {}", problems.join("; ")),
        );
    }
    let namespace = request.namespace.clone().unwrap_or_default();
    let ns = match agency_namespace(state, &namespace).await {
        Ok(ns) => ns,
        Err(e) => {
            return refuse(
                response,
                Refusal::Unavailable,
                format!("cannot read namespace \"{namespace}\" to find its security level: {e}"),
            );
        }
    };
    let Some((agency, level)) = ns.and_then(|n| Some((n.agency?, n.level))) else {
        return refuse(
            response,
            Refusal::Invalid,
            format!(
                "namespace \"{namespace}\" belongs to no agency: Workloads run in an agency's namespace (<agency>-<environment>, e.g. so-tttt-da-nang-prod)"
            ),
        );
    };
    // An enforced, spent budget stops new workloads, scale-ups and larger requests, not
    // what runs.
    let growth = match (&request.operation, &request.old_object) {
        (Operation::Create, _) => growth(None, &workload.spec),
        (_, Some(old)) => growth(Some(&old.spec), &workload.spec),
        _ => None,
    };
    if let Some(growth) = growth
        && let Some(why) = budget_refusal(state, &agency, &growth).await
    {
        return refuse(response, Refusal::Forbidden, why);
    }
    // The image policy is checked when the image is chosen; a later policy change does
    // not stop an owner from scaling down or pausing what already runs.
    let image_changed = request.operation == Operation::Create
        || request
            .old_object
            .as_ref()
            .is_none_or(|old| old.spec.image != workload.spec.image);
    if image_changed {
        let image = match parse_image(&workload.spec.image) {
            Ok(image) => image,
            Err(e) => return refuse(response, Refusal::Invalid, e),
        };
        if let Err(why) = state.image_policy.check(level, &image) {
            return refuse(response, Refusal::Forbidden, why);
        }
    }
    response
}

/// Path of the handler of `workloads/scale` (`kubectl scale workload`).
pub const SCALE_PATH: &str = "/validate/workload-scale";

/// The validating webhook entry for the scale subresource of Workloads: a scale-up is
/// refused like a new workload when the agency's enforced budget is spent.
pub fn scale_webhook(ctx: &Context, ca_bundle: &[u8]) -> ValidatingWebhook {
    ValidatingWebhook {
        name: "workload-scale.govbroker.io".to_owned(),
        client_config: super::client_config(ctx, ca_bundle, SCALE_PATH),
        rules: Some(vec![RuleWithOperations {
            resources: Some(vec!["workloads/scale".to_owned()]),
            operations: Some(vec!["UPDATE".to_owned()]),
            ..webhook(ctx, ca_bundle).rules.unwrap_or_default().remove(0)
        }]),
        ..webhook(ctx, ca_bundle)
    }
}

/// Admits or refuses a change of a Workload's `scale` subresource.
pub fn validate_scale(
    request: AdmissionRequest<Scale>,
    state: WebhookState,
) -> BoxFuture<'static, AdmissionResponse> {
    Box::pin(async move {
        let response = AdmissionResponse::from(&request);
        let replicas = |s: &Scale| s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let growth = match (&request.object, &request.old_object) {
            (Some(new), Some(old)) if replicas(new) > replicas(old) => Growth::ScaledUp {
                from: replicas(old),
                to: replicas(new),
            },
            _ => return response,
        };
        let namespace = request.namespace.clone().unwrap_or_default();
        let agency = match agency_namespace(&state, &namespace).await {
            Ok(ns) => ns.and_then(|n| n.agency),
            Err(e) => {
                return refuse(
                    response,
                    Refusal::Unavailable,
                    format!("cannot read namespace \"{namespace}\" to find its agency: {e}"),
                );
            }
        };
        match agency {
            Some(agency) => match budget_refusal(&state, &agency, &growth).await {
                Some(why) => refuse(response, Refusal::Forbidden, why),
                None => response,
            },
            None => response,
        }
    })
}

/// Why the agency's enforced budget refuses `growth` now
/// ([`govbroker_domain::billing::budget_refusal`]), from the agency cache.
async fn budget_refusal(state: &WebhookState, agency: &str, growth: &Growth) -> Option<String> {
    let agency_object = super::agency::lookup(state, agency).await?;
    let budget = agency_object.spec.budget.as_ref()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    govbroker_domain::billing::budget_refusal(
        agency,
        growth,
        budget,
        agency_object.status.as_ref().and_then(|s| s.cost.as_ref()),
        Day::of(now).month(),
    )
}
