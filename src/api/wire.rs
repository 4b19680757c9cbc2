//! The JSON shapes of the API: the seed's field names (camelCase), timestamps as
//! `Date.toJSON` writes them, and `null` (never a missing key) for absent optional fields.

use serde::{Serialize, Serializer};
use utoipa::ToSchema;

use crate::domain::{Activity, Agent, Attempt, Id, Millis, Money, Task, TaskStatus, Venture};
use crate::scheduler::{TaskView, VentureView};
use crate::store::tags_json;

fn time(t: Millis) -> String {
    t.to_string()
}

/// An amount as a JSON number spelling its exact decimal: `23.39`, `5`.
fn money<S: Serializer>(amount: &Money, s: S) -> Result<S::Ok, S::Error> {
    if amount.is_whole() {
        s.serialize_i64(amount.micros() / Money::SCALE)
    } else if amount.micros().unsigned_abs() < 10u64.pow(15) {
        // At most fifteen significant digits: the shortest form of the nearest `f64`, which
        // serde writes, is the decimal itself.
        s.serialize_f64(amount.to_f64())
    } else {
        serde_json::value::RawValue::from_string(amount.to_string()).map_err(serde::ser::Error::custom)?.serialize(s)
    }
}

fn optional_money<S: Serializer>(amount: &Option<Money>, s: S) -> Result<S::Ok, S::Error> {
    match amount {
        Some(amount) => money(amount, s),
        None => s.serialize_none(),
    }
}

/// A venture: a budget and the tasks that spend it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Venture)]
pub struct VentureJson<'a> {
    id: &'a str,
    name: &'a str,
    icon: &'a str,
    #[schema(value_type = crate::domain::VentureStatus)]
    status: &'static str,
    #[schema(value_type = crate::domain::Priority)]
    priority: &'static str,
    /// The sum of `actualCost` over the reports on the venture's tasks (successes and failures), plus direct edits.
    #[serde(serialize_with = "money")]
    #[schema(value_type = f64, minimum = 0)]
    capital_spent: Money,
    /// 0 means no budget.
    #[serde(serialize_with = "money")]
    #[schema(value_type = f64, minimum = 0)]
    capital_budget: Money,
    /// Not in the seed: the estimated cost of the venture's active tasks, which the budget
    /// guard holds back. Left out of live events, which carry the venture record alone.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "optional_money")]
    #[schema(value_type = f64, required = true, minimum = 0)]
    capital_reserved: Option<Money>,
    /// How many of the venture's queued tasks its budget holds back right now (each costs
    /// more than `capitalBudget − capitalSpent − capitalReserved`): why work waits. Left out
    /// of live events, like `capitalReserved`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = u64, required = true, minimum = 0)]
    budget_held: Option<u64>,
    /// The venture's tasks by status, exact, finished ones the database holds included (the
    /// sum over ventures is `mission_control_tasks`). Left out of live events, like
    /// `capitalReserved`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = TaskCountsJson, required = true)]
    task_counts: Option<TaskCountsJson>,
    #[schema(required = true)]
    description: Option<&'a str>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl<'a> From<&'a VentureView> for VentureJson<'a> {
    fn from(view: &'a VentureView) -> Self {
        VentureJson {
            capital_reserved: Some(view.capital_reserved),
            budget_held: Some(view.budget_held),
            task_counts: Some(TaskCountsJson::from(&view.task_counts)),
            ..VentureJson::from(&*view.venture)
        }
    }
}

impl<'a> From<&'a Venture> for VentureJson<'a> {
    fn from(v: &'a Venture) -> Self {
        VentureJson {
            id: &v.id,
            name: &v.name,
            icon: &v.icon,
            status: v.status.as_str(),
            priority: v.priority.as_str(),
            capital_spent: v.capital_spent,
            capital_budget: v.capital_budget,
            capital_reserved: None,
            budget_held: None,
            task_counts: None,
            description: v.description.as_deref(),
            created_at: time(v.created_at),
            updated_at: time(v.updated_at),
        }
    }
}

