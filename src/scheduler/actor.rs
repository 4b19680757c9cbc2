//! The `TaskQueue` actor: the one owner of the scheduler's state.
//!
//! It runs on its own thread in its own actix `System`, handles one message at a time,
//! never awaits and never touches SQLite: each message's changes go to the persister's
//! channel as one envelope, which never blocks.
//!
//! Long polls park here as `Waiter`s in arrival order. After every change the actor offers
//! the claimable work to the waiters, oldest first; no timer re-scans the queue for work.
//! One timer, set for the earliest deadline, ends parked claims at their deadlines (their
//! callers wait on the answer alone).
//!
//! In `batch` durability a change's answer waits in `Progress` until the change is
//! committed, and the commit sends it: the caller is woken once per request.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::commands::{ClaimRequest, TaskView};
use super::progress::{HeldAnswer, HeldReply, Progress};
use super::state::SchedulerState;
use super::{ChangeFeed, ChangeLog, Clock, Durability, SchedulerError};
use crate::domain::{AgentStatus, Id, Priority, TaskStatus};

/// How often the actor expires leases and refreshes its gauges. Expiry pops from an
/// ordered index, so a tick with nothing due costs one comparison.
const TICK: Duration = Duration::from_millis(100);
/// Messages that may queue for the actor before senders wait.
const MAILBOX_CAPACITY: usize = 4096;

/// A claim's answer: the task, or none. In `batch` durability a task is answered once the
/// claim is committed.
pub(super) type ClaimAnswer = Result<Option<TaskView>, SchedulerError>;

/// A claim parked until work it may take appears or its deadline passes.
struct Waiter {
    request: ClaimRequest,
    reply: oneshot::Sender<ClaimAnswer>,
    deadline: Instant,
}

/// A claimed task held until the claim is committed. If its caller has gone by then, the
/// task goes back to the queue.
struct HeldClaim {
    reply: oneshot::Sender<ClaimAnswer>,
    view: TaskView,
    queue: Addr<TaskQueue>,
}

impl HeldReply for HeldClaim {
    fn is_abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn send(self: Box<Self>) {
        let HeldClaim { reply, view, queue } = *self;
        if let Err(Ok(Some(view))) = reply.send(Ok(Some(view))) {
            if let Some(release) = Release::of(&view) {
                queue.do_send(release);
            }
        }
    }
}

pub(super) struct TaskQueue {
    state: SchedulerState,
    persister: Box<dyn ChangeLog>,
    /// The persister's progress, where answers wait for their commit in `batch` durability.
    progress: Arc<Progress>,
    durability: Durability,
    /// This actor's address, for answers that come back undelivered after a commit.
    address: Option<Addr<TaskQueue>>,
    /// The timer that ends parked claims, and the deadline it is set for: one for all of
    /// them, since actix polls every future spawned in the context on each message.
    deadline_timer: Option<(Instant, SpawnHandle)>,
    events: Arc<dyn ChangeFeed>,
    clock: Arc<dyn Clock>,
    /// Past this many uncommitted changes, writes are refused until the persister catches up.
    max_pending: usize,
    /// Parked long polls, oldest first.
    waiters: VecDeque<Waiter>,
    /// Past this many parked long polls, a claim that would park answers 503.
    max_waiters: usize,
    /// Set once the server is stopping: a claim that finds nothing answers at once, so no
    /// agent waits out its long poll on a server that is going away.
    parking_closed: bool,
}

