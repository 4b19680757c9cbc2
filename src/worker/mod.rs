//! `mission-control work -- COMMAND`: any command becomes an agent.
//!
//! One dispatcher claims tasks (a long poll) while a task slot is free; each claimed task
//! gets its own runner, which starts the command, heartbeats on its own timer, and reports
//! the outcome, retrying until the report is accepted or the lease is surely gone.
//!
//! - `child`: the command in its own process group, bounded output capture, the stop.
//! - `outcome`: exit status and output → the fields of a report.
//! - `tail`: the ring buffer that keeps only the last 256 KiB of a stream.

mod child;
mod outcome;
mod tail;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{ClaimRequest, ClaimedTask, Client, ClientError, HeartbeatRequest, Report};
use crate::config::WorkArgs;
use child::{Invocation, StopReason};
use outcome::Outcome;

/// The longest a claim waits for work on the server before asking again.
const CLAIM_WAIT: Duration = Duration::from_secs(25);
/// Waiting out an unreachable or overloaded server: the first pause and the longest.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Past the lease's last known end by this much, an unanswered report is given up: by then
/// the server, once back, has expired the lease and handed the task out again.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How the worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `--max-tasks`, `--idle-exit` or a first signal, every report sent: exit 0.
    Done,
    /// A second signal stopped the running commands: exit 1.
    Stopped,
}

/// Where the worker is in its shutdown; signals move it forward only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Shutdown {
    Running,
    /// First signal: claim nothing more, let running commands finish and report them.
    Draining,
    /// Second signal: stop the running commands too.
    Stopping,
}

/// What every task runner shares.
struct Worker {
    client: Client,
    agent_id: String,
    program: String,
    args: Vec<String>,
    lease_seconds: u32,
    kill_grace: Duration,
    shutdown: watch::Receiver<Shutdown>,
    /// When a task was last claimed or finished: the start of an idle stretch.
    last_busy: Mutex<Instant>,
}

/// Claims and runs tasks until a limit, a signal or a refusal ends it.
pub async fn run(args: WorkArgs) -> anyhow::Result<Exit> {
    let (program, command_args) = args.command.split_first().expect("clap requires a command");
    let client = Client::new(&args.url, args.api_token.clone())?;
    let agent_id = args.agent_id.clone().unwrap_or_else(default_agent_id);
    let (shutdown_sender, shutdown) = watch::channel(Shutdown::Running);
    listen_for_signals(shutdown_sender)?;
    let worker = Arc::new(Worker {
        client,
        agent_id: agent_id.clone(),
        program: program.clone(),
        args: command_args.to_vec(),
        lease_seconds: args.lease_seconds,
        kill_grace: Duration::from_secs(args.kill_grace),
        shutdown: shutdown.clone(),
        last_busy: Mutex::new(Instant::now()),
    });
    tracing::info!(agent = %agent_id, url = %worker.client.url(), concurrency = args.concurrency, "worker started");
    let request = ClaimRequest {
        agent_id,
        agent_name: args.agent_name.clone(),
        venture_id: args.venture.clone(),
        tags: args.tags.clone(),
        lease_seconds: args.lease_seconds,
        wait_ms: 0,
    };
    let refusal = dispatch(&worker, &args, request).await;
    let stopped = *shutdown.borrow() == Shutdown::Stopping;
    match refusal {
        Some(error) => Err(anyhow::anyhow!("the server refused a claim: {error}")),
        None if stopped => Ok(Exit::Stopped),
        None => Ok(Exit::Done),
    }
}

