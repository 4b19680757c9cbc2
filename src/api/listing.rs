//! `GET /api/tasks`: the unfinished tasks the scheduler holds, merged in list order
//! (`createdAt`, then id; or its reverse, `?order=desc`) with the finished ones the database
//! holds, and streamed as one JSON array. The server holds the unfinished tasks (what it schedules anyway) and one
//! chunk of the answer, never the whole history.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::sync::mpsc;

use super::error::ApiError;
use super::wire::TaskJson;
use super::AppState;
use crate::domain::{Id, TaskStatus};
use crate::scheduler::{ListOrder, MemoryListing, TaskFilter, TaskView};

/// What a listing asks for besides its filter.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Only tasks after this one in list order (`?after=`).
    pub after: Option<Id>,
    /// Oldest first (list order) or newest first (`?order=`).
    pub order: ListOrder,
    /// Only these fields of each task (`?fields=`); all when `None`.
    pub fields: Option<Arc<[String]>>,
    pub offset: u64,
    pub limit: u64,
}

/// Bytes of JSON gathered before they are handed to the connection.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks that may wait for a slow client before the reader pauses.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Answers a listing as a stream; errors found before the first byte are JSON errors.
pub async fn stream_tasks(app: &AppState, filter: TaskFilter, page: Page) -> Result<Response, ApiError> {
    let after = match page.after {
        None => None,
        Some(id) => Some(app.scheduler.list_key(id.clone()).await?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no task has id `{id}`")).with_field("after")
        })?),
    };
    let MemoryListing { tasks: in_memory, shadowed } =
        app.scheduler.list_in_memory(filter.clone(), after.clone(), page.order).await?;
    let reads_history = filter.admits_finished();
    let mut ventures = HashMap::new();
    // How many finished rows the status and venture filters keep at most, from the counts.
    let mut at_most = 0u64;
    if reads_history {
        for view in app.scheduler.list_ventures().await? {
            if filter.venture_id.as_ref().is_none_or(|id| *id == view.venture.id) {
                let finished = TaskStatus::ALL.iter().filter(|s| s.is_finished() && filter.admits(**s));
                at_most += finished.map(|s| view.task_counts[*s as usize]).sum::<u64>();
            }
            ventures.insert(view.venture.id.clone(), view.venture);
        }
    }
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    let reader = app.tasks.clone();
    in_the_background(move || {
        let mut out = ArrayWriter::new(sender, page.offset, page.limit, page.fields);
        let mut memory = in_memory.into_iter().peekable();
        if reads_history {
            let result = reader.for_each_finished_of(&filter, after.as_ref(), page.order, at_most, |task| {
                // Memory answers for these: tasks it holds (one that finished after it answered
                // is shown as it was then), and finished ones whose change is not written yet.
                if shadowed.contains(&task.id) {
                    return true;
                }
                // The venture was deleted; its tasks' rows are on their way out.
                let Some(venture) = ventures.get(&task.venture_id).cloned() else { return true };
                while memory
                    .peek()
                    .is_some_and(|m| page.order.precedes((m.task.created_at, &m.task.id), (task.created_at, &task.id)))
                {
                    if !out.push(&memory.next().expect("peeked")) {
                        return false;
                    }
                }
                out.push(&TaskView { task: Arc::new(task), venture: Some(venture) })
            });
            if let Err(error) = result {
                tracing::error!(%error, "listing finished tasks failed; the response is cut short");
                out.fail();
                return;
            }
        }
        for view in memory {
            if !out.push(&view) {
                break;
            }
        }
        out.finish();
    });
    let body = Body::from_stream(stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    }));
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Runs a listing's reads and encoding on a thread of its own at a lower CPU priority, so
/// that when the cores are busy, claims and reports go first and a listing takes the time
/// they leave (it is a bulk read: a few milliseconds more do not matter to it). A thread of
/// its own rather than tokio's blocking pool, because a thread cannot raise its priority
/// back without privileges, and the pool's threads serve other reads afterwards. Past
/// `MAX_LISTING_THREADS` listings at once, the next ones run in the blocking pool, at
/// normal priority, so that listings never add threads without bound.
fn in_the_background(listing: impl FnOnce() + Send + 'static) {
    if LISTING_THREADS.fetch_add(1, Ordering::Relaxed) >= MAX_LISTING_THREADS {
        LISTING_THREADS.fetch_sub(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(listing);
        return;
    }
    let spawned = std::thread::Builder::new().name("listing".into()).spawn(move || {
        let _counted = ListingThread;
        lower_this_threads_priority();
        listing()
    });
    if let Err(error) = spawned {
        // The closure, and with it the response's sender, is gone: the client sees the
        // body end. The thread never ran, so it was never counted down.
        LISTING_THREADS.fetch_sub(1, Ordering::Relaxed);
        tracing::error!(%error, "could not start a listing's thread; the response is cut short");
    }
}

/// Listings running on threads of their own.
static LISTING_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The most listings on threads of their own at once.
const MAX_LISTING_THREADS: usize = 16;

/// Counts a listing's thread down when it ends, a panic included.
struct ListingThread;

impl Drop for ListingThread {
    fn drop(&mut self) {
        LISTING_THREADS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How far a listing's thread is niced (0 normal, 19 the least).
const LISTING_NICE: i32 = 10;

#[cfg(target_os = "linux")]
fn lower_this_threads_priority() {
    // On Linux a nice value belongs to a thread, named by its id: only this one yields.
    // SAFETY: plain system calls on the calling thread; a failure leaves the priority as it was.
    unsafe {
        let thread = libc::syscall(libc::SYS_gettid);
        libc::setpriority(libc::PRIO_PROCESS as _, thread as libc::id_t, LISTING_NICE);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {}

/// The named fields of a task, in the order named.
fn only(task: &TaskJson, fields: &[String]) -> serde_json::Map<String, serde_json::Value> {
    let serde_json::Value::Object(mut all) = serde_json::to_value(task).expect("a task always encodes") else {
        unreachable!("a task encodes as an object")
    };
    fields.iter().filter_map(|name| all.remove(name).map(|value| (name.clone(), value))).collect()
}

/// Writes a JSON array in chunks to the response, applying `offset`, `limit` and `fields`.
struct ArrayWriter {
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buffer: Vec<u8>,
    skip: u64,
    left: u64,
    fields: Option<Arc<[String]>>,
    first: bool,
    /// The client went away: stop reading.
    closed: bool,
}

impl ArrayWriter {
    fn new(
        sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
        offset: u64,
        limit: u64,
        fields: Option<Arc<[String]>>,
    ) -> ArrayWriter {
        ArrayWriter { sender, buffer: b"[".to_vec(), skip: offset, left: limit, fields, first: true, closed: false }
    }

    /// Adds a task; `false` once the page is full or the client has gone.
    fn push(&mut self, view: &TaskView) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            return true;
        }
        if self.left == 0 || self.closed {
            return false;
        }
        self.left -= 1;
        if !self.first {
            self.buffer.push(b',');
        }
        self.first = false;
        let task = TaskJson::from(view);
        match &self.fields {
            None => serde_json::to_writer(&mut self.buffer, &task),
            Some(fields) => serde_json::to_writer(&mut self.buffer, &only(&task, fields)),
        }
        .expect("a task always encodes");
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush();
        }
        self.left > 0 && !self.closed
    }

    fn flush(&mut self) {
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        self.closed |= self.sender.blocking_send(Ok(chunk)).is_err();
    }

    fn finish(mut self) {
        self.buffer.push(b']');
        self.flush();
    }

    /// Ends the response with an error, so the client sees a broken answer, not a short one.
    fn fail(self) {
        let _ = self.sender.blocking_send(Err(std::io::Error::other("the listing could not be completed")));
    }
}
