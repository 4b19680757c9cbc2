//! The writer thread's loop: gather envelopes, commit them as one transaction (the SQL is
//! `store::write_changes`), publish progress, prune between batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use super::retention::PRUNE_EVERY;
use super::sink::Sink;
use super::{Envelope, PersisterConfig};
use crate::domain::Millis;
use crate::scheduler::{Change, Progress, Pruned};
use crate::store::StoreError;

pub(super) struct Writer {
    sink: Sink,
    receiver: Receiver<Envelope>,
    progress: Arc<Progress>,
    config: PersisterConfig,
    pruned: Sender<Pruned>,
    /// When pruning should next look for expired records.
    next_prune: Instant,
}

/// Retries of a failed commit back off up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Writer {
    pub(super) fn new(
        sink: Sink,
        receiver: Receiver<Envelope>,
        progress: Arc<Progress>,
        config: PersisterConfig,
        pruned: Sender<Pruned>,
    ) -> Writer {
        Writer { sink, receiver, progress, config, pruned, next_prune: Instant::now() }
    }

    /// Runs until the channel is closed and everything received is committed.
    pub(super) fn run(mut self) {
        loop {
            // Blocks for the first envelope, waking for pruning when it is due. `recv` fails
            // only once every sender is gone and the channel is empty.
            let first = if self.config.retention.is_forever() {
                self.receiver.recv().ok()
            } else {
                match self.receiver.recv_timeout(self.next_prune.saturating_duration_since(Instant::now())) {
                    Ok(envelope) => Some(envelope),
                    Err(RecvTimeoutError::Timeout) => {
                        self.prune_if_due();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                }
            };
            let Some(first) = first else { return };
            let batch = self.gather(first);
            if !self.commit_until_done(&batch) {
                return;
            }
            // After the batch's replies are released, not before.
            self.sink.copy_wal_tail_if_ready();
            self.prune_if_due();
        }
    }

    /// One pruning turn when it is due; soon again when expired records are left.
    fn prune_if_due(&mut self) {
        if self.config.retention.is_forever() || Instant::now() < self.next_prune {
            return;
        }
        let retention = self.config.retention;
        let receiver = &self.receiver;
        match self.sink.prune(&retention, Millis::now(), || !receiver.is_empty()) {
            Ok(turn) => {
                self.next_prune = Instant::now() + if turn.more { Duration::from_millis(5) } else { PRUNE_EVERY };
                if !turn.tasks.is_empty() {
                    metrics::counter!("mission_control_pruned_total", "kind" => "task")
                        .increment(turn.tasks.len() as u64);
                }
                if turn.activities > 0 {
                    metrics::counter!("mission_control_pruned_total", "kind" => "activity")
                        .increment(turn.activities as u64);
                }
                if !turn.tasks.is_empty() {
                    let _ = self.pruned.send(turn.into_pruned(self.progress.committed()));
                }
            }
            Err(error) => {
                tracing::warn!(%error, "pruning expired records failed; it will try again");
                self.next_prune = Instant::now() + PRUNE_EVERY;
            }
        }
    }

    /// Drains what is waiting, up to the batch size and for at most the flush interval.
    fn gather(&self, first: Envelope) -> Vec<Envelope> {
        let deadline = Instant::now() + self.config.flush_interval;
        let mut n_changes = first.changes.len();
        let mut batch = vec![first];
        while n_changes < self.config.max_batch && Instant::now() < deadline {
            match self.receiver.try_recv() {
                Ok(envelope) => {
                    n_changes += envelope.changes.len();
                    batch.push(envelope);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        batch
    }

    /// Commits the batch, retrying with back-off while the store refuses it: an accepted
    /// change is never dropped. `false` when this node lost the right to write (a fenced
    /// PostgreSQL leader): nothing more is committed, so nothing more is acknowledged.
    fn commit_until_done(&mut self, batch: &[Envelope]) -> bool {
        let mut backoff = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            match self.commit(batch) {
                Ok(n_changes) => {
                    metrics::histogram!("mission_control_persist_commit_duration_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!("mission_control_persist_batch_size").record(n_changes as f64);
                    let last = batch.last().map_or(0, |e| e.seq);
                    let (pending, recovered) = self.progress.record_commit(last, n_changes);
                    metrics::gauge!("mission_control_persist_pending").set(pending as f64);
                    if recovered {
                        tracing::info!("the store takes writes again");
                    }
                    return true;
                }
                Err(error @ StoreError::Fenced { .. }) => {
                    self.progress.record_failure(error.to_string());
                    tracing::error!(%error, "this node is no longer the leader; it commits nothing more");
                    return false;
                }
                Err(error) => {
                    metrics::counter!("mission_control_persist_failures_total").increment(1);
                    if self.progress.record_failure(error.to_string()) {
                        tracing::error!(%error, "commit failed; writes are refused until the store recovers");
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn commit(&mut self, batch: &[Envelope]) -> Result<usize, StoreError> {
        let changes: Vec<&Change> = batch.iter().flat_map(|e| e.changes.iter()).collect();
        self.sink.commit(&changes)?;
        Ok(changes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::{PersisterConfig, PersisterHandle};
    use crate::scheduler::ChangeLog;
    use crate::store::write_fixtures::{activity, migrated};

    #[test]
    fn gather_drains_what_is_waiting_up_to_the_batch_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let (sender, receiver) = crossbeam_channel::unbounded();
        let config = PersisterConfig {
            flush_interval: Duration::from_secs(1),
            max_batch: 3,
            ..PersisterConfig::for_tests(&path)
        };
        let writer = Writer::new(
            Sink::Sqlite { conn: migrated(&path), tail_ready: Default::default() },
            receiver,
            Arc::new(Progress::new()),
            config,
            crossbeam_channel::unbounded().0,
        );
        for seq in 1..=5 {
            sender.send(Envelope { seq, changes: vec![activity(&format!("a{seq}"))] }).unwrap();
        }
        let first = writer.receiver.recv().unwrap();
        let batch = writer.gather(first);
        assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        let first = writer.receiver.recv().unwrap();
        assert_eq!(writer.gather(first).len(), 2, "the rest, then the channel is empty");
    }

    #[test]
    fn a_failed_commit_is_retried_until_it_lands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.db");
        let admin = migrated(&path);
        admin.execute_batch("ALTER TABLE Activity RENAME TO ActivityAway").unwrap();
        let mut persister = PersisterHandle::start(PersisterConfig::for_tests(&path)).unwrap();
        let progress = persister.progress();
        let seq = persister.send(vec![activity("x")]);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while progress.is_writable() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!progress.is_writable(), "the failure is published");
        assert!(progress.last_error().unwrap().contains("Activity"));
        assert_eq!(progress.pending(), 1);
        admin.execute_batch("ALTER TABLE ActivityAway RENAME TO Activity").unwrap();
        persister.shutdown();
        assert!(progress.is_writable());
        assert_eq!(progress.committed(), seq);
        assert_eq!(progress.pending(), 0);
        let n: i64 = admin.query_row("SELECT count(*) FROM Activity WHERE id = 'x'", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "the change that failed is written after recovery");
    }
}
