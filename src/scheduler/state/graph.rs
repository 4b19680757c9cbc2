//! The task graph: dependencies, `blocked` tasks, unblocking, the failure cascade, cycle
//! refusal and cancellation.
//!
//! Only unfinished tasks are in memory, and so only their edges: a finished dependency
//! blocks nothing. `waiting_on` reads the graph backwards (a dependency → the blocked tasks
//! that wait for it), so a task's end touches only its own dependents, and a cycle check
//! walks only the edges reachable from the edited task. Invariant: the graph of unfinished
//! tasks has no cycle.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::SchedulerState;
use crate::domain::{Id, OnDependencyFailure, Task, TaskIds, TaskStatus};
use crate::scheduler::commands::{HistoryRecord, SchedulerError};
use crate::scheduler::Change;

/// The most dependencies one task may have (the API refuses more).
pub const MAX_DEPENDENCIES: usize = 100;

/// What a list of dependencies says of the task that has them.
pub(super) struct Dependencies {
    /// The list as kept: in the order given, without repeats.
    pub ids: Option<TaskIds>,
    /// Those still unfinished: the task is `blocked` until none is left.
    pub unfinished: Option<TaskIds>,
    /// The first that ended `failed` or `cancelled`, with that status.
    pub unsuccessful: Option<(Id, TaskStatus)>,
}

impl Dependencies {
    /// The status these dependencies give a task that says `policy` and would otherwise be
    /// `queue` (or, when `delayed` by its `runAt`, `blocked`), with the error of a cancel.
    pub fn status_for(&self, policy: OnDependencyFailure, delayed: bool) -> (TaskStatus, Option<Arc<str>>) {
        match &self.unsuccessful {
            Some((id, status)) if policy == OnDependencyFailure::Cancel => {
                (TaskStatus::Cancelled, Some(dependency_ended(id, *status)))
            }
            _ if self.unfinished.is_some() || delayed => (TaskStatus::Blocked, None),
            _ => (TaskStatus::Queue, None),
        }
    }
}

fn dependency_ended(id: &Id, status: TaskStatus) -> Arc<str> {
    format!("cancelled because its dependency `{id}` ended {}", status.as_str()).into()
}

impl SchedulerState {
    /// Reads a list of dependencies: each must exist, in memory (unfinished) or in the
    /// database. The records of those not in memory are asked for all at once.
    pub(super) fn assess_dependencies(
        &self,
        given: &[Id],
        history: Option<&HistoryRecord>,
    ) -> Result<Dependencies, SchedulerError> {
        let mut seen = HashSet::with_capacity(given.len());
        let ids: Vec<Id> = given.iter().filter(|id| seen.insert(*id)).cloned().collect();
        let (mut unfinished, mut unsuccessful, mut missing) = (Vec::new(), None, Vec::new());
        for id in &ids {
            if self.tasks.contains_key(id) {
                unfinished.push(id.clone());
                continue;
            }
            match self.find_task(id, history, Some("dependsOn")) {
                Ok(task) if task.status.is_unsuccessful() && unsuccessful.is_none() => {
                    unsuccessful = Some((id.clone(), task.status));
                }
                Ok(_) => {}
                Err(SchedulerError::InHistory { ids, .. }) => missing.extend(ids),
                Err(other) => return Err(other),
            }
        }
        if !missing.is_empty() {
            return Err(SchedulerError::InHistory { ids: missing, epoch: self.history_epoch });
        }
        Ok(Dependencies { ids: non_empty(ids), unfinished: non_empty(unfinished), unsuccessful })
    }

    /// Refuses dependencies of `task` that would close a cycle, naming it: a depth-first
    /// walk of `depends_on` from each new dependency, through unfinished tasks only.
    pub(super) fn check_acyclic(&self, task: &Id, dependencies: &[Id]) -> Result<(), SchedulerError> {
        match self.cycle_through(task, dependencies) {
            None => Ok(()),
            Some(path) => Err(SchedulerError::Conflict {
                code: "dependency_cycle",
                message: format!(
                    "these dependencies would close a cycle: {}",
                    path.iter().map(|id| &**id).collect::<Vec<&str>>().join(" -> ")
                ),
                field: Some("dependsOn"),
            }),
        }
    }

