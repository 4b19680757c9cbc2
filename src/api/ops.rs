//! Operations endpoints: liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// 200 only while the store takes writes and its backlog is under the bound at which
/// writes are refused.
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

pub async fn metrics(State(app): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render()).into_response()
}
