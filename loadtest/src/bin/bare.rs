//! `bare-queue`: the smallest HTTP server the load generator can run against, as a baseline.
//!
//! It serves the endpoints `loadtest` uses (ventures, tasks, claim, heartbeat, complete,
//! delete, `/healthz`) with one `Mutex` around a `VecDeque` of queued tasks and a map of
//! claimed ones, in memory, nothing written anywhere. No budgets, leases, dependencies,
//! priorities, activity log or metrics: what is left is the cost of HTTP, JSON and a lock,
//! so `mission-control`'s throughput over this one's says what the scheduler itself costs.
//! A task is answered as the API's task (`--answers contract`, every field, in the order
//! `mission-control` writes them), so both servers write and the load generator reads the
//! same JSON; `--answers minimal` keeps the seven fields earlier comparisons used.
//! Same runtime shape as `mission-control serve`: by default one tokio worker thread less
//! than the cores, at least one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "A bare in-memory task queue over HTTP: the baseline for loadtest")]
struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:3932")]
    addr: SocketAddr,
    /// Tokio worker threads [default: as `mission-control serve`, one less than the cores,
    /// at least one].
    #[arg(long)]
    threads: Option<usize>,
    /// How a task is answered: as the API's task, or the seven fields `loadtest` reads.
    #[arg(long, value_enum, default_value_t = Answers::Contract)]
    answers: Answers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Answers {
    /// Every field of the API's task (docs/API.md), as `mission-control` writes them.
    Contract,
    /// `id`, `title`, `ventureId`, `status`, `estimatedCost`, `attempts`, `assignedAgentId`.
    Minimal,
}

struct Task {
    id: String,
    title: String,
    venture: String,
    estimated_cost: f64,
    actual_cost: Option<f64>,
    output: Option<String>,
    error: Option<String>,
    attempts: u64,
    agent: Option<String>,
    /// Timestamps, formatted when they change, as a server would keep them.
    created_at: String,
    updated_at: String,
    claimed_at: Option<String>,
    lease_expires_at: Option<String>,
    completed_at: Option<String>,
}

/// Lease of a claim, as `mission-control`'s default.
const LEASE_SECONDS: i64 = 1800;

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The API's task, field for field; the values this queue does not keep are their defaults.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskAnswer<'a> {
    id: &'a str,
    title: &'a str,
    description: Option<&'a str>,
    status: &'a str,
    priority: &'a str,
    estimated_cost: f64,
    actual_cost: Option<f64>,
    tags: Option<&'a str>,
    depends_on: [&'a str; 0],
    blocked_by: [&'a str; 0],
    on_dependency_failure: &'a str,
    cancel_requested: bool,
    run_at: Option<&'a str>,
    retry_delay_seconds: u64,
    idempotency_key: Option<&'a str>,
    output: Option<&'a str>,
    error: Option<&'a str>,
    assigned_to: Option<&'a str>,
    venture_id: &'a str,
    venture: VentureRef<'a>,
    attempts: u64,
    max_attempts: u64,
    lease_seconds: i64,
    lease_expires_at: Option<&'a str>,
    claimed_at: Option<&'a str>,
    created_at: &'a str,
    updated_at: &'a str,
    completed_at: Option<&'a str>,
}

#[derive(Serialize)]
struct VentureRef<'a> {
    id: &'a str,
    name: &'a str,
    icon: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MinimalAnswer<'a> {
    id: &'a str,
    title: &'a str,
    venture_id: &'a str,
    status: &'a str,
    estimated_cost: f64,
    attempts: u64,
    assigned_agent_id: Option<&'a str>,
}

impl Task {
    fn answer(&self, status: &str, venture_name: &str, answers: Answers) -> Response {
        match answers {
            Answers::Minimal => Json(MinimalAnswer {
                id: &self.id,
                title: &self.title,
                venture_id: &self.venture,
                status,
                estimated_cost: self.estimated_cost,
                attempts: self.attempts,
                assigned_agent_id: self.agent.as_deref(),
            })
            .into_response(),
            Answers::Contract => Json(TaskAnswer {
                id: &self.id,
                title: &self.title,
                description: None,
                status,
                priority: "medium",
                estimated_cost: self.estimated_cost,
                actual_cost: self.actual_cost,
                tags: None,
                depends_on: [],
                blocked_by: [],
                on_dependency_failure: "cancel",
                cancel_requested: false,
                run_at: None,
                retry_delay_seconds: 0,
                idempotency_key: None,
                output: self.output.as_deref(),
                error: self.error.as_deref(),
                assigned_to: self.agent.as_deref(),
                venture_id: &self.venture,
                venture: VentureRef { id: &self.venture, name: venture_name, icon: "🚀" },
                attempts: self.attempts,
                max_attempts: 3,
                lease_seconds: LEASE_SECONDS,
                lease_expires_at: self.lease_expires_at.as_deref(),
                claimed_at: self.claimed_at.as_deref(),
                created_at: &self.created_at,
                updated_at: &self.updated_at,
                completed_at: self.completed_at.as_deref(),
            })
            .into_response(),
        }
    }
}

#[derive(Default)]
struct Queue {
    /// Tasks waiting for a claim, oldest first.
    queued: VecDeque<Task>,
    /// Claimed tasks, by id.
    active: HashMap<String, Task>,
    /// Every task id ever created and not deleted (for 409 on a repeat and 404 on delete).
    known: HashSet<String>,
    /// Venture id → (name, capitalSpent).
    ventures: HashMap<String, (String, f64)>,
}

impl Queue {
    fn venture_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.ventures.get(id).map_or(id, |(name, _)| name)
    }
}

