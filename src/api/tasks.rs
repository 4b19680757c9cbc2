//! `/api/tasks`, including the agent endpoints `claim`, `complete` and `heartbeat`.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::input::{Fields, JsonBody, Query};
use super::wire::TaskJson;
use super::{created, ok, target_id, AppState, PathId};
use crate::domain::{Id, Priority, TaskStatus};
use crate::scheduler::{ClaimRequest, CompleteRequest, HeartbeatRequest, NewTask, TaskFilter, TaskPatch};

const STATUSES: &[&str] = &["queue", "active", "completed", "failed"];
const PRIORITIES: &[&str] = &["low", "medium", "high"];
/// The longest a claim may wait for work.
pub const MAX_WAIT_MS: u64 = 30_000;
pub const MAX_LEASE_SECONDS: u32 = 86_400;

/// Oldest first; `?status=`, `?ventureId=`, `?assignedTo=`, `?priority=`, `?limit=`, `?offset=`.
pub async fn list(State(app): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let query = Query::parse(query.as_deref())?;
    let filter = TaskFilter {
        status: query.one_of("status", TaskStatus::parse, STATUSES)?,
        venture_id: query.id("ventureId")?,
        assigned_to: query.id("assignedTo")?,
        priority: query.one_of("priority", Priority::parse, PRIORITIES)?,
    };
    let limit = query.integer("limit", 1, u64::MAX)?.unwrap_or(u64::MAX);
    let offset = query.integer("offset", 0, u64::MAX)?.unwrap_or(0);
    let tasks = app.scheduler.list_tasks(filter).await?;
    let page: Vec<TaskJson> = tasks
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(TaskJson::from)
        .collect();
    Ok(ok(page))
}

pub async fn get(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let task = app.scheduler.get_task(id).await?;
    Ok(ok(TaskJson::from(&task)))
}

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

pub async fn update(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = target_id(&Query::parse(query.as_deref())?, &body)?;
    apply_patch(app, id, Fields(&body)).await
}

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

pub async fn delete(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = target_id(&Query::parse(query.as_deref())?, &body)?;
    let task = app.scheduler.delete_task(id).await?;
    Ok(ok(TaskJson::from(&task)))
}

pub async fn delete_at(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let task = app.scheduler.delete_task(id).await?;
    Ok(ok(TaskJson::from(&task)))
}

/// 200 with the claimed task, or 204 when nothing is eligible.
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
