//! `/api/agents`. `POST` is an upsert by id, as in the seed.

use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::error::{ApiError, ErrorBody};
use super::input::{Fields, JsonBody, Query};
use super::schema;
use super::wire::AgentJson;
use super::{created, ok, target_id, AppState, PathId};
use crate::domain::{AgentStatus, Id};
use crate::scheduler::AgentFields;

const STATUSES: &[&str] = &["online", "offline", "busy", "error"];

/// Every agent, oldest first.
#[utoipa::path(
    get,
    path = "/api/agents",
    operation_id = "listAgents",
    tag = "agents",
    responses((status = 200, description = "Every agent, oldest first.", body = Vec<AgentJson>))
)]
pub async fn list(State(app): State<AppState>) -> Result<Response, ApiError> {
    let agents = app.scheduler.list_agents().await?;
    Ok(ok(agents.iter().map(|a| AgentJson::from(&**a)).collect::<Vec<_>>()))
}

/// One agent.
#[utoipa::path(
    get,
    path = "/api/agents/{id}",
    operation_id = "getAgent",
    tag = "agents",
    params(schema::PathId),
    responses(
        (status = 200, description = "The agent.", body = AgentJson),
        (status = 400, description = "The id is malformed.", body = ErrorBody),
        (status = 404, description = "No agent has this id.", body = ErrorBody),
    )
)]
pub async fn get(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let agent = app.scheduler.get_agent(id).await?;
    Ok(ok(AgentJson::from(&*agent)))
}

/// 201 when the agent is new, 200 when it existed and was updated.
#[utoipa::path(
    post,
    path = "/api/agents",
    operation_id = "upsertAgent",
    tag = "agents",
    request_body = schema::AgentUpsert,
    responses(
        (status = 200, description = "The agent existed and was updated.", body = AgentJson),
        (status = 201, description = "The agent was created.", body = AgentJson),
        (status = 400, description = "A field is of the wrong type, out of range or too long, or a new agent has no `name`.", body = ErrorBody),
    )
)]
pub async fn upsert(State(app): State<AppState>, JsonBody(body): JsonBody) -> Result<Response, ApiError> {
    let f = Fields(&body);
    let id = f.id("id")?;
    let upserted = app.scheduler.upsert_agent(id, agent_fields(&f)?).await?;
    let json = AgentJson::from(&*upserted.agent);
    Ok(if upserted.created { created(json) } else { ok(json) })
}

/// Edits the agent named by `?id=` or by `id` in the body (the seed's style).
#[utoipa::path(
    patch,
    path = "/api/agents",
    operation_id = "updateAgentSeedStyle",
    tag = "agents",
    params(schema::QueryId),
    request_body(content = schema::AgentUpdateWithId, description = "The fields to change, and `id` unless `?id=` is given."),
    responses(
        (status = 200, description = "The updated agent.", body = AgentJson),
        (status = 400, description = "No id, or a field is of the wrong type, out of range or too long.", body = ErrorBody),
        (status = 404, description = "No agent has this id.", body = ErrorBody),
    )
)]
pub async fn update(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = target_id(&Query::parse(query.as_deref())?, &body)?;
    apply_update(app, id, Fields(&body)).await
}

/// Edits an agent.
#[utoipa::path(
    patch,
    path = "/api/agents/{id}",
    operation_id = "updateAgent",
    tag = "agents",
    params(schema::PathId),
    request_body(content = schema::AgentUpdate, description = "The fields to change."),
    responses(
        (status = 200, description = "The updated agent.", body = AgentJson),
        (status = 400, description = "A field is of the wrong type, out of range or too long.", body = ErrorBody),
        (status = 404, description = "No agent has this id.", body = ErrorBody),
    )
)]
pub async fn update_at(
    State(app): State<AppState>,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    apply_update(app, id, Fields(&body)).await
}

async fn apply_update(app: AppState, id: Id, f: Fields<'_>) -> Result<Response, ApiError> {
    let agent = app.scheduler.update_agent(id, agent_fields(&f)?).await?;
    Ok(ok(AgentJson::from(&*agent)))
}

/// The editable fields. `currentTask` is derived from the tasks the agent holds, so it is
/// not taken from input.
fn agent_fields(f: &Fields<'_>) -> Result<AgentFields, ApiError> {
    Ok(AgentFields {
        name: f.non_blank_name("name")?,
        status: f.one_of("status", AgentStatus::parse, STATUSES)?,
        model: f.name("model")?,
        tokens_used: f.integer("tokensUsed", 0, i64::MAX as u64)?,
        max_tokens: f.integer("maxTokens", 0, i64::MAX as u64)?,
        sessions_count: f.integer("sessionsCount", 0, i64::MAX as u64)?,
    })
}

/// Deletes the agent named by `?id=` or by `id` in the body (the seed's style); its active
/// tasks go back to the queue.
#[utoipa::path(
    delete,
    path = "/api/agents",
    operation_id = "deleteAgentSeedStyle",
    tag = "agents",
    params(schema::QueryId),
    request_body(content = schema::TargetId, description = "`id`, unless `?id=` is given."),
    responses(
        (status = 200, description = "The deleted agent.", body = AgentJson),
        (status = 400, description = "No id, or a malformed one.", body = ErrorBody),
        (status = 404, description = "No agent has this id.", body = ErrorBody),
    )
)]
pub async fn delete(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = target_id(&Query::parse(query.as_deref())?, &body)?;
    let agent = app.scheduler.delete_agent(id).await?;
    Ok(ok(AgentJson::from(&*agent)))
}

/// Deletes an agent; its active tasks go back to the queue.
#[utoipa::path(
    delete,
    path = "/api/agents/{id}",
    operation_id = "deleteAgent",
    tag = "agents",
    params(schema::PathId),
    responses(
        (status = 200, description = "The deleted agent.", body = AgentJson),
        (status = 400, description = "The id is malformed.", body = ErrorBody),
        (status = 404, description = "No agent has this id.", body = ErrorBody),
    )
)]
pub async fn delete_at(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let agent = app.scheduler.delete_agent(id).await?;
    Ok(ok(AgentJson::from(&*agent)))
}
