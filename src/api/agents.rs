//! `/api/agents`. `POST` is an upsert by id, as in the seed.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, BadRequest, NotFound};
use super::extract::{Accepts, NoQuery, PathId, Target, TargetId, WithId};
use super::fields::{Count, Name, NonBlank};
use super::wire::AgentJson;
use super::{created, ok, AppState};
use crate::domain::AgentStatus;
use crate::scheduler::AgentFields;

/// Every agent, oldest first.
#[utoipa::path(
    get,
    path = "/api/agents",
    operation_id = "listAgents",
    tag = "agents",
    responses((status = 200, description = "Every agent, oldest first.", body = Vec<AgentJson>))
)]
pub async fn list(State(app): State<AppState>, _: NoQuery) -> Result<Response, ApiError> {
    let agents = app.scheduler.list_agents().await?;
    Ok(ok(agents.iter().map(|a| AgentJson::from(&**a)).collect::<Vec<_>>()))
}

/// One agent.
#[utoipa::path(
    get,
    path = "/api/agents/{id}",
    operation_id = "getAgent",
    tag = "agents",
    params(PathId),
    responses((status = 200, description = "The agent.", body = AgentJson), BadRequest, NotFound)
)]
pub async fn get(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let agent = app.scheduler.get_agent(id).await?;
    Ok(ok(AgentJson::from(&*agent)))
}

/// `PATCH /api/agents/{id}`, and with `id` `POST /api/agents`: the fields given are
/// changed. `currentTask` is derived from the tasks the agent holds and is not taken from
/// input.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AgentUpdate)]
pub struct AgentUpdateBody {
    /// Required when the agent is created (400 otherwise).
    name: Option<NonBlank>,
    /// Default `online`.
    status: Option<AgentStatus>,
    /// Default "unknown".
    model: Option<Name>,
    #[schema(inline)]
    tokens_used: Option<Count>,
    /// 0 means no limit.
    #[schema(inline)]
    max_tokens: Option<Count>,
    #[schema(inline)]
    sessions_count: Option<Count>,
}

impl Accepts for AgentUpdateBody {
    const ALSO: &'static [&'static str] = super::wire::AGENT_FIELDS;
}

impl From<AgentUpdateBody> for AgentFields {
    fn from(body: AgentUpdateBody) -> AgentFields {
        AgentFields {
            name: body.name.map(Into::into),
            status: body.status,
            model: body.model.map(Into::into),
            tokens_used: body.tokens_used.map(Into::into),
            max_tokens: body.max_tokens.map(Into::into),
            sessions_count: body.sessions_count.map(Into::into),
        }
    }
}

/// `POST /api/agents`: the fields of `AgentUpdate`, and the agent's `id`.
pub type AgentUpsert = WithId<AgentUpdateBody>;

/// 201 when the agent is new, 200 when it existed and was updated. The `id` names the agent
/// (generated, a ULID, when absent).
#[utoipa::path(
    post,
    path = "/api/agents",
    operation_id = "upsertAgent",
    tag = "agents",
    request_body = AgentUpsert,
    responses(
        (status = 200, description = "The agent existed and was updated.", body = AgentJson),
        (status = 201, description = "The agent was created.", body = AgentJson),
        BadRequest,
    )
)]
pub async fn upsert(State(app): State<AppState>, WithId { id, fields }: AgentUpsert) -> Result<Response, ApiError> {
    let upserted = app.scheduler.upsert_agent(id, fields.into()).await?;
    let json = AgentJson::from(&*upserted.agent);
    Ok(if upserted.created { created(json) } else { ok(json) })
}

/// Edits an agent. `PATCH /api/agents` names it the seed's way, by `?id=` or `id` in the
/// body.
#[utoipa::path(
    patch,
    path = "/api/agents/{id}",
    operation_id = "updateAgent",
    tag = "agents",
    params(PathId),
    request_body(content = AgentUpdateBody, description = "The fields to change."),
    responses((status = 200, description = "The updated agent.", body = AgentJson), BadRequest, NotFound)
)]
pub async fn update(State(app): State<AppState>, target: Target<AgentUpdateBody>) -> Result<Response, ApiError> {
    let agent = app.scheduler.update_agent(target.id, target.fields.into()).await?;
    Ok(ok(AgentJson::from(&*agent)))
}

/// Keeps an idle agent alive: `lastActiveAt` becomes now, and an `offline` agent is
/// `online` again. An agent holding no task and not heard from for `--agent-timeout`
/// seconds is shown `offline`.
#[utoipa::path(
    post,
    path = "/api/agents/{id}/heartbeat",
    operation_id = "agentHeartbeat",
    tag = "agents",
    params(PathId),
    responses((status = 200, description = "The agent, just seen.", body = AgentJson), BadRequest, NotFound)
)]
pub async fn heartbeat(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let agent = app.scheduler.agent_heartbeat(id).await?;
    Ok(ok(AgentJson::from(&*agent)))
}

/// Deletes an agent; its active tasks go back to the queue. `DELETE /api/agents` names it
/// the seed's way, by `?id=` or `id` in the body.
#[utoipa::path(
    delete,
    path = "/api/agents/{id}",
    operation_id = "deleteAgent",
    tag = "agents",
    params(PathId),
    responses((status = 200, description = "The deleted agent.", body = AgentJson), BadRequest, NotFound)
)]
pub async fn delete(State(app): State<AppState>, TargetId(id): TargetId) -> Result<Response, ApiError> {
    let agent = app.scheduler.delete_agent(id).await?;
    Ok(ok(AgentJson::from(&*agent)))
}
