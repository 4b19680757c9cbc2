//! The SQL that applies the scheduler's changes in PostgreSQL: the same whole-record upserts
//! and deletes as `store::write_changes` does in SQLite, in order, with the same skipping
//! of upserts a later one in the batch supersedes.

use postgres::types::ToSql;
use postgres::{GenericClient, Statement};

use crate::domain::{Millis, Money};
use crate::scheduler::Change;
use crate::store::write::{last_upserts, tags_json};

const UPSERT_VENTURE: &str = r#"INSERT INTO "Venture" (id, name, icon, status, priority, "capitalSpent", "capitalBudget",
        description, "createdAt", "updatedAt")
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, icon = excluded.icon, status = excluded.status,
        priority = excluded.priority, "capitalSpent" = excluded."capitalSpent",
        "capitalBudget" = excluded."capitalBudget", description = excluded.description,
        "updatedAt" = excluded."updatedAt""#;

const UPSERT_TASK: &str = r#"INSERT INTO "Task" (id, title, description, status, priority, "estimatedCost", "actualCost",
        tags, output, error, "assignedTo", "ventureId", attempts, "maxAttempts", "leaseSeconds", "leaseExpiresAt",
        "claimedAt", "createdAt", "updatedAt", "completedAt", "reportedBy", "reportedAttempt", "reportedCost",
        "onDependencyFailure", "cancelRequested", "runAt", "retryDelaySeconds", "idempotencyKey", "reportedError")
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23,
        $24, $25, $26, $27, $28, $29)
    ON CONFLICT (id) DO UPDATE SET title = excluded.title, description = excluded.description,
        status = excluded.status, priority = excluded.priority, "estimatedCost" = excluded."estimatedCost",
        "actualCost" = excluded."actualCost", tags = excluded.tags, output = excluded.output,
        error = excluded.error, "assignedTo" = excluded."assignedTo", attempts = excluded.attempts,
        "maxAttempts" = excluded."maxAttempts", "leaseSeconds" = excluded."leaseSeconds",
        "leaseExpiresAt" = excluded."leaseExpiresAt", "claimedAt" = excluded."claimedAt",
        "updatedAt" = excluded."updatedAt", "completedAt" = excluded."completedAt",
        "reportedBy" = excluded."reportedBy", "reportedAttempt" = excluded."reportedAttempt",
        "reportedCost" = excluded."reportedCost", "onDependencyFailure" = excluded."onDependencyFailure",
        "cancelRequested" = excluded."cancelRequested", "runAt" = excluded."runAt",
        "retryDelaySeconds" = excluded."retryDelaySeconds", "reportedError" = excluded."reportedError""#;

const UPSERT_AGENT: &str = r#"INSERT INTO "Agent" (id, name, status, model, "currentTask", "tokensUsed", "maxTokens",
        "sessionsCount", "lastActiveAt", "createdAt", "updatedAt")
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status, model = excluded.model,
        "currentTask" = excluded."currentTask", "tokensUsed" = excluded."tokensUsed",
        "maxTokens" = excluded."maxTokens", "sessionsCount" = excluded."sessionsCount",
        "lastActiveAt" = excluded."lastActiveAt", "updatedAt" = excluded."updatedAt""#;

// As in SQLite, the first row with an id wins (`docs/ARCHITECTURE.md`, "Activity ids").
const INSERT_ACTIVITY: &str = r#"INSERT INTO "Activity" (id, type, title, description, "ventureId", "taskId", "agentId",
        "createdAt")
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING"#;

const UPSERT_ATTEMPT: &str = r#"INSERT INTO "TaskAttempt" ("taskId", attempt, "agentId", "claimedAt", "endedAt", outcome,
        error, "actualCost", "tokensUsed")
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT ("taskId", attempt) DO UPDATE SET "agentId" = excluded."agentId",
        "claimedAt" = excluded."claimedAt", "endedAt" = excluded."endedAt", outcome = excluded.outcome,
        error = excluded.error, "actualCost" = excluded."actualCost", "tokensUsed" = excluded."tokensUsed""#;

