//! Where the writer commits: the SQLite file, or PostgreSQL under the leader's lease, where
//! every batch first checks the lease inside its own transaction (the fence).

use std::path::PathBuf;
use std::sync::Arc;

use postgres::Client;
use rusqlite::Connection;

use super::checkpoint::{passive_checkpoint, TailReady};
use super::retention::{prune_turn, Retention, Turn};
use crate::domain::Millis;
use crate::scheduler::Change;
use crate::store::postgres::{Lease, PgConfig, Statements};
use crate::store::{write_changes, StoreError};

/// The record the persister writes.
#[derive(Clone)]
pub enum Target {
    Sqlite(PathBuf),
    Postgres(PostgresTarget),
}

/// A PostgreSQL database, written by the holder of `lease`.
#[derive(Clone)]
pub struct PostgresTarget {
    pub config: PgConfig,
    pub lease: Lease,
    /// Called once when a batch finds the lease gone: this node must stop leading.
    pub deposed: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
            Target::Postgres(target) => write!(f, "Postgres({}, epoch {})", target.config.shown(), target.lease.epoch),
        }
    }
}

pub(super) enum Sink {
    Sqlite {
        conn: Connection,
        /// Raised by the checkpointer when the writer should copy the WAL's short tail.
        tail_ready: Arc<TailReady>,
    },
    Postgres {
        target: PostgresTarget,
        /// Opened again after the connection breaks.
        client: Option<Box<(Client, Statements)>>,
    },
}

impl Sink {
    pub(super) fn open(
        target: &Target,
        wal_restart_frames: i64,
        tail_ready: Arc<TailReady>,
    ) -> Result<Sink, StoreError> {
        match target {
            Target::Sqlite(path) => {
                let conn = crate::store::open_writer(path)?;
                conn.set_prepared_statement_cache_capacity(16);
                // When the WAL starts over, a file grown past its usual size (behind a long
                // read, say) is cut back to it; one of that size is reused as it is.
                let page_size: i64 = conn
                    .pragma_query_value(None, "page_size", |row| row.get(0))
                    .map_err(StoreError::sqlite("reading page_size"))?;
                conn.pragma_update(None, "journal_size_limit", wal_restart_frames.saturating_mul(page_size))
                    .map_err(StoreError::sqlite("setting journal_size_limit"))?;
                Ok(Sink::Sqlite { conn, tail_ready })
            }
            Target::Postgres(target) => Ok(Sink::Postgres { target: target.clone(), client: None }),
        }
    }

    /// Commits the changes as one transaction.
    pub(super) fn commit(&mut self, changes: &[&Change]) -> Result<(), StoreError> {
        match self {
            Sink::Sqlite { conn, .. } => {
                let commit = |conn: &mut Connection| {
                    let tx = conn.transaction()?;
                    write_changes(&tx, changes.iter().copied())?;
                    tx.commit()
                };
                commit(conn).map_err(StoreError::sqlite("committing a batch"))
            }
            Sink::Postgres { target, client } => {
                let (conn, statements) = connected(target, client)?;
                let context = "committing a batch";
                let result = (|| {
                    let mut tx = conn.transaction().map_err(StoreError::postgres(context))?;
                    target.lease.fence(&mut tx)?;
                    crate::store::postgres::write_changes(&mut tx, statements, changes.iter().copied())
                        .map_err(StoreError::postgres(context))?;
                    tx.commit().map_err(StoreError::postgres(context))
                })();
                settle(target, client, result)
            }
        }
    }

    /// Between batches: copies the WAL's short tail when the checkpointer asks
    /// (`checkpoint.rs`), so that the next batch starts the WAL over.
    pub(super) fn copy_wal_tail_if_ready(&mut self) {
        if let Sink::Sqlite { conn, tail_ready } = self {
            if tail_ready.take() {
                let started = std::time::Instant::now();
                let copied = passive_checkpoint(conn);
                metrics::histogram!("mission_control_persist_wal_restart_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                if let Err(error) = copied {
                    tracing::debug!(%error, "copying the WAL's tail failed; the checkpointer asks again");
                }
            }
        }
    }

    /// One pruning turn.
    pub(super) fn prune(
        &mut self,
        retention: &Retention,
        now: Millis,
        yield_now: impl Fn() -> bool,
    ) -> Result<Turn, StoreError> {
        match self {
            Sink::Sqlite { conn, .. } => {
                prune_turn(conn, retention, now, yield_now).map_err(StoreError::sqlite("pruning expired records"))
            }
            Sink::Postgres { target, client } => {
                let (conn, _) = connected(target, client)?;
                let result = super::prune_postgres::prune_turn(conn, &target.lease, retention, now, yield_now);
                settle(target, client, result)
            }
        }
    }
}

fn connected<'a>(
    target: &PostgresTarget,
    client: &'a mut Option<Box<(Client, Statements)>>,
) -> Result<&'a mut (Client, Statements), StoreError> {
    if client.as_ref().is_some_and(|held| held.0.is_closed()) {
        *client = None;
    }
    if client.is_none() {
        let mut conn = target.config.connect()?;
        let statements =
            Statements::prepare(&mut conn).map_err(StoreError::postgres("preparing the batch statements"))?;
        *client = Some(Box::new((conn, statements)));
    }
    Ok(&mut **client.as_mut().expect("connected above"))
}

/// After a PostgreSQL transaction: a fenced one deposes this node; a broken connection is
/// dropped, to be opened again by the retry.
fn settle<T>(
    target: &PostgresTarget,
    client: &mut Option<Box<(Client, Statements)>>,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match &result {
        Err(StoreError::Fenced { .. }) => (target.deposed)(),
        Err(_) if client.as_ref().is_some_and(|held| held.0.is_closed()) => *client = None,
        _ => {}
    }
    result
}
