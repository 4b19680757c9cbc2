//! The persister: one thread that owns the only write connection and applies the
//! scheduler's changes to SQLite in batches (write-behind, group commit).
//!
//! The scheduler sends each message's changes as one `Envelope` with a sequence number
//! over an unbounded crossbeam channel, so it never blocks on the disk. The persister
//! drains what is waiting into one transaction, commits, and publishes the highest
//! committed sequence; in `batch` durability an HTTP reply waits for that number.
//! Memory stays bounded because the scheduler refuses new writes while `pending()` is
//! over its limit.

mod change;
mod retention;
mod writer;

pub use change::Change;
pub use retention::Retention;
pub use writer::{tags_json, write_changes};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

/// One scheduler message's changes, which commit together.
#[derive(Debug)]
pub struct Envelope {
    pub seq: u64,
    pub changes: Vec<Change>,
}

/// How the persister batches.
#[derive(Debug, Clone)]
pub struct PersisterConfig {
    pub path: PathBuf,
    /// The longest a batch stays open while changes keep arriving.
    pub flush_interval: Duration,
    /// The most changes in one transaction.
    pub max_batch: usize,
    /// What background pruning deletes, and when.
    pub retention: Retention,
}

/// What the persister tells the rest of the process.
#[derive(Debug)]
pub struct Progress {
    committed: watch::Sender<u64>,
    /// Changes sent but not yet committed.
    pending: AtomicUsize,
    /// The last sequence number handed to the persister.
    sent: AtomicU64,
    writable: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            committed: watch::Sender::new(0),
            pending: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            writable: AtomicBool::new(true),
            last_error: Mutex::new(None),
        }
    }

    pub fn committed(&self) -> u64 {
        *self.committed.borrow()
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// False while the last commit failed (disk full, read-only file); the persister retries.
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("progress lock").clone()
    }

    /// The sequence number of the last envelope sent.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until `seq` is committed, or `timeout` passes (then `false`).
    pub async fn wait_committed(&self, seq: u64, timeout: Duration) -> bool {
        let mut receiver = self.committed.subscribe();
        tokio::time::timeout(timeout, receiver.wait_for(|committed| *committed >= seq)).await.is_ok_and(|r| r.is_ok())
    }
}

/// The sending side, owned by the scheduler actor.
pub struct PersisterHandle {
    sender: Option<crossbeam_channel::Sender<Envelope>>,
    progress: Arc<Progress>,
    /// What pruning removed, for the scheduler's counts.
    pruned: crossbeam_channel::Receiver<crate::scheduler::Pruned>,
    thread: Option<JoinHandle<()>>,
}

impl PersisterHandle {
    /// Starts the writer thread on its own connection to `config.path`.
    pub fn start(config: PersisterConfig) -> Result<PersisterHandle, crate::store::StoreError> {
        let conn = crate::store::open(&config.path)?;
        let (sender, receiver) = crossbeam_channel::unbounded();
        // Unbounded, but a report comes at most once per pruning turn and the actor drains
        // them on every tick.
        let (pruned_sender, pruned) = crossbeam_channel::unbounded();
        let progress = Arc::new(Progress::new());
        let writer = writer::Writer::new(conn, receiver, progress.clone(), config, pruned_sender);
        let thread = std::thread::Builder::new()
            .name("persister".into())
            .spawn(move || writer.run())
            .expect("spawning the persister thread");
        Ok(PersisterHandle { sender: Some(sender), progress, pruned, thread: Some(thread) })
    }

    /// The next report of what pruning removed, if any.
    pub fn try_pruned(&self) -> Option<crate::scheduler::Pruned> {
        self.pruned.try_recv().ok()
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Hands changes to the writer; never blocks. Returns the envelope's sequence number.
    pub fn send(&self, changes: Vec<Change>) -> u64 {
        let seq = self.progress.sent.fetch_add(1, Ordering::Relaxed) + 1;
        self.progress.pending.fetch_add(changes.len(), Ordering::Relaxed);
        let sender = self.sender.as_ref().expect("sender lives until shutdown");
        // The receiver lives until every sender is gone, so this cannot fail.
        let _ = sender.send(Envelope { seq, changes });
        seq
    }

    /// Closes the channel and waits until everything sent is committed.
    pub fn shutdown(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for PersisterHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
