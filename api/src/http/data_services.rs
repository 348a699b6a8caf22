//! The HTTP/JSON face of the DataServices service (its routes are in [`super::ROUTES`]).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};

use super::{by_query, from_body, respond};
use crate::proto;
use crate::service::Api;

/// The routes of the DataServices service.
pub fn router() -> Router<Arc<Api>> {
    Router::new()
        .route(
            "/v1/dataserviceclasses",
            get(by_query::<proto::ListDataServiceClassesRequest>),
        )
        .route(
            "/v1/dataserviceclaims",
            get(by_query::<proto::ListDataServiceClaimsRequest>).post(create_claim),
        )
        .route(
            "/v1/dataserviceclaims/{agency}/{environment}/{name}",
            get(by_query::<proto::GetDataServiceClaimRequest>)
                .delete(by_query::<proto::DeleteDataServiceClaimRequest>),
        )
        .route(
            "/v1/dataserviceclaims/{agency}/{environment}/{name}/binding",
            get(by_query::<proto::GetDataServiceBindingRequest>),
        )
        .route(
            "/v1/dataserviceclaims/{agency}/{environment}/{name}/rotate-password",
            post(by_query::<proto::RotateDataServicePasswordRequest>),
        )
        .route(
            "/v1/datashares",
            get(by_query::<proto::ListDataSharesRequest>).post(create_share),
        )
        .route(
            "/v1/datashares/{name}/approve",
            post(by_query::<proto::ApproveDataShareRequest>),
        )
        .route(
            "/v1/datashares/{name}/revoke",
            post(by_query::<proto::RevokeDataShareRequest>),
        )
        .route(
            "/v1/datashares/{name}/binding",
            get(by_query::<proto::GetDataShareBindingRequest>),
        )
}

async fn create_claim(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = from_body::<proto::DataServiceClaim>(&body)
        .map(|c| proto::CreateDataServiceClaimRequest { claim: Some(c) });
    respond(&api, &headers, request).await
}

async fn create_share(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        &api,
        &headers,
        from_body::<proto::CreateDataShareRequest>(&body),
    )
    .await
}
