//! The scheduler: the `TaskQueue` actor that owns all live state, and `Scheduler`, the
//! cloneable handle the rest of the process uses (one async method per operation).
//!
//! Architecture invariant: nothing outside this module mutates tasks, ventures or agents.

mod actor;
mod change;
pub mod commands;
mod progress;
pub mod queued_index;
mod state;

pub use change::Change;
pub use commands::*;
pub use progress::Progress;
pub use state::{CompletionOutcome, Pruned, SchedulerConfig, SchedulerState, Snapshot, MAX_DEPENDENCIES};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::domain::{Activity, Agent, Id, Millis, Task, Venture};
use actor::{Claim, ClaimAnswer, CloseParking, Read, Release, Stop, TaskQueue, Write};

/// Where the scheduler gets the time; tests substitute their own.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

/// How the handle waits for the disk before it answers a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// A reply that reports a change waits until it is committed: `kill -9` loses nothing acknowledged.
    Batch,
    /// Replies do not wait; a crash can lose at most the last flush interval.
    Async,
}

/// Where the scheduler's changes go: the persister, which keeps the record. The actor owns
/// it; it must never block.
pub trait ChangeLog: Send + 'static {
    /// How far the record has caught up.
    fn progress(&self) -> Arc<Progress>;
    /// Hands over one message's changes; returns their envelope's sequence number.
    fn send(&self, changes: Vec<Change>) -> u64;
    /// The next report of what retention pruned from the record, if any.
    fn try_pruned(&self) -> Option<Pruned>;
    /// Waits until everything sent is in the record.
    fn shutdown(&mut self);
}

/// Who else hears of every change as it is made: the live event feed. `publish` must not
/// block.
pub trait ChangeFeed: Send + Sync + 'static {
    /// `venture_of` finds a venture by id as the change left it, so that a task's event can
    /// show its venture as the REST API does.
    fn publish(&self, changes: &[Change], venture_of: &dyn Fn(&Id) -> Option<Arc<Venture>>);
}

/// Where the scheduler reads the finished tasks it no longer holds: the database.
/// Called on a blocking thread, after every change made before the call is committed.
pub trait TaskHistory: Send + Sync + 'static {
    /// The task's record, if the database holds it.
    fn finished_task(&self, id: &Id) -> Result<Option<Task>, String>;

    /// The venture's task with this idempotency key, if the database holds one.
    fn task_with_key(&self, venture_id: &Id, key: &str) -> Result<Option<Task>, String>;
}

/// How often an operation on a finished task reads its record again when finished tasks
/// keep changing under it, before it gives up with a 503.
const HISTORY_TRIES: usize = 8;

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        Millis::now()
    }
}

/// How the handle waits for the disk.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub config: SchedulerConfig,
    pub durability: Durability,
    /// Past this many uncommitted changes, writes answer 503 until the persister catches up.
    pub max_pending: usize,
    /// How long a `batch` reply waits for its commit before answering 503.
    pub commit_timeout: Duration,
    /// Past this many parked long polls, a claim that would wait answers 503.
    pub max_waiters: usize,
}

