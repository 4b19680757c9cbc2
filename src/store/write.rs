//! The SQL that applies the scheduler's changes: whole-record upserts and deletes, in order.
//! The persister runs it in its batches; seeding runs it too.

use std::collections::HashMap;

use rusqlite::{params, CachedStatement, Connection, Transaction};

use crate::domain::{Millis, Task};
use crate::scheduler::Change;

// An update leaves out what never changes after the insert (id, ventureId, createdAt), so
// SQLite does not rewrite the index on Task.ventureId on every upsert.
const UPSERT_VENTURE: &str = "INSERT INTO Venture (id, name, icon, status, priority, capitalSpent, capitalBudget, description, createdAt, updatedAt)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
    ON CONFLICT(id) DO UPDATE SET name = excluded.name, icon = excluded.icon, status = excluded.status,
        priority = excluded.priority, capitalSpent = excluded.capitalSpent, capitalBudget = excluded.capitalBudget,
        description = excluded.description, updatedAt = excluded.updatedAt";

const UPSERT_TASK: &str = "INSERT INTO Task (id, title, description, status, priority, estimatedCost, actualCost, tags, output, error,
        assignedTo, ventureId, attempts, maxAttempts, leaseSeconds, leaseExpiresAt, claimedAt, createdAt, updatedAt, completedAt, reportedBy,
        reportedAttempt, reportedCost, onDependencyFailure, cancelRequested, runAt, retryDelaySeconds, idempotencyKey,
        reportedError)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25,
        ?26, ?27, ?28, ?29)
    ON CONFLICT(id) DO UPDATE SET title = excluded.title, description = excluded.description, status = excluded.status,
        priority = excluded.priority, estimatedCost = excluded.estimatedCost, actualCost = excluded.actualCost,
        tags = excluded.tags, output = excluded.output, error = excluded.error, assignedTo = excluded.assignedTo,
        attempts = excluded.attempts, maxAttempts = excluded.maxAttempts,
        leaseSeconds = excluded.leaseSeconds, leaseExpiresAt = excluded.leaseExpiresAt, claimedAt = excluded.claimedAt,
        updatedAt = excluded.updatedAt, completedAt = excluded.completedAt,
        reportedBy = excluded.reportedBy, reportedAttempt = excluded.reportedAttempt,
        reportedCost = excluded.reportedCost, onDependencyFailure = excluded.onDependencyFailure,
        cancelRequested = excluded.cancelRequested, runAt = excluded.runAt,
        retryDelaySeconds = excluded.retryDelaySeconds, reportedError = excluded.reportedError";

const UPSERT_AGENT: &str = "INSERT INTO Agent (id, name, status, model, currentTask, tokensUsed, maxTokens, sessionsCount, lastActiveAt, createdAt, updatedAt)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
    ON CONFLICT(id) DO UPDATE SET name = excluded.name, status = excluded.status, model = excluded.model,
        currentTask = excluded.currentTask, tokensUsed = excluded.tokensUsed, maxTokens = excluded.maxTokens,
        sessionsCount = excluded.sessionsCount, lastActiveAt = excluded.lastActiveAt, updatedAt = excluded.updatedAt";

// The first row with an id wins; `DO NOTHING` refuses the others without failing the whole
// batch. The API answers a create with a client-chosen id only after reading back that the
// committed row is its own (`docs/ARCHITECTURE.md`, "Activity ids").
const INSERT_ACTIVITY: &str =
    "INSERT INTO Activity (id, type, title, description, ventureId, taskId, agentId, createdAt)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(id) DO NOTHING";

const UPSERT_ATTEMPT: &str =
    "INSERT INTO TaskAttempt (taskId, attempt, agentId, claimedAt, endedAt, outcome, error, actualCost, tokensUsed)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
    ON CONFLICT(taskId, attempt) DO UPDATE SET agentId = excluded.agentId, claimedAt = excluded.claimedAt,
        endedAt = excluded.endedAt, outcome = excluded.outcome, error = excluded.error,
        actualCost = excluded.actualCost, tokensUsed = excluded.tokensUsed";

