//! The HTTP/JSON face of the DataServices service (its routes are in [`super::ROUTES`]).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};

use super::{Params, from_body, from_query, respond};
use crate::error::ApiError;
use crate::proto;
use crate::service::Api;

/// The routes of the DataServices service.
pub fn router() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/dataserviceclasses", get(list_classes))
        .route("/v1/dataserviceclaims", get(list_claims).post(create_claim))
        .route(
            "/v1/dataserviceclaims/{agency}/{environment}/{name}",
            get(get_claim).delete(delete_claim),
        )
        .route(
            "/v1/dataserviceclaims/{agency}/{environment}/{name}/binding",
            get(get_binding),
        )
        .route(
            "/v1/dataserviceclaims/{agency}/{environment}/{name}/rotate-password",
            post(rotate_password),
        )
        .route("/v1/datashares", get(list_shares).post(create_share))
        .route("/v1/datashares/{name}/approve", post(approve_share))
        .route("/v1/datashares/{name}/revoke", post(revoke_share))
        .route("/v1/datashares/{name}/binding", get(get_share_binding))
}

type ClaimPath = Path<(String, String, String)>;

async fn list_classes(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    let request =
        from_query::<proto::ListDataServiceClassesRequest>("ListDataServiceClassesRequest", q, &[]);
    respond(&api, &headers, request).await
}

async fn list_claims(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    let request =
        from_query::<proto::ListDataServiceClaimsRequest>("ListDataServiceClaimsRequest", q, &[]);
    respond(&api, &headers, request).await
}

async fn create_claim(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = from_body::<proto::DataServiceClaim>(&body)
        .map(|c| proto::CreateDataServiceClaimRequest { claim: Some(c) });
    respond(&api, &headers, request).await
}

async fn get_claim(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((agency, environment, name)): ClaimPath,
    Query(q): Params,
) -> Response {
    let request = from_query::<proto::GetDataServiceClaimRequest>(
        "GetDataServiceClaimRequest",
        q,
        &[
            ("agency", &agency),
            ("environment", &environment),
            ("name", &name),
        ],
    );
    respond(&api, &headers, request).await
}

async fn delete_claim(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((agency, environment, name)): ClaimPath,
    Query(q): Params,
) -> Response {
    let request = from_query::<proto::DeleteDataServiceClaimRequest>(
        "DeleteDataServiceClaimRequest",
        q,
        &[
            ("agency", &agency),
            ("environment", &environment),
            ("name", &name),
        ],
    );
    respond(&api, &headers, request).await
}

async fn get_binding(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((agency, environment, name)): ClaimPath,
    Query(q): Params,
) -> Response {
    let request = from_query::<proto::GetDataServiceBindingRequest>(
        "GetDataServiceBindingRequest",
        q,
        &[
            ("agency", &agency),
            ("environment", &environment),
            ("name", &name),
        ],
    );
    respond(&api, &headers, request).await
}

async fn rotate_password(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((agency, environment, name)): ClaimPath,
    Query(q): Params,
) -> Response {
    let request = from_query::<proto::RotateDataServicePasswordRequest>(
        "RotateDataServicePasswordRequest",
        q,
        &[
            ("agency", &agency),
            ("environment", &environment),
            ("name", &name),
        ],
    );
    respond(&api, &headers, request).await
}

async fn list_shares(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    let request = from_query::<proto::ListDataSharesRequest>("ListDataSharesRequest", q, &[]);
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

async fn approve_share(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Params,
) -> Response {
    let request: Result<proto::ApproveDataShareRequest, ApiError> =
        from_query("ApproveDataShareRequest", q, &[("name", &name)]);
    respond(&api, &headers, request).await
}

async fn revoke_share(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Params,
) -> Response {
    let request: Result<proto::RevokeDataShareRequest, ApiError> =
        from_query("RevokeDataShareRequest", q, &[("name", &name)]);
    respond(&api, &headers, request).await
}

async fn get_share_binding(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Params,
) -> Response {
    let request: Result<proto::GetDataShareBindingRequest, ApiError> =
        from_query("GetDataShareBindingRequest", q, &[("name", &name)]);
    respond(&api, &headers, request).await
}
