//! The scheduler's state and every transition of it, synchronous and free of I/O.
//!
//! The `TaskQueue` actor owns one `SchedulerState` and calls into it one message at a time;
//! model tests drive it directly with their own clock. Every change is recorded in
//! `changes` for the persister, in the order it was made.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

mod delays;
mod graph;
mod task_map;

pub use graph::MAX_DEPENDENCIES;

use super::commands::*;
use super::queued_index::{fits, QueueKey, QueuedIndex};
use super::Change;
use crate::domain::{
    Activity, Agent, AgentStatus, AppliedReport, Attempt, AttemptOutcome, Id, Millis, Money, Priority, Task,
    TaskStatus, Venture, VentureStatus,
};
use task_map::TaskMap;

/// How many claims a task is allowed when its create does not say, and what a requeue of a
/// finished task grants when its PATCH does not say.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The longest activity title the log takes, in characters: the limit the API sets on the
/// titles clients write, so that no title the scheduler writes (one that quotes an agent's
/// error, say) is longer than those.
pub const MAX_ACTIVITY_TITLE_CHARS: usize = 1_000;

/// How much of an error's first line a `task_failed` title quotes; the whole error stays
/// on the task.
const ERROR_IN_TITLE_CHARS: usize = 200;

/// Scheduler settings that shape its answers.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// Lease length for a claim that does not ask for one.
    pub default_lease_seconds: u32,
    /// An agent holding no task and not heard from for this long is set `offline`.
    pub agent_timeout_seconds: u32,
}

/// What `complete` did, for the completions metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionOutcome {
    Completed,
    Requeued,
    Failed,
    /// The task's cancel was asked for: the report (or the lease's expiry) ended it.
    Cancelled,
    /// A repeat of a report already applied: nothing changed.
    Repeated,
}

impl CompletionOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CompletionOutcome::Completed => "completed",
            CompletionOutcome::Requeued => "requeued",
            CompletionOutcome::Failed => "failed",
            CompletionOutcome::Cancelled => "cancelled",
            CompletionOutcome::Repeated => "repeated",
        }
    }
}

/// Everything the scheduler loads at start: what it schedules, and how many finished tasks
/// the database holds (their records stay there).
#[derive(Debug, Default)]
pub struct Snapshot {
    pub ventures: Vec<Venture>,
    /// Unfinished tasks. A finished one given here is only counted.
    pub tasks: Vec<Task>,
    pub agents: Vec<Agent>,
    /// Finished tasks in the database, by venture and status.
    pub finished_counts: Vec<(Id, TaskStatus, u64)>,
}

/// What background pruning removed from the database, as the persister reports it.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Every envelope up to this sequence number was committed before the pruning ran.
    pub after_seq: u64,
    /// Each pruned task's id, venture and status.
    pub tasks: Vec<(Id, Id, TaskStatus)>,
}

struct VentureEntry {
    venture: Arc<Venture>,
    /// Sum of `estimated_cost` over the venture's active tasks.
    reserved: Money,
    n_active: u32,
    /// The venture's finished tasks in the database, by status.
    finished: [u64; TaskStatus::COUNT],
    /// The venture's unfinished tasks (in memory), by status.
    unfinished: [u64; TaskStatus::COUNT],
    /// Failed attempts (error reports and expired leases) since start, for the metric.
    failures: u64,
}

impl VentureEntry {
    /// How much more cost the budget guard lets the venture take on.
    /// Negative once overspent; `Money::MAX` without a budget.
    fn room(&self) -> Money {
        let v = &self.venture;
        if v.capital_budget > Money::ZERO {
            v.capital_budget.saturating_sub(v.capital_spent).saturating_sub(self.reserved)
        } else {
            Money::MAX
        }
    }
}

struct AgentEntry {
    agent: Arc<Agent>,
    /// Active tasks the agent holds, oldest claim first.
    held: Vec<Id>,
    /// When the agent goes `offline` unless heard from: its key in `idle_agents`. `None`
    /// while it holds a task or is offline already.
    idle_deadline: Option<Millis>,
}

pub struct SchedulerState {
    config: SchedulerConfig,
    ventures: HashMap<Id, VentureEntry>,
    tasks: TaskMap,
    agents: HashMap<Id, AgentEntry>,
    queued: QueuedIndex,
    /// Each claimable venture's best eligible task, keyed by claim order, valued by venture:
    /// the first entry is the next unfiltered claim.
    candidates: BTreeMap<QueueKey, Id>,
    candidate_of: HashMap<Id, QueueKey>,
    /// Active tasks by lease expiry, so expiry pops instead of scanning.
    leases: BTreeSet<(Millis, Id)>,
    /// Agents that hold no task and are not offline, by the time they go offline unless
    /// heard from: popped like `leases`, never a scan of all agents.
    idle_agents: BTreeSet<(Millis, Id)>,
    tasks_by_status: [u64; TaskStatus::COUNT],
    /// Never goes backwards, so `createdAt` order is creation order.
    now: Millis,
    ids: ulid::Generator,
    changes: Vec<Change>,
    /// Moves whenever a finished task's record may change or vanish (an edit, a requeue or a
    /// delete of a finished task, a venture delete, pruning), so that a record read from the
    /// database before the move is read again rather than trusted.
    history_epoch: u64,
    /// Finished tasks (or deletes of them, `None`) whose change is not committed yet, with
    /// their envelope's sequence number: reads find them here until the database has them,
    /// so a read never waits for the disk, and pruning that ran before they were written
    /// is not counted twice.
    unwritten: HashMap<Id, (Option<Arc<Task>>, u64)>,
    /// The same, oldest envelope first, to drop them once committed.
    unwritten_order: VecDeque<(u64, Id)>,
    /// This message's finished records, until the actor numbers its envelope.
    unsent: Vec<(Id, Option<Arc<Task>>)>,
    /// Blocked tasks by each dependency they wait for: the graph read backwards (`graph`).
    waiting_on: HashMap<Id, HashSet<Id>>,
    /// Blocked tasks by every id their `dependsOn` names, finished or gone ones included:
    /// those to wait again when such an id is unfinished again (`graph`).
    named_by: HashMap<Id, HashSet<Id>>,
    /// Tasks that finished in this operation whose dependents are not settled yet.
    newly_finished: VecDeque<Arc<Task>>,
    /// Blocked tasks waiting for their `runAt`, by that time (`delays`).
    delayed: BTreeSet<(Millis, Id)>,
    /// Unfinished tasks by venture and idempotency key (`delays`).
    keys: HashMap<(Id, Arc<str>), Id>,
}

impl SchedulerState {
    pub fn new(config: SchedulerConfig, snapshot: Snapshot, now: Millis) -> SchedulerState {
        let mut state = SchedulerState {
            config,
            ventures: HashMap::new(),
            tasks: TaskMap::with_capacity(snapshot.tasks.len()),
            agents: HashMap::new(),
            queued: QueuedIndex::default(),
            candidates: BTreeMap::new(),
            candidate_of: HashMap::new(),
            leases: BTreeSet::new(),
            idle_agents: BTreeSet::new(),
            tasks_by_status: [0; TaskStatus::COUNT],
            now,
            ids: ulid::Generator::new(),
            changes: Vec::new(),
            history_epoch: 0,
            unwritten: HashMap::new(),
            unwritten_order: VecDeque::new(),
            unsent: Vec::new(),
            waiting_on: HashMap::new(),
            named_by: HashMap::new(),
            newly_finished: VecDeque::new(),
            delayed: BTreeSet::new(),
            keys: HashMap::new(),
        };
        for venture in snapshot.ventures {
            state.now = state.now.max(venture.created_at);
            let entry = VentureEntry {
                venture: Arc::new(venture),
                reserved: Money::ZERO,
                n_active: 0,
                finished: [0; TaskStatus::COUNT],
                unfinished: [0; TaskStatus::COUNT],
                failures: 0,
            };
            state.ventures.insert(entry.venture.id.clone(), entry);
        }
        for (venture_id, status, n) in snapshot.finished_counts {
            state.count_finished(&venture_id, status, n as i64);
        }
        for agent in snapshot.agents {
            let entry = AgentEntry { agent: Arc::new(agent), held: Vec::new(), idle_deadline: None };
            state.agents.insert(entry.agent.id.clone(), entry);
        }
        let mut active: Vec<(Millis, Id, Id)> = Vec::new();
        // Only blocked tasks need it, and most records hold none: a set of a million ids
        // took a tenth of the start-up.
        let unfinished: HashSet<Id> = if snapshot.tasks.iter().any(|t| t.status == TaskStatus::Blocked) {
            snapshot.tasks.iter().filter(|t| !t.status.is_finished()).map(|t| t.id.clone()).collect()
        } else {
            HashSet::new()
        };
        // The clock first, so that a delayed task is judged against the time it will be
        // released by.
        let known = snapshot.tasks.iter().filter(|t| state.ventures.contains_key(&t.venture_id));
        state.now = known.map(|t| t.created_at).fold(state.now, Millis::max);
        for mut task in snapshot.tasks {
            if task.status == TaskStatus::Blocked {
                // `blockedBy` is derived, not stored: the dependencies still unfinished. A
                // blocked task with none left and no `runAt` to come (which a consistent file
                // never has) is queued.
                let waiting: Vec<Id> = task
                    .depends_on
                    .iter()
                    .flat_map(|ids| ids.iter())
                    .filter(|id| unfinished.contains(*id))
                    .cloned()
                    .collect();
                task.blocked_by = (!waiting.is_empty()).then(|| waiting.into());
                if task.blocked_by.is_none() && !state.is_delayed(&task) {
                    task.status = TaskStatus::Queue;
                }
            }
            if !state.ventures.contains_key(&task.venture_id) {
                tracing::warn!(task = %task.id, venture = %task.venture_id, "skipping a task whose venture is gone");
                continue;
            }
            if task.status.is_finished() {
                state.count_finished(&task.venture_id, task.status, 1);
                continue;
            }
            if let (TaskStatus::Active, Some(agent)) = (task.status, &task.assigned_to) {
                active.push((task.claimed_at.unwrap_or(task.created_at), agent.clone(), task.id.clone()));
            }
            state.index(&task);
            state.tasks.insert(Arc::new(task));
        }
        active.sort();
        for (_, agent_id, task_id) in active {
            if let Some(entry) = state.agents.get_mut(&agent_id) {
                entry.held.push(task_id);
            }
        }
        let agent_ids: Vec<Id> = state.agents.keys().cloned().collect();
        for id in agent_ids {
            state.reindex_idle(&id);
        }
        let venture_ids: Vec<Id> = state.ventures.keys().cloned().collect();
        for id in venture_ids {
            state.refresh_candidate(&id);
        }
        state
    }