/// The handle to the running scheduler.
#[derive(Clone)]
pub struct Scheduler {
    addr: Addr<TaskQueue>,
    progress: Arc<Progress>,
    durability: Durability,
    commit_timeout: Duration,
    history: Arc<dyn TaskHistory>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Scheduler {
    /// Starts the actor on its own thread with the loaded state; it feeds `persister` and
    /// publishes every change to `events`.
    pub fn start(
        options: SchedulerOptions,
        snapshot: Snapshot,
        persister: impl ChangeLog,
        history: Arc<dyn TaskHistory>,
        events: Arc<dyn ChangeFeed>,
        clock: Arc<dyn Clock>,
    ) -> Scheduler {
        let progress = persister.progress();
        let state = SchedulerState::new(options.config, snapshot, clock.now());
        let (addr_sender, addr_receiver) = std::sync::mpsc::channel();
        let (max_pending, max_waiters, durability) = (options.max_pending, options.max_waiters, options.durability);
        let thread = std::thread::Builder::new()
            .name("task-queue".into())
            .spawn(move || {
                let system = System::new();
                system.block_on(async move {
                    let queue =
                        TaskQueue::new(state, Box::new(persister), durability, events, clock, max_pending, max_waiters);
                    let _ = addr_sender.send(queue.start());
                });
                if let Err(error) = system.run() {
                    tracing::error!(%error, "the scheduler's system stopped with an error");
                }
            })
            .expect("spawning the scheduler thread");
        let addr = addr_receiver.recv().expect("the scheduler thread hands back its address");
        Scheduler {
            addr,
            progress,
            durability: options.durability,
            commit_timeout: options.commit_timeout,
            history,
            thread: Arc::new(Mutex::new(Some(thread))),
        }
    }

    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Answers every parked long poll with "nothing" (204) at once and parks no more
    /// claims: the first step of stopping, so that requests in flight finish quickly.
    pub async fn close_parking(&self) {
        let _ = self.addr.send(CloseParking).await;
    }

    /// Stops the actor and waits until every accepted change is committed.
    pub async fn shutdown(&self) {
        let _ = self.addr.send(Stop).await;
        let thread = self.thread.lock().expect("thread lock").take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Runs a change in the actor; in `batch` durability its answer comes once it is committed.
    async fn write<R: Send + 'static>(
        &self,
        apply: impl FnOnce(&mut SchedulerState) -> Result<R, SchedulerError> + Send + 'static,
    ) -> Result<R, SchedulerError> {
        let (reply, receiver) = oneshot::channel();
        self.post(Write { apply: Box::new(apply), reply }).await?;
        self.answer(receiver, Duration::ZERO).await?.map_err(|_| stopping())?
    }

    /// Waits for the answer to a posted message, which in `batch` durability comes with its
    /// commit: for `wait` (how long a claim may park) and then the commit timeout at most.
    /// `Err` inside when the actor dropped the answer's sender.
    async fn answer<T>(
        &self,
        receiver: impl std::future::Future<Output = Result<T, oneshot::error::RecvError>>,
        wait: Duration,
    ) -> Result<Result<T, oneshot::error::RecvError>, SchedulerError> {
        match self.durability {
            Durability::Batch => {
                tokio::time::timeout(wait + self.commit_timeout, receiver).await.map_err(|_| self.not_yet_durable())
            }
            Durability::Async => Ok(receiver.await),
        }
    }

    /// Puts a message whose answer comes on a channel of its own in the actor's mailbox,
    /// waiting only while the mailbox is full.
    async fn post<M>(&self, message: M) -> Result<(), SchedulerError>
    where
        M: Message<Result = ()> + Send + 'static,
        TaskQueue: Handler<M>,
    {
        match self.addr.try_send(message) {
            Ok(()) => Ok(()),
            Err(SendError::Full(message)) => self.addr.send(message).await.map_err(|_| stopping()),
            Err(SendError::Closed(_)) => Err(stopping()),
        }
    }

    async fn read<R: Send + 'static>(
        &self,
        look: impl FnOnce(&SchedulerState) -> R + Send + 'static,
    ) -> Result<R, SchedulerError> {
        self.addr.send(Read(Box::new(look))).await.map_err(|_| stopping())
    }

