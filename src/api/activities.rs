//! `/api/activities`: the log, read from SQLite, newest first.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::error::{ApiError, ErrorBody};
use super::input::{Fields, JsonBody, Query};
use super::schema;
use super::wire::ActivityJson;
use super::{created, ok, AppState, PathId};
use crate::scheduler::NewActivity;
use crate::store::ActivityFilter;

const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 1_000;

/// The activity log, newest first.
///
/// `?limit=` (1..1000, default 50), `?type=`, `?ventureId=`, `?taskId=`, `?agentId=`, `?before=<id>`.
#[utoipa::path(
    get,
    path = "/api/activities",
    operation_id = "listActivities",
    tag = "activities",
    params(schema::ActivityListQuery),
    responses(
        (status = 200, description = "The matching activities, newest first.", body = Vec<ActivityJson>),
        (status = 400, description = "A filter is malformed or out of range.", body = ErrorBody),
    )
)]
pub async fn list(State(app): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let query = Query::parse(query.as_deref())?;
    let filter = ActivityFilter {
        kind: query.id("type")?.map(|s| s.to_string()),
        venture_id: query.id("ventureId")?.map(|s| s.to_string()),
        task_id: query.id("taskId")?.map(|s| s.to_string()),
        agent_id: query.id("agentId")?.map(|s| s.to_string()),
        before: query.id("before")?.map(|s| s.to_string()),
        limit: query.integer("limit", 1, MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT) as u32,
    };
    // Read your writes: what was acknowledged before this request is in the file. While the
    // store is failing this gives up after a while and shows what is on disk.
    let _ = app.scheduler.wait_all_durable().await;
    let reader = app.activities.clone();
    let activities = blocking(move || reader.list(&filter)).await??;
    Ok(ok(activities.iter().map(ActivityJson::from).collect::<Vec<_>>()))
}

/// One activity.
#[utoipa::path(
    get,
    path = "/api/activities/{id}",
    operation_id = "getActivity",
    tag = "activities",
    params(schema::PathId),
    responses(
        (status = 200, description = "The activity.", body = ActivityJson),
        (status = 400, description = "The id is malformed.", body = ErrorBody),
        (status = 404, description = "No activity has this id.", body = ErrorBody),
    )
)]
pub async fn get(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let _ = app.scheduler.wait_all_durable().await;
    let reader = app.activities.clone();
    let key = id.clone();
    match blocking(move || reader.get(&key)).await?? {
        Some(activity) => Ok(ok(ActivityJson::from(&activity))),
        None => Err(ApiError::not_found(format!("no activity has id `{id}`"))),
    }
}

/// Appends an activity to the log.
#[utoipa::path(
    post,
    path = "/api/activities",
    operation_id = "createActivity",
    tag = "activities",
    request_body = schema::NewActivity,
    responses(
        (status = 201, description = "The logged activity.", body = ActivityJson),
        (status = 400, description = "A field is missing, of the wrong type or too long.", body = ErrorBody),
        (status = 404, description = "`ventureId`, `taskId` or `agentId` names nothing.", body = ErrorBody),
        (status = 409, description = "The client-chosen `id` is taken (`already_exists`).", body = ErrorBody),
    )
)]
pub async fn create(State(app): State<AppState>, JsonBody(body): JsonBody) -> Result<Response, ApiError> {
    let f = Fields(&body);
    let new = NewActivity {
        id: f.id("id")?,
        kind: f.non_blank_name("type")?,
        title: f.required_name("title")?,
        description: f.text("description")?,
        venture_id: f.id("ventureId")?,
        task_id: f.id("taskId")?,
        agent_id: f.id("agentId")?,
    };
    let Some(id) = new.id.clone() else {
        let activity = app.scheduler.create_activity(new).await?;
        return Ok(created(ActivityJson::from(&*activity)));
    };
    // A client-chosen id is checked against the file, so everything before it must be
    // there, and nothing else may take the id between the check and the commit.
    let _guard = app.activity_id_lock.lock().await;
    app.scheduler.wait_all_durable().await?;
    let reader = app.activities.clone();
    let key = id.clone();
    if blocking(move || reader.get(&key)).await??.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("an activity with id `{id}` already exists"),
        )
        .with_field("id"));
    }
    let activity = app.scheduler.create_activity(new).await?;
    app.scheduler.wait_all_durable().await?;
    Ok(created(ActivityJson::from(&*activity)))
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::internal("reading the activity log", e))
}
