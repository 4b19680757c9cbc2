//! `/api/ventures`.

use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::error::{ApiError, ErrorBody};
use super::input::{Fields, JsonBody, Query};
use super::schema;
use super::wire::VentureJson;
use super::{created, ok, target_id, AppState, PathId};
use crate::domain::{Id, Priority, VentureStatus};
use crate::scheduler::{NewVenture, VenturePatch};

const STATUSES: &[&str] = &["active", "paused", "completed"];
const PRIORITIES: &[&str] = &["low", "medium", "high"];

/// Every venture, oldest first.
#[utoipa::path(
    get,
    path = "/api/ventures",
    operation_id = "listVentures",
    tag = "ventures",
    responses((status = 200, description = "Every venture, oldest first.", body = Vec<VentureJson>))
)]
pub async fn list(State(app): State<AppState>) -> Result<Response, ApiError> {
    let ventures = app.scheduler.list_ventures().await?;
    Ok(ok(ventures.iter().map(VentureJson::from).collect::<Vec<_>>()))
}

/// One venture.
#[utoipa::path(
    get,
    path = "/api/ventures/{id}",
    operation_id = "getVenture",
    tag = "ventures",
    params(schema::PathId),
    responses(
        (status = 200, description = "The venture.", body = VentureJson),
        (status = 400, description = "The id is malformed.", body = ErrorBody),
        (status = 404, description = "No venture has this id.", body = ErrorBody),
    )
)]
pub async fn get(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let venture = app.scheduler.get_venture(id).await?;
    Ok(ok(VentureJson::from(&venture)))
}

/// Creates a venture.
#[utoipa::path(
    post,
    path = "/api/ventures",
    operation_id = "createVenture",
    tag = "ventures",
    request_body = schema::NewVenture,
    responses(
        (status = 201, description = "The created venture.", body = VentureJson),
        (status = 400, description = "A field is missing, of the wrong type, out of range or too long.", body = ErrorBody),
        (status = 409, description = "The client-chosen `id` is taken (`already_exists`).", body = ErrorBody),
    )
)]
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

/// Edits the venture named by `?id=` or by `id` in the body (the seed's style).
#[utoipa::path(
    patch,
    path = "/api/ventures",
    operation_id = "updateVentureSeedStyle",
    tag = "ventures",
    params(schema::QueryId),
    request_body(content = schema::VentureUpdateWithId, description = "The fields to change, and `id` unless `?id=` is given."),
    responses(
        (status = 200, description = "The updated venture.", body = VentureJson),
        (status = 400, description = "No id, or a field is of the wrong type, out of range or too long.", body = ErrorBody),
        (status = 404, description = "No venture has this id.", body = ErrorBody),
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

/// Edits a venture.
#[utoipa::path(
    patch,
    path = "/api/ventures/{id}",
    operation_id = "updateVenture",
    tag = "ventures",
    params(schema::PathId),
    request_body(content = schema::VentureUpdate, description = "The fields to change."),
    responses(
        (status = 200, description = "The updated venture.", body = VentureJson),
        (status = 400, description = "A field is of the wrong type, out of range or too long.", body = ErrorBody),
        (status = 404, description = "No venture has this id.", body = ErrorBody),
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

/// Deletes the venture named by `?id=` or by `id` in the body (the seed's style), with its
/// tasks.
#[utoipa::path(
    delete,
    path = "/api/ventures",
    operation_id = "deleteVentureSeedStyle",
    tag = "ventures",
    params(schema::QueryId),
    request_body(content = schema::TargetId, description = "`id`, unless `?id=` is given."),
    responses(
        (status = 200, description = "The deleted venture.", body = VentureJson),
        (status = 400, description = "No id, or a malformed one.", body = ErrorBody),
        (status = 404, description = "No venture has this id.", body = ErrorBody),
        (status = 409, description = "The venture has active tasks (`venture_in_use`).", body = ErrorBody),
    )
)]
pub async fn delete(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = target_id(&Query::parse(query.as_deref())?, &body)?;
    let venture = app.scheduler.delete_venture(id).await?;
    Ok(ok(VentureJson::from(&venture)))
}

/// Deletes a venture with its tasks.
#[utoipa::path(
    delete,
    path = "/api/ventures/{id}",
    operation_id = "deleteVenture",
    tag = "ventures",
    params(schema::PathId),
    responses(
        (status = 200, description = "The deleted venture.", body = VentureJson),
        (status = 400, description = "The id is malformed.", body = ErrorBody),
        (status = 404, description = "No venture has this id.", body = ErrorBody),
        (status = 409, description = "The venture has active tasks (`venture_in_use`).", body = ErrorBody),
    )
)]
pub async fn delete_at(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let venture = app.scheduler.delete_venture(id).await?;
    Ok(ok(VentureJson::from(&venture)))
}
