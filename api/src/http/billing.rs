//! The HTTP/JSON face of the Billing service (its routes are in [`super::ROUTES`]).

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use super::by_query;
use crate::proto;
use crate::service::Api;

/// The routes of the Billing service: every call is read from the query and the agency
/// in the path.
pub fn router() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/bills/{agency}", get(by_query::<proto::GetBillRequest>))
        .route(
            "/v1/bills/{agency}/subtree",
            get(by_query::<proto::ListBillsRequest>),
        )
        .route(
            "/v1/bills/{agency}/export",
            get(by_query::<proto::ExportBillRequest>),
        )
        .route(
            "/v1/bills/{agency}/rerate",
            post(by_query::<proto::RerateBillRequest>),
        )
        .route(
            "/v1/usage/{agency}",
            get(by_query::<proto::GetUsageRequest>),
        )
}
