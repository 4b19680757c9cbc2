//! JSON encoding of tasks as the API answers them, outside the actor:
//! - `encode_task`: `serde_json::to_vec(&TaskJson::from(&view))` of one realistic task (an
//!   active one, so every timestamp is set; three tags, a ~200-byte description, its venture);
//! - `encode_task_list/1000`: `GET /api/tasks` with 1,000 such tasks: the `TaskJson`s
//!   collected into a `Vec` as the handler does, then `serde_json::to_vec` of the list.
//!
//! Both include building `TaskJson` (timestamps formatted as text, tags rendered as a JSON
//! string), not the HTTP response around the bytes.
//!
//! And request decoding, the other half of the JSON work outside the actor:
//! - `decode_create_task`: `POST /api/tasks` through the router, in process (no socket), with
//!   a realistic body whose last field (`maxAttempts: 0`) is out of range, so every field is
//!   decoded and checked and the request is refused (400) before it reaches the scheduler.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use clap::Parser;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mission_control::api::wire::TaskJson;
use mission_control::domain::{Millis, Money, Priority, Task, TaskStatus, Venture};
use mission_control::scheduler::TaskView;
use serde_json::json;
use tower::ServiceExt;

const DESCRIPTION: &str = "Collect the pricing pages of the twenty largest competitors, extract plan names, \
    monthly prices and seat limits into a table, and flag any plan that changed since the last run. \
    Cite each source URL.";

/// Tasks in `encode_task_list`.
const LIST_LEN: usize = 1000;

fn venture() -> Arc<Venture> {
    Arc::new(Venture {
        name: "Market research".into(),
        icon: "📊".into(),
        capital_budget: Money::units(500),
        capital_spent: Money::from_micros(123_450_000),
        description: Some("Competitive intelligence for the pricing team".into()),
        ..common::venture(0)
    })
}

fn task(i: usize, venture: &Arc<Venture>) -> TaskView {
    let created = Millis(common::BASE.0 + i as i64 * 1000);
    let claimed = Millis(created.0 + 90_000);
    let task = Task {
        id: format!("01JD3Q8Z{i:018}").into(),
        title: format!("Scrape competitor pricing pages, batch {i}").into(),
        description: Some(DESCRIPTION.into()),
        status: TaskStatus::Active,
        priority: Priority::High,
        estimated_cost: Some(Money::from_micros(2_500_000)),
        actual_cost: None,
        tags: Some(["research", "python", "web-scraping"].iter().map(|t| Arc::from(*t)).collect()),
        output: None,
        error: None,
        assigned_to: Some("agent-claude-7".into()),
        venture_id: venture.id.clone(),
        attempts: 1,
        max_attempts: 3,
        lease_seconds: 1800,
        lease_expires_at: Some(claimed.plus_seconds(1800)),
        claimed_at: Some(claimed),
        created_at: created,
        updated_at: claimed,
        completed_at: None,
        last_report: None,
        depends_on: None,
        blocked_by: None,
        on_dependency_failure: Default::default(),
        cancel_requested: false,
        run_at: None,
        retry_delay_seconds: 0,
        idempotency_key: None,
    };
    TaskView { task: Arc::new(task), venture: Some(venture.clone()) }
}

fn encode_task(c: &mut Criterion) {
    let view = task(0, &venture());
    let size = serde_json::to_vec(&TaskJson::from(&view)).expect("encode").len();
    eprintln!("encode_task: one task encodes to {size} bytes");
    c.bench_function("encode_task", |b| {
        b.iter(|| serde_json::to_vec(&TaskJson::from(black_box(&view))).expect("encode"))
    });
}

fn encode_task_list(c: &mut Criterion) {
    let venture = venture();
    let mut group = c.benchmark_group("encode_task_list");
    let views: Vec<TaskView> = (0..LIST_LEN).map(|i| task(i, &venture)).collect();
    group.throughput(Throughput::Elements(LIST_LEN as u64));
    group.bench_function(BenchmarkId::from_parameter(LIST_LEN), |b| {
        b.iter(|| {
            let page: Vec<TaskJson> = black_box(&views).iter().map(TaskJson::from).collect();
            serde_json::to_vec(&page).expect("encode")
        })
    });
    group.finish();
}

fn decode_create_task(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("bench.db");
    let cli = mission_control::config::Cli::try_parse_from(["mission-control", "--db", db.to_str().expect("path")])
        .expect("arguments");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let running =
        runtime.block_on(async { mission_control::server::start(&cli.serve, cli.serve.addr) }).expect("server");
    let router = running.router();
    let body = serde_json::to_vec(&json!({
        "title": "Compare competitor pricing",
        "description": DESCRIPTION,
        "ventureId": "clxyz-allbirds",
        "priority": "high",
        "estimatedCost": 12.5,
        "tags": ["research", "pricing", "weekly"],
        "maxAttempts": 0,
    }))
    .expect("encode");
    c.bench_function("decode_create_task", |b| {
        b.iter(|| {
            let request = Request::post("/api/tasks")
                .header("content-type", "application/json")
                .body(Body::from(body.clone()))
                .expect("request");
            let response = runtime.block_on(router.clone().oneshot(request)).expect("response");
            assert_eq!(response.status(), 400);
        })
    });
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = encode_task, encode_task_list, decode_create_task
}
criterion_main!(benches);
