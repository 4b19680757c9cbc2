//! Reading the live state at start from PostgreSQL, as `store::load_snapshot` does from
//! SQLite, with the same decoders.

use postgres::GenericClient;

use crate::domain::TaskStatus;
use crate::scheduler::Snapshot;
use crate::store::load::{decode_agent, decode_finished_count, decode_task, decode_venture};
use crate::store::StoreError;

/// `store::load::TASK_COLUMNS` in PostgreSQL's spelling.
pub(super) const TASK_COLUMNS: &str = r#"id, title, description, status, priority, "estimatedCost", "actualCost", tags,
    output, error, "assignedTo", "ventureId", attempts, "maxAttempts", "leaseSeconds", "leaseExpiresAt", "claimedAt",
    "createdAt", "updatedAt", "completedAt", "reportedBy", "reportedAttempt", "reportedCost", "onDependencyFailure",
    "cancelRequested",
    (SELECT json_agg(d."dependsOnId" ORDER BY d.position)::text FROM "TaskDependency" d WHERE d."taskId" = "Task".id),
    "runAt", "retryDelaySeconds", "idempotencyKey", "reportedError""#;

/// Loads ventures, agents and unfinished tasks, and counts the finished ones. Runs in the
/// caller's transaction, so a new leader reads one consistent state.
pub fn load_snapshot(client: &mut impl GenericClient) -> Result<Snapshot, StoreError> {
    let statuses = |finished: bool| -> Vec<&'static str> {
        TaskStatus::ALL.iter().filter(|s| s.is_finished() == finished).map(|s| s.as_str()).collect()
    };
    let (unfinished, finished) = (statuses(false), statuses(true));
    let context = |table: &str| format!("loading {table}");
    let ventures = client
        .query(
            r#"SELECT id, name, icon, status, priority, "capitalSpent", "capitalBudget", description, "createdAt",
                "updatedAt" FROM "Venture""#,
            &[],
        )
        .map_err(StoreError::postgres(context("Venture")))?;
    let tasks = client
        .query(&format!(r#"SELECT {TASK_COLUMNS} FROM "Task" WHERE status = ANY($1)"#), &[&unfinished])
        .map_err(StoreError::postgres(context("Task")))?;
    let agents = client
        .query(
            r#"SELECT id, name, status, model, "currentTask", "tokensUsed", "maxTokens", "sessionsCount",
                "lastActiveAt", "createdAt", "updatedAt" FROM "Agent""#,
            &[],
        )
        .map_err(StoreError::postgres(context("Agent")))?;
    let counts = client
        .query(
            r#"SELECT "ventureId", status, count(*) FROM "Task" WHERE status = ANY($1) GROUP BY status, "ventureId""#,
            &[&finished],
        )
        .map_err(StoreError::postgres(context("Task")))?;
    Ok(Snapshot {
        ventures: ventures.iter().map(decode_venture).collect::<Result<_, _>>()?,
        tasks: tasks.iter().map(decode_task).collect::<Result<_, _>>()?,
        agents: agents.iter().map(decode_agent).collect::<Result<_, _>>()?,
        finished_counts: counts.iter().map(decode_finished_count).collect::<Result<_, _>>()?,
    })
}
