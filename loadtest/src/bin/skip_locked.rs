//! `skip-locked-queue`: a plain PostgreSQL job queue over HTTP, the reference point for
//! `mission-control` on PostgreSQL.
//!
//! It serves the endpoints `loadtest` uses (ventures, tasks, claim, heartbeat, complete,
//! delete, the completed-task listing, `/healthz`) the way a queue built directly on
//! PostgreSQL usually is: every request is one SQL statement in its own transaction on a
//! small pool of connections, and a claim takes the first queued row with
//! `FOR UPDATE SKIP LOCKED`, so concurrent claims never wait for each other's rows. No
//! budgets, dependencies, activity log, waiters or metrics: what it costs is HTTP, JSON and
//! one PostgreSQL round trip and commit per request. Same runtime shape as
//! `mission-control serve`: two tokio worker threads by default.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde_json::{json, Value};
use tokio_postgres::{NoTls, Row};

#[derive(Debug, Parser)]
#[command(about = "A plain SKIP LOCKED job queue on PostgreSQL over HTTP: a reference point for loadtest")]
struct Args {
    /// PostgreSQL URL of an existing database (loopback only); the tables are created if missing.
    #[arg(long)]
    db: String,
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:3933")]
    addr: SocketAddr,
    /// Tokio worker threads (mission-control serves on 2).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Connections in the pool.
    #[arg(long, default_value_t = 16)]
    connections: usize,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ventures (
    id text PRIMARY KEY,
    name text NOT NULL,
    capital_spent double precision NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS jobs (
    id text PRIMARY KEY,
    title text NOT NULL,
    venture text NOT NULL REFERENCES ventures (id),
    status text NOT NULL DEFAULT 'queue',
    priority integer NOT NULL DEFAULT 1,
    created_at bigserial,
    estimated_cost double precision NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    agent text
);
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (venture, priority, created_at) WHERE status = 'queue';
";

/// The columns every answer about a job is made of, in `job_json`'s order.
const JOB_COLUMNS: &str = "id, title, venture, status, estimated_cost, attempts, agent";

/// Connections handed out in turn. Every statement is its own transaction, so a connection
/// is never held across an `.await` of the handler: `tokio-postgres` pipelines the
/// statements sent on one connection.
struct Pool {
    connections: Vec<tokio_postgres::Client>,
    next: AtomicUsize,
}

impl Pool {
    fn get(&self) -> &tokio_postgres::Client {
        &self.connections[self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len()]
    }
}

type Shared = Arc<Pool>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        anyhow::bail!("refusing to listen on {}: this reference queue is for loopback only", args.addr);
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build()?;
    runtime.block_on(async {
        let mut connections = Vec::with_capacity(args.connections.max(1));
        for _ in 0..args.connections.max(1) {
            let (client, connection) = tokio_postgres::connect(&args.db, NoTls).await?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    eprintln!("a pooled connection ended: {error}");
                }
            });
            connections.push(client);
        }
        connections[0].batch_execute(SCHEMA).await?;
        let state: Shared = Arc::new(Pool { connections, next: AtomicUsize::new(0) });
        let app = Router::new()
            .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/api/ventures", post(create_venture))
            .route("/api/ventures/{id}", get(get_venture))
            .route("/api/tasks", post(create_task).get(list_tasks))
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

/// A database error is a 500 that says only that.
fn database_error(error: tokio_postgres::Error) -> Response {
    eprintln!("database error: {error}");
    error_500()
}

fn error_500() -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "database error")
}

fn str_field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

fn job_json(row: &Row) -> Value {
    json!({
        "id": row.get::<_, String>(0),
        "title": row.get::<_, String>(1),
        "ventureId": row.get::<_, String>(2),
        "status": row.get::<_, String>(3),
        "estimatedCost": row.get::<_, f64>(4),
        "attempts": row.get::<_, i32>(5),
        "assignedAgentId": row.get::<_, Option<String>>(6),
    })
}

async fn create_venture(State(pool): State<Shared>, Json(body): Json<Value>) -> Response {
    let Some(id) = str_field(&body, "id") else { return error(StatusCode::BAD_REQUEST, "id is required") };
    let name = str_field(&body, "name").unwrap_or(id);
    let sql = "INSERT INTO ventures (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING";
    match pool.get().execute(sql, &[&id, &name]).await {
        Ok(0) => error(StatusCode::CONFLICT, "venture exists"),
        Ok(_) => (StatusCode::CREATED, Json(json!({"id": id, "name": name, "capitalSpent": 0.0}))).into_response(),
        Err(e) => database_error(e),
    }
}

async fn get_venture(State(pool): State<Shared>, Path(id): Path<String>) -> Response {
    let sql = "SELECT name, capital_spent FROM ventures WHERE id = $1";
    match pool.get().query_opt(sql, &[&id]).await {
        Ok(Some(row)) => Json(json!({"id": id, "name": row.get::<_, String>(0), "capitalSpent": row.get::<_, f64>(1)}))
            .into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such venture"),
        Err(e) => database_error(e),
    }
}

