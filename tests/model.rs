//! Model-based property test of `SchedulerState`.
//!
//! Proptest generates random sequences of operations (create ventures and tasks, claim,
//! complete with success or error, report as the wrong agent or with a stale attempt,
//! heartbeat, let leases run out, give back a claim whose answer was lost, PATCH tasks
//! (status, `runAt`, `retryDelaySeconds`), delete tasks, agents and ventures, change
//! a venture's budget, spending or status; and the task graph: create with `dependsOn` and
//! `onDependencyFailure`, edit `dependsOn` (with deliberate cycles), cancel queued, blocked
//! and active tasks) and applies each one both to the real scheduler, driven directly with
//! an injected clock, and to `Model` below.
//!
//! The graph in the model is as plain: every task keeps its `dependsOn`, policy and
//! `cancelRequested`; after every step a full scan to a fixpoint settles blocked tasks (one
//! whose dependency ended failed or cancelled in this step and that says `cancel` is
//! cancelled; one with no unfinished dependency left is queued); `blockedBy` is derived as
//! the unfinished dependencies of a blocked task; the cycle check is a DFS through the
//! `dependsOn` of unfinished tasks. Released tasks (queue, active) are never blocked again.
//!
//! Time, identity and fencing are as plain: a task keeps its `runAt`, `retryDelaySeconds`
//! and `idempotencyKey`; a blocked task is queued by the same full scan once no unfinished
//! dependency and no `runAt` to come holds it (the clock's step crosses `runAt`s and
//! back-offs, also an hour at once); a failed attempt that sends a task back with a
//! `retryDelaySeconds` sets `runAt` to `now + min(retryDelaySeconds × 2^(attempts − 1),
//! 3600 s)`; a create with a key is answered `existing <id>` by a scan over the venture's
//! tasks (which the model never prunes, so a finished task's key is answered from the
//! database, also after a restart); `attempts` never goes down (checked after every step),
//! and a requeue from failed or cancelled grants `attempts + (maxAttempts or 3)`. Reports
//! and heartbeats carry attempt numbers from before such a requeue, from any agent.
//!
//! The model is deliberately simple and deliberately slow: plain maps of ventures, tasks
//! and agents, no indexes, no cached sums. A claim scans every task, keeps the eligible
//! ones (queued, venture active, venture and tag filters, budget guard recomputed from
//! scratch) and takes the first in claim order. It is written from `API.md`, not from the
//! implementation, so that the indexes, the per-venture candidates and the running
//! reservation sums of the real scheduler are checked against the obvious reading of the
//! contract. Where the contract is silent, the model follows the implementation and says so.
//!
//! After every step the test compares the answer (claimed task, outcome or error kind) and
//! the whole visible state (every task, venture and agent), and checks the invariants: one
//! holder per active task, the budget guard holding right after each claim, capital spent
//! moving by exactly the charged completions, and changes emitted for every mutation and
//! none for a refused request.
//!
//! The scheduler runs with its real record: every step's changes go through the
//! persister's writer into a SQLite file, finished tasks (which leave memory) are read back
//! with the server's reader whenever the scheduler asks for them, and a `Restart` step
//! rebuilds the scheduler with the server's loader from what the writer wrote. So a change
//! the writer drops, or a column it does not write, shows up as a difference from the model.
//!
//! `PROPTEST_CASES=20000` runs a longer hunt. Bugs it found are pinned as small tests at
//! the end, and its shrunk failures are kept in `model.proptest-regressions`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use mission_control::domain::{
    AgentStatus, Id, Millis, Money, OnDependencyFailure, Priority, TaskIds, TaskStatus, VentureStatus,
};
use mission_control::scheduler::{
    CancelRequest, ClaimRequest, CompleteRequest, CompletionOutcome, HeartbeatRequest, HistoryRecord, ListOrder,
    NewTask, NewVenture, Pruned, SchedulerConfig, SchedulerError, SchedulerState, Snapshot, TaskFilter, TaskHistory,
    TaskPatch, TaskView, VenturePatch,
};
use mission_control::store::{self, write_changes, TaskReader};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::FileFailurePersistence;

const START: i64 = 1_800_000_000_000;
const DEFAULT_LEASE_SECONDS: u32 = 3;
/// "An agent holding no task and not seen for `--agent-timeout` seconds becomes `offline`":
/// short enough that runs (up to 7 s per clock step) see agents time out and come back.
const AGENT_TIMEOUT_SECONDS: u32 = 10;
const AGENTS: [&str; 4] = ["a0", "a1", "a2", "a3"];
const TAGS: [&str; 3] = ["gpu", "web", "ml"];

// ----------------------------------------------------------------------------------------
// The reference model
// ----------------------------------------------------------------------------------------

/// The error an operation is refused with, without its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrKind {
    NotFound,
    AlreadyExists,
    NotHolder,
    StaleLease,
    Conflict,
    /// 409 `dependency_cycle`.
    Cycle,
    /// 409 `has_dependents`.
    HasDependents,
    /// 409 `finished`: a cancel of a completed or failed task.
    Finished,
    Invalid,
    Unavailable,
}

fn kind_of(error: &SchedulerError) -> ErrKind {
    match error {
        SchedulerError::NotFound { .. } => ErrKind::NotFound,
        SchedulerError::AlreadyExists { .. } => ErrKind::AlreadyExists,
        SchedulerError::NotHolder { .. } => ErrKind::NotHolder,
        SchedulerError::StaleLease { .. } => ErrKind::StaleLease,
        SchedulerError::Conflict { code: "dependency_cycle", .. } => ErrKind::Cycle,
        SchedulerError::Conflict { code: "has_dependents", .. } => ErrKind::HasDependents,
        SchedulerError::Conflict { code: "finished", .. } => ErrKind::Finished,
        SchedulerError::Conflict { .. } => ErrKind::Conflict,
        SchedulerError::Invalid { .. } => ErrKind::Invalid,
        // The harness answers `InHistory` with the record, so it never ends an operation.
        SchedulerError::Unavailable { .. } | SchedulerError::InHistory { .. } | SchedulerError::KeyInHistory { .. } => {
            ErrKind::Unavailable
        }
    }
}

/// What a successful operation answered: the claimed task (or `empty`), a completion's
/// outcome, or `ok`.
type Answer = String;

#[derive(Debug, Clone)]
struct MVenture {
    status: VentureStatus,
    budget: Money,
    /// Initial spending, plus charged completions, or the last direct edit plus those since.
    spent: Money,
    created_at: i64,
}

#[derive(Debug, Clone)]
struct MTask {
    venture: String,
    priority: Priority,
    cost: Option<Money>,
    tags: Option<Vec<&'static str>>,
    status: TaskStatus,
    assigned_to: Option<String>,
    attempts: u32,
    max_attempts: u32,
    /// The lease length the current claim asked for.
    lease_seconds: u32,
    lease_expires_at: Option<i64>,
    created_at: i64,
    /// How many times the task was ever handed out (unlike `attempts`, never reset).
    handouts: u32,
    /// The agent whose report the task last took, and `handouts` at the time.
    last_report: Option<(String, u32)>,
    /// What the report last applied said: whether it was an error, and its `actualCost`.
    /// "A different report for an attempt already reported is a 409 `conflicting_report`".
    applied_report: Option<(bool, Option<Money>)>,
    /// The dependencies as given (repeats dropped), deleted ones included.
    depends_on: Vec<String>,
    policy: OnDependencyFailure,
    cancel_requested: bool,
    /// `runAt`: while it is still to come the task is `blocked`.
    run_at: Option<i64>,
    retry_delay_seconds: u32,
    idempotency_key: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct MAgent {
    status: AgentStatus,
    /// Active tasks held, in claim order: the last one is `currentTask`.
    held: Vec<String>,
    tokens_used: u64,
    /// When a request of the agent's was last accepted (`lastActiveAt`).
    last_seen: i64,
}

#[derive(Debug, Default)]
struct Model {
    now: i64,
    ventures: BTreeMap<String, MVenture>,
    tasks: BTreeMap<String, MTask>,
    agents: BTreeMap<String, MAgent>,
    /// Every id ever used, so that deleted ones are picked too (and must be 404).
    ever_ventures: Vec<String>,
    ever_tasks: Vec<String>,
    next_venture: u32,
    next_task: u32,
}

/// Claim order as the contract states it: high, medium, low.
fn rank(priority: Priority) -> u8 {
    match priority {
        Priority::High => 0,
        Priority::Medium => 1,
        Priority::Low => 2,
    }
}

type MResult = Result<(Answer, bool), ErrKind>;

impl Model {
    fn unfinished(&self, id: &str) -> bool {
        self.tasks.get(id).is_some_and(|t| !t.status.is_finished())
    }

    fn unfinished_ids(&self) -> BTreeSet<String> {
        self.tasks.keys().filter(|id| self.unfinished(id)).cloned().collect()
    }

    /// `blockedBy`: the unfinished dependencies of a blocked task, in `dependsOn` order.
    fn blocked_by(&self, task: &MTask) -> Vec<String> {
        if task.status != TaskStatus::Blocked {
            return Vec::new();
        }
        task.depends_on.iter().filter(|d| self.unfinished(d)).cloned().collect()
    }

    /// The status dependencies give a task when they are set (create, `dependsOn` edit):
    /// `cancelled` if one ended failed or cancelled and the task says `cancel`, else
    /// `blocked` while one is unfinished, else `queue`.
    fn status_for(&self, deps: &[String], policy: OnDependencyFailure, run_at: Option<i64>) -> TaskStatus {
        let unsuccessful = deps.iter().any(|d| self.tasks.get(d).is_some_and(|t| t.status.is_unsuccessful()));
        if policy == OnDependencyFailure::Cancel && unsuccessful {
            TaskStatus::Cancelled
        } else if deps.iter().any(|d| self.unfinished(d)) || self.delayed(run_at) {
            TaskStatus::Blocked
        } else {
            TaskStatus::Queue
        }
    }

    /// Whether `task` depending on `deps` closes a cycle: a plain DFS through the
    /// `dependsOn` of unfinished tasks.
    fn closes_cycle(&self, task: &str, deps: &[String]) -> bool {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = deps.iter().collect();
        while let Some(node) = stack.pop() {
            if node == task {
                return true;
            }
            if seen.insert(node) && self.unfinished(node) {
                stack.extend(self.tasks[node].depends_on.iter());
            }
        }
        false
    }

    /// Whether a `runAt` is still to come.
    fn delayed(&self, run_at: Option<i64>) -> bool {
        run_at.is_some_and(|at| at > self.now)
    }

    /// After a failed attempt that sends the task back: with a `retryDelaySeconds`, it is
    /// `blocked` until `now + min(retryDelaySeconds × 2^(attempts − 1), 3600 s)`.
    fn back_off(now: i64, task: &mut MTask) {
        if task.retry_delay_seconds > 0 {
            let delay = (u128::from(task.retry_delay_seconds) << (task.attempts - 1).min(64)).min(3600);
            task.run_at = Some(now + delay as i64 * 1000);
            task.status = TaskStatus::Blocked;
        }
    }

    /// After every step, a full scan to a fixpoint: a blocked task that says `cancel` and
    /// one of whose dependencies ended failed or cancelled in this step is cancelled; a
    /// blocked task with no unfinished dependency left and no `runAt` to come is queued.
    /// Released tasks (queue, active) are blocked again only by a `runAt`.
    fn settle(&mut self, unfinished_before: &BTreeSet<String>) {
        loop {
            let mut changed = false;
            let blocked: Vec<String> =
                self.tasks.iter().filter(|(_, t)| t.status == TaskStatus::Blocked).map(|(id, _)| id.clone()).collect();
            for id in blocked {
                let task = &self.tasks[&id];
                let ended_badly = task.depends_on.iter().any(|d| {
                    unfinished_before.contains(d) && self.tasks.get(d).is_some_and(|t| t.status.is_unsuccessful())
                });
                let status = if task.policy == OnDependencyFailure::Cancel && ended_badly {
                    TaskStatus::Cancelled
                } else if task.depends_on.iter().any(|d| self.unfinished(d)) || self.delayed(task.run_at) {
                    continue;
                } else {
                    TaskStatus::Queue
                };
                self.tasks.get_mut(&id).unwrap().status = status;
                changed = true;
            }
            if !changed {
                return;
            }
        }
    }

    /// Blocked tasks that wait for `id` (it is among their unfinished dependencies).
    fn waiting_for(&self, id: &str) -> Vec<&MTask> {
        self.tasks.values().filter(|t| self.blocked_by(t).iter().any(|d| d == id)).collect()
    }

    /// Sum of the estimated costs of the venture's active tasks, recomputed from scratch.
    fn reserved(&self, venture: &str) -> Money {
        self.tasks
            .values()
            .filter(|t| t.venture == venture && t.status == TaskStatus::Active)
            .map(|t| t.cost.unwrap_or_default())
            .sum()
    }

    /// Queued tasks of the venture whose cost does not fit what its budget leaves.
    fn budget_held(&self, venture: &str) -> u64 {
        let v = &self.ventures[venture];
        if v.budget == Money::ZERO {
            return 0;
        }
        let room = v.budget.micros() - v.spent.micros() - self.reserved(venture).micros();
        let held = self.tasks.values().filter(|t| {
            t.venture == venture && t.status == TaskStatus::Queue && t.cost.unwrap_or_default().micros() > room
        });
        held.count() as u64
    }

    fn eligible(&self, task: &MTask, venture_filter: Option<&str>, tags: &[&'static str]) -> bool {
        let venture = &self.ventures[&task.venture];
        let budget_ok = venture.budget == Money::ZERO
            || venture.spent.micros() + self.reserved(&task.venture).micros() + task.cost.unwrap_or_default().micros()
                <= venture.budget.micros();
        task.status == TaskStatus::Queue
            && venture.status == VentureStatus::Active
            && venture_filter.is_none_or(|v| v == task.venture)
            && tags.iter().all(|tag| task.tags.as_ref().is_some_and(|have| have.contains(tag)))
            && budget_ok
    }

    /// Takes a task out of an agent's hands; an agent left holding nothing goes `idle`.
    fn release(&mut self, agent: &str, task: &str, tokens: u64, idle: AgentStatus) {
        let now = self.now;
        if let Some(a) = self.agents.get_mut(agent) {
            a.held.retain(|held| held != task);
            a.tokens_used += tokens;
            a.last_seen = now;
            if a.held.is_empty() {
                a.status = idle;
            }
        }
    }

    /// Leases that ran out by `now`, in expiry order; returns each task and its outcome.
    fn expire_leases(&mut self) -> Vec<(String, CompletionOutcome)> {
        let mut due: Vec<(i64, String)> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.status == TaskStatus::Active && t.lease_expires_at.is_some_and(|at| at <= self.now))
            .map(|(id, t)| (t.lease_expires_at.unwrap(), id.clone()))
            .collect();
        due.sort();
        let now = self.now;
        let mut outcomes = Vec::new();
        for (_, id) in due {
            let task = self.tasks.get_mut(&id).unwrap();
            let holder = task.assigned_to.clone().unwrap();
            task.lease_expires_at = None;
            if task.cancel_requested {
                // The holder never reported after the cancel: the expiry ends the task.
                task.status = TaskStatus::Cancelled;
                task.cancel_requested = false;
                outcomes.push((id.clone(), CompletionOutcome::Cancelled));
            } else if task.attempts >= task.max_attempts {
                task.status = TaskStatus::Failed;
                outcomes.push((id.clone(), CompletionOutcome::Failed));
            } else {
                task.status = TaskStatus::Queue;
                task.assigned_to = None;
                Self::back_off(now, task);
                outcomes.push((id.clone(), CompletionOutcome::Requeued));
            }
            // The contract says the agent becomes offline; an agent still holding other
            // live tasks stays busy (the contract is silent; this is the implementation's reading).
            self.release(&holder, &id, 0, AgentStatus::Offline);
        }
        outcomes
    }

