//! What the scheduler is asked to do, already validated for shape by the API layer, and
//! what it answers. The scheduler checks only what needs its state (ids, transitions).

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::{
    Agent, AgentStatus, Id, Millis, Money, OnDependencyFailure, Priority, Tags, Task, TaskStatus, Venture,
    VentureStatus,
};

/// A field update: `None` leaves the field alone, `Some(None)` clears a nullable field.
pub type Patch<T> = Option<T>;

#[derive(Debug, Clone, Default)]
pub struct NewVenture {
    pub id: Option<Id>,
    pub name: Arc<str>,
    pub icon: Option<Arc<str>>,
    pub status: Option<VentureStatus>,
    pub priority: Option<Priority>,
    pub capital_budget: Option<Money>,
    pub capital_spent: Option<Money>,
    pub description: Option<Arc<str>>,
}

#[derive(Debug, Clone, Default)]
pub struct VenturePatch {
    pub name: Patch<Arc<str>>,
    pub icon: Patch<Arc<str>>,
    pub status: Patch<VentureStatus>,
    pub priority: Patch<Priority>,
    pub capital_budget: Patch<Money>,
    pub capital_spent: Patch<Money>,
    pub description: Patch<Option<Arc<str>>>,
}

#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub id: Option<Id>,
    pub title: Arc<str>,
    pub description: Option<Arc<str>>,
    pub venture_id: Id,
    pub priority: Option<Priority>,
    pub estimated_cost: Option<Money>,
    pub tags: Option<Tags>,
    pub max_attempts: Option<u32>,
    /// Ids of existing tasks, in the order given (repeats are dropped).
    pub depends_on: Vec<Id>,
    pub on_dependency_failure: Option<OnDependencyFailure>,
    pub run_at: Option<Millis>,
    pub retry_delay_seconds: Option<u32>,
    pub idempotency_key: Option<Arc<str>>,
}