    /// Moves the clock forward (never back), expires leases that ran out and sets agents
    /// not heard from in time `offline`. Returns the outcome of each lease expiry, for the
    /// metrics.
    pub fn advance(&mut self, now: Millis) -> Vec<CompletionOutcome> {
        self.now = self.now.max(now);
        let mut outcomes = Vec::new();
        while let Some((expires_at, task_id)) = self.leases.first().cloned() {
            if expires_at > self.now {
                break;
            }
            outcomes.push(self.expire_lease(&task_id));
        }
        self.release_due();
        self.settle_dependents();
        while let Some((deadline, agent_id)) = self.idle_agents.first().cloned() {
            if deadline > self.now {
                break;
            }
            self.idle_agents.pop_first();
            if let Some(entry) = self.agents.get_mut(&agent_id) {
                entry.idle_deadline = None;
            }
            self.set_offline(&agent_id);
        }
        outcomes
    }

    pub fn now(&self) -> Millis {
        self.now
    }

    /// The changes made since the last call, in order.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The actor sent this message's changes as envelope `seq`.
    pub fn changes_sent(&mut self, seq: u64) {
        for (id, record) in self.unsent.drain(..) {
            self.unwritten_order.push_back((seq, id.clone()));
            self.unwritten.insert(id, (record, seq));
        }
    }

    /// Everything up to `seq` is committed: the database now answers for those records.
    pub fn changes_committed(&mut self, seq: u64) {
        while let Some((sent, id)) = self.unwritten_order.front().cloned() {
            if sent > seq {
                break;
            }
            self.unwritten_order.pop_front();
            if self.unwritten.get(&id).is_some_and(|(_, latest)| *latest == sent) {
                self.unwritten.remove(&id);
            }
        }
    }

    /// Takes pruned tasks out of the counts. A task whose record this scheduler changed
    /// after the pruning looked (requeued, edited or deleted since) is already accounted
    /// for, and a task of a deleted venture went with it.
    pub fn apply_pruned(&mut self, pruned: Pruned) {
        self.history_epoch += 1;
        for (id, venture_id, status) in pruned.tasks {
            let rewritten_since = self.unwritten.get(&id).is_some_and(|(_, seq)| *seq > pruned.after_seq);
            if rewritten_since || self.tasks.contains_key(&id) || !self.ventures.contains_key(&venture_id) {
                continue;
            }
            self.count_finished(&venture_id, status, -1);
        }
    }

    // ----- ventures -----

    pub fn list_ventures(&self) -> Vec<VentureView> {
        let mut all: Vec<VentureView> = self.ventures.values().map(|e| self.venture_view(e)).collect();
        all.sort_by(|a, b| (a.venture.created_at, &a.venture.id).cmp(&(b.venture.created_at, &b.venture.id)));
        all
    }

    /// The venture's record, for what a task shows of it.
    pub fn venture_record(&self, id: &Id) -> Option<Arc<Venture>> {
        self.ventures.get(id).map(|entry| entry.venture.clone())
    }

    pub fn get_venture(&self, id: &Id) -> Result<VentureView, SchedulerError> {
        self.ventures.get(id).map(|e| self.venture_view(e)).ok_or_else(|| not_found("venture", id, None))
    }

    pub fn create_venture(&mut self, new: NewVenture) -> Result<VentureView, SchedulerError> {
        let id = self.new_id(new.id, |s, id| s.ventures.contains_key(id), "venture")?;
        let venture = Venture {
            id: id.clone(),
            name: new.name,
            icon: new.icon.unwrap_or_else(|| "🚀".into()),
            status: new.status.unwrap_or(VentureStatus::Active),
            priority: new.priority.unwrap_or(Priority::Medium),
            capital_spent: new.capital_spent.unwrap_or_default(),
            capital_budget: new.capital_budget.unwrap_or_default(),
            description: new.description,
            created_at: self.now,
            updated_at: self.now,
        };
        let title = format!("Venture created: {}", venture.name);
        self.put_venture(venture);
        self.log("venture_created", title, None, Some(&id), None, None);
        self.get_venture(&id)
    }

    pub fn update_venture(&mut self, id: &Id, patch: VenturePatch) -> Result<VentureView, SchedulerError> {
        let entry = self.ventures.get(id).ok_or_else(|| not_found("venture", id, None))?;
        let mut venture = Venture::clone(&entry.venture);
        set(&mut venture.name, patch.name);
        set(&mut venture.icon, patch.icon);
        set(&mut venture.status, patch.status);
        set(&mut venture.priority, patch.priority);
        set(&mut venture.capital_budget, patch.capital_budget);
        set(&mut venture.capital_spent, patch.capital_spent);
        set(&mut venture.description, patch.description);
        venture.updated_at = self.now;
        let old = entry.venture.clone();
        let mut edits = Vec::new();
        if venture.capital_budget != old.capital_budget {
            edits.push(format!("capitalBudget {} → {}", old.capital_budget, venture.capital_budget));
        }
        if venture.capital_spent != old.capital_spent {
            edits.push(format!("capitalSpent {} → {}", old.capital_spent, venture.capital_spent));
        }
        if venture.status != old.status {
            edits.push(format!("status {} → {}", old.status.as_str(), venture.status.as_str()));
        }
        let title = format!("Venture updated: {}", venture.name);
        self.put_venture(venture);
        // Money and whether work flows are what an operator audits; other edits are not logged.
        if !edits.is_empty() {
            self.log("venture_updated", title, Some(edits.join("; ")), Some(id), None, None);
        }
        self.get_venture(id)
    }

    pub fn delete_venture(&mut self, id: &Id) -> Result<VentureView, SchedulerError> {
        let entry = self.ventures.get(id).ok_or_else(|| not_found("venture", id, None))?;
        if entry.n_active > 0 {
            return Err(SchedulerError::Conflict {
                code: "venture_in_use",
                message: format!(
                    "venture `{id}` has {} active task(s); complete, fail or requeue them before deleting it",
                    entry.n_active
                ),
                field: None,
            });
        }
        let view = self.venture_view(entry);
        // Venture deletion is a rare operator action, so a scan of the task table is acceptable.
        let doomed: Vec<Arc<Task>> = self.tasks.values().filter(|t| t.venture_id == *id).cloned().collect();
        // Tasks of other ventures must not be left waiting for tasks that go with this one.
        for task in &doomed {
            let outside = self
                .waiting_on
                .get(&task.id)
                .into_iter()
                .flatten()
                .any(|dependent| self.tasks.get(dependent).is_some_and(|dependent| dependent.venture_id != *id));
            if outside {
                self.check_no_dependents(&task.id)?;
            }
        }
        for task in &doomed {
            self.unindex(task);
            self.tasks.remove(&task.id);
        }
        self.set_candidate(id, None);
        if let Some(entry) = self.ventures.remove(id) {
            for status in TaskStatus::ALL {
                self.tasks_by_status[*status as usize] -= entry.finished[*status as usize];
            }
        }
        self.history_epoch += 1;
        self.changes.push(Change::DeleteVenture(id.clone()));
        let title = format!("Venture deleted: {} ({} task(s) removed)", view.venture.name, doomed.len());
        self.log("venture_deleted", title, None, Some(id), None, None);
        Ok(view)
    }