    /// Agents holding no task, not offline and not seen for the timeout go `offline`;
    /// returns them.
    fn expire_idle_agents(&mut self) -> Vec<String> {
        let timeout = i64::from(AGENT_TIMEOUT_SECONDS) * 1000;
        let mut gone = Vec::new();
        for (id, agent) in &mut self.agents {
            if agent.held.is_empty() && agent.status != AgentStatus::Offline && agent.last_seen + timeout <= self.now {
                agent.status = AgentStatus::Offline;
                gone.push(id.clone());
            }
        }
        gone
    }

    fn create_venture(&mut self, id: &str, budget: Money, spent: Money, status: VentureStatus) -> MResult {
        if self.ventures.contains_key(id) {
            return Err(ErrKind::AlreadyExists);
        }
        self.ventures.insert(id.into(), MVenture { status, budget, spent, created_at: self.now });
        Ok(("ok".into(), true))
    }

    fn create_task(&mut self, c: &CreateTaskCall) -> MResult {
        if !self.ventures.contains_key(&c.venture) {
            return Err(ErrKind::NotFound);
        }
        // "A create whose key equals that of a task of the same venture that the database
        // still holds ... answers that task, unchanged, whatever else the request says."
        if let Some(key) = c.idempotency_key {
            let same = self.tasks.iter().find(|(_, t)| t.venture == c.venture && t.idempotency_key == Some(key));
            if let Some((id, _)) = same {
                return Ok((format!("existing {id}"), false));
            }
        }
        if self.tasks.contains_key(&c.id) {
            return Err(ErrKind::AlreadyExists);
        }
        let deps = dedup(&c.depends_on);
        if deps.iter().any(|d| !self.tasks.contains_key(d)) {
            return Err(ErrKind::NotFound);
        }
        // The id may be a deleted task's, which unfinished tasks may still name.
        if self.closes_cycle(&c.id, &deps) {
            return Err(ErrKind::Cycle);
        }
        let task = MTask {
            venture: c.venture.clone(),
            priority: c.priority,
            cost: c.cost,
            tags: c.tags.clone(),
            status: self.status_for(&deps, c.policy, c.run_at),
            assigned_to: None,
            attempts: 0,
            max_attempts: c.max_attempts,
            lease_seconds: DEFAULT_LEASE_SECONDS,
            lease_expires_at: None,
            created_at: self.now,
            handouts: 0,
            last_report: None,
            applied_report: None,
            depends_on: deps,
            policy: c.policy,
            cancel_requested: false,
            run_at: c.run_at,
            retry_delay_seconds: c.retry_delay_seconds,
            idempotency_key: c.idempotency_key,
        };
        self.tasks.insert(c.id.clone(), task);
        Ok(("ok".into(), true))
    }

    fn claim(&mut self, agent: &str, venture: Option<&str>, tags: &[&'static str], lease: Option<u32>) -> MResult {
        if venture.is_some_and(|v| !self.ventures.contains_key(v)) {
            return Err(ErrKind::NotFound);
        }
        // The whole table, every time: first eligible task in claim order.
        let mut best: Option<(u8, i64, String)> = None;
        for (id, task) in &self.tasks {
            if self.eligible(task, venture, tags) {
                let key = (rank(task.priority), task.created_at, id.clone());
                if best.as_ref().is_none_or(|b| key < *b) {
                    best = Some(key);
                }
            }
        }
        let Some((_, _, id)) = best else {
            // "Every request that names an agent (a claim, also one that finds nothing ...)
            // updates its lastActiveAt"; an offline agent "is online again at its next request".
            let now = self.now;
            let Some(a) = self.agents.get_mut(agent) else { return Ok(("empty".into(), false)) };
            a.last_seen = now;
            if a.status == AgentStatus::Offline {
                a.status = if a.held.is_empty() { AgentStatus::Online } else { AgentStatus::Busy };
            }
            return Ok(("empty".into(), true));
        };
        let now = self.now;
        let task = self.tasks.get_mut(&id).unwrap();
        task.status = TaskStatus::Active;
        task.assigned_to = Some(agent.into());
        task.attempts += 1;
        task.handouts += 1;
        task.lease_seconds = lease.unwrap_or(DEFAULT_LEASE_SECONDS);
        task.lease_expires_at = Some(now + i64::from(task.lease_seconds) * 1000);
        let a = self.agents.entry(agent.into()).or_insert(MAgent {
            status: AgentStatus::Online,
            held: Vec::new(),
            tokens_used: 0,
            last_seen: now,
        });
        a.last_seen = now;
        a.held.push(id.clone());
        a.status = AgentStatus::Busy;
        Ok((format!("claimed {id}"), true))
    }

    /// The checks `complete` and `heartbeat` share: 404, stale attempt (checked first),
    /// holder. `Ok(true)`: the agent holds the task; `Ok(false)`: a retry-safe repeat.
    fn holder_check(&self, task_id: &str, agent: &str, attempt: Option<u32>, repeat_ok: bool) -> Result<bool, ErrKind> {
        let task = self.tasks.get(task_id).ok_or(ErrKind::NotFound)?;
        if attempt.is_some_and(|a| a != task.attempts) {
            return Err(ErrKind::StaleLease);
        }
        if task.status == TaskStatus::Active && task.assigned_to.as_deref() == Some(agent) {
            return Ok(true);
        }
        match &task.last_report {
            // The agent repeats its last report: fine as long as the task has not been
            // handed out again since. Otherwise "a heartbeat or report without `attempt`
            // from an agent that does not hold the task is a 409 `not_holder`; `stale_lease`
            // is only for an `attempt` that is not the current one".
            Some((reporter, handouts)) if reporter == agent && repeat_ok && *handouts == task.handouts => Ok(false),
            _ => Err(ErrKind::NotHolder),
        }
    }

    fn complete(&mut self, c: &CompleteCall) -> MResult {
        let now = self.now;
        if !self.holder_check(&c.task, &c.agent, c.attempt, true)? {
            // "Repeating the report already applied for an attempt ... answers 200 and
            // changes nothing"; anything else is a conflict.
            let same = self.tasks[&c.task].applied_report == Some((c.error, c.actual_cost));
            return if same { Ok(("repeated".into(), false)) } else { Err(ErrKind::Conflict) };
        }
        let task = self.tasks.get_mut(&c.task).unwrap();
        task.lease_expires_at = None;
        task.last_report = Some((c.agent.clone(), task.handouts));
        task.applied_report = Some((c.error, c.actual_cost));
        // "A failure report's `actualCost`, when given, is charged to the venture like a
        // success's": the cost this report gives, whatever its outcome.
        let venture = task.venture.clone();
        let spent = &mut self.ventures.get_mut(&venture).unwrap().spent;
        *spent = spent.saturating_add(c.actual_cost.unwrap_or_default());
        let answer = if task.cancel_requested {
            // Whatever it says, the report of a task whose cancel was asked for ends it.
            task.status = TaskStatus::Cancelled;
            task.cancel_requested = false;
            "cancelled"
        } else if c.error {
            if task.attempts < task.max_attempts {
                task.status = TaskStatus::Queue;
                task.assigned_to = None;
                Self::back_off(now, task);
                "requeued"
            } else {
                task.status = TaskStatus::Failed;
                "failed"
            }
        } else {
            task.status = TaskStatus::Completed;
            "completed"
        };
        self.release(&c.agent, &c.task, c.tokens.unwrap_or(0), AgentStatus::Online);
        Ok((answer.into(), true))
    }

    fn heartbeat(&mut self, c: &HeartbeatCall) -> MResult {
        // A heartbeat is never a repeat: the agent that already reported is not the holder.
        self.holder_check(&c.task, &c.agent, c.attempt, false)?;
        let now = self.now;
        let task = self.tasks.get_mut(&c.task).unwrap();
        task.lease_expires_at = Some(now + i64::from(c.lease.unwrap_or(task.lease_seconds)) * 1000);
        if let Some(agent) = self.agents.get_mut(&c.agent) {
            agent.last_seen = now;
        }
        Ok(("ok".into(), true))
    }

    fn patch_task(&mut self, c: &PatchTaskCall) -> MResult {
        let task = self.tasks.get(&c.task).ok_or(ErrKind::NotFound)?;
        let from = task.status;
        if let Some(to) = c.status {
            use TaskStatus::*;
            // The operator transitions; setting the status a task already has is a no-op
            // (the implementation's reading). `active` and `blocked` are never set by hand.
            let allowed = from == to
                || matches!(
                    (from, to),
                    (Active | Failed | Cancelled, Queue) | (Queue | Active | Blocked, Failed | Completed | Cancelled)
                );
            if !allowed {
                return Err(if to == Cancelled { ErrKind::Finished } else { ErrKind::Conflict });
            }
            // A finished task requeued waits again for its unfinished dependencies, which
            // must not wait for it.
            if to == Queue && from.is_finished() && self.closes_cycle(&c.task, &task.depends_on) {
                return Err(ErrKind::Cycle);
            }
        }
        let waits = task.depends_on.iter().any(|d| self.unfinished(d));
        let now = self.now;
        let task = self.tasks.get_mut(&c.task).unwrap();
        if let Some(priority) = c.priority {
            task.priority = priority;
        }
        if let Some(cost) = c.cost {
            task.cost = cost;
        }
        if let Some(max_attempts) = c.max_attempts {
            task.max_attempts = max_attempts;
        }
        // Applies from the next dependency that ends: a blocked task is not re-judged by
        // the dependencies that already ended (the implementation's reading).
        if let Some(policy) = c.policy {
            task.policy = policy;
        }
        let holder = task.assigned_to.clone();
        match c.status {
            // A cancel: at once for a queued or blocked task; an active one is asked to stop.
            Some(TaskStatus::Cancelled) if from == TaskStatus::Active => task.cancel_requested = true,
            Some(TaskStatus::Cancelled) => task.status = TaskStatus::Cancelled,
            Some(TaskStatus::Queue) if from != TaskStatus::Queue => {
                if from.is_finished() {
                    // "`attempts` never decreases": a requeue grants a fresh allowance of
                    // claims, the PATCH's `maxAttempts` or the default 3 (docs/API.md).
                    task.max_attempts = task.attempts + c.max_attempts.unwrap_or(3);
                }
                // Back in the queue it waits again for its unfinished dependencies (when it
                // was finished) and for a `runAt` still to come.
                let delayed = task.run_at.is_some_and(|at| at > now);
                task.status =
                    if (from.is_finished() && waits) || delayed { TaskStatus::Blocked } else { TaskStatus::Queue };
                task.assigned_to = None;
                task.lease_expires_at = None;
                task.cancel_requested = false;
            }
            Some(to @ (TaskStatus::Completed | TaskStatus::Failed)) if to != from => {
                // Never charges capital; keeps the last holder as history.
                task.status = to;
                task.lease_expires_at = None;
                task.cancel_requested = false;
            }
            _ => {}
        }
        if from == TaskStatus::Active && task.status != TaskStatus::Active {
            self.release(holder.as_deref().unwrap(), &c.task, 0, AgentStatus::Online);
        }
        Ok(("ok".into(), true))
    }

    /// `PATCH dependsOn`: the same list (repeats aside) changes nothing; otherwise only a
    /// queued or blocked task, no cycle, every id known; the status follows the new list.
    fn patch_deps(&mut self, task_id: &str, given: &[String]) -> MResult {
        let task = self.tasks.get(task_id).ok_or(ErrKind::NotFound)?;
        let deps = dedup(given);
        if deps == task.depends_on {
            return Ok(("ok".into(), true));
        }
        if !matches!(task.status, TaskStatus::Queue | TaskStatus::Blocked) {
            return Err(ErrKind::Conflict);
        }
        if self.closes_cycle(task_id, &deps) {
            return Err(ErrKind::Cycle);
        }
        if deps.iter().any(|d| !self.tasks.contains_key(d)) {
            return Err(ErrKind::NotFound);
        }
        let status = self.status_for(&deps, task.policy, task.run_at);
        let task = self.tasks.get_mut(task_id).unwrap();
        task.status = status;
        task.depends_on = deps;
        Ok(("ok".into(), true))
    }

    /// `PATCH runAt` and `retryDelaySeconds`. The time a task has already is no edit;
    /// another only for a queued or blocked task, which is then `blocked` while the time is
    /// to come or a dependency holds it (the settling after the step queues it otherwise).
    fn patch_time(&mut self, c: &PatchTimeCall) -> MResult {
        let now = self.now;
        let task = self.tasks.get_mut(&c.task).ok_or(ErrKind::NotFound)?;
        let run_at = c.run_at.filter(|at| *at != task.run_at);
        if run_at.is_some() && !matches!(task.status, TaskStatus::Queue | TaskStatus::Blocked) {
            return Err(ErrKind::Conflict);
        }
        if let Some(delay) = c.retry_delay_seconds {
            task.retry_delay_seconds = delay;
        }
        if let Some(at) = run_at {
            task.run_at = at;
            if at.is_some_and(|at| at > now) {
                task.status = TaskStatus::Blocked;
            }
        }
        Ok(("ok".into(), true))
    }

    /// A claim whose answer never reached its agent, given back while the agent still
    /// holds that attempt: "keeps its number used and gives the claim back by raising
    /// `maxAttempts` by one". As if the claim had not happened, a cancel asked for since
    /// ends the task, as when its holder is deleted.
    fn release_unreturned(&mut self, task_id: &str, agent: &str, attempt: u32) -> MResult {
        let Some(task) = self.tasks.get_mut(task_id) else { return Ok(("kept".into(), false)) };
        if task.status != TaskStatus::Active || task.assigned_to.as_deref() != Some(agent) || task.attempts != attempt {
            return Ok(("kept".into(), false));
        }
        task.lease_expires_at = None;
        task.max_attempts += 1;
        if task.cancel_requested {
            task.status = TaskStatus::Cancelled;
            task.cancel_requested = false;
        } else {
            task.status = TaskStatus::Queue;
            task.assigned_to = None;
        }
        self.release(agent, task_id, 0, AgentStatus::Online);
        Ok(("released".into(), true))
    }

    /// `POST /api/tasks/cancel`: a repeat (or a cancel of a cancelled task) changes nothing.
    fn cancel(&mut self, task_id: &str) -> MResult {
        let task = self.tasks.get_mut(task_id).ok_or(ErrKind::NotFound)?;
        match task.status {
            TaskStatus::Completed | TaskStatus::Failed => Err(ErrKind::Finished),
            TaskStatus::Cancelled => Ok(("ok".into(), false)),
            _ if task.cancel_requested => Ok(("ok".into(), false)),
            TaskStatus::Active => {
                task.cancel_requested = true;
                Ok(("ok".into(), true))
            }
            TaskStatus::Queue | TaskStatus::Blocked => {
                task.status = TaskStatus::Cancelled;
                Ok(("ok".into(), true))
            }
        }
    }

    fn delete_task(&mut self, id: &str) -> MResult {
        if !self.tasks.contains_key(id) {
            return Err(ErrKind::NotFound);
        }
        if !self.waiting_for(id).is_empty() {
            return Err(ErrKind::HasDependents);
        }
        let task = self.tasks.remove(id).unwrap();
        if task.status == TaskStatus::Active {
            self.release(task.assigned_to.as_deref().unwrap(), id, 0, AgentStatus::Online);
        }
        Ok(("ok".into(), true))
    }

    fn update_venture(&mut self, c: &UpdateVentureCall) -> MResult {
        let venture = self.ventures.get_mut(&c.venture).ok_or(ErrKind::NotFound)?;
        if let Some(budget) = c.budget {
            venture.budget = budget;
        }
        if let Some(spent) = c.spent {
            venture.spent = spent;
        }
        if let Some(status) = c.status {
            venture.status = status;
        }
        Ok(("ok".into(), true))
    }

    fn delete_venture(&mut self, id: &str) -> MResult {
        if !self.ventures.contains_key(id) {
            return Err(ErrKind::NotFound);
        }
        if self.tasks.values().any(|t| t.venture == id && t.status == TaskStatus::Active) {
            return Err(ErrKind::Conflict);
        }
        // Tasks of other ventures must not be left waiting for tasks that go with this one.
        let outside = self
            .tasks
            .values()
            .filter(|t| t.venture != id)
            .any(|t| self.blocked_by(t).iter().any(|d| self.tasks.get(d).is_some_and(|d| d.venture == id)));
        if outside {
            return Err(ErrKind::HasDependents);
        }
        self.ventures.remove(id);
        self.tasks.retain(|_, t| t.venture != id);
        Ok(("ok".into(), true))
    }

    fn delete_agent(&mut self, id: &str) -> MResult {
        let agent = self.agents.remove(id).ok_or(ErrKind::NotFound)?;
        for task_id in agent.held {
            let task = self.tasks.get_mut(&task_id).unwrap();
            task.lease_expires_at = None;
            if task.cancel_requested {
                // Its holder is gone without a report: as at the lease's expiry, the cancel
                // asked for ends it.
                task.status = TaskStatus::Cancelled;
                task.cancel_requested = false;
            } else {
                task.status = TaskStatus::Queue;
                task.assigned_to = None;
            }
        }
        Ok(("ok".into(), true))
    }
}

// ----------------------------------------------------------------------------------------
// Operations: what proptest generates, and the concrete calls they resolve to
// ----------------------------------------------------------------------------------------

/// Which task an operation names, resolved against the model when the step runs.
#[derive(Debug, Clone)]
enum TaskSel {
    /// An active task if there is one, else any task ever created.
    Active(Index),
    /// Any task ever created, deleted ones included.
    Any(Index),
    /// A queued or blocked task if there is one (those whose `dependsOn` may change), else any.
    Waiting(Index),
    /// A failed or cancelled task if there is one (those a requeue brings back), else any.
    Ended(Index),
    Unknown,
}

/// One dependency named at create or in a `dependsOn` edit.
#[derive(Debug, Clone)]
enum DepSel {
    /// A task that exists, finished or not.
    Live(Index),
    /// Any task ever created, deleted ones included.
    Known(Index),
    Unknown,
}

/// A new `dependsOn` list.
#[derive(Debug, Clone)]
enum DepsSel {
    List(Vec<DepSel>),
    /// A deliberate attempt at a cycle: one of the task's transitive dependents (itself
    /// when it has none), added to its current list or alone.
    Cycle {
        dependent: Index,
        keep: bool,
    },
}

/// Which agent reports or heartbeats.
#[derive(Debug, Clone)]
enum Who {
    /// The holder, else the last reporter, else `a0`.
    Holder,
    /// A given agent (possibly the holder by chance).
    Agent(usize),
    /// Some agent other than the holder.
    Wrong(usize),
}

#[derive(Debug, Clone)]
enum AttemptSel {
    Omit,
    Current,
    /// The current attempt minus one: a superseded lease.
    Previous,
    /// Any attempt before the current one (0 when there is none): one from before a
    /// requeue, say.
    Stale(Index),
    Next,
}

/// A `runAt`, relative to the clock when the step runs.
#[derive(Debug, Clone)]
enum RunAtSel {
    None,
    /// Already past: delays nothing.
    Past,
    /// This many milliseconds ahead (a few seconds).
    Ahead(i64),
    /// An hour ahead.
    Far,
}

/// A `runAt` edit.
#[derive(Debug, Clone)]
enum RunAtPatch {
    Set(RunAtSel),
    /// `null`.
    Clear,
    /// The time the task has already: no edit.
    Same,
}

#[derive(Debug, Clone)]
enum VentureSel {
    Known(Index),
    Unknown,
}

#[derive(Debug, Clone)]
enum Op {
    CreateVenture {
        budget: Money,
        spent: Money,
        paused: bool,
        reuse: Option<Index>,
    },
    CreateTask {
        venture: VentureSel,
        priority: Priority,
        cost: Option<Money>,
        tags: Option<Vec<&'static str>>,
        max_attempts: u32,
        reuse: Option<Index>,
        deps: Vec<DepSel>,
        policy: OnDependencyFailure,
        run_at: RunAtSel,
        retry_delay_seconds: u32,
        idempotency_key: Option<&'static str>,
    },
    Claim {
        agent: usize,
        venture: Option<VentureSel>,
        tags: Vec<&'static str>,
        lease: Option<u32>,
    },
    Complete {
        task: TaskSel,
        who: Who,
        attempt: AttemptSel,
        error: bool,
        actual_cost: Option<Money>,
        tokens: Option<u64>,
    },
    Heartbeat {
        task: TaskSel,
        who: Who,
        attempt: AttemptSel,
        lease: Option<u32>,
    },
    Advance {
        ms: i64,
    },
    PatchTask {
        task: TaskSel,
        status: Option<TaskStatus>,
        priority: Option<Priority>,
        cost: Option<Option<Money>>,
        max_attempts: Option<u32>,
        policy: Option<OnDependencyFailure>,
    },
    PatchTime {
        task: TaskSel,
        run_at: Option<RunAtPatch>,
        retry_delay_seconds: Option<u32>,
    },
    /// A claim whose answer never reached its agent is given back (`release_unreturned`).
    Release {
        task: TaskSel,
        who: Who,
        attempt: AttemptSel,
    },
    DeleteTask {
        task: TaskSel,
    },
    PatchDeps {
        task: TaskSel,
        deps: DepsSel,
    },
    Cancel {
        task: TaskSel,
    },
    UpdateVenture {
        venture: VentureSel,
        budget: Option<Money>,
        spent: Option<Money>,
        status: Option<VentureStatus>,
    },
    DeleteVenture {
        venture: VentureSel,
    },
    DeleteAgent {
        agent: usize,
    },
    /// Rebuilds the scheduler from a snapshot of its own records, as a restart does.
    Restart,
}

#[derive(Debug, Clone)]
struct CreateTaskCall {
    id: String,
    venture: String,
    priority: Priority,
    cost: Option<Money>,
    tags: Option<Vec<&'static str>>,
    max_attempts: u32,
    depends_on: Vec<String>,
    policy: OnDependencyFailure,
    run_at: Option<i64>,
    retry_delay_seconds: u32,
    idempotency_key: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct CompleteCall {
    task: String,
    agent: String,
    attempt: Option<u32>,
    error: bool,
    actual_cost: Option<Money>,
    tokens: Option<u64>,
}

#[derive(Debug, Clone)]
struct HeartbeatCall {
    task: String,
    agent: String,
    attempt: Option<u32>,
    lease: Option<u32>,
}

#[derive(Debug, Clone)]
struct PatchTaskCall {
    task: String,
    status: Option<TaskStatus>,
    priority: Option<Priority>,
    cost: Option<Option<Money>>,
    max_attempts: Option<u32>,
    policy: Option<OnDependencyFailure>,
}

#[derive(Debug, Clone)]
struct PatchTimeCall {
    task: String,
    run_at: Option<Option<i64>>,
    retry_delay_seconds: Option<u32>,
}

#[derive(Debug, Clone)]
struct UpdateVentureCall {
    venture: String,
    budget: Option<Money>,
    spent: Option<Money>,
    status: Option<VentureStatus>,
}

/// One concrete call, with the ids spelled out: what a failure report shows.
#[derive(Debug, Clone)]
enum Call {
    CreateVenture { id: String, budget: Money, spent: Money, status: VentureStatus },
    CreateTask(CreateTaskCall),
    Claim { agent: String, venture: Option<String>, tags: Vec<&'static str>, lease: Option<u32> },
    Complete(CompleteCall),
    Heartbeat(HeartbeatCall),
    Advance,
    PatchTask(PatchTaskCall),
    PatchTime(PatchTimeCall),
    Release { task: String, agent: String, attempt: u32 },
    DeleteTask(String),
    PatchDeps { task: String, deps: Vec<String> },
    Cancel(String),
    UpdateVenture(UpdateVentureCall),
    DeleteVenture(String),
    DeleteAgent(String),
    Restart,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::CreateTask(c) => write!(f, "{c:?}"),
            Call::Complete(c) => write!(f, "{c:?}"),
            Call::Heartbeat(c) => write!(f, "{c:?}"),
            Call::PatchTask(c) => write!(f, "{c:?}"),
            Call::PatchTime(c) => write!(f, "{c:?}"),
            Call::UpdateVenture(c) => write!(f, "{c:?}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// The ids as kept: in the order given, without repeats.
fn dedup(ids: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for id in ids {
        if !kept.contains(id) {
            kept.push(id.clone());
        }
    }
    kept
}

fn pick<'a>(items: &'a [String], index: &Index) -> Option<&'a String> {
    (!items.is_empty()).then(|| &items[index.index(items.len())])
}

impl Model {
    fn pick_task(&self, sel: &TaskSel) -> String {
        let active: Vec<String> =
            self.tasks.iter().filter(|(_, t)| t.status == TaskStatus::Active).map(|(id, _)| id.clone()).collect();
        let found = match sel {
            TaskSel::Active(i) => pick(&active, i).or_else(|| pick(&self.ever_tasks, i)),
            TaskSel::Any(i) => pick(&self.ever_tasks, i),
            TaskSel::Waiting(i) => {
                let waiting: Vec<String> = self
                    .tasks
                    .iter()
                    .filter(|(_, t)| matches!(t.status, TaskStatus::Queue | TaskStatus::Blocked))
                    .map(|(id, _)| id.clone())
                    .collect();
                return pick(&waiting, i)
                    .or_else(|| pick(&self.ever_tasks, i))
                    .cloned()
                    .unwrap_or_else(|| "t-missing".into());
            }
            TaskSel::Ended(i) => {
                let ended: Vec<String> =
                    self.tasks.iter().filter(|(_, t)| t.status.is_unsuccessful()).map(|(id, _)| id.clone()).collect();
                return pick(&ended, i)
                    .or_else(|| pick(&self.ever_tasks, i))
                    .cloned()
                    .unwrap_or_else(|| "t-missing".into());
            }
            TaskSel::Unknown => None,
        };
        found.cloned().unwrap_or_else(|| "t-missing".into())
    }

