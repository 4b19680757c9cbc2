//! Pure domain types: ventures, tasks, agents and activities as the scheduler holds them.
//!
//! Nothing here does I/O or knows about JSON; wire shapes live in `api::wire` and the SQL
//! shapes in `store` and `persist`. Strings are `Arc<str>` so that copying a record to hand
//! out a snapshot, or to give the persister its own copy, costs reference counts, not bytes.

mod money;
mod time;

pub use money::Money;
pub use time::Millis;

use std::sync::Arc;

/// An id as the API and the database spell it: client-chosen or a ULID.
pub type Id = Arc<str>;

/// A task's tags, shared between snapshots.
pub type Tags = Arc<[Arc<str>]>;

/// A list of task ids: a task's dependencies.
pub type TaskIds = Arc<[Id]>;

/// Where a task is in its life. See `docs/ARCHITECTURE.md` for the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Queue,
    Active,
    Completed,
    Failed,
    /// Waits for unfinished dependencies; never claimed.
    Blocked,
    Cancelled,
}

/// Claim order: `High` first. The derive orders variants as declared, so `High < Medium < Low`
/// and an ascending index pops the most urgent task first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    High,
    Medium,
    Low,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VentureStatus {
    Active,
    Paused,
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentStatus {
    Online,
    Offline,
    Busy,
    Error,
}

macro_rules! wire_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in the order listed here: the order the API lists them in.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name the API and the database use.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }

            /// Parses the name the API and the database use.
            pub fn parse(name: &str) -> Option<Self> {
                match name { $($name => Some($ty::$variant),)+ _ => None }
            }
        }
    };
}

impl TaskStatus {
    /// Finished tasks live in the database, not in the scheduler's memory.
    pub fn is_finished(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled)
    }

    /// Whether a dependency that ended in this status lets its dependents go only if they
    /// say `ignore`: it failed or was cancelled.
    pub fn is_unsuccessful(self) -> bool {
        matches!(self, TaskStatus::Failed | TaskStatus::Cancelled)
    }

    /// How many statuses there are, for arrays indexed by `status as usize`.
    pub const COUNT: usize = TaskStatus::ALL.len();
}

wire_names!(TaskStatus {
    Queue => "queue",
    Active => "active",
    Completed => "completed",
    Failed => "failed",
    Blocked => "blocked",
    Cancelled => "cancelled",
});

/// What a task does when one of its dependencies fails or is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OnDependencyFailure {
    /// It is cancelled too, and so on down the graph.
    #[default]
    Cancel,
    /// That dependency counts as done.
    Ignore,
}

wire_names!(OnDependencyFailure { Cancel => "cancel", Ignore => "ignore" });
wire_names!(Priority { Low => "low", Medium => "medium", High => "high" });
wire_names!(VentureStatus { Active => "active", Paused => "paused", Completed => "completed" });
impl AgentStatus {
    /// How many statuses there are, for arrays indexed by `status as usize`.
    pub const COUNT: usize = AgentStatus::ALL.len();
}

wire_names!(AgentStatus { Online => "online", Offline => "offline", Busy => "busy", Error => "error" });

