//! Admission of Workloads: only in an agency's namespace, a valid image reference and
//! sane resources ([`govbroker_domain::workload::validate`]), an image from a
//! registry the agency's security level allows (the operator's `--image-policy`), and
//! no new workload, scale-up, resume or larger resource requests once the agency's
//! enforced budget is spent ([`govbroker_domain::workload::growth`]).

use std::sync::OnceLock;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use govbroker_crds::Workload;
use govbroker_domain::isolation::{AGENCY_LABEL, SECURITY_LEVEL_LABEL};
use govbroker_domain::metering::Day;
use govbroker_domain::workload::{Growth, growth, parse_image, validate as validate_spec};
use k8s_openapi::api::admissionregistration::v1::{RuleWithOperations, ValidatingWebhook};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PartialObjectMeta;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};

use super::{Refusal, WebhookState, refuse};
use crate::Context;

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

/// The agencies' namespaces (labelled with their agency), kept by a watch started with the
/// first review, so that admitting a workload costs no request to the API server.
static NAMESPACES: OnceLock<Store<PartialObjectMeta<Namespace>>> = OnceLock::new();

/// The namespace `name`, from the cache, or read live when the cache does not have it
/// (not filled yet, or the namespace is seconds old).
async fn agency_namespace(
    client: &kube::Client,
    name: &str,
) -> Result<Option<PartialObjectMeta<Namespace>>, kube::Error> {
    let store = NAMESPACES.get_or_init(|| {
        let (reader, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            watcher(
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                watcher::Config::default()
                    .labels(AGENCY_LABEL)
                    .any_semantic(),
            ),
        )
        .default_backoff()
        .touched_objects();
        tokio::spawn(stream.for_each(|_| futures::future::ready(())));
        reader
    });
    if let Some(ns) = store.get(&ObjectRef::new(name)) {
        return Ok(Some(ns.as_ref().clone()));
    }
    Api::<Namespace>::all(client.clone())
        .get_metadata_opt(name)
        .await
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
    let ns = match agency_namespace(&state.client, &namespace).await {
        Ok(ns) => ns,
        Err(e) => {
            return refuse(
                response,
                Refusal::Unavailable,
                format!("cannot read namespace \"{namespace}\" to find its security level: {e}"),
            );
        }
    };
    let labels = ns
        .as_ref()
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    if !labels.contains_key(AGENCY_LABEL) {
        return refuse(
            response,
            Refusal::Invalid,
            format!(
                "namespace \"{namespace}\" belongs to no agency: Workloads run in an agency's namespace (<agency>-<environment>, e.g. so-tttt-da-nang-prod)"
            ),
        );
    }
    // An enforced, spent budget stops new workloads, scale-ups and larger requests, not
    // what runs.
    let growth = match (&request.operation, &request.old_object) {
        (Operation::Create, _) => growth(None, &workload.spec),
        (_, Some(old)) => growth(Some(&old.spec), &workload.spec),
        _ => None,
    };
    if let Some(growth) = growth
        && let Some(why) = budget_refusal(state, &labels[AGENCY_LABEL], &growth).await
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
        let level: u8 = labels
            .get(SECURITY_LEVEL_LABEL)
            .and_then(|l| l.parse().ok())
            .unwrap_or(5);
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
        let agency = match agency_namespace(&state.client, &namespace).await {
            Ok(ns) => ns
                .and_then(|n| n.metadata.labels)
                .and_then(|mut l| l.remove(AGENCY_LABEL)),
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
