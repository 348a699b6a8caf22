//! The gRPC face of the Workloads service.

use futures::StreamExt as _;
use tonic::{Request, Response, Status};

use super::Grpc;
use crate::proto;
use crate::proto::workloads_server::Workloads;

type WorkloadEventStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<proto::WorkloadEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Workloads for Grpc {
    async fn create_workload(
        &self,
        r: Request<proto::CreateWorkloadRequest>,
    ) -> Result<Response<proto::Workload>, Status> {
        self.unary(r).await
    }
    async fn get_workload(
        &self,
        r: Request<proto::GetWorkloadRequest>,
    ) -> Result<Response<proto::Workload>, Status> {
        self.unary(r).await
    }
    async fn list_workloads(
        &self,
        r: Request<proto::ListWorkloadsRequest>,
    ) -> Result<Response<proto::ListWorkloadsResponse>, Status> {
        self.unary(r).await
    }
    async fn scale_workload(
        &self,
        r: Request<proto::ScaleWorkloadRequest>,
    ) -> Result<Response<proto::Workload>, Status> {
        self.unary(r).await
    }
    async fn pause_workload(
        &self,
        r: Request<proto::PauseWorkloadRequest>,
    ) -> Result<Response<proto::Workload>, Status> {
        self.unary(r).await
    }
    async fn resume_workload(
        &self,
        r: Request<proto::ResumeWorkloadRequest>,
    ) -> Result<Response<proto::Workload>, Status> {
        self.unary(r).await
    }
    async fn delete_workload(
        &self,
        r: Request<proto::DeleteWorkloadRequest>,
    ) -> Result<Response<proto::DeleteWorkloadResponse>, Status> {
        self.unary(r).await
    }

    type WatchWorkloadStream = WorkloadEventStream;

    async fn watch_workload(
        &self,
        r: Request<proto::WatchWorkloadRequest>,
    ) -> Result<Response<WorkloadEventStream>, Status> {
        let events = self.unary(r).await?.into_inner();
        Ok(Response::new(Box::pin(
            events.map(|e| e.map_err(Status::from)),
        )))
    }
}
