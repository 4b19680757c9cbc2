//! `/api/tasks`, including the agent endpoints `claim`, `complete` and `heartbeat`.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorBody};
use super::input::{Fields, JsonBody, Query};
use super::listing::{stream_tasks, Page};
use super::schema;
use super::wire::TaskJson;
use super::{created, ok, target_id, AppState, PathId};
use crate::domain::{Id, Priority, TaskStatus};
use crate::scheduler::{ClaimRequest, CompleteRequest, HeartbeatRequest, NewTask, TaskFilter, TaskPatch};

const STATUSES: &[&str] = &["queue", "active", "completed", "failed"];
const PRIORITIES: &[&str] = &["low", "medium", "high"];
/// The longest a claim may wait for work.
pub const MAX_WAIT_MS: u64 = 30_000;
pub const MAX_LEASE_SECONDS: u32 = 86_400;
/// Why `/api/tasks/{id}` can answer 405.
const RESERVED_IDS: &str =
    "The id is `claim`, `complete` or `heartbeat`: those paths are the agents' endpoints, which take only `POST` \
     (`method_not_allowed`).";

/// Tasks, oldest first, filtered.
///
/// `?status=`, `?ventureId=`, `?assignedTo=`, `?priority=`, `?after=`, `?limit=`, `?offset=`.
/// Streamed: unfinished tasks come from memory, finished ones from the database.
#[utoipa::path(
    get,
    path = "/api/tasks",
    operation_id = "listTasks",
    tag = "tasks",
    params(schema::TaskListQuery),
    responses(
        (status = 200, description = "The matching tasks, oldest first.", body = Vec<TaskJson>),
        (status = 400, description = "A filter is malformed or out of range.", body = ErrorBody),
        (status = 404, description = "`after` names no task.", body = ErrorBody),
    )
)]
pub async fn list(State(app): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let query = Query::parse(query.as_deref())?;
    let filter = TaskFilter {
        status: query.one_of("status", TaskStatus::parse, STATUSES)?,
        venture_id: query.id("ventureId")?,
        assigned_to: query.id("assignedTo")?,
        priority: query.one_of("priority", Priority::parse, PRIORITIES)?,
    };
    let page = Page {
        after: query.id("after")?,
        offset: query.integer("offset", 0, u64::MAX)?.unwrap_or(0),
        limit: query.integer("limit", 1, u64::MAX)?.unwrap_or(u64::MAX),
    };
    stream_tasks(&app, filter, page).await
}

/// One task.
#[utoipa::path(
    get,
    path = "/api/tasks/{id}",
    operation_id = "getTask",
    tag = "tasks",
    params(schema::PathId),
    responses(
        (status = 200, description = "The task.", body = TaskJson),
        (status = 400, description = "The id is malformed.", body = ErrorBody),
        (status = 404, description = "No task has this id.", body = ErrorBody),
        (status = 405, description = RESERVED_IDS, body = ErrorBody),
    )
)]
pub async fn get(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let task = app.scheduler.get_task(id).await?;
    Ok(ok(TaskJson::from(&task)))
}

/// Creates a queued task.
#[utoipa::path(
    post,
    path = "/api/tasks",
    operation_id = "createTask",
    tag = "tasks",
    request_body = schema::NewTask,
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
        (status = 400, description = "A field is missing, of the wrong type, out of range or too long.", body = ErrorBody),
        (status = 404, description = "`ventureId` names no venture.", body = ErrorBody),
        (status = 409, description = "The client-chosen `id` is taken (`already_exists`).", body = ErrorBody),
    )
)]
pub async fn create(State(app): State<AppState>, JsonBody(body): JsonBody) -> Result<Response, ApiError> {
    let f = Fields(&body);
    if let Some(status) = f.one_of("status", TaskStatus::parse, STATUSES)? {
        if status != TaskStatus::Queue {
            return Err(ApiError::invalid("status", "a task is created queued; set other statuses with PATCH"));
        }
    }
    let new = NewTask {
        id: f.id("id")?,
        title: f.required_name("title")?,
        description: f.text("description")?,
        venture_id: f.required_id("ventureId")?,
        priority: f.one_of("priority", Priority::parse, PRIORITIES)?,
        estimated_cost: f.cost("estimatedCost")?,
        tags: f.tags("tags")?.flatten(),
        max_attempts: f.u32_in("maxAttempts", 1, u32::MAX)?,
    };
    let task = app.scheduler.create_task(new).await?;
    Ok(created(TaskJson::from(&task)))
}