    // ----- tasks -----

    /// The tasks memory answers for that match `filter` and come after `after` in list
    /// order, in no particular order (the caller sorts outside the actor): the unfinished
    /// ones, and finished ones not yet committed. Also the ids whose database rows are not
    /// to be trusted: these, and finished tasks changed or deleted but not yet committed.
    pub fn list_in_memory(&self, filter: &TaskFilter, after: Option<&ListKey>, order: ListOrder) -> MemoryListing {
        self.gather_listing(filter, after, order).into_listing()
    }

    /// What `list_in_memory` answers, gathered with as little work as the actor can do:
    /// the matching tasks' handles and the records that shadow database rows. Views, the
    /// set of shadowed ids and the order are built from these outside the actor, so that a
    /// listing of many tasks holds up claims for as short a time as possible.
    pub fn gather_listing(&self, filter: &TaskFilter, after: Option<&ListKey>, order: ListOrder) -> GatheredListing {
        let wanted = |t: &Task| filter.matches(t) && after.is_none_or(|key| order.follows((t.created_at, &t.id), key));
        let mut tasks: Vec<Arc<Task>> = self.tasks.values().filter(|t| wanted(t)).cloned().collect();
        let mut records: Vec<Id> = Vec::with_capacity(self.unsent.len() + self.unwritten.len());
        let mut seen: HashSet<&Id> = HashSet::with_capacity(records.capacity());
        let unsent = self.unsent.iter().rev().map(|(id, record)| (id, record));
        let unwritten = self.unwritten.iter().map(|(id, (record, _))| (id, record));
        for (id, record) in unsent.chain(unwritten) {
            if !seen.insert(id) {
                continue;
            }
            records.push(id.clone());
            if self.tasks.contains_key(id) {
                continue;
            }
            let live =
                |t: &&Arc<Task>| t.status.is_finished() && wanted(t) && self.ventures.contains_key(&t.venture_id);
            if let Some(task) = record.as_ref().filter(live) {
                tasks.push(task.clone());
            }
        }
        let ventures = self.ventures.values().map(|entry| entry.venture.clone()).collect();
        GatheredListing { tasks, records, ventures }
    }

    /// The list key of a task memory answers for; `InHistory` for one it does not.
    pub fn list_key(&self, id: &Id) -> Result<ListKey, SchedulerError> {
        self.find_task(id, None, Some("after")).map(|t| (t.created_at, t.id.clone()))
    }

    /// A task from memory, or from the database record read after an `InHistory` answer.
    pub fn get_task_in(&self, id: &Id, history: Option<&HistoryRecord>) -> Result<TaskView, SchedulerError> {
        self.find_task(id, history, None).map(|t| self.task_view(&t))
    }

    /// A task from memory, or else from the database record the caller read, as long as no
    /// finished task changed since it was read. Without a usable record: `InHistory`.
    fn find_task(
        &self,
        id: &Id,
        history: Option<&HistoryRecord>,
        field: Option<&'static str>,
    ) -> Result<Arc<Task>, SchedulerError> {
        if let Some(task) = self.tasks.get(id) {
            return Ok(task.clone());
        }
        let unsent = self.unsent.iter().rev().find(|(unsent, _)| unsent == id).map(|(_, record)| record);
        if let Some(record) = unsent.or_else(|| self.unwritten.get(id).map(|(record, _)| record)) {
            // A record whose venture is gone went with it (its delete is on its way).
            let live = record.as_ref().filter(|t| self.ventures.contains_key(&t.venture_id));
            return live.cloned().ok_or_else(|| not_found("task", id, field));
        }
        match history.filter(|record| record.epoch == self.history_epoch).and_then(|record| record.tasks.get(id)) {
            Some(record) => match record {
                // A record whose venture is gone went with it (its delete is on its way).
                Some(task) if task.status.is_finished() && self.ventures.contains_key(&task.venture_id) => {
                    Ok(task.clone())
                }
                _ => Err(not_found("task", id, field)),
            },
            None => Err(SchedulerError::InHistory { ids: vec![id.clone()], epoch: self.history_epoch }),
        }
    }

    /// Takes a finished task out of the counts before its record changes or goes: the
    /// caller puts the new version (or deletes it).
    fn reopen_history(&mut self, task: &Task) {
        if self.tasks.contains_key(&task.id) {
            return;
        }
        self.count_finished(&task.venture_id, task.status, -1);
        self.history_epoch += 1;
        // Until the new version is put, the old record is gone.
        self.unsent.push((task.id.clone(), None));
    }

    /// Creates a task: `queue`, or `blocked` while a dependency is unfinished, or at once
    /// `cancelled` when a dependency failed and the task says `cancel`. A client-chosen id
    /// must be free in the database too, and finished dependencies are read from there, so
    /// such a create is answered `InHistory` until the caller brings those records.
    /// A create whose idempotency key the venture has already answers that task instead,
    /// with `false`: nothing changes, whatever else the request says.
    pub fn create_task(
        &mut self,
        new: NewTask,
        history: Option<&HistoryRecord>,
    ) -> Result<(TaskView, bool), SchedulerError> {
        if !self.ventures.contains_key(&new.venture_id) {
            return Err(not_found("venture", &new.venture_id, Some("ventureId")));
        }
        if let Some(key) = &new.idempotency_key {
            if let Some(existing) = self.task_with_key(&new.venture_id, key, history)? {
                return Ok((self.task_view(&existing), false));
            }
        }
        if let Some(requested) = &new.id {
            match self.find_task(requested, history, None) {
                Err(SchedulerError::NotFound { .. }) => {}
                Ok(_) => return Err(SchedulerError::AlreadyExists { entity: "task", id: requested.clone() }),
                Err(other) => return Err(other),
            }
        }
        let dependencies = self.assess_dependencies(&new.depends_on, history)?;
        if let Some(requested) = new.id.as_ref().filter(|_| !new.depends_on.is_empty()) {
            // A client-chosen id may be one a deleted task had, which unfinished tasks may
            // still name: the new task must not close a cycle through them.
            self.check_acyclic(requested, &new.depends_on)?;
        }
        let on_dependency_failure = new.on_dependency_failure.unwrap_or_default();
        let delayed = new.run_at.is_some_and(|at| at > self.now);
        let (status, error) = dependencies.status_for(on_dependency_failure, delayed);
        let id = self.new_id(new.id, |s, id| s.tasks.contains_key(id), "task")?;
        let task = Task {
            id: id.clone(),
            title: new.title,
            description: new.description,
            status,
            priority: new.priority.unwrap_or(Priority::Medium),
            estimated_cost: new.estimated_cost,
            actual_cost: None,
            tags: new.tags,
            depends_on: dependencies.ids,
            blocked_by: if status == TaskStatus::Blocked { dependencies.unfinished } else { None },
            on_dependency_failure,
            cancel_requested: false,
            run_at: new.run_at,
            retry_delay_seconds: new.retry_delay_seconds.unwrap_or(0),
            idempotency_key: new.idempotency_key,
            output: None,
            error,
            assigned_to: None,
            venture_id: new.venture_id,
            attempts: 0,
            max_attempts: new.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            lease_seconds: self.config.default_lease_seconds,
            lease_expires_at: None,
            claimed_at: None,
            created_at: self.now,
            updated_at: self.now,
            completed_at: None,
            last_report: None,
        };
        let task = self.put_task(task);
        if task.depends_on.is_some() {
            self.record_dependencies(&task);
        }
        if !task.status.is_finished() {
            self.wait_again_for(&task.id);
        }
        let title = format!("Task created: {}", task.title);
        self.log("task_created", title, None, Some(&task.venture_id), Some(&task.id), None);
        if task.status == TaskStatus::Cancelled {
            let title = format!("Task cancelled: {}", task.title);
            self.log(
                "task_cancelled",
                title,
                task.error.as_deref().map(str::to_owned),
                Some(&task.venture_id),
                Some(&task.id),
                None,
            );
        }
        Ok((self.task_view(&task), true))
    }

