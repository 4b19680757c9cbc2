//! `GET /api/events`: the live feed as Server-Sent Events.
//!
//! Event names: `task`, `venture`, `agent`, `activity` (data: the object as the REST API
//! shows it, a task with its `venture` `{id, name, icon}`), `task_deleted`,
//! `venture_deleted`, `agent_deleted` (data: `{"id"}`), and `reload` (data: `{"reason"}`):
//! the client missed events and must fetch the lists again. Resume with `Last-Event-ID`
//! (or `?lastEventId=`, for clients that cannot set headers).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, OwnedSemaphorePermit};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::IntoParams;

use super::error::{ApiError, BadRequest};
use super::extract::{decode_query, Accepts};
use super::wire::{ActivityJson, AgentJson, TaskJson, VentureJson};
use super::AppState;
use crate::domain::Venture;
use crate::events::{Event, Replay, Sealed, Start};
use crate::scheduler::Change;
use crate::scheduler::TaskView;

/// The live feed of changes as Server-Sent Events.
///
/// Events `task`, `venture`, `agent`, `activity` carry the object as the REST API shows it
/// (a task with its `venture` as it was then; a venture has no `capitalReserved`); `task_deleted`,
/// `venture_deleted`, `agent_deleted` carry `{"id"}`; `reload` carries `{"reason"}` and
/// means the client missed events and must fetch the lists again, after which the stream
/// ends. The stream stays open; a keep-alive comment is sent while it is idle.
#[utoipa::path(
    get,
    path = "/api/events",
    operation_id = "streamEvents",
    tag = "events",
    params(ResumeAfter),
    responses(
        (status = 200, description = "The event stream.", content_type = "text/event-stream", body = String),
        BadRequest,
    ),
    security(("bearerAuth" = []), ("accessToken" = []))
)]
pub async fn stream(State(app): State<AppState>, ResumeAfter(last): ResumeAfter) -> Result<Response, ApiError> {
    let permit = app.event_streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "too many event streams are open; retry shortly")
    })?;
    let (start, receiver) = app.events.subscribe(last);
    let (replay, reload_first) = match start {
        Start::Resume(replay) => (replay, false),
        Start::Reload => (Replay::default(), true),
    };
    let feed = Feed {
        sealed: replay.sealed.into(),
        newest: replay.newest.into(),
        reload_first,
        replay_started: false,
        receiver,
        done: false,
        _permit: permit,
    };
    Ok(feed.into_response())
}

/// Where a stream resumes: after the event `Last-Event-ID` names, or `?lastEventId=` for
/// clients that cannot set headers (the header wins).
pub struct ResumeAfter(Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for ResumeAfter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        #[derive(Deserialize)]
        struct InQuery {
            #[serde(rename = "lastEventId")]
            last_event_id: Option<String>,
        }
        impl Accepts for InQuery {
            // The token a browser's EventSource gives in the query (see `require_token`).
            const ALSO: &'static [&'static str] = &["access_token"];
        }
        let query = decode_query::<InQuery>(parts.uri.query())?;
        let header = parts.headers.get("last-event-id").and_then(|v| v.to_str().ok());
        match header.or(query.last_event_id.as_deref()).map(str::parse::<u64>) {
            None => Ok(ResumeAfter(None)),
            Some(Ok(id)) => Ok(ResumeAfter(Some(id))),
            Some(Err(_)) => {
                Err(ApiError::invalid("lastEventId", "`Last-Event-ID` must be an event id this server sent"))
            }
        }
    }
}

impl IntoParams for ResumeAfter {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let event_id = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(utoipa::openapi::SchemaFormat::Custom("uint64".to_owned())))
                .minimum(Some(0))
                .maximum(Some(u64::MAX))
        };
        let parameter = |name: &str, place: ParameterIn, description: &str| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(place)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(event_id()))
                .build()
        };
        vec![
            parameter("Last-Event-ID", ParameterIn::Header, "Resume after this event id."),
            parameter(
                "lastEventId",
                ParameterIn::Query,
                "Resume after this event id (`Last-Event-ID` wins when both are given).",
            ),
        ]
    }
}

/// How much of the stream one write gathers: a replay of thousands of events, or events
/// that arrived together, go out in a few large writes rather than one write each.
const CHUNK_BYTES: usize = 64 * 1024;

/// How long an idle stream waits before a keep-alive comment, so that proxies and
/// browsers do not take it for dead.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A keep-alive: an empty SSE comment.
const KEEP_ALIVE_COMMENT: &[u8] = b":\n\n";

/// One subscriber's position: what to replay, then the live receiver.
struct Feed {
    /// Replayed first: sealed chunks, each from the index of its first event to send.
    sealed: VecDeque<(Arc<Sealed>, usize)>,
    /// Then the rest of the replay, one event at a time.
    newest: VecDeque<Arc<Event>>,
    reload_first: bool,
    /// A replay chunk has gone out: the next one waits its turn behind other requests.
    replay_started: bool,
    receiver: broadcast::Receiver<Arc<Event>>,
    done: bool,
    /// Held while the stream is open: the bound on open streams.
    _permit: OwnedSemaphorePermit,
}

