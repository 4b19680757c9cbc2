//! A small typed client of the agents' endpoints (`claim`, `heartbeat`, `complete`), used by
//! `mission-control work`, and a plain `send` to any route, used by `mission-control mcp`. It
//! knows the HTTP contract only, never the server's modules.
//!
//! Several base addresses may be given: a request goes to the one that answered last, and
//! moves on to the next when that one cannot be reached or is a standby (503 `not_leader`).
//! A standby that names the leader sends the request straight there when the leader is one
//! of the addresses; when every address that answers is a standby (an election is under
//! way) the request waits the standby's `Retry-After` and tries again, until its own
//! timeout has passed. A standby acts on nothing, so a request it refused is safe to send
//! again; a request whose answer was lost is never sent again here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

/// How long to wait for a connection before trying the next address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a heartbeat or a report may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much longer than its `waitMs` a long-polling claim may take.
const CLAIM_SLACK: Duration = Duration::from_secs(10);
/// How long to wait for an election when every address is a standby and none says when to
/// retry, and the longest `Retry-After` honoured.
const ELECTION_PAUSE: Duration = Duration::from_secs(1);
const ELECTION_PAUSE_MAX: Duration = Duration::from_secs(5);

/// What can go wrong with a request, in the terms a caller acts on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A 409: the answer's `code` says why (`stale_lease`, `not_holder`, ...).
    #[error("409 {code}: {message}")]
    Conflict { code: String, message: String },
    /// No address answered, or the server answered 503 or another 5xx: worth waiting out.
    #[error("server unavailable: {0}")]
    Unavailable(String),
    /// Any other refusal (400, 401, 404, 413, ...): repeating the request will not help.
    #[error("{status} {code}: {message}")]
    Refused { status: u16, code: String, message: String },
}

impl ClientError {
    /// The lease is surely gone: the task was handed out again, or another agent holds it.
    pub fn lease_is_gone(&self) -> bool {
        matches!(self, ClientError::Conflict { code, .. } if code == "stale_lease" || code == "not_holder")
    }
}

/// `POST /api/tasks/claim`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRequest {
    pub agent_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venture_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub lease_seconds: u32,
    pub wait_ms: u64,
}

/// A claimed task: the fields the worker reads, and the whole answer as the server sent it.
#[derive(Debug, Clone)]
pub struct ClaimedTask {
    pub id: String,
    pub title: String,
    pub venture_id: String,
    /// The fencing token sent back with every heartbeat and report.
    pub attempts: u32,
    /// The task's JSON exactly as the claim answered it.
    pub json: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimedFields {
    id: String,
    title: String,
    venture_id: String,
    attempts: u32,
}

/// `POST /api/tasks/heartbeat`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatRequest {
    pub task_id: String,
    pub agent_id: String,
    pub attempt: u32,
    pub lease_seconds: u32,
}

/// The part of a heartbeat's answer the worker acts on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatAnswer {
    /// An operator asked for the task to stop. Absent (false) on servers without cancellation.
    #[serde(default)]
    pub cancel_requested: bool,
}

/// `POST /api/tasks/complete`: a success report, or with `error` a failure report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub task_id: String,
    pub agent_id: String,
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The error body every refusal carries.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    code: String,
}

/// A standby's refusal: the leader's advertised address when it knows one.
#[derive(Debug, PartialEq, Eq)]
struct NotLeader {
    leader: Option<String>,
}

/// The leader's address as a standby's 503 names it.
#[derive(Deserialize)]
struct NotLeaderBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    leader: Option<String>,
}

/// A client of one server, reachable at one of several addresses.
pub struct Client {
    http: reqwest::Client,
    /// Base addresses without a trailing `/`, in the order given.
    urls: Vec<String>,
    /// The index in `urls` of the address that answered last.
    current: AtomicUsize,
    /// Sent as `Authorization: Bearer` when set.
    token: Option<String>,
}

impl Client {
    pub fn new(urls: &[String], token: Option<String>) -> Result<Client, reqwest::Error> {
        let http = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build()?;
        let urls = urls.iter().map(|url| url.trim_end_matches('/').to_owned()).collect();
        Ok(Client { http, urls, current: AtomicUsize::new(0), token })
    }

    /// The address in use: the one that answered last (the first one before any answer).
    pub fn url(&self) -> &str {
        &self.urls[self.current.load(Ordering::Relaxed) % self.urls.len()]
    }

