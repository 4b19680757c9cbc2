//! Reading the live state at start: ventures, agents and unfinished tasks, and how many
//! finished tasks the database holds. History stays on disk, so start-up does not grow
//! with it.

use std::sync::Arc;

use rusqlite::{Connection, Row};

use super::StoreError;
use crate::domain::{
    Agent, AgentStatus, AppliedReport, Attempt, AttemptOutcome, Id, Millis, Money, OnDependencyFailure, Priority, Task,
    TaskIds, TaskStatus, Venture, VentureStatus,
};
use crate::scheduler::Snapshot;

/// The columns `decode_task` reads, in its order.
pub(super) const TASK_COLUMNS: &str = "id, title, description, status, priority, estimatedCost, actualCost, tags, \
    output, error, assignedTo, ventureId, attempts, maxAttempts, leaseSeconds, leaseExpiresAt, claimedAt, createdAt, \
    updatedAt, completedAt, reportedBy, reportedAttempt, reportedCost, onDependencyFailure, cancelRequested, \
    (SELECT json_group_array(dependsOnId ORDER BY position) FROM TaskDependency WHERE taskId = Task.id), runAt, \
    retryDelaySeconds, idempotencyKey, reportedError";

/// Loads ventures, agents and unfinished tasks, and counts the finished ones (through the
/// `(status, ventureId)` index alone, without reading their rows).
pub fn load_snapshot(conn: &Connection) -> Result<Snapshot, StoreError> {
    let statuses = |finished: bool| -> String {
        let names: Vec<String> = TaskStatus::ALL
            .iter()
            .filter(|s| s.is_finished() == finished)
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        names.join(", ")
    };
    let unfinished = format!("SELECT {TASK_COLUMNS} FROM Task WHERE status IN ({})", statuses(false));
    let counts = format!(
        "SELECT ventureId, status, count(*) FROM Task WHERE status IN ({}) GROUP BY status, ventureId",
        statuses(true)
    );
    Ok(Snapshot {
        ventures: load_table(conn, "Venture", "SELECT id, name, icon, status, priority, capitalSpent, capitalBudget, description, createdAt, updatedAt FROM Venture", |row| decode_venture(row))?,
        tasks: load_table(conn, "Task", &unfinished, |row| decode_task(row))?,
        agents: load_table(conn, "Agent", "SELECT id, name, status, model, currentTask, tokensUsed, maxTokens, sessionsCount, lastActiveAt, createdAt, updatedAt FROM Agent", |row| decode_agent(row))?,
        finished_counts: load_table(conn, "Task", &counts, |row| decode_finished_count(row))?,
    })
}

pub(super) fn decode_finished_count<R: Columns + ?Sized>(row: &R) -> Result<(Id, TaskStatus, u64), StoreError> {
    let c = Cells::new(row, "Task")?;
    Ok((c.id.as_str().into(), c.named(1, "status", TaskStatus::parse)?, c.count(2, "count")?))
}

fn load_table<T>(
    conn: &Connection,
    table: &'static str,
    sql: &str,
    decode: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let context = format!("loading {table}");
    let mut statement = conn.prepare(sql).map_err(StoreError::sqlite(&context))?;
    let mut rows = statement.query([]).map_err(StoreError::sqlite(&context))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(StoreError::sqlite(&context))? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// A result row of either store, read by column index: the one decoding of each record
/// (`decode_task`, ...) is written once over this and serves SQLite and PostgreSQL alike.
pub(super) trait Columns {
    fn opt_text(&self, index: usize) -> Result<Option<String>, String>;
    /// Integers; a boolean column reads as 0 or 1.
    fn opt_int(&self, index: usize) -> Result<Option<i64>, String>;
    /// Money: the stored amount, integer or real.
    fn opt_money(&self, index: usize) -> Result<Option<Money>, String>;
}

impl Columns for Row<'_> {
    fn opt_text(&self, index: usize) -> Result<Option<String>, String> {
        self.get(index).map_err(|e| e.to_string())
    }

    fn opt_int(&self, index: usize) -> Result<Option<i64>, String> {
        self.get(index).map_err(|e| e.to_string())
    }

    fn opt_money(&self, index: usize) -> Result<Option<Money>, String> {
        self.get(index).map_err(|e| e.to_string())
    }
}

/// Reads one column, naming the table, row and column when it is not what we wrote.
pub(super) struct Cells<'a, R: Columns + ?Sized> {
    row: &'a R,
    table: &'static str,
    id: String,
}

