//! Each request type as an [`Operation`]: its method, its audit target, and the function
//! that serves it. Both faces (gRPC and HTTP) hand a request to [`Api::handle`].

use std::sync::Arc;

use futures::future::BoxFuture;
use govbroker_crds::DecisionOutcome;
use govbroker_ledger::Target;
use prost::Message as _;

use super::agencies::AgencyEvents;
use super::{Api, Method, methods, target};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::proto;

/// A request the API serves.
pub trait Operation: Send + Sized + 'static {
    /// What it answers.
    type Response: Send + 'static;
    /// Its method.
    const METHOD: Method;
    /// What it acts on, for the audit trail.
    fn target(&self, api: &Api) -> Target;
    /// The bytes digested into the audit record (the protobuf encoding).
    fn encoded(&self) -> Vec<u8>;
    /// The name of what the call created, when the server chose it (for the audit
    /// record's target).
    fn created_name(_response: &Self::Response) -> Option<String> {
        None
    }
    /// Serves it for `caller`.
    fn run(
        self,
        api: Arc<Api>,
        caller: Caller,
    ) -> BoxFuture<'static, Result<Self::Response, ApiError>>;
}

impl Api {
    /// Authenticates, serves and audits one request.
    pub async fn handle<O: Operation>(
        self: &Arc<Self>,
        token: Option<&str>,
        request: O,
    ) -> Result<O::Response, ApiError> {
        let bytes = request.encoded();
        let target = request.target(self);
        self.call(
            O::METHOD,
            token,
            &bytes,
            target,
            O::created_name,
            move |api, caller| request.run(api, caller),
        )
        .await
    }
}

macro_rules! operation {
    ($request:ty => $response:ty, $method:expr, |$r:ident| $target:expr, |$api:ident, $caller:ident, $req:ident| $body:expr) => {
        operation!($request => $response, $method, |$r| $target, |$api, $caller, $req| $body, |_created| None);
    };
    ($request:ty => $response:ty, $method:expr, |$r:ident| $target:expr, |$api:ident, $caller:ident, $req:ident| $body:expr, |$created:ident| $name:expr) => {
        impl Operation for $request {
            type Response = $response;
            const METHOD: Method = $method;
            fn created_name($created: &$response) -> Option<String> {
                $name
            }
            fn target(&self, _api: &Api) -> Target {
                let $r = self;
                $target
            }
            fn encoded(&self) -> Vec<u8> {
                self.encode_to_vec()
            }
            fn run(
                self,
                $api: Arc<Api>,
                $caller: Caller,
            ) -> BoxFuture<'static, Result<$response, ApiError>> {
                let $req = self;
                Box::pin(async move { $body.await })
            }
        }
    };
}

pub(crate) use operation;

operation!(proto::GetAgencyRequest => proto::Agency, methods::GET_AGENCY,
    |r| target("Agency", &r.name, Some(&r.name)),
    |api, caller, req| api.get_agency(caller, req));
operation!(proto::ListAgenciesRequest => proto::ListAgenciesResponse, methods::LIST_AGENCIES,
    |r| target("Agency", "", Some(&r.parent)),
    |api, caller, req| api.list_agencies(caller, req));
operation!(proto::GetAgencyTreeRequest => proto::AgencyTree, methods::GET_AGENCY_TREE,
    |r| target("Agency", &r.name, Some(&r.name)),
    |api, caller, req| api.get_agency_tree(caller, req));
operation!(proto::CreateAgencyRequest => proto::Agency, methods::CREATE_AGENCY,
    |r| {
        let name = r.agency.as_ref().map(|a| a.name.as_str()).unwrap_or_default();
        target("Agency", name, Some(name))
    },
    |api, caller, req| api.create_agency(caller, req));
operation!(proto::UpdateAgencyRequest => proto::Agency, methods::UPDATE_AGENCY,
    |r| target("Agency", &r.name, Some(&r.name)),
    |api, caller, req| api.update_agency(caller, req));
operation!(proto::DeleteAgencyRequest => proto::DeleteAgencyResponse, methods::DELETE_AGENCY,
    |r| target("Agency", &r.name, Some(&r.name)),
    |api, caller, req| api.delete_agency(caller, req));
operation!(proto::WatchAgencyRequest => AgencyEvents, methods::WATCH_AGENCY,
    |r| target("Agency", &r.name, Some(&r.name)),
    |api, caller, req| api.watch_agency(caller, req));
operation!(proto::CreateQuotaRequestRequest => proto::QuotaRequest, methods::CREATE_QUOTA_REQUEST,
    |r| target("QuotaRequest", "", Some(&r.agency)),
    |api, caller, req| api.create_quota_request(caller, req),
    |created| Some(created.name.clone()));
operation!(proto::ListQuotaRequestsRequest => proto::ListQuotaRequestsResponse, methods::LIST_QUOTA_REQUESTS,
    |r| target("QuotaRequest", "", Some(&r.agency)),
    |api, caller, req| api.list_quota_requests(caller, req));
operation!(proto::ListAuditRecordsRequest => proto::ListAuditRecordsResponse, methods::LIST_AUDIT_RECORDS,
    |r| target("AuditRecord", "", Some(&r.agency)),
    |api, caller, req| api.list_audit_records(caller, req));

/// ApproveQuotaRequest's request.
pub struct Approve(pub proto::DecideQuotaRequestRequest);
/// RejectQuotaRequest's request.
pub struct Reject(pub proto::DecideQuotaRequestRequest);

/// The agency a quota request concerns, if the cache knows it.
fn request_agency(api: &Api, name: &str) -> Option<String> {
    api.quota_requests
        .get(&kube::runtime::reflector::ObjectRef::new(name))
        .map(|qr| qr.spec.agency.clone())
}

macro_rules! decision {
    ($wrapper:ident, $method:expr, $outcome:expr) => {
        impl Operation for $wrapper {
            type Response = proto::QuotaRequest;
            const METHOD: Method = $method;
            fn target(&self, api: &Api) -> Target {
                target(
                    "QuotaRequest",
                    &self.0.name,
                    request_agency(api, &self.0.name).as_deref(),
                )
            }
            fn encoded(&self) -> Vec<u8> {
                self.0.encode_to_vec()
            }
            fn run(
                self,
                api: Arc<Api>,
                caller: Caller,
            ) -> BoxFuture<'static, Result<proto::QuotaRequest, ApiError>> {
                Box::pin(async move { api.decide_quota_request(caller, self.0, $outcome).await })
            }
        }
    };
}

decision!(
    Approve,
    methods::APPROVE_QUOTA_REQUEST,
    DecisionOutcome::Approved
);
decision!(
    Reject,
    methods::REJECT_QUOTA_REQUEST,
    DecisionOutcome::Rejected
);