/// Edits the task named by `?id=` or by `id` in the body (the seed's style).
#[utoipa::path(
    patch,
    path = "/api/tasks",
    operation_id = "updateTaskSeedStyle",
    tag = "tasks",
    params(schema::QueryId),
    request_body(content = schema::TaskUpdateWithId, description = "The fields to change, and `id` unless `?id=` is given."),
    responses(
        (status = 200, description = "The updated task.", body = TaskJson),
        (status = 400, description = "No id, or a field is of the wrong type, out of range or too long.", body = ErrorBody),
        (status = 404, description = "No task has this id.", body = ErrorBody),
        (status = 409, description = "The status change is refused (`invalid_transition`).", body = ErrorBody),
    )
)]
pub async fn update(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = target_id(&Query::parse(query.as_deref())?, &body)?;
    apply_patch(app, id, Fields(&body)).await
}

/// Edits a task.
#[utoipa::path(
    patch,
    path = "/api/tasks/{id}",
    operation_id = "updateTask",
    tag = "tasks",
    params(schema::PathId),
    request_body(content = schema::TaskUpdate, description = "The fields to change."),
    responses(
        (status = 200, description = "The updated task.", body = TaskJson),
        (status = 400, description = "A field is of the wrong type, out of range or too long.", body = ErrorBody),
        (status = 404, description = "No task has this id.", body = ErrorBody),
        (status = 409, description = "The status change is refused (`invalid_transition`).", body = ErrorBody),
        (status = 405, description = RESERVED_IDS, body = ErrorBody),
    )
)]
pub async fn update_at(
    State(app): State<AppState>,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    apply_patch(app, id, Fields(&body)).await
}

async fn apply_patch(app: AppState, id: Id, f: Fields<'_>) -> Result<Response, ApiError> {
    let patch = TaskPatch {
        title: f.non_blank_name("title")?,
        description: f.patch_text("description")?,
        priority: f.one_of("priority", Priority::parse, PRIORITIES)?,
        estimated_cost: f.patch_cost("estimatedCost")?,
        tags: f.tags("tags")?,
        max_attempts: f.u32_in("maxAttempts", 1, u32::MAX)?,
        status: f.one_of("status", TaskStatus::parse, STATUSES)?,
    };
    let task = app.scheduler.update_task(id, patch).await?;
    Ok(ok(TaskJson::from(&task)))
}

/// Deletes the task named by `?id=` or by `id` in the body (the seed's style). An active
/// task's agent is freed.
#[utoipa::path(
    delete,
    path = "/api/tasks",
    operation_id = "deleteTaskSeedStyle",
    tag = "tasks",
    params(schema::QueryId),
    request_body(content = schema::TargetId, description = "`id`, unless `?id=` is given."),
    responses(
        (status = 200, description = "The deleted task.", body = TaskJson),
        (status = 400, description = "No id, or a malformed one.", body = ErrorBody),
        (status = 404, description = "No task has this id.", body = ErrorBody),
    )
)]
pub async fn delete(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = target_id(&Query::parse(query.as_deref())?, &body)?;
    let task = app.scheduler.delete_task(id).await?;
    Ok(ok(TaskJson::from(&task)))
}

/// Deletes a task. An active task's agent is freed.
#[utoipa::path(
    delete,
    path = "/api/tasks/{id}",
    operation_id = "deleteTask",
    tag = "tasks",
    params(schema::PathId),
    responses(
        (status = 200, description = "The deleted task.", body = TaskJson),
        (status = 400, description = "The id is malformed.", body = ErrorBody),
        (status = 404, description = "No task has this id.", body = ErrorBody),
        (status = 405, description = RESERVED_IDS, body = ErrorBody),
    )
)]
pub async fn delete_at(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let task = app.scheduler.delete_task(id).await?;
    Ok(ok(TaskJson::from(&task)))
}

