//! The record: the SQLite file (the default) or a PostgreSQL database (`postgres/`).
//! Opening it, migrations, the sample data, loading state at start, online backups, and
//! the read-only queries of tasks and the activity log.
//!
//! Architecture invariant: after start-up only the persister thread writes the record;
//! everything here either runs before the scheduler starts or only reads.

mod activities;
mod load;
pub mod page_cache;
mod pool;
pub mod postgres;
mod seed;
mod tasks;
pub mod wal_writes;
mod write;

pub use activities::{ActivityFilter, ActivityReader};
pub use load::load_snapshot;
pub use pool::{Pool, ReadPool};
pub use seed::seed_sample_data;
pub use tasks::TaskReader;
#[cfg(test)]
pub(crate) use write::fixtures as write_fixtures;
pub use write::{tags_json, write_changes};

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{Migrations, M};

use crate::domain::Money;

/// Where the record lives: `--db PATH` or `--db postgres://...`.
#[derive(Debug, Clone)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(postgres::PgConfig),
}

/// What can go wrong with the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused an operation; the message says which and why.
    #[error("{context}: {source}")]
    Sqlite { context: String, source: rusqlite::Error },
    /// PostgreSQL refused an operation, or could not be reached.
    #[error("{context}: {source}")]
    Postgres { context: String, source: ::postgres::Error },
    /// The `postgres://` URL cannot be used.
    #[error("{url}: {message}")]
    BadUrl { url: String, message: String },
    /// Another server uses the database.
    #[error("{message}")]
    InUse { message: String },
    /// This node's lease (at `epoch`) has lapsed or been taken: it is no longer the leader,
    /// and the transaction was not committed.
    #[error("this node's leader lease (epoch {epoch}) has lapsed or been taken; nothing was committed")]
    Fenced { epoch: i64 },
    /// The schema could not be brought to this binary's version.
    #[error("migrating {path}: {message}")]
    Migration { path: PathBuf, message: String },
    /// The path cannot hold a database.
    #[error("{path}: {message}")]
    BadPath { path: PathBuf, message: String },
    /// A stored value is not one this binary writes.
    #[error("{table} row `{id}` has an unreadable {column}: `{value}`")]
    BadRow { table: &'static str, id: String, column: &'static str, value: String },
}

impl StoreError {
    pub fn sqlite(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Sqlite { context, source }
    }

    pub fn postgres(context: impl Into<String>) -> impl FnOnce(::postgres::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Postgres { context, source }
    }
}

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../../migrations/001_initial.sql")),
        M::up(include_str!("../../migrations/002_history.sql")),
        M::up(include_str!("../../migrations/003_reports.sql")),
        M::up(include_str!("../../migrations/004_attempts.sql")),
        M::up(include_str!("../../migrations/005_graph.sql")),
        M::up(include_str!("../../migrations/006_time.sql")),
    ])
}

/// The pragmas every connection gets, checked by a test that reads them back.
pub const JOURNAL_MODE: &str = "wal";
/// `NORMAL` with WAL survives a killed process without a sync per commit (not a power cut).
pub const SYNCHRONOUS: i64 = 1;
/// Page cache of the write connection: 8 MiB (a negative `cache_size` is in KiB). Every
/// commit truncates the page cache at a cost that grows with its size; 64 MiB measured 12%
/// fewer cycles/s at 64 agents (docs/PERFORMANCE.md), and the OS caches the file anyway.
pub const CACHE_SIZE_KIB: i64 = -8_192;

/// Page cache of each read-only connection: 1 MiB.
pub const READ_CACHE_SIZE_KIB: i64 = -1_024;

/// Opens (or creates) the database for writing and sets its pragmas.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    if path.is_dir() {
        return Err(StoreError::BadPath { path: path.into(), message: "is a directory, not a database file".into() });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(StoreError::sqlite(format!("opening {}", path.display())))?;
    configure(&conn, path)?;
    Ok(conn)
}

/// The persister's connection: `open`, with SQLite's automatic checkpoint off, because a
/// checkpoint run inside a commit delays every reply waiting for that commit. The
/// persister's checkpointer runs them on a connection of its own (`open_checkpointer`).
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = open(path)?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_WAL_AUTOCHECKPOINT)
        .map_err(StoreError::sqlite("setting wal_autocheckpoint"))?;
    Ok(conn)
}

/// `wal_autocheckpoint` of the persister's connection: off.
pub const WRITER_WAL_AUTOCHECKPOINT: i64 = 0;

/// The connection that runs the persister's checkpoints beside its writes.
pub fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let conn = open(path)?;
    // It copies pages from the WAL to the file and reads nothing else.
    conn.pragma_update(None, "cache_size", READ_CACHE_SIZE_KIB).map_err(StoreError::sqlite("setting cache_size"))?;
    Ok(conn)
}