/// How many tasks have each status.
#[derive(Serialize, ToSchema)]
#[schema(as = TaskCounts)]
pub struct TaskCountsJson {
    #[schema(minimum = 0)]
    queue: u64,
    #[schema(minimum = 0)]
    blocked: u64,
    #[schema(minimum = 0)]
    active: u64,
    #[schema(minimum = 0)]
    completed: u64,
    #[schema(minimum = 0)]
    failed: u64,
    #[schema(minimum = 0)]
    cancelled: u64,
}

impl From<&[u64; TaskStatus::COUNT]> for TaskCountsJson {
    fn from(counts: &[u64; TaskStatus::COUNT]) -> Self {
        let n = |status: TaskStatus| counts[status as usize];
        TaskCountsJson {
            queue: n(TaskStatus::Queue),
            blocked: n(TaskStatus::Blocked),
            active: n(TaskStatus::Active),
            completed: n(TaskStatus::Completed),
            failed: n(TaskStatus::Failed),
            cancelled: n(TaskStatus::Cancelled),
        }
    }
}

/// The venture as embedded in a task.
#[derive(Serialize, ToSchema)]
#[schema(as = VentureRef)]
pub struct VentureRef<'a> {
    id: &'a str,
    name: &'a str,
    icon: &'a str,
}

/// A task in a listing: the task shape, of which `?fields=` keeps only the named fields, so
/// none is required.
pub struct ListedTask;

impl utoipa::PartialSchema for ListedTask {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        match <TaskJson as utoipa::PartialSchema>::schema() {
            utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(mut object)) => {
                object.required.clear();
                object.description =
                    Some("A task. With `?fields=`, only the named fields; without it, every field of `Task`.".into());
                utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(object))
            }
            _ => unreachable!("the task shape is an object schema"),
        }
    }
}

impl ToSchema for ListedTask {}

/// A task.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Task)]
pub struct TaskJson<'a> {
    id: &'a str,
    title: &'a str,
    #[schema(required = true)]
    description: Option<&'a str>,
    #[schema(value_type = crate::domain::TaskStatus)]
    status: &'static str,
    #[schema(value_type = crate::domain::Priority)]
    priority: &'static str,
    #[serde(serialize_with = "optional_money")]
    #[schema(value_type = Option<f64>, required = true, minimum = 0)]
    estimated_cost: Option<Money>,
    /// The total charged for the task over all its attempts.
    #[serde(serialize_with = "optional_money")]
    #[schema(value_type = Option<f64>, required = true, minimum = 0)]
    actual_cost: Option<Money>,
    /// A string holding a JSON array, as the seed stored and returned it.
    #[schema(required = true, example = "[\"scraping\"]")]
    tags: Option<String>,
    /// The tasks this one waits for, as given; `[]` when none.
    #[schema(value_type = Vec<String>)]
    depends_on: &'a [Id],
    /// Those of `dependsOn` still unfinished while the task is `blocked`; `[]` otherwise.
    #[schema(value_type = Vec<String>)]
    blocked_by: &'a [Id],
    #[schema(value_type = crate::domain::OnDependencyFailure)]
    on_dependency_failure: &'static str,
    /// An operator asked the active task to stop: its holder should wind down and report.
    cancel_requested: bool,
    /// Not claimable before this time (set by the client, or by a failed attempt's
    /// back-off); `blocked` until then.
    #[schema(required = true, format = DateTime)]
    run_at: Option<String>,
    retry_delay_seconds: u32,
    /// Unique per venture for as long as the database holds the task.
    #[schema(required = true)]
    idempotency_key: Option<&'a str>,
    #[schema(required = true)]
    output: Option<&'a str>,
    #[schema(required = true)]
    error: Option<&'a str>,
    /// The holder while `active`; `null` while `queue`; the last holder once finished.
    #[schema(required = true)]
    assigned_to: Option<&'a str>,
    venture_id: &'a str,
    #[schema(required = true)]
    venture: Option<VentureRef<'a>>,
    /// The number of claims so far: the fencing token of the current lease.
    #[schema(format = Int64)]
    attempts: u32,
    #[schema(format = Int64, minimum = 1, maximum = 4294967295_u64)]
    max_attempts: u32,
    /// The lease length of the current or last claim.
    lease_seconds: u32,
    #[schema(required = true, format = DateTime)]
    lease_expires_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    claimed_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    #[schema(required = true, format = DateTime)]
    completed_at: Option<String>,
}

