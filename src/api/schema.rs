//! Schemas for the OpenAPI document that have no Rust type of their own in the API layer.
//!
//! Request bodies are decoded by hand (`input::Fields`), so these structs exist only to
//! describe, field for field, what the handlers accept: names, types, `null` (absent, or in
//! a `PATCH` a cleared field), lengths and ranges. They are never built. Keep them in step
//! with the handlers; `docs/openapi.json` and the schemathesis run check the result.

#![allow(dead_code)] // described, never constructed

use std::borrow::Cow;

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, PartialSchema, ToSchema};

// ----- enums -----

/// A task's status.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum TaskStatus {
    Queue,
    Active,
    Completed,
    Failed,
}

/// The only status a task may be created with.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum InitialTaskStatus {
    Queue,
}

/// A task's or venture's priority.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Medium,
    High,
}

/// A venture's status. Only `active` ventures dispense tasks.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum VentureStatus {
    Active,
    Paused,
    Completed,
}

/// An agent's status.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum AgentStatus {
    Online,
    Offline,
    Busy,
    Error,
}

/// A non-blank string of at most 1,000 characters (ids, names, titles): at least one
/// character that is not Unicode white space, which `str::trim` removes.
pub struct NonBlank;

impl PartialSchema for NonBlank {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(1_000))
            .pattern(Some("[^\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"))
            .description(Some("A non-blank string of at most 1,000 characters."))
            .into()
    }
}

impl ToSchema for NonBlank {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("NonBlankString")
    }
}

/// Tags: an array of strings (each at most 1,000 characters), or a string holding such an
/// array as JSON (the form the server returns, e.g. `"[\"scraping\"]"`).
pub struct Tags;

impl PartialSchema for Tags {
    fn schema() -> RefOr<Schema> {
        let tag = ObjectBuilder::new().schema_type(Type::String).max_length(Some(1_000));
        let list = ArrayBuilder::new().items(tag).description(Some("The tags."));
        let text = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[ \\t\\n\\r]*\\[[\\s\\S]*\\][ \\t\\n\\r]*$"))
            .content_media_type("application/json")
            .description(Some("A JSON array of strings, as text."));
        OneOfBuilder::new().item(list).item(text).into()
    }
}

impl ToSchema for Tags {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Tags")
    }
}

// ----- parameters -----

/// The id in the path of `/api/<collection>/{id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PathId {
    /// The record's id (at most 1,000 characters).
    #[param(min_length = 1, max_length = 1000)]
    id: String,
}

/// The seed style's `?id=`: names the record when the body has no `id`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueryId {
    /// The record's id; when absent, `id` in the body names it (400 `missing_field` if neither).
    #[param(min_length = 1, max_length = 1000)]
    id: Option<String>,
}

/// The filters of `GET /api/tasks`. Unknown ids give `[]`, never 404.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskListQuery {
    /// Only tasks with this status.
    status: Option<TaskStatus>,
    /// Only this venture's tasks.
    #[param(rename = "ventureId", min_length = 1, max_length = 1000)]
    venture_id: Option<String>,
    /// Only tasks assigned to this agent.
    #[param(rename = "assignedTo", min_length = 1, max_length = 1000)]
    assigned_to: Option<String>,
    /// Only tasks with this priority.
    priority: Option<Priority>,
    /// Only tasks after this one in list order (a cursor: the last id of the previous page).
    #[param(min_length = 1, max_length = 1000)]
    after: Option<String>,
    /// At most this many tasks (default: every match).
    #[param(format = "uint64", minimum = 1, maximum = 18446744073709551615_u64)]
    limit: Option<u64>,
    /// Skip this many first (default 0).
    #[param(format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    offset: Option<u64>,
}

