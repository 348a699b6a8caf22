//! The operations of the API, independent of how they arrive (gRPC or HTTP/JSON).
//!
//! Every call goes through [`Api::call`]: authenticate the bearer token, run the
//! operation as the caller, and record it in the audit trail when it changes something
//! or is refused for identity or permission. The gRPC and HTTP faces are thin adapters
//! around the functions of the submodules, one per service.

pub mod agencies;
pub mod audit;
pub mod billing;
pub mod data_services;
pub mod operations;
pub mod quota_requests;
pub mod workloads;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use govbroker_crds::{Agency, QuotaRequest};
use govbroker_ledger::{Actor, AuditEntry, AuditLog, Outcome, Target};
use kube::runtime::reflector::Store;
use prometheus::{IntCounterVec, Opts, Registry};
use tracing::{error, info};

use crate::auth::{Caller, Identity, Permission};
use crate::error::ApiError;
use crate::validate;

/// Everything the operations share.
pub struct Api {
    /// Authentication, authorization and impersonating clients.
    pub identity: Identity,
    /// Every Agency, kept current by a watch.
    pub agencies: Store<Agency>,
    /// Every QuotaRequest, kept current by a watch.
    pub quota_requests: Store<QuotaRequest>,
    /// Every DataServiceClass, DataServiceClaim and DataShare, kept current by watches.
    pub data_services: data_services::DataServiceStores,
    /// Every Workload, in every namespace, kept current by a watch.
    pub workloads: kube::runtime::reflector::Store<govbroker_crds::Workload>,
    /// The audit trail.
    pub audit: AuditLog,
    /// Usage records and price lists, for bills.
    pub billing: billing::BillingSource,
    /// Calls by method and outcome.
    pub calls: IntCounterVec,
    /// Audit records that could not be written.
    pub audit_failures: IntCounterVec,
}

/// One method of the API: its full gRPC name and whether it changes anything.
#[derive(Clone, Copy, Debug)]
pub struct Method {
    /// e.g. `govbroker.v1.Agencies/GetAgency`.
    pub name: &'static str,
    /// Mutating calls are always audited; reads only when refused.
    pub mutating: bool,
}

impl Method {
    const fn read(name: &'static str) -> Method {
        Method {
            name,
            mutating: false,
        }
    }
    const fn write(name: &'static str) -> Method {
        Method {
            name,
            mutating: true,
        }
    }
}

/// Every method, by service.
pub mod methods {
    use super::Method;
    /// Agencies/GetAgency.
    pub const GET_AGENCY: Method = Method::read("govbroker.v1.Agencies/GetAgency");
    /// Agencies/ListAgencies.
    pub const LIST_AGENCIES: Method = Method::read("govbroker.v1.Agencies/ListAgencies");
    /// Agencies/GetAgencyTree.
    pub const GET_AGENCY_TREE: Method = Method::read("govbroker.v1.Agencies/GetAgencyTree");
    /// Agencies/CreateAgency.
    pub const CREATE_AGENCY: Method = Method::write("govbroker.v1.Agencies/CreateAgency");
    /// Agencies/UpdateAgency.
    pub const UPDATE_AGENCY: Method = Method::write("govbroker.v1.Agencies/UpdateAgency");
    /// Agencies/DeleteAgency.
    pub const DELETE_AGENCY: Method = Method::write("govbroker.v1.Agencies/DeleteAgency");
    /// Agencies/WatchAgency.
    pub const WATCH_AGENCY: Method = Method::read("govbroker.v1.Agencies/WatchAgency");
    /// QuotaRequests/CreateQuotaRequest.
    pub const CREATE_QUOTA_REQUEST: Method =
        Method::write("govbroker.v1.QuotaRequests/CreateQuotaRequest");
    /// QuotaRequests/ListQuotaRequests.
    pub const LIST_QUOTA_REQUESTS: Method =
        Method::read("govbroker.v1.QuotaRequests/ListQuotaRequests");
    /// QuotaRequests/ApproveQuotaRequest.
    pub const APPROVE_QUOTA_REQUEST: Method =
        Method::write("govbroker.v1.QuotaRequests/ApproveQuotaRequest");
    /// QuotaRequests/RejectQuotaRequest.
    pub const REJECT_QUOTA_REQUEST: Method =
        Method::write("govbroker.v1.QuotaRequests/RejectQuotaRequest");
    /// Audit/ListAuditRecords.
    pub const LIST_AUDIT_RECORDS: Method = Method::read("govbroker.v1.Audit/ListAuditRecords");
}