    pub fn update_task(
        &mut self,
        id: &Id,
        patch: TaskPatch,
        history: Option<&HistoryRecord>,
    ) -> Result<TaskView, SchedulerError> {
        let old = self.find_task(id, history, None)?;
        let mut task = Task::clone(&old);
        set(&mut task.on_dependency_failure, patch.on_dependency_failure);
        set(&mut task.retry_delay_seconds, patch.retry_delay_seconds);
        // A waiting task's time may move; the same time (a task sent back whole) is no edit.
        let run_at = patch.run_at.filter(|at| *at != old.run_at);
        if let Some(at) = run_at {
            if !matches!(old.status, TaskStatus::Queue | TaskStatus::Blocked) {
                return Err(SchedulerError::Conflict {
                    code: "invalid_transition",
                    message: format!(
                        "runAt can change only while a task is queue or blocked; task `{id}` is {}",
                        old.status.as_str()
                    ),
                    field: Some("runAt"),
                });
            }
            task.run_at = at;
            self.hold(&mut task);
        }
        // New dependencies set the status the rest of the edit starts from. The list the
        // task has already (a task read and sent back whole) changes nothing.
        let current = old.depends_on.as_deref().unwrap_or_default();
        let depends_on = patch.depends_on.filter(|given| !same_ids(given, current));
        if let Some(given) = &depends_on {
            if !matches!(old.status, TaskStatus::Queue | TaskStatus::Blocked) {
                return Err(Self::dependencies_fixed(&old));
            }
            self.check_acyclic(id, given)?;
            let dependencies = self.assess_dependencies(given, history)?;
            let (status, error) = dependencies.status_for(task.on_dependency_failure, self.is_delayed(&task));
            task.blocked_by = if status == TaskStatus::Blocked { dependencies.unfinished } else { None };
            task.depends_on = dependencies.ids;
            task.status = status;
            if error.is_some() {
                task.error = error;
            }
        }
        if let Some(to) = patch.status {
            check_operator_transition(&task, to)?;
        }
        let requeued_from_history = patch.status == Some(TaskStatus::Queue) && task.status.is_finished();
        if requeued_from_history {
            // Back in memory it waits again for its unfinished dependencies, which must not
            // wait for it.
            let dependencies: Vec<Id> = task.depends_on.iter().flat_map(|ids| ids.iter()).cloned().collect();
            self.check_acyclic(id, &dependencies)?;
        }
        self.reopen_history(&old);
        set(&mut task.title, patch.title);
        set(&mut task.description, patch.description);
        set(&mut task.priority, patch.priority);
        set(&mut task.estimated_cost, patch.estimated_cost);
        set(&mut task.tags, patch.tags);
        set(&mut task.max_attempts, patch.max_attempts);
        task.updated_at = self.now;
        if patch.status == Some(TaskStatus::Cancelled) {
            let task = self.cancel_edited(&old, task, None);
            if depends_on.is_some() {
                self.record_dependencies(&task);
            }
            self.settle_dependents();
            return Ok(self.task_view(&task));
        }
        let mut note = String::new();
        if task.status != old.status {
            note = format!(" (status {} → {})", old.status.as_str(), task.status.as_str());
        }
        if let Some(to) = patch.status.filter(|to| *to != task.status) {
            note = format!(" (status {} → {})", old.status.as_str(), to.as_str());
            match to {
                TaskStatus::Queue => {
                    if task.status.is_finished() {
                        // Attempt numbers fence reports, so they never restart: a requeue
                        // grants a fresh allowance of claims instead, the PATCH's
                        // `maxAttempts` or the default.
                        let grant = patch.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
                        task.max_attempts = task.attempts.saturating_add(grant);
                    }
                    task.return_to_queue();
                    task.cancel_requested = false;
                    task.status = TaskStatus::Queue;
                    if requeued_from_history {
                        let waiting: Vec<Id> = task
                            .depends_on
                            .iter()
                            .flat_map(|ids| ids.iter())
                            .filter(|id| self.tasks.contains_key(id))
                            .cloned()
                            .collect();
                        task.blocked_by = (!waiting.is_empty()).then(|| waiting.into());
                    }
                    self.hold(&mut task);
                }
                TaskStatus::Completed | TaskStatus::Failed => {
                    task.lease_expires_at = None;
                    task.blocked_by = None;
                    task.cancel_requested = false;
                    if to == TaskStatus::Completed {
                        task.completed_at = Some(self.now);
                    }
                    task.status = to;
                }
                TaskStatus::Active | TaskStatus::Blocked | TaskStatus::Cancelled => {
                    unreachable!("check_operator_transition refuses them; cancels returned above")
                }
            }
        }
        if old.status == TaskStatus::Active && task.status != TaskStatus::Active {
            // The operator took the task from its holder: that attempt ends `released`.
            self.end_attempt(&old, AttemptOutcome::Released, AttemptEnd::default());
        }
        let task = self.put_task(task);
        if requeued_from_history {
            self.wait_again_for(&task.id);
        }
        if depends_on.is_some() {
            self.record_dependencies(&task);
        }
        if old.status == TaskStatus::Active && task.status != TaskStatus::Active {
            self.release_agent(old.assigned_to.as_ref(), &task.id, 0, AgentStatus::Online);
        }
        let title = format!("Task updated: {}{note}", task.title);
        self.log("task_updated", title, None, Some(&task.venture_id), Some(&task.id), None);
        if task.status == TaskStatus::Cancelled {
            let title = format!("Task cancelled: {}", task.title);
            let description = task.error.as_deref().map(str::to_owned);
            self.log("task_cancelled", title, description, Some(&task.venture_id), Some(&task.id), None);
        }
        self.settle_dependents();
        Ok(self.task_view(&task))
    }

    /// `POST /api/tasks/cancel`: a `queue` or `blocked` task is cancelled at once; an active
    /// one is asked to stop (its holder learns it from heartbeats, and its next report or
    /// its lease's expiry ends it `cancelled`). A repeat answers as the first did.
    pub fn cancel_task(
        &mut self,
        request: CancelRequest,
        history: Option<&HistoryRecord>,
    ) -> Result<TaskView, SchedulerError> {
        let old = self.find_task(&request.task_id, history, Some("taskId"))?;
        check_operator_transition(&old, TaskStatus::Cancelled)?;
        if old.status == TaskStatus::Cancelled || old.cancel_requested {
            return Ok(self.task_view(&old));
        }
        let mut task = Task::clone(&old);
        task.updated_at = self.now;
        let task = self.cancel_edited(&old, task, request.reason);
        self.settle_dependents();
        Ok(self.task_view(&task))
    }

    /// Cancels `task` (the edited version of `old`, an unfinished task), or asks its holder
    /// to stop when it is active, and logs it.
    fn cancel_edited(&mut self, old: &Arc<Task>, mut task: Task, reason: Option<Arc<str>>) -> Arc<Task> {
        if old.status == TaskStatus::Cancelled || old.cancel_requested {
            return self.put_task(task);
        }
        let said = reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
        if old.status == TaskStatus::Active {
            task.cancel_requested = true;
            task.error = Some(reason.unwrap_or_else(|| "cancel requested".into()));
            let task = self.put_task(task);
            let title = format!("Cancel requested: {}", task.title);
            let description = format!(
                "{} holds attempt {}; it learns of the cancel at its next heartbeat{said}",
                old.assigned_to.as_deref().unwrap_or("nobody"),
                old.attempts
            );
            self.log(
                "task_cancel_requested",
                title,
                Some(description),
                Some(&task.venture_id),
                Some(&task.id),
                old.assigned_to.as_ref(),
            );
            return task;
        }
        task.status = TaskStatus::Cancelled;
        task.blocked_by = None;
        task.error = Some(reason.unwrap_or_else(|| "cancelled".into()));
        let task = self.put_task(task);
        let title = format!("Task cancelled: {}", task.title);
        let description = format!("cancelled while {}{said}", old.status.as_str());
        self.log("task_cancelled", title, Some(description), Some(&task.venture_id), Some(&task.id), None);
        task
    }

    pub fn delete_task(&mut self, id: &Id, history: Option<&HistoryRecord>) -> Result<TaskView, SchedulerError> {
        let task = self.find_task(id, history, None)?;
        self.check_no_dependents(id)?;
        let view = self.task_view(&task);
        self.reopen_history(&task);
        if self.tasks.remove(id).is_some() {
            self.unindex(&task);
        }
        self.unsent.push((id.clone(), None));
        self.changes.push(Change::DeleteTask(id.clone()));
        self.refresh_candidate(&task.venture_id);
        if task.status == TaskStatus::Active {
            self.release_agent(task.assigned_to.as_ref(), id, 0, AgentStatus::Online);
        }
        let title = format!("Task deleted: {}", task.title);
        self.log("task_deleted", title, None, Some(&task.venture_id), Some(id), None);
        Ok(view)
    }