impl<'a, R: Columns + ?Sized> Cells<'a, R> {
    pub(super) fn new(row: &'a R, table: &'static str) -> Result<Self, StoreError> {
        let id = row.opt_text(0).ok().flatten().ok_or_else(|| StoreError::BadRow {
            table,
            id: String::new(),
            column: "id",
            value: "not text".into(),
        })?;
        Ok(Cells { row, table, id })
    }

    pub(super) fn opt_text(&self, index: usize, column: &'static str) -> Result<Option<Arc<str>>, StoreError> {
        Ok(self.opt_string(index, column)?.map(Into::into))
    }

    fn opt_string(&self, index: usize, column: &'static str) -> Result<Option<String>, StoreError> {
        self.row.opt_text(index).map_err(|e| self.bad(column, e))
    }

    fn string(&self, index: usize, column: &'static str) -> Result<String, StoreError> {
        self.opt_string(index, column)?.ok_or_else(|| self.bad(column, "NULL".into()))
    }

    pub(super) fn text(&self, index: usize, column: &'static str) -> Result<Arc<str>, StoreError> {
        Ok(self.string(index, column)?.into())
    }

    fn opt_int<T: TryFrom<i64>>(&self, index: usize, column: &'static str) -> Result<Option<T>, StoreError> {
        match self.row.opt_int(index).map_err(|e| self.bad(column, e))? {
            None => Ok(None),
            Some(n) => T::try_from(n).map(Some).map_err(|_| self.bad(column, n.to_string())),
        }
    }

    fn int<T: TryFrom<i64>>(&self, index: usize, column: &'static str) -> Result<T, StoreError> {
        self.opt_int(index, column)?.ok_or_else(|| self.bad(column, "NULL".into()))
    }

    /// A count that cannot be negative; a negative stored value reads as 0.
    fn count(&self, index: usize, column: &'static str) -> Result<u64, StoreError> {
        Ok(self.int::<i64>(index, column)?.max(0) as u64)
    }

    fn flag(&self, index: usize, column: &'static str) -> Result<bool, StoreError> {
        Ok(self.int::<i64>(index, column)? != 0)
    }

    fn opt_money(&self, index: usize, column: &'static str) -> Result<Option<Money>, StoreError> {
        self.row.opt_money(index).map_err(|e| self.bad(column, e))
    }

    fn money(&self, index: usize, column: &'static str) -> Result<Money, StoreError> {
        self.opt_money(index, column)?.ok_or_else(|| self.bad(column, "NULL".into()))
    }

    fn time(&self, index: usize, column: &'static str) -> Result<Millis, StoreError> {
        let text = self.string(index, column)?;
        Millis::parse(&text).ok_or_else(|| self.bad(column, text))
    }

    pub(super) fn opt_time(&self, index: usize, column: &'static str) -> Result<Option<Millis>, StoreError> {
        match self.opt_string(index, column)? {
            None => Ok(None),
            Some(text) => Millis::parse(&text).map(Some).ok_or_else(|| self.bad(column, text)),
        }
    }

    fn named<T>(&self, index: usize, column: &'static str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
        let text = self.string(index, column)?;
        parse(&text).ok_or_else(|| self.bad(column, text))
    }

    fn bad(&self, column: &'static str, value: String) -> StoreError {
        StoreError::BadRow { table: self.table, id: self.id.clone(), column, value }
    }
}

pub(super) fn decode_venture<R: Columns + ?Sized>(row: &R) -> Result<Venture, StoreError> {
    let c = Cells::new(row, "Venture")?;
    Ok(Venture {
        id: c.id.as_str().into(),
        name: c.text(1, "name")?,
        icon: c.text(2, "icon")?,
        status: c.named(3, "status", VentureStatus::parse)?,
        priority: c.named(4, "priority", Priority::parse)?,
        capital_spent: c.money(5, "capitalSpent")?,
        capital_budget: c.money(6, "capitalBudget")?,
        description: c.opt_text(7, "description")?,
        created_at: c.time(8, "createdAt")?,
        updated_at: c.time(9, "updatedAt")?,
    })
}

/// A row of `TASK_COLUMNS`.
/// `TaskAttempt`'s columns in the order `decode_attempt` reads them.
pub(super) const ATTEMPT_COLUMNS: &str =
    "taskId, attempt, agentId, claimedAt, endedAt, outcome, error, actualCost, tokensUsed";

