use std::sync::Arc;

use crate::domain::{Activity, Agent, Attempt, Id, Task, TaskIds, Venture};

/// One state change the scheduler made, in the order it made them. Records are whole
/// snapshots (upserts), so applying a batch is idempotent and needs no read of the old row.
#[derive(Debug, Clone)]
pub enum Change {
    Venture(Arc<Venture>),
    /// Removes the venture and every task of it.
    DeleteVenture(Id),
    Task(Arc<Task>),
    DeleteTask(Id),
    Agent(Arc<Agent>),
    DeleteAgent(Id),
    Activity(Arc<Activity>),
    /// One claim of a task, at the claim and again at its end; it leaves with its task.
    Attempt(Arc<Attempt>),
    /// A task's dependencies, replaced whole (at its create, or by a `PATCH`); the task
    /// record carries them too, this is what writes their rows.
    Dependencies(Id, Option<TaskIds>),
}