    /// Claims one task, waiting up to `wait_ms` for one; `None` when nothing was eligible.
    pub async fn claim(&self, request: &ClaimRequest) -> Result<Option<ClaimedTask>, ClientError> {
        let timeout = Duration::from_millis(request.wait_ms) + CLAIM_SLACK;
        let (status, body) = self.post("/api/tasks/claim", request, timeout).await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let fields: ClaimedFields = serde_json::from_slice(&body)
            .map_err(|error| ClientError::Unavailable(format!("a claim answer that is not a task: {error}")))?;
        Ok(Some(ClaimedTask {
            id: fields.id,
            title: fields.title,
            venture_id: fields.venture_id,
            attempts: fields.attempts,
            json: body,
        }))
    }

    /// Extends a held task's lease.
    pub async fn heartbeat(&self, request: &HeartbeatRequest) -> Result<HeartbeatAnswer, ClientError> {
        let (_, body) = self.post("/api/tasks/heartbeat", request, REQUEST_TIMEOUT).await?;
        Ok(serde_json::from_slice(&body).unwrap_or_default())
    }

    /// Reports a held task's outcome.
    pub async fn complete(&self, report: &Report) -> Result<(), ClientError> {
        self.post("/api/tasks/complete", report, REQUEST_TIMEOUT).await.map(drop)
    }

    /// Sends `body` to the address in use, moving on to the next ones while none can be
    /// reached; a 2xx answer is `Ok`, anything else a typed error.
    async fn post(
        &self,
        path: &str,
        body: &impl Serialize,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let (status, body) = self.send(Method::POST, path, Some(body), timeout).await?;
        classify(status, body)
    }

    /// Sends a request to the address in use, moving on to the next ones while none can be
    /// reached or the one reached is a standby, and returns the answer whatever its status.
    /// `path` may carry a query. Only a server that cannot be reached or does not answer in
    /// `timeout` is an error (`Unavailable`); while every address that answers is a standby
    /// the request is retried until `timeout` has passed, then the last standby's 503 is the
    /// answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut index = self.current.load(Ordering::Relaxed) % self.urls.len();
        // Per pass over the addresses: the ones tried, and the standbys' last refusal.
        let mut tried = vec![false; self.urls.len()];
        let mut last_error = String::new();
        let mut standby_answer: Option<(StatusCode, Vec<u8>, Duration)> = None;
        loop {
            tried[index] = true;
            let url = &self.urls[index];
            let mut request = self.http.request(method.clone(), format!("{url}{path}")).timeout(timeout);
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let mut leader = None;
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let pause = retry_after(response.headers());
                    let bytes = response
                        .bytes()
                        .await
                        .map_err(|error| ClientError::Unavailable(format!("{url}: {error}")))?
                        .to_vec();
                    match not_leader(status, &bytes) {
                        None => {
                            self.current.store(index, Ordering::Relaxed);
                            return Ok((status, bytes));
                        }
                        Some(refusal) => {
                            leader = refusal.leader;
                            standby_answer = Some((status, bytes, pause));
                        }
                    }
                }
                Err(error) if error.is_connect() => last_error = format!("{url}: {error}"),
                Err(error) => return Err(ClientError::Unavailable(format!("{url}: {error}"))),
            }
            if let Some(next) = next_address(&self.urls, index, leader.as_deref(), &tried) {
                index = next;
                continue;
            }
            // Every address was tried in this pass. None answering is the caller's to wait out;
            // only standbys answering is an election, waited out here while time remains.
            let Some((status, bytes, pause)) = standby_answer.take() else {
                return Err(ClientError::Unavailable(last_error));
            };
            if tokio::time::Instant::now() + pause >= deadline {
                return Ok((status, bytes));
            }
            tokio::time::sleep(pause).await;
            tried.fill(false);
            index = (index + 1) % self.urls.len();
        }
    }
}

/// `Some` when an answer is a standby's refusal (503 with code `not_leader`): nothing was
/// done, and the request may go elsewhere.
fn not_leader(status: StatusCode, body: &[u8]) -> Option<NotLeader> {
    if status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let body: NotLeaderBody = serde_json::from_slice(body).ok()?;
    (body.code == "not_leader").then_some(NotLeader { leader: body.leader })
}

/// How long a standby asks to wait (`Retry-After` in seconds), within bounds.
fn retry_after(headers: &HeaderMap) -> Duration {
    headers
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map_or(ELECTION_PAUSE, |seconds| {
            Duration::from_secs(seconds).clamp(Duration::from_millis(100), ELECTION_PAUSE_MAX)
        })
}

/// Where a request goes after `from` failed or refused it: the leader a standby named when
/// it is one of `urls` and not yet tried in this pass, else the next address not yet tried,
/// in order; `None` when all were tried.
fn next_address(urls: &[String], from: usize, leader: Option<&str>, tried: &[bool]) -> Option<usize> {
    let named =
        leader.map(|leader| leader.trim_end_matches('/')).and_then(|leader| urls.iter().position(|url| url == leader));
    if let Some(index) = named.filter(|&index| !tried[index]) {
        return Some(index);
    }
    (1..urls.len()).map(|step| (from + step) % urls.len()).find(|&index| !tried[index])
}