impl Actor for TaskQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.address = Some(ctx.address());
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
    pub(super) fn new(
        state: SchedulerState,
        persister: Box<dyn ChangeLog>,
        durability: Durability,
        events: Arc<dyn ChangeFeed>,
        clock: Arc<dyn Clock>,
        max_pending: usize,
        max_waiters: usize,
    ) -> TaskQueue {
        TaskQueue {
            state,
            progress: persister.progress(),
            persister,
            durability,
            address: None,
            deadline_timer: None,
            events,
            clock,
            max_pending,
            waiters: VecDeque::new(),
            max_waiters,
            parking_closed: false,
        }
    }

    fn tick(&mut self) {
        self.advance();
        self.settle_committed();
        self.drop_expired_waiters();
        self.serve_waiters_and_send();
        metrics::gauge!("mission_control_claim_waiters").set(self.waiters.len() as f64);
        metrics::gauge!("mission_control_persist_pending").set(self.progress.pending() as f64);
        for priority in Priority::ALL {
            metrics::gauge!("mission_control_queue_depth", "priority" => priority.as_str())
                .set(self.state.queue_depth(*priority) as f64);
        }
        for status in TaskStatus::ALL {
            metrics::gauge!("mission_control_tasks", "status" => status.as_str())
                .set(self.state.task_count(*status) as f64);
        }
        self.publish_fleet_gauges();
    }

    /// Dropping an expired waiter's sender tells its caller there is nothing for it.
    fn drop_expired_waiters(&mut self) {
        let now = Instant::now();
        self.waiters.retain(|w| !w.reply.is_closed() && w.deadline > now);
    }

    /// Makes sure the deadline timer fires by `deadline`.
    fn end_parked_claims_by(&mut self, deadline: Instant, ctx: &mut Context<Self>) {
        if let Some((set_for, handle)) = self.deadline_timer {
            if set_for <= deadline {
                return;
            }
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(deadline.saturating_duration_since(Instant::now()), |queue, ctx| {
            queue.deadline_timer = None;
            queue.drop_expired_waiters();
            if let Some(next) = queue.waiters.iter().map(|w| w.deadline).min() {
                queue.end_parked_claims_by(next, ctx);
            }
        });
        self.deadline_timer = Some((deadline, handle));
    }

    /// The gauges an operator alerts on: per venture, the fleet's agents, the oldest wait.
    /// Computed from what the state keeps anyway, never on the claim path.
    fn publish_fleet_gauges(&self) {
        for v in self.state.venture_gauges() {
            let venture = v.id.to_string();
            for (kind, value) in [("spent", v.spent), ("reserved", v.reserved), ("budget", v.budget)] {
                metrics::gauge!("mission_control_venture_capital", "venture" => venture.clone(), "kind" => kind)
                    .set(value.to_f64());
            }
            metrics::gauge!("mission_control_venture_queued", "venture" => venture.clone()).set(v.queued as f64);
            metrics::gauge!("mission_control_budget_held_tasks", "venture" => venture.clone())
                .set(v.budget_held as f64);
            metrics::counter!("mission_control_failures_total", "venture" => venture).absolute(v.failures);
        }
        let oldest = self
            .state
            .oldest_claimable_since()
            .map_or(0.0, |since| (self.state.now().0 - since.0).max(0) as f64 / 1000.0);
        metrics::gauge!("mission_control_oldest_queued_seconds").set(oldest);
        let agents = self.state.agent_counts();
        for status in AgentStatus::ALL {
            metrics::gauge!("mission_control_agents", "status" => status.as_str()).set(agents[*status as usize] as f64);
        }
    }

    fn advance(&mut self) {
        for outcome in self.state.advance(self.clock.now()) {
            metrics::counter!("mission_control_lease_expiries_total", "outcome" => outcome.as_str()).increment(1);
        }
    }

    /// Hands this message's changes to the event feed and the persister; returns their
    /// sequence number.
    fn send_changes(&mut self) -> Option<u64> {
        if !self.state.has_changes() {
            return None;
        }
        let changes = self.state.take_changes();
        let state = &self.state;
        self.events.publish(&changes, &|id| state.venture_record(id));
        let seq = self.persister.send(changes);
        self.state.changes_sent(seq);
        self.settle_committed();
        Some(seq)
    }

    /// Lets go of finished records the database now holds. Pruning reports come first:
    /// one sent before a commit must meet the records that commit wrote still held here.
    fn settle_committed(&mut self) {
        let committed = self.progress.committed();
        while let Some(pruned) = self.persister.try_pruned() {
            self.state.apply_pruned(pruned);
        }
        self.state.changes_committed(committed);
    }

    /// Offers claimable work to parked claims, oldest first, then sends the changes. A
    /// waiter whose client went away is skipped; one that vanished between the claim and
    /// the reply gets its task released again, which may serve the next waiter.
    fn serve_waiters_and_send(&mut self) -> Option<u64> {
        loop {
            let served = self.serve_waiters();
            let seq = self.send_changes();
            let mut released = false;
            for (reply, view) in served {
                released |= self.answer_claim(reply, Ok(Some(view)), seq);
            }
            if !released {
                return seq;
            }
        }
    }

    /// Sends a claim its answer, in `batch` durability once its change (`seq`) is committed.
    /// If the caller has gone, a task handed to it goes back to the queue; returns whether
    /// that happened now.
    fn answer_claim(&mut self, reply: oneshot::Sender<ClaimAnswer>, answer: ClaimAnswer, seq: Option<u64>) -> bool {
        if let (Ok(Some(view)), Some(seq), Durability::Batch, Some(queue)) =
            (&answer, seq, self.durability, &self.address)
        {
            let held = HeldClaim { reply, view: view.clone(), queue: queue.clone() };
            self.progress.hold(seq, Box::new(held));
            return false;
        }
        match reply.send(answer) {
            Err(Ok(Some(view))) => {
                let task = &view.task;
                task.assigned_to
                    .as_ref()
                    .is_some_and(|agent| self.state.release_unreturned(&task.id, agent, task.attempts))
            }
            _ => false,
        }
    }

    /// Claims for the waiters that can be served now; the caller replies once the changes
    /// have a sequence number.
    fn serve_waiters(&mut self) -> Vec<(oneshot::Sender<ClaimAnswer>, TaskView)> {
        let mut served = Vec::new();
        if self.waiters.is_empty() || !self.state.has_claimable() {
            return served;
        }
        let mut kept = VecDeque::with_capacity(self.waiters.len());
        while let Some(waiter) = self.waiters.pop_front() {
            if waiter.reply.is_closed() {
                continue;
            }
            if !self.state.has_claimable() {
                kept.push_back(waiter);
                continue;
            }
            match self.state.claim(waiter.request.clone()) {
                Ok(Some(view)) => served.push((waiter.reply, view)),
                Ok(None) => kept.push_back(waiter),
                Err(error) => {
                    let _ = waiter.reply.send(Err(error));
                }
            }
        }
        self.waiters = kept;
        served
    }

    /// Sends a change's answer, in `batch` durability once the change (`seq`) is committed.
    fn answer<R: Send + 'static>(
        &self,
        reply: oneshot::Sender<Result<R, SchedulerError>>,
        answer: Result<R, SchedulerError>,
        seq: Option<u64>,
    ) {
        match (seq, self.durability) {
            (Some(seq), Durability::Batch) if answer.is_ok() => {
                self.progress.hold(seq, Box::new(HeldAnswer { reply, answer }));
            }
            _ => {
                let _ = reply.send(answer);
            }
        }
    }

    fn refuse_if_backlogged(&self) -> Result<(), SchedulerError> {
        let progress = &self.progress;
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

/// A change to the state, answered on `reply`: in `batch` durability a success once it is
/// committed, so that the caller is woken once.
pub(super) struct Write<R> {
    pub(super) apply: WriteFn<R>,
    pub(super) reply: oneshot::Sender<Result<R, SchedulerError>>,
}

impl<R: Send + 'static> Message for Write<R> {
    type Result = ();
}

