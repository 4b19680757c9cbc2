//! How far the record has caught up with the scheduler: what the persister publishes and
//! the scheduler (and readiness) reads. The scheduler defines it; whatever keeps the record
//! updates it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

/// Distinct sequence numbers waited for before answers whose callers gave up are first
/// swept; after that, whenever their number has doubled since the last sweep.
const PRUNE_WAITING_AT: usize = 4096;

/// An answer held back until the change it reports is committed: the persister's commit
/// sends it, so the caller is woken once, by the commit, rather than first by the actor.
pub trait HeldReply: Send {
    /// The caller stopped waiting; sweeps send it anyway, so that it can undo what the
    /// caller will never learn of.
    fn is_abandoned(&self) -> bool;
    fn send(self: Box<Self>);
}

/// A plain answer: sent as it is, dropped when nobody listens.
pub struct HeldAnswer<T> {
    pub reply: oneshot::Sender<T>,
    pub answer: T,
}

impl<T: Send> HeldReply for HeldAnswer<T> {
    fn is_abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn send(self: Box<Self>) {
        let _ = self.reply.send(self.answer);
    }
}

struct Waiting {
    by_seq: BTreeMap<u64, Vec<Box<dyn HeldReply>>>,
    /// Answers whose callers gave up are swept when `by_seq` grows to this many numbers.
    prune_at: usize,
}

impl Waiting {
    /// Takes out the answers whose callers gave up, once there are enough numbers waited
    /// for: commits have stalled (a failing disk). Under a large backlog that is still
    /// moving few are swept, so the next sweep waits for twice as many numbers.
    fn sweep_if_due(&mut self) -> Vec<Box<dyn HeldReply>> {
        if self.by_seq.len() < self.prune_at {
            return Vec::new();
        }
        let mut abandoned = Vec::new();
        for answers in self.by_seq.values_mut() {
            abandoned.extend(answers.extract_if(.., |answer| answer.is_abandoned()));
        }
        self.by_seq.retain(|_, answers| !answers.is_empty());
        self.prune_at = PRUNE_WAITING_AT.max(self.by_seq.len() * 2);
        abandoned
    }
}

/// What the persister tells the rest of the process.
pub struct Progress {
    /// The last sequence number committed; stored under `waiting`'s lock.
    committed: AtomicU64,
    /// Answers waiting for a commit, by the sequence number each waits for. A commit sends
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
        let (reply, receiver) = oneshot::channel();
        self.hold(seq, Box::new(HeldAnswer { reply, answer: () }));
        tokio::time::timeout(timeout, receiver).await.is_ok_and(|r| r.is_ok())
    }

    /// Sends `held` once `seq` is committed: now, if it already is.
    pub fn hold(&self, seq: u64, held: Box<dyn HeldReply>) {
        let abandoned = {
            let mut waiting = self.waiting.lock().expect("progress lock");
            if self.committed() >= seq {
                drop(waiting);
                held.send();
                return;
            }
            let abandoned = waiting.sweep_if_due();
            waiting.by_seq.entry(seq).or_default().push(held);
            abandoned
        };
        for held in abandoned {
            held.send();
        }
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
        for held in covered.into_values().flatten() {
            held.send();
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

    /// Counts the answers sent, and whether their callers were still there.
    struct Counted {
        reply: oneshot::Sender<u64>,
        seq: u64,
        sent: Arc<Mutex<Vec<(u64, bool)>>>,
    }

    impl HeldReply for Counted {
        fn is_abandoned(&self) -> bool {
            self.reply.is_closed()
        }

        fn send(self: Box<Self>) {
            let delivered = self.reply.send(self.seq).is_ok();
            self.sent.lock().unwrap().push((self.seq, delivered));
        }
    }

    #[test]
    fn a_held_answer_is_sent_by_its_commit_and_an_abandoned_one_by_the_sweep() {
        let progress = Progress::new();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let hold = |seq| {
            let (reply, receiver) = oneshot::channel();
            progress.hold(seq, Box::new(Counted { reply, seq, sent: sent.clone() }));
            receiver
        };
        let mut kept = hold(1);
        assert!(kept.try_recv().is_err(), "nothing is sent before its commit");
        progress.record_commit(1, 0);
        assert_eq!(kept.try_recv().unwrap(), 1);
        // Already committed: sent at once.
        assert_eq!(hold(1).try_recv().unwrap(), 1);

        // Callers that gave up while commits stall are swept, and their answers are still
        // sent (undelivered), so that a claim can give its task back.
        for seq in 2..=PRUNE_WAITING_AT as u64 + 1 {
            drop(hold(seq));
        }
        let mut last = hold(PRUNE_WAITING_AT as u64 + 2);
        let swept = sent.lock().unwrap().iter().filter(|(_, delivered)| !delivered).count();
        assert_eq!(swept, PRUNE_WAITING_AT);
        assert!(last.try_recv().is_err());
        progress.record_commit(PRUNE_WAITING_AT as u64 + 2, 0);
        assert_eq!(last.try_recv().unwrap(), PRUNE_WAITING_AT as u64 + 2);
    }
}