/// A 2xx is the answer; anything else becomes the `ClientError` a caller acts on.
fn classify(status: StatusCode, body: Vec<u8>) -> Result<(StatusCode, Vec<u8>), ClientError> {
    if status.is_success() {
        return Ok((status, body));
    }
    let ErrorBody { error, code } = serde_json::from_slice(&body)
        .unwrap_or_else(|_| ErrorBody { error: String::from_utf8_lossy(&body).into_owned(), code: String::new() });
    if status == StatusCode::CONFLICT {
        Err(ClientError::Conflict { code, message: error })
    } else if status.is_server_error() {
        Err(ClientError::Unavailable(format!("{status}: {error}")))
    } else {
        Err(ClientError::Refused { status: status.as_u16(), code, message: error })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_what_a_caller_does_next() {
        let conflict = br#"{"error":"attempt 1 is stale","code":"stale_lease"}"#.to_vec();
        let error = classify(StatusCode::CONFLICT, conflict).unwrap_err();
        assert!(error.lease_is_gone(), "{error}");
        let transition = br#"{"error":"no","code":"invalid_transition"}"#.to_vec();
        assert!(!classify(StatusCode::CONFLICT, transition).unwrap_err().lease_is_gone());
        assert!(matches!(classify(StatusCode::SERVICE_UNAVAILABLE, b"{}".to_vec()), Err(ClientError::Unavailable(_))));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, b"not json".to_vec()),
            Err(ClientError::Refused { status: 401, .. })
        ));
        assert!(classify(StatusCode::NO_CONTENT, Vec::new()).is_ok());
    }

    #[test]
    fn a_standby_refusal_is_told_apart_from_other_unavailability() {
        let named = br#"{"error":"standby","code":"not_leader","leader":"http://127.0.0.1:3942"}"#;
        assert_eq!(
            not_leader(StatusCode::SERVICE_UNAVAILABLE, named),
            Some(NotLeader { leader: Some("http://127.0.0.1:3942".into()) })
        );
        let election = br#"{"error":"standby","code":"not_leader","leader":null}"#;
        assert_eq!(not_leader(StatusCode::SERVICE_UNAVAILABLE, election), Some(NotLeader { leader: None }));
        let overloaded = br#"{"error":"busy","code":"overloaded"}"#;
        assert_eq!(not_leader(StatusCode::SERVICE_UNAVAILABLE, overloaded), None);
        assert_eq!(not_leader(StatusCode::SERVICE_UNAVAILABLE, b"not json"), None);
        assert_eq!(not_leader(StatusCode::CONFLICT, named), None);
    }

    #[test]
    fn a_standby_sends_the_request_to_the_leader_it_names_when_the_client_knows_it() {
        let urls: Vec<String> = ["http://a:1", "http://b:2", "http://c:3"].map(String::from).into();
        let fresh = [true, false, false];
        // The leader named, with or without a trailing slash.
        assert_eq!(next_address(&urls, 0, Some("http://c:3/"), &fresh), Some(2));
        assert_eq!(next_address(&urls, 0, Some("http://c:3"), &fresh), Some(2));
        // A leader the client does not know, or none: the next address in order.
        assert_eq!(next_address(&urls, 0, Some("http://elsewhere:9"), &fresh), Some(1));
        assert_eq!(next_address(&urls, 0, None, &fresh), Some(1));
        // A named leader already tried in this pass is not tried again at once.
        assert_eq!(next_address(&urls, 1, Some("http://a:1"), &[true, true, false]), Some(2));
        // Wrapping round, and nothing left.
        assert_eq!(next_address(&urls, 2, None, &[false, true, true]), Some(0));
        assert_eq!(next_address(&urls, 2, Some("http://a:1"), &[true, true, true]), None);
        assert_eq!(next_address(&urls[..1], 0, None, &[true]), None);
    }

    #[test]
    fn retry_after_is_read_in_seconds_within_bounds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), ELECTION_PAUSE);
        headers.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Duration::from_secs(2));
        headers.insert(RETRY_AFTER, "3600".parse().unwrap());
        assert_eq!(retry_after(&headers), ELECTION_PAUSE_MAX);
        headers.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), ELECTION_PAUSE);
    }

    #[test]
    fn a_heartbeat_answer_without_cancellation_means_carry_on() {
        let answer: HeartbeatAnswer = serde_json::from_str(r#"{"id":"t1","status":"active"}"#).unwrap();
        assert!(!answer.cancel_requested);
        let answer: HeartbeatAnswer = serde_json::from_str(r#"{"cancelRequested":true}"#).unwrap();
        assert!(answer.cancel_requested);
    }
}