/// 200 with the claimed task, or 204 when nothing is eligible.
///
/// Hands out one eligible task (priority, then oldest, then id) to one agent, atomically,
/// waiting up to `waitMs` for one to become eligible.
#[utoipa::path(
    post,
    path = "/api/tasks/claim",
    operation_id = "claimTask",
    tag = "tasks",
    request_body = schema::ClaimRequest,
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
        (status = 400, description = "A field is missing, of the wrong type, out of range or too long.", body = ErrorBody),
        (status = 404, description = "`ventureId` names no venture.", body = ErrorBody),
    )
)]
pub async fn claim(State(app): State<AppState>, JsonBody(body): JsonBody) -> Result<Response, ApiError> {
    let f = Fields(&body);
    let request = ClaimRequest {
        agent_id: f.required_id("agentId")?,
        agent_name: f.non_blank_name("agentName")?,
        venture_id: f.id("ventureId")?,
        tags: f.tags("tags")?.flatten().map(|t| t.to_vec()).unwrap_or_default(),
        lease_seconds: f.u32_in("leaseSeconds", 1, MAX_LEASE_SECONDS)?,
    };
    let wait = Duration::from_millis(f.integer("waitMs", 0, MAX_WAIT_MS)?.unwrap_or(0));
    match app.scheduler.claim(request, wait).await? {
        Some(task) => Ok(ok(TaskJson::from(&task))),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Reports the outcome of a held task: success, or with `error` a failure (requeued while
/// attempts remain). Repeating the last report is safe.
#[utoipa::path(
    post,
    path = "/api/tasks/complete",
    operation_id = "completeTask",
    tag = "tasks",
    request_body = schema::CompleteRequest,
    responses(
        (status = 200, description = "The task as the report left it.", body = TaskJson),
        (status = 400, description = "A field is missing, of the wrong type, out of range or too long.", body = ErrorBody),
        (status = 404, description = "`taskId` names no task.", body = ErrorBody),
        (status = 409, description = "The agent does not hold the task (`not_holder`) or `attempt` is stale (`stale_lease`).", body = ErrorBody),
    )
)]
pub async fn complete(State(app): State<AppState>, JsonBody(body): JsonBody) -> Result<Response, ApiError> {
    let f = Fields(&body);
    let report = CompleteRequest {
        task_id: f.required_id("taskId")?,
        agent_id: f.required_id("agentId")?,
        attempt: f.u32_in("attempt", 0, u32::MAX)?,
        output: f.text("output")?,
        actual_cost: f.cost("actualCost")?,
        error: f.text("error")?,
        tokens_used: f.integer("tokensUsed", 0, i64::MAX as u64)?,
    };
    let task = app.scheduler.complete(report).await?;
    Ok(ok(TaskJson::from(&task)))
}

/// Extends the lease of a held task.
#[utoipa::path(
    post,
    path = "/api/tasks/heartbeat",
    operation_id = "heartbeatTask",
    tag = "tasks",
    request_body = schema::HeartbeatRequest,
    responses(
        (status = 200, description = "The task with its extended lease.", body = TaskJson),
        (status = 400, description = "A field is missing, of the wrong type, out of range or too long.", body = ErrorBody),
        (status = 404, description = "`taskId` names no task.", body = ErrorBody),
        (status = 409, description = "The agent does not hold the task (`not_holder`) or `attempt` is stale (`stale_lease`).", body = ErrorBody),
    )
)]
pub async fn heartbeat(State(app): State<AppState>, JsonBody(body): JsonBody) -> Result<Response, ApiError> {
    let f = Fields(&body);
    let beat = HeartbeatRequest {
        task_id: f.required_id("taskId")?,
        agent_id: f.required_id("agentId")?,
        attempt: f.u32_in("attempt", 0, u32::MAX)?,
        lease_seconds: f.u32_in("leaseSeconds", 1, MAX_LEASE_SECONDS)?,
    };
    let task = app.scheduler.heartbeat(beat).await?;
    Ok(ok(TaskJson::from(&task)))
}