async fn create_task(State(pool): State<Shared>, Json(body): Json<Value>) -> Response {
    let (Some(id), Some(venture)) = (str_field(&body, "id"), str_field(&body, "ventureId")) else {
        return error(StatusCode::BAD_REQUEST, "id and ventureId are required");
    };
    let title = str_field(&body, "title").unwrap_or_default();
    let cost = body.get("estimatedCost").and_then(Value::as_f64).unwrap_or(0.0);
    let sql = format!(
        "INSERT INTO jobs (id, title, venture, estimated_cost) SELECT $1, $2, v.id, $4 FROM ventures v WHERE v.id = $3 \
         ON CONFLICT DO NOTHING RETURNING {JOB_COLUMNS}"
    );
    match pool.get().query_opt(&sql, &[&id, &title, &venture, &cost]).await {
        Ok(Some(row)) => (StatusCode::CREATED, Json(job_json(&row))).into_response(),
        Ok(None) => error(StatusCode::CONFLICT, "task exists, or no such venture"),
        Err(e) => database_error(e),
    }
}

/// `GET /api/tasks?ventureId=&status=`: what `loadtest` checks its acknowledged completions against.
async fn list_tasks(
    State(pool): State<Shared>,
    Query(filter): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let venture = filter.get("ventureId");
    let status = filter.get("status");
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1::text IS NULL OR venture = $1) AND ($2::text IS NULL OR status = $2) \
         ORDER BY created_at"
    );
    match pool.get().query(&sql, &[&venture, &status]).await {
        Ok(rows) => Json(rows.iter().map(job_json).collect::<Vec<_>>()).into_response(),
        Err(e) => database_error(e),
    }
}

async fn delete_task(State(pool): State<Shared>, Path(id): Path<String>) -> Response {
    match pool.get().execute("DELETE FROM jobs WHERE id = $1", &[&id]).await {
        Ok(0) => error(StatusCode::NOT_FOUND, "no such task"),
        Ok(_) => Json(json!({"id": id, "deleted": true})).into_response(),
        Err(e) => database_error(e),
    }
}

async fn claim(State(pool): State<Shared>, Json(body): Json<Value>) -> Response {
    let Some(agent) = str_field(&body, "agentId") else { return error(StatusCode::BAD_REQUEST, "agentId is required") };
    let venture = str_field(&body, "ventureId");
    let sql = format!(
        "UPDATE jobs SET status = 'active', attempts = attempts + 1, agent = $2 \
         WHERE id = (SELECT id FROM jobs WHERE status = 'queue' AND ($1::text IS NULL OR venture = $1) \
                     ORDER BY priority, created_at FOR UPDATE SKIP LOCKED LIMIT 1) \
         RETURNING {JOB_COLUMNS}"
    );
    match pool.get().query_opt(&sql, &[&venture, &agent]).await {
        Ok(Some(row)) => Json(job_json(&row)).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => database_error(e),
    }
}

/// The holder's fields of a heartbeat or a report: task, agent, and the attempt if given;
/// `None` without a task or an agent.
fn holder(body: &Value) -> Option<(&str, &str, Option<i32>)> {
    let (id, agent) = (str_field(body, "taskId")?, str_field(body, "agentId")?);
    let attempt = body.get("attempt").and_then(Value::as_i64).and_then(|a| i32::try_from(a).ok());
    Some((id, agent, attempt))
}

async fn heartbeat(State(pool): State<Shared>, Json(body): Json<Value>) -> Response {
    let Some((id, agent, attempt)) = holder(&body) else {
        return error(StatusCode::BAD_REQUEST, "taskId and agentId are required");
    };
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND status = 'active' AND agent = $2 \
         AND ($3::int IS NULL OR attempts = $3)"
    );
    match pool.get().query_opt(&sql, &[&id, &agent, &attempt]).await {
        Ok(Some(row)) => Json(job_json(&row)).into_response(),
        Ok(None) => error(StatusCode::CONFLICT, "not held by this agent and attempt"),
        Err(e) => database_error(e),
    }
}

/// One statement: the job leaves `active` (to `completed`, or back to `queue` on a failure
/// report) only if this agent and attempt hold it, and the venture is charged in the same
/// transaction.
async fn complete(State(pool): State<Shared>, Json(body): Json<Value>) -> Response {
    let Some((id, agent, attempt)) = holder(&body) else {
        return error(StatusCode::BAD_REQUEST, "taskId and agentId are required");
    };
    let cost = body.get("actualCost").and_then(Value::as_f64).unwrap_or(0.0);
    let failed = body.get("error").is_some_and(|e| !e.is_null());
    let next = if failed { "queue" } else { "completed" };
    let sql = format!(
        "WITH done AS ( \
             UPDATE jobs SET status = $4, agent = CASE WHEN $4 = 'queue' THEN NULL ELSE agent END \
             WHERE id = $1 AND status = 'active' AND agent = $2 AND ($3::int IS NULL OR attempts = $3) \
             RETURNING {JOB_COLUMNS}), \
         charged AS (UPDATE ventures SET capital_spent = capital_spent + $5 FROM done WHERE ventures.id = done.venture) \
         SELECT {JOB_COLUMNS} FROM done"
    );
    match pool.get().query_opt(&sql, &[&id, &agent, &attempt, &next, &cost]).await {
        Ok(Some(row)) => Json(job_json(&row)).into_response(),
        Ok(None) => error(StatusCode::CONFLICT, "not held by this agent and attempt"),
        Err(e) => database_error(e),
    }
}