/// Opens the database read-only, for the activity log's queries.
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(StoreError::sqlite(format!("opening {}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(StoreError::sqlite("setting busy_timeout"))?;
    // Reads are point lookups and ordered scans: a small cache each, since many stay open.
    conn.pragma_update(None, "cache_size", READ_CACHE_SIZE_KIB).map_err(StoreError::sqlite("setting cache_size"))?;
    Ok(conn)
}

fn configure(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let context =
        format!("configuring {} (is it a SQLite database, and not locked by another process?)", path.display());
    conn.busy_timeout(Duration::from_secs(5)).map_err(StoreError::sqlite(&context))?;
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode = {JOURNAL_MODE}"), [], |row| row.get(0))
        .map_err(StoreError::sqlite(&context))?;
    if mode != JOURNAL_MODE {
        return Err(StoreError::BadPath {
            path: path.into(),
            message: format!("could not switch to WAL (journal_mode is {mode})"),
        });
    }
    conn.pragma_update(None, "synchronous", SYNCHRONOUS).map_err(StoreError::sqlite(&context))?;
    conn.pragma_update(None, "foreign_keys", false).map_err(StoreError::sqlite(&context))?;
    // Upserts touch task pages all over the table: keep them in memory rather than
    // re-reading them through the kernel for every batch.
    conn.pragma_update(None, "cache_size", CACHE_SIZE_KIB).map_err(StoreError::sqlite(&context))?;
    Ok(())
}

/// Holds `<db>.lock` for as long as it lives, so that two processes never serve or reset
/// the same database at once (two schedulers would each believe they own its state).
#[derive(Debug)]
pub struct ProcessLock {
    _file: std::fs::File,
}

impl ProcessLock {
    pub fn acquire(db: &Path) -> Result<ProcessLock, StoreError> {
        let path = PathBuf::from(format!("{}.lock", db.display()));
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| {
            StoreError::BadPath { path: path.clone(), message: format!("cannot open the lock file: {e}") }
        })?;
        match file.try_lock() {
            Ok(()) => Ok(ProcessLock { _file: file }),
            Err(_) => Err(StoreError::BadPath {
                path: db.into(),
                message: format!(
                    "another mission-control process is using this database (it holds {})",
                    path.display()
                ),
            }),
        }
    }
}

/// Fails fast when another process holds SQLite's write lock, instead of starting a server
/// whose every write would be refused.
pub fn check_writable(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(2)).map_err(StoreError::sqlite("setting busy_timeout"))?;
    let probe = conn.execute_batch("BEGIN IMMEDIATE; COMMIT;");
    conn.busy_timeout(Duration::from_secs(5)).map_err(StoreError::sqlite("setting busy_timeout"))?;
    probe.map_err(|e| StoreError::BadPath {
        path: path.into(),
        message: format!("cannot take the write lock ({e}); is another program writing to it?"),
    })
}

/// Whether the schema is still empty: `serve` seeds only a database it creates itself.
pub fn is_uninitialised(conn: &Connection) -> Result<bool, StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(StoreError::sqlite("reading user_version"))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |row| row.get(0))
        .map_err(StoreError::sqlite("reading the schema"))?;
    Ok(version == 0 && tables == 0)
}

/// Brings the schema to this binary's version. A newer schema is refused untouched.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    migrations().to_latest(conn).map_err(|e| StoreError::Migration { path: path.into(), message: e.to_string() })
}

/// Drops every table, then migrates: the file afterwards is as `migrate` makes a new one.
pub fn drop_everything(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "DROP TABLE IF EXISTS TaskDependency; DROP TABLE IF EXISTS TaskAttempt; DROP TABLE IF EXISTS Activity; DROP TABLE IF EXISTS Agent;
         DROP TABLE IF EXISTS Task; DROP TABLE IF EXISTS Venture; PRAGMA user_version = 0;",
    )
    .map_err(StoreError::sqlite("dropping the tables"))
}

/// Copies the database to `dest` with SQLite's online backup: consistent even while a
/// server writes to it.
pub fn backup(conn: &Connection, dest: &Path) -> Result<(), StoreError> {
    if dest.exists() {
        return Err(StoreError::BadPath {
            path: dest.into(),
            message: "already exists; refusing to overwrite it".into(),
        });
    }
    conn.backup(rusqlite::MAIN_DB, dest, None).map_err(StoreError::sqlite(format!("backing up to {}", dest.display())))
}

/// Money columns are `REAL` holding the amount itself (`23.39`), as the seed's Prisma
/// schema made them, so `sqlite3` shows and sums them as they read. The `f64` nearest a
/// six-place decimal reads back to the same millionth below 2^53 of them (about 9 × 10^9
/// units), far beyond any single amount the API takes.
impl rusqlite::types::ToSql for Money {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.to_f64().into())
    }
}

impl rusqlite::types::FromSql for Money {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        match value {
            rusqlite::types::ValueRef::Real(x) => Ok(Money::from_f64_nearest(x)),
            rusqlite::types::ValueRef::Integer(n) => Ok(Money::units(n)),
            _ => Err(rusqlite::types::FromSqlError::InvalidType),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    #[test]
    fn pragmas_are_set_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = open(&path).unwrap();
        assert!(is_uninitialised(&conn).unwrap());
        migrate(&mut conn, &path).unwrap();
        assert!(!is_uninitialised(&conn).unwrap());
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        let cache: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap();
        assert_eq!((mode.as_str(), sync, cache), (JOURNAL_MODE, SYNCHRONOUS, CACHE_SIZE_KIB));
        let reader = open_read_only(&path).unwrap();
        let cache: i64 = reader.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap();
        assert_eq!(cache, READ_CACHE_SIZE_KIB);
        let writer = open_writer(&path).unwrap();
        let auto: i64 = writer.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0)).unwrap();
        assert_eq!(auto, WRITER_WAL_AUTOCHECKPOINT);
        let default: i64 = conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0)).unwrap();
        assert_eq!(default, 1000, "other connections keep SQLite's automatic checkpoint");
    }
}