/// The filters of `GET /api/activities`. Unknown ids give `[]`, never 404.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActivityListQuery {
    /// At most this many, newest first (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Only activities of this type.
    #[param(rename = "type", min_length = 1, max_length = 1000)]
    kind: Option<String>,
    /// Only activities about this venture.
    #[param(rename = "ventureId", min_length = 1, max_length = 1000)]
    venture_id: Option<String>,
    /// Only activities about this task.
    #[param(rename = "taskId", min_length = 1, max_length = 1000)]
    task_id: Option<String>,
    /// Only activities about this agent.
    #[param(rename = "agentId", min_length = 1, max_length = 1000)]
    agent_id: Option<String>,
    /// Only activities logged before the one with this id (to page back).
    #[param(min_length = 1, max_length = 1000)]
    before: Option<String>,
}

/// Where `GET /api/events` resumes.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct EventsHeaders {
    /// Resume after this event id.
    #[param(
        required = false,
        rename = "Last-Event-ID",
        format = "uint64",
        minimum = 0,
        maximum = 18446744073709551615_u64
    )]
    last_event_id: u64,
}

/// Where `GET /api/events` resumes, for clients that cannot set headers.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this event id (`Last-Event-ID` wins when both are given).
    #[param(rename = "lastEventId", format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    last_event_id: Option<u64>,
}

// ----- ventures -----

/// `POST /api/ventures`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct NewVenture {
    /// A client-chosen id; a taken one is `409 already_exists`. Generated (a ULID) when absent.
    id: Option<NonBlank>,
    name: NonBlank,
    /// Default "🚀".
    #[schema(max_length = 1000)]
    icon: Option<String>,
    /// Default `active`.
    status: Option<VentureStatus>,
    /// Default `medium`.
    priority: Option<Priority>,
    /// Default 0: no budget.
    #[schema(minimum = 0, maximum = 1e15)]
    capital_budget: Option<f64>,
    /// Default 0.
    #[schema(minimum = 0, maximum = 1e15)]
    capital_spent: Option<f64>,
    /// At most 256 KiB of UTF-8.
    #[schema(max_length = 262144)]
    description: Option<String>,
}

/// `PATCH /api/ventures/{id}`: the fields given are changed;
/// `null` leaves a field as it is, except `description`, which it clears.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct VentureUpdate {
    name: Option<NonBlank>,
    #[schema(max_length = 1000)]
    icon: Option<String>,
    status: Option<VentureStatus>,
    priority: Option<Priority>,
    #[schema(minimum = 0, maximum = 1e15)]
    capital_budget: Option<f64>,
    #[schema(minimum = 0, maximum = 1e15)]
    capital_spent: Option<f64>,
    /// At most 256 KiB of UTF-8; `null` clears it.
    #[schema(max_length = 262144)]
    description: Option<String>,
}

/// `PATCH /api/ventures` (the seed's style): `VentureUpdate` and the id of the venture.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct VentureUpdateWithId {
    /// Names the record when `?id=` is absent, as a non-blank string of at most 1,000
    /// characters (400 otherwise); ignored when `?id=` is given.
    #[schema(value_type = Value, required = false)]
    id: Option<serde_json::Value>,
    name: Option<NonBlank>,
    #[schema(max_length = 1000)]
    icon: Option<String>,
    status: Option<VentureStatus>,
    priority: Option<Priority>,
    #[schema(minimum = 0, maximum = 1e15)]
    capital_budget: Option<f64>,
    #[schema(minimum = 0, maximum = 1e15)]
    capital_spent: Option<f64>,
    /// At most 256 KiB of UTF-8; `null` clears it.
    #[schema(max_length = 262144)]
    description: Option<String>,
}

/// The seed style's `DELETE`: the id in the body when `?id=` is absent.
#[derive(ToSchema)]
pub struct TargetId {
    /// Names the record when `?id=` is absent, as a non-blank string of at most 1,000
    /// characters (400 otherwise); ignored when `?id=` is given.
    #[schema(value_type = Value, required = false)]
    id: Option<serde_json::Value>,
}

// ----- tasks -----