/// Applies changes in order inside the caller's transaction. An upsert that a later upsert
/// of the same record in the same batch supersedes is skipped: the later one writes the
/// whole row, and deletes in between only remove rows.
pub fn write_changes<'a>(tx: &Transaction<'_>, changes: impl IntoIterator<Item = &'a Change>) -> rusqlite::Result<()> {
    let changes: Vec<&Change> = changes.into_iter().collect();
    let superseded = last_upserts(&changes);
    let mut per_row = PerRowStatements::default();
    for (i, change) in changes.iter().enumerate() {
        if superseded(i) {
            continue;
        }
        match change {
            Change::Venture(v) => {
                prepared(&mut per_row.venture, tx, UPSERT_VENTURE)?.execute(params![
                    &*v.id,
                    &*v.name,
                    &*v.icon,
                    v.status.as_str(),
                    v.priority.as_str(),
                    v.capital_spent,
                    v.capital_budget,
                    v.description.as_deref(),
                    v.created_at.to_string(),
                    v.updated_at.to_string(),
                ])?;
            }
            Change::DeleteVenture(id) => {
                for table in ["TaskAttempt", "TaskDependency"] {
                    let sql = format!("DELETE FROM {table} WHERE taskId IN (SELECT id FROM Task WHERE ventureId = ?1)");
                    tx.prepare_cached(&sql)?.execute([&**id])?;
                }
                tx.prepare_cached("DELETE FROM Task WHERE ventureId = ?1")?.execute([&**id])?;
                tx.prepare_cached("DELETE FROM Venture WHERE id = ?1")?.execute([&**id])?;
            }
            Change::Task(t) => {
                prepared(&mut per_row.task, tx, UPSERT_TASK)?.execute(params![
                    &*t.id,
                    &*t.title,
                    t.description.as_deref(),
                    t.status.as_str(),
                    t.priority.as_str(),
                    t.estimated_cost,
                    t.actual_cost,
                    tags_json(t),
                    t.output.as_deref(),
                    t.error.as_deref(),
                    t.assigned_to.as_deref(),
                    &*t.venture_id,
                    t.attempts,
                    t.max_attempts,
                    t.lease_seconds,
                    t.lease_expires_at.map(text),
                    t.claimed_at.map(text),
                    t.created_at.to_string(),
                    t.updated_at.to_string(),
                    t.completed_at.map(text),
                    t.last_report.as_ref().map(|r| &*r.agent_id),
                    t.last_report.as_ref().map_or(0, |r| r.attempt),
                    t.last_report.as_ref().and_then(|r| r.actual_cost),
                    t.on_dependency_failure.as_str(),
                    t.cancel_requested,
                    t.run_at.map(text),
                    t.retry_delay_seconds,
                    t.idempotency_key.as_deref(),
                    t.last_report.as_ref().and_then(|r| r.error.as_deref()),
                ])?;
            }
            Change::DeleteTask(id) => {
                tx.prepare_cached("DELETE FROM TaskAttempt WHERE taskId = ?1")?.execute([&**id])?;
                tx.prepare_cached("DELETE FROM TaskDependency WHERE taskId = ?1")?.execute([&**id])?;
                tx.prepare_cached("DELETE FROM Task WHERE id = ?1")?.execute([&**id])?;
            }
            Change::Agent(a) => {
                prepared(&mut per_row.agent, tx, UPSERT_AGENT)?.execute(params![
                    &*a.id,
                    &*a.name,
                    a.status.as_str(),
                    &*a.model,
                    a.current_task.as_deref(),
                    clamp_i64(a.tokens_used),
                    clamp_i64(a.max_tokens),
                    clamp_i64(a.sessions_count),
                    a.last_active_at.to_string(),
                    a.created_at.to_string(),
                    a.updated_at.to_string(),
                ])?;
            }
            Change::DeleteAgent(id) => {
                tx.prepare_cached("DELETE FROM Agent WHERE id = ?1")?.execute([&**id])?;
            }
            Change::Activity(a) => {
                let inserted = prepared(&mut per_row.activity, tx, INSERT_ACTIVITY)?.execute(params![
                    &*a.id,
                    &*a.kind,
                    &*a.title,
                    a.description.as_deref(),
                    a.venture_id.as_deref(),
                    a.task_id.as_deref(),
                    a.agent_id.as_deref(),
                    a.created_at.to_string(),
                ])?;
                if inserted == 0 {
                    tracing::warn!(id = &*a.id, "an activity id was taken; the later activity was not logged");
                }
            }
            Change::Dependencies(task_id, depends_on) => {
                tx.prepare_cached("DELETE FROM TaskDependency WHERE taskId = ?1")?.execute([&**task_id])?;
                let mut insert = tx
                    .prepare_cached("INSERT INTO TaskDependency (taskId, dependsOnId, position) VALUES (?1, ?2, ?3)")?;
                for (position, dependency) in depends_on.iter().flat_map(|ids| ids.iter()).enumerate() {
                    insert.execute(params![&**task_id, &**dependency, position as i64])?;
                }
            }
            Change::Attempt(a) => {
                prepared(&mut per_row.attempt, tx, UPSERT_ATTEMPT)?.execute(params![
                    &*a.task_id,
                    a.attempt,
                    &*a.agent_id,
                    a.claimed_at.to_string(),
                    a.ended_at.map(text),
                    a.outcome.as_str(),
                    a.error.as_deref(),
                    a.actual_cost,
                    a.tokens_used.map(clamp_i64),
                ])?;
            }
        }
    }
    Ok(())
}

/// The statements a batch runs once per record, each taken from rusqlite's statement cache
/// once per batch instead of once per row: a lookup trims, hashes and copies the whole SQL
/// text, which cost about 6% of the persister's time when done for every row.
#[derive(Default)]
struct PerRowStatements<'conn> {
    venture: Option<CachedStatement<'conn>>,
    task: Option<CachedStatement<'conn>>,
    agent: Option<CachedStatement<'conn>>,
    activity: Option<CachedStatement<'conn>>,
    attempt: Option<CachedStatement<'conn>>,
}

