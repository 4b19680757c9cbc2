//! Read-only queries of tasks: the finished ones live only here, and listings read them
//! in list order (`createdAt`, then id) as a stream, never the whole answer at once.

use rusqlite::types::Value;

use super::load::{decode_attempt, decode_task, ATTEMPT_COLUMNS, TASK_COLUMNS};
use super::pool::{with_client, Readers};
use super::{postgres, Location, StoreError};
use crate::domain::{Attempt, Id, Task};
use crate::scheduler::{ListKey, ListOrder, TaskFilter, TaskHistory};

/// The task table's reads; they run on blocking threads.
#[derive(Clone)]
pub struct TaskReader {
    readers: Readers,
}

impl TaskReader {
    pub fn new(location: &Location) -> TaskReader {
        TaskReader { readers: Readers::new(location) }
    }

    /// The task's row, whatever its status.
    pub fn get(&self, id: &str) -> Result<Option<Task>, StoreError> {
        match &self.readers {
            Readers::Sqlite(pool) => {
                let sql = format!("SELECT {TASK_COLUMNS} FROM Task WHERE id = ?1");
                pool.with_connection("reading a task", |conn| {
                    let mut statement = conn.prepare_cached(&sql)?;
                    let mut rows = statement.query([id])?;
                    match rows.next()? {
                        Some(row) => decode_task(row).map(Some).map_err(store_to_sqlite),
                        None => Ok(None),
                    }
                })
            }
            Readers::Postgres(pool) => with_client(pool, |client| postgres::task_by_id(client, id)),
        }
    }

    /// The venture's task with this idempotency key, whatever its status.
    pub fn with_key(&self, venture_id: &str, key: &str) -> Result<Option<Task>, StoreError> {
        match &self.readers {
            Readers::Sqlite(pool) => {
                let sql = format!("SELECT {TASK_COLUMNS} FROM Task WHERE ventureId = ?1 AND idempotencyKey = ?2");
                pool.with_connection("reading a task by idempotency key", |conn| {
                    let mut statement = conn.prepare_cached(&sql)?;
                    let mut rows = statement.query([venture_id, key])?;
                    match rows.next()? {
                        Some(row) => decode_task(row).map(Some).map_err(store_to_sqlite),
                        None => Ok(None),
                    }
                })
            }
            Readers::Postgres(pool) => with_client(pool, |client| postgres::task_with_key(client, venture_id, key)),
        }
    }

    /// Every attempt of the task, oldest first.
    pub fn attempts(&self, task_id: &str) -> Result<Vec<Attempt>, StoreError> {
        match &self.readers {
            Readers::Sqlite(pool) => {
                let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM TaskAttempt WHERE taskId = ?1 ORDER BY attempt");
                pool.with_connection("reading a task's attempts", |conn| {
                    let mut statement = conn.prepare_cached(&sql)?;
                    let mut rows = statement.query([task_id])?;
                    let mut attempts = Vec::new();
                    while let Some(row) = rows.next()? {
                        attempts.push(decode_attempt(row).map_err(store_to_sqlite)?);
                    }
                    Ok(attempts)
                })
            }
            Readers::Postgres(pool) => with_client(pool, |client| postgres::task_attempts(client, task_id)),
        }
    }

    /// Hands the finished tasks matching `filter` that follow `after` to `each`, in list
    /// order (or its reverse, `ListOrder::Desc`), one row at a time, until `each` returns
    /// `false`.
    pub fn for_each_finished(
        &self,
        filter: &TaskFilter,
        after: Option<&ListKey>,
        order: ListOrder,
        each: impl FnMut(Task) -> bool,
    ) -> Result<(), StoreError> {
        self.for_each_finished_of(filter, after, order, u64::MAX, each)
    }

    /// `for_each_finished`, told how many finished rows the status and venture filters keep
    /// at most (the scheduler's counts): when they are few, SQLite reads them through the
    /// status index and sorts them, rather than walk the whole history in list order past
    /// rows of other statuses (an empty `failed` column would cost a scan of every task).
    pub fn for_each_finished_of(
        &self,
        filter: &TaskFilter,
        after: Option<&ListKey>,
        order: ListOrder,
        at_most: u64,
        each: impl FnMut(Task) -> bool,
    ) -> Result<(), StoreError> {
        match &self.readers {
            Readers::Sqlite(pool) => sqlite_finished(pool, filter, after, order, at_most <= FEW_ROWS, each),
            // A connection of its own: a slow reader never holds one the short queries need.
            Readers::Postgres(pool) => {
                let mut client = pool.open_own()?;
                postgres::finished_tasks(&mut client, filter, after, order, each)
            }
        }
    }
}

/// Rows a listing may sort in memory rather than read in list order from an index.
const FEW_ROWS: u64 = 2_000;

fn sqlite_finished(
    pool: &super::ReadPool,
    filter: &TaskFilter,
    after: Option<&ListKey>,
    order: ListOrder,
    few: bool,
    mut each: impl FnMut(Task) -> bool,
) -> Result<(), StoreError> {
    let finished = filter.finished_statuses();
    if finished.is_empty() {
        return Ok(());
    }
    // `+status` keeps the planner off the status index, whose order is not list order:
    // the rows must come from an index in `createdAt, id` order, or SQLite would sort
    // (and hold) the whole answer first; newest first reads the same index backwards.
    // The WHERE clause is built from constant
    // fragments; every value is bound.
    let marks = vec!["?"; finished.len()].join(", ");
    let mut sql = match few {
        // At most `FEW_ROWS` match: found through the status index, then sorted.
        true => format!("SELECT {TASK_COLUMNS} FROM Task INDEXED BY Task_status_venture_idx WHERE status IN ({marks})"),
        false => format!("SELECT {TASK_COLUMNS} FROM Task WHERE +status IN ({marks})"),
    };
    let mut values: Vec<Value> = finished.iter().map(|s| Value::Text((*s).to_owned())).collect();
    let conditions = [
        ("ventureId = ?", filter.venture_id.as_deref()),
        ("assignedTo = ?", filter.assigned_to.as_deref()),
        ("priority = ?", filter.priority.map(|p| p.as_str())),
    ];
    for (condition, value) in conditions {
        if let Some(value) = value {
            sql.push_str(" AND ");
            sql.push_str(condition);
            values.push(Value::Text(value.to_owned()));
        }
    }
    let (beyond, direction) = match order {
        ListOrder::Asc => (">", "ASC"),
        ListOrder::Desc => ("<", "DESC"),
    };
    if let Some((created_at, id)) = after {
        sql.push_str(&format!(" AND (createdAt, id) {beyond} (?, ?)"));
        values.push(Value::Text(created_at.to_string()));
        values.push(Value::Text(id.to_string()));
    }
    sql.push_str(&format!(" ORDER BY createdAt {direction}, id {direction}"));
    pool.with_own_connection("listing finished tasks", |conn| {
        let mut statement = conn.prepare_cached(&sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(values))?;
        while let Some(row) = rows.next()? {
            if !each(decode_task(row).map_err(store_to_sqlite)?) {
                break;
            }
        }
        Ok(())
    })
}

impl TaskHistory for TaskReader {
    fn finished_task(&self, id: &Id) -> Result<Option<Task>, String> {
        self.get(id).map_err(|e| e.to_string())
    }

    fn task_with_key(&self, venture_id: &Id, key: &str) -> Result<Option<Task>, String> {
        self.with_key(venture_id, key).map_err(|e| e.to_string())
    }
}

/// A row this binary cannot read, as the SQLite error the pool reports.
pub(super) fn store_to_sqlite(error: StoreError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error))
}