    /// The path `task -> ... -> task` that depending on `dependencies` would close, if any.
    fn cycle_through(&self, task: &Id, dependencies: &[Id]) -> Option<Vec<Id>> {
        // Each reached task, with the task that depends on it on the way from `task`.
        let mut reached_from: HashMap<&Id, &Id> = HashMap::new();
        let mut stack: Vec<&Id> = Vec::new();
        for dependency in dependencies {
            if dependency == task {
                return Some(vec![task.clone(), task.clone()]);
            }
            if reached_from.insert(dependency, task).is_none() {
                stack.push(dependency);
            }
        }
        while let Some(node) = stack.pop() {
            let Some(record) = self.tasks.get(node) else { continue };
            for next in record.depends_on.iter().flat_map(|ids| ids.iter()) {
                if next == task {
                    // Back from `node` to the dependency the walk started from, then turned.
                    let mut back = vec![node.clone()];
                    let mut at = node;
                    while let Some(from) = reached_from.get(at).filter(|from| **from != task) {
                        back.push((*from).clone());
                        at = from;
                    }
                    back.reverse();
                    let mut path = vec![task.clone()];
                    path.extend(back);
                    path.push(task.clone());
                    return Some(path);
                }
                if !reached_from.contains_key(next) {
                    reached_from.insert(next, node);
                    stack.push(next);
                }
            }
        }
        None
    }

    /// Refuses to delete a task that blocked tasks wait for.
    pub(super) fn check_no_dependents(&self, id: &Id) -> Result<(), SchedulerError> {
        let Some(waiting) = self.waiting_on.get(id).filter(|w| !w.is_empty()) else { return Ok(()) };
        let mut names: Vec<&str> = waiting.iter().map(|id| &**id).collect();
        names.sort_unstable();
        let shown = names.iter().take(5).map(|id| format!("`{id}`")).collect::<Vec<String>>().join(", ");
        let more = if names.len() > 5 { format!(" and {} more", names.len() - 5) } else { String::new() };
        Err(SchedulerError::Conflict {
            code: "has_dependents",
            message: format!(
                "task `{id}` is a dependency of unfinished task(s) {shown}{more}; cancel or delete them, or change \
                 their dependsOn, first"
            ),
            field: None,
        })
    }

    /// Records the blocked task's edges (called when it enters memory's indexes).
    pub(super) fn wait_for_dependencies(&mut self, task: &Task) {
        for dependency in task.blocked_by.iter().flat_map(|ids| ids.iter()) {
            self.waiting_on.entry(dependency.clone()).or_default().insert(task.id.clone());
        }
        for dependency in task.depends_on.iter().flat_map(|ids| ids.iter()) {
            self.named_by.entry(dependency.clone()).or_default().insert(task.id.clone());
        }
    }

    /// Forgets the blocked task's edges (called when it leaves memory's indexes).
    pub(super) fn stop_waiting(&mut self, task: &Task) {
        for dependency in task.blocked_by.iter().flat_map(|ids| ids.iter()) {
            if let Some(waiting) = self.waiting_on.get_mut(dependency) {
                waiting.remove(&task.id);
                if waiting.is_empty() {
                    self.waiting_on.remove(dependency);
                }
            }
        }
        for dependency in task.depends_on.iter().flat_map(|ids| ids.iter()) {
            if let Some(naming) = self.named_by.get_mut(dependency) {
                naming.remove(&task.id);
                if naming.is_empty() {
                    self.named_by.remove(dependency);
                }
            }
        }
    }

