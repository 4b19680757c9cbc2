//! Read-only queries of the activity log, which lives in SQLite rather than in memory:
//! it only grows, and nothing on the claim path reads it.

use rusqlite::types::Value;

use super::load::{Cells, Columns};
use super::pool::{with_client, Readers};
use super::tasks::store_to_sqlite;
use super::{postgres, Location, StoreError};
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
    readers: Readers,
}

const SELECT: &str = "SELECT id, type, title, description, ventureId, taskId, agentId, createdAt FROM Activity";

impl ActivityReader {
    pub fn new(location: &Location) -> ActivityReader {
        ActivityReader { readers: Readers::new(location) }
    }

    /// Newest first.
    pub fn list(&self, filter: &ActivityFilter) -> Result<Vec<Activity>, StoreError> {
        let pool = match &self.readers {
            Readers::Sqlite(pool) => pool,
            Readers::Postgres(pool) => return with_client(pool, |client| postgres::activities(client, filter)),
        };
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
        pool.with_connection("reading the activity log", |conn| {
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement
                .query_map(rusqlite::params_from_iter(values), |row| decode_activity(row).map_err(store_to_sqlite))?;
            rows.collect()
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<Activity>, StoreError> {
        match &self.readers {
            Readers::Sqlite(pool) => pool.with_connection("reading the activity log", |conn| {
                let mut statement = conn.prepare_cached(&format!("{SELECT} WHERE id = ?"))?;
                let mut rows = statement.query_map([id], |row| decode_activity(row).map_err(store_to_sqlite))?;
                rows.next().transpose()
            }),
            Readers::Postgres(pool) => with_client(pool, |client| postgres::activity(client, id)),
        }
    }
}

/// A row of `id, type, title, description, ventureId, taskId, agentId, createdAt`.
pub(super) fn decode_activity<R: Columns + ?Sized>(row: &R) -> Result<Activity, StoreError> {
    let c = Cells::new(row, "Activity")?;
    Ok(Activity {
        id: c.text(0, "id")?,
        kind: c.text(1, "type")?,
        title: c.text(2, "title")?,
        description: c.opt_text(3, "description")?,
        venture_id: c.opt_text(4, "ventureId")?,
        task_id: c.opt_text(5, "taskId")?,
        agent_id: c.opt_text(6, "agentId")?,
        created_at: c.opt_time(7, "createdAt")?.unwrap_or(Millis(0)),
    })
}
