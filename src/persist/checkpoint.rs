//! Checkpoints on a thread of their own, so that the writer never copies much of the WAL
//! into the database file inside a commit.
//!
//! SQLite's automatic checkpoint runs in the connection that commits, once the WAL passes
//! 1,000 pages. While a long read holds an old snapshot (a listing streaming every finished
//! task takes a second or more), those checkpoints cannot copy past it; once the read ends,
//! the next commit copies everything that piled up meanwhile, and every reply waiting for
//! that commit in `batch` durability waits for the copy too (docs/PERFORMANCE.md, listings
//! during load). So the writer's connection has the automatic checkpoint off, and this
//! thread runs passive checkpoints on a connection of its own, which SQLite lets run beside
//! the writer: it never blocks a commit, nor a commit it.
//!
//! A passive checkpoint beside a busy writer never quite finishes: the writer appends while
//! it copies. SQLite starts the WAL over from its first frame only after a checkpoint has
//! copied every frame, so under steady load the file would grow without end (gigabytes in
//! minutes), and every page lookup searches a longer WAL index. So once the WAL holds
//! `restart_after_frames` (`RESTART_AFTER_FRAMES` when serving), this thread repeats its
//! pass until one is quick and asks the writer to copy the short tail between two batches
//! (`TailReady`), where nothing is appended meanwhile. The next batch starts the WAL over.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::store::StoreError;

/// How often the WAL is copied into the database file. At the most this server writes,
/// the WAL grows by a few MB in that time; a checkpoint held back by a long read catches up
/// at the first turn after it.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// The WAL starts over once it holds this many frames: 1 GiB of 4 KiB pages, several
/// seconds of writing at full load. Starting over costs the writer a pause of 10-20 ms (it
/// copies the tail and syncs), so not more often than that: at 256 agents, 256 MiB measured
/// 0.88x the cycles/s of 1 GiB and 1.3x its claim p99 (docs/PERFORMANCE.md, "The WAL").
pub const RESTART_AFTER_FRAMES: i64 = 262_144;

/// A pass this quick leaves the writer a tail it copies in a few milliseconds: what it
/// wrote during the pass.
const QUICK_PASS: Duration = Duration::from_millis(10);

/// Passes in a row, at most, before the writer is asked anyway: the WAL must start over
/// even when the writer outruns the copy.
const MAX_PASSES: usize = 8;

/// Set by the checkpointer when the writer should copy the WAL's tail so that the WAL
/// starts over; the writer takes it between batches.
#[derive(Debug, Default)]
pub(super) struct TailReady(AtomicBool);

impl TailReady {
    /// True once per request: the caller should copy the tail now.
    pub(super) fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }

    fn request(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The checkpointer thread; dropping this stops it.
pub(super) struct Checkpointer {
    /// Dropped to stop the thread.
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(
        path: &Path,
        restart_after_frames: i64,
        tail_ready: Arc<TailReady>,
    ) -> Result<Checkpointer, StoreError> {
        let conn = crate::store::open_checkpointer(path)?;
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("checkpointer".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    catch_up(&conn, restart_after_frames, &tail_ready);
                }
            })
            .expect("spawning the checkpointer thread");
        Ok(Checkpointer { stop: Some(stop), thread: Some(thread) })
    }
}

/// A passive pass; then, once the WAL is long enough to start over, more passes until one
/// is quick (which leaves the writer a tail of only what it wrote meanwhile) or
/// `MAX_PASSES`, and the request. A pass that cannot copy everything it saw (a reader
/// holds an old snapshot) ends the turn: the WAL cannot start over under that reader.
fn catch_up(conn: &rusqlite::Connection, restart_after_frames: i64, tail_ready: &TailReady) {
    for _ in 0..MAX_PASSES {
        let started = Instant::now();
        let progress = match passive_checkpoint(conn) {
            Ok(progress) => progress,
            Err(error) => {
                tracing::debug!(%error, "checkpoint failed; the next turn tries again");
                return;
            }
        };
        if progress.uncopied() > 0 || progress.frames < restart_after_frames {
            return;
        }
        if started.elapsed() <= QUICK_PASS {
            break;
        }
    }
    tail_ready.request();
}

/// What a checkpoint reports of the WAL.
#[derive(Debug, Clone, Copy)]
pub(super) struct WalProgress {
    /// Frames since the WAL last started over.
    frames: i64,
    /// Of those, frames copied into the database file.
    copied: i64,
}

impl WalProgress {
    fn uncopied(&self) -> i64 {
        (self.frames - self.copied).max(0)
    }
}

/// Copies what no reader still needs into the database file, waiting for nobody.
pub(super) fn passive_checkpoint(conn: &rusqlite::Connection) -> rusqlite::Result<WalProgress> {
    // Both are -1 when the database is not in WAL mode: nothing to copy.
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok(WalProgress { frames: row.get::<_, i64>(1)?.max(0), copied: row.get::<_, i64>(2)?.max(0) })
    })
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::{PersisterConfig, PersisterHandle};
    use crate::scheduler::ChangeLog;
    use crate::store::write_fixtures::{activity, migrated};

    /// Without the writer's share the WAL of a busy writer never starts over, and its file
    /// grows by everything ever written. Here a writer that never pauses for long must see
    /// the file cut back to the limit. That takes a checkpointer turn or two; the bounds
    /// below only stop a broken build from filling the disk.
    #[test]
    fn the_wal_of_a_busy_writer_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        drop(migrated(&path));
        let restart_after_frames = 256;
        let limit_bytes = restart_after_frames as u64 * 4096;
        let mut persister = PersisterHandle::start(PersisterConfig {
            max_batch: 10_000,
            wal_restart_frames: restart_after_frames,
            ..PersisterConfig::for_tests(&path)
        })
        .unwrap();
        let progress = persister.progress();
        let wal = dir.path().join("w.db-wal");
        let (mut largest, mut next_id) = (0u64, 0u64);
        let started = std::time::Instant::now();
        let started_over = loop {
            let changes = (0..50)
                .map(|_| {
                    next_id += 1;
                    activity(&format!("a{next_id:09}"))
                })
                .collect();
            let seq = persister.send(changes);
            while progress.committed() < seq {
                std::thread::yield_now();
            }
            let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
            largest = largest.max(size);
            if largest > limit_bytes && size <= limit_bytes {
                break true;
            }
            if largest >= 1 << 30 || started.elapsed() > Duration::from_secs(120) {
                break false;
            }
        };
        persister.shutdown();
        assert!(started_over, "the WAL grew to {largest} bytes and never started over");
    }
}