/// Claims while there are free slots and no reason to stop; returns once every running
/// task has been reported, with the refusal that ended claiming, if any.
async fn dispatch(worker: &Arc<Worker>, args: &WorkArgs, mut request: ClaimRequest) -> Option<ClientError> {
    let slots = Arc::new(Semaphore::new(args.concurrency as usize));
    let mut running = JoinSet::new();
    let mut shutdown = worker.shutdown.clone();
    let idle_exit = args.idle_exit.map(Duration::from_secs);
    let mut claimed = 0_u64;
    let mut backoff = Backoff::default();
    let mut refusal = None;
    loop {
        while running.try_join_next().is_some() {}
        if *shutdown.borrow_and_update() > Shutdown::Running || args.max_tasks.is_some_and(|max| claimed >= max) {
            break;
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = shutdown.changed() => continue,
        };
        while running.try_join_next().is_some() {}
        let mut wait = CLAIM_WAIT;
        if let Some(idle_exit) = idle_exit {
            let idle_for = worker.last_busy.lock().expect("last_busy").elapsed();
            if running.is_empty() && idle_for >= idle_exit {
                tracing::info!(seconds = idle_exit.as_secs(), "idle; exiting");
                break;
            }
            // Short enough to notice the idle limit on time, whatever is running now.
            wait = wait.min(if running.is_empty() { idle_exit - idle_for } else { idle_exit });
        }
        // Rounded up: a wait that rounds down to 0 would make a burst of empty claims.
        request.wait_ms = wait.as_micros().div_ceil(1000) as u64;
        let answer = tokio::select! {
            answer = worker.client.claim(&request) => answer,
            _ = shutdown.changed() => continue,
        };
        match answer {
            Ok(Some(task)) => {
                backoff.recovered(&worker.client);
                claimed += 1;
                *worker.last_busy.lock().expect("last_busy") = Instant::now();
                let worker = worker.clone();
                running.spawn(async move {
                    run_task(&worker, task).await;
                    *worker.last_busy.lock().expect("last_busy") = Instant::now();
                    drop(slot);
                });
            }
            Ok(None) => backoff.recovered(&worker.client),
            Err(ClientError::Unavailable(why)) => {
                drop(slot);
                tokio::select! {
                    _ = backoff.wait("claim", &why) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(error) => {
                refusal = Some(error);
                break;
            }
        }
    }
    while running.join_next().await.is_some() {}
    refusal
}

/// One task, from its claim to its accepted report.
async fn run_task(worker: &Arc<Worker>, task: ClaimedTask) {
    let started = Instant::now();
    let lease = Duration::from_secs(worker.lease_seconds.into());
    let (lease_sender, mut lease_state) = watch::channel(LeaseState { alive_until: started + lease, stop: None });
    let beat = HeartbeatRequest {
        task_id: task.id.clone(),
        agent_id: worker.agent_id.clone(),
        attempt: task.attempts,
        lease_seconds: worker.lease_seconds,
    };
    let heartbeats = tokio::spawn(heartbeat(worker.clone(), beat, lease_sender));
    let stop = stop_requested(lease_state.clone(), worker.shutdown.clone());
    let invocation = Invocation {
        program: &worker.program,
        args: &worker.args,
        env: vec![
            ("MC_TASK_ID", task.id.clone()),
            ("MC_TASK_TITLE", task.title.clone()),
            ("MC_ATTEMPT", task.attempts.to_string()),
            ("MC_VENTURE_ID", task.venture_id.clone()),
            ("MC_AGENT_ID", worker.agent_id.clone()),
            ("MC_URL", worker.client.url().to_owned()),
        ],
        stdin: task.json.clone(),
    };
    let (outcome, status) = match child::run(invocation, stop, worker.kill_grace).await {
        Ok(finished) => {
            let status = child::describe(finished.status);
            let status = match &finished.stopped {
                Some(reason) => format!("{reason}; {status}"),
                None => status,
            };
            (Outcome::of(&finished), status)
        }
        Err(error) => (Outcome::not_started(&error), "not started".to_owned()),
    };
    let mut report = Report {
        task_id: task.id.clone(),
        agent_id: worker.agent_id.clone(),
        attempt: task.attempts,
        output: outcome.output,
        actual_cost: outcome.actual_cost,
        tokens_used: outcome.tokens_used,
        error: outcome.error,
    };
    let result = send_report(worker, &mut report, &mut lease_state).await;
    heartbeats.abort();
    let kind = if report.error.is_some() { "error" } else { "success" };
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            tracing::info!(task = %task.id, attempt = task.attempts, %status, report = kind, seconds, "task reported")
        }
        Err(why) => {
            tracing::warn!(task = %task.id, attempt = task.attempts, %status, report = kind, seconds, %why, "task not reported")
        }
    }
}

/// Sends the report until it is accepted, the lease is surely gone, or the server refuses
/// it for good. A success report the server refuses as malformed (a negative `actualCost`
/// from the command, say) becomes an error report saying so.
async fn send_report(
    worker: &Worker,
    report: &mut Report,
    lease_state: &mut watch::Receiver<LeaseState>,
) -> Result<(), String> {
    let mut backoff = Backoff::default();
    loop {
        match worker.client.complete(report).await {
            Ok(()) => return Ok(()),
            Err(ClientError::Refused { status: 400, message, .. }) if report.error.is_none() => {
                report.error = Some(format!("the server refused the command's report: {message}"));
                (report.output, report.actual_cost, report.tokens_used) = (None, None, None);
            }
            Err(error @ (ClientError::Conflict { .. } | ClientError::Refused { .. })) => return Err(error.to_string()),
            Err(ClientError::Unavailable(why)) => {
                if Instant::now() > lease_state.borrow().alive_until + LEASE_MARGIN {
                    return Err(format!("the lease ran out while the server was unavailable: {why}"));
                }
                backoff.wait("report", &why).await;
            }
        }
    }
}