#[derive(Debug, Clone, Default)]
pub struct TaskPatch {
    pub title: Patch<Arc<str>>,
    pub description: Patch<Option<Arc<str>>>,
    pub priority: Patch<Priority>,
    pub estimated_cost: Patch<Option<Money>>,
    pub tags: Patch<Option<Tags>>,
    pub max_attempts: Patch<u32>,
    pub status: Patch<TaskStatus>,
    /// Replaces the dependencies of a `queue` or `blocked` task (empty: none).
    pub depends_on: Patch<Vec<Id>>,
    pub on_dependency_failure: Patch<OnDependencyFailure>,
    /// `Some(None)` clears it.
    pub run_at: Patch<Option<Millis>>,
    pub retry_delay_seconds: Patch<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct CancelRequest {
    pub task_id: Id,
    pub reason: Option<Arc<str>>,
}

#[derive(Debug, Clone, Default)]
pub struct ClaimRequest {
    pub agent_id: Id,
    pub agent_name: Option<Arc<str>>,
    pub venture_id: Option<Id>,
    /// The task must carry every one of these.
    pub tags: Vec<Arc<str>>,
    pub lease_seconds: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct CompleteRequest {
    pub task_id: Id,
    pub agent_id: Id,
    pub attempt: Option<u32>,
    pub output: Option<Arc<str>>,
    pub actual_cost: Option<Money>,
    pub error: Option<Arc<str>>,
    pub tokens_used: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    pub task_id: Id,
    pub agent_id: Id,
    pub attempt: Option<u32>,
    pub lease_seconds: Option<u32>,
}

/// `POST /api/agents` (an upsert) and `PATCH /api/agents` share this shape.
#[derive(Debug, Clone, Default)]
pub struct AgentFields {
    pub name: Patch<Arc<str>>,
    pub status: Patch<AgentStatus>,
    pub model: Patch<Arc<str>>,
    pub tokens_used: Patch<u64>,
    pub max_tokens: Patch<u64>,
    pub sessions_count: Patch<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct NewActivity {
    pub id: Option<Id>,
    pub kind: Option<Arc<str>>,
    pub title: Arc<str>,
    pub description: Option<Arc<str>>,
    pub venture_id: Option<Id>,
    pub task_id: Option<Id>,
    pub agent_id: Option<Id>,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub venture_id: Option<Id>,
    pub assigned_to: Option<Id>,
    pub priority: Option<Priority>,
}

impl TaskFilter {
    pub fn matches(&self, task: &Task) -> bool {
        self.status.is_none_or(|s| task.status == s)
            && self.priority.is_none_or(|p| task.priority == p)
            && self.venture_id.as_ref().is_none_or(|v| task.venture_id == *v)
            && self.assigned_to.as_ref().is_none_or(|a| task.assigned_to.as_ref() == Some(a))
    }
}

/// A task as the API shows it: with its venture's id, name and icon.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub task: Arc<Task>,
    /// Always present while the task exists; the venture of a just-deleted task may be gone.
    pub venture: Option<Arc<Venture>>,
}

/// One venture's figures for the per-venture gauges.
#[derive(Debug, Clone)]
pub struct VentureGauges {
    pub id: Id,
    pub spent: Money,
    pub reserved: Money,
    pub budget: Money,
    pub queued: u64,
    pub budget_held: u64,
    /// Failed attempts since start.
    pub failures: u64,
}

#[derive(Debug, Clone)]
pub struct VentureView {
    pub venture: Arc<Venture>,
    /// Sum of the estimated costs of the venture's active tasks.
    pub capital_reserved: Money,
    /// How many of its queued tasks the budget holds back right now.
    pub budget_held: u64,
    /// Its tasks by status (indexed by `TaskStatus as usize`), finished ones in the database included.
    pub task_counts: [u64; crate::domain::TaskStatus::COUNT],
}

#[derive(Debug, Clone)]
pub struct AgentUpserted {
    pub agent: Arc<Agent>,
    pub created: bool,
}

/// What the scheduler refuses, before anything changes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchedulerError {
    /// An id that names nothing; `field` says which input held it.
    #[error("no {entity} has id `{id}`")]
    NotFound { entity: &'static str, id: Id, field: Option<&'static str> },
    /// A create with an id that is taken.
    #[error("a {entity} with id `{id}` already exists")]
    AlreadyExists { entity: &'static str, id: Id },
    /// The task is not active under this agent.
    #[error("task `{task_id}` is not held by agent `{agent_id}`")]
    NotHolder { task_id: Id, agent_id: Id },
    /// The caller's lease was superseded: the task was handed out again since.
    #[error("attempt {given} of task `{task_id}` is stale: the task is on attempt {current}")]
    StaleLease { task_id: Id, given: u32, current: u32 },
    /// The change is not allowed in the record's current state.
    #[error("{message}")]
    Conflict { code: &'static str, message: String, field: Option<&'static str> },
    /// Input that is well-formed but not acceptable in the current state.
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    /// The store cannot take more writes right now; nothing was changed.
    #[error("{message}")]
    Unavailable { message: String },
    /// These tasks are not in memory: those that exist are finished, and their records must
    /// be read from the database and handed back with this epoch (`Scheduler` does that; it
    /// never reaches a client).
    #[error("tasks {ids:?} are not in memory")]
    InHistory { ids: Vec<Id>, epoch: u64 },
    /// No task in memory has this venture's idempotency key: the database's task with it,
    /// if any, must be read and handed back with this epoch, as for `InHistory`.
    #[error("idempotency key `{key}` of venture `{venture_id}` is not in memory")]
    KeyInHistory { venture_id: Id, key: Arc<str>, epoch: u64 },
}

/// Finished tasks' records as the database held them, read after the scheduler answered
/// `InHistory { epoch }`. The scheduler trusts them only while its history epoch is still
/// `epoch`: nothing that could change a finished task's record has happened since.
#[derive(Debug, Clone, Default)]
pub struct HistoryRecord {
    pub epoch: u64,
    /// By id; `None`: the database holds no such task.
    pub tasks: HashMap<Id, Option<Arc<Task>>>,
    /// By venture and idempotency key; `None`: the database holds no task with it.
    pub keys: HashMap<(Id, Arc<str>), Option<Arc<Task>>>,
}

impl HistoryRecord {
    /// Adds records read at `epoch`; those read at an earlier epoch are dropped.
    pub fn merge(mut self, newer: HistoryRecord) -> HistoryRecord {
        if newer.epoch != self.epoch {
            return newer;
        }
        self.tasks.extend(newer.tasks);
        self.keys.extend(newer.keys);
        self
    }
}

impl TaskFilter {
    /// Whether a task of this status can match.
    pub fn admits(&self, status: TaskStatus) -> bool {
        self.status.is_none_or(|s| s == status)
    }

