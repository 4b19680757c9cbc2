//! `/api/ventures`.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, BadRequest, Conflict, NotFound};
use super::extract::{Accepts, AppJson, NoQuery, PathId, Target, TargetId};
use super::fields::{Clearable, Cost, Name, NonBlank, Text};
use super::wire::VentureJson;
use super::{created, ok, AppState};
use crate::domain::{Priority, VentureStatus};
use crate::scheduler::{NewVenture, VenturePatch};

/// Every venture, oldest first.
#[utoipa::path(
    get,
    path = "/api/ventures",
    operation_id = "listVentures",
    tag = "ventures",
    responses((status = 200, description = "Every venture, oldest first.", body = Vec<VentureJson>))
)]
pub async fn list(State(app): State<AppState>, _: NoQuery) -> Result<Response, ApiError> {
    let ventures = app.scheduler.list_ventures().await?;
    Ok(ok(ventures.iter().map(VentureJson::from).collect::<Vec<_>>()))
}

/// One venture.
#[utoipa::path(
    get,
    path = "/api/ventures/{id}",
    operation_id = "getVenture",
    tag = "ventures",
    params(PathId),
    responses((status = 200, description = "The venture.", body = VentureJson), BadRequest, NotFound)
)]
pub async fn get(State(app): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let venture = app.scheduler.get_venture(id).await?;
    Ok(ok(VentureJson::from(&venture)))
}

/// `POST /api/ventures`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = NewVenture)]
pub struct NewVentureBody {
    /// A client-chosen id; a taken one is `409 already_exists`. Generated (a ULID) when absent.
    id: Option<NonBlank>,
    name: NonBlank,
    /// Default "🚀".
    icon: Option<Name>,
    /// Default `active`.
    status: Option<VentureStatus>,
    /// Default `medium`.
    priority: Option<Priority>,
    /// Default 0: no budget.
    capital_budget: Option<Cost>,
    /// Default 0.
    capital_spent: Option<Cost>,
    description: Option<Text>,
}

impl Accepts for NewVentureBody {
    const ALSO: &'static [&'static str] = super::wire::VENTURE_FIELDS;
}

/// Creates a venture.
#[utoipa::path(
    post,
    path = "/api/ventures",
    operation_id = "createVenture",
    tag = "ventures",
    request_body = NewVentureBody,
    responses((status = 201, description = "The created venture.", body = VentureJson), BadRequest, Conflict)
)]
pub async fn create(State(app): State<AppState>, AppJson(body): AppJson<NewVentureBody>) -> Result<Response, ApiError> {
    let new = NewVenture {
        id: body.id.map(Into::into),
        name: body.name.into(),
        icon: body.icon.map(Into::into),
        status: body.status,
        priority: body.priority,
        capital_budget: body.capital_budget.map(Into::into),
        capital_spent: body.capital_spent.map(Into::into),
        description: body.description.map(Into::into),
    };
    let venture = app.scheduler.create_venture(new).await?;
    Ok(created(VentureJson::from(&venture)))
}

/// `PATCH /api/ventures/{id}`: the fields given are changed; `null` leaves a field as it
/// is, except `description`, which it clears.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = VentureUpdate)]
pub struct VentureUpdateBody {
    name: Option<NonBlank>,
    icon: Option<Name>,
    status: Option<VentureStatus>,
    priority: Option<Priority>,
    capital_budget: Option<Cost>,
    capital_spent: Option<Cost>,
    /// `null` clears it.
    #[serde(default)]
    #[schema(value_type = Option<Text>)]
    description: Clearable<Text>,
}

impl Accepts for VentureUpdateBody {
    const ALSO: &'static [&'static str] = super::wire::VENTURE_FIELDS;
}

/// Edits a venture. `PATCH /api/ventures` names it the seed's way, by `?id=` or `id` in the
/// body.
#[utoipa::path(
    patch,
    path = "/api/ventures/{id}",
    operation_id = "updateVenture",
    tag = "ventures",
    params(PathId),
    request_body(content = VentureUpdateBody, description = "The fields to change."),
    responses((status = 200, description = "The updated venture.", body = VentureJson), BadRequest, NotFound)
)]
pub async fn update(
    State(app): State<AppState>,
    Target { id, fields }: Target<VentureUpdateBody>,
) -> Result<Response, ApiError> {
    let patch = VenturePatch {
        name: fields.name.map(Into::into),
        icon: fields.icon.map(Into::into),
        status: fields.status,
        priority: fields.priority,
        capital_budget: fields.capital_budget.map(Into::into),
        capital_spent: fields.capital_spent.map(Into::into),
        description: fields.description.into_patch(),
    };
    let venture = app.scheduler.update_venture(id, patch).await?;
    Ok(ok(VentureJson::from(&venture)))
}

/// Deletes a venture with its tasks. `DELETE /api/ventures` names it the seed's way, by
/// `?id=` or `id` in the body.
#[utoipa::path(
    delete,
    path = "/api/ventures/{id}",
    operation_id = "deleteVenture",
    tag = "ventures",
    params(PathId),
    responses((status = 200, description = "The deleted venture.", body = VentureJson), BadRequest, NotFound, Conflict)
)]
pub async fn delete(State(app): State<AppState>, TargetId(id): TargetId) -> Result<Response, ApiError> {
    let venture = app.scheduler.delete_venture(id).await?;
    Ok(ok(VentureJson::from(&venture)))
}
