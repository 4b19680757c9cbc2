//! A small pool of connections, shared by the queries that serve reads: SQLite's read-only
//! connections, or PostgreSQL clients.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use rusqlite::Connection;

use super::{open_read_only, Location, StoreError};

/// The most read connections open at once; a query waits for one beyond that. Creates with
/// client-chosen ids read one row each, from as many requests at once as a fleet sends, so
/// connections are kept rather than opened per query, and bounded: SQLite cannot close a
/// file while another connection of the process holds a lock on it, so opening and closing
/// under load piles up descriptors.
const MAX_OPEN: usize = 16;

type Open<C> = Arc<dyn Fn() -> Result<C, StoreError> + Send + Sync>;

/// Up to `MAX_OPEN` connections made by `open`, kept between queries.
pub struct Pool<C> {
    open: Open<C>,
    slots: Arc<(Mutex<Slots<C>>, Condvar)>,
}

impl<C> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool { open: self.open.clone(), slots: self.slots.clone() }
    }
}

struct Slots<C> {
    idle: Vec<C>,
    open: usize,
}

impl<C> Pool<C> {
    pub fn new(open: impl Fn() -> Result<C, StoreError> + Send + Sync + 'static) -> Pool<C> {
        Pool {
            open: Arc::new(open),
            slots: Arc::new((Mutex::new(Slots { idle: Vec::new(), open: 0 }), Condvar::new())),
        }
    }

    /// A connection of the pool, waiting for one while all are busy (callers run on
    /// blocking threads). It goes back to the pool when dropped.
    pub fn get(&self) -> Result<Pooled<C>, StoreError> {
        let (lock, freed) = &*self.slots;
        let mut slots = lock.lock().expect("pool lock");
        loop {
            if let Some(conn) = slots.idle.pop() {
                return Ok(Pooled { conn: Some(conn), pool: self.clone() });
            }
            if slots.open < MAX_OPEN {
                slots.open += 1;
                drop(slots);
                return match (self.open)() {
                    Ok(conn) => Ok(Pooled { conn: Some(conn), pool: self.clone() }),
                    Err(error) => {
                        self.forget_one();
                        Err(error)
                    }
                };
            }
            slots = freed.wait(slots).expect("pool lock");
        }
    }

    /// A connection of its own, outside the pool: for a long query (a streamed listing,
    /// which waits on its client), so a slow reader never holds one the short queries need.
    pub fn open_own(&self) -> Result<C, StoreError> {
        (self.open)()
    }

    fn forget_one(&self) {
        let (lock, freed) = &*self.slots;
        lock.lock().expect("pool lock").open -= 1;
        freed.notify_one();
    }
}

/// A pooled connection; back to the pool on drop, unless `discard`ed.
pub struct Pooled<C> {
    conn: Option<C>,
    pool: Pool<C>,
}

impl<C> Pooled<C> {
    /// Closes the connection instead of keeping it (it failed, and may be broken).
    pub fn discard(mut self) {
        self.conn.take();
        self.pool.forget_one();
    }
}

impl<C> std::ops::Deref for Pooled<C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.conn.as_ref().expect("held until drop")
    }
}

impl<C> std::ops::DerefMut for Pooled<C> {
    fn deref_mut(&mut self) -> &mut C {
        self.conn.as_mut().expect("held until drop")
    }
}

impl<C> Drop for Pooled<C> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let (lock, freed) = &*self.pool.slots;
            lock.lock().expect("pool lock").idle.push(conn);
            freed.notify_one();
        }
    }
}

/// The SQLite file's read-only connections.
#[derive(Clone)]
pub struct ReadPool {
    pool: Pool<Connection>,
}

impl ReadPool {
    pub fn new(path: PathBuf) -> ReadPool {
        ReadPool { pool: Pool::new(move || open_read_only(&path)) }
    }

    /// Runs `query` on a pooled connection; `context` names it in an error.
    pub fn with_connection<T>(
        &self,
        context: &str,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self.pool.get()?;
        query(&conn).map_err(StoreError::sqlite(context))
    }

    /// Runs a long query on a connection of its own (`Pool::open_own`).
    pub fn with_own_connection<T>(
        &self,
        context: &str,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self.pool.open_own()?;
        query(&conn).map_err(StoreError::sqlite(context))
    }
}

/// The read connections of the record, whichever store holds it.
#[derive(Clone)]
pub enum Readers {
    Sqlite(ReadPool),
    Postgres(Pool<postgres::Client>),
}

impl Readers {
    pub fn new(location: &Location) -> Readers {
        match location {
            Location::Sqlite(path) => Readers::Sqlite(ReadPool::new(path.clone())),
            Location::Postgres(config) => {
                let config = config.clone();
                Readers::Postgres(Pool::new(move || config.connect()))
            }
        }
    }
}

/// Runs `query` on a pooled PostgreSQL client; a client whose connection broke is closed
/// rather than kept, so the next query opens a new one.
pub fn with_client<T>(
    pool: &Pool<postgres::Client>,
    query: impl FnOnce(&mut postgres::Client) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut client = pool.get()?;
    let result = query(&mut client);
    if result.is_err() && client.is_closed() {
        client.discard();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_reused_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.db");
        drop(crate::store::write_fixtures::migrated(&path));
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
        let slots = pool.pool.slots.0.lock().unwrap();
        assert!(
            slots.open <= MAX_OPEN && slots.idle.len() == slots.open,
            "{} open, {} idle",
            slots.open,
            slots.idle.len()
        );
    }
}
