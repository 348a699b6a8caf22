//! CustomResource types of the API group `govbroker.io/v1alpha1`, and the generator of
//! their CRD YAML.
//!
//! # How the CRD YAML is made
//!
//! The Rust types in this crate are the single source of truth. Each kind derives
//! [`kube::CustomResource`], and [`all_crds`] lists the resulting
//! [`CustomResourceDefinition`]s. The `crdgen` binary renders every one of them with
//! [`render`] into `charts/govbroker/crds/<plural>.<group>.yaml`, which is checked in so
//! that Helm installs exactly what the types describe:
//!
//! ```text
//! cargo run -p govbroker-crds --bin crdgen            # rewrite the chart's CRDs
//! cargo run -p govbroker-crds --bin crdgen -- --check # fail if they are stale
//! ```
//!
//! A unit test of this crate runs the same check, so a type changed without
//! regenerating the YAML fails `cargo test`.
#![forbid(unsafe_code)]

pub mod agency;
pub mod data_service_claim;
pub mod data_service_class;
pub mod data_share;
pub mod price_list;
pub mod quota;
pub mod quota_request;
mod render;
pub mod workload;

pub use agency::{
    Agency, AgencyLevel, AgencyQuotaStatus, AgencySpec, AgencyStatus, Environment, Owners,
    ServiceAccountRef,
};
pub use agency::{AgencyCostStatus, Budget};
pub use data_service_claim::{
    ClaimPhase, DataServiceClaim, DataServiceClaimSpec, DataServiceClaimStatus, DeletionPolicy,
    ROTATE_PASSWORD_ANNOTATION,
};
pub use data_service_class::{
    ALL_SECURITY_LEVELS, DataServiceClass, DataServiceClassSpec, DataServiceClassStatus,
    DataServiceEngine, DataServicePlan, PlanLimits, SecretRef, ServerTls, SharedServer,
};
pub use data_share::{
    DataShare, DataSharePhase, DataShareSpec, DataShareStatus, ShareAccess, ShareApproval,
    ShareConsumer, ShareOwner,
};
pub use price_list::{
    PlanPrice, PriceList, PriceListRevision, PriceListSpec, PriceListStatus, PriceRates,
};
pub use quota::{QuotaResource, ResourceAmounts};
pub use quota_request::{
    DecisionOutcome, QuotaDecision, QuotaRequest, QuotaRequestPhase, QuotaRequestSpec,
    QuotaRequestStatus,
};

pub use workload::{
    ClaimBinding, CpuMemory, InjectAs, PortProtocol, Workload, WorkloadEnvVar, WorkloadPhase,
    WorkloadPort, WorkloadResources, WorkloadSpec, WorkloadStatus,
};

pub use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
pub use render::{
    Error, RenderedCrd, StaleFile, Staleness, chart_crd_dir, check_dir, file_name, render,
    render_all, write_dir,
};

/// The API group of every govbroker kind.
pub const GROUP: &str = "govbroker.io";

/// The version of the API group served by this crate.
pub const VERSION: &str = "v1alpha1";

/// Every CustomResourceDefinition of govbroker, in a stable order.
///
/// Each kind adds `Kind::crd()` here, and `crdgen` picks it up without further change.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt as _;
    vec![
        Agency::crd(),
        QuotaRequest::crd(),
        DataServiceClass::crd(),
        DataServiceClaim::crd(),
        DataShare::crd(),
        PriceList::crd(),
        Workload::crd(),
    ]
    .into_iter()
    .map(reflow_descriptions)
    .collect()
}

/// Joins the hard-wrapped lines of doc comments into paragraphs, so that `kubectl
/// explain` wraps descriptions to the terminal instead of breaking them mid-sentence.
fn reflow_descriptions(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    match v {
                        serde_json::Value::String(text) if key == "description" => {
                            *text = reflow(text);
                        }
                        _ => walk(v),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    walk(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

/// One paragraph per blank-line-separated block, its lines joined by spaces.
fn reflow(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            paragraph
                .split('\n')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::reflow;

    #[test]
    fn reflow_joins_lines_and_keeps_paragraphs() {
        assert_eq!(reflow("a first\nline\n\nsecond"), "a first line\n\nsecond");
        assert_eq!(reflow("single"), "single");
    }
}