/// A project with a capital budget. `capital_budget` zero means no budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Venture {
    pub id: Id,
    pub name: Arc<str>,
    pub icon: Arc<str>,
    pub status: VentureStatus,
    pub priority: Priority,
    pub capital_spent: Money,
    pub capital_budget: Money,
    pub description: Option<Arc<str>>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A unit of work. Fields mirror the `Task` table one to one.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: Id,
    pub title: Arc<str>,
    pub description: Option<Arc<str>>,
    pub status: TaskStatus,
    pub priority: Priority,
    pub estimated_cost: Option<Money>,
    pub actual_cost: Option<Money>,
    /// `None` when the task was created without tags; the API renders the list as a JSON string.
    pub tags: Option<Tags>,
    /// The tasks this one waits for, as given (`None`: none).
    pub depends_on: Option<TaskIds>,
    /// Those of `depends_on` it still waits for while `blocked` (`None`: none). Derived by
    /// the scheduler, never stored.
    pub blocked_by: Option<TaskIds>,
    pub on_dependency_failure: OnDependencyFailure,
    /// An operator asked for the active task to stop: its holder learns it from heartbeats,
    /// and its next report (or its lease's expiry) ends it `cancelled`.
    pub cancel_requested: bool,
    /// Not claimable before this time: the task is `blocked` until then. Also set by a
    /// failed attempt's back-off.
    pub run_at: Option<Millis>,
    /// After a failed attempt that requeues the task, it waits this many seconds times
    /// 2^(attempts − 1), at most an hour. 0: retried at once.
    pub retry_delay_seconds: u32,
    /// One task per key and venture: a create with a key the venture has answers that task.
    pub idempotency_key: Option<Arc<str>>,
    pub output: Option<Arc<str>>,
    pub error: Option<Arc<str>>,
    /// The holder while active; the last holder as history once completed or failed.
    pub assigned_to: Option<Id>,
    pub venture_id: Id,
    /// How many times the task has been claimed; the current value is the lease's fencing token.
    pub attempts: u32,
    pub max_attempts: u32,
    /// The lease length the current claim asked for; heartbeats extend by it.
    pub lease_seconds: u32,
    pub lease_expires_at: Option<Millis>,
    pub claimed_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub completed_at: Option<Millis>,
    /// The completion report (success or error) the task last took, so that a repeated
    /// report is answered without being applied twice and a report from before a later
    /// claim is recognised as stale. Behind a pointer because most unfinished tasks have
    /// none: inline, its fields would cost every task in memory 44 bytes more.
    pub last_report: Option<Arc<AppliedReport>>,
}

/// A completion report a task took: who sent it, for which attempt, and what it said.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedReport {
    pub agent_id: Id,
    pub attempt: u32,
    /// The report's `actualCost` and `error`. With the task's `output`, which the report
    /// set, they are what a repeat is compared with: the same report is answered as
    /// applied, a different one is a conflict. Kept apart from the task's `actual_cost`
    /// (the total over attempts) and `error` (which a cancel since may have replaced with
    /// its reason).
    pub actual_cost: Option<Money>,
    pub error: Option<Arc<str>>,
}

impl Task {
    /// The cost the budget guard reserves while the task is active.
    pub fn reserved_cost(&self) -> Money {
        self.estimated_cost.unwrap_or(Money::ZERO)
    }

    /// Puts the task back in the queue: no holder, no claim, no lease.
    pub fn return_to_queue(&mut self) {
        self.status = TaskStatus::Queue;
        self.assigned_to = None;
        self.claimed_at = None;
        self.lease_expires_at = None;
    }

    /// Whether `tag` is among the task's tags.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.as_deref().is_some_and(|tags| tags.iter().any(|t| &**t == tag))
    }
}

/// A worker that claims tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: Id,
    pub name: Arc<str>,
    pub status: AgentStatus,
    pub model: Arc<str>,
    /// Derived from the tasks the agent holds: the most recently claimed one.
    pub current_task: Option<Id>,
    pub tokens_used: u64,
    /// `0` means no limit.
    pub max_tokens: u64,
    pub sessions_count: u64,
    pub last_active_at: Millis,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// One entry of the activity log. Activities are written once and never change.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub id: Id,
    pub kind: Arc<str>,
    pub title: Arc<str>,
    pub description: Option<Arc<str>>,
    pub venture_id: Option<Id>,
    pub task_id: Option<Id>,
    pub agent_id: Option<Id>,
    pub created_at: Millis,
}

/// How one claim of a task ended, or `Active` while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    Active,
    Completed,
    Failed,
    Expired,
    Released,
    Cancelled,
}

wire_names!(AttemptOutcome {
    Active => "active",
    Completed => "completed",
    Failed => "failed",
    Expired => "expired",
    Released => "released",
    Cancelled => "cancelled",
});

/// One claim of a task: who held it, from when to when, and how it ended. Written at the
/// claim and again at its end (a whole-record upsert keyed by task and attempt number).
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub task_id: Id,
    pub attempt: u32,
    pub agent_id: Id,
    pub claimed_at: Millis,
    pub ended_at: Option<Millis>,
    pub outcome: AttemptOutcome,
    pub error: Option<Arc<str>>,
    pub actual_cost: Option<Money>,
    pub tokens_used: Option<u64>,
}
