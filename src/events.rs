//! The live event feed behind `GET /api/events`: every change the scheduler makes, in order,
//! with an id a reconnecting client can resume from.
//!
//! The actor publishes each message's changes after handing them to the persister. Publishing
//! never blocks: a broadcast channel fans events out, and a subscriber that falls more than
//! its capacity behind is told to reload instead of holding the scheduler back. The last
//! `REPLAY_CAPACITY` events are kept so that `Last-Event-ID` resumes without a gap.
//!
//! The kept events are sealed into immutable chunks of `CHUNK_LEN`, so a subscriber copies
//! only a few dozen `Arc`s under the lock the actor publishes through, and picks the events
//! to replay out of them after letting go of it. A sealed chunk's frames are joined once,
//! by the first replay that sends it, so later replays send each chunk as one shared buffer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Bytes, BytesMut};
use tokio::sync::broadcast;

use crate::domain::{Id, Millis, Venture};
use crate::scheduler::{Change, ChangeFeed};

/// Events kept for resuming.
pub const REPLAY_CAPACITY: usize = 10_000;
/// Events a live subscriber may fall behind before it is told to reload.
pub const SUBSCRIBER_CAPACITY: usize = 4_096;
/// Events per sealed chunk of the replay buffer: small enough that copying the open chunk
/// under the lock is cheap, large enough that a full buffer is few chunks.
const CHUNK_LEN: usize = 256;

/// One change, numbered. Its wire form is made once, by the first subscriber that sends it.
#[derive(Debug)]
pub struct Event {
    pub id: u64,
    pub change: Change,
    /// A task's venture as it was when the task changed, shown as the REST API shows it.
    pub venture: Option<Arc<Venture>>,
    framed: OnceLock<Bytes>,
}

impl Event {
    /// The event as it goes on the wire, made once with `frame` and shared by every
    /// subscriber: a clone is a reference count, not a copy.
    pub fn framed(&self, frame: impl FnOnce(&Event) -> Bytes) -> &Bytes {
        self.framed.get_or_init(|| frame(self))
    }

    /// The wire form if a subscriber has made it.
    pub fn framed_if_made(&self) -> Option<&Bytes> {
        self.framed.get()
    }
}

/// `CHUNK_LEN` consecutive events, never changed once sealed.
#[derive(Debug)]
pub struct Sealed {
    events: Box<[Arc<Event>]>,
    framed: OnceLock<SealedFrames>,
}

#[derive(Debug)]
struct SealedFrames {
    /// Every event's frame, back to back.
    bytes: Bytes,
    /// Where each event's frame starts in `bytes`.
    starts: Box<[usize]>,
}

impl Sealed {
    /// The frames of the events from the `from`-th on, back to back: a slice of one buffer
    /// that the first caller joins (`frame` gives one event's) and every replay shares.
    pub fn frames_from(&self, from: usize, frame: impl Fn(&Event) -> Bytes) -> Bytes {
        let framed = self.framed.get_or_init(|| {
            let frames: Vec<Bytes> = self.events.iter().map(|event| frame(event)).collect();
            let mut bytes = BytesMut::with_capacity(frames.iter().map(Bytes::len).sum());
            let mut starts = Vec::with_capacity(frames.len());
            for one in &frames {
                starts.push(bytes.len());
                bytes.extend_from_slice(one);
            }
            SealedFrames { bytes: bytes.freeze(), starts: starts.into() }
        });
        framed.bytes.slice(framed.starts[from]..)
    }

    fn first_id(&self) -> u64 {
        self.events[0].id
    }
}

/// What a resuming subscriber missed, oldest first.
#[derive(Default)]
pub struct Replay {
    /// Sealed chunks, each with the index of the first of its events to send.
    pub sealed: Vec<(Arc<Sealed>, usize)>,
    /// The newest events, not sealed yet.
    pub newest: Vec<Arc<Event>>,
}

impl Replay {
    /// Every event to send, in order.
    pub fn events(&self) -> impl Iterator<Item = &Arc<Event>> {
        let sealed = self.sealed.iter().flat_map(|(chunk, from)| chunk.events[*from..].iter());
        sealed.chain(self.newest.iter())
    }
}

/// What a new subscriber starts from.
pub enum Start {
    /// The events after the client's last one, then the live feed.
    Resume(Replay),
    /// The client's last event is no longer kept (or is from another run): it must reload.
    Reload,
}

pub struct EventHub {
    /// One lock covers the replay buffer, the id counter and the broadcast, so a
    /// subscriber's replay and its live feed neither overlap nor gap.
    inner: Mutex<Inner>,
}