    fn pick_venture(&self, sel: &VentureSel) -> String {
        match sel {
            VentureSel::Known(i) => pick(&self.ever_ventures, i).cloned(),
            VentureSel::Unknown => None,
        }
        .unwrap_or_else(|| "v-missing".into())
    }

    /// The dependency named; `None` when there is no task to pick yet (then it is left out).
    fn pick_dep(&self, sel: &DepSel) -> Option<String> {
        let live: Vec<String> = self.tasks.keys().cloned().collect();
        match sel {
            DepSel::Live(i) => pick(&live, i).cloned(),
            DepSel::Known(i) => pick(&self.ever_tasks, i).cloned(),
            DepSel::Unknown => Some("t-unknown".into()),
        }
    }

    /// The tasks that depend on `task`, directly or not (through every task's `dependsOn`).
    fn dependents(&self, task: &str) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        let mut frontier = vec![task.to_string()];
        while let Some(at) = frontier.pop() {
            for (id, t) in &self.tasks {
                if t.depends_on.contains(&at) && !found.contains(id) && id != task {
                    found.push(id.clone());
                    frontier.push(id.clone());
                }
            }
        }
        found
    }

    fn pick_agent(&self, task: &str, who: &Who) -> String {
        let task = self.tasks.get(task);
        let holder = task
            .and_then(|t| t.assigned_to.clone().or_else(|| t.last_report.as_ref().map(|(a, _)| a.clone())))
            .unwrap_or_else(|| AGENTS[0].into());
        match who {
            Who::Holder => holder,
            Who::Agent(i) => AGENTS[*i].into(),
            Who::Wrong(i) => {
                let others: Vec<&str> = AGENTS.iter().copied().filter(|a| *a != holder).collect();
                others[*i % others.len()].into()
            }
        }
    }

    fn pick_attempt(&self, task: &str, sel: &AttemptSel) -> Option<u32> {
        let current = self.tasks.get(task).map_or(1, |t| t.attempts);
        match sel {
            AttemptSel::Omit => None,
            AttemptSel::Current => Some(current),
            AttemptSel::Previous => Some(current.saturating_sub(1)),
            AttemptSel::Stale(i) => Some(if current > 1 { 1 + i.index(current as usize - 1) as u32 } else { 0 }),
            AttemptSel::Next => Some(current + 1),
        }
    }

    fn pick_run_at(&self, sel: &RunAtSel) -> Option<i64> {
        match sel {
            RunAtSel::None => None,
            RunAtSel::Past => Some(self.now - 1500),
            RunAtSel::Ahead(ms) => Some(self.now + ms),
            RunAtSel::Far => Some(self.now + 3_600_000),
        }
    }

