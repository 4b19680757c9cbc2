//! A small typed client of the agents' endpoints (`claim`, `heartbeat`, `complete`), used by
//! `mission-control work`, and a plain `send` to any route, used by `mission-control mcp`. It
//! knows the HTTP contract only, never the server's modules.
//!
//! Several base addresses may be given: a request goes to the one that answered last, and
//! moves on to the next only when that one cannot be reached.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

/// How long to wait for a connection before trying the next address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a heartbeat or a report may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much longer than its `waitMs` a long-polling claim may take.
const CLAIM_SLACK: Duration = Duration::from_secs(10);

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
    /// reached, and returns the answer whatever its status. `path` may carry a query. Only a
    /// server that cannot be reached or does not answer in `timeout` is an error
    /// (`Unavailable`).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let first = self.current.load(Ordering::Relaxed);
        let mut last_error = String::new();
        for step in 0..self.urls.len() {
            let index = (first + step) % self.urls.len();
            let mut request = self.http.request(method.clone(), format!("{}{path}", self.urls[index])).timeout(timeout);
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) if error.is_connect() => {
                    last_error = format!("{}: {error}", self.urls[index]);
                    continue;
                }
                Err(error) => return Err(ClientError::Unavailable(format!("{}: {error}", self.urls[index]))),
            };
            self.current.store(index, Ordering::Relaxed);
            let status = response.status();
            let bytes = response
                .bytes()
                .await
                .map_err(|error| ClientError::Unavailable(format!("{}: {error}", self.urls[index])))?;
            return Ok((status, bytes.to_vec()));
        }
        Err(ClientError::Unavailable(last_error))
    }
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
    fn a_heartbeat_answer_without_cancellation_means_carry_on() {
        let answer: HeartbeatAnswer = serde_json::from_str(r#"{"id":"t1","status":"active"}"#).unwrap();
        assert!(!answer.cancel_requested);
        let answer: HeartbeatAnswer = serde_json::from_str(r#"{"cancelRequested":true}"#).unwrap();
        assert!(answer.cancel_requested);
    }
}
