//! `/api/agents`. `POST` is an upsert by id, as in the seed.

use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::error::ApiError;
use super::input::{Fields, JsonBody, Query};
use super::wire::AgentJson;
use super::{created, ok, target_id, AppState, PathId};
use crate::domain::{AgentStatus, Id};
use crate::scheduler::AgentFields;

const STATUSES: &[&str] = &["online", "offline", "busy", "error"];

pub async fn list(State(app): State<AppState>) -> Result<Response, ApiError> {
    let agents = app.scheduler.list_agents().await?;
    Ok(ok(agents.iter().map(|a| AgentJson::from(&**a)).collect::<Vec<_>>()))
}

pub async fn get(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let agent = app.scheduler.get_agent(id).await?;
    Ok(ok(AgentJson::from(&*agent)))
}

/// 201 when the agent is new, 200 when it existed and was updated.
pub async fn upsert(State(app): State<AppState>, JsonBody(body): JsonBody) -> Result<Response, ApiError> {
    let f = Fields(&body);
    let id = f.id("id")?;
    let upserted = app.scheduler.upsert_agent(id, agent_fields(&f)?).await?;
    let json = AgentJson::from(&*upserted.agent);
    Ok(if upserted.created { created(json) } else { ok(json) })
}

pub async fn update(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = target_id(&Query::parse(query.as_deref())?, &body)?;
    apply_update(app, id, Fields(&body)).await
}

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

pub async fn delete(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = target_id(&Query::parse(query.as_deref())?, &body)?;
    let agent = app.scheduler.delete_agent(id).await?;
    Ok(ok(AgentJson::from(&*agent)))
}

pub async fn delete_at(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let agent = app.scheduler.delete_agent(id).await?;
    Ok(ok(AgentJson::from(&*agent)))
}
