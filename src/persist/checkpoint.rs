//! Checkpoints on a thread of their own, so that the writer never copies the WAL into the
//! database file inside a commit.
//!
//! SQLite's automatic checkpoint runs in the connection that commits, once the WAL passes
//! 1,000 pages. While a long read holds an old snapshot (a listing streaming every finished
//! task takes a second or more), those checkpoints cannot copy past it; once the read ends,
//! the next commit copies everything that piled up meanwhile, and every reply waiting for
//! that commit in `batch` durability waits for the copy too (docs/PERFORMANCE.md, listings
//! during load). So the writer's connection has the automatic checkpoint off, and this
//! thread runs a passive checkpoint every `CHECKPOINT_EVERY` on a connection of its own,
//! which SQLite lets run beside the writer: it never blocks a commit, nor a commit it.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;

use crate::store::StoreError;

/// How often the WAL is copied into the database file. At the most this server writes,
/// the WAL grows by a few MB in that time; a checkpoint held back by a long read catches up
/// at the first turn after it.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// The checkpointer thread; dropping this stops it.
pub(super) struct Checkpointer {
    /// Dropped to stop the thread.
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = crate::store::open_checkpointer(path)?;
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("checkpointer".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    // PASSIVE: copy what no reader still needs, wait for nobody.
                    if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::debug!(%error, "checkpoint failed; the next turn tries again");
                    }
                }
            })
            .expect("spawning the checkpointer thread");
        Ok(Checkpointer { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
