//! The SQL that applies the scheduler's changes in PostgreSQL: the same whole-record upserts
//! and deletes as `store::write_changes` does in SQLite, with the same skipping of upserts a
//! later one in the batch supersedes. Rows go many to a statement: each kind's upserts are
//! gathered into arrays and written with one `INSERT ... SELECT * FROM unnest(...)`, since
//! every statement is a round trip to the server. Deletes (and dependency lists) keep their
//! place: the rows gathered before one are written before it.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{GenericClient, Statement};

use crate::domain::{Activity, Agent, Attempt, Millis, Money, Task, Venture};
use crate::scheduler::Change;
use crate::store::write::{last_upserts, tags_json};

const UPSERT_VENTURE: &str = r#"INSERT INTO "Venture" (id, name, icon, status, priority, "capitalSpent", "capitalBudget",
        description, "createdAt", "updatedAt")
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::float8[],
        $8::text[], $9::text[], $10::text[])
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, icon = excluded.icon, status = excluded.status,
        priority = excluded.priority, "capitalSpent" = excluded."capitalSpent",
        "capitalBudget" = excluded."capitalBudget", description = excluded.description,
        "updatedAt" = excluded."updatedAt""#;

const UPSERT_TASK: &str = r#"INSERT INTO "Task" (id, title, description, status, priority, "estimatedCost", "actualCost",
        tags, output, error, "assignedTo", "ventureId", attempts, "maxAttempts", "leaseSeconds", "leaseExpiresAt",
        "claimedAt", "createdAt", "updatedAt", "completedAt", "reportedBy", "reportedAttempt", "reportedCost",
        "onDependencyFailure", "cancelRequested", "runAt", "retryDelaySeconds", "idempotencyKey", "reportedError")
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::float8[],
        $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int8[], $14::int8[], $15::int8[],
        $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::int8[], $23::float8[],
        $24::text[], $25::bool[], $26::text[], $27::int8[], $28::text[], $29::text[])
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
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[],
        $8::int8[], $9::text[], $10::text[], $11::text[])
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status, model = excluded.model,
        "currentTask" = excluded."currentTask", "tokensUsed" = excluded."tokensUsed",
        "maxTokens" = excluded."maxTokens", "sessionsCount" = excluded."sessionsCount",
        "lastActiveAt" = excluded."lastActiveAt", "updatedAt" = excluded."updatedAt""#;

// As in SQLite, the first row with an id wins (`docs/ARCHITECTURE.md`, "Activity ids").
const INSERT_ACTIVITY: &str = r#"INSERT INTO "Activity" (id, type, title, description, "ventureId", "taskId", "agentId",
        "createdAt")
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
        $8::text[])
    ON CONFLICT (id) DO NOTHING"#;

const UPSERT_ATTEMPT: &str = r#"INSERT INTO "TaskAttempt" ("taskId", attempt, "agentId", "claimedAt", "endedAt", outcome,
        error, "actualCost", "tokensUsed")
    SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
        $8::float8[], $9::int8[])
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
    insert_dependencies: Statement,
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
            insert_dependencies: client.prepare(
                r#"INSERT INTO "TaskDependency" ("taskId", "dependsOnId", position)
                    SELECT $1, * FROM unnest($2::text[], $3::int8[])"#,
            )?,
        })
    }
}

/// Applies changes inside the caller's transaction, as if one by one in order.
pub fn write_changes<'a>(
    tx: &mut impl GenericClient,
    sql: &Statements,
    changes: impl IntoIterator<Item = &'a Change>,
) -> Result<(), postgres::Error> {
    let changes: Vec<&Change> = changes.into_iter().collect();
    let superseded = last_upserts(&changes);
    let mut rows = Gathered::default();
    for (i, change) in changes.iter().enumerate() {
        if superseded(i) {
            continue;
        }
        match change {
            Change::Venture(v) => rows.ventures.push(v),
            Change::Task(t) => rows.tasks.push(t),
            Change::Agent(a) => rows.agents.push(a),
            Change::Activity(a) => rows.activities.push(a),
            Change::Attempt(a) => rows.attempts.push(a),
            Change::DeleteVenture(id) => {
                rows.write(tx, sql)?;
                let id: &(dyn ToSql + Sync) = &&**id;
                tx.execute(&sql.delete_venture_attempts, &[id])?;
                tx.execute(&sql.delete_venture_dependencies, &[id])?;
                tx.execute(&sql.delete_venture_tasks, &[id])?;
                tx.execute(&sql.delete_venture, &[id])?;
            }
            Change::DeleteTask(id) => {
                rows.write(tx, sql)?;
                let id: &(dyn ToSql + Sync) = &&**id;
                tx.execute(&sql.delete_attempts, &[id])?;
                tx.execute(&sql.delete_dependencies, &[id])?;
                tx.execute(&sql.delete_task, &[id])?;
            }
            Change::DeleteAgent(id) => {
                rows.write(tx, sql)?;
                tx.execute(&sql.delete_agent, &[&&**id])?;
            }
            Change::Dependencies(task_id, depends_on) => {
                rows.write(tx, sql)?;
                tx.execute(&sql.delete_dependencies, &[&&**task_id])?;
                let ids: Vec<&str> = depends_on.iter().flat_map(|ids| ids.iter()).map(|id| &**id).collect();
                if !ids.is_empty() {
                    let positions: Vec<i64> = (0..ids.len() as i64).collect();
                    tx.execute(&sql.insert_dependencies, &[&&**task_id, &ids, &positions])?;
                }
            }
        }
    }
    rows.write(tx, sql)
}

