//! `ApiError`: the one place where failures become HTTP statuses and JSON bodies.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::{Ref, RefOr};

use crate::scheduler::SchedulerError;
use crate::store::StoreError;

/// An error as the client sees it: `{"error", "code", "field"?}` with a status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<Cow<'static, str>>,
}

/// Every error: a sentence a person can act on, a stable code, and the field at fault when
/// one is.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    /// What went wrong and what to do about it.
    #[schema(example = "`title` is required")]
    error: &'a str,
    /// `malformed_json`, `bad_body`, `bad_query`, `missing_field`, `validation_error`, `unknown_field`,
    /// `unauthorized`, `not_found`, `route_not_found`, `method_not_allowed`,
    /// `request_timeout`, `already_exists`, `not_holder`, `stale_lease`, `conflicting_report`,
    /// `token_limit`,
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

    pub fn with_field(mut self, field: impl Into<Cow<'static, str>>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// A 400 about one input field.
    pub fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "validation_error", message).with_field(field)
    }

    pub fn missing(field: impl Into<Cow<'static, str>>) -> ApiError {
        let field = field.into();
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
            SchedulerError::Unavailable { .. }
            | SchedulerError::InHistory { .. }
            | SchedulerError::KeyInHistory { .. } => {
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
        let body = ErrorBody { error: &self.message, code: self.code, field: self.field.as_deref() };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        response
    }
}

/// The error responses that operations share, each declared once as a component of the
/// OpenAPI document (`openapi::SHARED_RESPONSES` describes them): an operation lists
/// `responses(..., BadRequest, NotFound)` instead of repeating them.
macro_rules! shared_responses {
    ($($(#[$doc:meta])* $name:ident = $status:literal;)+) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
                let component = concat!("#/components/responses/", stringify!($name));
                BTreeMap::from([($status.to_owned(), RefOr::Ref(Ref::new(component)))])
            }
        }
    )+};
}

shared_responses! {
    /// 400: a field is missing, of the wrong type, out of range or too long, or the body or
    /// query is malformed.
    BadRequest = "400";
    /// 404: an id names no record.
    NotFound = "404";
    /// 409: the request conflicts with the state.
    Conflict = "409";
}
