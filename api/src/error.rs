//! The API's one error model, rendered as a gRPC status and as an HTTP/JSON body.
//!
//! Every message says what was wrong and what to do about it: which field and why,
//! which permission was missing, how much room is left, when to retry.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// A field of the request is wrong.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The field, as in the request (e.g. `agency.quota.cpu`).
        field: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// The caller presented no token, or one the cluster does not accept.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but lacks a permission; the message names it.
    #[error("{0}")]
    PermissionDenied(String),
    /// The target does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The target already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The change is valid but the system is not in a state to take it (e.g. the parent
    /// has no room left); the message says how much is left.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Someone else changed the target first; re-read it and retry.
    #[error("{0}")]
    Aborted(String),
    /// A dependency (Kubernetes, the ledger) cannot be reached; retry later.
    #[error("{message} (retry in {retry_after_seconds} s)")]
    Unavailable {
        /// What could not be reached.
        message: String,
        /// When retrying makes sense.
        retry_after_seconds: u32,
    },
    /// A bug or an unexpected answer; the message is safe to show.
    #[error("{0}")]
    Internal(String),
}

/// The JSON body of an HTTP error.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// `invalid_argument`, `permission_denied`, ... (the gRPC code in snake case).
    pub code: &'static str,
    /// What a person should know.
    pub message: String,
    /// The offending field, for `invalid_argument`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds after which a retry makes sense, for `unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u32>,
}