/// The statements of a batch, prepared once per connection.
pub struct Statements {
    venture: Statement,
    task: Statement,
    agent: Statement,
    activity: Statement,
    attempt: Statement,
    delete_venture_attempts: Statement,
    delete_venture_dependencies: Statement,
    delete_venture_tasks: Statement,
    delete_venture: Statement,
    delete_attempts: Statement,
    delete_dependencies: Statement,
    delete_task: Statement,
    delete_agent: Statement,
    insert_dependency: Statement,
}

impl Statements {
    pub fn prepare(client: &mut impl GenericClient) -> Result<Statements, postgres::Error> {
        Ok(Statements {
            venture: client.prepare(UPSERT_VENTURE)?,
            task: client.prepare(UPSERT_TASK)?,
            agent: client.prepare(UPSERT_AGENT)?,
            activity: client.prepare(INSERT_ACTIVITY)?,
            attempt: client.prepare(UPSERT_ATTEMPT)?,
            delete_venture_attempts: client.prepare(
                r#"DELETE FROM "TaskAttempt" WHERE "taskId" IN (SELECT id FROM "Task" WHERE "ventureId" = $1)"#,
            )?,
            delete_venture_dependencies: client.prepare(
                r#"DELETE FROM "TaskDependency" WHERE "taskId" IN (SELECT id FROM "Task" WHERE "ventureId" = $1)"#,
            )?,
            delete_venture_tasks: client.prepare(r#"DELETE FROM "Task" WHERE "ventureId" = $1"#)?,
            delete_venture: client.prepare(r#"DELETE FROM "Venture" WHERE id = $1"#)?,
            delete_attempts: client.prepare(r#"DELETE FROM "TaskAttempt" WHERE "taskId" = $1"#)?,
            delete_dependencies: client.prepare(r#"DELETE FROM "TaskDependency" WHERE "taskId" = $1"#)?,
            delete_task: client.prepare(r#"DELETE FROM "Task" WHERE id = $1"#)?,
            delete_agent: client.prepare(r#"DELETE FROM "Agent" WHERE id = $1"#)?,
            insert_dependency: client
                .prepare(r#"INSERT INTO "TaskDependency" ("taskId", "dependsOnId", position) VALUES ($1, $2, $3)"#)?,
        })
    }
}

/// Applies changes in order inside the caller's transaction.
pub fn write_changes<'a>(
    tx: &mut impl GenericClient,
    sql: &Statements,
    changes: impl IntoIterator<Item = &'a Change>,
) -> Result<(), postgres::Error> {
    let changes: Vec<&Change> = changes.into_iter().collect();
    let superseded = last_upserts(&changes);
    for (i, change) in changes.iter().enumerate() {
        if superseded(i) {
            continue;
        }
        match change {
            Change::Venture(v) => {
                tx.execute(
                    &sql.venture,
                    &[
                        &&*v.id,
                        &&*v.name,
                        &&*v.icon,
                        &v.status.as_str(),
                        &v.priority.as_str(),
                        &v.capital_spent.to_f64(),
                        &v.capital_budget.to_f64(),
                        &v.description.as_deref(),
                        &v.created_at.to_string(),
                        &v.updated_at.to_string(),
                    ],
                )?;
            }
            Change::DeleteVenture(id) => {
                let id: &(dyn ToSql + Sync) = &&**id;
                tx.execute(&sql.delete_venture_attempts, &[id])?;
                tx.execute(&sql.delete_venture_dependencies, &[id])?;
                tx.execute(&sql.delete_venture_tasks, &[id])?;
                tx.execute(&sql.delete_venture, &[id])?;
            }
            Change::Task(t) => {
                tx.execute(
                    &sql.task,
                    &[
                        &&*t.id,
                        &&*t.title,
                        &t.description.as_deref(),
                        &t.status.as_str(),
                        &t.priority.as_str(),
                        &money(t.estimated_cost),
                        &money(t.actual_cost),
                        &tags_json(t),
                        &t.output.as_deref(),
                        &t.error.as_deref(),
                        &t.assigned_to.as_deref(),
                        &&*t.venture_id,
                        &i64::from(t.attempts),
                        &i64::from(t.max_attempts),
                        &i64::from(t.lease_seconds),
                        &time(t.lease_expires_at),
                        &time(t.claimed_at),
                        &t.created_at.to_string(),
                        &t.updated_at.to_string(),
                        &time(t.completed_at),
                        &t.last_report.as_ref().map(|r| &*r.agent_id),
                        &i64::from(t.last_report.as_ref().map_or(0, |r| r.attempt)),
                        &money(t.last_report.as_ref().and_then(|r| r.actual_cost)),
                        &t.on_dependency_failure.as_str(),
                        &t.cancel_requested,
                        &time(t.run_at),
                        &i64::from(t.retry_delay_seconds),
                        &t.idempotency_key.as_deref(),
                        &t.last_report.as_ref().and_then(|r| r.error.as_deref()),
                    ],
                )?;
            }
            Change::DeleteTask(id) => {
                let id: &(dyn ToSql + Sync) = &&**id;
                tx.execute(&sql.delete_attempts, &[id])?;
                tx.execute(&sql.delete_dependencies, &[id])?;
                tx.execute(&sql.delete_task, &[id])?;
            }
            Change::Agent(a) => {
                tx.execute(
                    &sql.agent,
                    &[
                        &&*a.id,
                        &&*a.name,
                        &a.status.as_str(),
                        &&*a.model,
                        &a.current_task.as_deref(),
                        &clamp_i64(a.tokens_used),
                        &clamp_i64(a.max_tokens),
                        &clamp_i64(a.sessions_count),
                        &a.last_active_at.to_string(),
                        &a.created_at.to_string(),
                        &a.updated_at.to_string(),
                    ],
                )?;
            }
            Change::DeleteAgent(id) => {
                tx.execute(&sql.delete_agent, &[&&**id])?;
            }
            Change::Activity(a) => {
                let inserted = tx.execute(
                    &sql.activity,
                    &[
                        &&*a.id,
                        &&*a.kind,
                        &&*a.title,
                        &a.description.as_deref(),
                        &a.venture_id.as_deref(),
                        &a.task_id.as_deref(),
                        &a.agent_id.as_deref(),
                        &a.created_at.to_string(),
                    ],
                )?;
                if inserted == 0 {
                    tracing::warn!(id = &*a.id, "an activity id was taken; the later activity was not logged");
                }
            }
            Change::Dependencies(task_id, depends_on) => {
                tx.execute(&sql.delete_dependencies, &[&&**task_id])?;
                for (position, dependency) in depends_on.iter().flat_map(|ids| ids.iter()).enumerate() {
                    tx.execute(&sql.insert_dependency, &[&&**task_id, &&**dependency, &(position as i64)])?;
                }
            }
            Change::Attempt(a) => {
                tx.execute(
                    &sql.attempt,
                    &[
                        &&*a.task_id,
                        &i64::from(a.attempt),
                        &&*a.agent_id,
                        &a.claimed_at.to_string(),
                        &time(a.ended_at),
                        &a.outcome.as_str(),
                        &a.error.as_deref(),
                        &money(a.actual_cost),
                        &a.tokens_used.map(clamp_i64),
                    ],
                )?;
            }
        }
    }
    Ok(())
}

fn money(amount: Option<Money>) -> Option<f64> {
    amount.map(Money::to_f64)
}

fn time(at: Option<Millis>) -> Option<String> {
    at.map(|t| t.to_string())
}

fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
