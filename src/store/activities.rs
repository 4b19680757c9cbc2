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

/// What `decode_activity` reads, in its order.
const COLUMNS: &str = "id, type, title, description, ventureId, taskId, agentId, createdAt";

/// The activities not yet in the secondary indexes: every row after the last indexed one.
/// Rows are appended in rowid order and the tail moves into the indexes whole, so the
/// unindexed rows are always the newest (migrations/007_activity_tail.sql). `NOT INDEXED`
/// keeps the lookup a backwards walk of the table over the short tail: a partial index would
/// match `indexed = 1` and be scanned whole.
pub(super) const UNINDEXED_TAIL: &str =
    "rowid > coalesce((SELECT rowid FROM Activity NOT INDEXED WHERE indexed = 1 ORDER BY rowid DESC LIMIT 1), 0)";

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
        let (sql, values) = list_query(filter);
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
                let mut statement = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM Activity WHERE id = ?"))?;
                let mut rows = statement.query_map([id], |row| decode_activity(row).map_err(store_to_sqlite))?;
                rows.next().transpose()
            }),
            Readers::Postgres(pool) => with_client(pool, |client| postgres::activity(client, id)),
        }
    }
}

/// The SQL of a listing and its values. The WHERE clause is assembled from constant
/// fragments; every value is bound.
///
/// A filter by type, venture, task or agent reads its partial index for the indexed rows
/// and the table for the unindexed tail, newest first each; SQLite merges the two and stops
/// at the limit. Without one of those filters the table is read backwards, as it is.
fn list_query(filter: &ActivityFilter) -> (String, Vec<Value>) {
    let indexed_filters = [
        ("type", &filter.kind),
        ("ventureId", &filter.venture_id),
        ("taskId", &filter.task_id),
        ("agentId", &filter.agent_id),
    ];
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    for (column, value) in indexed_filters {
        if let Some(value) = value {
            values.push(Value::Text(value.clone()));
            conditions.push(format!("{column} = ?{}", values.len()));
        }
    }
    let by_index = !conditions.is_empty();
    if let Some(before) = &filter.before {
        values.push(Value::Text(before.clone()));
        conditions.push(format!("rowid < (SELECT rowid FROM Activity WHERE id = ?{})", values.len()));
    }
    values.push(Value::Integer(i64::from(filter.limit)));
    let limit = format!("LIMIT ?{}", values.len());
    let sql = if by_index {
        // A compound's ORDER BY names a result column: the rowid is one, after the columns
        // that `decode_activity` reads.
        let select = format!("SELECT {COLUMNS}, rowid AS seq FROM Activity");
        let conditions = conditions.join(" AND ");
        format!(
            "{select} WHERE {UNINDEXED_TAIL} AND {conditions} \
             UNION ALL {select} WHERE indexed = 1 AND {conditions} ORDER BY seq DESC {limit}"
        )
    } else if conditions.is_empty() {
        format!("SELECT {COLUMNS} FROM Activity ORDER BY rowid DESC {limit}")
    } else {
        format!("SELECT {COLUMNS} FROM Activity WHERE {} ORDER BY rowid DESC {limit}", conditions.join(" AND "))
    };
    (sql, values)
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
    use crate::store::write_fixtures::migrated;
    use crate::store::{index_activity_tail, write_changes};

    #[derive(Debug, Clone)]
    enum Step {
        Append { kind: u8, venture: u8, task: u8, agent: u8 },
        IndexTail,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..3u8, 0..2u8, 0..4u8, 0..4u8)
                .prop_map(|(kind, venture, task, agent)| Step::Append { kind, venture, task, agent }),
            1 => Just(Step::IndexTail),
        ]
    }

    type Query = (Option<u8>, Option<u8>, Option<u8>, Option<u8>, Option<usize>, u32);

    fn query() -> impl Strategy<Value = Query> {
        let value = |n: u8| proptest::option::of(0..n);
        (value(3), value(2), value(4), value(4), proptest::option::of(0..60usize), 1..8u32)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Rows in the partial indexes and rows still in the unindexed tail read as one log:
        /// every filter, cursor and limit answers what a scan of all rows answers.
        #[test]
        fn indexed_rows_and_the_unindexed_tail_list_as_one_log(
            steps in vec(step(), 1..60),
            queries in vec(query(), 1..12),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.db");
            let mut conn = migrated(&path);
            let mut log: Vec<Activity> = Vec::new();
            for step in &steps {
                let tx = conn.transaction().unwrap();
                match *step {
                    Step::Append { kind, venture, task, agent } => {
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
                    Step::IndexTail => {
                        index_activity_tail(&tx).unwrap();
                    }
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
