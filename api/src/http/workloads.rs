//! The HTTP/JSON face of the Workloads service (its routes are in [`super::ROUTES`]).

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use serde_json::json;

use super::{Params, bearer, from_body, from_query, respond};
use crate::proto;
use crate::service::Api;

/// The routes of the Workloads service.
pub fn router() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/workloads", post(create))
        .route("/v1/workloads/{agency}/{environment}", get(list))
        .route(
            "/v1/workloads/{agency}/{environment}/{name}",
            get(get_one).delete(delete),
        )
        .route(
            "/v1/workloads/{agency}/{environment}/{name}/scale",
            post(scale),
        )
        .route(
            "/v1/workloads/{agency}/{environment}/{name}/pause",
            post(pause),
        )
        .route(
            "/v1/workloads/{agency}/{environment}/{name}/resume",
            post(resume),
        )
        .route(
            "/v1/workloads/{agency}/{environment}/{name}/watch",
            get(watch),
        )
}

type Place = Path<(String, String)>;
type Address = Path<(String, String, String)>;

async fn create(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = from_body::<proto::Workload>(&body)
        .map(|w| proto::CreateWorkloadRequest { workload: Some(w) });
    respond(&api, &headers, request).await
}

async fn list(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((agency, environment)): Place,
    Query(q): Params,
) -> Response {
    let request = from_query::<proto::ListWorkloadsRequest>(
        "ListWorkloadsRequest",
        q,
        &[("agency", &agency), ("environment", &environment)],
    );
    respond(&api, &headers, request).await
}

macro_rules! by_address {
    ($handler:ident, $message:ty, $schema:literal) => {
        async fn $handler(
            State(api): State<Arc<Api>>,
            headers: HeaderMap,
            Path((agency, environment, name)): Address,
            Query(q): Params,
        ) -> Response {
            let request = from_query::<$message>(
                $schema,
                q,
                &[
                    ("agency", &agency),
                    ("environment", &environment),
                    ("name", &name),
                ],
            );
            respond(&api, &headers, request).await
        }
    };
}

by_address!(get_one, proto::GetWorkloadRequest, "GetWorkloadRequest");
by_address!(
    delete,
    proto::DeleteWorkloadRequest,
    "DeleteWorkloadRequest"
);
by_address!(scale, proto::ScaleWorkloadRequest, "ScaleWorkloadRequest");
by_address!(pause, proto::PauseWorkloadRequest, "PauseWorkloadRequest");
by_address!(
    resume,
    proto::ResumeWorkloadRequest,
    "ResumeWorkloadRequest"
);

async fn watch(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((agency, environment, name)): Address,
    Query(q): Params,
) -> Response {
    let request = match from_query::<proto::WatchWorkloadRequest>(
        "WatchWorkloadRequest",
        q,
        &[
            ("agency", &agency),
            ("environment", &environment),
            ("name", &name),
        ],
    ) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match api.handle(bearer(&headers).as_deref(), request).await {
        Ok(events) => {
            let lines = events.map(|event| {
                let value = match event {
                    Ok(event) => serde_json::to_vec(&event),
                    Err(e) => serde_json::to_vec(&json!({"error": e.body()})),
                };
                value.map(|mut bytes| {
                    bytes.push(b'\n');
                    Bytes::from(bytes)
                })
            });
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-ndjson")],
                Body::from_stream(lines),
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}
