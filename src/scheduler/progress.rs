//! How far the record has caught up with the scheduler: what the persister publishes and
//! the scheduler (and readiness) reads. The scheduler defines it; whatever keeps the record
//! updates it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

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

impl Default for Progress {
    fn default() -> Progress {
        Progress::new()
    }
}

impl Progress {
    pub fn new() -> Progress {
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

impl Progress {
    /// Numbers an envelope of `n_changes` changes as it is handed over.
    pub fn record_sent(&self, n_changes: usize) -> u64 {
        self.pending.fetch_add(n_changes, Ordering::Relaxed);
        self.sent.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Envelopes up to `seq`, holding `n_changes` changes, are committed. Returns the
    /// changes still pending, and whether the store had been failing until now.
    pub fn record_commit(&self, seq: u64, n_changes: usize) -> (usize, bool) {
        let pending = self.pending.fetch_sub(n_changes, Ordering::Relaxed) - n_changes;
        let recovered = !self.writable.swap(true, Ordering::Relaxed);
        if recovered {
            *self.last_error.lock().expect("progress lock") = None;
        }
        self.committed.send_replace(seq);
        (pending, recovered)
    }

    /// A commit failed; returns whether this is the first failure in a row.
    pub fn record_failure(&self, error: String) -> bool {
        let first = self.writable.swap(false, Ordering::Relaxed);
        *self.last_error.lock().expect("progress lock") = Some(error);
        first
    }
}