impl<'a> From<&'a TaskView> for TaskJson<'a> {
    fn from(view: &'a TaskView) -> Self {
        let t: &Task = &view.task;
        TaskJson {
            id: &t.id,
            title: &t.title,
            description: t.description.as_deref(),
            status: t.status.as_str(),
            priority: t.priority.as_str(),
            estimated_cost: t.estimated_cost,
            actual_cost: t.actual_cost,
            tags: tags_json(t),
            depends_on: t.depends_on.as_deref().unwrap_or_default(),
            blocked_by: t.blocked_by.as_deref().unwrap_or_default(),
            on_dependency_failure: t.on_dependency_failure.as_str(),
            cancel_requested: t.cancel_requested,
            run_at: t.run_at.map(time),
            retry_delay_seconds: t.retry_delay_seconds,
            idempotency_key: t.idempotency_key.as_deref(),
            output: t.output.as_deref(),
            error: t.error.as_deref(),
            assigned_to: t.assigned_to.as_deref(),
            venture_id: &t.venture_id,
            venture: view.venture.as_deref().map(|v| VentureRef { id: &v.id, name: &v.name, icon: &v.icon }),
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            lease_seconds: t.lease_seconds,
            lease_expires_at: t.lease_expires_at.map(time),
            claimed_at: t.claimed_at.map(time),
            created_at: time(t.created_at),
            updated_at: time(t.updated_at),
            completed_at: t.completed_at.map(time),
        }
    }
}

/// An agent.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Agent)]
pub struct AgentJson<'a> {
    id: &'a str,
    name: &'a str,
    #[schema(value_type = crate::domain::AgentStatus)]
    status: &'static str,
    model: &'a str,
    /// The id of the task it holds (the most recently claimed one), derived, never input.
    #[schema(required = true)]
    current_task: Option<&'a str>,
    /// Grows with every report's `tokensUsed` (saturating at 2^64 - 1).
    #[schema(format = "uint64")]
    tokens_used: u64,
    /// 0 means no limit.
    max_tokens: u64,
    sessions_count: u64,
    #[schema(format = DateTime)]
    last_active_at: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl<'a> From<&'a Agent> for AgentJson<'a> {
    fn from(a: &'a Agent) -> Self {
        AgentJson {
            id: &a.id,
            name: &a.name,
            status: a.status.as_str(),
            model: &a.model,
            current_task: a.current_task.as_deref(),
            tokens_used: a.tokens_used,
            max_tokens: a.max_tokens,
            sessions_count: a.sessions_count,
            last_active_at: time(a.last_active_at),
            created_at: time(a.created_at),
            updated_at: time(a.updated_at),
        }
    }
}

/// An entry of the activity log.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Activity)]
pub struct ActivityJson<'a> {
    id: &'a str,
    /// `task_created`, `task_claimed`, ..., or whatever a client posted (default `note`).
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    #[schema(required = true)]
    description: Option<&'a str>,
    #[schema(required = true)]
    venture_id: Option<&'a str>,
    #[schema(required = true)]
    task_id: Option<&'a str>,
    #[schema(required = true)]
    agent_id: Option<&'a str>,
    #[schema(format = DateTime)]
    created_at: String,
}

