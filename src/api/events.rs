//! `GET /api/events`: the live feed as Server-Sent Events.
//!
//! Event names: `task`, `venture`, `agent`, `activity` (data: the object as the REST API
//! shows it, a task with its `venture` `{id, name, icon}`), `task_deleted`,
//! `venture_deleted`, `agent_deleted` (data: `{"id"}`), and `reload` (data: `{"reason"}`):
//! the client missed events and must fetch the lists again. Resume with `Last-Event-ID`
//! (or `?lastEventId=`, for clients that cannot set headers).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
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
use crate::events::{Event, Start};
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
        Start::Resume(events) => (events.into(), false),
        Start::Reload => (VecDeque::new(), true),
    };
    let feed = Feed { replay, reload_first, receiver, done: false, _permit: permit };
    Ok(Sse::new(feed.into_stream()).keep_alive(KeepAlive::default()).into_response())
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

/// One subscriber's position: what to replay, then the live receiver.
struct Feed {
    replay: VecDeque<Arc<Event>>,
    reload_first: bool,
    receiver: broadcast::Receiver<Arc<Event>>,
    done: bool,
    /// Held while the stream is open: the bound on open streams.
    _permit: OwnedSemaphorePermit,
}

impl Feed {
    fn into_stream(self) -> impl Stream<Item = Result<SseEvent, Infallible>> {
        stream::unfold(self, |mut feed| async move {
            if feed.done {
                return None;
            }
            if feed.reload_first {
                feed.done = true;
                return Some((Ok(reload("your last event is no longer kept")), feed));
            }
            if let Some(event) = feed.replay.pop_front() {
                return Some((Ok(to_sse(&event)), feed));
            }
            match feed.receiver.recv().await {
                Ok(event) => Some((Ok(to_sse(&event)), feed)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    feed.done = true;
                    Some((Ok(reload(&format!("this client fell {missed} events behind"))), feed))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
    }
}

fn reload(reason: &str) -> SseEvent {
    SseEvent::default().event("reload").data(json!({ "reason": reason }).to_string())
}

fn to_sse(event: &Event) -> SseEvent {
    let data = event.encoded(|change| encode(change, event.venture.clone()));
    SseEvent::default().id(event.id.to_string()).event(kind(&event.change)).data(data)
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
