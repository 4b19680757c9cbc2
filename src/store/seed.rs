//! The seed's sample data. Ids are fixed so that the seed's curl examples work verbatim:
//! its create example names venture `clxyz-ecommerce`, and its claim returns `clxyz123`.

use std::sync::Arc;

use rusqlite::Connection;

use super::write_changes;
use super::StoreError;
use crate::domain::{
    Activity, Agent, AgentStatus, Millis, Money, OnDependencyFailure, Priority, Task, TaskStatus, Venture,
    VentureStatus,
};
use crate::scheduler::Change;

/// Writes the sample data; rows whose id already exists are replaced by the sample's.
pub fn seed_sample_data(conn: &mut Connection, now: Millis) -> Result<(), StoreError> {
    let changes = sample_changes(now);
    let tx = conn.transaction().map_err(StoreError::sqlite("seeding"))?;
    write_changes(&tx, &changes).map_err(StoreError::sqlite("seeding"))?;
    tx.commit().map_err(StoreError::sqlite("seeding"))
}

pub(super) fn sample_changes(now: Millis) -> Vec<Change> {
    // One millisecond apart, so that "oldest first" lists them in the order written here.
    let at = |offset: i64| Millis(now.0 + offset);
    let venture = |offset, id: &str, name: &str, icon: &str, budget, spent, description: &str| Venture {
        id: id.into(),
        name: name.into(),
        icon: icon.into(),
        status: VentureStatus::Active,
        priority: Priority::Medium,
        capital_spent: Money::units(spent),
        capital_budget: Money::units(budget),
        description: Some(description.into()),
        created_at: at(offset),
        updated_at: at(offset),
    };
    let agent = |offset, id: &str, name: &str| Agent {
        id: id.into(),
        name: name.into(),
        status: AgentStatus::Online,
        model: "unknown".into(),
        current_task: None,
        tokens_used: 0,
        max_tokens: 0,
        sessions_count: 0,
        last_active_at: at(offset),
        created_at: at(offset),
        updated_at: at(offset),
    };
    let task = |offset, id: &str, title: &str, venture: &str, priority, cost, tags: &[&str]| Task {
        id: id.into(),
        title: title.into(),
        description: None,
        status: TaskStatus::Queue,
        priority,
        estimated_cost: Some(Money::units(cost)),
        actual_cost: None,
        tags: Some(tags.iter().map(|t| Arc::from(*t)).collect()),
        depends_on: None,
        blocked_by: None,
        on_dependency_failure: OnDependencyFailure::Cancel,
        cancel_requested: false,
        run_at: None,
        retry_delay_seconds: 0,
        idempotency_key: None,
        output: None,
        error: None,
        assigned_to: None,
        venture_id: venture.into(),
        attempts: 0,
        max_attempts: 3,
        lease_seconds: 1800,
        lease_expires_at: None,
        claimed_at: None,
        created_at: at(offset),
        updated_at: at(offset),
        completed_at: None,
        last_report: None,
    };
    let note = |offset, id: &str, title: &str, description: &str| Activity {
        id: id.into(),
        kind: "note".into(),
        title: title.into(),
        description: Some(description.into()),
        venture_id: None,
        task_id: None,
        agent_id: None,
        created_at: at(offset),
    };
    vec![
        Change::Venture(Arc::new(venture(
            0,
            "clxyz-ecommerce",
            "E-Commerce Automation",
            "🛒",
            100,
            0,
            "Automated product research, listings and store operations",
        ))),
        Change::Venture(Arc::new(venture(
            1,
            "clxyz-allbirds",
            "Allbirds Automation",
            "👟",
            80,
            45,
            "Scraping and monitoring Allbirds product pages",
        ))),
        Change::Agent(Arc::new(agent(2, "agent-main", "Main Agent"))),
        Change::Agent(Arc::new(agent(3, "agent-telegram", "Telegram Bot"))),
        Change::Task(Arc::new(task(
            4,
            "clxyz123",
            "Set up web scraper for Allbirds product pages",
            "clxyz-allbirds",
            Priority::High,
            5,
            &["scraping"],
        ))),
        Change::Task(Arc::new(task(
            5,
            "clxyz124",
            "Research trending products",
            "clxyz-ecommerce",
            Priority::Medium,
            3,
            &["research"],
        ))),
        Change::Task(Arc::new(task(
            6,
            "clxyz125",
            "Optimize product listings",
            "clxyz-ecommerce",
            Priority::Low,
            2,
            &["listings"],
        ))),
        Change::Activity(Arc::new(note(
            7,
            "clxyz-activity-1",
            "Mission Control initialised",
            "Database created with 2 ventures, 2 agents and 3 tasks",
        ))),
        Change::Activity(Arc::new(note(
            8,
            "clxyz-activity-2",
            "Agents connected",
            "Main Agent and Telegram Bot are online",
        ))),
    ]
}
