//! The HTTP/JSON face of the Workloads service (its routes are in [`super::ROUTES`]).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};

use super::{by_query, from_body, respond, watch};
use crate::proto;
use crate::service::Api;

/// The routes of the Workloads service.
pub fn router() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/workloads", post(create))
        .route(
            "/v1/workloads/{agency}/{environment}",
            get(by_query::<proto::ListWorkloadsRequest>),
        )
        .route(
            "/v1/workloads/{agency}/{environment}/{name}",
            get(by_query::<proto::GetWorkloadRequest>)
                .delete(by_query::<proto::DeleteWorkloadRequest>),
        )
        .route(
            "/v1/workloads/{agency}/{environment}/{name}/scale",
            post(by_query::<proto::ScaleWorkloadRequest>),
        )
        .route(
            "/v1/workloads/{agency}/{environment}/{name}/pause",
            post(by_query::<proto::PauseWorkloadRequest>),
        )
        .route(
            "/v1/workloads/{agency}/{environment}/{name}/resume",
            post(by_query::<proto::ResumeWorkloadRequest>),
        )
        .route(
            "/v1/workloads/{agency}/{environment}/{name}/watch",
            get(watch::<proto::WatchWorkloadRequest, _>),
        )
}

async fn create(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = from_body::<proto::Workload>(&body)
        .map(|w| proto::CreateWorkloadRequest { workload: Some(w) });
    respond(&api, &headers, request).await
}
