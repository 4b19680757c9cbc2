//! The OpenAPI 3.1 document of the whole API, generated from the handlers' `#[utoipa::path]`
//! annotations, the response types in `wire` and the request types the handlers decode, and
//! served at `GET /openapi.json`. `docs/openapi.json` is a checked-in copy that
//! `tests/openapi.rs` keeps equal to it (`MC_UPDATE_OPENAPI=1` rewrites it).
//!
//! What every `/api` operation shares is added here rather than repeated on each handler:
//! the bearer token (401 when one is configured and missing), 503 when the store is not
//! taking writes or the server is shutting down, and, for operations that read a body, 408
//! (the body was too slow) and 413 (over 1 MiB). The error responses operations share
//! (`error::BadRequest`, `NotFound`, `Conflict`) are described once, here. The seed's style
//! of `PATCH` and `DELETE` (`/api/<collection>` with `?id=` or `id` in the body) is served by
//! the same handlers as `/api/<collection>/{id}`, and its operations are derived from theirs.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required};
use utoipa::OpenApi;

use super::error::ErrorBody;
use super::extract::id_parameter;
use super::{activities, agents, events, ops, tasks, ventures};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mission Control",
        description = "An atomic task scheduler for fleets of AI agents: ventures, tasks, agents and an \
                       activity log over JSON HTTP. The prose contract, with the decisions that settle what \
                       this document cannot say, is `docs/API.md`.",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        ventures::list,
        ventures::create,
        ventures::get,
        ventures::update,
        ventures::delete,
        tasks::list,
        tasks::create,
        tasks::get,
        tasks::attempts,
        tasks::update,
        tasks::delete,
        tasks::claim,
        tasks::complete,
        tasks::heartbeat,
        tasks::cancel,
        agents::list,
        agents::upsert,
        agents::get,
        agents::update,
        agents::delete,
        agents::heartbeat,
        activities::list,
        activities::create,
        activities::get,
        events::stream,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        serve,
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "ventures", description = "Ventures: budgets and the tasks that spend them."),
        (name = "tasks", description = "Tasks, and the agents' endpoints: claim, complete, heartbeat; cancel."),
        (name = "agents", description = "Agents."),
        (name = "activities", description = "The activity log."),
        (name = "events", description = "The live feed of changes."),
        (name = "operations", description = "Liveness, readiness, metrics and this document. Never need the token."),
    )
)]
struct ApiDoc;

const BEARER: &str = "bearerAuth";
const ACCESS_TOKEN: &str = "accessToken";

/// The document (`document_json` is what `/openapi.json` serves).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The server's `--api-token` (`MC_API_TOKEN`), when one is set: every `/api` request \
                     needs `Authorization: Bearer <token>`.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        ACCESS_TOKEN,
        SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
            "access_token",
            "The API token as `?access_token=`, for `/api/events` only (a browser's EventSource cannot set headers).",
        ))),
    );
    components.schemas.insert("TargetId".to_owned(), target_id_schema());
    let error = || ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build();
    let shared = [
        (
            "BadRequest",
            "The request is malformed: the body is not a JSON object (`malformed_json`, `bad_body`) or the \
             query string cannot be read (`bad_query`), or a field or parameter, named by `field`, is missing \
             (`missing_field`), of the wrong type, out of range or too long (`validation_error`), or not one \
             the request has (`unknown_field`).",
            false,
        ),
        (
            "NotFound",
            "An id, in the path, the query or a field such as `ventureId` (then named by `field`), names no \
             record (`not_found`).",
            false,
        ),
        (
            "Conflict",
            "The request conflicts with the state, with `field` naming the field at fault when one is: a \
             client-chosen `id` that is taken (`already_exists`), a refused status change \
             (`invalid_transition`), a venture with active tasks (`venture_in_use`), a task the agent does \
             not hold (`not_holder`), a stale `attempt` (`stale_lease`) or a report that differs from \
             the one already applied for that attempt (`conflicting_report`), or a claim by an agent \
             that has reached its `maxTokens` (`token_limit`).",
            false,
        ),
        ("Unauthorized", "A token is configured and the request lacks it or has a wrong one (`unauthorized`).", false),
        ("RequestTimeout", "The request body did not arrive in time (`request_timeout`).", false),
        ("PayloadTooLarge", "The request body is over 1 MiB (`payload_too_large`).", false),
        (
            "Unavailable",
            "The store is not taking writes, the write backlog is over `--max-pending`, too many claims \
             or event streams wait, or the server is shutting down (`unavailable`, `store_unavailable`). \
             Retry after the `Retry-After` seconds.",
            true,
        ),
    ];
    for (name, description, retry_after) in shared {
        let mut response = ResponseBuilder::new().description(description).content("application/json", error());
        if retry_after {
            let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
            response = response.header(
                "Retry-After",
                HeaderBuilder::new().schema(seconds).description(Some("Seconds to wait before retrying.")).build(),
            );
        }
        components.responses.insert(name.to_owned(), RefOr::T(response.build()));
    }

    add_seed_style(&mut doc);
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/api/") {
            continue;
        }
        for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
            add_shared(operation);
        }
        for operation in [&mut item.patch, &mut item.delete].into_iter().flatten() {
            add_shared(operation);
            // A PATCH may change nothing, and the seed style's id may come in the query: their
            // bodies may be left out (an empty body counts as `{}`).
            if let Some(body) = &mut operation.request_body {
                body.required = Some(Required::False);
            }
        }
    }
    doc
}