    /// A write on one task, which may be finished: when the actor answers that the task is
    /// not in memory, its record is read from the database and the write runs again with it.
    async fn write_task<R: Send + 'static>(
        &self,
        apply: impl Fn(&mut SchedulerState, Option<&HistoryRecord>) -> Result<R, SchedulerError> + Clone + Send + 'static,
    ) -> Result<R, SchedulerError> {
        let mut record: Option<HistoryRecord> = None;
        for _ in 0..HISTORY_TRIES {
            let apply = apply.clone();
            let given = record.clone();
            match self.write(move |s| apply(s, given.as_ref())).await {
                Err(SchedulerError::InHistory { ids, epoch }) => {
                    let read = self.read_history(ids, epoch).await?;
                    record = Some(match record.take() {
                        Some(earlier) => earlier.merge(read),
                        None => read,
                    });
                }
                Err(SchedulerError::KeyInHistory { venture_id, key, epoch }) => {
                    let read = self.read_keyed(venture_id, key, epoch).await?;
                    record = Some(match record.take() {
                        Some(earlier) => earlier.merge(read),
                        None => read,
                    });
                }
                other => return other,
            }
        }
        Err(history_kept_changing())
    }

    /// Reads a finished task's record. No wait for the disk: the scheduler answers for a
    /// finished task itself until its change is committed.
    async fn read_history(&self, ids: Vec<Id>, epoch: u64) -> Result<HistoryRecord, SchedulerError> {
        let history = self.history.clone();
        let tasks = tokio::task::spawn_blocking(move || {
            ids.into_iter()
                .map(|id| history.finished_task(&id).map(|task| (id, task.map(Arc::new))))
                .collect::<Result<HashMap<_, _>, String>>()
        })
        .await
        .map_err(|e| unavailable_history(e.to_string()))?
        .map_err(unavailable_history)?;
        Ok(HistoryRecord { epoch, tasks, keys: HashMap::new() })
    }

    /// Reads the venture's task with an idempotency key from the database.
    async fn read_keyed(&self, venture_id: Id, key: Arc<str>, epoch: u64) -> Result<HistoryRecord, SchedulerError> {
        let history = self.history.clone();
        let (lookup_venture, lookup_key) = (venture_id.clone(), key.clone());
        let task = tokio::task::spawn_blocking(move || history.task_with_key(&lookup_venture, &lookup_key))
            .await
            .map_err(|e| unavailable_history(e.to_string()))?
            .map_err(unavailable_history)?;
        let keys = HashMap::from([((venture_id, key), task.map(Arc::new))]);
        Ok(HistoryRecord { epoch, tasks: HashMap::new(), keys })
    }

    /// The list key of a task, from memory or the database; `None` when there is no such task.
    pub async fn list_key(&self, id: Id) -> Result<Option<ListKey>, SchedulerError> {
        let lookup = id.clone();
        match self.read(move |s| s.list_key(&lookup)).await? {
            Ok(key) => Ok(Some(key)),
            Err(SchedulerError::InHistory { ids, epoch }) => {
                let record = self.read_history(ids, epoch).await?;
                Ok(record.tasks.into_values().flatten().next().map(|t| (t.created_at, t.id.clone())))
            }
            Err(SchedulerError::NotFound { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    async fn wait_durable(&self, seq: u64) -> Result<(), SchedulerError> {
        if self.progress.wait_committed(seq, self.commit_timeout).await {
            return Ok(());
        }
        Err(self.not_yet_durable())
    }

    fn not_yet_durable(&self) -> SchedulerError {
        let reason = self.progress.last_error().unwrap_or_else(|| "the write backlog is large".into());
        SchedulerError::Unavailable {
            message: format!(
                "the change was accepted but is not yet on disk ({reason}); it will be written once the store recovers"
            ),
        }
    }

    // ----- ventures -----

    pub async fn list_ventures(&self) -> Result<Vec<VentureView>, SchedulerError> {
        self.read(|s| s.list_ventures()).await
    }

    pub async fn get_venture(&self, id: Id) -> Result<VentureView, SchedulerError> {
        self.read(move |s| s.get_venture(&id)).await?
    }

    pub async fn create_venture(&self, new: NewVenture) -> Result<VentureView, SchedulerError> {
        self.write(move |s| s.create_venture(new)).await
    }

    pub async fn update_venture(&self, id: Id, patch: VenturePatch) -> Result<VentureView, SchedulerError> {
        self.write(move |s| s.update_venture(&id, patch)).await
    }

    pub async fn delete_venture(&self, id: Id) -> Result<VentureView, SchedulerError> {
        self.write(move |s| s.delete_venture(&id)).await
    }

    // ----- tasks -----

    /// What memory answers for in a listing, oldest first (sorted here, outside the actor).
    pub async fn list_in_memory(
        &self,
        filter: TaskFilter,
        after: Option<ListKey>,
        order: ListOrder,
    ) -> Result<MemoryListing, SchedulerError> {
        let gathered = self.read(move |s| s.gather_listing(&filter, after.as_ref(), order)).await?;
        let mut listing = gathered.into_listing();
        listing.tasks.sort_unstable_by(|a, b| (a.task.created_at, &a.task.id).cmp(&(b.task.created_at, &b.task.id)));
        if order == ListOrder::Desc {
            listing.tasks.reverse();
        }
        Ok(listing)
    }

    pub async fn get_task(&self, id: Id) -> Result<TaskView, SchedulerError> {
        let mut record: Option<HistoryRecord> = None;
        for _ in 0..HISTORY_TRIES {
            let (lookup, given) = (id.clone(), record.take());
            match self.read(move |s| s.get_task_in(&lookup, given.as_ref())).await? {
                Err(SchedulerError::InHistory { ids, epoch }) => record = Some(self.read_history(ids, epoch).await?),
                other => return other,
            }
        }
        Err(history_kept_changing())
    }

    /// Creates a task; `false` when the venture's task with the create's idempotency key is
    /// answered instead. That answer, like any other, is sent only once what it shows is
    /// durable (a concurrent create of the key may not be committed yet).
    pub async fn create_task(&self, new: NewTask) -> Result<(TaskView, bool), SchedulerError> {
        let (task, created) = self.write_task(move |s, history| s.create_task(new.clone(), history)).await?;
        if !created && self.durability == Durability::Batch {
            self.wait_all_durable().await?;
        }
        Ok((task, created))
    }

    pub async fn update_task(&self, id: Id, patch: TaskPatch) -> Result<TaskView, SchedulerError> {
        self.write_task(move |s, history| s.update_task(&id, patch.clone(), history)).await
    }

    pub async fn cancel_task(&self, request: CancelRequest) -> Result<TaskView, SchedulerError> {
        self.write_task(move |s, history| s.cancel_task(request.clone(), history)).await
    }

    pub async fn delete_task(&self, id: Id) -> Result<TaskView, SchedulerError> {
        self.write_task(move |s, history| s.delete_task(&id, history)).await
    }

    /// Claims the best eligible task for the agent. With a `wait`, a claim that finds
    /// nothing parks in the actor until work appears or the wait runs out (then `None`).
    pub async fn claim(&self, request: ClaimRequest, wait: Duration) -> Result<Option<TaskView>, SchedulerError> {
        let started = Instant::now();
        let (reply, receiver) = oneshot::channel();
        let mut pending = PendingClaim { addr: self.addr.clone(), receiver };
        let result = self.claim_inner(request, wait, reply, &mut pending).await;
        let label = match &result {
            Ok(Some(_)) => "claimed",
            Ok(None) => "empty",
            Err(_) => "error",
        };
        metrics::counter!("mission_control_claims_total", "result" => label).increment(1);
        let histogram = if wait.is_zero() {
            "mission_control_claim_duration_seconds"
        } else {
            "mission_control_long_poll_duration_seconds"
        };
        metrics::histogram!(histogram).record(started.elapsed().as_secs_f64());
        result
    }

    async fn claim_inner(
        &self,
        request: ClaimRequest,
        wait: Duration,
        reply: oneshot::Sender<ClaimAnswer>,
        pending: &mut PendingClaim,
    ) -> Result<Option<TaskView>, SchedulerError> {
        self.post(Claim { request, wait, reply }).await?;
        // The actor ends a parked claim at its deadline; in `batch` durability a task comes
        // once the claim is committed.
        match self.answer(&mut pending.receiver, wait).await? {
            Ok(answer) => answer,
            // The actor dropped the waiter at its deadline, or stopped.
            Err(_) => Ok(None),
        }
    }

    pub async fn complete(&self, report: CompleteRequest) -> Result<TaskView, SchedulerError> {
        let (view, outcome) = self.write_task(move |s, history| s.complete(report.clone(), history)).await?;
        metrics::counter!("mission_control_completions_total", "outcome" => outcome.as_str()).increment(1);
        Ok(view)
    }

    pub async fn heartbeat(&self, beat: HeartbeatRequest) -> Result<TaskView, SchedulerError> {
        self.write_task(move |s, history| s.heartbeat(beat.clone(), history)).await
    }

    // ----- agents -----

    pub async fn list_agents(&self) -> Result<Vec<Arc<Agent>>, SchedulerError> {
        self.read(|s| s.list_agents()).await
    }

    pub async fn get_agent(&self, id: Id) -> Result<Arc<Agent>, SchedulerError> {
        self.read(move |s| s.get_agent(&id)).await?
    }

    pub async fn upsert_agent(&self, id: Option<Id>, fields: AgentFields) -> Result<AgentUpserted, SchedulerError> {
        self.write(move |s| s.upsert_agent(id, fields)).await
    }

    /// The agent is alive: seen now, `online` again if it was `offline`.
    pub async fn agent_heartbeat(&self, id: Id) -> Result<Arc<Agent>, SchedulerError> {
        self.write(move |s| s.agent_heartbeat(&id)).await
    }

    pub async fn update_agent(&self, id: Id, fields: AgentFields) -> Result<Arc<Agent>, SchedulerError> {
        self.write(move |s| s.update_agent(&id, fields)).await
    }

    pub async fn delete_agent(&self, id: Id) -> Result<Arc<Agent>, SchedulerError> {
        self.write(move |s| s.delete_agent(&id)).await
    }

    // ----- activities -----

    pub async fn create_activity(&self, new: NewActivity) -> Result<Arc<Activity>, SchedulerError> {
        self.write_task(move |s, history| s.create_activity(new.clone(), history)).await
    }

    /// Waits until everything accepted so far is committed, in either durability mode:
    /// read-your-writes for the activity log, which is read from SQLite.
    pub async fn wait_all_durable(&self) -> Result<(), SchedulerError> {
        // A round trip through the mailbox: every message sent before this one is handled.
        self.read(|_| ()).await?;
        self.wait_durable(self.progress.sent()).await
    }
}

/// A claim in flight. If it is dropped (the client went away, or the commit took too long)
/// before its answer was taken, a task the actor handed over is given back instead of
/// staying with an agent that never learned of it: here if the answer came, or by the
/// commit that finds nobody to send it to.
struct PendingClaim {
    addr: Addr<TaskQueue>,
    receiver: oneshot::Receiver<ClaimAnswer>,
}

impl Drop for PendingClaim {
    fn drop(&mut self) {
        self.receiver.close();
        if let Ok(Ok(Some(view))) = self.receiver.try_recv() {
            if let Some(release) = Release::of(&view) {
                self.addr.do_send(release);
            }
        }
    }
}

fn history_kept_changing() -> SchedulerError {
    SchedulerError::Unavailable { message: "finished tasks kept changing while the task was read; retry".into() }
}

fn unavailable_history(error: String) -> SchedulerError {
    tracing::error!(%error, "reading a finished task failed");
    SchedulerError::Unavailable { message: "reading the task from the database failed; retry shortly".into() }
}

fn stopping() -> SchedulerError {
    SchedulerError::Unavailable { message: "the server is shutting down".into() }
}
