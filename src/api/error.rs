//! `ApiError`: the one place where failures become HTTP statuses and JSON bodies.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::scheduler::SchedulerError;
use crate::store::StoreError;

/// An error as the client sees it: `{"error", "code", "field"?}` with a status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<&'static str>,
}

/// Every error: a sentence a person can act on, a stable code, and the field at fault when
/// one is.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    /// What went wrong and what to do about it.
    #[schema(example = "`title` is required")]
    error: &'a str,
    /// `malformed_json`, `bad_body`, `bad_query`, `missing_field`, `validation_error`,
    /// `unauthorized`, `not_found`, `route_not_found`, `method_not_allowed`,
    /// `request_timeout`, `already_exists`, `not_holder`, `stale_lease`,
    /// `invalid_transition`, `venture_in_use`, `payload_too_large`, `unavailable` or
    /// `store_unavailable`.
    #[schema(example = "missing_field")]
    code: &'a str,
    /// The input field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, example = "title")]
    field: Option<&'a str>,
}

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "1";

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None }
    }

    pub fn with_field(mut self, field: &'static str) -> ApiError {
        self.field = Some(field);
        self
    }

    /// A 400 about one input field.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "validation_error", message).with_field(field)
    }

    pub fn missing(field: &'static str) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "missing_field", format!("`{field}` is required")).with_field(field)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this server needs `Authorization: Bearer <token>` with its API token",
        )
    }

    /// A failure of ours; the details go to the log, never to the client.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "{context}");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", format!("{context} failed; retry shortly"))
    }
}

impl From<SchedulerError> for ApiError {
    fn from(error: SchedulerError) -> ApiError {
        let message = error.to_string();
        match error {
            SchedulerError::NotFound { field, .. } => {
                let e = ApiError::new(StatusCode::NOT_FOUND, "not_found", message);
                match field {
                    Some(field) => e.with_field(field),
                    None => e,
                }
            }
            SchedulerError::AlreadyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", message).with_field("id")
            }
            SchedulerError::NotHolder { .. } => ApiError::new(StatusCode::CONFLICT, "not_holder", message),
            SchedulerError::StaleLease { .. } => {
                ApiError::new(StatusCode::CONFLICT, "stale_lease", message).with_field("attempt")
            }
            SchedulerError::Invalid { field, .. } => ApiError::invalid(field, message),
            SchedulerError::Conflict { code, field, .. } => {
                let e = ApiError::new(StatusCode::CONFLICT, code, message);
                match field {
                    Some(field) => e.with_field(field),
                    None => e,
                }
            }
            // `InHistory` is answered inside `Scheduler`; reaching here means the task kept
            // changing while it was read, and a retry will see it settled.
            SchedulerError::Unavailable { .. } | SchedulerError::InHistory { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        ApiError::internal("reading the database", error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: &self.message, code: self.code, field: self.field };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        response
    }
}
