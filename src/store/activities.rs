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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::scheduler::Change;
    use crate::store::write_changes;
    use crate::store::write_fixtures::migrated;

    /// An activity's type, venture, task and agent, each one of a few.
    type Fields = (u8, u8, u8, u8);

    fn fields() -> impl Strategy<Value = Fields> {
        (0..3u8, 0..2u8, 0..4u8, 0..4u8)
    }

    type Query = (Option<u8>, Option<u8>, Option<u8>, Option<u8>, Option<usize>, u32);

    fn query() -> impl Strategy<Value = Query> {
        let value = |n: u8| proptest::option::of(0..n);
        (value(3), value(2), value(4), value(4), proptest::option::of(0..100usize), 1..8u32)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Every filter, cursor and limit answers what a scan of all rows answers, whichever
        /// index SQLite picks, across commits of one row and of several.
        #[test]
        fn a_listing_answers_what_a_scan_of_the_log_answers(
            batches in vec(vec(fields(), 1..4), 1..40),
            queries in vec(query(), 1..12),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.db");
            let mut conn = migrated(&path);
            let mut log: Vec<Activity> = Vec::new();
            for batch in &batches {
                let tx = conn.transaction().unwrap();
                for &(kind, venture, task, agent) in batch {
                    let activity = Activity {
                        id: format!("a{:03}", log.len()).into(),
                        kind: format!("k{kind}").into(),
                        title: "t".into(),
                        description: None,
                        venture_id: Some(format!("v{venture}").into()),
                        task_id: Some(format!("t{task}").into()),
                        agent_id: Some(format!("g{agent}").into()),
                        created_at: Millis(1),
                    };
                    write_changes(&tx, [&Change::Activity(Arc::new(activity.clone()))]).unwrap();
                    log.push(activity);
                }
                tx.commit().unwrap();
            }
            let reader = ActivityReader::new(&Location::Sqlite(path.clone()));
            for (kind, venture, task, agent, before, limit) in queries {
                let before = before.filter(|&i| i < log.len());
                let filter = ActivityFilter {
                    kind: kind.map(|k| format!("k{k}")),
                    venture_id: venture.map(|v| format!("v{v}")),
                    task_id: task.map(|t| format!("t{t}")),
                    agent_id: agent.map(|g| format!("g{g}")),
                    before: before.map(|i| log[i].id.to_string()),
                    limit,
                };
                let listed: Vec<String> = reader.list(&filter).unwrap().iter().map(|a| a.id.to_string()).collect();
                let matches = |wanted: &Option<String>, field: Option<&str>| {
                    wanted.as_deref().is_none_or(|w| field == Some(w))
                };
                let expected: Vec<String> = log[..before.unwrap_or(log.len())]
                    .iter()
                    .rev()
                    .filter(|a| {
                        matches(&filter.kind, Some(&*a.kind))
                            && matches(&filter.venture_id, a.venture_id.as_deref())
                            && matches(&filter.task_id, a.task_id.as_deref())
                            && matches(&filter.agent_id, a.agent_id.as_deref())
                    })
                    .take(limit as usize)
                    .map(|a| a.id.to_string())
                    .collect();
                prop_assert_eq!(listed, expected, "filter {:?}", filter);
            }
        }
    }
}