    /// Settles what waits for the tasks that finished in this operation: each blocked
    /// dependent loses that dependency and is `queue` once none is left; if the dependency
    /// failed or was cancelled and the dependent says `cancel`, it is cancelled instead, and
    /// so on down the graph. Touches only the dependents, and runs as a loop, not recursion,
    /// so a chain of any length is settled in constant stack.
    pub(super) fn settle_dependents(&mut self) {
        while let Some(finished) = self.newly_finished.pop_front() {
            let Some(waiting) = self.waiting_on.remove(&finished.id) else { continue };
            let mut dependents: Vec<Arc<Task>> = waiting
                .iter()
                .filter_map(|id| self.tasks.get(id))
                .filter(|t| t.status == TaskStatus::Blocked)
                .cloned()
                .collect();
            // In creation order, so that the log reads in a stable order.
            dependents.sort_unstable_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            for old in dependents {
                let mut task = Task::clone(&old);
                task.updated_at = self.now;
                if finished.status.is_unsuccessful() && old.on_dependency_failure == OnDependencyFailure::Cancel {
                    task.status = TaskStatus::Cancelled;
                    task.error = Some(dependency_ended(&finished.id, finished.status));
                    task.blocked_by = None;
                    let task = self.put_task(task);
                    let title = format!("Task cancelled: {}", task.title);
                    let description = format!("its dependency `{}` ended {}", finished.id, finished.status.as_str());
                    self.log("task_cancelled", title, Some(description), Some(&task.venture_id), Some(&task.id), None);
                    continue;
                }
                let rest: Vec<Id> = old
                    .blocked_by
                    .iter()
                    .flat_map(|ids| ids.iter())
                    .filter(|id| **id != finished.id)
                    .cloned()
                    .collect();
                task.blocked_by = non_empty(rest);
                // Still waiting: for another dependency, or for its `runAt`.
                if task.blocked_by.is_some() || self.is_delayed(&task) {
                    self.put_task(task);
                    continue;
                }
                task.status = TaskStatus::Queue;
                let task = self.put_task(task);
                let title = format!("Task unblocked: {}", task.title);
                let description = format!("its last dependency, `{}`, ended {}", finished.id, finished.status.as_str());
                self.log("task_unblocked", title, Some(description), Some(&task.venture_id), Some(&task.id), None);
            }
        }
    }

    /// A task id that is unfinished again (a finished task requeued, or a new task with
    /// the id of a deleted one): the blocked tasks that name it in `dependsOn` wait for it
    /// again, as a restart derives (`blockedBy` is the dependencies still unfinished).
    /// Released tasks (queue, active) are not blocked again. No cycle can form: the requeue
    /// or the create was refused if the task's own dependencies lead back to it.
    pub(super) fn wait_again_for(&mut self, id: &Id) {
        let Some(naming) = self.named_by.get(id) else { return };
        let waits = |t: &Task| t.blocked_by.iter().flat_map(|ids| ids.iter()).any(|d| d == id);
        let dependents: Vec<Arc<Task>> = naming
            .iter()
            .filter_map(|dependent| self.tasks.get(dependent))
            .filter(|t| t.status == TaskStatus::Blocked && t.id != *id && !waits(t))
            .cloned()
            .collect();
        for old in dependents {
            let mut task = Task::clone(&old);
            let waiting: Vec<Id> = task
                .depends_on
                .iter()
                .flat_map(|ids| ids.iter())
                .filter(|d| self.tasks.contains_key(d))
                .cloned()
                .collect();
            task.blocked_by = non_empty(waiting);
            task.updated_at = self.now;
            self.put_task(task);
        }
    }

    /// Records a task's dependencies for the database when they were set or replaced.
    pub(super) fn record_dependencies(&mut self, task: &Task) {
        self.changes.push(Change::Dependencies(task.id.clone(), task.depends_on.clone()));
    }

    /// A `dependsOn` edit of a task that is not `queue` or `blocked`.
    pub(super) fn dependencies_fixed(task: &Task) -> SchedulerError {
        SchedulerError::Conflict {
            code: "invalid_transition",
            message: format!(
                "dependsOn can change only while a task is queue or blocked; task `{}` is {}",
                task.id,
                task.status.as_str()
            ),
            field: Some("dependsOn"),
        }
    }
}

fn non_empty(ids: Vec<Id>) -> Option<TaskIds> {
    (!ids.is_empty()).then(|| ids.into())
}