    /// Hands the best eligible task to the agent, or `None` when nothing is eligible.
    pub fn claim(&mut self, request: ClaimRequest) -> Result<Option<TaskView>, SchedulerError> {
        if let Some(venture_id) = &request.venture_id {
            if !self.ventures.contains_key(venture_id) {
                return Err(not_found("venture", venture_id, Some("ventureId")));
            }
        }
        // Checked here, not only when the claim arrives, so that a parked claim is refused
        // too once its agent reaches the limit (say by reporting another task's tokens).
        if let Some(agent) = self.agents.get(&request.agent_id).map(|entry| &entry.agent) {
            if agent.max_tokens > 0 && agent.tokens_used >= agent.max_tokens {
                return Err(SchedulerError::Conflict {
                    code: "token_limit",
                    message: format!(
                        "agent `{}` has used {} of its {} tokens (maxTokens) and takes no new task; \
                         raise maxTokens or reset tokensUsed with PATCH /api/agents/{}",
                        agent.id, agent.tokens_used, agent.max_tokens, agent.id
                    ),
                    field: None,
                });
            }
        }
        let Some(key) = self.find_claimable(&request) else { return Ok(None) };
        let old = self.tasks[&key.id].clone();
        let lease_seconds = request.lease_seconds.unwrap_or(self.config.default_lease_seconds);
        let mut task = Task::clone(&old);
        task.status = TaskStatus::Active;
        task.assigned_to = Some(request.agent_id.clone());
        task.attempts += 1;
        task.lease_seconds = lease_seconds;
        task.claimed_at = Some(self.now);
        task.lease_expires_at = Some(self.now.plus_seconds(lease_seconds));
        task.updated_at = self.now;
        let task = self.put_task(task);
        self.changes.push(Change::Attempt(Arc::new(Attempt {
            task_id: task.id.clone(),
            attempt: task.attempts,
            agent_id: request.agent_id.clone(),
            claimed_at: self.now,
            ended_at: None,
            outcome: AttemptOutcome::Active,
            error: None,
            actual_cost: None,
            tokens_used: None,
        })));

        let now = self.now;
        if !self.agents.contains_key(&request.agent_id) {
            let name = request.agent_name.clone().unwrap_or_else(|| request.agent_id.clone());
            self.register_agent(request.agent_id.clone(), name, AgentFields::default());
        }
        self.edit_agent(&request.agent_id, |agent, held| {
            held.push(task.id.clone());
            agent.status = AgentStatus::Busy;
            agent.current_task = Some(task.id.clone());
            agent.last_active_at = now;
        });

        let title = format!("Task claimed: {}", task.title);
        let description = format!("Claimed by {} (attempt {})", request.agent_id, task.attempts);
        self.log(
            "task_claimed",
            title,
            Some(description),
            Some(&task.venture_id),
            Some(&task.id),
            Some(&request.agent_id),
        );
        Ok(Some(self.task_view(&task)))
    }

