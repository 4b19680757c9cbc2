//! Time: tasks delayed by `runAt` (by the client, or by a failed attempt's back-off) and
//! idempotency keys.
//!
//! A delayed task is `blocked` and sits in `delayed`, ordered by its time, which the actor
//! pops on its tick like the leases: no scan, no timer per task. Idempotency keys of
//! unfinished tasks are in `keys`; those of finished tasks are in the database, asked for
//! with `KeyInHistory` and trusted only at the history epoch they were read at, so a key is
//! never free in one place while taken in the other.

use std::collections::HashSet;
use std::sync::Arc;

use super::SchedulerState;
use crate::domain::{Id, Task, TaskStatus};
use crate::scheduler::commands::{HistoryRecord, SchedulerError};

/// The longest back-off after a failed attempt, in seconds.
pub const MAX_RETRY_DELAY_SECONDS: u64 = 3_600;

impl SchedulerState {
    /// Whether the task's `runAt` is still to come.
    pub(super) fn is_delayed(&self, task: &Task) -> bool {
        task.run_at.is_some_and(|at| at > self.now)
    }

    /// Sets a task that waits to `queue`, or to `blocked` while a dependency or its time
    /// holds it. A blocked task waits for every unfinished dependency it names, as a
    /// restart derives (`blockedBy` is not stored), also one it was released from before.
    pub(super) fn hold(&self, task: &mut Task) {
        if task.blocked_by.is_none() && !self.is_delayed(task) {
            task.status = TaskStatus::Queue;
            return;
        }
        let waiting: Vec<Id> = task
            .depends_on
            .iter()
            .flat_map(|ids| ids.iter())
            .filter(|id| self.tasks.contains_key(id))
            .cloned()
            .collect();
        task.blocked_by = (!waiting.is_empty()).then(|| waiting.into());
        task.status = TaskStatus::Blocked;
    }

    /// Sets a task that a failed attempt sends back to the queue to wait out its back-off:
    /// `retryDelaySeconds × 2^(attempts − 1)`, at most an hour.
    pub(super) fn back_off(&self, task: &mut Task) {
        if task.retry_delay_seconds == 0 {
            return;
        }
        let doublings = task.attempts.saturating_sub(1).min(32);
        let delay = (u64::from(task.retry_delay_seconds) << doublings).min(MAX_RETRY_DELAY_SECONDS);
        task.run_at = Some(self.now.plus_seconds(delay as u32));
        self.hold(task);
    }

    /// Releases the delayed tasks whose time has come: `queue` (and claimable) unless a
    /// dependency still holds them.
    pub(super) fn release_due(&mut self) {
        while let Some((at, id)) = self.delayed.first().cloned() {
            if at > self.now {
                break;
            }
            self.delayed.pop_first();
            let Some(old) = self.tasks.get(&id).cloned() else { continue };
            if old.status != TaskStatus::Blocked || old.blocked_by.is_some() {
                continue;
            }
            let mut task = Task::clone(&old);
            task.status = TaskStatus::Queue;
            task.updated_at = self.now;
            let task = self.put_task(task);
            let title = format!("Task unblocked: {}", task.title);
            let description = format!("its runAt, {at}, came");
            self.log("task_unblocked", title, Some(description), Some(&task.venture_id), Some(&task.id), None);
        }
    }

    /// The venture's task with this idempotency key, if there is one: in memory, among the
    /// records not yet committed, or in the database record the caller brought.
    pub(super) fn task_with_key(
        &self,
        venture_id: &Id,
        key: &Arc<str>,
        history: Option<&HistoryRecord>,
    ) -> Result<Option<Arc<Task>>, SchedulerError> {
        if let Some(id) = self.keys.get(&(venture_id.clone(), key.clone())) {
            return Ok(self.tasks.get(id).cloned());
        }
        // Records not yet committed, the latest of each task first (an id's later record,
        // or its delete, supersedes the earlier ones).
        let has_key = |t: &Task| t.venture_id == *venture_id && t.idempotency_key.as_ref() == Some(key);
        let mut seen = HashSet::new();
        let unsent = self.unsent.iter().rev().map(|(id, record)| (id, record));
        let unwritten = self.unwritten.iter().map(|(id, (record, _))| (id, record));
        for (id, record) in unsent.chain(unwritten) {
            if seen.insert(id) {
                if let Some(task) = record.as_ref().filter(|t| has_key(t)) {
                    return Ok(Some(task.clone()));
                }
            }
        }
        let record = history
            .filter(|record| record.epoch == self.history_epoch)
            .and_then(|record| record.keys.get(&(venture_id.clone(), key.clone())));
        match record {
            // The database's row, unless this scheduler changed or deleted it since (then the
            // pending record above, or its absence, is the truth).
            Some(Some(task)) if !self.is_pending(&task.id) && !self.tasks.contains_key(&task.id) => {
                Ok(Some(task.clone()))
            }
            Some(_) => Ok(None),
            None => Err(SchedulerError::KeyInHistory {
                venture_id: venture_id.clone(),
                key: key.clone(),
                epoch: self.history_epoch,
            }),
        }
    }

    /// Whether a finished task's record is not committed yet (changed or deleted).
    fn is_pending(&self, id: &Id) -> bool {
        self.unsent.iter().any(|(pending, _)| pending == id) || self.unwritten.contains_key(id)
    }

    /// Records the task in the indexes of time and identity (called with `index`).
    pub(super) fn index_time_and_key(&mut self, task: &Task) {
        if let Some(key) = &task.idempotency_key {
            self.keys.insert((task.venture_id.clone(), key.clone()), task.id.clone());
        }
        if task.status == TaskStatus::Blocked {
            if let Some(at) = task.run_at.filter(|at| *at > self.now) {
                self.delayed.insert((at, task.id.clone()));
            }
        }
    }

    /// The reverse of `index_time_and_key` (called with `unindex`).
    pub(super) fn unindex_time_and_key(&mut self, task: &Task) {
        if let Some(key) = &task.idempotency_key {
            self.keys.remove(&(task.venture_id.clone(), key.clone()));
        }
        if let Some(at) = task.run_at {
            self.delayed.remove(&(at, task.id.clone()));
        }
    }
}
