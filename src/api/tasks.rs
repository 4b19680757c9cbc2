//! `/api/tasks`, including the agent endpoints `claim`, `complete` and `heartbeat`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, BadRequest, Conflict, ErrorBody, NotFound};
use super::extract::{Accepts, AppJson, AppQuery, PathId, Target, TargetId};
use super::fields::{
    Attempt, Clearable, Cost, Count, IdempotencyKey, InitialStatus, LeaseSeconds, MaxAttempts, NonBlank, QueryId,
    QueryWhole, RetryDelaySeconds, TagList, TaskFieldList, TaskIdList, Text, Timestamp, WaitMs,
};
use super::listing::{stream_tasks, Page};
use super::wire::{AttemptJson, TaskJson};
use super::{created, ok, AppState};
use crate::domain::{OnDependencyFailure, Priority, TaskStatus};
use crate::scheduler::{
    CancelRequest, ClaimRequest, CompleteRequest, HeartbeatRequest, ListOrder, NewTask, TaskFilter, TaskPatch,
};

/// Why `/api/tasks/{id}` can answer 405.
const RESERVED_IDS: &str =
    "The id is `claim`, `complete`, `heartbeat` or `cancel`: those paths take only `POST` (`method_not_allowed`).";

/// The filters of `GET /api/tasks`. Unknown ids give `[]`, never 404.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct TaskListQuery {
    /// Only tasks with this status.
    status: Option<TaskStatus>,
    /// Only this venture's tasks.
    #[param(inline)]
    venture_id: Option<QueryId>,
    /// Only tasks assigned to this agent.
    #[param(inline)]
    assigned_to: Option<QueryId>,
    /// Only tasks with this priority.
    priority: Option<Priority>,
    /// Only tasks after this one in the listing's order: a cursor, the last id of the
    /// previous page (with `order=desc`, the tasks older than it). An id that names no task
    /// is a 404.
    #[param(inline)]
    after: Option<QueryId>,
    /// `asc` (default): oldest first. `desc`: newest first, so `?order=desc&limit=100` is
    /// the 100 newest matches, read from the end of the index whatever the history holds.
    order: Option<ListOrder>,
    /// Only these fields of each task, comma-separated (`id,title,status`): a light listing
    /// for boards that do not need every `output`. An unknown name is a 400.
    #[param(inline)]
    fields: Option<TaskFieldList>,
    /// At most this many tasks (default: every match).
    #[param(inline)]
    limit: Option<QueryWhole<1, { u64::MAX }>>,
    /// Skip this many first (default 0).
    #[param(inline)]
    offset: Option<QueryWhole<0, { u64::MAX }>>,
}

impl Accepts for TaskListQuery {}

/// Tasks, oldest first (newest first with `?order=desc`), filtered.
///
/// `?status=`, `?ventureId=`, `?assignedTo=`, `?priority=`, `?after=`, `?order=`, `?limit=`, `?offset=`.
/// Streamed: unfinished tasks come from memory, finished ones from the database.
#[utoipa::path(
    get,
    path = "/api/tasks",
    operation_id = "listTasks",
    tag = "tasks",
    params(TaskListQuery),
    responses((status = 200, description = "The matching tasks, oldest first (newest first with `order=desc`).", body = Vec<super::wire::ListedTask>), BadRequest, NotFound)
)]
pub async fn list(State(app): State<AppState>, AppQuery(query): AppQuery<TaskListQuery>) -> Result<Response, ApiError> {
    let filter = TaskFilter {
        status: query.status,
        venture_id: query.venture_id.map(Into::into),
        assigned_to: query.assigned_to.map(Into::into),
        priority: query.priority,
    };
    let page = Page {
        after: query.after.map(Into::into),
        order: query.order.unwrap_or_default(),
        fields: query.fields.map(|fields| fields.0),
        offset: query.offset.map_or(0, |offset| offset.0),
        limit: query.limit.map_or(u64::MAX, |limit| limit.0),
    };
    stream_tasks(&app, filter, page).await
}