    /// Whether any venture has a task that some claim could take. When not, no parked
    /// claim can be served, whatever its filters.
    pub fn has_claimable(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// Puts back a claimed task whose answer never reached its agent (the client went away
    /// before the reply, or its commit failed): as if the claim had not happened, except
    /// that the log says so. Does nothing unless the agent still holds that attempt.
    pub fn release_unreturned(&mut self, task_id: &Id, agent_id: &Id, attempt: u32) -> bool {
        let Some(old) = self.tasks.get(task_id).cloned() else { return false };
        if old.status != TaskStatus::Active || old.assigned_to.as_ref() != Some(agent_id) || old.attempts != attempt {
            return false;
        }
        let mut task = Task::clone(&old);
        // The attempt number stays used (a fencing token never repeats), but the claim that
        // never arrived does not use up the task's allowance.
        task.max_attempts = task.max_attempts.saturating_add(1);
        task.updated_at = self.now;
        if old.cancel_requested {
            // As if the claim had not happened: the cancel asked for since ends the task, as
            // when its holder is deleted. (Requeued with the cancel still asked for, it was
            // claimed again only to end cancelled, and a cancel of it changed nothing.)
            task.lease_expires_at = None;
            task.status = TaskStatus::Cancelled;
            task.cancel_requested = false;
        } else {
            task.return_to_queue();
        }
        self.end_attempt(&old, AttemptOutcome::Released, AttemptEnd::default());
        let task = self.put_task(task);
        self.release_agent(Some(agent_id), task_id, 0, AgentStatus::Online);
        let title = format!("Task released: {}", task.title);
        let description = format!(
            "{agent_id} went away before it received the task; it is {}",
            if task.status == TaskStatus::Cancelled { "cancelled, as was asked" } else { "queued again" }
        );
        self.log("task_released", title, Some(description), Some(&task.venture_id), Some(task_id), Some(agent_id));
        if task.status == TaskStatus::Cancelled {
            let title = format!("Task cancelled: {}", task.title);
            let description = format!("its claim never reached {agent_id} after its cancel was asked for");
            self.log("task_cancelled", title, Some(description), Some(&task.venture_id), Some(task_id), Some(agent_id));
        }
        self.settle_dependents();
        true
    }

    /// Records an agent's report on a task it holds: success charges the venture, an error
    /// requeues the task or, at `max_attempts`, fails it.
    pub fn complete(
        &mut self,
        report: CompleteRequest,
        history: Option<&HistoryRecord>,
    ) -> Result<(TaskView, CompletionOutcome), SchedulerError> {
        let old = self.held_task(&report.task_id, &report.agent_id, report.attempt, true, history)?;
        if old.status != TaskStatus::Active {
            if !is_the_applied_report(&old, &report) {
                return Err(SchedulerError::Conflict {
                    code: "conflicting_report",
                    message: format!(
                        "attempt {} of task `{}` was already reported otherwise; a repeat must give the same outcome, \
                         actualCost, output and error",
                        old.attempts, old.id
                    ),
                    field: None,
                });
            }
            return Ok((self.task_view(&old), CompletionOutcome::Repeated));
        }
        let mut task = Task::clone(&old);
        task.lease_expires_at = None;
        task.last_report = Some(Arc::new(AppliedReport {
            agent_id: report.agent_id.clone(),
            attempt: task.attempts,
            actual_cost: report.actual_cost,
            error: report.error.clone(),
        }));
        task.updated_at = self.now;
        // Each report describes its own attempt: nothing of an earlier one carries over,
        // except the cost, which is the total charged over all attempts.
        task.output = report.output;
        let charge = report.actual_cost.unwrap_or_default();
        let ended = AttemptEnd {
            error: report.error.clone(),
            actual_cost: report.actual_cost,
            tokens_used: report.tokens_used,
        };
        let ended_as = match (old.cancel_requested, report.error.is_some()) {
            (true, _) => AttemptOutcome::Cancelled,
            (false, true) => AttemptOutcome::Failed,
            (false, false) => AttemptOutcome::Completed,
        };
        self.end_attempt(&old, ended_as, ended);
        task.actual_cost = match (old.actual_cost, report.actual_cost) {
            (Some(earlier), Some(this)) => Some(earlier.saturating_add(this)),
            (earlier, this) => this.or(earlier),
        };
        let outcome = match report.error {
            // Whatever it says, the report of a task whose cancel was asked for ends it.
            error if old.cancel_requested => {
                task.error = error;
                task.status = TaskStatus::Cancelled;
                task.cancel_requested = false;
                CompletionOutcome::Cancelled
            }
            None => {
                task.status = TaskStatus::Completed;
                task.completed_at = Some(self.now);
                task.error = None;
                CompletionOutcome::Completed
            }
            Some(error) => {
                task.error = Some(error);
                self.count_failure(&task.venture_id);
                if task.attempts < task.max_attempts {
                    task.return_to_queue();
                    self.back_off(&mut task);
                    CompletionOutcome::Requeued
                } else {
                    task.status = TaskStatus::Failed;
                    CompletionOutcome::Failed
                }
            }
        };
        // A failed attempt spent its money too: any report's `actualCost` is charged.
        if report.actual_cost.is_some() {
            let mut venture = Venture::clone(&self.ventures[&task.venture_id].venture);
            venture.capital_spent = venture.capital_spent.saturating_add(charge);
            venture.updated_at = self.now;
            self.put_venture(venture);
        }
        let task = self.put_task(task);
        self.release_agent(Some(&report.agent_id), &task.id, report.tokens_used.unwrap_or(0), AgentStatus::Online);
        let (kind, title, description) = match outcome {
            CompletionOutcome::Completed => (
                "task_completed",
                format!("Task completed: {}", task.title),
                format!("Completed by {}; cost {charge}", report.agent_id),
            ),
            CompletionOutcome::Cancelled => (
                "task_cancelled",
                format!("Task cancelled: {}", task.title),
                format!(
                    "{} reported attempt {} ({}) after its cancel was asked for; cost {charge}",
                    report.agent_id,
                    task.attempts,
                    if task.error.is_some() { "an error" } else { "a success" }
                ),
            ),
            _ => (
                "task_failed",
                format!(
                    "Task failed: {}: {}",
                    task.title,
                    shortened(
                        task.error.as_deref().unwrap_or_default().lines().next().unwrap_or_default(),
                        ERROR_IN_TITLE_CHARS
                    )
                ),
                format!(
                    "{} reported attempt {} of {} failed; cost {charge}; the task is now {}",
                    report.agent_id,
                    task.attempts,
                    task.max_attempts,
                    task.status.as_str()
                ),
            ),
        };
        self.log(kind, title, Some(description), Some(&task.venture_id), Some(&task.id), Some(&report.agent_id));
        self.settle_dependents();
        Ok((self.task_view(&task), outcome))
    }

    /// Extends the lease of a task the agent holds.
    pub fn heartbeat(
        &mut self,
        beat: HeartbeatRequest,
        history: Option<&HistoryRecord>,
    ) -> Result<TaskView, SchedulerError> {
        let old = self.held_task(&beat.task_id, &beat.agent_id, beat.attempt, false, history)?;
        let mut task = Task::clone(&old);
        task.lease_expires_at = Some(self.now.plus_seconds(beat.lease_seconds.unwrap_or(task.lease_seconds)));
        task.updated_at = self.now;
        let task = self.put_task(task);
        let now = self.now;
        self.edit_agent(&beat.agent_id, |agent, _| agent.last_active_at = now);
        Ok(self.task_view(&task))
    }

    // ----- agents -----

    /// The agent made a request: it is seen now, and `online` again if it was `offline`.
    /// Does nothing for an agent that is not registered.
    pub fn agent_seen(&mut self, id: &Id) -> Option<Arc<Agent>> {
        let now = self.now;
        self.edit_agent(id, |agent, held| {
            agent.last_active_at = now;
            if agent.status == AgentStatus::Offline {
                agent.status = if held.is_empty() { AgentStatus::Online } else { AgentStatus::Busy };
            }
        })
    }

    /// `POST /api/agents/<id>/heartbeat`: keeps an idle agent alive.
    pub fn agent_heartbeat(&mut self, id: &Id) -> Result<Arc<Agent>, SchedulerError> {
        self.agent_seen(id).ok_or_else(|| not_found("agent", id, None))
    }

    pub fn list_agents(&self) -> Vec<Arc<Agent>> {
        let mut all: Vec<Arc<Agent>> = self.agents.values().map(|e| e.agent.clone()).collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        all
    }

    pub fn get_agent(&self, id: &Id) -> Result<Arc<Agent>, SchedulerError> {
        self.agents.get(id).map(|e| e.agent.clone()).ok_or_else(|| not_found("agent", id, None))
    }

    /// Creates the agent, or updates the fields given when it exists.
    pub fn upsert_agent(&mut self, id: Option<Id>, fields: AgentFields) -> Result<AgentUpserted, SchedulerError> {
        if let Some(id) = id.as_ref().filter(|id| self.agents.contains_key(*id)) {
            let agent = self.update_agent(id, fields)?;
            return Ok(AgentUpserted { agent, created: false });
        }
        let Some(name) = fields.name.clone() else {
            return Err(SchedulerError::Invalid {
                field: "name",
                message: "`name` is required to register a new agent".into(),
            });
        };
        let id = self.new_id(id, |s, id| s.agents.contains_key(id), "agent")?;
        let agent = self.register_agent(id, name, fields);
        Ok(AgentUpserted { agent, created: true })
    }

    pub fn update_agent(&mut self, id: &Id, fields: AgentFields) -> Result<Arc<Agent>, SchedulerError> {
        self.edit_agent(id, |agent, _| {
            set(&mut agent.name, fields.name);
            set(&mut agent.status, fields.status);
            set(&mut agent.model, fields.model);
            set(&mut agent.tokens_used, fields.tokens_used);
            set(&mut agent.max_tokens, fields.max_tokens);
            set(&mut agent.sessions_count, fields.sessions_count);
        })
        .ok_or_else(|| not_found("agent", id, None))
    }

    /// Removes the agent; the tasks it held go back to the queue.
    pub fn delete_agent(&mut self, id: &Id) -> Result<Arc<Agent>, SchedulerError> {
        let entry = self.agents.remove(id).ok_or_else(|| not_found("agent", id, None))?;
        if let Some(deadline) = entry.idle_deadline {
            self.idle_agents.remove(&(deadline, id.clone()));
        }
        let mut requeued = 0;
        for task_id in &entry.held {
            let old = self.tasks[task_id].clone();
            self.end_attempt(&old, AttemptOutcome::Released, AttemptEnd::default());
            let mut task = Task::clone(&old);
            task.updated_at = self.now;
            if old.cancel_requested {
                // The holder is gone without a report: as at its lease's expiry, the cancel
                // asked for ends the task. (Requeued with the cancel still asked for, it was
                // claimed again only to end cancelled, and a cancel of it changed nothing.)
                task.lease_expires_at = None;
                task.status = TaskStatus::Cancelled;
                task.cancel_requested = false;
                let task = self.put_task(task);
                let title = format!("Task cancelled: {}", task.title);
                let description = format!("its holder {id} was deleted after its cancel was asked for");
                self.log("task_cancelled", title, Some(description), Some(&task.venture_id), Some(task_id), Some(id));
                continue;
            }
            task.return_to_queue();
            self.put_task(task);
            requeued += 1;
        }
        self.changes.push(Change::DeleteAgent(id.clone()));
        let title = format!("Agent deleted: {} ({requeued} task(s) requeued)", entry.agent.name);
        self.log("agent_deleted", title, None, None, None, Some(id));
        self.settle_dependents();
        Ok(entry.agent)
    }

    // ----- activities -----

    /// Appends an activity to the log. The log itself lives in SQLite; the scheduler only
    /// checks the references and hands the record on.
    pub fn create_activity(
        &mut self,
        new: NewActivity,
        history: Option<&HistoryRecord>,
    ) -> Result<Arc<Activity>, SchedulerError> {
        if let Some(id) = new.venture_id.as_ref().filter(|id| !self.ventures.contains_key(*id)) {
            return Err(not_found("venture", id, Some("ventureId")));
        }
        if let Some(id) = &new.task_id {
            self.find_task(id, history, Some("taskId"))?;
        }
        if let Some(id) = new.agent_id.as_ref().filter(|id| !self.agents.contains_key(*id)) {
            return Err(not_found("agent", id, Some("agentId")));
        }
        let activity = Arc::new(Activity {
            id: new.id.unwrap_or_else(|| self.generate_id()),
            kind: new.kind.unwrap_or_else(|| "note".into()),
            title: new.title,
            description: new.description,
            venture_id: new.venture_id,
            task_id: new.task_id,
            agent_id: new.agent_id,
            created_at: self.now,
        });
        self.changes.push(Change::Activity(activity.clone()));
        Ok(activity)
    }

    // ----- gauges -----

    /// Each venture's figures for the per-venture gauges, computed from what is kept anyway.
    pub fn venture_gauges(&self) -> Vec<VentureGauges> {
        self.ventures
            .values()
            .map(|entry| VentureGauges {
                id: entry.venture.id.clone(),
                spent: entry.venture.capital_spent,
                reserved: entry.reserved,
                budget: entry.venture.capital_budget,
                queued: self.queued.venture_len(&entry.venture.id) as u64,
                budget_held: self.venture_view(entry).budget_held,
                failures: entry.failures,
            })
            .collect()
    }

    /// When the oldest claimable queued task was created: over active ventures, the oldest
    /// task at the head of each priority that the budget lets out. O(ventures).
    pub fn oldest_claimable_since(&self) -> Option<Millis> {
        self.ventures
            .values()
            .filter(|entry| entry.venture.status == VentureStatus::Active)
            .flat_map(|entry| {
                let room = entry.room();
                self.queued
                    .oldest_by_priority(&entry.venture.id)
                    .filter(move |(_, cost)| fits(*cost, room))
                    .map(|(key, _)| key.created_at)
            })
            .min()
    }

    /// Agents by status, for the `agents` gauge.
    pub fn agent_counts(&self) -> [u64; AgentStatus::COUNT] {
        let mut counts = [0; AgentStatus::COUNT];
        for entry in self.agents.values() {
            counts[entry.agent.status as usize] += 1;
        }
        counts
    }

    pub fn queue_depth(&self, priority: Priority) -> usize {
        self.queued.depth(priority)
    }

    /// Tasks of this status, finished ones (in the database) included.
    pub fn task_count(&self, status: TaskStatus) -> u64 {
        self.tasks_by_status[status as usize]
    }

    // ----- internals -----

    fn venture_view(&self, entry: &VentureEntry) -> VentureView {
        let budget_held = match entry.venture.capital_budget > Money::ZERO {
            true => self.queued.held_back(&entry.venture.id, entry.room()) as u64,
            false => 0,
        };
        let task_counts = std::array::from_fn(|status| entry.finished[status] + entry.unfinished[status]);
        VentureView { venture: entry.venture.clone(), capital_reserved: entry.reserved, budget_held, task_counts }
    }

    fn task_view(&self, task: &Arc<Task>) -> TaskView {
        TaskView { task: task.clone(), venture: self.ventures.get(&task.venture_id).map(|e| e.venture.clone()) }
    }

    fn generate_id(&mut self) -> Id {
        let ulid = self.ids.generate().unwrap_or_else(|_| ulid::Ulid::new());
        ulid.to_string().into()
    }

    /// The client's id if free, else a fresh one.
    fn new_id(
        &mut self,
        requested: Option<Id>,
        taken: impl Fn(&Self, &Id) -> bool,
        entity: &'static str,
    ) -> Result<Id, SchedulerError> {
        match requested {
            Some(id) if taken(self, &id) => Err(SchedulerError::AlreadyExists { entity, id }),
            Some(id) => Ok(id),
            None => Ok(self.generate_id()),
        }
    }

    fn register_agent(&mut self, id: Id, name: Arc<str>, fields: AgentFields) -> Arc<Agent> {
        let agent = Arc::new(Agent {
            id: id.clone(),
            name,
            status: fields.status.unwrap_or(AgentStatus::Online),
            model: fields.model.unwrap_or_else(|| "unknown".into()),
            current_task: None,
            tokens_used: fields.tokens_used.unwrap_or(0),
            max_tokens: fields.max_tokens.unwrap_or(0),
            sessions_count: fields.sessions_count.unwrap_or(0),
            last_active_at: self.now,
            created_at: self.now,
            updated_at: self.now,
        });
        self.agents.insert(id.clone(), AgentEntry { agent: agent.clone(), held: Vec::new(), idle_deadline: None });
        self.reindex_idle(&id);
        self.changes.push(Change::Agent(agent.clone()));
        let title = format!("Agent registered: {}", agent.name);
        self.log("agent_registered", title, None, None, None, Some(&id));
        agent
    }

    /// The task the agent reports on, after the fencing and holder checks. With
    /// `allow_repeat`, the agent's own already-applied report is returned as it is.
    fn held_task(
        &self,
        task_id: &Id,
        agent_id: &Id,
        attempt: Option<u32>,
        allow_repeat: bool,
        history: Option<&HistoryRecord>,
    ) -> Result<Arc<Task>, SchedulerError> {
        let task = &self.find_task(task_id, history, Some("taskId"))?;
        if let Some(given) = attempt.filter(|a| *a != task.attempts) {
            return Err(SchedulerError::StaleLease { task_id: task_id.clone(), given, current: task.attempts });
        }
        if task.status == TaskStatus::Active && task.assigned_to.as_ref() == Some(agent_id) {
            return Ok(task.clone());
        }
        if let Some(applied) = task.last_report.as_ref().filter(|applied| applied.agent_id == *agent_id) {
            // The agent's report was applied; it may repeat it until someone claims the task again.
            let no_claim_since = applied.attempt == task.attempts && task.status != TaskStatus::Active;
            if allow_repeat && no_claim_since {
                return Ok(task.clone());
            }
        }
        // `stale_lease` answers only an attempt number that is not the current one (checked
        // above); otherwise an agent that does not hold the task is simply not its holder.
        Err(SchedulerError::NotHolder { task_id: task_id.clone(), agent_id: agent_id.clone() })
    }

    fn expire_lease(&mut self, task_id: &Id) -> CompletionOutcome {
        let old = self.tasks[task_id].clone();
        let mut task = Task::clone(&old);
        task.lease_expires_at = None;
        task.updated_at = self.now;
        self.end_attempt(&old, AttemptOutcome::Expired, AttemptEnd::default());
        self.count_failure(&task.venture_id);
        let outcome = if task.cancel_requested {
            // The holder never reported after the cancel: the expiry ends the task.
            task.status = TaskStatus::Cancelled;
            task.cancel_requested = false;
            CompletionOutcome::Cancelled
        } else if task.attempts >= task.max_attempts {
            task.status = TaskStatus::Failed;
            task.error = Some("lease expired on the last attempt".into());
            CompletionOutcome::Failed
        } else {
            task.return_to_queue();
            self.back_off(&mut task);
            CompletionOutcome::Requeued
        };
        let task = self.put_task(task);
        self.release_agent(old.assigned_to.as_ref(), task_id, 0, AgentStatus::Offline);
        let title = format!("Lease expired: {}", task.title);
        let description = format!(
            "{} stopped heartbeating on attempt {}; the task is now {}",
            old.assigned_to.as_deref().unwrap_or("nobody"),
            old.attempts,
            task.status.as_str()
        );
        self.log(
            "task_lease_expired",
            title,
            Some(description),
            Some(&task.venture_id),
            Some(task_id),
            old.assigned_to.as_ref(),
        );
        outcome
    }

    /// Records the end of the attempt `old` (an active task) is on: one `Change::Attempt`.
    fn end_attempt(&mut self, old: &Task, outcome: AttemptOutcome, end: AttemptEnd) {
        let (TaskStatus::Active, Some(agent_id)) = (old.status, &old.assigned_to) else { return };
        self.changes.push(Change::Attempt(Arc::new(Attempt {
            task_id: old.id.clone(),
            attempt: old.attempts,
            agent_id: agent_id.clone(),
            claimed_at: old.claimed_at.unwrap_or(old.updated_at),
            ended_at: Some(self.now),
            outcome,
            error: end.error,
            actual_cost: end.actual_cost,
            tokens_used: end.tokens_used,
        })));
    }

    /// Takes a task out of the agent's hands: `current_task` moves to its latest other
    /// task, and an agent left with none takes `idle_status` (if it was busy).
    fn release_agent(&mut self, agent_id: Option<&Id>, task_id: &Id, tokens_used: u64, idle_status: AgentStatus) {
        let Some(agent_id) = agent_id else { return };
        let now = self.now;
        self.edit_agent(agent_id, |agent, held| {
            held.retain(|held| held != task_id);
            agent.current_task = held.last().cloned();
            // Saturates where SQLite's INTEGER does, so a restart reads back the same number.
            agent.tokens_used = agent.tokens_used.saturating_add(tokens_used).min(i64::MAX as u64);
            if agent.current_task.is_none()
                && (agent.status == AgentStatus::Busy || idle_status == AgentStatus::Offline)
            {
                agent.status = idle_status;
            }
            agent.last_active_at = now;
        });
    }

    /// Changes an agent (and the tasks it holds), stamps `updated_at` and records the change;
    /// `None` when there is no such agent.
    fn edit_agent(&mut self, id: &Id, edit: impl FnOnce(&mut Agent, &mut Vec<Id>)) -> Option<Arc<Agent>> {
        let entry = self.agents.get_mut(id)?;
        let agent = Arc::make_mut(&mut entry.agent);
        edit(agent, &mut entry.held);
        agent.updated_at = self.now;
        let agent = entry.agent.clone();
        self.changes.push(Change::Agent(agent.clone()));
        self.reindex_idle(id);
        Some(agent)
    }

    /// Puts the agent in `idle_agents` under its current deadline if it holds no task and
    /// is not offline, and takes it out otherwise.
    fn reindex_idle(&mut self, id: &Id) {
        let timeout = self.config.agent_timeout_seconds;
        let Some(entry) = self.agents.get_mut(id) else { return };
        let idle = entry.held.is_empty() && entry.agent.status != AgentStatus::Offline;
        let deadline = idle.then(|| entry.agent.last_active_at.plus_seconds(timeout));
        if deadline == entry.idle_deadline {
            return;
        }
        if let Some(old) = entry.idle_deadline.take() {
            self.idle_agents.remove(&(old, id.clone()));
        }
        if let Some(new) = deadline {
            self.idle_agents.insert((new, id.clone()));
        }
        entry.idle_deadline = deadline;
    }

    /// An agent holding no task was not heard from in time: it is shown `offline`.
    fn set_offline(&mut self, id: &Id) {
        let Some(agent) = self.edit_agent(id, |agent, _| agent.status = AgentStatus::Offline) else { return };
        let title = format!("Agent offline: {}", agent.name);
        let description = format!(
            "not heard from for {} s (--agent-timeout) while holding no task",
            self.config.agent_timeout_seconds
        );
        self.log("agent_offline", title, Some(description), None, None, Some(id));
    }

    fn find_claimable(&self, request: &ClaimRequest) -> Option<QueueKey> {
        if request.tags.is_empty() {
            return match &request.venture_id {
                Some(venture_id) => self.candidate_of.get(venture_id).cloned(),
                None => self.candidates.keys().next().cloned(),
            };
        }
        // A tag filter walks the queued tasks of the rarest tag asked for, in claim order,
        // until one is eligible: it skips only tasks that carry that tag but are not.
        self.queued
            .iter_rarest_tag(&request.tags)
            .find(|(key, (venture_id, cost))| {
                request.venture_id.as_ref().is_none_or(|wanted| wanted == venture_id)
                    && self
                        .ventures
                        .get(venture_id)
                        .is_some_and(|entry| entry.venture.status == VentureStatus::Active && fits(*cost, entry.room()))
                    && request.tags.iter().all(|tag| self.tasks[&key.id].has_tag(tag))
            })
            .map(|(key, _)| key.clone())
    }

    /// Stores the new version of a task, moving it between indexes as its status says. A
    /// finished task leaves memory: its record goes to the persister and only its count stays.
    fn put_task(&mut self, task: Task) -> Arc<Task> {
        let was_unfinished = match self.tasks.remove(&task.id) {
            Some(old) => {
                self.unindex(&old);
                true
            }
            None => false,
        };
        let task = Arc::new(task);
        if was_unfinished && task.status.is_finished() {
            self.newly_finished.push_back(task.clone());
        }
        let reopened = self.unsent.last().is_some_and(|(id, _)| *id == task.id);
        if task.status.is_finished() || reopened {
            self.unsent.push((task.id.clone(), Some(task.clone())));
        }
        if task.status.is_finished() {
            self.count_finished(&task.venture_id, task.status, 1);
        } else {
            self.index(&task);
            self.tasks.insert(task.clone());
        }
        self.changes.push(Change::Task(task.clone()));
        self.refresh_candidate(&task.venture_id);
        task
    }

    fn put_venture(&mut self, venture: Venture) {
        let venture = Arc::new(venture);
        self.changes.push(Change::Venture(venture.clone()));
        let id = venture.id.clone();
        match self.ventures.get_mut(&id) {
            Some(entry) => entry.venture = venture,
            None => {
                let entry = VentureEntry {
                    venture,
                    reserved: Money::ZERO,
                    n_active: 0,
                    finished: [0; TaskStatus::COUNT],
                    unfinished: [0; TaskStatus::COUNT],
                    failures: 0,
                };
                self.ventures.insert(id.clone(), entry);
            }
        }
        self.refresh_candidate(&id);
    }

    fn count_failure(&mut self, venture_id: &Id) {
        if let Some(entry) = self.ventures.get_mut(venture_id) {
            entry.failures += 1;
        }
    }

    /// Adds `delta` finished tasks of this status to the venture's and the total counts.
    fn count_finished(&mut self, venture_id: &Id, status: TaskStatus, delta: i64) {
        let Some(entry) = self.ventures.get_mut(venture_id) else { return };
        let slot = &mut entry.finished[status as usize];
        *slot = slot.saturating_add_signed(delta);
        let total = &mut self.tasks_by_status[status as usize];
        *total = total.saturating_add_signed(delta);
    }

    /// Adds an unfinished task to the indexes its status puts it in.
    fn index(&mut self, task: &Task) {
        self.tasks_by_status[task.status as usize] += 1;
        if let Some(entry) = self.ventures.get_mut(&task.venture_id) {
            entry.unfinished[task.status as usize] += 1;
        }
        self.index_time_and_key(task);
        match task.status {
            TaskStatus::Queue => {
                let tags = task.tags.as_deref().unwrap_or_default();
                self.queued.insert(&task.venture_id, QueueKey::of(task), task.reserved_cost(), tags)
            }
            TaskStatus::Active => {
                if let Some(expires_at) = task.lease_expires_at {
                    self.leases.insert((expires_at, task.id.clone()));
                }
                if let Some(entry) = self.ventures.get_mut(&task.venture_id) {
                    entry.reserved = entry.reserved.saturating_add(task.reserved_cost());
                    entry.n_active += 1;
                }
            }
            TaskStatus::Blocked => self.wait_for_dependencies(task),
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled => {
                unreachable!("finished tasks are not indexed")
            }
        }
    }

    fn unindex(&mut self, task: &Task) {
        self.tasks_by_status[task.status as usize] -= 1;
        if let Some(entry) = self.ventures.get_mut(&task.venture_id) {
            let slot = &mut entry.unfinished[task.status as usize];
            *slot = slot.saturating_sub(1);
        }
        self.unindex_time_and_key(task);
        match task.status {
            TaskStatus::Queue => {
                self.queued.remove(&task.venture_id, &QueueKey::of(task), task.tags.as_deref().unwrap_or_default());
            }
            TaskStatus::Active => {
                if let Some(expires_at) = task.lease_expires_at {
                    self.leases.remove(&(expires_at, task.id.clone()));
                }
                if let Some(entry) = self.ventures.get_mut(&task.venture_id) {
                    entry.n_active -= 1;
                    entry.reserved = entry.reserved.saturating_sub(task.reserved_cost());
                }
            }
            TaskStatus::Blocked => self.stop_waiting(task),
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled => {
                unreachable!("finished tasks are not indexed")
            }
        }
    }

    /// Recomputes the venture's best eligible task after anything that can change it:
    /// its queue, its status, its budget, its spending or its reservations.
    fn refresh_candidate(&mut self, venture_id: &Id) {
        let candidate = self.ventures.get(venture_id).and_then(|entry| {
            if entry.venture.status != VentureStatus::Active {
                return None;
            }
            self.queued.first_fitting(venture_id, entry.room()).cloned()
        });
        self.set_candidate(venture_id, candidate);
    }

    fn set_candidate(&mut self, venture_id: &Id, candidate: Option<QueueKey>) {
        if self.candidate_of.get(venture_id) == candidate.as_ref() {
            return;
        }
        if let Some(old) = self.candidate_of.remove(venture_id) {
            self.candidates.remove(&old);
        }
        if let Some(key) = candidate {
            self.candidates.insert(key.clone(), venture_id.clone());
            self.candidate_of.insert(venture_id.clone(), key);
        }
    }

    fn log(
        &mut self,
        kind: &str,
        title: String,
        description: Option<String>,
        venture_id: Option<&Id>,
        task_id: Option<&Id>,
        agent_id: Option<&Id>,
    ) {
        let activity = Activity {
            id: self.generate_id(),
            kind: kind.into(),
            title: shortened(&title, MAX_ACTIVITY_TITLE_CHARS).into(),
            description: description.map(Into::into),
            venture_id: venture_id.cloned(),
            task_id: task_id.cloned(),
            agent_id: agent_id.cloned(),
            created_at: self.now,
        };
        self.changes.push(Change::Activity(Arc::new(activity)));
    }
}

/// What a report says of the attempt it ends.
#[derive(Default)]
struct AttemptEnd {
    error: Option<Arc<str>>,
    actual_cost: Option<Money>,
    tokens_used: Option<u64>,
}

/// `text` cut to at most `max_chars` characters, the last of them `…` when it was cut.
fn shortened(text: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max_chars.saturating_sub(1)) {
        Some((cut, _)) if text[cut..].chars().nth(1).is_some() => format!("{}…", &text[..cut]).into(),
        _ => text.into(),
    }
}

