//! The HTTP/JSON face: the same operations as gRPC, with proto3 JSON bodies, described
//! by an OpenAPI document at [`OPENAPI_PATH`] built from the same protos.

mod billing;
mod data_services;
mod workloads;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::proto;
use crate::service::Api;
use crate::service::operations::{Approve, Operation, Reject};

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// One HTTP route, as the OpenAPI document describes it.
pub struct Route {
    /// `get`, `post`, `patch`, `delete`.
    pub method: &'static str,
    /// Path with `{name}` parameters.
    pub path: &'static str,
    /// The gRPC method it mirrors (the OpenAPI operationId).
    pub operation: &'static str,
    /// One line for the document.
    pub summary: &'static str,
    /// The message whose fields are query parameters (minus path parameters).
    pub query: Option<&'static str>,
    /// The message of the JSON body.
    pub body: Option<&'static str>,
    /// The message answered (for watch: one per line).
    pub response: &'static str,
    /// Whether the answer is a stream of JSON lines.
    pub streaming: bool,
}

const fn route(
    method: &'static str,
    path: &'static str,
    operation: &'static str,
    summary: &'static str,
    query: Option<&'static str>,
    body: Option<&'static str>,
    response: &'static str,
) -> Route {
    Route {
        method,
        path,
        operation,
        summary,
        query,
        body,
        response,
        streaming: false,
    }
}