#[derive(Clone)]
struct Shared {
    queue: Arc<Mutex<Queue>>,
    answers: Answers,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        anyhow::bail!("refusing to listen on {}: this baseline is for loopback only", args.addr);
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |cores| cores.get().saturating_sub(1)));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build()?;
    runtime.block_on(async {
        let state = Shared { queue: Arc::default(), answers: args.answers };
        let app = Router::new()
            .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/api/ventures", post(create_venture))
            .route("/api/ventures/{id}", get(get_venture))
            .route("/api/tasks", post(create_task))
            .route("/api/tasks/{id}", axum::routing::delete(delete_task))
            .route("/api/tasks/claim", post(claim))
            .route("/api/tasks/heartbeat", post(heartbeat))
            .route("/api/tasks/complete", post(complete))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(args.addr).await?;
        axum::serve(listener, app).await?;
        Ok::<(), anyhow::Error>(())
    })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

#[derive(Deserialize)]
struct NewVenture {
    id: String,
    name: Option<String>,
}

async fn create_venture(State(state): State<Shared>, Json(body): Json<NewVenture>) -> Response {
    let name = body.name.unwrap_or_else(|| body.id.clone());
    let mut queue = state.queue.lock().expect("queue lock");
    if queue.ventures.contains_key(&body.id) {
        return error(StatusCode::CONFLICT, "venture exists");
    }
    queue.ventures.insert(body.id.clone(), (name.clone(), 0.0));
    (StatusCode::CREATED, Json(json!({"id": body.id, "name": name, "capitalSpent": 0.0}))).into_response()
}

