//! `/api/ventures`.

use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::error::ApiError;
use super::input::{Fields, JsonBody, Query};
use super::wire::VentureJson;
use super::{created, ok, target_id, AppState, PathId};
use crate::domain::{Id, Priority, VentureStatus};
use crate::scheduler::{NewVenture, VenturePatch};

const STATUSES: &[&str] = &["active", "paused", "completed"];
const PRIORITIES: &[&str] = &["low", "medium", "high"];

pub async fn list(State(app): State<AppState>) -> Result<Response, ApiError> {
    let ventures = app.scheduler.list_ventures().await?;
    Ok(ok(ventures.iter().map(VentureJson::from).collect::<Vec<_>>()))
}

pub async fn get(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let venture = app.scheduler.get_venture(id).await?;
    Ok(ok(VentureJson::from(&venture)))
}

pub async fn create(State(app): State<AppState>, JsonBody(body): JsonBody) -> Result<Response, ApiError> {
    let f = Fields(&body);
    let new = NewVenture {
        id: f.id("id")?,
        name: f.required_name("name")?,
        icon: f.name("icon")?,
        status: f.one_of("status", VentureStatus::parse, STATUSES)?,
        priority: f.one_of("priority", Priority::parse, PRIORITIES)?,
        capital_budget: f.cost("capitalBudget")?,
        capital_spent: f.cost("capitalSpent")?,
        description: f.text("description")?,
    };
    let venture = app.scheduler.create_venture(new).await?;
    Ok(created(VentureJson::from(&venture)))
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
    let patch = VenturePatch {
        name: f.non_blank_name("name")?,
        icon: f.name("icon")?,
        status: f.one_of("status", VentureStatus::parse, STATUSES)?,
        priority: f.one_of("priority", Priority::parse, PRIORITIES)?,
        capital_budget: f.cost("capitalBudget")?,
        capital_spent: f.cost("capitalSpent")?,
        description: f.patch_text("description")?,
    };
    let venture = app.scheduler.update_venture(id, patch).await?;
    Ok(ok(VentureJson::from(&venture)))
}

pub async fn delete(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = target_id(&Query::parse(query.as_deref())?, &body)?;
    let venture = app.scheduler.delete_venture(id).await?;
    Ok(ok(VentureJson::from(&venture)))
}

pub async fn delete_at(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let venture = app.scheduler.delete_venture(id).await?;
    Ok(ok(VentureJson::from(&venture)))
}