/// Upserts gathered since the last delete, written a statement per kind.
#[derive(Default)]
struct Gathered<'a> {
    ventures: Vec<&'a Venture>,
    tasks: Vec<&'a Task>,
    agents: Vec<&'a Agent>,
    activities: Vec<&'a Activity>,
    attempts: Vec<&'a Attempt>,
}

impl Gathered<'_> {
    fn write(&mut self, tx: &mut impl GenericClient, sql: &Statements) -> Result<(), postgres::Error> {
        if !self.ventures.is_empty() {
            let v = &self.ventures;
            tx.execute(
                &sql.venture,
                &[
                    &column(v, |v| &*v.id),
                    &column(v, |v| &*v.name),
                    &column(v, |v| &*v.icon),
                    &column(v, |v| v.status.as_str()),
                    &column(v, |v| v.priority.as_str()),
                    &column(v, |v| v.capital_spent.to_f64()),
                    &column(v, |v| v.capital_budget.to_f64()),
                    &column(v, |v| v.description.as_deref()),
                    &column(v, |v| v.created_at.to_string()),
                    &column(v, |v| v.updated_at.to_string()),
                ],
            )?;
        }
        // Outputs and descriptions can be large: a statement carries a bounded share of them,
        // so a big batch never holds a parameter buffer the size of the whole batch.
        for t in chunks(&self.tasks, task_bytes) {
            tx.execute(
                &sql.task,
                &[
                    &column(t, |t| &*t.id),
                    &column(t, |t| &*t.title),
                    &column(t, |t| t.description.as_deref()),
                    &column(t, |t| t.status.as_str()),
                    &column(t, |t| t.priority.as_str()),
                    &column(t, |t| money(t.estimated_cost)),
                    &column(t, |t| money(t.actual_cost)),
                    &column(t, tags_json),
                    &column(t, |t| t.output.as_deref()),
                    &column(t, |t| t.error.as_deref()),
                    &column(t, |t| t.assigned_to.as_deref()),
                    &column(t, |t| &*t.venture_id),
                    &column(t, |t| i64::from(t.attempts)),
                    &column(t, |t| i64::from(t.max_attempts)),
                    &column(t, |t| i64::from(t.lease_seconds)),
                    &column(t, |t| time(t.lease_expires_at)),
                    &column(t, |t| time(t.claimed_at)),
                    &column(t, |t| t.created_at.to_string()),
                    &column(t, |t| t.updated_at.to_string()),
                    &column(t, |t| time(t.completed_at)),
                    &column(t, |t| t.last_report.as_ref().map(|r| &*r.agent_id)),
                    &column(t, |t| i64::from(t.last_report.as_ref().map_or(0, |r| r.attempt))),
                    &column(t, |t| money(t.last_report.as_ref().and_then(|r| r.actual_cost))),
                    &column(t, |t| t.on_dependency_failure.as_str()),
                    &column(t, |t| t.cancel_requested),
                    &column(t, |t| time(t.run_at)),
                    &column(t, |t| i64::from(t.retry_delay_seconds)),
                    &column(t, |t| t.idempotency_key.as_deref()),
                    &column(t, |t| t.last_report.as_ref().and_then(|r| r.error.as_deref())),
                ],
            )?;
        }
        if !self.agents.is_empty() {
            let a = &self.agents;
            tx.execute(
                &sql.agent,
                &[
                    &column(a, |a| &*a.id),
                    &column(a, |a| &*a.name),
                    &column(a, |a| a.status.as_str()),
                    &column(a, |a| &*a.model),
                    &column(a, |a| a.current_task.as_deref()),
                    &column(a, |a| clamp_i64(a.tokens_used)),
                    &column(a, |a| clamp_i64(a.max_tokens)),
                    &column(a, |a| clamp_i64(a.sessions_count)),
                    &column(a, |a| a.last_active_at.to_string()),
                    &column(a, |a| a.created_at.to_string()),
                    &column(a, |a| a.updated_at.to_string()),
                ],
            )?;
        }
        if !self.activities.is_empty() {
            // The first row with an id wins, as one by one.
            let mut seen = HashMap::with_capacity(self.activities.len());
            let a: Vec<&Activity> =
                self.activities.iter().copied().filter(|a| seen.insert(&*a.id, ()).is_none()).collect();
            let mut inserted = 0;
            for a in chunks(&a, |a| a.title.len() + a.description.as_deref().map_or(0, str::len)) {
                inserted += tx.execute(
                    &sql.activity,
                    &[
                        &column(a, |a| &*a.id),
                        &column(a, |a| &*a.kind),
                        &column(a, |a| &*a.title),
                        &column(a, |a| a.description.as_deref()),
                        &column(a, |a| a.venture_id.as_deref()),
                        &column(a, |a| a.task_id.as_deref()),
                        &column(a, |a| a.agent_id.as_deref()),
                        &column(a, |a| a.created_at.to_string()),
                    ],
                )?;
            }
            let refused = self.activities.len() as u64 - inserted;
            if refused > 0 {
                tracing::warn!(refused, "activity ids were taken; the later activities were not logged");
            }
        }
        if !self.attempts.is_empty() {
            // The last write of an attempt wins, as one by one.
            let mut last = HashMap::with_capacity(self.attempts.len());
            for (i, a) in self.attempts.iter().enumerate() {
                last.insert((&*a.task_id, a.attempt), i);
            }
            let a: Vec<&Attempt> = self
                .attempts
                .iter()
                .enumerate()
                .filter(|(i, a)| last[&(&*a.task_id, a.attempt)] == *i)
                .map(|(_, a)| *a)
                .collect();
            for a in chunks(&a, |a| a.error.as_deref().map_or(0, str::len)) {
                tx.execute(
                    &sql.attempt,
                    &[
                        &column(a, |a| &*a.task_id),
                        &column(a, |a| i64::from(a.attempt)),
                        &column(a, |a| &*a.agent_id),
                        &column(a, |a| a.claimed_at.to_string()),
                        &column(a, |a| time(a.ended_at)),
                        &column(a, |a| a.outcome.as_str()),
                        &column(a, |a| a.error.as_deref()),
                        &column(a, |a| money(a.actual_cost)),
                        &column(a, |a| a.tokens_used.map(clamp_i64)),
                    ],
                )?;
            }
        }
        *self = Gathered::default();
        Ok(())
    }
}

