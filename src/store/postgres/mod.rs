//! The PostgreSQL store: the same tables and camelCase columns as the SQLite file
//! (`migrations/postgres/`, applied by refinery), the same loader, reads and batch writes,
//! and the leader's lease row that fences every batch (`leader.rs`).
//!
//! Everything here is synchronous (the `postgres` crate): it runs on the persister's
//! thread, on the elector's thread, or on the blocking threads that serve reads, never on
//! an async worker.

mod leader;
mod load;
mod reads;
mod write;

pub use leader::{current as current_leader, LeaderRow, Lease};
pub use load::load_snapshot;
pub use reads::{activities, activity, finished_tasks, task_attempts, task_by_id, task_with_key};
pub use write::{write_changes, Statements};

use std::time::Duration;

use postgres::{Client, NoTls};

use super::load::Columns;
use super::StoreError;
use crate::domain::{Millis, Money};

/// A node's connection settings: the URL (`postgres://user@host/db`), as given.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Shared: every pooled connection opens from it.
    config: std::sync::Arc<postgres::Config>,
    /// The URL with any password removed, for messages.
    shown: String,
}

impl PgConfig {
    pub fn parse(url: &str) -> Result<PgConfig, StoreError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| StoreError::BadUrl { url: redact(url), message: e.to_string() })?;
        // A dead server or a cut network must surface as an error within a lease, not
        // hang a thread for the kernel's TCP time-outs.
        config.connect_timeout(Duration::from_secs(5));
        config.keepalives_idle(Duration::from_secs(5));
        config.tcp_user_timeout(Duration::from_secs(5));
        config.application_name("mission-control");
        Ok(PgConfig { config: std::sync::Arc::new(config), shown: redact(url) })
    }

    pub fn connect(&self) -> Result<Client, StoreError> {
        self.config.connect(NoTls).map_err(StoreError::postgres(format!("connecting to {}", self.shown)))
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((credentials, host)) = rest.split_once('@') else { return url.to_owned() };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// An advisory lock key: migrations, seeding and resets from several nodes take turns.
const SCHEMA_LOCK: i64 = 0x6d63_5f73_6368_656d; // "mc_schem"

mod migrations {
    /// `migrations/postgres/NNN_name.sql`, numbered like the SQLite ones.
    pub const ALL: &[(u32, &str, &str)] = &[
        (1, "initial", include_str!("../../../migrations/postgres/001_initial.sql")),
        (2, "leader", include_str!("../../../migrations/postgres/002_leader.sql")),
    ];
}

fn runner() -> Result<refinery::Runner, StoreError> {
    let migrations = migrations::ALL
        .iter()
        .map(|(version, name, sql)| refinery::Migration::unapplied(&format!("V{version}__{name}"), sql))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Migration { path: "migrations/postgres".into(), message: e.to_string() })?;
    let mut runner = refinery::Runner::new(&migrations);
    runner.set_migration_table_name("mission_control_migrations");
    Ok(runner)
}

/// Whether the schema is still empty: `serve` seeds only a database it creates itself.
pub fn is_uninitialised(client: &mut Client) -> Result<bool, StoreError> {
    let row = client
        .query_one("SELECT to_regclass('\"Task\"') IS NULL", &[])
        .map_err(StoreError::postgres("reading the schema"))?;
    Ok(row.get(0))
}

/// Brings the schema to this binary's version, one node at a time. Returns whether the
/// schema was empty before, and seeds it with the sample data then if `seed` says so.
pub fn migrate(client: &mut Client, seed: bool, now: Millis) -> Result<bool, StoreError> {
    with_schema_lock(client, |client| {
        let created = is_uninitialised(client)?;
        runner()?
            .run(client)
            .map_err(|e| StoreError::Migration { path: "migrations/postgres".into(), message: e.to_string() })?;
        if created && seed {
            seed_sample_data(client, now)?;
        }
        Ok(created)
    })
}

/// Drops every table, migrates and seeds, unless a leader holds a live lease: a serving
/// scheduler would not know its record had gone.
pub fn reset(client: &mut Client, now: Millis) -> Result<(), StoreError> {
    with_schema_lock(client, |client| {
        if !is_uninitialised(client)? {
            if let Some(leader) = leader::current(client)?.filter(|l| l.live) {
                return Err(StoreError::InUse {
                    message: format!("a server ({}) leads on this database; stop it first", leader.advertise_url),
                });
            }
        }
        client
            .batch_execute(
                "DROP TABLE IF EXISTS \"TaskDependency\", \"TaskAttempt\", \"Activity\", \"Agent\", \"Task\",
                     \"Venture\", \"Leader\", mission_control_migrations",
            )
            .map_err(StoreError::postgres("dropping the tables"))?;
        runner()?
            .run(client)
            .map_err(|e| StoreError::Migration { path: "migrations/postgres".into(), message: e.to_string() })?;
        seed_sample_data(client, now)
    })
}

/// Writes the sample data (rows with its ids are replaced).
pub fn seed_sample_data(client: &mut Client, now: Millis) -> Result<(), StoreError> {
    let changes = super::seed::sample_changes(now);
    let mut tx = client.transaction().map_err(StoreError::postgres("seeding"))?;
    let statements = Statements::prepare(&mut tx).map_err(StoreError::postgres("seeding"))?;
    write_changes(&mut tx, &statements, &changes).map_err(StoreError::postgres("seeding"))?;
    tx.commit().map_err(StoreError::postgres("seeding"))
}

fn with_schema_lock<T>(
    client: &mut Client,
    work: impl FnOnce(&mut Client) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&SCHEMA_LOCK])
        .map_err(StoreError::postgres("locking the schema"))?;
    let result = work(client);
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&SCHEMA_LOCK]);
    result
}

impl Columns for postgres::Row {
    fn opt_text(&self, index: usize) -> Result<Option<String>, String> {
        self.try_get(index).map_err(|e| e.to_string())
    }

    fn opt_int(&self, index: usize) -> Result<Option<i64>, String> {
        use postgres::types::Type;
        let column = self.columns().get(index).ok_or_else(|| format!("no column {index}"))?;
        let value = match *column.type_() {
            Type::INT8 => self.try_get::<_, Option<i64>>(index),
            Type::INT4 => self.try_get::<_, Option<i32>>(index).map(|n| n.map(i64::from)),
            Type::BOOL => self.try_get::<_, Option<bool>>(index).map(|b| b.map(i64::from)),
            ref other => return Err(format!("an integer column of type {other}")),
        };
        value.map_err(|e| e.to_string())
    }

    fn opt_money(&self, index: usize) -> Result<Option<Money>, String> {
        let value: Option<f64> = self.try_get(index).map_err(|e| e.to_string())?;
        Ok(value.map(Money::from_f64_nearest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redact("postgres://mc:s3cret@db:5432/mc"), "postgres://mc:***@db:5432/mc");
        assert_eq!(redact("postgres://mc@db/mc"), "postgres://mc@db/mc");
        assert_eq!(redact("postgresql:///mc?host=/run/postgresql"), "postgresql:///mc?host=/run/postgresql");
    }

    #[test]
    fn migrations_parse_and_are_numbered_in_order() {
        runner().unwrap();
        let versions: Vec<u32> = migrations::ALL.iter().map(|m| m.0).collect();
        assert!(versions.windows(2).all(|w| w[0] + 1 == w[1]), "{versions:?}");
    }
}