pub(super) fn decode_attempt<R: Columns + ?Sized>(row: &R) -> Result<Attempt, StoreError> {
    let c = Cells::new(row, "TaskAttempt")?;
    Ok(Attempt {
        task_id: c.id.as_str().into(),
        attempt: c.int(1, "attempt")?,
        agent_id: c.text(2, "agentId")?,
        claimed_at: c.time(3, "claimedAt")?,
        ended_at: c.opt_time(4, "endedAt")?,
        outcome: c.named(5, "outcome", AttemptOutcome::parse)?,
        error: c.opt_text(6, "error")?,
        actual_cost: c.opt_money(7, "actualCost")?,
        tokens_used: c.opt_int::<i64>(8, "tokensUsed")?.map(|n| n.max(0) as u64),
    })
}

/// A JSON array of ids; `None` when empty.
fn ids_list<R: Columns + ?Sized>(
    c: &Cells<'_, R>,
    index: usize,
    column: &'static str,
) -> Result<Option<TaskIds>, StoreError> {
    let Some(text) = c.opt_string(index, column)? else { return Ok(None) };
    let ids: Vec<String> = serde_json::from_str(&text).map_err(|_| c.bad(column, text.clone()))?;
    Ok((!ids.is_empty()).then(|| ids.into_iter().map(Id::from).collect()))
}

pub(super) fn decode_task<R: Columns + ?Sized>(row: &R) -> Result<Task, StoreError> {
    let c = Cells::new(row, "Task")?;
    let tags = match c.opt_string(7, "tags")? {
        None => None,
        Some(text) => {
            let list: Vec<String> = serde_json::from_str(&text).map_err(|_| c.bad("tags", text.clone()))?;
            Some(list.into_iter().map(Arc::from).collect())
        }
    };
    // A report's fields mean something only with its agent.
    let last_report = match c.opt_text(20, "reportedBy")? {
        None => None,
        Some(agent_id) => Some(Arc::new(AppliedReport {
            agent_id,
            attempt: c.int(21, "reportedAttempt")?,
            actual_cost: c.opt_money(22, "reportedCost")?,
            error: c.opt_text(29, "reportedError")?,
        })),
    };
    Ok(Task {
        id: c.id.as_str().into(),
        title: c.text(1, "title")?,
        description: c.opt_text(2, "description")?,
        status: c.named(3, "status", TaskStatus::parse)?,
        priority: c.named(4, "priority", Priority::parse)?,
        estimated_cost: c.opt_money(5, "estimatedCost")?,
        actual_cost: c.opt_money(6, "actualCost")?,
        tags,
        output: c.opt_text(8, "output")?,
        error: c.opt_text(9, "error")?,
        assigned_to: c.opt_text(10, "assignedTo")?,
        venture_id: c.text(11, "ventureId")?,
        attempts: c.int(12, "attempts")?,
        max_attempts: c.int(13, "maxAttempts")?,
        lease_seconds: c.int(14, "leaseSeconds")?,
        lease_expires_at: c.opt_time(15, "leaseExpiresAt")?,
        claimed_at: c.opt_time(16, "claimedAt")?,
        created_at: c.time(17, "createdAt")?,
        updated_at: c.time(18, "updatedAt")?,
        completed_at: c.opt_time(19, "completedAt")?,
        on_dependency_failure: c.named(23, "onDependencyFailure", OnDependencyFailure::parse)?,
        cancel_requested: c.flag(24, "cancelRequested")?,
        depends_on: ids_list(&c, 25, "dependsOn")?,
        // Derived by the scheduler from which dependencies are unfinished.
        blocked_by: None,
        run_at: c.opt_time(26, "runAt")?,
        retry_delay_seconds: c.int(27, "retryDelaySeconds")?,
        idempotency_key: c.opt_text(28, "idempotencyKey")?,
        last_report,
    })
}

pub(super) fn decode_agent<R: Columns + ?Sized>(row: &R) -> Result<Agent, StoreError> {
    let c = Cells::new(row, "Agent")?;
    Ok(Agent {
        id: c.id.as_str().into(),
        name: c.text(1, "name")?,
        status: c.named(2, "status", AgentStatus::parse)?,
        model: c.text(3, "model")?,
        current_task: c.opt_text(4, "currentTask")?,
        tokens_used: c.count(5, "tokensUsed")?,
        max_tokens: c.count(6, "maxTokens")?,
        sessions_count: c.count(7, "sessionsCount")?,
        last_active_at: c.time(8, "lastActiveAt")?,
        created_at: c.time(9, "createdAt")?,
        updated_at: c.time(10, "updatedAt")?,
    })
}