/// The most rows one statement carries, and about the most bytes of text.
const CHUNK_ROWS: usize = 1_000;
const CHUNK_BYTES: usize = 1 << 20;

/// `rows` in runs of at most `CHUNK_ROWS` rows and, past the first row of each, at most
/// `CHUNK_BYTES` by `size`.
fn chunks<'s, 'r, R: ?Sized>(rows: &'s [&'r R], size: impl Fn(&R) -> usize) -> impl Iterator<Item = &'s [&'r R]> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= rows.len() {
            return None;
        }
        let (mut end, mut bytes) = (start + 1, size(rows[start]));
        while end < rows.len() && end - start < CHUNK_ROWS && bytes + size(rows[end]) <= CHUNK_BYTES {
            bytes += size(rows[end]);
            end += 1;
        }
        let chunk = &rows[start..end];
        start = end;
        Some(chunk)
    })
}

/// The text a task row carries beyond its fixed columns.
fn task_bytes(task: &Task) -> usize {
    let text = |s: Option<&str>| s.map_or(0, str::len);
    task.title.len() + text(task.description.as_deref()) + text(task.output.as_deref()) + text(task.error.as_deref())
}

/// One column of the gathered rows, as the array `unnest` reads.
fn column<'r, R: ?Sized, T>(rows: &[&'r R], value: impl Fn(&'r R) -> T) -> Vec<T> {
    rows.iter().map(|row| value(row)).collect()
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
