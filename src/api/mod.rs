//! The HTTP facade: turns requests into scheduler calls and answers into JSON.
//!
//! Each operation has one request type per body or query, whose fields carry their own
//! rules (`fields`, `vocabulary`) and which is also what the OpenAPI document shows. The
//! extractors (`extract`) decode them; handlers call the `Scheduler` handle and encode its
//! shared snapshots (`wire`) outside the actor. Every failure is an `ApiError`.

mod activities;
mod agents;
pub mod error;
mod events;
pub mod extract;
pub mod fields;
mod listing;
pub mod openapi;
mod ops;
pub mod standby;
mod tasks;
mod ventures;
mod vocabulary;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::events::EventHub;
use crate::scheduler::Scheduler;
use crate::store::{ActivityReader, TaskReader};
use error::ApiError;
use extract::MAX_BODY_BYTES;

/// What every handler can reach, behind one `Arc`: axum clones the state for every
/// request, and one reference count is cheaper than a dozen.
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl AppState {
    pub fn new(app: App) -> AppState {
        AppState(Arc::new(app))
    }
}

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

pub struct App {
    pub scheduler: Scheduler,
    /// Finished tasks, which only the database holds.
    pub tasks: TaskReader,
    pub activities: ActivityReader,
    pub metrics: PrometheusHandle,
    /// When set, every `/api` and `/mcp` request must carry it as a bearer token.
    pub api_token: Option<Arc<str>>,
    /// Queues creates of activities with client-chosen ids, so that a later one finds the id
    /// taken in SQLite before it is logged. The insert itself decides who has the id.
    pub activity_id_lock: Arc<tokio::sync::Mutex<()>>,
    /// The backlog past which `/readyz` fails (the scheduler refuses writes past it too).
    pub max_pending: usize,
    /// The live feed of changes.
    pub events: Arc<EventHub>,
    /// One permit per open event stream: the bound on them.
    pub event_streams: Arc<tokio::sync::Semaphore>,
}

/// The whole application: API, MCP, operations endpoints and the dashboard.
pub fn router(state: AppState) -> Router {
    // The MCP tools call the API's routes in-process, through the same token check.
    let api_only = api_routes(&state).fallback(not_found).layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let mcp =
        crate::mcp::http_service(api_only.with_state(state.clone()), state.api_token.is_some(), MCP_MAX_BODY_BYTES);
    let mcp = Router::new()
        .route_service("/mcp", mcp)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(api_routes(&state))
        .merge(mcp)
        .route("/", get(crate::dashboard::index))
        .route("/assets/{name}", get(crate::dashboard::asset))
        .route("/healthz", get(ops::healthz))
        .route("/openapi.json", get(openapi::serve))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route_layer(middleware::from_fn(track_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A JSON-RPC message at `/mcp`: a tool call's arguments (at most an API body) and the
/// envelope around them.
const MCP_MAX_BODY_BYTES: usize = MAX_BODY_BYTES + 64 * 1024;

/// The `/api` routes, each behind the token check.
fn api_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/api/ventures",
            get(ventures::list).post(ventures::create).patch(ventures::update).delete(ventures::delete),
        )
        .route("/api/ventures/{id}", get(ventures::get).patch(ventures::update).delete(ventures::delete))
        .route("/api/tasks", get(tasks::list).post(tasks::create).patch(tasks::update).delete(tasks::delete))
        .route("/api/tasks/claim", post(tasks::claim))
        .route("/api/tasks/complete", post(tasks::complete))
        .route("/api/tasks/heartbeat", post(tasks::heartbeat))
        .route("/api/tasks/cancel", post(tasks::cancel))
        .route("/api/tasks/{id}/attempts", get(tasks::attempts))
        .route("/api/tasks/{id}", get(tasks::get).patch(tasks::update).delete(tasks::delete))
        .route("/api/agents", get(agents::list).post(agents::upsert).patch(agents::update).delete(agents::delete))
        .route("/api/agents/{id}", get(agents::get).patch(agents::update).delete(agents::delete))
        .route("/api/agents/{id}/heartbeat", post(agents::heartbeat))
        .route("/api/activities", get(activities::list).post(activities::create))
        .route("/api/activities/{id}", get(activities::get))
        .route("/api/events", get(events::stream))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
}

async fn not_found(request: Request) -> ApiError {
    crate::metrics::record_http_request(request.method(), "unmatched", StatusCode::NOT_FOUND.as_u16(), Duration::ZERO);
    ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", request.method(), request.uri().path()),
    )
}

async fn require_token(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(expected) = &app.api_token {
        let header = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let given = match header.and_then(|v| v.strip_prefix("Bearer ")) {
            Some(token) => token.to_owned(),
            // A browser's EventSource cannot set headers, so the event feed also takes
            // `?access_token=`.
            None if request.uri().path() == "/api/events" => {
                extract::decode_query_lenient::<AccessToken>(request.uri().query())
                    .ok()
                    .and_then(|q| q.access_token)
                    .unwrap_or_default()
            }
            None => String::new(),
        };
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

/// The token in the query of `/api/events`.
#[derive(Deserialize)]
struct AccessToken {
    access_token: Option<String>,
}

async fn track_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // The pattern, not the path, so that ids do not become label values.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    crate::metrics::record_http_request(&method, route, response.status().as_u16(), started.elapsed());
    response
}

/// 201 with the created object.
fn created(body: impl serde::Serialize) -> Response {
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

fn ok(body: impl serde::Serialize) -> Response {
    axum::Json(body).into_response()
}