    /// Turns a generated operation into a concrete call against the current state.
    fn resolve(&mut self, op: &Op) -> Call {
        match op {
            Op::CreateVenture { budget, spent, paused, reuse } => {
                let id = match reuse.as_ref().and_then(|i| pick(&self.ever_ventures, i)) {
                    Some(id) => id.clone(),
                    None => {
                        self.next_venture += 1;
                        format!("v{}", self.next_venture - 1)
                    }
                };
                let status = if *paused { VentureStatus::Paused } else { VentureStatus::Active };
                Call::CreateVenture { id, budget: *budget, spent: *spent, status }
            }
            Op::CreateTask {
                venture,
                priority,
                cost,
                tags,
                max_attempts,
                reuse,
                deps,
                policy,
                run_at,
                retry_delay_seconds,
                idempotency_key,
            } => {
                let id = match reuse.as_ref().and_then(|i| pick(&self.ever_tasks, i)) {
                    Some(id) => id.clone(),
                    None => {
                        self.next_task += 1;
                        format!("t{}", self.next_task - 1)
                    }
                };
                Call::CreateTask(CreateTaskCall {
                    id,
                    venture: self.pick_venture(venture),
                    priority: *priority,
                    cost: *cost,
                    tags: tags.clone(),
                    max_attempts: *max_attempts,
                    depends_on: deps.iter().filter_map(|d| self.pick_dep(d)).collect(),
                    policy: *policy,
                    run_at: self.pick_run_at(run_at),
                    retry_delay_seconds: *retry_delay_seconds,
                    idempotency_key: *idempotency_key,
                })
            }
            Op::Claim { agent, venture, tags, lease } => Call::Claim {
                agent: AGENTS[*agent].into(),
                venture: venture.as_ref().map(|v| self.pick_venture(v)),
                tags: tags.clone(),
                lease: *lease,
            },
            Op::Complete { task, who, attempt, error, actual_cost, tokens } => {
                let task = self.pick_task(task);
                Call::Complete(CompleteCall {
                    agent: self.pick_agent(&task, who),
                    attempt: self.pick_attempt(&task, attempt),
                    task,
                    error: *error,
                    actual_cost: *actual_cost,
                    tokens: *tokens,
                })
            }
            Op::Heartbeat { task, who, attempt, lease } => {
                let task = self.pick_task(task);
                Call::Heartbeat(HeartbeatCall {
                    agent: self.pick_agent(&task, who),
                    attempt: self.pick_attempt(&task, attempt),
                    task,
                    lease: *lease,
                })
            }
            Op::Advance { .. } => Call::Advance,
            Op::PatchTask { task, status, priority, cost, max_attempts, policy } => Call::PatchTask(PatchTaskCall {
                task: self.pick_task(task),
                status: *status,
                priority: *priority,
                cost: *cost,
                max_attempts: *max_attempts,
                policy: *policy,
            }),
            Op::PatchTime { task, run_at, retry_delay_seconds } => {
                let task = self.pick_task(task);
                let run_at = run_at.as_ref().map(|patch| match patch {
                    RunAtPatch::Set(sel) => self.pick_run_at(sel),
                    RunAtPatch::Clear => None,
                    RunAtPatch::Same => self.tasks.get(&task).and_then(|t| t.run_at),
                });
                Call::PatchTime(PatchTimeCall { task, run_at, retry_delay_seconds: *retry_delay_seconds })
            }
            Op::Release { task, who, attempt } => {
                let task = self.pick_task(task);
                Call::Release {
                    agent: self.pick_agent(&task, who),
                    attempt: self.pick_attempt(&task, attempt).unwrap_or(0),
                    task,
                }
            }
            Op::DeleteTask { task } => Call::DeleteTask(self.pick_task(task)),
            Op::PatchDeps { task, deps } => {
                let task = self.pick_task(task);
                let deps = match deps {
                    DepsSel::List(list) => list.iter().filter_map(|d| self.pick_dep(d)).collect(),
                    DepsSel::Cycle { dependent, keep } => {
                        let dependents = self.dependents(&task);
                        let closing = pick(&dependents, dependent).cloned().unwrap_or_else(|| task.clone());
                        let mut deps = match (keep, self.tasks.get(&task)) {
                            (true, Some(t)) => t.depends_on.clone(),
                            _ => Vec::new(),
                        };
                        deps.push(closing);
                        deps
                    }
                };
                Call::PatchDeps { task, deps }
            }
            Op::Cancel { task } => Call::Cancel(self.pick_task(task)),
            Op::UpdateVenture { venture, budget, spent, status } => Call::UpdateVenture(UpdateVentureCall {
                venture: self.pick_venture(venture),
                budget: *budget,
                spent: *spent,
                status: *status,
            }),
            Op::DeleteVenture { venture } => Call::DeleteVenture(self.pick_venture(venture)),
            Op::DeleteAgent { agent } => Call::DeleteAgent(AGENTS[*agent].into()),
            Op::Restart => Call::Restart,
        }
    }

    /// Applies a call, then settles the graph.
    fn apply(&mut self, call: &Call) -> MResult {
        let before = self.unfinished_ids();
        let result = self.apply_call(call);
        if result.is_ok() {
            self.settle(&before);
        }
        result
    }

    fn apply_call(&mut self, call: &Call) -> MResult {
        match call {
            Call::CreateVenture { id, budget, spent, status } => {
                let result = self.create_venture(id, *budget, *spent, *status);
                if result.is_ok() && !self.ever_ventures.contains(id) {
                    self.ever_ventures.push(id.clone());
                }
                result
            }
            Call::CreateTask(c) => {
                let result = self.create_task(c);
                let created = matches!(&result, Ok((answer, _)) if answer == "ok");
                if created && !self.ever_tasks.contains(&c.id) {
                    self.ever_tasks.push(c.id.clone());
                }
                result
            }
            Call::Claim { agent, venture, tags, lease } => self.claim(agent, venture.as_deref(), tags, *lease),
            Call::Complete(c) => self.complete(c),
            Call::Heartbeat(c) => self.heartbeat(c),
            Call::Advance | Call::Restart => Ok(("ok".into(), false)),
            Call::PatchTask(c) => self.patch_task(c),
            Call::PatchTime(c) => self.patch_time(c),
            Call::Release { task, agent, attempt } => self.release_unreturned(task, agent, *attempt),
            Call::DeleteTask(id) => self.delete_task(id),
            Call::PatchDeps { task, deps } => self.patch_deps(task, deps),
            Call::Cancel(id) => self.cancel(id),
            Call::UpdateVenture(c) => self.update_venture(c),
            Call::DeleteVenture(id) => self.delete_venture(id),
            Call::DeleteAgent(id) => self.delete_agent(id),
        }
    }
}

// ----------------------------------------------------------------------------------------
// The implementation side
// ----------------------------------------------------------------------------------------

fn id(s: &str) -> Id {
    Id::from(s)
}

fn tags_of(tags: &[&'static str]) -> Arc<[Arc<str>]> {
    tags.iter().map(|t| Arc::<str>::from(*t)).collect()
}

fn names(ids: &Option<TaskIds>) -> Vec<String> {
    ids.iter().flat_map(|ids| ids.iter()).map(|id| id.to_string()).collect()
}

fn outcome_name(outcome: CompletionOutcome) -> String {
    outcome.as_str().to_string()
}

/// Applies a call to the real scheduler; a claim also returns the task it handed out.
fn apply_real(real: &mut Real, call: &Call) -> Result<Answer, ErrKind> {
    if let Call::Restart = call {
        real.restart();
        return Ok("ok".into());
    }
    real.with_history(|state, history| apply_call(state, call, history)).map_err(|e| kind_of(&e))
}

fn apply_call(
    state: &mut SchedulerState,
    call: &Call,
    history: Option<&HistoryRecord>,
) -> Result<Answer, SchedulerError> {
    let kind = |e: SchedulerError| e;
    match call {
        Call::CreateVenture { id: vid, budget, spent, status } => state
            .create_venture(NewVenture {
                id: Some(id(vid)),
                name: format!("Venture {vid}").into(),
                status: Some(*status),
                capital_budget: Some(*budget),
                capital_spent: Some(*spent),
                ..NewVenture::default()
            })
            .map(|_| "ok".into())
            .map_err(kind),
        Call::CreateTask(c) => state
            .create_task(
                NewTask {
                    id: Some(id(&c.id)),
                    title: format!("Task {}", c.id).into(),
                    venture_id: id(&c.venture),
                    priority: Some(c.priority),
                    estimated_cost: c.cost,
                    tags: c.tags.as_deref().map(tags_of),
                    max_attempts: Some(c.max_attempts),
                    depends_on: c.depends_on.iter().map(|d| id(d)).collect(),
                    on_dependency_failure: Some(c.policy),
                    run_at: c.run_at.map(Millis),
                    retry_delay_seconds: Some(c.retry_delay_seconds),
                    idempotency_key: c.idempotency_key.map(Arc::from),
                    ..NewTask::default()
                },
                history,
            )
            .map(|(view, created)| if created { "ok".into() } else { format!("existing {}", view.task.id) })
            .map_err(kind),
        Call::Claim { agent, venture, tags, lease } => state
            .claim(ClaimRequest {
                agent_id: id(agent),
                agent_name: None,
                venture_id: venture.as_deref().map(id),
                tags: tags.iter().map(|t| Arc::<str>::from(*t)).collect(),
                lease_seconds: *lease,
            })
            .map(|claimed| match claimed {
                Some(view) => format!("claimed {}", view.task.id),
                None => {
                    // As the actor does for a claim that finds nothing.
                    state.agent_seen(&id(agent));
                    "empty".into()
                }
            })
            .map_err(kind),
        Call::Complete(c) => state
            .complete(
                CompleteRequest {
                    task_id: id(&c.task),
                    agent_id: id(&c.agent),
                    attempt: c.attempt,
                    output: Some("done".into()),
                    actual_cost: c.actual_cost,
                    error: c.error.then(|| "it broke".into()),
                    tokens_used: c.tokens,
                },
                history,
            )
            .map(|(_, outcome)| outcome_name(outcome))
            .map_err(kind),
        Call::Heartbeat(c) => state
            .heartbeat(
                HeartbeatRequest {
                    task_id: id(&c.task),
                    agent_id: id(&c.agent),
                    attempt: c.attempt,
                    lease_seconds: c.lease,
                },
                history,
            )
            .map(|_| "ok".into())
            .map_err(kind),
        Call::Advance | Call::Restart => Ok("ok".into()),
        Call::PatchTask(c) => state
            .update_task(
                &id(&c.task),
                TaskPatch {
                    priority: c.priority,
                    estimated_cost: c.cost,
                    max_attempts: c.max_attempts,
                    status: c.status,
                    on_dependency_failure: c.policy,
                    ..TaskPatch::default()
                },
                history,
            )
            .map(|_| "ok".into())
            .map_err(kind),
        Call::PatchTime(c) => state
            .update_task(
                &id(&c.task),
                TaskPatch {
                    run_at: c.run_at.map(|at| at.map(Millis)),
                    retry_delay_seconds: c.retry_delay_seconds,
                    ..TaskPatch::default()
                },
                history,
            )
            .map(|_| "ok".into())
            .map_err(kind),
        Call::Release { task, agent, attempt } => {
            Ok(if state.release_unreturned(&id(task), &id(agent), *attempt) { "released" } else { "kept" }.into())
        }
        Call::DeleteTask(t) => state.delete_task(&id(t), history).map(|_| "ok".into()).map_err(kind),
        Call::PatchDeps { task, deps } => state
            .update_task(
                &id(task),
                TaskPatch { depends_on: Some(deps.iter().map(|d| id(d)).collect()), ..TaskPatch::default() },
                history,
            )
            .map(|_| "ok".into())
            .map_err(kind),
        Call::Cancel(t) => state
            .cancel_task(CancelRequest { task_id: id(t), reason: None }, history)
            .map(|_| "ok".into())
            .map_err(kind),
        Call::UpdateVenture(c) => state
            .update_venture(
                &id(&c.venture),
                VenturePatch {
                    capital_budget: c.budget,
                    capital_spent: c.spent,
                    status: c.status,
                    ..VenturePatch::default()
                },
            )
            .map(|_| "ok".into())
            .map_err(kind),
        Call::DeleteVenture(v) => state.delete_venture(&id(v)).map(|_| "ok".into()).map_err(kind),
        Call::DeleteAgent(a) => state.delete_agent(&id(a)).map(|_| "ok".into()).map_err(kind),
    }
}

// ----------------------------------------------------------------------------------------
// The real scheduler and its real record
// ----------------------------------------------------------------------------------------

/// The scheduler as the server runs it: its changes written by the persister's writer,
/// finished tasks read with the server's reader, restarts loaded with the server's loader.
struct Real {
    state: SchedulerState,
    conn: rusqlite::Connection,
    reader: TaskReader,
    /// Envelopes written so far.
    seq: u64,
    _dir: tempfile::TempDir,
}

impl Real {
    fn new() -> Real {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("model.db");
        let mut conn = store::open(&path).expect("open");
        store::migrate(&mut conn, &path).expect("migrate");
        let config = SchedulerConfig {
            default_lease_seconds: DEFAULT_LEASE_SECONDS,
            agent_timeout_seconds: AGENT_TIMEOUT_SECONDS,
        };
        let state = SchedulerState::new(config, Snapshot::default(), Millis(START));
        Real {
            state,
            conn,
            reader: TaskReader::new(&mission_control::store::Location::Sqlite(path)),
            seq: 0,
            _dir: dir,
        }
    }

    /// Writes the changes made since the last call in one transaction, as the persister
    /// does with an envelope; returns how many there were.
    fn commit(&mut self) -> usize {
        let changes = self.state.take_changes();
        if changes.is_empty() {
            return 0;
        }
        let tx = self.conn.transaction().expect("transaction");
        write_changes(&tx, &changes).expect("the writer applies every change");
        tx.commit().expect("commit");
        self.seq += 1;
        self.state.changes_sent(self.seq);
        // One envelope behind, as a busy persister is: the scheduler answers for the last
        // step's finished tasks from memory, and for the earlier ones from the database.
        self.state.changes_committed(self.seq - 1);
        changes.len()
    }

    /// Rebuilds the scheduler from what the writer wrote, with the server's loader.
    fn restart(&mut self) {
        self.commit();
        let snapshot = store::load_snapshot(&self.conn).expect("the loader reads what the writer wrote");
        let config = SchedulerConfig {
            default_lease_seconds: DEFAULT_LEASE_SECONDS,
            agent_timeout_seconds: AGENT_TIMEOUT_SECONDS,
        };
        self.state = SchedulerState::new(config, snapshot, self.state.now());
    }

    fn record(&self, ids: &[Id], epoch: u64) -> HistoryRecord {
        let read = |id: &Id| self.reader.finished_task(id).expect("the reader reads what the writer wrote");
        let tasks = ids.iter().map(|id| (id.clone(), read(id).map(Arc::new))).collect();
        HistoryRecord { epoch, tasks, ..HistoryRecord::default() }
    }

    /// Runs `op`, handing it a task's record from the database when the scheduler asks,
    /// as `Scheduler` does.
    fn with_history<R>(
        &mut self,
        op: impl Fn(&mut SchedulerState, Option<&HistoryRecord>) -> Result<R, SchedulerError>,
    ) -> Result<R, SchedulerError> {
        let mut record: Option<HistoryRecord> = None;
        for _ in 0..8 {
            match op(&mut self.state, record.as_ref()) {
                Err(SchedulerError::InHistory { ids, epoch }) => {
                    let read = self.record(&ids, epoch);
                    record = Some(match record.take() {
                        Some(earlier) => earlier.merge(read),
                        None => read,
                    });
                }
                Err(SchedulerError::KeyInHistory { venture_id, key, epoch }) => {
                    let task = self.reader.with_key(&venture_id, &key).expect("the reader reads what the writer wrote");
                    let keys = HashMap::from([((venture_id, key), task.map(Arc::new))]);
                    let read = HistoryRecord { epoch, keys, ..HistoryRecord::default() };
                    record = Some(match record.take() {
                        Some(earlier) => earlier.merge(read),
                        None => read,
                    });
                }
                other => return other,
            }
        }
        panic!("the scheduler kept asking for history records")
    }

    fn get_task(&self, task_id: &Id) -> Result<TaskView, SchedulerError> {
        match self.state.get_task_in(task_id, None) {
            Err(SchedulerError::InHistory { ids, epoch }) => {
                self.state.get_task_in(task_id, Some(&self.record(&ids, epoch)))
            }
            other => other,
        }
    }

    /// Every task: the unfinished ones from memory, the finished ones from the database.
    fn list_all(&self) -> Vec<TaskView> {
        let listing = self.state.list_in_memory(&TaskFilter::default(), None, ListOrder::Asc);
        let mut all = listing.tasks;
        self.reader
            .for_each_finished(&TaskFilter::default(), None, ListOrder::Asc, |task| {
                if listing.shadowed.contains(&task.id) {
                    return true;
                }
                let venture = self.state.get_venture(&task.venture_id).ok().map(|v| v.venture);
                all.push(TaskView { task: Arc::new(task), venture });
                true
            })
            .expect("the reader lists what the writer wrote");
        all
    }
}

// ----------------------------------------------------------------------------------------
// The harness: one step at a time, compared and checked
// ----------------------------------------------------------------------------------------

struct Harness {
    real: Real,
    model: Model,
    /// The concrete calls so far, for the failure report.
    trace: Vec<String>,
}

macro_rules! ensure {
    ($h:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($h.fail(format!($($fmt)+)));
        }
    };
}

impl Harness {
    fn new() -> Harness {
        Harness { real: Real::new(), model: Model { now: START, ..Model::default() }, trace: Vec::new() }
    }