async fn get_venture(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let queue = state.queue.lock().expect("queue lock");
    match queue.ventures.get(&id) {
        Some((name, spent)) => Json(json!({"id": id, "name": name, "capitalSpent": spent})).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such venture"),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewTask {
    id: String,
    #[serde(default)]
    title: String,
    venture_id: String,
    #[serde(default)]
    estimated_cost: f64,
}

async fn create_task(State(state): State<Shared>, Json(body): Json<NewTask>) -> Response {
    let now = timestamp(Utc::now());
    let task = Task {
        id: body.id,
        title: body.title,
        venture: body.venture_id,
        estimated_cost: body.estimated_cost,
        actual_cost: None,
        output: None,
        error: None,
        attempts: 0,
        agent: None,
        created_at: now.clone(),
        updated_at: now,
        claimed_at: None,
        lease_expires_at: None,
        completed_at: None,
    };
    let mut queue = state.queue.lock().expect("queue lock");
    if !queue.ventures.contains_key(&task.venture) {
        return error(StatusCode::NOT_FOUND, "no such venture");
    }
    if !queue.known.insert(task.id.clone()) {
        return error(StatusCode::CONFLICT, "task exists");
    }
    let mut answer = task.answer("queued", queue.venture_name(&task.venture), state.answers);
    *answer.status_mut() = StatusCode::CREATED;
    queue.queued.push_back(task);
    answer
}

async fn delete_task(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let mut queue = state.queue.lock().expect("queue lock");
    if !queue.known.remove(&id) {
        return error(StatusCode::NOT_FOUND, "no such task");
    }
    queue.active.remove(&id);
    if let Some(at) = queue.queued.iter().position(|t| t.id == id) {
        queue.queued.remove(at);
    }
    Json(json!({"id": id, "deleted": true})).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimBody {
    agent_id: String,
    venture_id: Option<String>,
}

async fn claim(State(state): State<Shared>, Json(body): Json<ClaimBody>) -> Response {
    let now = Utc::now();
    let (claimed_at, lease_expires_at) = (timestamp(now), timestamp(now + chrono::Duration::seconds(LEASE_SECONDS)));
    let mut queue = state.queue.lock().expect("queue lock");
    let venture = body.venture_id.as_deref();
    if venture.is_some_and(|v| !queue.ventures.contains_key(v)) {
        return error(StatusCode::NOT_FOUND, "no such venture");
    }
    let at = match venture {
        None => (!queue.queued.is_empty()).then_some(0),
        Some(v) => queue.queued.iter().position(|t| t.venture == v),
    };
    let Some(mut task) = at.and_then(|at| queue.queued.remove(at)) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    task.attempts += 1;
    task.agent = Some(body.agent_id);
    task.updated_at.clone_from(&claimed_at);
    task.claimed_at = Some(claimed_at);
    task.lease_expires_at = Some(lease_expires_at);
    let answer = task.answer("active", queue.venture_name(&task.venture), state.answers);
    queue.active.insert(task.id.clone(), task);
    answer
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    task_id: String,
    agent_id: String,
    attempt: Option<u64>,
    actual_cost: Option<f64>,
    output: Option<String>,
    error: Option<String>,
}

/// The claimed task named by a heartbeat or a report, if the agent and the attempt still hold it.
fn holder<'a>(queue: &'a Queue, body: &Report) -> Result<&'a Task, (StatusCode, &'static str)> {
    match queue.active.get(&body.task_id) {
        Some(task)
            if task.agent.as_deref() == Some(body.agent_id.as_str())
                && body.attempt.is_none_or(|a| a == task.attempts) =>
        {
            Ok(task)
        }
        Some(_) => Err((StatusCode::CONFLICT, "not held by this agent and attempt")),
        None => Err((StatusCode::CONFLICT, "task is not active")),
    }
}

async fn heartbeat(State(state): State<Shared>, Json(body): Json<Report>) -> Response {
    let queue = state.queue.lock().expect("queue lock");
    match holder(&queue, &body) {
        Ok(task) => task.answer("active", queue.venture_name(&task.venture), state.answers),
        Err((status, message)) => error(status, message),
    }
}

async fn complete(State(state): State<Shared>, Json(body): Json<Report>) -> Response {
    let now = timestamp(Utc::now());
    let mut queue = state.queue.lock().expect("queue lock");
    if let Err((status, message)) = holder(&queue, &body) {
        return error(status, message);
    }
    let mut task = queue.active.remove(&body.task_id).expect("held task is active");
    let cost = body.actual_cost.unwrap_or(0.0);
    if let Some((_, spent)) = queue.ventures.get_mut(&task.venture) {
        *spent += cost;
    }
    task.updated_at.clone_from(&now);
    task.lease_expires_at = None;
    if let Some(failure) = body.error {
        // A failure report gives the task back to the end of the queue, for another attempt.
        task.agent = None;
        task.error = Some(failure);
        let answer = task.answer("queued", queue.venture_name(&task.venture), state.answers);
        queue.queued.push_back(task);
        return answer;
    }
    task.actual_cost = Some(cost);
    task.output = body.output;
    task.completed_at = Some(now);
    task.answer("completed", queue.venture_name(&task.venture), state.answers)
}
