//! The persister: one thread that owns the only write connection and applies the
//! scheduler's changes to SQLite in batches (write-behind, group commit).
//!
//! The scheduler sends each message's changes as one `Envelope` with a sequence number
//! over an unbounded crossbeam channel, so it never blocks on the disk. The persister
//! drains what is waiting into one transaction, commits, and publishes the highest
//! committed sequence; in `batch` durability an HTTP reply waits for that number.
//! Memory stays bounded because the scheduler refuses new writes while `pending()` is
//! over its limit.

mod checkpoint;
mod prune_postgres;
mod retention;
mod sink;
mod writer;

pub use checkpoint::{CHECKPOINT_EVERY, RESTART_AFTER_FRAMES as WAL_RESTART_FRAMES};
pub use retention::Retention;
pub use sink::{PostgresTarget, Target};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::scheduler::{Change, ChangeLog, Progress, Pruned};

/// One scheduler message's changes, which commit together.
#[derive(Debug)]
pub struct Envelope {
    pub seq: u64,
    pub changes: Vec<Change>,
}

/// How the persister batches.
#[derive(Debug, Clone)]
pub struct PersisterConfig {
    pub target: Target,
    /// The longest a batch stays open while changes keep arriving.
    pub flush_interval: Duration,
    /// The most changes in one transaction.
    pub max_batch: usize,
    /// On SQLite, the WAL starts over once it holds this many frames, and its file is cut
    /// back to that size (`checkpoint.rs`); `WAL_RESTART_FRAMES` when serving.
    pub wal_restart_frames: i64,
    /// What background pruning deletes, and when.
    pub retention: Retention,
}

#[cfg(test)]
impl PersisterConfig {
    /// A SQLite persister as served, committing after at most 1 ms: tests change a field
    /// or two with `..`.
    pub(crate) fn for_tests(path: &std::path::Path) -> PersisterConfig {
        PersisterConfig {
            target: Target::Sqlite(path.to_owned()),
            flush_interval: Duration::from_millis(1),
            max_batch: 100,
            wal_restart_frames: WAL_RESTART_FRAMES,
            retention: Default::default(),
        }
    }
}

/// The sending side, owned by the scheduler actor.
pub struct PersisterHandle {
    sender: Option<crossbeam_channel::Sender<Envelope>>,
    progress: Arc<Progress>,
    /// What pruning removed, for the scheduler's counts.
    pruned: crossbeam_channel::Receiver<Pruned>,
    thread: Option<JoinHandle<()>>,
    /// Copies the WAL into the database file beside the writer; stopped after it.
    checkpointer: Option<checkpoint::Checkpointer>,
}

impl PersisterHandle {
    /// Starts the writer thread on its own connection to `config.target`.
    pub fn start(config: PersisterConfig) -> Result<PersisterHandle, crate::store::StoreError> {
        let tail_ready = Arc::new(checkpoint::TailReady::default());
        let sink = sink::Sink::open(&config.target, config.wal_restart_frames, tail_ready.clone())?;
        // PostgreSQL checkpoints on its own.
        let checkpointer = match &config.target {
            Target::Sqlite(path) => Some(checkpoint::Checkpointer::start(path, config.wal_restart_frames, tail_ready)?),
            Target::Postgres(_) => None,
        };
        let (sender, receiver) = crossbeam_channel::unbounded();
        // Unbounded, but a report comes at most once per pruning turn and the actor drains
        // them on every tick.
        let (pruned_sender, pruned) = crossbeam_channel::unbounded();
        let progress = Arc::new(Progress::new());
        let writer = writer::Writer::new(sink, receiver, progress.clone(), config, pruned_sender);
        let thread = std::thread::Builder::new()
            .name("persister".into())
            .spawn(move || writer.run())
            .expect("spawning the persister thread");
        Ok(PersisterHandle { sender: Some(sender), progress, pruned, thread: Some(thread), checkpointer })
    }
}

impl ChangeLog for PersisterHandle {
    fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Hands changes to the writer; never blocks. Returns the envelope's sequence number.
    fn send(&self, changes: Vec<Change>) -> u64 {
        let seq = self.progress.record_sent(changes.len());
        let sender = self.sender.as_ref().expect("sender lives until shutdown");
        // The receiver lives until every sender is gone, so this cannot fail.
        let _ = sender.send(Envelope { seq, changes });
        seq
    }

    /// The next report of what pruning removed, if any.
    fn try_pruned(&self) -> Option<Pruned> {
        self.pruned.try_recv().ok()
    }

    /// Closes the channel and waits until everything sent is committed.
    fn shutdown(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.checkpointer.take();
    }
}

impl Drop for PersisterHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
