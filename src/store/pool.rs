//! A small pool of read-only connections, shared by the queries that serve reads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::{open_read_only, StoreError};

/// Connections kept open between queries; more may be open while queries run. Creates with
/// client-chosen ids read one row each, from as many requests at once as a fleet sends, so
/// enough stay open that a busy server does not open and close one per request.
const MAX_IDLE: usize = 16;

#[derive(Clone)]
pub struct ReadPool {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl ReadPool {
    pub fn new(path: PathBuf) -> ReadPool {
        ReadPool { path, idle: Arc::default() }
    }

    /// Runs `query` on an idle connection (or a new one); `context` names it in an error.
    pub fn with_connection<T>(
        &self,
        context: &str,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().expect("pool lock").pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_read_only(&self.path)?,
        };
        let result = query(&conn).map_err(StoreError::sqlite(context));
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        result
    }
}