/// Field manager of the API's writes (made as the caller).
pub const FIELD_MANAGER: &str = "govbroker-api";

/// Parameters of the API's creates.
pub fn create_params() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    }
}

/// Parameters of the API's patches.
pub fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    }
}

/// What a call acts on, for the audit trail.
pub fn target(kind: &str, name: &str, agency: Option<&str>) -> Target {
    Target {
        kind: kind.to_owned(),
        name: name.to_owned(),
        agency: agency.filter(|a| !a.is_empty()).map(str::to_owned),
    }
}

/// Sorts `items` by `key`, keeps the first `size` and returns the next page's token
/// (empty on the last page): paging of a list every item of which the caller may see.
pub fn first_page<T>(items: &mut Vec<T>, size: usize, key: impl Fn(&T) -> String) -> String {
    items.sort_by_key(&key);
    let more = items.len() > size;
    items.truncate(size);
    match (more, items.last()) {
        (true, Some(last)) => validate::page_token(&key(last)),
        _ => String::new(),
    }
}

/// One page of a list the caller may see only part of: candidates are offered in key
/// order, each checked on its own, until the page is full.
pub struct Page<T> {
    size: usize,
    items: Vec<T>,
    last_key: Option<String>,
    more: bool,
}

impl<T> Page<T> {
    /// An empty page of at most `size` items.
    pub fn new(size: usize) -> Page<T> {
        Page {
            size,
            items: Vec::new(),
            last_key: None,
            more: false,
        }
    }

    /// Whether one more candidate fits; when not, a next page exists (the candidate is
    /// its first), so the caller stops offering.
    pub fn has_room(&mut self) -> bool {
        self.more = self.items.len() == self.size;
        !self.more
    }

    /// Adds an item the caller may see; `key` is its paging cursor.
    pub fn push(&mut self, key: String, item: T) {
        self.items.push(item);
        self.last_key = Some(key);
    }

    /// The items and the next page's token (empty on the last page).
    pub fn finish(self) -> (Vec<T>, String) {
        let token = match (self.more, self.last_key) {
            (true, Some(key)) => validate::page_token(&key),
            _ => String::new(),
        };
        (self.items, token)
    }
}

impl Api {
    /// The objects of kind `K` in `namespace`, read and changed as the caller (the API
    /// server's own authorization decides).
    pub fn namespaced_as<K>(
        &self,
        caller: &Caller,
        namespace: &str,
    ) -> Result<kube::Api<K>, ApiError>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Ok(kube::Api::namespaced(
            self.identity.client_for(caller)?,
            namespace,
        ))
    }

    /// Whether `caller` has the permission that `key` (an agency, a namespace) stands
    /// for, asked once per key in one call: a list checks many items of few owners.
    pub async fn can_once(
        &self,
        caller: &Caller,
        decisions: &mut BTreeMap<String, bool>,
        key: &str,
        permission: impl FnOnce() -> Permission,
    ) -> Result<bool, ApiError> {
        if let Some(may) = decisions.get(key) {
            return Ok(*may);
        }
        let may = self.identity.can(caller, &permission()).await?;
        decisions.insert(key.to_owned(), may);
        Ok(may)
    }
}

