//! Fixtures shared by the benchmarks: ventures, tasks and agents built directly as domain
//! values (no HTTP, no SQLite), so that even a million-task snapshot takes about a second.
#![allow(dead_code)] // each bench binary uses its own part of this module

use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use mission_control::domain::{
    Agent, AgentStatus, Id, Millis, Money, Priority, Task, TaskStatus, Venture, VentureStatus,
};
use mission_control::scheduler::Snapshot;

/// `createdAt` of the first fixture task (2023-11-14); task `i` is `i` milliseconds younger.
pub const BASE: Millis = Millis(1_700_000_000_000);

/// Ventures the queued tasks are spread over.
pub const N_VENTURES: usize = 4;

/// The agent every benchmark claims as; it is in the snapshot, so no claim registers it.
pub const AGENT: &str = "bench-agent";

/// The settings every bench binary starts from. They are defaults: `--warm-up-time`,
/// `--measurement-time` and `--sample-size` on the command line still override them.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .without_plots()
}

/// `1k`, `100k`, `1M`: the labels the benchmark ids use.
pub fn label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

pub fn venture_id(v: usize) -> Id {
    format!("v{v}").into()
}

/// An active venture without a budget (`capitalBudget` 0), so the budget guard never skips.
pub fn venture(v: usize) -> Venture {
    Venture {
        id: venture_id(v),
        name: format!("Venture {v}").into(),
        icon: "🚀".into(),
        status: VentureStatus::Active,
        priority: Priority::Medium,
        capital_spent: Money::ZERO,
        capital_budget: Money::ZERO,
        description: None,
        created_at: BASE,
        updated_at: BASE,
    }
}

/// Mixed priorities: a third each.
pub fn priority(i: usize) -> Priority {
    Priority::ALL[i % 3]
}

/// Queued task `t{i}` with a short title, no tags, no description, in venture `i % N_VENTURES`.
/// `max_attempts` is `u32::MAX`, so an error report always requeues it.
pub fn queued_task(i: usize, venture_ids: &[Id]) -> Task {
    let created = Millis(BASE.0 + i as i64);
    Task {
        id: format!("t{i}").into(),
        title: format!("Task {i}").into(),
        description: None,
        status: TaskStatus::Queue,
        priority: priority(i),
        estimated_cost: Some(Money::units((i % 10) as i64)),
        actual_cost: None,
        tags: None,
        output: None,
        error: None,
        assigned_to: None,
        venture_id: venture_ids[i % venture_ids.len()].clone(),
        attempts: 0,
        max_attempts: u32::MAX,
        lease_seconds: 1800,
        lease_expires_at: None,
        claimed_at: None,
        created_at: created,
        updated_at: created,
        completed_at: None,
        last_report: None,
        depends_on: None,
        blocked_by: None,
        on_dependency_failure: Default::default(),
        cancel_requested: false,
        run_at: None,
        retry_delay_seconds: 0,
        idempotency_key: None,
    }
}

pub fn agent(id: &str) -> Agent {
    Agent {
        id: id.into(),
        name: "Benchmark agent".into(),
        status: AgentStatus::Online,
        model: "claude-bench".into(),
        current_task: None,
        tokens_used: 0,
        max_tokens: 0,
        sessions_count: 0,
        last_active_at: BASE,
        created_at: BASE,
        updated_at: BASE,
    }
}

/// `N_VENTURES` ventures, `n_tasks` queued tasks and the benchmark agent.
pub fn snapshot(n_tasks: usize) -> Snapshot {
    let ventures: Vec<Venture> = (0..N_VENTURES).map(venture).collect();
    let venture_ids: Vec<Id> = ventures.iter().map(|v| v.id.clone()).collect();
    let mut tasks = Vec::with_capacity(n_tasks);
    for i in 0..n_tasks {
        tasks.push(queued_task(i, &venture_ids));
    }
    Snapshot { ventures, tasks, agents: vec![agent(AGENT)], finished_counts: Vec::new() }
}

/// `snapshot(n)`, plus `blocked` tasks blocked on one task that
/// stays active (claimed by another agent, its lease far off) throughout.
pub fn snapshot_with_blocked(n: usize, blocked: usize) -> Snapshot {
    let mut snapshot = snapshot(n);
    if blocked == 0 {
        return snapshot;
    }
    let venture_ids: Vec<Id> = (0..N_VENTURES).map(venture_id).collect();
    let never = Task {
        id: "never-finished".into(),
        status: TaskStatus::Active,
        assigned_to: Some("another-agent".into()),
        attempts: 1,
        claimed_at: Some(BASE),
        lease_expires_at: Some(Millis(BASE.0 + 1_000 * 86_400_000)),
        ..queued_task(n + blocked, &venture_ids)
    };
    for i in 0..blocked {
        let mut task = queued_task(n + i, &venture_ids);
        task.id = format!("blocked{i}").into();
        task.status = TaskStatus::Blocked;
        task.depends_on = Some(vec![never.id.clone()].into());
        snapshot.tasks.push(task);
    }
    snapshot.tasks.push(never);
    snapshot
}

/// The error report that requeues a claimed fixture task.
pub fn error_text() -> Arc<str> {
    "benchmark: put back".into()
}
