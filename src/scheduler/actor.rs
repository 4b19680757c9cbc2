//! The `TaskQueue` actor: the one owner of the scheduler's state.
//!
//! It runs on its own thread in its own actix `System`, handles one message at a time,
//! never awaits and never touches SQLite: each message's changes go to the persister's
//! channel as one envelope, which never blocks.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::state::SchedulerState;
use super::{Clock, SchedulerError};
use crate::domain::{Priority, TaskStatus};
use crate::persist::PersisterHandle;

/// How often the actor expires leases and refreshes its gauges. Expiry pops from an
/// ordered index, so a tick with nothing due costs one comparison.
const TICK: Duration = Duration::from_millis(100);
/// Messages that may queue for the actor before senders wait.
const MAILBOX_CAPACITY: usize = 4096;

pub(super) struct TaskQueue {
    pub(super) state: SchedulerState,
    pub(super) persister: PersisterHandle,
    pub(super) clock: Arc<dyn Clock>,
    /// Past this many uncommitted changes, writes are refused until the persister catches up.
    pub(super) max_pending: usize,
}

impl Actor for TaskQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(TICK, |queue, _| queue.tick());
        self.tick();
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Everything handed to the persister is committed before the system stops.
        self.persister.shutdown();
        System::current().stop();
    }
}

impl TaskQueue {
    fn tick(&mut self) {
        self.advance();
        self.send_changes();
        for priority in Priority::ALL {
            metrics::gauge!("mission_control_queue_depth", "priority" => priority.as_str())
                .set(self.state.queue_depth(*priority) as f64);
        }
        for status in TaskStatus::ALL {
            metrics::gauge!("mission_control_tasks", "status" => status.as_str())
                .set(self.state.task_count(*status) as f64);
        }
    }

    fn advance(&mut self) {
        for outcome in self.state.advance(self.clock.now()) {
            metrics::counter!("mission_control_lease_expiries_total", "outcome" => outcome.as_str()).increment(1);
        }
    }

    /// Hands this message's changes to the persister; returns their sequence number.
    fn send_changes(&mut self) -> Option<u64> {
        if !self.state.has_changes() {
            return None;
        }
        Some(self.persister.send(self.state.take_changes()))
    }

    fn refuse_if_backlogged(&self) -> Result<(), SchedulerError> {
        let progress = self.persister.progress();
        if !progress.is_writable() {
            let reason = progress.last_error().unwrap_or_else(|| "unknown error".into());
            return Err(SchedulerError::Unavailable {
                message: format!("the database is not taking writes ({reason}); reads still work, retry later"),
            });
        }
        let pending = progress.pending();
        if pending > self.max_pending {
            return Err(SchedulerError::Unavailable {
                message: format!("{pending} changes are waiting to be written; retry shortly"),
            });
        }
        Ok(())
    }
}

type WriteFn<R> = Box<dyn FnOnce(&mut SchedulerState) -> Result<R, SchedulerError> + Send>;
type ReadFn<R> = Box<dyn FnOnce(&SchedulerState) -> R + Send>;

/// A change to the state. Answers the result and, when anything changed, the sequence
/// number the persister will publish once it is committed.
pub(super) struct Write<R>(pub(super) WriteFn<R>);

impl<R: Send + 'static> Message for Write<R> {
    type Result = Result<(R, Option<u64>), SchedulerError>;
}

impl<R: Send + 'static> Handler<Write<R>> for TaskQueue {
    type Result = Result<(R, Option<u64>), SchedulerError>;

    fn handle(&mut self, Write(apply): Write<R>, _: &mut Self::Context) -> Self::Result {
        self.refuse_if_backlogged()?;
        self.advance();
        let result = apply(&mut self.state);
        let seq = self.send_changes();
        result.map(|value| (value, seq))
    }
}

/// A look at the state; answers with shared snapshots, so encoding happens elsewhere.
pub(super) struct Read<R>(pub(super) ReadFn<R>);

impl<R: Send + 'static> Message for Read<R> {
    type Result = R;
}

impl<R: Send + 'static> Handler<Read<R>> for TaskQueue {
    type Result = MessageResult<Read<R>>;

    fn handle(&mut self, Read(look): Read<R>, _: &mut Self::Context) -> Self::Result {
        MessageResult(look(&self.state))
    }
}

/// Stops the actor after the messages already in its mailbox.
pub(super) struct Stop;

impl Message for Stop {
    type Result = ();
}

impl Handler<Stop> for TaskQueue {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        self.send_changes();
        ctx.stop();
    }
}
