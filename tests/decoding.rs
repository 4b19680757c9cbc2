//! Request decoding under arbitrary input: random bytes and random JSON sent to every
//! writing endpoint never get a 5xx, always get a JSON error when refused, and never
//! change state when refused.
//!
//! The requests go through the real router, scheduler and SQLite file in process (tower's
//! `oneshot`, no sockets), so thousands of cases take seconds.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use clap::Parser;
use mission_control::config::Cli;
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;

struct App {
    router: axum::Router,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    _running: mission_control::server::Running,
}

impl App {
    fn start() -> App {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("fuzz.db");
        let cli =
            Cli::try_parse_from(["mission-control", "--db", db.to_str().unwrap(), "--max-pending", "1000000"]).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let running = runtime.block_on(async { mission_control::server::start(&cli.serve, cli.serve.addr) }).unwrap();
        let router = running.router();
        App { router, runtime, _dir: dir, _running: running }
    }

    fn call(&self, method: Method, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            (status, bytes.to_vec())
        })
    }

    /// Everything a client can see of the live state.
    fn state(&self) -> Value {
        let mut all = serde_json::Map::new();
        for path in ["/api/ventures", "/api/tasks", "/api/agents"] {
            let (status, body) = self.call(Method::GET, path, Vec::new());
            assert_eq!(status, StatusCode::OK);
            all.insert(path.into(), serde_json::from_slice(&body).unwrap());
        }
        Value::Object(all)
    }
}

const TARGETS: &[(&str, &str)] = &[
    ("POST", "/api/tasks"),
    ("PATCH", "/api/tasks"),
    ("PATCH", "/api/tasks/clxyz124"),
    ("DELETE", "/api/tasks"),
    ("POST", "/api/tasks/claim"),
    ("POST", "/api/tasks/complete"),
    ("POST", "/api/tasks/heartbeat"),
    ("POST", "/api/ventures"),
    ("PATCH", "/api/ventures/clxyz-allbirds"),
    ("POST", "/api/agents"),
    ("PATCH", "/api/agents/agent-main"),
    ("POST", "/api/activities"),
];

/// Field names the endpoints read, so random objects reach the validation of each.
const FIELDS: &[&str] = &[
    "id",
    "title",
    "name",
    "description",
    "ventureId",
    "taskId",
    "agentId",
    "agentName",
    "priority",
    "status",
    "estimatedCost",
    "actualCost",
    "capitalBudget",
    "capitalSpent",
    "tags",
    "maxAttempts",
    "attempt",
    "leaseSeconds",
    "waitMs",
    "output",
    "error",
    "tokensUsed",
    "maxTokens",
    "sessionsCount",
    "model",
    "icon",
    "type",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON numbers are finite", |x| x.is_finite()).prop_map(Value::from),
        prop_oneof![
            Just("high".to_owned()),
            Just("queue".to_owned()),
            Just("active".to_owned()),
            Just("clxyz123".to_owned()),
            Just("clxyz-allbirds".to_owned()),
            Just("agent-main".to_owned()),
            Just("[\"a\"]".to_owned()),
            ".{0,12}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object built from the endpoints' own field names with random values.
fn request_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(prop::sample::select(FIELDS), json_value(), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        request_object().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        request_object().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]
}

fn check(
    app: &App,
    baseline: &std::cell::RefCell<Value>,
    method: &str,
    uri: &str,
    body: Vec<u8>,
) -> Result<(), TestCaseError> {
    let (status, reply) = app.call(Method::from_bytes(method.as_bytes()).unwrap(), uri, body.clone());
    let shown = String::from_utf8_lossy(&body);
    prop_assert!(!status.is_server_error(), "{method} {uri} {shown} -> {status}");
    if status.is_success() {
        *baseline.borrow_mut() = app.state();
        return Ok(());
    }
    let error: Value =
        serde_json::from_slice(&reply).map_err(|_| TestCaseError::fail(format!("{status}: not JSON")))?;
    prop_assert!(error["error"].is_string() && error["code"].is_string(), "{method} {uri} {shown} -> {status} {error}");
    prop_assert_eq!(
        &app.state(),
        &*baseline.borrow(),
        "{} {} {} was refused ({}) but changed state",
        method,
        uri,
        shown,
        status
    );
    Ok(())
}

/// `MC_FUZZ_CASES` runs a longer hunt than the suite's default.
fn cases(default: u32) -> u32 {
    std::env::var("MC_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

#[test]
fn arbitrary_bodies_never_crash_and_refusals_change_nothing() {
    let app = App::start();
    let baseline = std::cell::RefCell::new(app.state());
    let config = ProptestConfig { cases: cases(1500), failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(target in prop::sample::select(TARGETS), body in body())| {
        check(&app, &baseline, target.0, target.1, body)?;
    });
}

#[test]
fn arbitrary_query_strings_never_crash() {
    let app = App::start();
    let baseline = std::cell::RefCell::new(app.state());
    let config = ProptestConfig { cases: cases(500), failure_persistence: None, ..ProptestConfig::default() };
    const PATHS: &[&str] = &["/api/tasks", "/api/activities", "/api/events", "/api/tasks/clxyz123"];
    proptest!(config, |(path in prop::sample::select(PATHS), key in prop::sample::select(FIELDS), raw in "[a-zA-Z0-9%&=+-]{0,24}")| {
        let uri = format!("{path}?{key}={raw}&{raw}");
        if path == "/api/events" {
            // A stream that opens stays open: only check that a bad id is refused cleanly.
            let (status, _) = app.call(Method::GET, &format!("{path}?lastEventId=x{raw}"), Vec::new());
            prop_assert!(status == StatusCode::BAD_REQUEST, "{}", status);
            return Ok(());
        }
        check(&app, &baseline, "GET", &uri, Vec::new())?;
    });
    // Sanity: the app still works.
    let (status, _) =
        app.call(Method::POST, "/api/tasks/claim", serde_json::to_vec(&json!({"agentId": "after"})).unwrap());
    assert_eq!(status, StatusCode::OK);
}
