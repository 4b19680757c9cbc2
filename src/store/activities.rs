//! Read-only queries of the activity log, which lives in SQLite rather than in memory:
//! it only grows, and nothing on the claim path reads it.

use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{types::Value, Row};

use super::{ReadPool, StoreError};
use crate::domain::{Activity, Millis};

/// The filters of `GET /api/activities`.
#[derive(Debug, Clone, Default)]
pub struct ActivityFilter {
    pub kind: Option<String>,
    pub venture_id: Option<String>,
    pub task_id: Option<String>,
    pub agent_id: Option<String>,
    /// Only activities logged before this one.
    pub before: Option<String>,
    pub limit: u32,
}

/// The activity log's queries; they run on blocking threads.
#[derive(Clone)]
pub struct ActivityReader {
    pool: ReadPool,
}

const SELECT: &str = "SELECT id, type, title, description, ventureId, taskId, agentId, createdAt FROM Activity";

impl ActivityReader {
    pub fn new(path: PathBuf) -> ActivityReader {
        ActivityReader { pool: ReadPool::new(path) }
    }

    /// Newest first.
    pub fn list(&self, filter: &ActivityFilter) -> Result<Vec<Activity>, StoreError> {
        // The WHERE clause is assembled from constant fragments; every value is bound.
        let mut sql = String::from(SELECT);
        let mut values: Vec<Value> = Vec::new();
        let conditions = [
            ("type = ?", &filter.kind),
            ("ventureId = ?", &filter.venture_id),
            ("taskId = ?", &filter.task_id),
            ("agentId = ?", &filter.agent_id),
            ("rowid < (SELECT rowid FROM Activity WHERE id = ?)", &filter.before),
        ];
        for (condition, value) in conditions {
            if let Some(value) = value {
                sql.push_str(if values.is_empty() { " WHERE " } else { " AND " });
                sql.push_str(condition);
                values.push(Value::Text(value.clone()));
            }
        }
        sql.push_str(" ORDER BY rowid DESC LIMIT ?");
        values.push(Value::Integer(i64::from(filter.limit)));
        self.pool.with_connection("reading the activity log", |conn| {
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(values), decode)?;
            rows.collect()
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<Activity>, StoreError> {
        self.pool.with_connection("reading the activity log", |conn| {
            let mut statement = conn.prepare_cached(&format!("{SELECT} WHERE id = ?"))?;
            let mut rows = statement.query_map([id], decode)?;
            rows.next().transpose()
        })
    }
}

fn decode(row: &Row<'_>) -> rusqlite::Result<Activity> {
    let text =
        |i: usize| -> rusqlite::Result<Option<Arc<str>>> { Ok(row.get::<_, Option<String>>(i)?.map(Into::into)) };
    let created_at: String = row.get(7)?;
    Ok(Activity {
        id: row.get::<_, String>(0)?.into(),
        kind: row.get::<_, String>(1)?.into(),
        title: row.get::<_, String>(2)?.into(),
        description: text(3)?,
        venture_id: text(4)?,
        task_id: text(5)?,
        agent_id: text(6)?,
        created_at: Millis::parse(&created_at).unwrap_or(Millis(0)),
    })
}
