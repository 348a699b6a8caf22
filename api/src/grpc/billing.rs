//! The gRPC face of the Billing service.

use tonic::{Request, Response, Status};

use super::Grpc;
use crate::proto;
use crate::proto::billing_server::Billing;

#[tonic::async_trait]
impl Billing for Grpc {
    async fn get_bill(
        &self,
        r: Request<proto::GetBillRequest>,
    ) -> Result<Response<proto::Bill>, Status> {
        self.unary(r).await
    }
    async fn list_bills(
        &self,
        r: Request<proto::ListBillsRequest>,
    ) -> Result<Response<proto::ListBillsResponse>, Status> {
        self.unary(r).await
    }
    async fn export_bill(
        &self,
        r: Request<proto::ExportBillRequest>,
    ) -> Result<Response<proto::ExportBillResponse>, Status> {
        self.unary(r).await
    }
    async fn get_usage(
        &self,
        r: Request<proto::GetUsageRequest>,
    ) -> Result<Response<proto::Usage>, Status> {
        self.unary(r).await
    }
    async fn rerate_bill(
        &self,
        r: Request<proto::RerateBillRequest>,
    ) -> Result<Response<proto::Bill>, Status> {
        self.unary(r).await
    }
}
