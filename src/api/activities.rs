//! `/api/activities`: the log, read from SQLite, newest first.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, BadRequest, Conflict, NotFound};
use super::extract::{Accepts, AppJson, AppQuery, PathId};
use super::fields::{NonBlank, QueryId, QueryWhole, Text};
use super::wire::ActivityJson;
use super::{created, ok, AppState};
use crate::domain::{Activity, Id};
use crate::scheduler::NewActivity;
use crate::store::ActivityFilter;

const DEFAULT_LIMIT: u64 = 50;

/// The filters of `GET /api/activities`. Unknown ids give `[]`, never 404.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ActivityListQuery {
    /// Only activities of this type.
    #[serde(rename = "type")]
    #[param(inline)]
    kind: Option<QueryId>,
    /// Only activities about this venture.
    #[param(inline)]
    venture_id: Option<QueryId>,
    /// Only activities about this task.
    #[param(inline)]
    task_id: Option<QueryId>,
    /// Only activities about this agent.
    #[param(inline)]
    agent_id: Option<QueryId>,
    /// Only activities logged before the one with this id (to page back).
    #[param(inline)]
    before: Option<QueryId>,
    /// At most this many, newest first (default 50).
    #[param(inline)]
    limit: Option<QueryWhole<1, 1_000>>,
}

impl Accepts for ActivityListQuery {}

/// The activity log, newest first.
///
/// `?limit=` (1..1000, default 50), `?type=`, `?ventureId=`, `?taskId=`, `?agentId=`, `?before=<id>`.
#[utoipa::path(
    get,
    path = "/api/activities",
    operation_id = "listActivities",
    tag = "activities",
    params(ActivityListQuery),
    responses((status = 200, description = "The matching activities, newest first.", body = Vec<ActivityJson>), BadRequest)
)]
pub async fn list(
    State(app): State<AppState>,
    AppQuery(query): AppQuery<ActivityListQuery>,
) -> Result<Response, ApiError> {
    let text = |id: Option<QueryId>| id.map(|id| id.0.to_string());
    let filter = ActivityFilter {
        kind: text(query.kind),
        venture_id: text(query.venture_id),
        task_id: text(query.task_id),
        agent_id: text(query.agent_id),
        before: text(query.before),
        limit: query.limit.map_or(DEFAULT_LIMIT, |limit| limit.0) as u32,
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
    params(PathId),
    responses((status = 200, description = "The activity.", body = ActivityJson), BadRequest, NotFound)
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

/// `POST /api/activities`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = NewActivity)]
pub struct NewActivityBody {
    /// A client-chosen id; a taken one is `409 already_exists`. Generated (a ULID) when absent.
    id: Option<NonBlank>,
    /// Default `note`.
    #[serde(rename = "type")]
    kind: Option<NonBlank>,
    title: NonBlank,
    description: Option<Text>,
    /// An existing venture (404 otherwise).
    venture_id: Option<NonBlank>,
    /// An existing task (404 otherwise).
    task_id: Option<NonBlank>,
    /// An existing agent (404 otherwise).
    agent_id: Option<NonBlank>,
}

impl Accepts for NewActivityBody {
    const ALSO: &'static [&'static str] = super::wire::ACTIVITY_FIELDS;
}

/// Appends an activity to the log.
#[utoipa::path(
    post,
    path = "/api/activities",
    operation_id = "createActivity",
    tag = "activities",
    request_body = NewActivityBody,
    responses((status = 201, description = "The logged activity.", body = ActivityJson), BadRequest, NotFound, Conflict)
)]
pub async fn create(
    State(app): State<AppState>,
    AppJson(body): AppJson<NewActivityBody>,
) -> Result<Response, ApiError> {
    let new = NewActivity {
        id: body.id.map(Into::into),
        kind: body.kind.map(Into::into),
        title: body.title.into(),
        description: body.description.map(Into::into),
        venture_id: body.venture_id.map(Into::into),
        task_id: body.task_id.map(Into::into),
        agent_id: body.agent_id.map(Into::into),
    };
    let Some(id) = new.id.clone() else {
        let activity = app.scheduler.create_activity(new).await?;
        return Ok(created(ActivityJson::from(&*activity)));
    };
    // The insert decides who has a client-chosen id: the persister keeps the first row and
    // refuses the others (`DO NOTHING`, so that a duplicate cannot fail a whole batch), and
    // the answer waits for the commit and reads back whose row it is, so a refused duplicate
    // is never acknowledged. The lock queues creates with client-chosen ids, so a later one
    // normally finds its id taken before it is logged and published at all.
    let _guard = app.activity_id_lock.lock().await;
    app.scheduler.wait_all_durable().await?;
    if stored_activity(&app, &id).await?.is_some() {
        return Err(taken(&id));
    }
    let activity = app.scheduler.create_activity(new).await?;
    app.scheduler.wait_all_durable().await?;
    match stored_activity(&app, &id).await? {
        Some(stored) if stored != *activity => Err(taken(&id)),
        _ => Ok(created(ActivityJson::from(&*activity))),
    }
}

async fn stored_activity(app: &AppState, id: &Id) -> Result<Option<Activity>, ApiError> {
    let reader = app.activities.clone();
    let key = id.clone();
    blocking(move || reader.get(&key)).await?.map_err(ApiError::from)
}

fn taken(id: &Id) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "already_exists", format!("an activity with id `{id}` already exists"))
        .with_field("id")
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::internal("reading the activity log", e))
}