/// `POST /api/tasks`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct NewTask {
    /// A client-chosen id; a taken one is `409 already_exists`. Generated (a ULID) when absent.
    id: Option<NonBlank>,
    title: NonBlank,
    /// At most 256 KiB of UTF-8.
    #[schema(max_length = 262144)]
    description: Option<String>,
    /// An existing venture (404 otherwise).
    venture_id: NonBlank,
    /// Default `medium`.
    priority: Option<Priority>,
    #[schema(minimum = 0, maximum = 1e15)]
    estimated_cost: Option<f64>,
    tags: Option<Tags>,
    /// Default 3.
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    max_attempts: Option<i64>,
    /// A task is always created queued; set other statuses with `PATCH`.
    status: Option<InitialTaskStatus>,
}

/// `PATCH /api/tasks/{id}`: the fields given are changed; `null`
/// leaves a field as it is, except `description`, `estimatedCost` and `tags`, which it
/// clears. `active` is reached only by a claim (409 `invalid_transition`).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct TaskUpdate {
    title: Option<NonBlank>,
    /// At most 256 KiB of UTF-8; `null` clears it.
    #[schema(max_length = 262144)]
    description: Option<String>,
    priority: Option<Priority>,
    /// `null` clears it.
    #[schema(minimum = 0, maximum = 1e15)]
    estimated_cost: Option<f64>,
    /// `null` clears them.
    tags: Option<Tags>,
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    max_attempts: Option<i64>,
    status: Option<TaskStatus>,
}

/// `PATCH /api/tasks` (the seed's style): `TaskUpdate` and the id of the task.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct TaskUpdateWithId {
    /// Names the record when `?id=` is absent, as a non-blank string of at most 1,000
    /// characters (400 otherwise); ignored when `?id=` is given.
    #[schema(value_type = Value, required = false)]
    id: Option<serde_json::Value>,
    title: Option<NonBlank>,
    /// At most 256 KiB of UTF-8; `null` clears it.
    #[schema(max_length = 262144)]
    description: Option<String>,
    priority: Option<Priority>,
    /// `null` clears it.
    #[schema(minimum = 0, maximum = 1e15)]
    estimated_cost: Option<f64>,
    /// `null` clears them.
    tags: Option<Tags>,
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    max_attempts: Option<i64>,
    status: Option<TaskStatus>,
}

/// `POST /api/tasks/claim`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ClaimRequest {
    /// Registered when unknown.
    agent_id: NonBlank,
    /// The name of an agent the claim registers; default the id.
    agent_name: Option<NonBlank>,
    /// Only this venture's tasks (404 when unknown).
    venture_id: Option<NonBlank>,
    /// Only tasks carrying every one of these tags.
    tags: Option<Tags>,
    /// Default: the server's `--lease-seconds` (1800).
    #[schema(minimum = 1, maximum = 86400)]
    lease_seconds: Option<u32>,
    /// How long to wait for work before answering 204. Default 0.
    #[schema(minimum = 0, maximum = 30000)]
    wait_ms: Option<u64>,
}

/// `POST /api/tasks/complete`: a success report, or with `error` a failure report.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct CompleteRequest {
    task_id: NonBlank,
    agent_id: NonBlank,
    /// The fencing token: the task's `attempts` when claimed (409 `stale_lease` otherwise).
    #[schema(minimum = 0, maximum = 4294967295_u64)]
    attempt: Option<i64>,
    /// At most 256 KiB of UTF-8.
    #[schema(max_length = 262144)]
    output: Option<String>,
    #[schema(minimum = 0, maximum = 1e15)]
    actual_cost: Option<f64>,
    /// When given, the attempt failed. At most 256 KiB of UTF-8.
    #[schema(max_length = 262144)]
    error: Option<String>,
    /// Added to the agent's `tokensUsed`.
    #[schema(minimum = 0, maximum = 9223372036854775807_u64)]
    tokens_used: Option<u64>,
}