impl<R: Send + 'static> Handler<Write<R>> for TaskQueue {
    type Result = ();

    fn handle(&mut self, Write { apply, reply }: Write<R>, _: &mut Self::Context) {
        if let Err(error) = self.refuse_if_backlogged() {
            let _ = reply.send(Err(error));
            return;
        }
        self.advance();
        let result = apply(&mut self.state);
        let seq = self.serve_waiters_and_send();
        self.answer(reply, result, seq);
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

/// A claim: answered at once, or parked for up to `wait` when nothing is eligible.
pub(super) struct Claim {
    pub(super) request: ClaimRequest,
    pub(super) wait: Duration,
    pub(super) reply: oneshot::Sender<ClaimAnswer>,
}

impl Message for Claim {
    type Result = ();
}

impl Handler<Claim> for TaskQueue {
    type Result = ();

    fn handle(&mut self, Claim { request, wait, reply }: Claim, ctx: &mut Self::Context) {
        if let Err(error) = self.refuse_if_backlogged() {
            let _ = reply.send(Err(error));
            return;
        }
        self.advance();
        let answer = self.state.claim(request.clone());
        if matches!(answer, Ok(None)) {
            // A claim that finds nothing, or waits, still shows the agent is alive.
            self.state.agent_seen(&request.agent_id);
        }
        let answer = match answer {
            Ok(None) if !wait.is_zero() && !self.parking_closed => {
                if self.waiters.len() >= self.max_waiters {
                    Err(SchedulerError::Unavailable {
                        message: format!("{} claims are already waiting for work; retry shortly", self.waiters.len()),
                    })
                } else {
                    let deadline = Instant::now() + wait;
                    self.waiters.push_back(Waiter { request, reply, deadline });
                    // The waiter's caller waits on its answer alone, so the deadline is kept here.
                    self.end_parked_claims_by(deadline, ctx);
                    self.serve_waiters_and_send();
                    return;
                }
            }
            other => other,
        };
        let seq = self.serve_waiters_and_send();
        if self.answer_claim(reply, answer, seq) {
            self.serve_waiters_and_send();
        }
    }
}

/// Gives back a claimed task whose answer never reached its agent.
pub(super) struct Release {
    pub(super) task_id: Id,
    pub(super) agent_id: Id,
    pub(super) attempt: u32,
}

impl Release {
    /// Gives back a task handed to a claim: to its holder, at its attempt.
    pub(super) fn of(view: &TaskView) -> Option<Release> {
        let task = &view.task;
        let agent_id = task.assigned_to.clone()?;
        Some(Release { task_id: task.id.clone(), agent_id, attempt: task.attempts })
    }
}

impl Message for Release {
    type Result = ();
}

impl Handler<Release> for TaskQueue {
    type Result = ();

    fn handle(&mut self, Release { task_id, agent_id, attempt }: Release, _: &mut Self::Context) {
        self.advance();
        if self.state.release_unreturned(&task_id, &agent_id, attempt) {
            metrics::counter!("mission_control_claims_released_total").increment(1);
        }
        self.serve_waiters_and_send();
    }
}

/// The server is stopping: every parked claim is answered "nothing" now (dropping its
/// sender says so), and no claim parks from here on.
pub(super) struct CloseParking;

impl Message for CloseParking {
    type Result = ();
}

impl Handler<CloseParking> for TaskQueue {
    type Result = ();

    fn handle(&mut self, _: CloseParking, _: &mut Self::Context) {
        self.parking_closed = true;
        self.waiters.clear();
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