    fn fail(&self, message: String) -> String {
        let mut report = String::from("\nsteps (time relative to the start):\n");
        for line in &self.trace {
            report.push_str("  ");
            report.push_str(line);
            report.push('\n');
        }
        report.push_str("failure: ");
        report.push_str(&message);
        report
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        // Time moves before every operation: at least 1 ms, so creation times are distinct.
        let dt = match op {
            Op::Advance { ms } => *ms,
            _ => 1,
        };
        let attempts: Vec<(String, u32)> = self.model.tasks.iter().map(|(id, t)| (id.clone(), t.attempts)).collect();
        self.model.now += dt;
        let outcomes = self.real.state.advance(Millis(self.model.now));
        let before = self.model.unfinished_ids();
        let statuses: Vec<(String, TaskStatus)> =
            self.model.tasks.iter().map(|(id, t)| (id.clone(), t.status)).collect();
        let expired = self.model.expire_leases();
        self.model.settle(&before);
        // Tasks whose `runAt` came (and those a lease's expiry moved, or their dependents).
        let moved: Vec<String> = statuses
            .into_iter()
            .filter(|(id, status)| self.model.tasks[id].status != *status)
            .map(|(id, _)| id)
            .collect();
        let gone = self.model.expire_idle_agents();
        let expected_outcomes: Vec<CompletionOutcome> = expired.iter().map(|(_, outcome)| *outcome).collect();
        let n_changes = self.real.commit();
        if !expired.is_empty() || !moved.is_empty() || matches!(op, Op::Advance { .. }) {
            let expired: Vec<String> = expired.iter().map(|(id, o)| format!("{id} {}", o.as_str())).collect();
            let what = if matches!(op, Op::Advance { .. }) { "clock advanced" } else { "clock ticked" };
            self.trace.push(format!(
                "+{}ms {what}; leases expired: {expired:?}; tasks moved: {moved:?}; agents offline: {gone:?}",
                self.model.now - START
            ));
        }
        ensure!(self, outcomes == expected_outcomes, "lease expiry: got {outcomes:?}, expected {expected_outcomes:?}");
        ensure!(
            self,
            (n_changes == 0) == (expected_outcomes.is_empty() && moved.is_empty() && gone.is_empty()),
            "the clock emitted {n_changes} change(s) for {} lease expiries, {} task(s) moved and {} agent(s) offline",
            expected_outcomes.len(),
            moved.len(),
            gone.len()
        );
        self.check_state()?;

        let call = self.model.resolve(op);
        if matches!(call, Call::Advance) {
            return Ok(());
        }
        let real = apply_real(&mut self.real, &call);
        let n_changes = self.real.commit();
        let expected = self.model.apply(&call);
        let real_shown = match &real {
            Ok(answer) => answer.clone(),
            Err(kind) => format!("{kind:?}"),
        };
        self.trace.push(format!("+{}ms {call} -> {real_shown}", self.model.now - START));
        let expected_answer = expected.as_ref().map(|(answer, _)| answer.clone()).map_err(|e| *e);
        ensure!(self, real == expected_answer, "answer: got {real:?}, the model expected {expected_answer:?}");
        let mutated = matches!(expected, Ok((_, true)));
        ensure!(
            self,
            (n_changes == 0) != mutated,
            "{n_changes} change(s) emitted, but the step {} state",
            if mutated { "changed" } else { "did not change" }
        );
        if let (Call::Claim { .. }, Ok(answer)) = (&call, &real) {
            if let Some(task_id) = answer.strip_prefix("claimed ") {
                self.check_claim(task_id)?;
            }
        }
        self.check_state()?;
        // A fencing token never repeats: `attempts` (the real one equals the model's, just
        // checked) never goes down. A task deleted in this step may come back only later.
        for (task_id, before) in attempts {
            let now = self.model.tasks.get(&task_id).map_or(before, |t| t.attempts);
            ensure!(self, now >= before, "task {task_id}'s attempts went down from {before} to {now}");
        }
        Ok(())
    }

    /// Right after a claim: the task is leased as asked, and its venture's budget holds.
    fn check_claim(&self, task_id: &str) -> Result<(), String> {
        let view = self.real.get_task(&id(task_id)).map_err(|e| self.fail(format!("claimed task: {e}")))?;
        let task = &view.task;
        ensure!(self, task.claimed_at == Some(Millis(self.model.now)), "claimedAt {:?}", task.claimed_at);
        ensure!(self, view.venture.as_ref().is_some_and(|v| v.id == task.venture_id), "claim's venture");
        let venture = self.real.state.get_venture(&task.venture_id).map_err(|e| self.fail(format!("{e}")))?;
        let (v, reserved) = (&venture.venture, venture.capital_reserved);
        ensure!(
            self,
            v.capital_budget == Money::ZERO || v.capital_spent.saturating_add(reserved) <= v.capital_budget,
            "budget guard: venture {} has spent {} + reserved {reserved} over budget {} after claiming {task_id}",
            v.id,
            v.capital_spent,
            v.capital_budget
        );
        Ok(())
    }

    /// The whole visible state equals the model's, and the invariants hold.
    fn check_state(&self) -> Result<(), String> {
        let (real, state, model) = (&self.real, &self.real.state, &self.model);

        // Tasks, one by one, deleted ones included.
        let ever: BTreeSet<&String> = model.ever_tasks.iter().collect();
        for task_id in ever {
            let found = real.get_task(&id(task_id));
            let Some(m) = model.tasks.get(task_id) else {
                ensure!(self, found.is_err(), "task {task_id} should be gone");
                continue;
            };
            let view = found.map_err(|e| self.fail(format!("task {task_id}: {e}")))?;
            let t = &view.task;
            let got = (t.status, t.assigned_to.as_deref(), t.attempts, t.max_attempts, t.lease_expires_at);
            let want = (m.status, m.assigned_to.as_deref(), m.attempts, m.max_attempts, m.lease_expires_at.map(Millis));
            ensure!(
                self,
                got == want,
                "task {task_id} (status, assignedTo, attempts, maxAttempts, leaseExpiresAt): got {got:?}, expected {want:?}"
            );
            ensure!(self, t.priority == m.priority && t.estimated_cost == m.cost, "task {task_id} priority/cost");
            let got = (t.run_at, t.retry_delay_seconds, t.idempotency_key.as_deref());
            let want = (m.run_at.map(Millis), m.retry_delay_seconds, m.idempotency_key);
            ensure!(
                self,
                got == want,
                "task {task_id} (runAt, retryDelaySeconds, idempotencyKey): got {got:?}, expected {want:?}"
            );
            let got = (names(&t.depends_on), names(&t.blocked_by), t.on_dependency_failure, t.cancel_requested);
            let want = (m.depends_on.clone(), model.blocked_by(m), m.policy, m.cancel_requested);
            ensure!(
                self,
                got == want,
                "task {task_id} (dependsOn, blockedBy, onDependencyFailure, cancelRequested): got {got:?}, expected {want:?}"
            );
        }
        // A claim with no filter finds a task exactly when the model has an eligible one:
        // blocked tasks are never candidates, and unblocked ones are.
        let claimable = model.tasks.values().any(|t| model.eligible(t, None, &[]));
        ensure!(
            self,
            state.has_claimable() == claimable,
            "has_claimable {}, expected {claimable}",
            state.has_claimable()
        );
        let all = real.list_all();
        ensure!(self, all.len() == model.tasks.len(), "{} tasks listed, {} expected", all.len(), model.tasks.len());
        for status in TaskStatus::ALL {
            let want = model.tasks.values().filter(|t| t.status == *status).count() as u64;
            ensure!(self, state.task_count(*status) == want, "task_count({status:?})");
        }
        for priority in Priority::ALL {
            let want =
                model.tasks.values().filter(|t| t.status == TaskStatus::Queue && t.priority == *priority).count();
            ensure!(self, state.queue_depth(*priority) == want, "queue_depth({priority:?})");
        }

        // Ventures: spent is the ledger of charged completions and direct edits.
        let listed: Vec<String> = state.list_ventures().iter().map(|v| v.venture.id.to_string()).collect();
        let mut want: Vec<(&i64, &String)> = model.ventures.iter().map(|(id, v)| (&v.created_at, id)).collect();
        want.sort();
        let want: Vec<String> = want.into_iter().map(|(_, id)| id.clone()).collect();
        ensure!(self, listed == want, "ventures listed {listed:?}, expected {want:?}");
        for (venture_id, m) in &model.ventures {
            let view = state.get_venture(&id(venture_id)).map_err(|e| self.fail(format!("{e}")))?;
            let v = &view.venture;
            ensure!(
                self,
                v.capital_spent == m.spent,
                "venture {venture_id} capitalSpent {} but the completions charged add up to {}",
                v.capital_spent,
                m.spent
            );
            ensure!(self, v.capital_budget == m.budget && v.status == m.status, "venture {venture_id} budget/status");
            let reserved = model.reserved(venture_id);
            ensure!(
                self,
                view.capital_reserved == reserved,
                "venture {venture_id} reserved {} expected {reserved}",
                view.capital_reserved
            );
            let held = model.budget_held(venture_id);
            ensure!(
                self,
                view.budget_held == held,
                "venture {venture_id} budgetHeld {} expected {held}",
                view.budget_held
            );
        }

        // Agents.
        let listed: BTreeSet<String> = state.list_agents().iter().map(|a| a.id.to_string()).collect();
        let want: BTreeSet<String> = model.agents.keys().cloned().collect();
        ensure!(self, listed == want, "agents {listed:?}, expected {want:?}");
        for (agent_id, m) in &model.agents {
            let a = state.get_agent(&id(agent_id)).map_err(|e| self.fail(format!("{e}")))?;
            let got = (a.status, a.current_task.as_deref(), a.tokens_used, a.last_active_at);
            let want = (m.status, m.held.last().map(String::as_str), m.tokens_used, Millis(m.last_seen));
            ensure!(
                self,
                got == want,
                "agent {agent_id} (status, currentTask, tokensUsed, lastActiveAt): got {got:?}, expected {want:?}"
            );
        }

        // One holder per active task: the holder exists, is busy, and no agent points at a
        // task it does not hold.
        for view in &all {
            let t = &view.task;
            if t.status == TaskStatus::Active {
                let holder = t.assigned_to.as_ref().ok_or_else(|| self.fail(format!("active {} unassigned", t.id)))?;
                let agent = state.get_agent(holder).map_err(|e| self.fail(format!("holder of {}: {e}", t.id)))?;
                ensure!(self, agent.status == AgentStatus::Busy, "holder {holder} of {} is {:?}", t.id, agent.status);
                ensure!(self, t.lease_expires_at.is_some(), "active {} has no lease", t.id);
            }
        }
        for agent in state.list_agents() {
            if let Some(current) = &agent.current_task {
                let task = real.get_task(current).map_err(|e| self.fail(format!("{}'s task: {e}", agent.id)))?;
                ensure!(
                    self,
                    task.task.status == TaskStatus::Active && task.task.assigned_to.as_ref() == Some(&agent.id),
                    "agent {} points at {current}, which it does not hold",
                    agent.id
                );
            }
        }
        Ok(())
    }
}

fn run(ops: &[Op]) -> Result<(), String> {
    let mut harness = Harness::new();
    for op in ops {
        harness.step(op)?;
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------
// Strategies
// ----------------------------------------------------------------------------------------

fn priority() -> impl Strategy<Value = Priority> {
    select(vec![Priority::High, Priority::Medium, Priority::Low])
}

/// Small, mostly whole costs; 0.1, 0.2 and 1.1 make sums that are not exact in binary
/// floating point, and must be exact here.
fn cost() -> impl Strategy<Value = Money> {
    select(vec![0.0, 0.1, 0.2, 0.5, 1.0, 1.1, 2.0, 3.0, 5.0]).prop_map(money)
}

fn budget() -> impl Strategy<Value = Money> {
    // 0.1 + 0.2 = 0.3 and 1.1 + 1.1 + 1.1 = 3.3 exactly: a budget they meet lets them all out.
    select(vec![0.0, 0.0, 0.3, 3.0, 3.3, 5.0, 10.0]).prop_map(money)
}

fn money(x: f64) -> Money {
    Money::from_decimal(x).expect("an amount with at most six decimal places")
}

fn tag_set() -> impl Strategy<Value = Vec<&'static str>> {
    prop::sample::subsequence(TAGS.to_vec(), 0..=TAGS.len())
}

/// Mostly no tag filter, sometimes one tag, rarely two.
fn claim_tags() -> impl Strategy<Value = Vec<&'static str>> {
    prop_oneof![
        6 => Just(Vec::new()),
        2 => prop::sample::subsequence(TAGS.to_vec(), 1),
        1 => prop::sample::subsequence(TAGS.to_vec(), 2),
    ]
}

fn task_sel() -> impl Strategy<Value = TaskSel> {
    prop_oneof![
        6 => any::<Index>().prop_map(TaskSel::Active),
        3 => any::<Index>().prop_map(TaskSel::Any),
        1 => Just(TaskSel::Unknown),
    ]
}

/// Mostly a queued or blocked task: those whose `dependsOn` may change.
fn waiting_sel() -> impl Strategy<Value = TaskSel> {
    prop_oneof![4 => any::<Index>().prop_map(TaskSel::Waiting), 1 => task_sel()]
}

fn dep_sel() -> impl Strategy<Value = DepSel> {
    prop_oneof![
        16 => any::<Index>().prop_map(DepSel::Live),
        4 => any::<Index>().prop_map(DepSel::Known),
        1 => Just(DepSel::Unknown),
    ]
}

/// 0-3 dependencies: half the tasks have none.
fn deps() -> impl Strategy<Value = Vec<DepSel>> {
    prop_oneof![4 => Just(Vec::new()), 4 => prop::collection::vec(dep_sel(), 1..=3)]
}

fn deps_sel() -> impl Strategy<Value = DepsSel> {
    prop_oneof![
        3 => prop::collection::vec(dep_sel(), 0..=3).prop_map(DepsSel::List),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(dependent, keep)| DepsSel::Cycle { dependent, keep }),
    ]
}

fn policy() -> impl Strategy<Value = OnDependencyFailure> {
    select(vec![OnDependencyFailure::Cancel, OnDependencyFailure::Ignore])
}

fn venture_sel() -> impl Strategy<Value = VentureSel> {
    prop_oneof![19 => any::<Index>().prop_map(VentureSel::Known), 1 => Just(VentureSel::Unknown)]
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        6 => Just(Who::Holder),
        1 => (0..AGENTS.len()).prop_map(Who::Agent),
        2 => (0..AGENTS.len()).prop_map(Who::Wrong),
    ]
}

fn attempt_sel() -> impl Strategy<Value = AttemptSel> {
    prop_oneof![
        4 => Just(AttemptSel::Omit),
        4 => Just(AttemptSel::Current),
        2 => Just(AttemptSel::Previous),
        2 => any::<Index>().prop_map(AttemptSel::Stale),
        1 => Just(AttemptSel::Next),
    ]
}

/// Mostly none; else past, a few seconds ahead (whole seconds or not), or an hour ahead.
fn run_at_sel() -> impl Strategy<Value = RunAtSel> {
    prop_oneof![
        8 => Just(RunAtSel::None),
        1 => Just(RunAtSel::Past),
        3 => prop_oneof![(1i64..=6).prop_map(|s| s * 1000), 1i64..=6000].prop_map(RunAtSel::Ahead),
        1 => Just(RunAtSel::Far),
    ]
}

/// 0 (retried at once) mostly; 5,000 s is capped at an hour.
fn retry_delay() -> impl Strategy<Value = u32> {
    prop_oneof![5 => Just(0u32), 2 => Just(1), 2 => Just(2), 1 => Just(5000)]
}

/// A few keys, so that repeats (with other ventures, costs, priorities) are common.
fn idempotency_key() -> impl Strategy<Value = Option<&'static str>> {
    prop::option::weighted(0.4, select(vec!["k0", "k1", "k2"]))
}