impl ApiError {
    /// An invalid-argument error for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An unavailable error with the default retry hint.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::Unavailable {
            message: message.into(),
            retry_after_seconds: 5,
        }
    }

    /// The gRPC code.
    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            ApiError::InvalidArgument { .. } => Code::InvalidArgument,
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::AlreadyExists(_) => Code::AlreadyExists,
            ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
            ApiError::Aborted(_) => Code::Aborted,
            ApiError::Unavailable { .. } => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
        }
    }

    /// The code in snake case, as the audit trail and the JSON body name it.
    pub fn code_name(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument { .. } => "invalid_argument",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::PermissionDenied(_) => "permission_denied",
            ApiError::NotFound(_) => "not_found",
            ApiError::AlreadyExists(_) => "already_exists",
            ApiError::FailedPrecondition(_) => "failed_precondition",
            ApiError::Aborted(_) => "aborted",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// Whether this is a refusal on identity or permission (audited on every method).
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            ApiError::Unauthenticated(_) | ApiError::PermissionDenied(_)
        )
    }

    /// The HTTP status.
    pub fn http_status(&self) -> StatusCode {
        match self {
            ApiError::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists(_) | ApiError::Aborted(_) => StatusCode::CONFLICT,
            ApiError::FailedPrecondition(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        let (message, field, retry) = match self {
            ApiError::InvalidArgument { field, .. } => {
                (self.to_string(), Some(field.clone()), None)
            }
            ApiError::Unavailable {
                retry_after_seconds,
                ..
            } => (self.to_string(), None, Some(*retry_after_seconds)),
            _ => (self.to_string(), None, None),
        };
        ErrorBody {
            code: self.code_name(),
            message,
            field,
            retry_after_seconds: retry,
        }
    }

    /// Maps an error from Kubernetes (acting as the caller) to the API's model. `what`
    /// names the target for messages, e.g. `agency "so-y-te"`.
    pub fn from_kube(error: kube::Error, what: &str) -> ApiError {
        match error {
            kube::Error::Api(status) => {
                let message = status.message.clone();
                match status.code {
                    400 | 403 | 409 | 422 | 503 if message.contains("admission webhook") => {
                        webhook_denial(status.code, &message)
                    }
                    400 | 422 => ApiError::invalid(field_of(&message), message),
                    401 => ApiError::Unauthenticated(message),
                    403 => ApiError::PermissionDenied(message),
                    404 => ApiError::NotFound(format!("{what} does not exist")),
                    409 if status.reason == "AlreadyExists" => {
                        ApiError::AlreadyExists(format!("{what} already exists"))
                    }
                    409 => ApiError::Aborted(format!(
                        "{what} was changed by someone else meanwhile: read it again and retry ({message})"
                    )),
                    429 | 500..=599 => ApiError::unavailable(format!(
                        "Kubernetes could not take the request for {what}: {message}"
                    )),
                    _ => ApiError::Internal(format!(
                        "Kubernetes answered {}: {message}",
                        status.code
                    )),
                }
            }
            other => ApiError::unavailable(format!("Kubernetes is unreachable: {other}")),
        }
    }
}

/// An admission webhook's denial. govbroker's webhook says why by its code (see the
/// operator's `Refusal`): 403 who asked, 409 the tree's state (no room, children left),
/// 422 (or 400, any other webhook's default) the request's shape, 503 it could not tell.
fn webhook_denial(code: u16, message: &str) -> ApiError {
    let reason = message
        .split_once("denied the request: ")
        .map_or(message, |(_, r)| r)
        .to_owned();
    match code {
        403 => ApiError::PermissionDenied(reason),
        409 => ApiError::FailedPrecondition(reason),
        503 => ApiError::unavailable(reason),
        _ => ApiError::invalid(field_of(&reason), reason),
    }
}

/// The field a Kubernetes validation message starts with (`spec.quota.cpu: ...`).
fn field_of(message: &str) -> String {
    message
        .split(['\n'])
        .flat_map(|line| line.split(": "))
        .find(|word| word.starts_with("spec.") || word.starts_with("metadata."))
        .unwrap_or("request")
        .trim()
        .to_owned()
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> tonic::Status {
        let mut status = tonic::Status::new(error.grpc_code(), error.to_string());
        if let ApiError::Unavailable {
            retry_after_seconds,
            ..
        } = &error
            && let Ok(value) = retry_after_seconds.to_string().parse()
        {
            status.metadata_mut().insert("retry-after", value);
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.http_status(), Json(self.body())).into_response();
        if let ApiError::Unavailable {
            retry_after_seconds,
            ..
        } = &self
            && let Ok(value) = retry_after_seconds.to_string().parse()
        {
            response.headers_mut().insert("retry-after", value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_denials_are_told_apart_by_code() {
        let denied = |reason: &str| {
            format!("admission webhook \"agencies.govbroker.io\" denied the request: {reason}")
        };
        let room = denied("spec.quota.cpu: at most 1 is left for this agency, not 2");
        assert!(
            matches!(webhook_denial(409, &room), ApiError::FailedPrecondition(m) if m.starts_with("spec.quota.cpu"))
        );
        assert!(matches!(
            webhook_denial(403, &denied("bob may not change agency a")),
            ApiError::PermissionDenied(_)
        ));
        let shape = denied("spec.parent: a Commune's parent must be a District");
        assert_eq!(
            webhook_denial(422, &shape),
            ApiError::invalid(
                "spec.parent",
                "spec.parent: a Commune's parent must be a District"
            )
        );
        assert!(matches!(
            webhook_denial(503, &denied("cannot list")),
            ApiError::Unavailable { .. }
        ));
    }

    #[test]
    fn every_error_has_a_distinct_code_and_status() {
        let errors = [
            ApiError::invalid("f", "r"),
            ApiError::Unauthenticated("u".into()),
            ApiError::PermissionDenied("p".into()),
            ApiError::NotFound("n".into()),
            ApiError::FailedPrecondition("f".into()),
            ApiError::unavailable("x"),
            ApiError::Internal("i".into()),
        ];
        let codes: std::collections::BTreeSet<_> = errors.iter().map(|e| e.code_name()).collect();
        let statuses: std::collections::BTreeSet<_> =
            errors.iter().map(|e| e.http_status().as_u16()).collect();
        assert_eq!(codes.len(), errors.len());
        assert_eq!(statuses.len(), errors.len());
        assert_eq!(
            ApiError::unavailable("x").body().retry_after_seconds,
            Some(5)
        );
    }
}