/// Every route of the HTTP face.
pub const ROUTES: &[Route] = &[
    route(
        "get",
        "/v1/agencies",
        "ListAgencies",
        "Agencies the caller may read, filtered and paged.",
        Some("ListAgenciesRequest"),
        None,
        "ListAgenciesResponse",
    ),
    route(
        "post",
        "/v1/agencies",
        "CreateAgency",
        "Creates an agency (platform admins).",
        None,
        Some("Agency"),
        "Agency",
    ),
    route(
        "get",
        "/v1/agencies/{name}",
        "GetAgency",
        "One agency.",
        Some("GetAgencyRequest"),
        None,
        "Agency",
    ),
    route(
        "patch",
        "/v1/agencies/{name}",
        "UpdateAgency",
        "Changes the fields named in updateMask.",
        None,
        Some("UpdateAgencyRequest"),
        "Agency",
    ),
    route(
        "delete",
        "/v1/agencies/{name}",
        "DeleteAgency",
        "Deletes an agency; cascade=true for one with children.",
        Some("DeleteAgencyRequest"),
        None,
        "DeleteAgencyResponse",
    ),
    route(
        "get",
        "/v1/agencies/{name}/tree",
        "GetAgencyTree",
        "An agency and its descendants, depth first.",
        Some("GetAgencyTreeRequest"),
        None,
        "AgencyTree",
    ),
    Route {
        streaming: true,
        ..route(
            "get",
            "/v1/agencies/{name}/watch",
            "WatchAgency",
            "The agency now, then each change, one JSON object per line.",
            Some("WatchAgencyRequest"),
            None,
            "AgencyEvent",
        )
    },
    route(
        "get",
        "/v1/quotarequests",
        "ListQuotaRequests",
        "Quota requests the caller may read, newest first.",
        Some("ListQuotaRequestsRequest"),
        None,
        "ListQuotaRequestsResponse",
    ),
    route(
        "post",
        "/v1/quotarequests",
        "CreateQuotaRequest",
        "Files a quota request for an agency the caller owns.",
        None,
        Some("CreateQuotaRequestRequest"),
        "QuotaRequest",
    ),
    route(
        "post",
        "/v1/quotarequests/{name}/approve",
        "ApproveQuotaRequest",
        "Approves a pending request (the parent's owners).",
        None,
        Some("DecideQuotaRequestRequest"),
        "QuotaRequest",
    ),
    route(
        "post",
        "/v1/quotarequests/{name}/reject",
        "RejectQuotaRequest",
        "Rejects a pending request (the parent's owners).",
        None,
        Some("DecideQuotaRequestRequest"),
        "QuotaRequest",
    ),
    route(
        "get",
        "/v1/audit",
        "ListAuditRecords",
        "Audit records, oldest first.",
        Some("ListAuditRecordsRequest"),
        None,
        "ListAuditRecordsResponse",
    ),
    route(
        "get",
        "/v1/dataserviceclasses",
        "ListDataServiceClasses",
        "Data-service classes (shared servers) and their plans.",
        Some("ListDataServiceClassesRequest"),
        None,
        "ListDataServiceClassesResponse",
    ),
    route(
        "get",
        "/v1/dataserviceclaims",
        "ListDataServiceClaims",
        "Data-service claims the caller may read, by namespace and name.",
        Some("ListDataServiceClaimsRequest"),
        None,
        "ListDataServiceClaimsResponse",
    ),
    route(
        "post",
        "/v1/dataserviceclaims",
        "CreateDataServiceClaim",
        "Claims a database or Redis user in one of an agency's environments.",
        None,
        Some("DataServiceClaim"),
        "DataServiceClaim",
    ),
    route(
        "get",
        "/v1/dataserviceclaims/{agency}/{environment}/{name}",
        "GetDataServiceClaim",
        "One data-service claim.",
        Some("GetDataServiceClaimRequest"),
        None,
        "DataServiceClaim",
    ),
    route(
        "delete",
        "/v1/dataserviceclaims/{agency}/{environment}/{name}",
        "DeleteDataServiceClaim",
        "Deletes a claim; its data is dropped or kept as its deletion policy says.",
        Some("DeleteDataServiceClaimRequest"),
        None,
        "DeleteDataServiceClaimResponse",
    ),
    route(
        "get",
        "/v1/dataserviceclaims/{agency}/{environment}/{name}/binding",
        "GetDataServiceBinding",
        "A claim's connection details and credentials (callers who may read Secrets there).",
        Some("GetDataServiceBindingRequest"),
        None,
        "DataServiceBinding",
    ),
    route(
        "post",
        "/v1/dataserviceclaims/{agency}/{environment}/{name}/rotate-password",
        "RotateDataServicePassword",
        "Gives a claim a new password (the binding Secret follows).",
        Some("RotateDataServicePasswordRequest"),
        None,
        "DataServiceClaim",
    ),
    route(
        "get",
        "/v1/datashares",
        "ListDataShares",
        "Data shares of the agencies the caller may read, newest first.",
        Some("ListDataSharesRequest"),
        None,
        "ListDataSharesResponse",
    ),
    route(
        "post",
        "/v1/datashares",
        "CreateDataShare",
        "Proposes a share of a claim with another agency (unapproved).",
        None,
        Some("CreateDataShareRequest"),
        "DataShare",
    ),
    route(
        "post",
        "/v1/datashares/{name}/approve",
        "ApproveDataShare",
        "Approves a pending share (owners of the owner agency).",
        Some("ApproveDataShareRequest"),
        None,
        "DataShare",
    ),
    route(
        "post",
        "/v1/datashares/{name}/revoke",
        "RevokeDataShare",
        "Ends a share for good.",
        Some("RevokeDataShareRequest"),
        None,
        "DataShare",
    ),
    route(
        "get",
        "/v1/datashares/{name}/binding",
        "GetDataShareBinding",
        "A granted share's read-only credentials in one of the consumer's environments (environment=; callers who may read Secrets there).",
        Some("GetDataShareBindingRequest"),
        None,
        "DataServiceBinding",
    ),
    route(
        "get",
        "/v1/workloads/{agency}/{environment}",
        "ListWorkloads",
        "The workloads of an agency's environment, by name, paged.",
        Some("ListWorkloadsRequest"),
        None,
        "ListWorkloadsResponse",
    ),
    route(
        "post",
        "/v1/workloads",
        "CreateWorkload",
        "Creates a workload in an agency's environment.",
        None,
        Some("Workload"),
        "Workload",
    ),
    route(
        "get",
        "/v1/workloads/{agency}/{environment}/{name}",
        "GetWorkload",
        "One workload and its status.",
        Some("GetWorkloadRequest"),
        None,
        "Workload",
    ),
    route(
        "delete",
        "/v1/workloads/{agency}/{environment}/{name}",
        "DeleteWorkload",
        "Deletes a workload with everything it made.",
        Some("DeleteWorkloadRequest"),
        None,
        "DeleteWorkloadResponse",
    ),
    route(
        "post",
        "/v1/workloads/{agency}/{environment}/{name}/scale",
        "ScaleWorkload",
        "Sets the replicas (query parameter replicas) within the quota.",
        Some("ScaleWorkloadRequest"),
        None,
        "Workload",
    ),
    route(
        "post",
        "/v1/workloads/{agency}/{environment}/{name}/pause",
        "PauseWorkload",
        "Stops every replica, keeping the workload.",
        Some("PauseWorkloadRequest"),
        None,
        "Workload",
    ),
    route(
        "post",
        "/v1/workloads/{agency}/{environment}/{name}/resume",
        "ResumeWorkload",
        "Starts the replicas of a paused workload again.",
        Some("ResumeWorkloadRequest"),
        None,
        "Workload",
    ),
    Route {
        streaming: true,
        ..route(
            "get",
            "/v1/workloads/{agency}/{environment}/{name}/watch",
            "WatchWorkload",
            "The workload now, then each change, one JSON object per line.",
            Some("WatchWorkloadRequest"),
            None,
            "WorkloadEvent",
        )
    },
    route(
        "get",
        "/v1/bills/{agency}",
        "GetBill",
        "One agency's bill for a month (default: this month), with its subtree's total.",
        Some("GetBillRequest"),
        None,
        "Bill",
    ),
    route(
        "get",
        "/v1/bills/{agency}/subtree",
        "ListBills",
        "The totals of an agency and each of its descendants for a month.",
        Some("ListBillsRequest"),
        None,
        "ListBillsResponse",
    ),
    route(
        "get",
        "/v1/bills/{agency}/export",
        "ExportBill",
        "One agency's bill as a CSV or JSON file (format=csv|json).",
        Some("ExportBillRequest"),
        None,
        "ExportBillResponse",
    ),
    route(
        "post",
        "/v1/bills/{agency}/rerate",
        "RerateBill",
        "Re-rates a past month with a price-list revision and a reason, keeping the earlier bills (platform admins).",
        Some("RerateBillRequest"),
        None,
        "Bill",
    ),
    route(
        "get",
        "/v1/usage/{agency}",
        "GetUsage",
        "One agency's usage over a period of billing days (from, to): integer quantities, no money.",
        Some("GetUsageRequest"),
        None,
        "Usage",
    ),
];

