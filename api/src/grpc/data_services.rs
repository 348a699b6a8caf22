//! The gRPC face of the DataServices service.

use tonic::{Request, Response, Status};

use super::Grpc;
use crate::proto;
use crate::proto::data_services_server::DataServices;

#[tonic::async_trait]
impl DataServices for Grpc {
    async fn list_data_service_classes(
        &self,
        r: Request<proto::ListDataServiceClassesRequest>,
    ) -> Result<Response<proto::ListDataServiceClassesResponse>, Status> {
        self.unary(r).await
    }
    async fn create_data_service_claim(
        &self,
        r: Request<proto::CreateDataServiceClaimRequest>,
    ) -> Result<Response<proto::DataServiceClaim>, Status> {
        self.unary(r).await
    }
    async fn get_data_service_claim(
        &self,
        r: Request<proto::GetDataServiceClaimRequest>,
    ) -> Result<Response<proto::DataServiceClaim>, Status> {
        self.unary(r).await
    }
    async fn list_data_service_claims(
        &self,
        r: Request<proto::ListDataServiceClaimsRequest>,
    ) -> Result<Response<proto::ListDataServiceClaimsResponse>, Status> {
        self.unary(r).await
    }
    async fn delete_data_service_claim(
        &self,
        r: Request<proto::DeleteDataServiceClaimRequest>,
    ) -> Result<Response<proto::DeleteDataServiceClaimResponse>, Status> {
        self.unary(r).await
    }
    async fn get_data_service_binding(
        &self,
        r: Request<proto::GetDataServiceBindingRequest>,
    ) -> Result<Response<proto::DataServiceBinding>, Status> {
        self.unary(r).await
    }
    async fn rotate_data_service_password(
        &self,
        r: Request<proto::RotateDataServicePasswordRequest>,
    ) -> Result<Response<proto::DataServiceClaim>, Status> {
        self.unary(r).await
    }
    async fn create_data_share(
        &self,
        r: Request<proto::CreateDataShareRequest>,
    ) -> Result<Response<proto::DataShare>, Status> {
        self.unary(r).await
    }
    async fn list_data_shares(
        &self,
        r: Request<proto::ListDataSharesRequest>,
    ) -> Result<Response<proto::ListDataSharesResponse>, Status> {
        self.unary(r).await
    }
    async fn approve_data_share(
        &self,
        r: Request<proto::ApproveDataShareRequest>,
    ) -> Result<Response<proto::DataShare>, Status> {
        self.unary(r).await
    }
    async fn revoke_data_share(
        &self,
        r: Request<proto::RevokeDataShareRequest>,
    ) -> Result<Response<proto::DataShare>, Status> {
        self.unary(r).await
    }
    async fn get_data_share_binding(
        &self,
        r: Request<proto::GetDataShareBindingRequest>,
    ) -> Result<Response<proto::DataServiceBinding>, Status> {
        self.unary(r).await
    }
}
