//! `bare-queue`: the smallest HTTP server the load generator can run against, as a baseline.
//!
//! It serves the endpoints `loadtest` uses (ventures, tasks, claim, heartbeat, complete,
//! delete, `/healthz`) with one `Mutex` around a `VecDeque` of queued tasks and a map of
//! claimed ones, in memory, nothing written anywhere. No budgets, leases, dependencies,
//! priorities, activity log or metrics: what is left is the cost of HTTP, JSON and a lock,
//! so `mission-control`'s throughput over this one's says what the scheduler itself costs.
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
use clap::Parser;
use serde_json::{json, Value};

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
}

struct Task {
    id: String,
    title: String,
    venture: String,
    estimated_cost: f64,
    attempts: u64,
    agent: Option<String>,
}

impl Task {
    fn json(&self, status: &str) -> Value {
        json!({
            "id": self.id,
            "title": self.title,
            "ventureId": self.venture,
            "status": status,
            "estimatedCost": self.estimated_cost,
            "attempts": self.attempts,
            "assignedAgentId": self.agent,
        })
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

type Shared = Arc<Mutex<Queue>>;

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
        let state: Shared = Arc::default();
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

fn str_field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

async fn create_venture(State(state): State<Shared>, Json(body): Json<Value>) -> Response {
    let Some(id) = str_field(&body, "id") else { return error(StatusCode::BAD_REQUEST, "id is required") };
    let name = str_field(&body, "name").unwrap_or(id).to_owned();
    let mut queue = state.lock().expect("queue lock");
    if queue.ventures.contains_key(id) {
        return error(StatusCode::CONFLICT, "venture exists");
    }
    queue.ventures.insert(id.to_owned(), (name.clone(), 0.0));
    (StatusCode::CREATED, Json(json!({"id": id, "name": name, "capitalSpent": 0.0}))).into_response()
}

async fn get_venture(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let queue = state.lock().expect("queue lock");
    match queue.ventures.get(&id) {
        Some((name, spent)) => Json(json!({"id": id, "name": name, "capitalSpent": spent})).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such venture"),
    }
}

async fn create_task(State(state): State<Shared>, Json(body): Json<Value>) -> Response {
    let (Some(id), Some(venture)) = (str_field(&body, "id"), str_field(&body, "ventureId")) else {
        return error(StatusCode::BAD_REQUEST, "id and ventureId are required");
    };
    let task = Task {
        id: id.to_owned(),
        title: str_field(&body, "title").unwrap_or_default().to_owned(),
        venture: venture.to_owned(),
        estimated_cost: body.get("estimatedCost").and_then(Value::as_f64).unwrap_or(0.0),
        attempts: 0,
        agent: None,
    };
    let mut queue = state.lock().expect("queue lock");
    if !queue.ventures.contains_key(venture) {
        return error(StatusCode::NOT_FOUND, "no such venture");
    }
    if !queue.known.insert(task.id.clone()) {
        return error(StatusCode::CONFLICT, "task exists");
    }
    let answer = task.json("queued");
    queue.queued.push_back(task);
    (StatusCode::CREATED, Json(answer)).into_response()
}

async fn delete_task(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let mut queue = state.lock().expect("queue lock");
    if !queue.known.remove(&id) {
        return error(StatusCode::NOT_FOUND, "no such task");
    }
    queue.active.remove(&id);
    if let Some(at) = queue.queued.iter().position(|t| t.id == id) {
        queue.queued.remove(at);
    }
    Json(json!({"id": id, "deleted": true})).into_response()
}

async fn claim(State(state): State<Shared>, Json(body): Json<Value>) -> Response {
    let Some(agent) = str_field(&body, "agentId") else { return error(StatusCode::BAD_REQUEST, "agentId is required") };
    let venture = str_field(&body, "ventureId");
    let mut queue = state.lock().expect("queue lock");
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
    task.agent = Some(agent.to_owned());
    let answer = task.json("active");
    queue.active.insert(task.id.clone(), task);
    Json(answer).into_response()
}

/// The claimed task named by a heartbeat or a report, if the agent and the attempt still hold it.
fn holder<'a>(queue: &'a mut Queue, body: &Value) -> Result<&'a mut Task, (StatusCode, &'static str)> {
    let (Some(id), Some(agent)) = (str_field(body, "taskId"), str_field(body, "agentId")) else {
        return Err((StatusCode::BAD_REQUEST, "taskId and agentId are required"));
    };
    let attempt = body.get("attempt").and_then(Value::as_u64);
    match queue.active.get_mut(id) {
        Some(task) if task.agent.as_deref() == Some(agent) && attempt.is_none_or(|a| a == task.attempts) => Ok(task),
        Some(_) => Err((StatusCode::CONFLICT, "not held by this agent and attempt")),
        None => Err((StatusCode::CONFLICT, "task is not active")),
    }
}

async fn heartbeat(State(state): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut queue = state.lock().expect("queue lock");
    match holder(&mut queue, &body) {
        Ok(task) => Json(task.json("active")).into_response(),
        Err((status, message)) => error(status, message),
    }
}

async fn complete(State(state): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut queue = state.lock().expect("queue lock");
    let id = match holder(&mut queue, &body) {
        Ok(task) => task.id.clone(),
        Err((status, message)) => return error(status, message),
    };
    let mut task = queue.active.remove(&id).expect("held task is active");
    let cost = body.get("actualCost").and_then(Value::as_f64).unwrap_or(0.0);
    if let Some((_, spent)) = queue.ventures.get_mut(&task.venture) {
        *spent += cost;
    }
    if body.get("error").is_some_and(|e| !e.is_null()) {
        // A failure report gives the task back to the end of the queue, for another attempt.
        task.agent = None;
        let answer = task.json("queued");
        queue.queued.push_back(task);
        return Json(answer).into_response();
    }
    Json(task.json("done")).into_response()
}
