//! Retention: deleting finished tasks and activities older than their windows, in small
//! batches on the persister's own connection, between the scheduler's batches.
//!
//! Each round is one short transaction of at most `ROUND_ROWS` rows per kind, and a round
//! runs only while no envelope is waiting, so pruning never holds the scheduler's writes
//! back for long. Freed pages go to SQLite's free list and are reused by later inserts, so
//! under steady load with retention on the file stops growing (`auto_vacuum` stays off:
//! giving pages back to the file system would only have them allocated again).

use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

use crate::domain::{Id, Millis, TaskStatus};
use crate::scheduler::Pruned;

/// How long each kind of record is kept; `None` keeps it forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub completed: Option<Duration>,
    /// Also applies to cancelled tasks.
    pub failed: Option<Duration>,
    pub activity: Option<Duration>,
}

impl Retention {
    pub fn is_forever(&self) -> bool {
        self.completed.is_none() && self.failed.is_none() && self.activity.is_none()
    }
}

/// How often pruning looks for expired records. The contract allows 5 s of lateness.
pub const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// The most rows of one kind one round deletes.
pub const ROUND_ROWS: i64 = 500;
/// The longest the rounds of one turn may take before the persister looks at its channel.
pub(super) const TURN_BUDGET: Duration = Duration::from_millis(20);

const PRUNE_COMPLETED: &str = "DELETE FROM Task WHERE id IN
    (SELECT id FROM Task WHERE status = 'completed' AND completedAt < ?1 LIMIT ?2)
    RETURNING id, ventureId, status";
const PRUNE_FAILED: &str = "DELETE FROM Task WHERE id IN
    (SELECT id FROM Task WHERE status IN ('failed', 'cancelled') AND updatedAt < ?1 LIMIT ?2)
    RETURNING id, ventureId, status";
/// Activities are appended in time order, so the oldest are the first rowids: a look at the
/// first few rows finds every expired one without a scan.
const OLDEST_ACTIVITIES: &str = "SELECT rowid, createdAt FROM Activity ORDER BY rowid LIMIT ?1";

/// What one turn removed.
#[derive(Debug, Default)]
pub struct Turn {
    pub tasks: Vec<(Id, Id, TaskStatus)>,
    pub activities: usize,
    /// Some kind still has expired rows: come back soon.
    pub more: bool,
}

/// Runs rounds until nothing expired is left, the budget is spent, or `yield_now` says the
/// persister has other work.
pub fn prune_turn(
    conn: &mut Connection,
    retention: &Retention,
    now: Millis,
    yield_now: impl Fn() -> bool,
) -> rusqlite::Result<Turn> {
    let started = Instant::now();
    let mut turn = Turn::default();
    loop {
        let tx = conn.transaction()?;
        let mut more = false;
        for (window, sql) in [(retention.completed, PRUNE_COMPLETED), (retention.failed, PRUNE_FAILED)] {
            let Some(window) = window else { continue };
            let cutoff = cutoff(now, window);
            let mut statement = tx.prepare_cached(sql)?;
            let rows = statement.query_map(params![cutoff, ROUND_ROWS], |row| {
                let status: String = row.get(2)?;
                Ok((
                    Id::from(row.get::<_, String>(0)?),
                    Id::from(row.get::<_, String>(1)?),
                    TaskStatus::parse(&status).unwrap_or(TaskStatus::Failed),
                ))
            })?;
            let before = turn.tasks.len();
            for row in rows {
                turn.tasks.push(row?);
            }
            drop(statement);
            // A pruned task's attempts and dependencies go with it, in the same transaction.
            let mut attempts = tx.prepare_cached("DELETE FROM TaskAttempt WHERE taskId = ?1")?;
            let mut dependencies = tx.prepare_cached("DELETE FROM TaskDependency WHERE taskId = ?1")?;
            for (id, _, _) in &turn.tasks[before..] {
                attempts.execute([&**id])?;
                dependencies.execute([&**id])?;
            }
            more |= turn.tasks.len() - before == ROUND_ROWS as usize;
        }
        if let Some(window) = retention.activity {
            let (n, full) = prune_activities(&tx, &cutoff(now, window))?;
            turn.activities += n;
            more |= full;
        }
        tx.commit()?;
        turn.more = more;
        if !more || started.elapsed() >= TURN_BUDGET || yield_now() {
            return Ok(turn);
        }
    }
}

/// Deletes the expired prefix of the log; says whether a whole round's worth went.
fn prune_activities(tx: &rusqlite::Transaction<'_>, cutoff: &str) -> rusqlite::Result<(usize, bool)> {
    let mut last_expired: Option<i64> = None;
    let mut n = 0;
    {
        let mut statement = tx.prepare_cached(OLDEST_ACTIVITIES)?;
        let mut rows = statement.query([ROUND_ROWS])?;
        while let Some(row) = rows.next()? {
            let created_at: String = row.get(1)?;
            if created_at.as_str() >= cutoff {
                break;
            }
            last_expired = Some(row.get(0)?);
            n += 1;
        }
    }
    if let Some(rowid) = last_expired {
        tx.prepare_cached("DELETE FROM Activity WHERE rowid <= ?1")?.execute([rowid])?;
    }
    Ok((n, n == ROUND_ROWS as usize))
}

/// Records older than this text timestamp are expired (timestamps sort as text).
pub(super) fn cutoff(now: Millis, window: Duration) -> String {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    Millis(now.0.saturating_sub(window_ms)).to_string()
}

impl Turn {
    /// The report for the scheduler, which keeps the counts of finished tasks.
    pub fn into_pruned(self, after_seq: u64) -> Pruned {
        Pruned { after_seq, tasks: self.tasks }
    }
}