/// One task.
#[utoipa::path(
    get,
    path = "/api/tasks/{id}",
    operation_id = "getTask",
    tag = "tasks",
    params(PathId),
    responses(
        (status = 200, description = "The task.", body = TaskJson),
        BadRequest,
        NotFound,
        (status = 405, description = RESERVED_IDS, body = ErrorBody),
    )
)]
pub async fn get(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let task = app.scheduler.get_task(id).await?;
    Ok(ok(TaskJson::from(&task)))
}

/// Every claim of the task, oldest first, and how each ended. Read from the database after
/// every write acknowledged before the request is committed.
#[utoipa::path(
    get,
    path = "/api/tasks/{id}/attempts",
    operation_id = "listTaskAttempts",
    tag = "tasks",
    params(PathId),
    responses((status = 200, description = "The task's attempts, oldest first.", body = [AttemptJson]), BadRequest, NotFound)
)]
pub async fn attempts(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    // Read your writes: what was acknowledged before this request is in the file. While the
    // store is failing this gives up after a while and shows what is on disk.
    let _ = app.scheduler.wait_all_durable().await;
    app.scheduler.get_task(id.clone()).await?;
    let reader = app.tasks.clone();
    let attempts = tokio::task::spawn_blocking(move || reader.attempts(&id))
        .await
        .map_err(|e| ApiError::internal("reading a task's attempts", e))??;
    Ok(ok(attempts.iter().map(AttemptJson::from).collect::<Vec<_>>()))
}

/// `POST /api/tasks`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = NewTask)]
pub struct NewTaskBody {
    /// A task is created `queue` (or `blocked`, by its dependencies); set other statuses
    /// with `PATCH`.
    // Never read: decoding it is what refuses any other status.
    #[serde(rename = "status")]
    _status: Option<InitialStatus>,
    /// A client-chosen id; a taken one is `409 already_exists`. Generated (a ULID) when absent.
    id: Option<NonBlank>,
    title: NonBlank,
    description: Option<Text>,
    /// An existing venture (404 otherwise).
    venture_id: NonBlank,
    /// Default `medium`.
    priority: Option<Priority>,
    estimated_cost: Option<Cost>,
    tags: Option<TagList>,
    /// Default 3.
    #[schema(inline)]
    max_attempts: Option<MaxAttempts>,
    /// Tasks (existing: 404 otherwise) this one waits for: while one is unfinished the task
    /// is `blocked` and never claimed.
    depends_on: Option<TaskIdList>,
    /// Default `cancel`.
    on_dependency_failure: Option<OnDependencyFailure>,
    /// Not claimable before this time: until then the task is `blocked`.
    run_at: Option<Timestamp>,
    /// After a failed attempt that requeues the task, it waits this many seconds times
    /// 2^(attempts − 1), at most 3,600. Default 0: retried at once.
    #[schema(inline)]
    retry_delay_seconds: Option<RetryDelaySeconds>,
    /// A create whose key a task of the venture already has (for as long as the database
    /// holds it) answers 200 with that task and changes nothing.
    idempotency_key: Option<IdempotencyKey>,
}

impl Accepts for NewTaskBody {
    const ALSO: &'static [&'static str] = super::wire::TASK_FIELDS;
}