impl Feed {
    fn into_response(self) -> Response {
        let chunks = stream::unfold(self, |mut feed| async move {
            feed.next_chunk().await.map(|chunk| (Ok::<_, Infallible>(chunk), feed))
        });
        let mut response = Body::from_stream(chunks).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    /// The next write: the replay first (a sealed chunk's shared frames at a time, then the
    /// newest events joined), then each live event together with any that are already
    /// waiting behind it; a keep-alive comment after a quiet `KEEP_ALIVE`.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        if self.reload_first {
            self.done = true;
            return Some(reload("your last event is no longer kept"));
        }
        if !self.sealed.is_empty() || !self.newest.is_empty() {
            // A replay is ready at once, chunk after chunk, and the connection takes chunks
            // for as long as the client keeps reading: without a turn given back between
            // them, one replay holds the HTTP thread for milliseconds while claims wait.
            if self.replay_started {
                tokio::task::yield_now().await;
            }
            self.replay_started = true;
        }
        if let Some((sealed, from)) = self.sealed.pop_front() {
            // Joined from the events' own frames where made; the others are made for the
            // join only, so the chunk's buffer is their one copy.
            let frame = |event: &Event| event.framed_if_made().cloned().unwrap_or_else(|| make_frame(event));
            return Some(sealed.frames_from(from, frame));
        }
        if !self.newest.is_empty() {
            let mut chunk = BytesMut::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 8);
            while chunk.len() < CHUNK_BYTES {
                let Some(event) = self.newest.pop_front() else { break };
                chunk.extend_from_slice(framed(&event));
            }
            return Some(chunk.freeze());
        }
        let first = match tokio::time::timeout(KEEP_ALIVE, self.receiver.recv()).await {
            Err(_) => return Some(Bytes::from_static(KEEP_ALIVE_COMMENT)),
            Ok(Ok(event)) => framed(&event).clone(),
            Ok(Err(broadcast::error::RecvError::Lagged(missed))) => return Some(self.lagged(missed)),
            Ok(Err(broadcast::error::RecvError::Closed)) => return None,
        };
        let mut chunk: Option<BytesMut> = None;
        while chunk.as_ref().map_or(first.len(), BytesMut::len) < CHUNK_BYTES {
            let next = match self.receiver.try_recv() {
                Ok(event) => framed(&event).clone(),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => self.lagged(missed),
                Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => break,
            };
            chunk.get_or_insert_with(|| BytesMut::from(&first[..])).extend_from_slice(&next);
            if self.done {
                break;
            }
        }
        Some(chunk.map_or(first, BytesMut::freeze))
    }

    /// The client fell behind the live feed: it is told to reload, and the stream ends.
    fn lagged(&mut self, missed: u64) -> Bytes {
        self.done = true;
        reload(&format!("this client fell {missed} events behind"))
    }
}

fn reload(reason: &str) -> Bytes {
    frame(None, "reload", &json!({ "reason": reason }).to_string())
}

/// The event as the stream sends it, made once and shared by every subscriber.
fn framed(event: &Event) -> &Bytes {
    event.framed(make_frame)
}

fn make_frame(event: &Event) -> Bytes {
    frame(Some(event.id), kind(&event.change), &encode(&event.change, event.venture.clone()))
}

/// An SSE frame: `id`, `event` and one `data` line (compact JSON has no line breaks).
fn frame(id: Option<u64>, kind: &str, data: &str) -> Bytes {
    debug_assert!(!data.contains(['\n', '\r']), "an SSE data line cannot hold a line break");
    let mut frame = String::with_capacity(data.len() + kind.len() + 40);
    if let Some(id) = id {
        let _ = writeln!(frame, "id: {id}");
    }
    let _ = write!(frame, "event: {kind}\ndata: {data}\n\n");
    Bytes::from(frame)
}

fn kind(change: &Change) -> &'static str {
    match change {
        Change::Task(_) => "task",
        Change::DeleteTask(_) => "task_deleted",
        Change::Venture(_) => "venture",
        Change::DeleteVenture(_) => "venture_deleted",
        Change::Agent(_) => "agent",
        Change::DeleteAgent(_) => "agent_deleted",
        Change::Activity(_) => "activity",
        Change::Attempt(_) => "attempt",
        Change::Dependencies(..) => "dependencies",
    }
}

fn encode(change: &Change, venture: Option<Arc<Venture>>) -> String {
    let encoded = match change {
        Change::Task(task) => serde_json::to_string(&TaskJson::from(&TaskView { task: task.clone(), venture })),
        Change::Venture(venture) => serde_json::to_string(&VentureJson::from(&**venture)),
        Change::Agent(agent) => serde_json::to_string(&AgentJson::from(&**agent)),
        Change::Activity(activity) => serde_json::to_string(&ActivityJson::from(&**activity)),
        Change::Attempt(a) => serde_json::to_string(&json!({ "taskId": &*a.task_id, "attempt": a.attempt })),
        Change::Dependencies(id, depends_on) => {
            serde_json::to_string(&json!({ "taskId": &**id, "dependsOn": depends_on.as_deref().unwrap_or_default() }))
        }
        Change::DeleteTask(id) | Change::DeleteVenture(id) | Change::DeleteAgent(id) => {
            serde_json::to_string(&json!({ "id": &**id }))
        }
    };
    encoded.expect("our records always encode")
}
