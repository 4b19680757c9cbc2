//! Retention in PostgreSQL: the same rounds as `persist::retention` runs on SQLite, each
//! fenced by the leader's epoch like every other write.

use std::time::Instant;

use postgres::Client;

use super::retention::{cutoff, Retention, Turn, ROUND_ROWS, TURN_BUDGET};
use crate::domain::{Id, Millis, TaskStatus};
use crate::store::postgres::Lease;
use crate::store::StoreError;

const PRUNE_COMPLETED: &str = r#"DELETE FROM "Task" WHERE id IN
    (SELECT id FROM "Task" WHERE status = 'completed' AND "completedAt" < $1 LIMIT $2)
    RETURNING id, "ventureId", status"#;
const PRUNE_FAILED: &str = r#"DELETE FROM "Task" WHERE id IN
    (SELECT id FROM "Task" WHERE status IN ('failed', 'cancelled') AND "updatedAt" < $1 LIMIT $2)
    RETURNING id, "ventureId", status"#;
/// Activities are appended in time order: the oldest are the lowest `seq`s.
const PRUNE_ACTIVITIES: &str = r#"DELETE FROM "Activity" WHERE seq IN
    (SELECT seq FROM "Activity" WHERE "createdAt" < $1 ORDER BY seq LIMIT $2)"#;

/// Runs rounds until nothing expired is left, the budget is spent, or `yield_now` says the
/// persister has other work.
pub fn prune_turn(
    client: &mut Client,
    lease: &Lease,
    retention: &Retention,
    now: Millis,
    yield_now: impl Fn() -> bool,
) -> Result<Turn, StoreError> {
    let started = Instant::now();
    let mut turn = Turn::default();
    let context = "pruning expired records";
    loop {
        let mut tx = client.transaction().map_err(StoreError::postgres(context))?;
        lease.fence(&mut tx)?;
        let mut more = false;
        for (window, sql) in [(retention.completed, PRUNE_COMPLETED), (retention.failed, PRUNE_FAILED)] {
            let Some(window) = window else { continue };
            let rows = tx.query(sql, &[&cutoff(now, window), &ROUND_ROWS]).map_err(StoreError::postgres(context))?;
            let before = turn.tasks.len();
            for row in &rows {
                let status: String = row.get(2);
                turn.tasks.push((
                    Id::from(row.get::<_, String>(0)),
                    Id::from(row.get::<_, String>(1)),
                    TaskStatus::parse(&status).unwrap_or(TaskStatus::Failed),
                ));
            }
            let ids: Vec<&str> = turn.tasks[before..].iter().map(|(id, _, _)| &**id).collect();
            for table in ["TaskAttempt", "TaskDependency"] {
                tx.execute(&format!(r#"DELETE FROM "{table}" WHERE "taskId" = ANY($1)"#), &[&ids])
                    .map_err(StoreError::postgres(context))?;
            }
            more |= ids.len() == ROUND_ROWS as usize;
        }
        if let Some(window) = retention.activity {
            let n = tx
                .execute(PRUNE_ACTIVITIES, &[&cutoff(now, window), &ROUND_ROWS])
                .map_err(StoreError::postgres(context))?;
            turn.activities += n as usize;
            more |= n == ROUND_ROWS as u64;
        }
        tx.commit().map_err(StoreError::postgres(context))?;
        turn.more = more;
        if !more || started.elapsed() >= TURN_BUDGET || yield_now() {
            return Ok(turn);
        }
    }
}