fn run_at_patch() -> impl Strategy<Value = RunAtPatch> {
    prop_oneof![
        3 => run_at_sel().prop_map(RunAtPatch::Set),
        2 => Just(RunAtPatch::Clear),
        1 => Just(RunAtPatch::Same),
    ]
}

/// Mostly back to active, so that paused ventures resume.
fn venture_status() -> impl Strategy<Value = VentureStatus> {
    prop_oneof![
        3 => Just(VentureStatus::Active),
        1 => Just(VentureStatus::Paused),
        1 => Just(VentureStatus::Completed),
    ]
}

fn lease() -> impl Strategy<Value = Option<u32>> {
    prop::option::of(1u32..=5)
}

fn create_venture() -> impl Strategy<Value = Op> {
    (
        budget(),
        select(vec![0.0, 0.0, 1.0, 2.5]).prop_map(money),
        prop::bool::weighted(0.15),
        prop::option::weighted(0.1, any::<Index>()),
    )
        .prop_map(|(budget, spent, paused, reuse)| Op::CreateVenture { budget, spent, paused, reuse })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => create_venture(),
        20 => (
            venture_sel(),
            priority(),
            prop::option::weighted(0.8, cost()),
            prop::option::weighted(0.7, tag_set()),
            1u32..=3,
            prop::option::weighted(0.05, any::<Index>()),
            (deps(), policy()),
            (run_at_sel(), retry_delay(), idempotency_key()),
        )
            .prop_map(
                |(venture, priority, cost, tags, max_attempts, reuse, (deps, policy), (run_at, delay, key))| {
                    Op::CreateTask {
                        venture,
                        priority,
                        cost,
                        tags,
                        max_attempts,
                        reuse,
                        deps,
                        policy,
                        run_at,
                        retry_delay_seconds: delay,
                        idempotency_key: key,
                    }
                }
            ),
        16 => (0..AGENTS.len(), prop::option::weighted(0.3, venture_sel()), claim_tags(), lease())
            .prop_map(|(agent, venture, tags, lease)| Op::Claim { agent, venture, tags, lease }),
        16 => (
            task_sel(),
            who(),
            attempt_sel(),
            prop::bool::weighted(0.35),
            prop::option::weighted(0.7, select(vec![0.0, 0.1, 0.2, 1.0, 1.1, 2.0, 4.0]).prop_map(money)),
            prop::option::of(0u64..1000),
        )
            .prop_map(|(task, who, attempt, error, actual_cost, tokens)| Op::Complete {
                task,
                who,
                attempt,
                error,
                actual_cost,
                tokens
            }),
        4 => (task_sel(), who(), attempt_sel(), lease())
            .prop_map(|(task, who, attempt, lease)| Op::Heartbeat { task, who, attempt, lease }),
        6 => (0i64..=7000).prop_map(|ms| Op::Advance { ms }),
        // Past every back-off (at most an hour) and every `runAt` an hour ahead, or just short.
        1 => select(vec![3_599_999i64, 3_600_000, 3_600_001]).prop_map(|ms| Op::Advance { ms }),
        // Requeues from failed or cancelled, with or without a fresh allowance.
        3 => (any::<Index>(), prop::option::of(1u32..=3)).prop_map(|(i, max_attempts)| Op::PatchTask {
            task: TaskSel::Ended(i),
            status: Some(TaskStatus::Queue),
            priority: None,
            cost: None,
            max_attempts,
            policy: None,
        }),
        3 => (
            prop_oneof![2 => waiting_sel(), 1 => task_sel()],
            prop::option::weighted(0.85, run_at_patch()),
            prop::option::weighted(0.3, retry_delay()),
        )
            .prop_map(|(task, run_at, retry_delay_seconds)| Op::PatchTime { task, run_at, retry_delay_seconds }),
        4 => (
            task_sel(),
            // Every status: `active` and `blocked` are never set by hand and must be refused.
            prop::option::weighted(0.8, select(TaskStatus::ALL.to_vec())),
            prop::option::weighted(0.2, priority()),
            prop::option::weighted(0.2, prop::option::of(cost())),
            prop::option::weighted(0.1, 1u32..=3),
            prop::option::weighted(0.15, policy()),
        )
            .prop_map(|(task, status, priority, cost, max_attempts, policy)| Op::PatchTask {
                task,
                status,
                priority,
                cost,
                max_attempts,
                policy
            }),
        2 => task_sel().prop_map(|task| Op::DeleteTask { task }),
        2 => (task_sel(), who(), attempt_sel()).prop_map(|(task, who, attempt)| Op::Release { task, who, attempt }),
        5 => (waiting_sel(), deps_sel()).prop_map(|(task, deps)| Op::PatchDeps { task, deps }),
        4 => prop_oneof![3 => task_sel(), 2 => waiting_sel()].prop_map(|task| Op::Cancel { task }),
        4 => (
            venture_sel(),
            prop::option::weighted(0.6, budget()),
            prop::option::weighted(0.2, select(vec![0.0, 1.0, 4.0]).prop_map(money)),
            prop::option::weighted(0.3, venture_status()),
        )
            .prop_map(|(venture, budget, spent, status)| Op::UpdateVenture { venture, budget, spent, status }),
        1 => venture_sel().prop_map(|venture| Op::DeleteVenture { venture }),
        1 => (0..AGENTS.len()).prop_map(|agent| Op::DeleteAgent { agent }),
        1 => Just(Op::Restart),
    ]
}