/// Creates a task: `queue`, or `blocked` while a dependency is unfinished (`cancelled` at
/// once when a dependency failed or was cancelled and the task says `cancel`).
#[utoipa::path(
    post,
    path = "/api/tasks",
    operation_id = "createTask",
    tag = "tasks",
    request_body = NewTaskBody,
    responses(
        (status = 201, description = "The created task.", body = TaskJson,
            links(
                ("claim" = (
                    operation_id = "claimTask",
                    description = "An agent claims work from the task's venture.",
                    request_body = json!({"ventureId": "$response.body#/ventureId"})
                )),
            )
        ),
        (status = 200, description = "The venture's task with this `idempotencyKey`, unchanged: nothing was created.", body = TaskJson),
        BadRequest,
        NotFound,
        Conflict,
    )
)]
pub async fn create(State(app): State<AppState>, AppJson(body): AppJson<NewTaskBody>) -> Result<Response, ApiError> {
    let new = NewTask {
        id: body.id.map(Into::into),
        title: body.title.into(),
        description: body.description.map(Into::into),
        venture_id: body.venture_id.into(),
        priority: body.priority,
        estimated_cost: body.estimated_cost.map(Into::into),
        tags: body.tags.map(Into::into),
        max_attempts: body.max_attempts.map(Into::into),
        depends_on: body.depends_on.map(Into::into).unwrap_or_default(),
        on_dependency_failure: body.on_dependency_failure,
        run_at: body.run_at.map(Into::into),
        retry_delay_seconds: body.retry_delay_seconds.map(|delay| u64::from(delay) as u32),
        idempotency_key: body.idempotency_key.map(Into::into),
    };
    match app.scheduler.create_task(new).await? {
        (task, true) => Ok(created(TaskJson::from(&task))),
        (task, false) => Ok(ok(TaskJson::from(&task))),
    }
}

/// `PATCH /api/tasks/{id}`: the fields given are changed; `null` leaves a field as it is,
/// except `description`, `estimatedCost` and `tags`, which it clears. `active` is reached
/// only by a claim (409 `invalid_transition`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TaskUpdate)]
pub struct TaskUpdateBody {
    title: Option<NonBlank>,
    /// `null` clears it.
    #[serde(default)]
    #[schema(value_type = Option<Text>)]
    description: Clearable<Text>,
    priority: Option<Priority>,
    /// `null` clears it.
    #[serde(default)]
    #[schema(value_type = Option<Cost>)]
    estimated_cost: Clearable<Cost>,
    /// `null` clears them.
    #[serde(default)]
    #[schema(value_type = Option<TagList>)]
    tags: Clearable<TagList>,
    #[schema(inline)]
    max_attempts: Option<MaxAttempts>,
    /// `cancelled` cancels the task as `POST /api/tasks/cancel` does; `blocked` is set only
    /// by dependencies.
    status: Option<TaskStatus>,
    /// Replaces the dependencies of a `queue` or `blocked` task (`[]`: none). A change that
    /// would close a cycle is 409 `dependency_cycle`, naming it.
    depends_on: Option<TaskIdList>,
    on_dependency_failure: Option<OnDependencyFailure>,
    /// Moves the time of a `queue` or `blocked` task; `null` clears it.
    #[serde(default)]
    #[schema(value_type = Option<Timestamp>)]
    run_at: Clearable<Timestamp>,
    #[schema(inline)]
    retry_delay_seconds: Option<RetryDelaySeconds>,
}

impl Accepts for TaskUpdateBody {
    const ALSO: &'static [&'static str] = super::wire::TASK_FIELDS;
}

/// Edits a task. `PATCH /api/tasks` names it the seed's way, by `?id=` or `id` in the body.
#[utoipa::path(
    patch,
    path = "/api/tasks/{id}",
    operation_id = "updateTask",
    tag = "tasks",
    params(PathId),
    request_body(content = TaskUpdateBody, description = "The fields to change."),
    responses(
        (status = 200, description = "The updated task.", body = TaskJson),
        BadRequest,
        NotFound,
        Conflict,
        (status = 405, description = RESERVED_IDS, body = ErrorBody),
    )
)]
pub async fn update(
    State(app): State<AppState>,
    Target { id, fields }: Target<TaskUpdateBody>,
) -> Result<Response, ApiError> {
    let patch = TaskPatch {
        title: fields.title.map(Into::into),
        description: fields.description.into_patch(),
        priority: fields.priority,
        estimated_cost: fields.estimated_cost.into_patch(),
        tags: fields.tags.into_patch(),
        max_attempts: fields.max_attempts.map(Into::into),
        status: fields.status,
        depends_on: fields.depends_on.map(Into::into),
        on_dependency_failure: fields.on_dependency_failure,
        run_at: fields.run_at.into_patch(),
        retry_delay_seconds: fields.retry_delay_seconds.map(|delay| u64::from(delay) as u32),
    };
    let task = app.scheduler.update_task(id, patch).await?;
    Ok(ok(TaskJson::from(&task)))
}

