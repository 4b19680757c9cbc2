//! The live event feed behind `GET /api/events`: every change the scheduler makes, in order,
//! with an id a reconnecting client can resume from.
//!
//! The actor publishes each message's changes after handing them to the persister. Publishing
//! never blocks: a broadcast channel fans events out, and a subscriber that falls more than
//! its capacity behind is told to reload instead of holding the scheduler back. The last
//! `REPLAY_CAPACITY` events are kept so that `Last-Event-ID` resumes without a gap.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::broadcast;

use crate::domain::Millis;
use crate::persist::Change;

/// Events kept for resuming.
pub const REPLAY_CAPACITY: usize = 10_000;
/// Events a live subscriber may fall behind before it is told to reload.
pub const SUBSCRIBER_CAPACITY: usize = 4_096;

/// One change, numbered. Its JSON is made once, by the first subscriber that sends it.
#[derive(Debug)]
pub struct Event {
    pub id: u64,
    pub change: Change,
    encoded: OnceLock<String>,
}

impl Event {
    /// The encoded form, computed once with `encode` and shared by every subscriber.
    pub fn encoded(&self, encode: impl FnOnce(&Change) -> String) -> &str {
        self.encoded.get_or_init(|| encode(&self.change))
    }
}

/// What a new subscriber starts from.
pub enum Start {
    /// The events after the client's last one, then the live feed.
    Resume(Vec<Arc<Event>>),
    /// The client's last event is no longer kept (or is from another run): it must reload.
    Reload,
}

pub struct EventHub {
    sender: broadcast::Sender<Arc<Event>>,
    /// Recent events, oldest first, and the id the next event gets. One lock covers both and
    /// the broadcast, so a subscriber's replay and its live feed neither overlap nor gap.
    recent: Mutex<(VecDeque<Arc<Event>>, u64)>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub::new(Millis::now())
    }
}

impl EventHub {
    /// Ids start from the start time (in microseconds' worth of room per millisecond), so ids
    /// from an earlier run are always older than anything kept and get a reload.
    pub fn new(started: Millis) -> EventHub {
        let (sender, _) = broadcast::channel(SUBSCRIBER_CAPACITY);
        let first_id = u64::try_from(started.0).unwrap_or(0) * 1000 + 1;
        EventHub { sender, recent: Mutex::new((VecDeque::with_capacity(REPLAY_CAPACITY), first_id)) }
    }

    pub fn publish(&self, changes: &[Change]) {
        let mut recent = self.recent.lock().expect("event hub lock");
        for change in changes {
            let id = recent.1;
            recent.1 += 1;
            let event = Arc::new(Event { id, change: change.clone(), encoded: OnceLock::new() });
            if recent.0.len() == REPLAY_CAPACITY {
                recent.0.pop_front();
            }
            recent.0.push_back(event.clone());
            // No subscriber is not an error.
            let _ = self.sender.send(event);
        }
    }

    /// A live receiver, and what to send before its first event.
    pub fn subscribe(&self, last_event_id: Option<u64>) -> (Start, broadcast::Receiver<Arc<Event>>) {
        let recent = self.recent.lock().expect("event hub lock");
        let receiver = self.sender.subscribe();
        let next_id = recent.1;
        let start = match last_event_id {
            None => Start::Resume(Vec::new()),
            Some(last) if last + 1 == next_id => Start::Resume(Vec::new()),
            Some(last) => match recent.0.front() {
                Some(oldest) if last + 1 >= oldest.id && last < next_id => {
                    Start::Resume(recent.0.iter().filter(|e| e.id > last).cloned().collect())
                }
                _ => Start::Reload,
            },
        };
        (start, receiver)
    }

    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delete(id: &str) -> Change {
        Change::DeleteTask(id.into())
    }

    fn ids(events: &[Arc<Event>]) -> Vec<u64> {
        events.iter().map(|e| e.id).collect()
    }

    #[test]
    fn resume_replays_exactly_what_came_after() {
        let hub = EventHub::new(Millis(1));
        hub.publish(&[delete("a"), delete("b"), delete("c")]);
        let first = 1001;
        let Start::Resume(replay) = hub.subscribe(Some(first)).0 else { panic!("expected a resume") };
        assert_eq!(ids(&replay), [first + 1, first + 2]);
        let (start, mut live) = hub.subscribe(Some(first + 2));
        assert!(matches!(start, Start::Resume(r) if r.is_empty()));
        hub.publish(&[delete("d")]);
        assert_eq!(live.try_recv().unwrap().id, first + 3);
    }

    #[test]
    fn unknown_or_forgotten_ids_must_reload() {
        let hub = EventHub::new(Millis(1));
        for i in 0..REPLAY_CAPACITY + 5 {
            hub.publish(&[delete(&i.to_string())]);
        }
        assert!(matches!(hub.subscribe(Some(1001)).0, Start::Reload), "dropped from the buffer");
        assert!(matches!(hub.subscribe(Some(5)).0, Start::Reload), "from an earlier run");
        assert!(matches!(hub.subscribe(Some(u64::MAX - 1)).0, Start::Reload), "from the future");
        assert!(matches!(hub.subscribe(Some(1001 + 10)).0, Start::Resume(r) if r.len() == REPLAY_CAPACITY - 6));
    }

    #[test]
    fn a_subscriber_that_falls_behind_lags_instead_of_blocking() {
        let hub = EventHub::new(Millis(1));
        let (_, mut slow) = hub.subscribe(None);
        for i in 0..SUBSCRIBER_CAPACITY + 10 {
            hub.publish(&[delete(&i.to_string())]);
        }
        assert!(matches!(slow.try_recv(), Err(broadcast::error::TryRecvError::Lagged(_))));
    }
}