fn schemas() -> &'static Map<String, Value> {
    static SCHEMAS: OnceLock<Map<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| serde_json::from_str(proto::OPENAPI_SCHEMAS).unwrap_or_default())
}

/// The OpenAPI 3.0 document of the HTTP face.
pub fn openapi() -> Value {
    let schemas = schemas();
    let mut paths = Map::new();
    for r in ROUTES {
        let path_params: Vec<&str> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let mut parameters: Vec<Value> = path_params
            .iter()
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}))
            .collect();
        if let Some(message) = r.query {
            let properties = schemas[message]["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (name, schema) in properties {
                if !path_params.contains(&name.as_str()) {
                    parameters.push(
                        json!({"name": name, "in": "query", "required": false, "schema": schema}),
                    );
                }
            }
        }
        let mut operation = json!({
            "operationId": r.operation,
            "summary": r.summary,
            "tags": [r.path.split('/').nth(2).unwrap_or_default()],
            "parameters": parameters,
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {
                        (if r.streaming { "application/x-ndjson" } else { "application/json" }):
                            {"schema": {"$ref": format!("#/components/schemas/{}", r.response)}}
                    }
                },
                "default": {
                    "description": "An error: code, message, and the field or retry hint where they apply.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
                }
            },
        });
        if let Some(body) = r.body {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}
            });
        }
        paths
            .entry(r.path.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|m| m.insert(r.method.to_owned(), operation));
    }
    let mut components = schemas.clone();
    components.insert(
        "Error".to_owned(),
        json!({"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "description": "invalid_argument, unauthenticated, permission_denied, not_found, already_exists, failed_precondition, aborted, unavailable or internal."},
            "message": {"type": "string"},
            "field": {"type": "string"},
            "retryAfterSeconds": {"type": "integer"}
        }}),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "govbroker provisioning API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Agencies, quota requests and the audit trail of the government cloud. Send 'Authorization: Bearer <token>'; Kubernetes RBAC decides what each caller may do. The same operations are served over gRPC (package govbroker.v1)."
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}