/// Deletes a task; an active task's agent is freed. A task that an unfinished task depends
/// on is 409 `has_dependents`. `DELETE /api/tasks` names it the seed's
/// way, by `?id=` or `id` in the body.
#[utoipa::path(
    delete,
    path = "/api/tasks/{id}",
    operation_id = "deleteTask",
    tag = "tasks",
    params(PathId),
    responses(
        (status = 200, description = "The deleted task.", body = TaskJson),
        BadRequest,
        NotFound,
        Conflict,
        (status = 405, description = RESERVED_IDS, body = ErrorBody),
    )
)]
pub async fn delete(State(app): State<AppState>, TargetId(id): TargetId) -> Result<Response, ApiError> {
    let task = app.scheduler.delete_task(id).await?;
    Ok(ok(TaskJson::from(&task)))
}

/// `POST /api/tasks/claim`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ClaimRequest)]
pub struct ClaimBody {
    /// Registered when unknown.
    agent_id: NonBlank,
    /// The name of an agent the claim registers; default the id.
    agent_name: Option<NonBlank>,
    /// Only this venture's tasks (404 when unknown).
    venture_id: Option<NonBlank>,
    /// Only tasks carrying every one of these tags.
    tags: Option<TagList>,
    /// Default: the server's `--lease-seconds` (1800).
    #[schema(inline)]
    lease_seconds: Option<LeaseSeconds>,
    /// How long to wait for work before answering 204. Default 0.
    #[schema(inline)]
    wait_ms: Option<WaitMs>,
}

impl Accepts for ClaimBody {}

/// 200 with the claimed task, or 204 when nothing is eligible.
///
/// Hands out one eligible task (priority, then oldest, then id) to one agent, atomically,
/// waiting up to `waitMs` for one to become eligible.
#[utoipa::path(
    post,
    path = "/api/tasks/claim",
    operation_id = "claimTask",
    tag = "tasks",
    request_body = ClaimBody,
    responses(
        (status = 200, description = "The claimed task, now `active` and held by the agent.", body = TaskJson,
            links(
                ("complete" = (
                    operation_id = "completeTask",
                    description = "The holder reports on its attempt.",
                    request_body = json!({
                        "taskId": "$response.body#/id",
                        "agentId": "$response.body#/assignedTo",
                        "attempt": "$response.body#/attempts"
                    })
                )),
                ("heartbeat" = (
                    operation_id = "heartbeatTask",
                    description = "The holder extends its lease.",
                    request_body = json!({
                        "taskId": "$response.body#/id",
                        "agentId": "$response.body#/assignedTo",
                        "attempt": "$response.body#/attempts"
                    })
                )),
            )
        ),
        (status = 204, description = "Nothing was eligible within `waitMs`."),
        BadRequest,
        NotFound,
        Conflict,
    )
)]
pub async fn claim(State(app): State<AppState>, AppJson(body): AppJson<ClaimBody>) -> Result<Response, ApiError> {
    let request = ClaimRequest {
        agent_id: body.agent_id.into(),
        agent_name: body.agent_name.map(Into::into),
        venture_id: body.venture_id.map(Into::into),
        tags: body.tags.map(|t| t.0.to_vec()).unwrap_or_default(),
        lease_seconds: body.lease_seconds.map(Into::into),
    };
    let wait = Duration::from_millis(body.wait_ms.map_or(0, Into::into));
    match app.scheduler.claim(request, wait).await? {
        Some(task) => Ok(ok(TaskJson::from(&task))),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `POST /api/tasks/complete`: a success report, or with `error` a failure report.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CompleteRequest)]
