//! The gRPC face: each method hands its request to [`Api::handle`].

mod billing;
mod data_services;
mod workloads;

use std::sync::Arc;

use futures::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::proto;
use crate::proto::agencies_server::{Agencies, AgenciesServer};
use crate::proto::audit_server::{Audit, AuditServer};
use crate::proto::billing_server::BillingServer;
use crate::proto::data_services_server::DataServicesServer;
use crate::proto::quota_requests_server::{QuotaRequests, QuotaRequestsServer};
use crate::proto::workloads_server::WorkloadsServer;
use crate::service::Api;
use crate::service::operations::{Approve, Operation, Reject};

/// The bearer token of a gRPC request (`authorization: Bearer <token>`).
fn bearer<T>(request: &Request<T>) -> Option<String> {
    crate::auth::bearer_token(request.metadata().get("authorization")?.to_str().ok()?)
}

/// The services over one [`Api`].
#[derive(Clone)]
pub struct Grpc(pub Arc<Api>);

impl Grpc {
    async fn unary<O: Operation>(
        &self,
        request: Request<O>,
    ) -> Result<Response<O::Response>, Status> {
        let token = bearer(&request);
        Ok(Response::new(
            self.0
                .handle(token.as_deref(), request.into_inner())
                .await?,
        ))
    }

    /// The tonic routes of every service.
    pub fn routes(self) -> tonic::service::Routes {
        tonic::service::Routes::new(AgenciesServer::new(self.clone()))
            .add_service(QuotaRequestsServer::new(self.clone()))
            .add_service(DataServicesServer::new(self.clone()))
            .add_service(WorkloadsServer::new(self.clone()))
            .add_service(BillingServer::new(self.clone()))
            .add_service(AuditServer::new(self))
    }
}

type EventStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<proto::AgencyEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Agencies for Grpc {
    async fn get_agency(
        &self,
        r: Request<proto::GetAgencyRequest>,
    ) -> Result<Response<proto::Agency>, Status> {
        self.unary(r).await
    }
    async fn list_agencies(
        &self,
        r: Request<proto::ListAgenciesRequest>,
    ) -> Result<Response<proto::ListAgenciesResponse>, Status> {
        self.unary(r).await
    }
    async fn get_agency_tree(
        &self,
        r: Request<proto::GetAgencyTreeRequest>,
    ) -> Result<Response<proto::AgencyTree>, Status> {
        self.unary(r).await
    }
    async fn create_agency(
        &self,
        r: Request<proto::CreateAgencyRequest>,
    ) -> Result<Response<proto::Agency>, Status> {
        self.unary(r).await
    }
    async fn update_agency(
        &self,
        r: Request<proto::UpdateAgencyRequest>,
    ) -> Result<Response<proto::Agency>, Status> {
        self.unary(r).await
    }
    async fn delete_agency(
        &self,
        r: Request<proto::DeleteAgencyRequest>,
    ) -> Result<Response<proto::DeleteAgencyResponse>, Status> {
        self.unary(r).await
    }

    type WatchAgencyStream = EventStream;

    async fn watch_agency(
        &self,
        r: Request<proto::WatchAgencyRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let events = self.unary(r).await?.into_inner();
        Ok(Response::new(Box::pin(
            events.map(|e| e.map_err(Status::from)),
        )))
    }
}

#[tonic::async_trait]
impl QuotaRequests for Grpc {
    async fn create_quota_request(
        &self,
        r: Request<proto::CreateQuotaRequestRequest>,
    ) -> Result<Response<proto::QuotaRequest>, Status> {
        self.unary(r).await
    }
    async fn list_quota_requests(
        &self,
        r: Request<proto::ListQuotaRequestsRequest>,
    ) -> Result<Response<proto::ListQuotaRequestsResponse>, Status> {
        self.unary(r).await
    }
    async fn approve_quota_request(
        &self,
        r: Request<proto::DecideQuotaRequestRequest>,
    ) -> Result<Response<proto::QuotaRequest>, Status> {
        self.unary(r.map(Approve)).await
    }
    async fn reject_quota_request(
        &self,
        r: Request<proto::DecideQuotaRequestRequest>,
    ) -> Result<Response<proto::QuotaRequest>, Status> {
        self.unary(r.map(Reject)).await
    }
}

#[tonic::async_trait]
impl Audit for Grpc {
    async fn list_audit_records(
        &self,
        r: Request<proto::ListAuditRecordsRequest>,
    ) -> Result<Response<proto::ListAuditRecordsResponse>, Status> {
        self.unary(r).await
    }
}