    /// Whether a finished task can match: only then does a listing read the database.
    pub fn admits_finished(&self) -> bool {
        !self.finished_statuses().is_empty()
    }

    /// The finished statuses a task may have and match, as the database stores them.
    pub fn finished_statuses(&self) -> Vec<&'static str> {
        TaskStatus::ALL.iter().filter(|s| s.is_finished() && self.admits(**s)).map(|s| s.as_str()).collect()
    }
}

/// Where a task stands in list order: `createdAt`, then id.
pub type ListKey = (crate::domain::Millis, Id);

/// A listing as the actor gathers it (`SchedulerState::gather_listing`); `into_listing`
/// builds the `MemoryListing` from it, outside the actor.
#[derive(Debug, Default)]
pub struct GatheredListing {
    /// The matching tasks, in no particular order.
    pub tasks: Vec<Arc<Task>>,
    /// The ids of the finished records memory holds until they are committed: the
    /// database's rows for them are not to be trusted, whether or not they match.
    pub records: Vec<Id>,
    /// Every venture, for the tasks' views.
    pub ventures: Vec<Arc<Venture>>,
}

impl GatheredListing {
    /// The views and the shadowed ids, as `list_in_memory` answers them.
    pub fn into_listing(self) -> MemoryListing {
        let ventures: HashMap<&Id, &Arc<Venture>> = self.ventures.iter().map(|v| (&v.id, v)).collect();
        let mut shadowed: std::collections::HashSet<Id> =
            std::collections::HashSet::with_capacity(self.tasks.len() + self.records.len());
        shadowed.extend(self.records);
        let tasks = self
            .tasks
            .into_iter()
            .map(|task| {
                shadowed.insert(task.id.clone());
                let venture = ventures.get(&task.venture_id).map(|v| Arc::clone(v));
                TaskView { task, venture }
            })
            .collect();
        MemoryListing { tasks, shadowed }
    }
}

/// Which way a listing runs: oldest first (`asc`, list order) or newest first (`desc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListOrder {
    #[default]
    Asc,
    Desc,
}

impl ListOrder {
    /// Every value, as the API names them.
    pub const ALL: &'static [ListOrder] = &[ListOrder::Asc, ListOrder::Desc];

    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ListOrder::Asc => "asc",
            ListOrder::Desc => "desc",
        }
    }

    /// Parses the name the API uses.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|order| order.as_str() == name)
    }

    /// Whether the task at `key` comes after `cursor` in this order.
    pub fn follows(self, key: (crate::domain::Millis, &Id), cursor: &ListKey) -> bool {
        match self {
            ListOrder::Asc => key > (cursor.0, &cursor.1),
            ListOrder::Desc => key < (cursor.0, &cursor.1),
        }
    }

    /// Whether `a` comes before `b` in this order.
    pub fn precedes(self, a: (crate::domain::Millis, &Id), b: (crate::domain::Millis, &Id)) -> bool {
        match self {
            ListOrder::Asc => a < b,
            ListOrder::Desc => a > b,
        }
    }
}

/// What memory contributes to a listing; the database adds the finished tasks it holds,
/// except those in `shadowed`, which memory answers for.
#[derive(Debug, Clone, Default)]
pub struct MemoryListing {
    /// Matching tasks, in list order once the handle has sorted them.
    pub tasks: Vec<TaskView>,
    pub shadowed: std::collections::HashSet<Id>,
}