struct Inner {
    /// Recent events, oldest first, in chunks that never change once sealed. Whole chunks
    /// are dropped, so a few more than `REPLAY_CAPACITY` may be kept; `oldest_kept` says
    /// which of them count.
    sealed: VecDeque<Arc<Sealed>>,
    /// The newest events, at most `CHUNK_LEN`, sealed when full.
    open: Vec<Arc<Event>>,
    /// Events kept in `sealed` and `open` together.
    kept: usize,
    next_id: u64,
    /// `None` once closed: every live stream then ends.
    sender: Option<broadcast::Sender<Arc<Event>>>,
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
        let next_id = u64::try_from(started.0).unwrap_or(0) * 1000 + 1;
        let inner = Inner {
            sealed: VecDeque::new(),
            open: Vec::with_capacity(CHUNK_LEN),
            kept: 0,
            next_id,
            sender: Some(sender),
        };
        EventHub { inner: Mutex::new(inner) }
    }

    /// A live receiver, and what to send before its first event. After `close`, the
    /// receiver is already closed.
    pub fn subscribe(&self, last_event_id: Option<u64>) -> (Start, broadcast::Receiver<Arc<Event>>) {
        // Under the lock: the receiver, and handles on the kept events, so that the replay
        // ends exactly where the live feed begins.
        let (receiver, next_id, oldest_kept, sealed, open) = {
            let inner = self.inner.lock().expect("event hub lock");
            let receiver = match &inner.sender {
                Some(sender) => sender.subscribe(),
                None => broadcast::channel(1).1,
            };
            let oldest_kept = inner.next_id - inner.kept.min(REPLAY_CAPACITY) as u64;
            let wants_replay = last_event_id.is_some_and(|last| last + 1 != inner.next_id);
            let (sealed, open) = if wants_replay {
                (inner.sealed.iter().cloned().collect::<Vec<_>>(), inner.open.clone())
            } else {
                (Vec::new(), Vec::new())
            };
            (receiver, inner.next_id, oldest_kept, sealed, open)
        };
        let start = match last_event_id {
            None => Start::Resume(Replay::default()),
            Some(last) if last + 1 == next_id => Start::Resume(Replay::default()),
            Some(last) if last + 1 >= oldest_kept && last < next_id => {
                // Ids are consecutive, so where the replay starts in a chunk is arithmetic.
                let sealed = sealed
                    .into_iter()
                    .filter(|chunk| chunk.first_id() + chunk.events.len() as u64 > last + 1)
                    .map(|chunk| {
                        let from = (last + 1).saturating_sub(chunk.first_id()) as usize;
                        (chunk, from)
                    })
                    .collect();
                let newest = open.into_iter().filter(|e| e.id > last).collect();
                Start::Resume(Replay { sealed, newest })
            }
            Some(_) => Start::Reload,
        };
        (start, receiver)
    }

    /// Ends every live stream, so that a shutdown does not wait for clients that never
    /// hang up. Their browsers reconnect to the next server and resume or reload.
    pub fn close(&self) {
        self.inner.lock().expect("event hub lock").sender = None;
    }
}

impl Inner {
    /// Adds the newest event, sealing the open chunk when full and dropping the oldest
    /// chunk once the rest still hold `REPLAY_CAPACITY` events.
    fn keep(&mut self, event: Arc<Event>) {
        self.open.push(event);
        self.kept += 1;
        if self.open.len() == CHUNK_LEN {
            let full = std::mem::replace(&mut self.open, Vec::with_capacity(CHUNK_LEN));
            self.sealed.push_back(Arc::new(Sealed { events: full.into(), framed: OnceLock::new() }));
        }
        while let Some(oldest) = self.sealed.front() {
            if self.kept - oldest.events.len() < REPLAY_CAPACITY {
                break;
            }
            self.kept -= oldest.events.len();
            self.sealed.pop_front();
        }
    }
}

