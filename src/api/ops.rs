//! Operations endpoints: liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    status: HealthStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum HealthStatus {
    Ok,
}

/// `GET /readyz`. The fields are in alphabetical order, the order the body has always had.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// The last commit error, while the store is failing.
    #[schema(required = true)]
    last_error: Option<String>,
    /// Changes accepted and not yet committed.
    #[schema(minimum = 0)]
    pending_writes: u64,
    status: ReadinessStatus,
    /// Whether the store takes writes.
    writable: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum ReadinessStatus {
    Ready,
    Unavailable,
}

/// Liveness.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses((status = 200, description = "The process is serving.", body = Health))
)]
pub async fn healthz() -> Response {
    axum::Json(Health { status: HealthStatus::Ok }).into_response()
}

/// 200 only while the store takes writes and its backlog is under the bound at which
/// writes are refused.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The store takes writes and its backlog is within bounds.", body = Readiness),
        (status = 503, description = "The store is failing or its backlog is over `--max-pending`.", body = Readiness),
    )
)]
pub async fn readyz(State(app): State<AppState>) -> Response {
    let progress = app.scheduler.progress();
    let writable = progress.is_writable();
    let pending = progress.pending();
    let ready = writable && pending <= app.max_pending;
    let body = Readiness {
        last_error: progress.last_error(),
        pending_writes: pending as u64,
        status: if ready { ReadinessStatus::Ready } else { ReadinessStatus::Unavailable },
        writable,
    };
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

/// Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses((status = 200, description = "The metrics.", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(app): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render()).into_response()
}