/// The router of the HTTP face (without a fallback: see [`not_found`]).
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route(OPENAPI_PATH, get(|| async { Json(openapi()) }))
        .route(
            "/v1/agencies",
            get(by_query::<proto::ListAgenciesRequest>).post(create_agency),
        )
        .route(
            "/v1/agencies/{name}",
            get(by_query::<proto::GetAgencyRequest>)
                .patch(update_agency)
                .delete(by_query::<proto::DeleteAgencyRequest>),
        )
        .route(
            "/v1/agencies/{name}/tree",
            get(by_query::<proto::GetAgencyTreeRequest>),
        )
        .route(
            "/v1/agencies/{name}/watch",
            get(watch::<proto::WatchAgencyRequest, _>),
        )
        .route(
            "/v1/quotarequests",
            get(by_query::<proto::ListQuotaRequestsRequest>).post(create_quota_request),
        )
        .route("/v1/quotarequests/{name}/approve", post(approve))
        .route("/v1/quotarequests/{name}/reject", post(reject))
        .route("/v1/audit", get(by_query::<proto::ListAuditRecordsRequest>))
        .merge(data_services::router())
        .merge(workloads::router())
        .merge(billing::router())
        .with_state(api)
}

/// The answer to a path no route serves (set on the merged router: gRPC's and HTTP's).
pub async fn not_found() -> ApiError {
    ApiError::NotFound(format!(
        "no such path: the API's paths are listed at {OPENAPI_PATH}"
    ))
}

type Params = Query<HashMap<String, String>>;