/// Adds `PATCH` and `DELETE` on `/api/<collection>` (the seed's style) as copies of those on
/// `/api/<collection>/{id}`, with the id in `?id=` or in the body instead of in the path.
fn add_seed_style(doc: &mut utoipa::openapi::OpenApi) {
    for collection in ["ventures", "tasks", "agents"] {
        let Some(by_path) = doc.paths.paths.get(&format!("/api/{collection}/{{id}}")) else { continue };
        let (patch, delete) = (by_path.patch.clone(), by_path.delete.clone());
        let Some(seed) = doc.paths.paths.get_mut(&format!("/api/{collection}")) else { continue };
        seed.patch = patch.map(seed_style);
        seed.delete = delete.map(seed_style);
    }
}

fn seed_style(mut operation: Operation) -> Operation {
    operation.operation_id = operation.operation_id.map(|id| id + "SeedStyle");
    operation.parameters = Some(vec![id_parameter(ParameterIn::Query)]);
    // Only `/api/tasks/{id}` can collide with the agents' endpoints.
    operation.responses.responses.remove("405");
    let target = Ref::from_schema_name("TargetId");
    let fields = operation.request_body.take().and_then(|body| body.content.into_values().next()?.schema);
    let (schema, description): (RefOr<Schema>, _) = match fields {
        Some(fields) => (
            AllOfBuilder::new().item(fields).item(target).into(),
            "The fields to change, and `id` unless `?id=` is given.",
        ),
        None => (target.into(), "`id`, unless `?id=` is given."),
    };
    let content = ContentBuilder::new().schema(Some(schema)).build();
    operation.request_body =
        Some(RequestBodyBuilder::new().description(Some(description)).content("application/json", content).build());
    operation
}

/// The seed style's `id` in a body: any value is accepted while `?id=` names the record.
fn target_id_schema() -> RefOr<Schema> {
    let id = ObjectBuilder::new().schema_type(SchemaType::AnyValue).description(Some(
        "Names the record when `?id=` is absent, as a non-blank string of at most 1,000 characters (400 \
         otherwise); ignored when `?id=` is given.",
    ));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("id", id)
        .description(Some("The seed style's id in the body, used when `?id=` is absent."))
        .into()
}

fn add_shared(operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    let mut add = |status: &str, name: &str| {
        responses.insert(status.to_owned(), RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
    };
    add("401", "Unauthorized");
    add("503", "Unavailable");
    if operation.request_body.is_some() {
        add("408", "RequestTimeout");
        add("413", "PayloadTooLarge");
    }
    operation.security.get_or_insert_with(|| vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
}

/// The document as JSON, as served.
///
/// utoipa 5 writes the fields of a response's link in snake case (`operation_id`,
/// `request_body`: juhaku/utoipa#1326), which clients such as schemathesis reject; they are
/// renamed here to the camelCase of the OpenAPI spec.
pub fn document_json() -> Value {
    let mut json = serde_json::to_value(document()).expect("the document encodes");
    if let Some(paths) = json.get_mut("paths").and_then(Value::as_object_mut) {
        let operations = paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut());
        let responses = operations.filter_map(|op| op.get_mut("responses")).filter_map(Value::as_object_mut);
        let links = responses.flat_map(|r| r.values_mut()).filter_map(|r| r.get_mut("links"));
        for link in links.filter_map(Value::as_object_mut).flat_map(|l| l.values_mut()).filter_map(Value::as_object_mut)
        {
            for (from, to) in
                [("operation_id", "operationId"), ("operation_ref", "operationRef"), ("request_body", "requestBody")]
            {
                if let Some(value) = link.remove(from) {
                    link.insert(to.to_owned(), value);
                }
            }
        }
    }
    json
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object)),
    tag = "operations"
)]
pub async fn serve() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| document_json().to_string());
    ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response()
}
