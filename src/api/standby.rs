//! What a node answers while it does not lead (PostgreSQL high availability): it is alive
//! (`/healthz` 200) but not ready (`/readyz` 503), and every other request is refused with
//! 503 `not_leader`, naming the leader's `--advertise-url` when one is known.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

/// Tells the standby's answers who leads.
pub trait LeaderDirectory: Send + Sync + 'static {
    /// The leader's advertised URL, when one holds a live lease.
    fn leader_url(&self) -> Option<String>;
}

#[derive(Serialize)]
struct NotLeader<'a> {
    error: &'a str,
    code: &'static str,
    leader: Option<String>,
}

/// The routes of a node that does not lead.
pub fn router(directory: Arc<dyn LeaderDirectory>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_leader)
        .with_state(directory)
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({ "status": "ok", "role": "standby" })).into_response()
}

async fn metrics() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::recorder().render()).into_response()
}

/// 503 with the leader's address; `/readyz` answers this too, so a load balancer that
/// checks it sends traffic to the leader only.
async fn not_leader(State(directory): State<Arc<dyn LeaderDirectory>>) -> Response {
    let leader = directory.leader_url();
    let error = match &leader {
        Some(url) => format!("this node is a standby; the leader is {url}"),
        None => "this node is a standby and no leader holds the lease yet; retry shortly".to_owned(),
    };
    let body = NotLeader { error: &error, code: "not_leader", leader };
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], axum::Json(body)).into_response()
}
