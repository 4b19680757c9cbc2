//! The read-only queries of `TaskReader` and `ActivityReader` in PostgreSQL.

use postgres::types::ToSql;
use postgres::Client;

use super::load::TASK_COLUMNS;
use crate::domain::{Activity, Attempt, Task};
use crate::scheduler::{ListKey, ListOrder, TaskFilter};
use crate::store::activities::decode_activity;
use crate::store::load::{decode_attempt, decode_task};
use crate::store::{ActivityFilter, StoreError};

/// Rows fetched per round trip while a listing streams.
const LISTING_PAGE: i32 = 256;

type Param = Box<dyn ToSql + Sync>;

fn refs(values: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect()
}

pub fn task_by_id(client: &mut Client, id: &str) -> Result<Option<Task>, StoreError> {
    let rows = client
        .query(&format!(r#"SELECT {TASK_COLUMNS} FROM "Task" WHERE id = $1"#), &[&id])
        .map_err(StoreError::postgres("reading a task"))?;
    rows.first().map(decode_task).transpose()
}

pub fn task_with_key(client: &mut Client, venture_id: &str, key: &str) -> Result<Option<Task>, StoreError> {
    let rows = client
        .query(
            &format!(r#"SELECT {TASK_COLUMNS} FROM "Task" WHERE "ventureId" = $1 AND "idempotencyKey" = $2"#),
            &[&venture_id, &key],
        )
        .map_err(StoreError::postgres("reading a task by idempotency key"))?;
    rows.first().map(decode_task).transpose()
}

pub fn task_attempts(client: &mut Client, task_id: &str) -> Result<Vec<Attempt>, StoreError> {
    let rows = client
        .query(
            r#"SELECT "taskId", attempt, "agentId", "claimedAt", "endedAt", outcome, error, "actualCost", "tokensUsed"
                FROM "TaskAttempt" WHERE "taskId" = $1 ORDER BY attempt"#,
            &[&task_id],
        )
        .map_err(StoreError::postgres("reading a task's attempts"))?;
    rows.iter().map(decode_attempt).collect()
}

/// The finished tasks matching `filter` after `after`, in list order (or its reverse), a
/// page of rows per round trip (a portal), until `each` says stop.
pub fn finished_tasks(
    client: &mut Client,
    filter: &TaskFilter,
    after: Option<&ListKey>,
    order: ListOrder,
    mut each: impl FnMut(Task) -> bool,
) -> Result<(), StoreError> {
    let finished = filter.finished_statuses();
    if finished.is_empty() {
        return Ok(());
    }
    let mut values: Vec<Param> = vec![Box::new(finished.iter().map(|s| s.to_string()).collect::<Vec<String>>())];
    let mut sql = format!(r#"SELECT {TASK_COLUMNS} FROM "Task" WHERE status = ANY($1)"#);
    let conditions = [
        (r#""ventureId""#, filter.venture_id.as_deref()),
        (r#""assignedTo""#, filter.assigned_to.as_deref()),
        ("priority", filter.priority.map(|p| p.as_str())),
    ];
    for (column, value) in conditions {
        if let Some(value) = value {
            values.push(Box::new(value.to_owned()));
            sql.push_str(&format!(" AND {column} = ${}", values.len()));
        }
    }
    let (beyond, direction) = match order {
        ListOrder::Asc => (">", "ASC"),
        ListOrder::Desc => ("<", "DESC"),
    };
    if let Some((created_at, id)) = after {
        values.push(Box::new(created_at.to_string()));
        values.push(Box::new(id.to_string()));
        sql.push_str(&format!(r#" AND ("createdAt", id) {beyond} (${}, ${})"#, values.len() - 1, values.len()));
    }
    // Newest first reads the `createdAt, id` index backwards.
    sql.push_str(&format!(r#" ORDER BY "createdAt" {direction}, id {direction}"#));
    let context = "listing finished tasks";
    let mut tx = client.transaction().map_err(StoreError::postgres(context))?;
    let portal = tx.bind(sql.as_str(), &refs(&values)).map_err(StoreError::postgres(context))?;
    loop {
        let rows = tx.query_portal(&portal, LISTING_PAGE).map_err(StoreError::postgres(context))?;
        let last_page = rows.len() < LISTING_PAGE as usize;
        for row in &rows {
            if !each(decode_task(row)?) {
                return Ok(());
            }
        }
        if last_page {
            return Ok(());
        }
    }
}

/// Newest first.
pub fn activities(client: &mut Client, filter: &ActivityFilter) -> Result<Vec<Activity>, StoreError> {
    let mut sql = String::from(
        r#"SELECT id, type, title, description, "ventureId", "taskId", "agentId", "createdAt" FROM "Activity""#,
    );
    let mut values: Vec<Param> = Vec::new();
    let conditions = [
        ("type = $", &filter.kind),
        (r#""ventureId" = $"#, &filter.venture_id),
        (r#""taskId" = $"#, &filter.task_id),
        (r#""agentId" = $"#, &filter.agent_id),
        (r#"seq < (SELECT seq FROM "Activity" WHERE id = $"#, &filter.before),
    ];
    for (condition, value) in conditions {
        if let Some(value) = value {
            sql.push_str(if values.is_empty() { " WHERE " } else { " AND " });
            values.push(Box::new(value.clone()));
            sql.push_str(condition);
            sql.push_str(&values.len().to_string());
            if condition.starts_with("seq") {
                sql.push(')');
            }
        }
    }
    values.push(Box::new(i64::from(filter.limit)));
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", values.len()));
    let rows = client.query(sql.as_str(), &refs(&values)).map_err(StoreError::postgres("reading the activity log"))?;
    rows.iter().map(decode_activity).collect()
}

pub fn activity(client: &mut Client, id: &str) -> Result<Option<Activity>, StoreError> {
    let rows = client
        .query(
            r#"SELECT id, type, title, description, "ventureId", "taskId", "agentId", "createdAt" FROM "Activity"
                WHERE id = $1"#,
            &[&id],
        )
        .map_err(StoreError::postgres("reading the activity log"))?;
    rows.first().map(decode_activity).transpose()
}