impl ChangeFeed for EventHub {
    fn publish(&self, changes: &[Change], venture_of: &dyn Fn(&Id) -> Option<Arc<Venture>>) {
        // Looked up before the lock, which subscribers share.
        let ventures: Vec<Option<Arc<Venture>>> = changes
            .iter()
            .map(|change| match change {
                Change::Task(task) => venture_of(&task.venture_id),
                _ => None,
            })
            .collect();
        let mut inner = self.inner.lock().expect("event hub lock");
        for (change, venture) in changes.iter().zip(ventures) {
            // Attempts are read at `GET /api/tasks/{id}/attempts`, and dependencies are in the
            // task's own record: the stream shows the task.
            if matches!(change, Change::Attempt(_) | Change::Dependencies(..)) {
                continue;
            }
            let id = inner.next_id;
            inner.next_id += 1;
            let event = Arc::new(Event { id, change: change.clone(), venture, framed: OnceLock::new() });
            inner.keep(event.clone());
            if let Some(sender) = &inner.sender {
                // No subscriber is not an error.
                let _ = sender.send(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delete(id: &str) -> Change {
        Change::DeleteTask(id.into())
    }

    fn ids(replay: &Replay) -> Vec<u64> {
        replay.events().map(|e| e.id).collect()
    }

    #[test]
    fn resume_replays_exactly_what_came_after() {
        let hub = EventHub::new(Millis(1));
        hub.publish(&[delete("a"), delete("b"), delete("c")], &|_| None);
        let first = 1001;
        let Start::Resume(replay) = hub.subscribe(Some(first)).0 else { panic!("expected a resume") };
        assert_eq!(ids(&replay), [first + 1, first + 2]);
        let (start, mut live) = hub.subscribe(Some(first + 2));
        assert!(matches!(start, Start::Resume(r) if r.events().next().is_none()));
        hub.publish(&[delete("d")], &|_| None);
        assert_eq!(live.try_recv().unwrap().id, first + 3);
    }

    #[test]
    fn a_replay_starts_inside_a_sealed_chunk_and_shares_its_frames() {
        let hub = EventHub::new(Millis(1));
        for i in 0..3 * CHUNK_LEN + 10 {
            hub.publish(&[delete(&i.to_string())], &|_| None);
        }
        let (first, chunk) = (1001, CHUNK_LEN as u64);
        let last = first + chunk + 5; // the sixth event of the second chunk
        let Start::Resume(replay) = hub.subscribe(Some(last)).0 else { panic!("expected a resume") };
        assert_eq!(ids(&replay), (last + 1..first + 3 * chunk + 10).collect::<Vec<_>>());
        let starts: Vec<usize> = replay.sealed.iter().map(|(_, from)| *from).collect();
        assert_eq!((starts, replay.newest.len()), (vec![6, 0], 10));

        let frame = |event: &Event| Bytes::from(format!("{};", event.id));
        let joined: Vec<u8> =
            replay.sealed.iter().flat_map(|(chunk, from)| chunk.frames_from(*from, frame).to_vec()).collect();
        let one_by_one: String = replay
            .sealed
            .iter()
            .flat_map(|(chunk, from)| chunk.events[*from..].iter().map(|e| format!("{};", e.id)))
            .collect();
        assert_eq!(String::from_utf8(joined).unwrap(), one_by_one);
        let Start::Resume(again) = hub.subscribe(Some(last)).0 else { panic!("expected a resume") };
        let (joined_before, joined_again) = (
            replay.sealed[1].0.frames_from(0, frame),
            again.sealed[1].0.frames_from(0, |_| unreachable!("joined once")),
        );
        assert_eq!(joined_before.as_ptr(), joined_again.as_ptr(), "one buffer, shared");
    }

    #[test]
    fn unknown_or_forgotten_ids_must_reload() {
        let hub = EventHub::new(Millis(1));
        for i in 0..REPLAY_CAPACITY + 5 {
            hub.publish(&[delete(&i.to_string())], &|_| None);
        }
        assert!(matches!(hub.subscribe(Some(1001)).0, Start::Reload), "dropped from the buffer");
        assert!(matches!(hub.subscribe(Some(5)).0, Start::Reload), "from an earlier run");
        assert!(matches!(hub.subscribe(Some(u64::MAX - 1)).0, Start::Reload), "from the future");
        assert!(
            matches!(hub.subscribe(Some(1001 + 10)).0, Start::Resume(r) if r.events().count() == REPLAY_CAPACITY - 6)
        );
    }

    #[test]
    fn close_ends_live_streams_and_new_ones() {
        let hub = EventHub::new(Millis(1));
        let (_, mut live) = hub.subscribe(None);
        hub.close();
        assert!(matches!(live.try_recv(), Err(broadcast::error::TryRecvError::Closed)));
        let (_, mut late) = hub.subscribe(None);
        assert!(matches!(late.try_recv(), Err(broadcast::error::TryRecvError::Closed)));
        hub.publish(&[delete("after")], &|_| None);
    }

    #[test]
    fn a_subscriber_that_falls_behind_lags_instead_of_blocking() {
        let hub = EventHub::new(Millis(1));
        let (_, mut slow) = hub.subscribe(None);
        for i in 0..SUBSCRIBER_CAPACITY + 10 {
            hub.publish(&[delete(&i.to_string())], &|_| None);
        }
        assert!(matches!(slow.try_recv(), Err(broadcast::error::TryRecvError::Lagged(_))));
    }
}