/// The statement in `slot`, prepared on first use.
fn prepared<'s, 'conn>(
    slot: &'s mut Option<CachedStatement<'conn>>,
    conn: &'conn Connection,
    sql: &str,
) -> rusqlite::Result<&'s mut CachedStatement<'conn>> {
    let statement = match slot.take() {
        Some(statement) => statement,
        None => conn.prepare_cached(sql)?,
    };
    Ok(slot.insert(statement))
}

/// Says of each index in `changes` whether a later upsert of the same record supersedes it.
pub(super) fn last_upserts<'a>(changes: &'a [&'a Change]) -> impl Fn(usize) -> bool + 'a {
    let mut last_upsert: HashMap<(u8, &str), usize> = HashMap::with_capacity(changes.len());
    for (i, change) in changes.iter().enumerate() {
        if let Some(key) = upsert_key(change) {
            last_upsert.insert(key, i);
        }
    }
    move |i| upsert_key(changes[i]).is_some_and(|key| last_upsert[&key] != i)
}

fn upsert_key(change: &Change) -> Option<(u8, &str)> {
    match change {
        Change::Venture(v) => Some((0, &v.id)),
        Change::Task(t) => Some((1, &t.id)),
        Change::Agent(a) => Some((2, &a.id)),
        _ => None,
    }
}

fn text(time: Millis) -> String {
    time.to_string()
}

fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Tags as the seed stored them: a JSON array in a text column.
pub fn tags_json(task: &Task) -> Option<String> {
    task.tags
        .as_ref()
        .map(|tags| serde_json::to_string(&tags.iter().map(|t| &**t).collect::<Vec<&str>>()).expect("strings encode"))
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Records and a migrated file for the writer's tests.
    use super::*;
    use crate::domain::{Activity, Priority, TaskStatus};
    use rusqlite::Connection;
    use std::path::Path;
    use std::sync::Arc;

    pub fn task(id: &str, title: &str) -> Arc<Task> {
        Arc::new(Task {
            id: id.into(),
            title: title.into(),
            description: None,
            status: TaskStatus::Queue,
            priority: Priority::Medium,
            estimated_cost: None,
            actual_cost: None,
            tags: None,
            output: None,
            error: None,
            assigned_to: None,
            venture_id: "v".into(),
            attempts: 0,
            max_attempts: 3,
            lease_seconds: 1800,
            lease_expires_at: None,
            claimed_at: None,
            created_at: Millis(1),
            updated_at: Millis(1),
            completed_at: None,
            last_report: None,
            depends_on: None,
            blocked_by: None,
            on_dependency_failure: Default::default(),
            cancel_requested: false,
            run_at: None,
            retry_delay_seconds: 0,
            idempotency_key: None,
        })
    }

    pub fn activity(id: &str) -> Change {
        Change::Activity(Arc::new(Activity {
            id: id.into(),
            kind: "note".into(),
            title: "t".into(),
            description: None,
            venture_id: None,
            task_id: None,
            agent_id: None,
            created_at: Millis(1),
        }))
    }

    pub fn migrated(path: &Path) -> Connection {
        let mut conn = crate::store::open(path).unwrap();
        crate::store::migrate(&mut conn, path).unwrap();
        conn
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{activity, migrated, task};
    use super::*;
    use crate::domain::Activity;
    use rusqlite::Connection;
    use std::sync::Arc;

    fn titles(conn: &Connection) -> Vec<String> {
        let mut statement = conn.prepare("SELECT title FROM Task ORDER BY id").unwrap();
        statement.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn a_later_upsert_supersedes_and_deletes_keep_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = migrated(&dir.path().join("w.db"));
        let changes = vec![
            Change::Task(task("a", "first")),
            Change::Task(task("b", "kept")),
            Change::DeleteTask("b".into()),
            Change::Task(task("a", "second")),
            Change::Task(task("c", "gone")),
            Change::DeleteTask("c".into()),
        ];
        let tx = conn.transaction().unwrap();
        write_changes(&tx, &changes).unwrap();
        tx.commit().unwrap();
        assert_eq!(titles(&conn), ["second"]);
    }

    #[test]
    fn a_taken_activity_id_keeps_the_first_row_and_the_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = migrated(&dir.path().join("w.db"));
        let Change::Activity(first) = activity("dup") else { unreachable!() };
        let later = Activity { title: "later".into(), ..(*first).clone() };
        let changes = vec![Change::Activity(first), Change::Activity(Arc::new(later)), Change::Task(task("a", "kept"))];
        let tx = conn.transaction().unwrap();
        write_changes(&tx, &changes).unwrap();
        tx.commit().unwrap();
        let title: String = conn.query_row("SELECT title FROM Activity WHERE id = 'dup'", [], |r| r.get(0)).unwrap();
        assert_eq!((title.as_str(), titles(&conn)), ("t", vec!["kept".to_owned()]));
    }
}