impl Api {
    /// Prometheus counters of the API, registered in `registry`.
    pub fn counters(
        registry: &Registry,
    ) -> Result<(IntCounterVec, IntCounterVec), prometheus::Error> {
        let calls = IntCounterVec::new(
            Opts::new(
                "govbroker_api_calls_total",
                "API calls by method and outcome",
            ),
            &["method", "outcome"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "govbroker_api_audit_write_failures_total",
                "Audit records that could not be written to the ledger",
            ),
            &["method"],
        )?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        Ok((calls, failures))
    }

    /// Runs `operation` for the bearer of `token`, auditing it as `method` on `target`.
    /// `request` is the request's protobuf encoding, digested into the record;
    /// `created_name` names the target from the answer when only the server chose it.
    pub async fn call<T, F, Fut>(
        self: &Arc<Self>,
        method: Method,
        token: Option<&str>,
        request: &[u8],
        mut target: Target,
        created_name: fn(&T) -> Option<String>,
        operation: F,
    ) -> Result<T, ApiError>
    where
        F: FnOnce(Arc<Api>, Caller) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let started = jiff::Timestamp::now();
        let (caller, result) = match self.identity.authenticate(token).await {
            Ok(caller) => {
                let result = operation(self.clone(), caller.clone()).await;
                (Some(caller), result)
            }
            Err(e) => (None, Err(e)),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code_name(),
        };
        self.calls.with_label_values(&[method.name, outcome]).inc();
        if let Some(name) = result.as_ref().ok().and_then(created_name) {
            target.name = name;
        }
        let denied = result.as_ref().is_err_and(ApiError::is_denial);
        if method.mutating || denied {
            let entry = AuditEntry {
                time: started,
                actor: Actor {
                    user: caller.as_ref().map(|c| c.user.clone()).unwrap_or_default(),
                    groups: caller
                        .as_ref()
                        .map(|c| c.groups.clone())
                        .unwrap_or_default(),
                },
                method: method.name.to_owned(),
                target,
                request_digest: govbroker_ledger::digest(request),
                outcome: match &result {
                    Ok(_) => Outcome::ok(),
                    Err(e) => Outcome {
                        code: e.code_name().to_owned(),
                        message: e.to_string(),
                    },
                },
            };
            if let Err(e) = self.audit.append(entry.clone()).await {
                // The call has happened; losing its record silently is the one thing the
                // trail must not do, so it goes to the log in full (it holds no secret).
                self.audit_failures.with_label_values(&[method.name]).inc();
                error!(error = %e, record = %serde_json::to_string(&entry).unwrap_or_default(), "audit record not written");
            }
        }
        if let Err(e) = &result {
            info!(
                method = method.name,
                user = caller.as_ref().map(|c| c.user.as_str()).unwrap_or(""),
                code = e.code_name(),
                "refused"
            );
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_page_is_sorted_and_its_token_names_its_last_item() {
        let mut items = vec!["c", "a", "d", "b"];
        let token = first_page(&mut items, 2, |s| (*s).to_owned());
        assert_eq!(items, ["a", "b"]);
        assert_eq!(validate::cursor("t", &token).unwrap().as_deref(), Some("b"));
        let mut items = vec!["b", "a"];
        assert_eq!(first_page(&mut items, 2, |s| (*s).to_owned()), "");
        assert_eq!(items, ["a", "b"]);
    }

    #[test]
    fn a_page_has_a_next_one_only_when_a_candidate_did_not_fit() {
        let mut page = Page::new(2);
        for key in ["a", "b", "c"] {
            if !page.has_room() {
                break;
            }
            // "b" is not the caller's to see: the page fills with "a" and "c".
            if key != "b" {
                page.push(key.to_owned(), key);
            }
        }
        assert_eq!(page.finish(), (vec!["a", "c"], String::new()));
        let mut page = Page::new(1);
        for key in ["a", "b"] {
            if !page.has_room() {
                break;
            }
            page.push(key.to_owned(), key);
        }
        let (items, token) = page.finish();
        assert_eq!(items, ["a"]);
        assert_eq!(validate::cursor("t", &token).unwrap().as_deref(), Some("a"));
    }
}