/// `POST /api/tasks/heartbeat`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct HeartbeatRequest {
    task_id: NonBlank,
    agent_id: NonBlank,
    #[schema(minimum = 0, maximum = 4294967295_u64)]
    attempt: Option<i64>,
    /// Default: the lease length the claim asked for.
    #[schema(minimum = 1, maximum = 86400)]
    lease_seconds: Option<u32>,
}

// ----- agents -----

/// `POST /api/agents`: creates the agent (201) or updates the fields given (200).
/// `currentTask` is derived from the tasks the agent holds and is not taken from input.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AgentUpsert {
    /// The agent to create or update. Generated (a ULID) when absent.
    id: Option<NonBlank>,
    /// Required when the agent is created (400 otherwise).
    name: Option<NonBlank>,
    /// Default `online`.
    status: Option<AgentStatus>,
    /// Default "unknown".
    #[schema(max_length = 1000)]
    model: Option<String>,
    #[schema(minimum = 0, maximum = 9223372036854775807_u64)]
    tokens_used: Option<u64>,
    /// 0 means no limit.
    #[schema(minimum = 0, maximum = 9223372036854775807_u64)]
    max_tokens: Option<u64>,
    #[schema(minimum = 0, maximum = 9223372036854775807_u64)]
    sessions_count: Option<u64>,
}

/// `PATCH /api/agents/{id}`: the fields given are changed.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AgentUpdate {
    name: Option<NonBlank>,
    status: Option<AgentStatus>,
    #[schema(max_length = 1000)]
    model: Option<String>,
    #[schema(minimum = 0, maximum = 9223372036854775807_u64)]
    tokens_used: Option<u64>,
    #[schema(minimum = 0, maximum = 9223372036854775807_u64)]
    max_tokens: Option<u64>,
    #[schema(minimum = 0, maximum = 9223372036854775807_u64)]
    sessions_count: Option<u64>,
}

/// `PATCH /api/agents` (the seed's style): `AgentUpdate` and the id of the agent.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AgentUpdateWithId {
    /// Names the record when `?id=` is absent, as a non-blank string of at most 1,000
    /// characters (400 otherwise); ignored when `?id=` is given.
    #[schema(value_type = Value, required = false)]
    id: Option<serde_json::Value>,
    name: Option<NonBlank>,
    status: Option<AgentStatus>,
    #[schema(max_length = 1000)]
    model: Option<String>,
    #[schema(minimum = 0, maximum = 9223372036854775807_u64)]
    tokens_used: Option<u64>,
    #[schema(minimum = 0, maximum = 9223372036854775807_u64)]
    max_tokens: Option<u64>,
    #[schema(minimum = 0, maximum = 9223372036854775807_u64)]
    sessions_count: Option<u64>,
}

// ----- activities -----

/// `POST /api/activities`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct NewActivity {
    /// A client-chosen id; a taken one is `409 already_exists`. Generated (a ULID) when absent.
    id: Option<NonBlank>,
    /// Default `note`.
    #[schema(rename = "type")]
    kind: Option<NonBlank>,
    title: NonBlank,
    /// At most 256 KiB of UTF-8.
    #[schema(max_length = 262144)]
    description: Option<String>,
    /// An existing venture (404 otherwise).
    venture_id: Option<NonBlank>,
    /// An existing task (404 otherwise).
    task_id: Option<NonBlank>,
    /// An existing agent (404 otherwise).
    agent_id: Option<NonBlank>,
}

// ----- operations -----

/// `GET /healthz`.
#[derive(ToSchema)]
pub struct Health {
    status: HealthStatus,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
}

/// `GET /readyz`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Readiness {
    status: ReadinessStatus,
    /// Whether the store takes writes.
    writable: bool,
    /// Changes accepted and not yet committed.
    #[schema(minimum = 0)]
    pending_writes: u64,
    /// The last commit error, while the store is failing.
    #[schema(required = true)]
    last_error: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ReadinessStatus {
    Ready,
    Unavailable,
}
