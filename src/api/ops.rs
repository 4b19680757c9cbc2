//! Operations endpoints: liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::schema;
use super::AppState;

/// Liveness.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses((status = 200, description = "The process is serving.", body = schema::Health))
)]
pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// 200 only while the store takes writes and its backlog is under the bound at which
/// writes are refused.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The store takes writes and its backlog is within bounds.", body = schema::Readiness),
        (status = 503, description = "The store is failing or its backlog is over `--max-pending`.", body = schema::Readiness),
    )
)]
pub async fn readyz(State(app): State<AppState>) -> Response {
    let progress = app.scheduler.progress();
    let writable = progress.is_writable();
    let pending = progress.pending();
    let ready = writable && pending <= app.max_pending;
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "writable": writable,
        "pendingWrites": pending,
        "lastError": progress.last_error(),
    });
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