impl<'a> From<&'a Activity> for ActivityJson<'a> {
    fn from(a: &'a Activity) -> Self {
        ActivityJson {
            id: &a.id,
            kind: &a.kind,
            title: &a.title,
            description: a.description.as_deref(),
            venture_id: a.venture_id.as_deref(),
            task_id: a.task_id.as_deref(),
            agent_id: a.agent_id.as_deref(),
            created_at: time(a.created_at),
        }
    }
}

/// The names of each resource's shape as the API shows it (a test checks them against the
/// encoded shapes): what a body about that resource may carry back without being refused
/// (`extract::Accepts`), and the names `?fields=` may pick.
pub const TASK_FIELDS: &[&str] = &[
    "id",
    "title",
    "description",
    "status",
    "priority",
    "estimatedCost",
    "actualCost",
    "tags",
    "dependsOn",
    "blockedBy",
    "onDependencyFailure",
    "cancelRequested",
    "runAt",
    "retryDelaySeconds",
    "idempotencyKey",
    "output",
    "error",
    "assignedTo",
    "ventureId",
    "venture",
    "attempts",
    "maxAttempts",
    "leaseSeconds",
    "leaseExpiresAt",
    "claimedAt",
    "createdAt",
    "updatedAt",
    "completedAt",
];
pub const VENTURE_FIELDS: &[&str] = &[
    "id",
    "name",
    "icon",
    "status",
    "priority",
    "capitalSpent",
    "capitalBudget",
    "capitalReserved",
    "budgetHeld",
    "taskCounts",
    "description",
    "createdAt",
    "updatedAt",
];
pub const AGENT_FIELDS: &[&str] = &[
    "id",
    "name",
    "status",
    "model",
    "currentTask",
    "tokensUsed",
    "maxTokens",
    "sessionsCount",
    "lastActiveAt",
    "createdAt",
    "updatedAt",
];
pub const ACTIVITY_FIELDS: &[&str] =
    &["id", "type", "title", "description", "ventureId", "taskId", "agentId", "createdAt"];

/// One claim of a task and how it ended.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Attempt)]
pub struct AttemptJson<'a> {
    /// The attempt number: the task's `attempts` right after this claim.
    attempt: u32,
    agent_id: &'a str,
    #[schema(format = DateTime)]
    claimed_at: String,
    /// `null` while the attempt is active.
    #[schema(required = true, format = DateTime)]
    ended_at: Option<String>,
    #[schema(value_type = crate::domain::AttemptOutcome)]
    outcome: &'static str,
    /// The error of a failure report.
    #[schema(required = true)]
    error: Option<&'a str>,
    /// What the attempt's report charged.
    #[serde(serialize_with = "optional_money")]
    #[schema(value_type = Option<f64>, required = true)]
    actual_cost: Option<Money>,
    /// What the attempt's report said it used.
    #[schema(required = true)]
    tokens_used: Option<u64>,
}

impl<'a> From<&'a Attempt> for AttemptJson<'a> {
    fn from(a: &'a Attempt) -> Self {
        AttemptJson {
            attempt: a.attempt,
            agent_id: &a.agent_id,
            claimed_at: time(a.claimed_at),
            ended_at: a.ended_at.map(time),
            outcome: a.outcome.as_str(),
            error: a.error.as_deref(),
            actual_cost: a.actual_cost,
            tokens_used: a.tokens_used,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::write_fixtures::{activity, task};

    fn keys(value: serde_json::Value) -> Vec<String> {
        let mut keys: Vec<String> = value.as_object().expect("an object").keys().cloned().collect();
        keys.sort();
        keys
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn the_accepted_names_are_the_shapes_the_api_shows() {
        let view = TaskView { task: task("t", "title"), venture: None };
        assert_eq!(keys(serde_json::to_value(TaskJson::from(&view)).unwrap()), sorted(TASK_FIELDS));
        let crate::scheduler::Change::Activity(a) = activity("a") else { unreachable!() };
        assert_eq!(keys(serde_json::to_value(ActivityJson::from(&*a)).unwrap()), sorted(ACTIVITY_FIELDS));
    }
}