/// A few ventures to start with, then the operations.
fn scenario() -> impl Strategy<Value = Vec<Op>> {
    (prop::collection::vec(create_venture(), 2..=3), prop::collection::vec(op(), 1..60)).prop_map(
        |(mut ventures, ops)| {
            for venture in &mut ventures {
                if let Op::CreateVenture { reuse, .. } = venture {
                    *reuse = None;
                }
            }
            ventures.extend(ops);
            ventures
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        // 256 by default; `PROPTEST_CASES=10000` for a longer hunt.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn scheduler_matches_the_reference_model(ops in scenario()) {
        if let Err(report) = run(&ops) {
            return Err(TestCaseError::fail(report));
        }
    }
}

// ----------------------------------------------------------------------------------------
// Deterministic cases: claim order, and minimal reproductions of the deviations found
// ----------------------------------------------------------------------------------------

fn fresh_state() -> Real {
    Real::new()
}

fn add_venture(state: &mut Real, venture: &str, budget: f64) {
    let call = Call::CreateVenture {
        id: venture.into(),
        budget: money(budget),
        spent: Money::ZERO,
        status: VentureStatus::Active,
    };
    apply_real(state, &call).expect("venture created");
}

fn add_task(state: &mut Real, task: &str, venture: &str, priority: Priority, max_attempts: u32) {
    let call = Call::CreateTask(CreateTaskCall {
        id: task.into(),
        venture: venture.into(),
        priority,
        cost: None,
        tags: None,
        max_attempts,
        depends_on: Vec::new(),
        policy: OnDependencyFailure::Cancel,
        run_at: None,
        retry_delay_seconds: 0,
        idempotency_key: None,
    });
    apply_real(state, &call).expect("task created");
}

fn claim_as(state: &mut Real, agent: &str, lease: Option<u32>) -> Answer {
    let call = Call::Claim { agent: agent.into(), venture: None, tags: Vec::new(), lease };
    apply_real(state, &call).expect("claim answered")
}

fn report(state: &mut Real, task: &str, agent: &str, error: bool, actual_cost: Option<f64>) -> Result<Answer, ErrKind> {
    let actual_cost = actual_cost.map(money);
    let call = Call::Complete(CompleteCall {
        task: task.into(),
        agent: agent.into(),
        attempt: None,
        error,
        actual_cost,
        tokens: None,
    });
    apply_real(state, &call)
}

#[test]
fn claim_order_is_priority_then_age_then_id() {
    let mut state = fresh_state();
    add_venture(&mut state, "v", 0.0);
    state.state.advance(Millis(START + 1));
    add_task(&mut state, "low", "v", Priority::Low, 3);
    add_task(&mut state, "t9", "v", Priority::Medium, 3);
    add_task(&mut state, "t10", "v", Priority::Medium, 3);
    state.state.advance(Millis(START + 2));
    add_task(&mut state, "high", "v", Priority::High, 3);
    add_task(&mut state, "t0", "v", Priority::Medium, 3);
    let order: Vec<Answer> = (0..6).map(|_| claim_as(&mut state, "a0", None)).collect();
    // Same createdAt: "t10" < "t9" as strings; "t0" is younger than both.
    assert_eq!(order, ["claimed high", "claimed t10", "claimed t9", "claimed t0", "claimed low", "empty"]);
}

/// Found by the model: `actualCost` given with an error report was kept on the task, and a
/// later successful completion that gave no `actualCost` charged that stale figure again.
/// The contract ("Honest answers"): "A failure report's `actualCost`, when given, is charged
/// to the venture like a success's; without it nothing is charged". So the failure's cost
/// is charged once, when it is reported, and the success that gives none adds nothing.
#[test]
fn a_success_without_actual_cost_charges_nothing_more_after_a_costed_failure() {
    let mut state = fresh_state();
    add_venture(&mut state, "v0", 0.0);
    add_task(&mut state, "t0", "v0", Priority::Medium, 3);
    assert_eq!(claim_as(&mut state, "a0", None), "claimed t0");
    assert_eq!(report(&mut state, "t0", "a0", true, Some(4.0)), Ok("requeued".into()));
    assert_eq!(state.state.get_venture(&id("v0")).unwrap().venture.capital_spent, money(4.0));
    assert_eq!(claim_as(&mut state, "a0", None), "claimed t0");
    assert_eq!(report(&mut state, "t0", "a0", false, None), Ok("completed".into()));
    let spent = state.state.get_venture(&id("v0")).unwrap().venture.capital_spent;
    assert_eq!(spent, money(4.0), "only the failure reported an actualCost (4), yet {spent} was charged");
}

/// Found by the model: the contract lets an agent repeat its last report only as long as
/// the task has not been handed out again since. The scheduler once remembered only who
/// reported, not for which attempt, so after a later attempt's lease ran out the old report
/// was answered 200 as a repeat. Without an `attempt` the refusal is `not_holder`
/// ("Honest answers": `stale_lease` is only for an `attempt` that is not the current one).
#[test]
fn a_report_repeated_after_the_task_was_handed_out_again_is_refused() {
    let mut state = fresh_state();
    add_venture(&mut state, "v0", 0.0);
    add_task(&mut state, "t0", "v0", Priority::Medium, 3);
    assert_eq!(claim_as(&mut state, "a0", None), "claimed t0"); // attempt 1
    assert_eq!(report(&mut state, "t0", "a0", true, None), Ok("requeued".into()));
    assert_eq!(claim_as(&mut state, "a1", Some(1)), "claimed t0"); // attempt 2, handed out again
    let expired = state.state.advance(Millis(START + 1000));
    assert_eq!(expired, [CompletionOutcome::Requeued]);
    // a0 retries its report of attempt 1, which was superseded by attempt 2.
    assert_eq!(report(&mut state, "t0", "a0", true, None), Err(ErrKind::NotHolder));
}

/// Found by the model: a requeue from `failed` resets attempts to 0, and the old rule kept
/// the last report repeatable by matching attempt numbers, even when a later claim had
/// already superseded it (its lease ran out on the last attempt). The superseded report
/// then met attempt 0 and was taken for a repeat (here a different one: 409 conflict).
#[test]
fn a_report_superseded_before_a_requeue_stays_superseded_after_it() {
    let mut state = fresh_state();
    add_venture(&mut state, "v0", 0.0);
    add_task(&mut state, "t0", "v0", Priority::Medium, 2);
    assert_eq!(claim_as(&mut state, "a0", None), "claimed t0"); // attempt 1
    assert_eq!(report(&mut state, "t0", "a0", true, None), Ok("requeued".into()));
    assert_eq!(claim_as(&mut state, "a0", Some(1)), "claimed t0"); // attempt 2
    assert_eq!(state.state.advance(Millis(START + 2000)), [CompletionOutcome::Failed]);
    let requeue = Call::PatchTask(PatchTaskCall {
        task: "t0".into(),
        status: Some(TaskStatus::Queue),
        priority: None,
        cost: None,
        max_attempts: None,
        policy: None,
    });
    assert_eq!(apply_real(&mut state, &requeue), Ok("ok".into()));
    assert_eq!(report(&mut state, "t0", "a0", true, Some(4.0)), Err(ErrKind::NotHolder));
}

// ----------------------------------------------------------------------------------------
// Retention's reports against the counts: pruning runs on the persister between batches, so
// its report can meet a task the scheduler changed after the pruning looked
// ----------------------------------------------------------------------------------------

/// A finished task `task` of venture `v0`, with everything committed.
fn finished(real: &mut Real, task: &str, error: bool) {
    add_task(real, task, "v0", Priority::Medium, 1);
    assert_eq!(claim_as(real, "a0", None), format!("claimed {task}"));
    report(real, task, "a0", error, None).expect("reported");
    real.commit();
    real.state.changes_committed(real.seq);
}

/// What the pruner does with everything committed: deletes the row, then reports it with
/// the sequence it had committed.
fn prune(real: &mut Real, task: &str, status: TaskStatus) {
    real.conn.execute("DELETE FROM Task WHERE id = ?1", [task]).expect("delete");
    let after_seq = real.seq;
    real.state.apply_pruned(Pruned { after_seq, tasks: vec![(id(task), id("v0"), status)] });
}

/// The record a request read before the pruning, and the epoch it was read at.
fn read_before_pruning(real: &Real, task: &str) -> HistoryRecord {
    match real.state.get_task_in(&id(task), None) {
        Err(SchedulerError::InHistory { ids, epoch }) => real.record(&ids, epoch),
        other => panic!("{task} should be in the database only: {other:?}"),
    }
}

#[test]
fn pruning_takes_finished_tasks_out_of_the_counts() {
    let mut real = fresh_state();
    add_venture(&mut real, "v0", 0.0);
    finished(&mut real, "t0", false);
    finished(&mut real, "t1", false);
    prune(&mut real, "t0", TaskStatus::Completed);
    assert_eq!(real.state.task_count(TaskStatus::Completed), 1);
    assert_eq!(
        real.get_task(&id("t0")).map(|_| ()),
        Err(SchedulerError::NotFound { entity: "task", id: id("t0"), field: None })
    );
}

#[test]
fn a_requeue_that_raced_the_pruning_is_counted_once() {
    let mut real = fresh_state();
    add_venture(&mut real, "v0", 0.0);
    finished(&mut real, "t0", true);
    finished(&mut real, "t1", true);
    let record = read_before_pruning(&real, "t0");
    let pruned_after = real.seq;
    real.conn.execute("DELETE FROM Task WHERE id = 't0'", []).expect("delete");
    // The requeue, with the record it read, reaches the scheduler before the report.
    let patch = TaskPatch { status: Some(TaskStatus::Queue), ..TaskPatch::default() };
    real.state.update_task(&id("t0"), patch, Some(&record)).expect("requeued");
    real.commit();
    real.state.apply_pruned(Pruned { after_seq: pruned_after, tasks: vec![(id("t0"), id("v0"), TaskStatus::Failed)] });
    assert_eq!(real.state.task_count(TaskStatus::Failed), 1, "t1 is still failed; t0 left the count once");
    assert_eq!(real.state.task_count(TaskStatus::Queue), 1);
    assert_eq!(claim_as(&mut real, "a1", None), "claimed t0", "the requeued task is written back and claimable");
}

#[test]
fn a_delete_that_raced_the_pruning_is_counted_once() {
    let mut real = fresh_state();
    add_venture(&mut real, "v0", 0.0);
    finished(&mut real, "t0", false);
    finished(&mut real, "t1", false);
    let record = read_before_pruning(&real, "t0");
    let pruned_after = real.seq;
    real.conn.execute("DELETE FROM Task WHERE id = 't0'", []).expect("delete");
    real.state.delete_task(&id("t0"), Some(&record)).expect("deleted");
    real.commit();
    real.state
        .apply_pruned(Pruned { after_seq: pruned_after, tasks: vec![(id("t0"), id("v0"), TaskStatus::Completed)] });
    assert_eq!(real.state.task_count(TaskStatus::Completed), 1);
}

#[test]
fn a_record_read_before_the_pruning_is_read_again() {
    let mut real = fresh_state();
    add_venture(&mut real, "v0", 0.0);
    finished(&mut real, "t0", false);
    let record = read_before_pruning(&real, "t0");
    prune(&mut real, "t0", TaskStatus::Completed);
    let patch = TaskPatch { title: Some("renamed".into()), ..TaskPatch::default() };
    let answer = real.state.update_task(&id("t0"), patch, Some(&record));
    assert!(matches!(answer, Err(SchedulerError::InHistory { .. })), "the stale record is refused: {answer:?}");
    assert_eq!(real.state.task_count(TaskStatus::Completed), 0);
}

// ----------------------------------------------------------------------------------------
// Task graphs and cancellation
// ----------------------------------------------------------------------------------------

fn add_dependent(state: &mut Real, task: &str, deps: &[&str], policy: OnDependencyFailure) {
    let call = Call::CreateTask(CreateTaskCall {
        id: task.into(),
        venture: "v".into(),
        priority: Priority::Medium,
        cost: None,
        tags: None,
        max_attempts: 1,
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        policy,
        run_at: None,
        retry_delay_seconds: 0,
        idempotency_key: None,
    });
    apply_real(state, &call).expect("task created");
}

/// The task's status and `blockedBy`.
fn graph_state(state: &Real, task: &str) -> (TaskStatus, Vec<String>) {
    let view = state.get_task(&id(task)).expect("task");
    (view.task.status, names(&view.task.blocked_by))
}

fn blocked(by: &[&str]) -> (TaskStatus, Vec<String>) {
    (TaskStatus::Blocked, by.iter().map(|d| d.to_string()).collect())
}

fn not_blocked(status: TaskStatus) -> (TaskStatus, Vec<String>) {
    (status, Vec::new())
}

fn cancel(state: &mut Real, task: &str) -> Result<Answer, ErrKind> {
    apply_real(state, &Call::Cancel(task.into()))
}

fn requeue(state: &mut Real, task: &str) -> Result<Answer, ErrKind> {
    let call = Call::PatchTask(PatchTaskCall {
        task: task.into(),
        status: Some(TaskStatus::Queue),
        priority: None,
        cost: None,
        max_attempts: None,
        policy: None,
    });
    apply_real(state, &call)
}

/// A venture `v` and a task `a` (one attempt) claimed by `a0`.
fn one_claimed_task() -> Real {
    let mut state = fresh_state();
    add_venture(&mut state, "v", 0.0);
    add_task(&mut state, "a", "v", Priority::Medium, 1);
    assert_eq!(claim_as(&mut state, "a0", None), "claimed a");
    state
}

#[test]
fn a_failure_cancels_a_chain_of_dependents() {
    let mut state = one_claimed_task();
    add_dependent(&mut state, "b", &["a"], OnDependencyFailure::Cancel);
    add_dependent(&mut state, "c", &["b"], OnDependencyFailure::Cancel);
    assert_eq!(graph_state(&state, "b"), blocked(&["a"]));
    assert_eq!(graph_state(&state, "c"), blocked(&["b"]));
    assert_eq!(claim_as(&mut state, "a1", None), "empty", "blocked tasks are never claimed");
    assert_eq!(report(&mut state, "a", "a0", true, None), Ok("failed".into()));
    assert_eq!(graph_state(&state, "b"), not_blocked(TaskStatus::Cancelled));
    assert_eq!(graph_state(&state, "c"), not_blocked(TaskStatus::Cancelled));
    assert_eq!(state.state.task_count(TaskStatus::Cancelled), 2);
}

#[test]
fn an_ignore_dependent_is_unblocked_by_a_failure() {
    let mut state = one_claimed_task();
    add_dependent(&mut state, "b", &["a"], OnDependencyFailure::Ignore);
    assert_eq!(report(&mut state, "a", "a0", true, None), Ok("failed".into()));
    assert_eq!(graph_state(&state, "b"), not_blocked(TaskStatus::Queue));
    assert_eq!(claim_as(&mut state, "a1", None), "claimed b");
}

#[test]
fn a_cycle_is_refused_with_its_path() {
    let mut state = fresh_state();
    add_venture(&mut state, "v", 0.0);
    add_task(&mut state, "c", "v", Priority::Medium, 1);
    add_dependent(&mut state, "b", &["c"], OnDependencyFailure::Cancel);
    add_dependent(&mut state, "a", &["b"], OnDependencyFailure::Cancel);
    let patch = TaskPatch { depends_on: Some(vec![id("a")]), ..TaskPatch::default() };
    match state.state.update_task(&id("c"), patch, None) {
        Err(SchedulerError::Conflict { code: "dependency_cycle", message, field: Some("dependsOn") }) => {
            assert!(message.ends_with("c -> a -> b -> c"), "the path is named: {message}");
        }
        other => panic!("the cycle should be refused: {other:?}"),
    }
    let itself = Call::PatchDeps { task: "c".into(), deps: vec!["c".into()] };
    assert_eq!(apply_real(&mut state, &itself), Err(ErrKind::Cycle));
    assert_eq!(graph_state(&state, "c"), not_blocked(TaskStatus::Queue), "a refused edit changes nothing");
}

#[test]
fn a_cancelled_active_task_ends_cancelled_at_its_next_report_with_the_cost_charged() {
    let mut state = one_claimed_task();
    assert_eq!(cancel(&mut state, "a"), Ok("ok".into()));
    let view = state.get_task(&id("a")).expect("task");
    assert_eq!((view.task.status, view.task.cancel_requested), (TaskStatus::Active, true));
    assert_eq!(report(&mut state, "a", "a0", false, Some(2.0)), Ok("cancelled".into()));
    let view = state.get_task(&id("a")).expect("task");
    assert_eq!((view.task.status, view.task.cancel_requested), (TaskStatus::Cancelled, false));
    assert_eq!(state.state.get_venture(&id("v")).unwrap().venture.capital_spent, money(2.0));
    assert_eq!(state.state.get_agent(&id("a0")).unwrap().status, AgentStatus::Online);
}

#[test]
fn a_cancel_requested_task_whose_lease_runs_out_ends_cancelled() {
    let mut state = fresh_state();
    add_venture(&mut state, "v", 0.0);
    add_task(&mut state, "a", "v", Priority::Medium, 3);
    assert_eq!(claim_as(&mut state, "a0", Some(1)), "claimed a");
    assert_eq!(cancel(&mut state, "a"), Ok("ok".into()));
    assert_eq!(state.state.advance(Millis(START + 1000)), [CompletionOutcome::Cancelled]);
    assert_eq!(graph_state(&state, "a"), not_blocked(TaskStatus::Cancelled));
    assert_eq!(cancel(&mut state, "a"), Ok("ok".into()), "a repeat answers as the first did");
}

#[test]
fn edges_survive_a_restart() {
    let mut state = one_claimed_task();
    add_task(&mut state, "b", "v", Priority::Medium, 1);
    add_dependent(&mut state, "c", &["a", "b"], OnDependencyFailure::Ignore);
    assert_eq!(report(&mut state, "a", "a0", false, None), Ok("completed".into()));
    assert_eq!(graph_state(&state, "c"), blocked(&["b"]));
    state.restart();
    assert_eq!(graph_state(&state, "c"), blocked(&["b"]));
    assert_eq!(names(&state.get_task(&id("c")).unwrap().task.depends_on), ["a", "b"]);
    assert_eq!(delete(&mut state, "b"), Err(ErrKind::HasDependents));
    assert_eq!(claim_as(&mut state, "a0", None), "claimed b");
    assert_eq!(report(&mut state, "b", "a0", false, None), Ok("completed".into()));
    assert_eq!(graph_state(&state, "c"), not_blocked(TaskStatus::Queue));
}

fn delete(state: &mut Real, task: &str) -> Result<Answer, ErrKind> {
    apply_real(state, &Call::DeleteTask(task.into()))
}

/// Found by the model: an agent deleted while it held a task whose cancel was asked for
/// put the task back in the queue with `cancelRequested` still set. Claimed again it ended
/// `cancelled` at the next report whatever the work, and a cancel of the queued task
/// changed nothing (a cancel-requested task counts as cancelled already). The holder is
/// gone without a report, as at a lease's expiry: the cancel ends the task.
#[test]
fn a_cancel_requested_task_whose_agent_is_deleted_ends_cancelled() {
    let mut state = one_claimed_task();
    add_dependent(&mut state, "b", &["a"], OnDependencyFailure::Cancel);
    assert_eq!(cancel(&mut state, "a"), Ok("ok".into()));
    assert_eq!(apply_real(&mut state, &Call::DeleteAgent("a0".into())), Ok("ok".into()));
    let view = state.get_task(&id("a")).expect("task");
    assert_eq!((view.task.status, view.task.cancel_requested), (TaskStatus::Cancelled, false));
    assert_eq!(graph_state(&state, "b"), not_blocked(TaskStatus::Cancelled), "and so are its dependents");
}

/// A dependency requeued from `failed` is unfinished again: a blocked task that names it
/// waits for it again (`blockedBy` is the dependencies still unfinished, which is what a
/// restart derives), and does not start before it ends.
#[test]
fn a_blocked_task_waits_again_for_a_requeued_dependency() {
    let mut state = one_claimed_task();
    add_task(&mut state, "b", "v", Priority::Low, 1);
    add_dependent(&mut state, "c", &["a", "b"], OnDependencyFailure::Ignore);
    assert_eq!(report(&mut state, "a", "a0", true, None), Ok("failed".into()));
    assert_eq!(graph_state(&state, "c"), blocked(&["b"]));
    assert_eq!(requeue(&mut state, "a"), Ok("ok".into()));
    assert_eq!(graph_state(&state, "c"), blocked(&["a", "b"]));
    state.restart();
    assert_eq!(graph_state(&state, "c"), blocked(&["a", "b"]));
    assert_eq!(claim_as(&mut state, "a0", None), "claimed a");
    assert_eq!(claim_as(&mut state, "a0", None), "claimed b");
    assert_eq!(report(&mut state, "b", "a0", false, None), Ok("completed".into()));
    assert_eq!(graph_state(&state, "c"), blocked(&["a"]), "c still waits for a");
}

/// The same with a new task given the id of a deleted dependency: the blocked task that
/// still names the id waits for the new task, as a restart derives. And the new task may
/// not depend back on it: that cycle would leave both blocked for good.
#[test]
fn a_blocked_task_waits_for_a_new_task_with_a_deleted_dependency_s_id() {
    let mut state = one_claimed_task();
    add_task(&mut state, "b", "v", Priority::Low, 1);
    add_dependent(&mut state, "c", &["a", "b"], OnDependencyFailure::Ignore);
    assert_eq!(report(&mut state, "a", "a0", false, None), Ok("completed".into()));
    assert_eq!(delete(&mut state, "a"), Ok("ok".into()));
    let create = |deps: &[&str]| {
        Call::CreateTask(CreateTaskCall {
            id: "a".into(),
            venture: "v".into(),
            priority: Priority::Medium,
            cost: None,
            tags: None,
            max_attempts: 1,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            policy: OnDependencyFailure::Cancel,
            run_at: None,
            retry_delay_seconds: 0,
            idempotency_key: None,
        })
    };
    assert_eq!(apply_real(&mut state, &create(&["c"])), Err(ErrKind::Cycle));
    assert_eq!(apply_real(&mut state, &create(&[])), Ok("ok".into()));
    assert_eq!(graph_state(&state, "c"), blocked(&["a", "b"]));
    state.restart();
    assert_eq!(graph_state(&state, "c"), blocked(&["a", "b"]));
}

/// Found by the model, NOT fixed: "the same agent repeating exactly its last report ... for
/// the same attempt gets 200 ... as long as the task has not been handed out again since".
/// An error report requeues the task; the operator cancels the queued task; the agent
/// retries its report (a lost answer) and gets 409 `conflicting_report`: the repeat is
/// compared with the task's `error`, which the cancel overwrote with its reason. A
/// dependency's cascade does the same. The fix wants the report's error kept apart, as
/// `reportedCost` is (a column of its own), which is beyond the scheduler's state.
#[test]
fn a_report_repeated_after_its_task_was_cancelled_is_answered_as_applied() {
    let mut state = fresh_state();
    add_venture(&mut state, "v", 0.0);
    add_task(&mut state, "a", "v", Priority::Medium, 2);
    assert_eq!(claim_as(&mut state, "a0", None), "claimed a");
    assert_eq!(report(&mut state, "a", "a0", true, None), Ok("requeued".into()));
    assert_eq!(cancel(&mut state, "a"), Ok("ok".into()));
    assert_eq!(report(&mut state, "a", "a0", true, None), Ok("repeated".into()));
}

/// The implementation's reading, which the model follows: `onDependencyFailure` is applied
/// when a dependency ends. Changed while the task is blocked, it does not judge again the
/// dependencies that ended already.
#[test]
fn a_policy_change_applies_from_the_next_dependency_that_ends() {
    let mut state = one_claimed_task();
    add_task(&mut state, "b", "v", Priority::Low, 1);
    add_dependent(&mut state, "c", &["a", "b"], OnDependencyFailure::Ignore);
    assert_eq!(report(&mut state, "a", "a0", true, None), Ok("failed".into()));
    let patch = TaskPatch { on_dependency_failure: Some(OnDependencyFailure::Cancel), ..TaskPatch::default() };
    state.with_history(|s, history| s.update_task(&id("c"), patch.clone(), history)).expect("patched");
    assert_eq!(graph_state(&state, "c"), blocked(&["b"]));
    assert_eq!(claim_as(&mut state, "a0", None), "claimed b");
    assert_eq!(report(&mut state, "b", "a0", false, None), Ok("completed".into()));
    assert_eq!(graph_state(&state, "c"), not_blocked(TaskStatus::Queue));
}

// ----------------------------------------------------------------------------------------
// Time, identity and fencing
// ----------------------------------------------------------------------------------------

/// A create of `task` in `venture` with nothing else said.
fn new_task(task: &str, venture: &str) -> CreateTaskCall {
    CreateTaskCall {
        id: task.into(),
        venture: venture.into(),
        priority: Priority::Medium,
        cost: None,
        tags: None,
        max_attempts: 3,
        depends_on: Vec::new(),
        policy: OnDependencyFailure::Cancel,
        run_at: None,
        retry_delay_seconds: 0,
        idempotency_key: None,
    }
}

fn create(state: &mut Real, call: CreateTaskCall) -> Result<Answer, ErrKind> {
    apply_real(state, &Call::CreateTask(call))
}

/// Moves the clock to `ms` after the start.
fn clock(state: &mut Real, ms: i64) -> Vec<CompletionOutcome> {
    state.state.advance(Millis(START + ms))
}

/// The task's status and `runAt` (in ms after the start).
fn timing(state: &Real, task: &str) -> (TaskStatus, Option<i64>) {
    let view = state.get_task(&id(task)).expect("task");
    (view.task.status, view.task.run_at.map(|at| at.0 - START))
}

fn report_attempt(state: &mut Real, task: &str, agent: &str, attempt: u32, error: bool) -> Result<Answer, ErrKind> {
    let call = Call::Complete(CompleteCall {
        task: task.into(),
        agent: agent.into(),
        attempt: Some(attempt),
        error,
        actual_cost: None,
        tokens: None,
    });
    apply_real(state, &call)
}

#[test]
fn the_back_off_doubles_with_each_failed_attempt_and_stops_at_an_hour() {
    let mut state = fresh_state();
    add_venture(&mut state, "v", 0.0);
    let task = CreateTaskCall { retry_delay_seconds: 1000, max_attempts: 5, ..new_task("a", "v") };
    assert_eq!(create(&mut state, task), Ok("ok".into()));
    let mut now = 0;
    // 1,000 s after attempt 1, 2,000 s after attempt 2, then 4,000 s capped at 3,600 s.
    for (attempt, delay) in [(1, 1_000_000), (2, 2_000_000), (3, 3_600_000)] {
        assert_eq!(claim_as(&mut state, "a0", None), "claimed a", "attempt {attempt}");
        assert_eq!(report(&mut state, "a", "a0", true, None), Ok("requeued".into()));
        assert_eq!(timing(&state, "a"), (TaskStatus::Blocked, Some(now + delay)), "after attempt {attempt}");
        assert_eq!(graph_state(&state, "a"), blocked(&[]), "blockedBy is empty: only the time holds it");
        assert_eq!(claim_as(&mut state, "a1", None), "empty", "backing off");
        now += delay;
        clock(&mut state, now);
    }
    // An expired lease backs off too, capped as well.
    assert_eq!(claim_as(&mut state, "a0", Some(1)), "claimed a");
    now += 1000;
    assert_eq!(clock(&mut state, now), [CompletionOutcome::Requeued]);
    assert_eq!(timing(&state, "a"), (TaskStatus::Blocked, Some(now + 3_600_000)));
    state.restart();
    assert_eq!(timing(&state, "a"), (TaskStatus::Blocked, Some(now + 3_600_000)), "a restart keeps the back-off");
}

#[test]
fn a_delayed_task_becomes_claimable_exactly_at_its_run_at() {
    let mut state = fresh_state();
    add_venture(&mut state, "v", 0.0);
    assert_eq!(
        create(&mut state, CreateTaskCall { run_at: Some(START + 5000), ..new_task("a", "v") }),
        Ok("ok".into())
    );
    assert_eq!(create(&mut state, CreateTaskCall { run_at: Some(START - 1), ..new_task("p", "v") }), Ok("ok".into()));
    assert_eq!(timing(&state, "p"), (TaskStatus::Queue, Some(-1)), "a runAt in the past delays nothing");
    assert_eq!(claim_as(&mut state, "a0", None), "claimed p");
    assert_eq!(report(&mut state, "p", "a0", false, None), Ok("completed".into()));
    clock(&mut state, 4999);
    assert_eq!(graph_state(&state, "a"), blocked(&[]));
    assert_eq!(claim_as(&mut state, "a0", None), "empty", "a millisecond early");
    clock(&mut state, 5000);
    assert_eq!(timing(&state, "a"), (TaskStatus::Queue, Some(5000)));
    assert_eq!(claim_as(&mut state, "a0", None), "claimed a");
}

#[test]
fn a_task_with_a_dependency_and_a_run_at_waits_for_both() {
    let mut state = fresh_state();
    add_venture(&mut state, "v", 0.0);
    add_task(&mut state, "d", "v", Priority::Medium, 1);
    let task = CreateTaskCall { run_at: Some(START + 5000), depends_on: vec!["d".into()], ..new_task("a", "v") };
    assert_eq!(create(&mut state, task), Ok("ok".into()));
    clock(&mut state, 6000);
    assert_eq!(graph_state(&state, "a"), blocked(&["d"]), "its time came; d still holds it");
    assert_eq!(claim_as(&mut state, "a0", None), "claimed d");
    assert_eq!(report(&mut state, "d", "a0", false, None), Ok("completed".into()));
    assert_eq!(graph_state(&state, "a"), not_blocked(TaskStatus::Queue));
}

#[test]
fn an_idempotency_key_answers_its_task_until_the_task_is_deleted() {
    let mut state = fresh_state();
    add_venture(&mut state, "v", 0.0);
    add_venture(&mut state, "w", 0.0);
    let keyed = |task: &str, venture: &str, priority: Priority, cost: f64| CreateTaskCall {
        priority,
        cost: Some(money(cost)),
        idempotency_key: Some("k"),
        ..new_task(task, venture)
    };
    assert_eq!(create(&mut state, keyed("a", "v", Priority::High, 1.0)), Ok("ok".into()));
    assert_eq!(create(&mut state, keyed("b", "v", Priority::Low, 5.0)), Ok("existing a".into()));
    let view = state.get_task(&id("a")).expect("task");
    assert_eq!((view.task.priority, view.task.estimated_cost), (Priority::High, Some(money(1.0))), "unchanged");
    assert!(state.get_task(&id("b")).is_err(), "nothing was created");
    assert_eq!(create(&mut state, keyed("c", "w", Priority::Low, 5.0)), Ok("ok".into()), "keys are per venture");
    // Finished, then in the database only, then after a restart.
    assert_eq!(claim_as(&mut state, "a0", None), "claimed a");
    assert_eq!(report(&mut state, "a", "a0", false, None), Ok("completed".into()));
    assert_eq!(create(&mut state, keyed("b", "v", Priority::Medium, 2.0)), Ok("existing a".into()));
    state.commit();
    state.state.changes_committed(state.seq);
    assert_eq!(create(&mut state, keyed("b", "v", Priority::Medium, 2.0)), Ok("existing a".into()));
    state.restart();
    assert_eq!(create(&mut state, keyed("b", "v", Priority::Low, 3.0)), Ok("existing a".into()));
    // A deleted task frees its key.
    assert_eq!(delete(&mut state, "a"), Ok("ok".into()));
    assert_eq!(create(&mut state, keyed("b", "v", Priority::Low, 3.0)), Ok("ok".into()));
    assert_eq!(create(&mut state, keyed("e", "v", Priority::Low, 3.0)), Ok("existing b".into()));
}

#[test]
fn a_stale_report_after_a_requeue_from_failed_is_refused_even_from_the_holder() {
    let mut state = one_claimed_task(); // a, one attempt, held by a0 (attempt 1)
    assert_eq!(report_attempt(&mut state, "a", "a0", 1, true), Ok("failed".into()));
    assert_eq!(requeue(&mut state, "a"), Ok("ok".into()));
    let view = state.get_task(&id("a")).expect("task");
    assert_eq!((view.task.attempts, view.task.max_attempts), (1, 4), "attempts kept; three more claims granted");
    assert_eq!(claim_as(&mut state, "a0", None), "claimed a"); // attempt 2, the same agent
    assert_eq!(report_attempt(&mut state, "a", "a0", 1, true), Err(ErrKind::StaleLease));
    let heartbeat = HeartbeatCall { task: "a".into(), agent: "a0".into(), attempt: Some(1), lease: None };
    assert_eq!(apply_real(&mut state, &Call::Heartbeat(heartbeat)), Err(ErrKind::StaleLease));
    assert_eq!(report_attempt(&mut state, "a", "a0", 2, true), Ok("requeued".into()));
    // Cancelled, then requeued with the number of claims to grant.
    assert_eq!(cancel(&mut state, "a"), Ok("ok".into()));
    let call = Call::PatchTask(PatchTaskCall {
        task: "a".into(),
        status: Some(TaskStatus::Queue),
        priority: None,
        cost: None,
        max_attempts: Some(1),
        policy: None,
    });
    assert_eq!(apply_real(&mut state, &call), Ok("ok".into()));
    let view = state.get_task(&id("a")).expect("task");
    assert_eq!((view.task.status, view.task.attempts, view.task.max_attempts), (TaskStatus::Queue, 2, 3));
    assert_eq!(claim_as(&mut state, "a1", None), "claimed a"); // attempt 3
    assert_eq!(report_attempt(&mut state, "a", "a0", 2, true), Err(ErrKind::StaleLease));
    assert_eq!(report_attempt(&mut state, "a", "a1", 2, false), Err(ErrKind::StaleLease), "from the holder too");
    assert_eq!(report_attempt(&mut state, "a", "a1", 3, false), Ok("completed".into()));
}

/// Found by the model: a restart queued every delayed task at once. `blockedBy` is not
/// stored, and the loader queued a blocked task that no unfinished dependency held,
/// whatever its `runAt` said.
#[test]
fn a_restart_keeps_a_delayed_task_waiting() {
    let mut state = fresh_state();
    add_venture(&mut state, "v", 0.0);
    assert_eq!(
        create(&mut state, CreateTaskCall { run_at: Some(START + 1000), ..new_task("a", "v") }),
        Ok("ok".into())
    );
    state.restart();
    assert_eq!(timing(&state, "a"), (TaskStatus::Blocked, Some(1000)));
    assert_eq!(claim_as(&mut state, "a0", None), "empty");
    clock(&mut state, 1000);
    assert_eq!(claim_as(&mut state, "a0", None), "claimed a");
}

/// Found by the model: a queued task whose dependency was requeued from `cancelled` was
/// delayed by a `runAt` edit, and blocked with `blockedBy` empty: at its time it was queued
/// while the dependency was still unfinished, though a restart (which derives `blockedBy`
/// as the unfinished dependencies) had it wait for both. Delayed, a task waits for every
/// unfinished dependency, as after a restart; the same for a back-off.
#[test]
fn a_task_delayed_again_waits_for_a_requeued_dependency() {
    let mut state = fresh_state();
    add_venture(&mut state, "v", 0.0);
    add_task(&mut state, "d", "v", Priority::Medium, 1);
    add_dependent(&mut state, "a", &["d"], OnDependencyFailure::Ignore);
    assert_eq!(cancel(&mut state, "d"), Ok("ok".into()));
    assert_eq!(graph_state(&state, "a"), not_blocked(TaskStatus::Queue));
    assert_eq!(requeue(&mut state, "d"), Ok("ok".into()));
    assert_eq!(graph_state(&state, "a"), not_blocked(TaskStatus::Queue), "a released task is not blocked again");
    let patch = TaskPatch { run_at: Some(Some(Millis(START + 1000))), ..TaskPatch::default() };
    state.with_history(|s, history| s.update_task(&id("a"), patch.clone(), history)).expect("patched");
    assert_eq!(graph_state(&state, "a"), blocked(&["d"]));
    clock(&mut state, 1000);
    assert_eq!(graph_state(&state, "a"), blocked(&["d"]), "its time came; d still holds it");
    state.restart();
    assert_eq!(graph_state(&state, "a"), blocked(&["d"]));
}

/// Found by the model: a claim given back (its answer never reached the agent) after a
/// cancel of the task was asked for went back to the queue with `cancelRequested` still
/// set: claimed again it ended `cancelled` whatever the work, and a cancel of the queued
/// task changed nothing (the bug fixed for a deleted holder before). As if the claim had
/// not happened, the cancel ends the task, and its dependents follow.
#[test]
fn a_cancel_requested_task_whose_claim_is_given_back_ends_cancelled() {
    let mut state = one_claimed_task(); // a, one attempt, held by a0 (attempt 1)
    add_dependent(&mut state, "b", &["a"], OnDependencyFailure::Cancel);
    assert_eq!(cancel(&mut state, "a"), Ok("ok".into()));
    let release = Call::Release { task: "a".into(), agent: "a0".into(), attempt: 1 };
    assert_eq!(apply_real(&mut state, &release), Ok("released".into()));
    let view = state.get_task(&id("a")).expect("task");
    assert_eq!((view.task.status, view.task.cancel_requested), (TaskStatus::Cancelled, false));
    assert_eq!((view.task.attempts, view.task.max_attempts), (1, 2), "the number stays used; the claim is given back");
    assert_eq!(graph_state(&state, "b"), not_blocked(TaskStatus::Cancelled));
    assert_eq!(state.state.get_agent(&id("a0")).unwrap().status, AgentStatus::Online);
    assert_eq!(apply_real(&mut state, &release), Ok("kept".into()), "only while a0 holds that attempt");
}

#[test]
fn a_claim_given_back_keeps_its_attempt_number_used() {
    let mut state = one_claimed_task();
    let release = |attempt| Call::Release { task: "a".into(), agent: "a0".into(), attempt };
    assert_eq!(apply_real(&mut state, &release(2)), Ok("kept".into()), "not the attempt a0 holds");
    assert_eq!(apply_real(&mut state, &release(1)), Ok("released".into()));
    let view = state.get_task(&id("a")).expect("task");
    assert_eq!((view.task.status, view.task.attempts, view.task.max_attempts), (TaskStatus::Queue, 1, 2));
    assert_eq!(claim_as(&mut state, "a1", None), "claimed a");
    assert_eq!(report_attempt(&mut state, "a", "a0", 1, false), Err(ErrKind::StaleLease));
    assert_eq!(report_attempt(&mut state, "a", "a1", 2, false), Ok("completed".into()));
}
