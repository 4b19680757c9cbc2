//! How far the record has caught up with the scheduler: what the persister publishes and
//! the scheduler (and readiness) reads. The scheduler defines it; whatever keeps the record
//! updates it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

/// Distinct sequence numbers waited for before replies that gave up are first dropped;
/// after that, whenever their number has doubled since the last time.
const PRUNE_WAITING_AT: usize = 4096;

#[derive(Debug)]
struct Waiting {
    by_seq: BTreeMap<u64, Vec<oneshot::Sender<()>>>,
    /// Replies that gave up are dropped when `by_seq` grows to this many numbers.
    prune_at: usize,
}

/// What the persister tells the rest of the process.
#[derive(Debug)]
pub struct Progress {
    /// The last sequence number committed; stored under `waiting`'s lock.
    committed: AtomicU64,
    /// Replies waiting for a commit, by the sequence number each waits for. A commit wakes
    /// only those it covers: the group commit's next batch keeps waiting, unwoken.
    waiting: Mutex<Waiting>,
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
            committed: AtomicU64::new(0),
            waiting: Mutex::new(Waiting { by_seq: BTreeMap::new(), prune_at: PRUNE_WAITING_AT }),
            pending: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            writable: AtomicBool::new(true),
            last_error: Mutex::new(None),
        }
    }

    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
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
        if self.committed() >= seq {
            return true;
        }
        let receiver = {
            let mut waiting = self.waiting.lock().expect("progress lock");
            if self.committed() >= seq {
                return true;
            }
            if waiting.by_seq.len() >= waiting.prune_at {
                // Commits have stalled (a failing disk) and replies gave up waiting; under
                // a large backlog that is still moving, few are dropped and the next pass
                // waits for twice as many.
                waiting.by_seq.retain(|_, senders| {
                    senders.retain(|sender| !sender.is_closed());
                    !senders.is_empty()
                });
                waiting.prune_at = PRUNE_WAITING_AT.max(waiting.by_seq.len() * 2);
            }
            let (sender, receiver) = oneshot::channel();
            waiting.by_seq.entry(seq).or_default().push(sender);
            receiver
        };
        tokio::time::timeout(timeout, receiver).await.is_ok_and(|r| r.is_ok())
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
        let covered = {
            let mut waiting = self.waiting.lock().expect("progress lock");
            self.committed.store(seq, Ordering::Release);
            let later = waiting.by_seq.split_off(&(seq + 1));
            std::mem::replace(&mut waiting.by_seq, later)
        };
        for sender in covered.into_values().flatten() {
            let _ = sender.send(());
        }
        (pending, recovered)
    }

    /// A commit failed; returns whether this is the first failure in a row.
    pub fn record_failure(&self, error: String) -> bool {
        let first = self.writable.swap(false, Ordering::Relaxed);
        *self.last_error.lock().expect("progress lock") = Some(error);
        first
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_util::FutureExt;

    use super::*;

    const LONG: Duration = Duration::from_secs(600);

    #[tokio::test]
    async fn a_commit_wakes_the_replies_it_covers_and_no_others() {
        let progress = Arc::new(Progress::new());
        let waiter = |seq| {
            let progress = progress.clone();
            tokio::spawn(async move { progress.wait_committed(seq, LONG).await })
        };
        let (first, second, third) = (waiter(1), waiter(2), waiter(3));
        while progress.waiting.lock().unwrap().by_seq.len() < 3 {
            tokio::task::yield_now().await;
        }
        progress.record_commit(2, 0);
        assert!(first.await.unwrap() && second.await.unwrap());
        assert_eq!(progress.waiting.lock().unwrap().by_seq.keys().copied().collect::<Vec<_>>(), [3]);
        assert!(!third.is_finished());
        progress.record_commit(3, 0);
        assert!(third.await.unwrap());
        assert!(progress.waiting.lock().unwrap().by_seq.is_empty());
        // Already committed: answered at once.
        assert!(progress.wait_committed(2, Duration::ZERO).await);
    }

    #[tokio::test]
    async fn replies_that_gave_up_are_dropped_while_commits_stall() {
        let progress = Progress::new();
        // Each reply waits once, then gives up (its future is dropped, as a timed-out one is).
        let give_up = |seq| assert_eq!(progress.wait_committed(seq, LONG).now_or_never(), None);
        for seq in 1..=PRUNE_WAITING_AT as u64 {
            give_up(seq);
        }
        assert_eq!(progress.waiting.lock().unwrap().by_seq.len(), PRUNE_WAITING_AT);
        give_up(1);
        assert_eq!(progress.waiting.lock().unwrap().by_seq.len(), 1, "only the last waiter's entry is left");
    }

    #[tokio::test]
    async fn replies_still_waiting_are_kept_and_the_next_pass_waits_for_twice_as_many() {
        let progress = Progress::new();
        let mut waiters: Vec<_> =
            (1..=PRUNE_WAITING_AT as u64 + 1).map(|seq| Box::pin(progress.wait_committed(seq, LONG))).collect();
        for waiter in &mut waiters {
            assert_eq!(waiter.as_mut().now_or_never(), None);
        }
        {
            let waiting = progress.waiting.lock().unwrap();
            assert_eq!(waiting.by_seq.len(), PRUNE_WAITING_AT + 1);
            assert_eq!(waiting.prune_at, PRUNE_WAITING_AT * 2);
        }
        progress.record_commit(PRUNE_WAITING_AT as u64 + 1, 0);
        for waiter in waiters {
            assert!(waiter.await);
        }
    }
}