fn not_found(entity: &'static str, id: &Id, field: Option<&'static str>) -> SchedulerError {
    SchedulerError::NotFound { entity, id: id.clone(), field }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// Whether `given` names the same tasks as `current`, in the same order, repeats aside.
fn same_ids(given: &[Id], current: &[Id]) -> bool {
    let mut seen = HashSet::with_capacity(given.len());
    given.iter().filter(|id| seen.insert(*id)).eq(current.iter())
}

/// Whether `report` repeats the report the task last took: the same outcome, cost, output
/// and error (the caller has checked that it comes from the same agent for that attempt).
fn is_the_applied_report(task: &Task, report: &CompleteRequest) -> bool {
    task.last_report.as_ref().is_some_and(|applied| {
        applied.error == report.error && task.output == report.output && applied.actual_cost == report.actual_cost
    })
}

/// The status changes an operator may make with `PATCH`; `active` is reached only by a claim.
fn check_operator_transition(task: &Task, to: TaskStatus) -> Result<(), SchedulerError> {
    use TaskStatus::*;
    let allowed = match (task.status, to) {
        (from, to) if from == to => true,
        (Active | Failed | Cancelled, Queue) => true,
        (Queue | Active | Blocked, Failed | Completed | Cancelled) => true,
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    if to == Cancelled {
        return Err(SchedulerError::Conflict {
            code: "finished",
            message: format!(
                "task `{}` is already {}; only an unfinished task can be cancelled",
                task.id,
                task.status.as_str()
            ),
            field: None,
        });
    }
    let message = match (task.status, to) {
        (_, Active) => "a task becomes active only by a claim (POST /api/tasks/claim)".to_string(),
        (_, Blocked) => "a task is blocked only by its unfinished dependencies (dependsOn)".to_string(),
        (Blocked, Queue) => format!(
            "task `{}` is blocked by its unfinished dependencies; it is queued when they finish, or when dependsOn \
             no longer names an unfinished task",
            task.id
        ),
        _ => format!("a {} task cannot be set to {}", task.status.as_str(), to.as_str()),
    };
    Err(SchedulerError::Conflict { code: "invalid_transition", message, field: Some("status") })
}