pub struct CompleteBody {
    task_id: NonBlank,
    agent_id: NonBlank,
    /// The fencing token: the task's `attempts` when claimed (409 `stale_lease` otherwise).
    #[schema(inline)]
    attempt: Option<Attempt>,
    output: Option<Text>,
    /// What this attempt cost; charged to the venture whether it succeeded or failed.
    actual_cost: Option<Cost>,
    /// When given, the attempt failed.
    error: Option<Text>,
    /// Added to the agent's `tokensUsed`.
    #[schema(inline)]
    tokens_used: Option<Count>,
}

impl Accepts for CompleteBody {}

/// Reports the outcome of a held task: success, or with `error` a failure (requeued while
/// attempts remain). Repeating the last report is safe; a different report for the same
/// attempt is refused (`conflicting_report`).
#[utoipa::path(
    post,
    path = "/api/tasks/complete",
    operation_id = "completeTask",
    tag = "tasks",
    request_body = CompleteBody,
    responses((status = 200, description = "The task as the report left it.", body = TaskJson), BadRequest, NotFound, Conflict)
)]
pub async fn complete(State(app): State<AppState>, AppJson(body): AppJson<CompleteBody>) -> Result<Response, ApiError> {
    let report = CompleteRequest {
        task_id: body.task_id.into(),
        agent_id: body.agent_id.into(),
        attempt: body.attempt.map(Into::into),
        output: body.output.map(Into::into),
        actual_cost: body.actual_cost.map(Into::into),
        error: body.error.map(Into::into),
        tokens_used: body.tokens_used.map(Into::into),
    };
    let task = app.scheduler.complete(report).await?;
    Ok(ok(TaskJson::from(&task)))
}

/// `POST /api/tasks/heartbeat`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = HeartbeatRequest)]
pub struct HeartbeatBody {
    task_id: NonBlank,
    agent_id: NonBlank,
    #[schema(inline)]
    attempt: Option<Attempt>,
    /// Default: the lease length the claim asked for.
    #[schema(inline)]
    lease_seconds: Option<LeaseSeconds>,
}

impl Accepts for HeartbeatBody {}

/// Extends the lease of a held task.
#[utoipa::path(
    post,
    path = "/api/tasks/heartbeat",
    operation_id = "heartbeatTask",
    tag = "tasks",
    request_body = HeartbeatBody,
    responses((status = 200, description = "The task with its extended lease.", body = TaskJson), BadRequest, NotFound, Conflict)
)]
pub async fn heartbeat(
    State(app): State<AppState>,
    AppJson(body): AppJson<HeartbeatBody>,
) -> Result<Response, ApiError> {
    let beat = HeartbeatRequest {
        task_id: body.task_id.into(),
        agent_id: body.agent_id.into(),
        attempt: body.attempt.map(Into::into),
        lease_seconds: body.lease_seconds.map(Into::into),
    };
    let task = app.scheduler.heartbeat(beat).await?;
    Ok(ok(TaskJson::from(&task)))
}

/// `POST /api/tasks/cancel`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CancelRequest)]
pub struct CancelBody {
    task_id: NonBlank,
    /// Why; kept as the task's `error` and in the log.
    reason: Option<Text>,
}

impl Accepts for CancelBody {}

/// Cancels a task. A `queue` or `blocked` task is `cancelled` at once; an `active` one gets
/// `cancelRequested: true` and stays with its holder, which learns it from its next
/// heartbeat answer; its next report (or its lease's expiry) ends it `cancelled`. The
/// task's dependents follow their `onDependencyFailure`. A finished task is 409 `finished`;
/// repeating a cancel answers 200.
#[utoipa::path(
    post,
    path = "/api/tasks/cancel",
    operation_id = "cancelTask",
    tag = "tasks",
    request_body = CancelBody,
    responses((status = 200, description = "The task, cancelled or asked to stop.", body = TaskJson), BadRequest, NotFound, Conflict)
)]
pub async fn cancel(State(app): State<AppState>, AppJson(body): AppJson<CancelBody>) -> Result<Response, ApiError> {
    let request = CancelRequest { task_id: body.task_id.into(), reason: body.reason.map(Into::into) };
    let task = app.scheduler.cancel_task(request).await?;
    Ok(ok(TaskJson::from(&task)))
}
