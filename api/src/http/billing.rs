//! The HTTP/JSON face of the Billing service (its routes are in [`super::ROUTES`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};

use super::{Params, from_query, respond};
use crate::proto;
use crate::service::Api;

/// The routes of the Billing service.
pub fn router() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/bills/{agency}", get(get_bill))
        .route("/v1/bills/{agency}/subtree", get(list_bills))
        .route("/v1/bills/{agency}/export", get(export_bill))
        .route("/v1/bills/{agency}/rerate", post(rerate_bill))
        .route("/v1/usage/{agency}", get(get_usage))
}

async fn get_bill(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(agency): Path<String>,
    Query(q): Params,
) -> Response {
    let request = from_query::<proto::GetBillRequest>("GetBillRequest", q, &[("agency", &agency)]);
    respond(&api, &headers, request).await
}

async fn list_bills(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(agency): Path<String>,
    Query(q): Params,
) -> Response {
    let request =
        from_query::<proto::ListBillsRequest>("ListBillsRequest", q, &[("agency", &agency)]);
    respond(&api, &headers, request).await
}

async fn export_bill(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(agency): Path<String>,
    Query(q): Params,
) -> Response {
    let request =
        from_query::<proto::ExportBillRequest>("ExportBillRequest", q, &[("agency", &agency)]);
    respond(&api, &headers, request).await
}

async fn get_usage(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(agency): Path<String>,
    Query(q): Params,
) -> Response {
    let request =
        from_query::<proto::GetUsageRequest>("GetUsageRequest", q, &[("agency", &agency)]);
    respond(&api, &headers, request).await
}

async fn rerate_bill(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(agency): Path<String>,
    Query(q): Params,
) -> Response {
    let request =
        from_query::<proto::RerateBillRequest>("RerateBillRequest", q, &[("agency", &agency)]);
    respond(&api, &headers, request).await
}