fn bearer(headers: &HeaderMap) -> Option<String> {
    crate::auth::bearer_token(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

async fn respond<O>(api: &Arc<Api>, headers: &HeaderMap, request: Result<O, ApiError>) -> Response
where
    O: Operation,
    O::Response: Serialize,
{
    let result = match request {
        Ok(request) => api.handle(bearer(headers).as_deref(), request).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A message from query parameters (typed by the message's schema) and path values.
fn from_query<T: DeserializeOwned>(
    message: &str,
    params: HashMap<String, String>,
    path: &[(&str, &str)],
) -> Result<T, ApiError> {
    let properties = schemas()[message]["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut object = Map::new();
    for (key, text) in params {
        let Some(schema) = properties.get(&key) else {
            return Err(ApiError::invalid(
                &key,
                format!(
                    "is not a parameter of this call; known: {}",
                    properties.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        let value = match schema["type"].as_str() {
            Some("boolean") => match text.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => {
                    return Err(ApiError::invalid(
                        &key,
                        format!("{text:?} is not true or false"),
                    ));
                }
            },
            Some("integer") => text.parse::<u32>().map(Value::from).map_err(|_| {
                ApiError::invalid(
                    &key,
                    format!("{text:?} is not a whole number from 0 to {}", u32::MAX),
                )
            })?,
            _ => Value::String(text),
        };
        object.insert(key, value);
    }
    for (key, value) in path {
        object.insert((*key).to_owned(), Value::String((*value).to_owned()));
    }
    serde_json::from_value(Value::Object(object))
        .map_err(|e| ApiError::invalid("query", e.to_string()))
}

/// The handler of every unary call whose message is read from the query parameters and
/// the route's path values (`/v1/bills/{agency}`, `/v1/datashares/{name}/approve`, …):
/// typed by the message alone, whose schema it finds by the message's proto name, so a
/// route is one line instead of a handler of its own.
async fn by_query<T>(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(path): Path<HashMap<String, String>>,
    Query(q): Params,
) -> Response
where
    T: Operation + prost::Name + DeserializeOwned,
    T::Response: Serialize,
{
    respond(&api, &headers, from_query_and_path::<T>(q, &path)).await
}

/// The handler of a watch (read as [`by_query`] reads its call): the answer is a stream
/// of JSON lines (`application/x-ndjson`), an error after the start as a line
/// `{"error": …}`.
async fn watch<T, E>(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(path): Path<HashMap<String, String>>,
    Query(q): Params,
) -> Response
where
    T: Operation<Response = Pin<Box<dyn Stream<Item = Result<E, ApiError>> + Send>>>
        + prost::Name
        + DeserializeOwned,
    E: Serialize + 'static,
{
    let request = match from_query_and_path::<T>(q, &path) {
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

/// The message `T` (found by its proto name) from query parameters and path values.
fn from_query_and_path<T: prost::Name + DeserializeOwned>(
    params: HashMap<String, String>,
    path: &HashMap<String, String>,
) -> Result<T, ApiError> {
    let path: Vec<(&str, &str)> = path.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    from_query::<T>(T::NAME, params, &path)
}

/// A message from a JSON body.
fn from_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid("body", "is empty: send a JSON object"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("is not valid JSON for this call: {e}")))
}

async fn create_agency(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let request =
        from_body::<proto::Agency>(&body).map(|a| proto::CreateAgencyRequest { agency: Some(a) });
    respond(&api, &headers, request).await
}

async fn update_agency(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let request = from_body::<proto::UpdateAgencyRequest>(&body).and_then(|mut r| {
        if !r.name.is_empty() && r.name != name {
            return Err(ApiError::invalid(
                "name",
                format!(
                    "the body names {:?} but the path {name:?}: leave it out of the body",
                    r.name
                ),
            ));
        }
        r.name = name;
        Ok(r)
    });
    respond(&api, &headers, request).await
}

async fn create_quota_request(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(
        &api,
        &headers,
        from_body::<proto::CreateQuotaRequestRequest>(&body),
    )
    .await
}

fn decision(name: String, body: &Bytes) -> Result<proto::DecideQuotaRequestRequest, ApiError> {
    let mut request = from_body::<proto::DecideQuotaRequestRequest>(body)?;
    if !request.name.is_empty() && request.name != name {
        return Err(ApiError::invalid(
            "name",
            "the body and the path name different requests: leave it out of the body",
        ));
    }
    request.name = name;
    Ok(request)
}

async fn approve(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    respond(&api, &headers, decision(name, &body).map(Approve)).await
}

async fn reject(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    respond(&api, &headers, decision(name, &body).map(Reject)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route_with_known_schemas() {
        let doc = openapi();
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method];
            assert_eq!(op["operationId"], r.operation, "{} {}", r.method, r.path);
            for message in [Some(r.response), r.body, r.query].into_iter().flatten() {
                assert!(
                    doc["components"]["schemas"][message].is_object(),
                    "schema {message}"
                );
            }
        }
        let params = doc["paths"]["/v1/agencies"]["get"]["parameters"]
            .as_array()
            .unwrap();
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "pageSize" && p["schema"]["type"] == "integer")
        );
    }

    #[test]
    fn query_values_take_their_schema_types() {
        let q = HashMap::from([
            ("pageSize".to_owned(), "5".to_owned()),
            ("level".to_owned(), "Province".to_owned()),
        ]);
        let r: proto::ListAgenciesRequest = from_query("ListAgenciesRequest", q, &[]).unwrap();
        assert_eq!((r.page_size, r.level.as_str()), (5, "Province"));
        let bad = HashMap::from([("pageSize".to_owned(), "-1".to_owned())]);
        assert!(from_query::<proto::ListAgenciesRequest>("ListAgenciesRequest", bad, &[]).is_err());
        let unknown = HashMap::from([("colour".to_owned(), "red".to_owned())]);
        assert!(
            from_query::<proto::ListAgenciesRequest>("ListAgenciesRequest", unknown, &[]).is_err()
        );
    }
}