/// What the heartbeats know of the lease.
#[derive(Debug, Clone)]
struct LeaseState {
    /// The latest the server can hold the lease, from the last answered heartbeat.
    alive_until: Instant,
    /// Set when the command must stop: cancelled, or the lease is lost.
    stop: Option<StopReason>,
}

/// Resolves when the command must stop: the heartbeats say so, or a second signal came.
async fn stop_requested(mut lease: watch::Receiver<LeaseState>, mut shutdown: watch::Receiver<Shutdown>) -> StopReason {
    let from_lease = async {
        let reason = lease.wait_for(|state| state.stop.is_some()).await.ok().and_then(|state| state.stop.clone());
        match reason {
            Some(reason) => reason,
            None => std::future::pending().await, // the heartbeats ended without a stop
        }
    };
    tokio::select! {
        reason = from_lease => reason,
        _ = shutdown.wait_for(|level| *level == Shutdown::Stopping) => StopReason::Shutdown,
    }
}

/// Heartbeats every third of the lease, on its own timer whatever the command does, until
/// aborted or the lease is lost. An unanswered heartbeat is retried sooner.
async fn heartbeat(worker: Arc<Worker>, request: HeartbeatRequest, state: watch::Sender<LeaseState>) {
    let lease = Duration::from_secs(request.lease_seconds.into());
    let interval = lease / 3;
    let mut next = Instant::now() + interval;
    let mut backoff = Backoff::default();
    loop {
        tokio::time::sleep_until(next).await;
        let sent = Instant::now();
        match worker.client.heartbeat(&request).await {
            Ok(answer) => {
                backoff.recovered(&worker.client);
                next = sent + interval;
                state.send_modify(|state| {
                    state.alive_until = Instant::now() + lease;
                    if answer.cancel_requested && state.stop.is_none() {
                        state.stop = Some(StopReason::Cancelled);
                    }
                });
            }
            Err(ClientError::Unavailable(why)) => {
                next = Instant::now() + backoff.next_pause("heartbeat", &why).min(interval);
            }
            Err(error @ (ClientError::Conflict { .. } | ClientError::Refused { status: 404, .. })) => {
                state.send_modify(|state| state.stop = Some(StopReason::LeaseLost(error.to_string())));
                return;
            }
            Err(error) => {
                tracing::warn!(task = %request.task_id, %error, "heartbeat refused");
                next = sent + interval;
            }
        }
    }
}

/// Doubling pauses while the server is unreachable, logged once per outage.
#[derive(Default)]
struct Backoff {
    pause: Option<Duration>,
}

impl Backoff {
    fn next_pause(&mut self, what: &str, why: &str) -> Duration {
        let pause = match self.pause {
            None => {
                tracing::warn!(%why, "server unavailable during a {what}; retrying with back-off");
                BACKOFF_FIRST
            }
            Some(pause) => (pause * 2).min(BACKOFF_MAX),
        };
        self.pause = Some(pause);
        pause
    }

    async fn wait(&mut self, what: &str, why: &str) {
        tokio::time::sleep(self.next_pause(what, why)).await;
    }

    fn recovered(&mut self, client: &Client) {
        if self.pause.take().is_some() {
            tracing::info!(url = %client.url(), "server answering again");
        }
    }
}

/// SIGTERM or SIGINT: the first drains, the second stops.
fn listen_for_signals(level: watch::Sender<Shutdown>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            let next = if *level.borrow() == Shutdown::Running { Shutdown::Draining } else { Shutdown::Stopping };
            match next {
                Shutdown::Draining => tracing::info!("signal: claiming nothing more; running commands may finish"),
                _ => tracing::warn!("second signal: stopping running commands"),
            }
            level.send_replace(next);
        }
    });
    Ok(())
}

/// The host name and the process id, such as `build-7-4242`.
fn default_agent_id() -> String {
    let mut name = [0_u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let ok = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } == 0;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    let host = if ok && end > 0 { String::from_utf8_lossy(&name[..end]).into_owned() } else { "worker".to_owned() };
    format!("{host}-{}", std::process::id())
}
