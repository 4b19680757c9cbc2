//! A small pool of read-only connections, shared by the queries that serve reads.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use rusqlite::Connection;

use super::{open_read_only, StoreError};

/// The most read connections open at once; a query waits for one beyond that. Creates with
/// client-chosen ids read one row each, from as many requests at once as a fleet sends, so
/// connections are kept rather than opened per query, and bounded: SQLite cannot close a
/// file while another connection of the process holds a lock on it, so opening and closing
/// under load piles up descriptors.
const MAX_OPEN: usize = 16;

#[derive(Clone)]
pub struct ReadPool {
    path: PathBuf,
    slots: Arc<(Mutex<Slots>, Condvar)>,
}

#[derive(Default)]
struct Slots {
    idle: Vec<Connection>,
    open: usize,
}

impl ReadPool {
    pub fn new(path: PathBuf) -> ReadPool {
        ReadPool { path, slots: Arc::default() }
    }

    /// Runs `query` on a pooled connection, waiting for one while all are busy (callers
    /// run on blocking threads); `context` names it in an error.
    pub fn with_connection<T>(
        &self,
        context: &str,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self.take()?;
        let result = query(&conn).map_err(StoreError::sqlite(context));
        let (lock, freed) = &*self.slots;
        lock.lock().expect("pool lock").idle.push(conn);
        freed.notify_one();
        result
    }

    /// Runs a long query (a streamed listing, which waits on its client) on a connection
    /// of its own, so a slow reader never holds one the short queries need.
    pub fn with_own_connection<T>(
        &self,
        context: &str,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = open_read_only(&self.path)?;
        query(&conn).map_err(StoreError::sqlite(context))
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let (lock, freed) = &*self.slots;
        let mut slots = lock.lock().expect("pool lock");
        loop {
            if let Some(conn) = slots.idle.pop() {
                return Ok(conn);
            }
            if slots.open < MAX_OPEN {
                slots.open += 1;
                drop(slots);
                return open_read_only(&self.path).inspect_err(|_| {
                    lock.lock().expect("pool lock").open -= 1;
                    freed.notify_one();
                });
            }
            slots = freed.wait(slots).expect("pool lock");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_reused_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.db");
        let mut conn = crate::store::open(&path).unwrap();
        crate::store::migrate(&mut conn, &path).unwrap();
        let pool = ReadPool::new(path);
        let threads: Vec<_> = (0..64)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    pool.with_connection("counting", |c| {
                        c.query_row("SELECT count(*) FROM Task", [], |r| r.get::<_, i64>(0))
                    })
                })
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().unwrap().unwrap(), 0);
        }
        let slots = pool.slots.0.lock().unwrap();
        assert!(
            slots.open <= MAX_OPEN && slots.idle.len() == slots.open,
            "{} open, {} idle",
            slots.open,
            slots.idle.len()
        );
    }
}
