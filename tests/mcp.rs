//! The MCP tools: over streamable HTTP at `/mcp` and over standard input and output
//! (`mission-control mcp`), with rmcp's client and with the Python SDK's.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestServer, BIN};
use reqwest::StatusCode;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

type Client = RunningService<RoleClient, ()>;

/// The tools and the arguments each one declares.
const TOOLS: &[(&str, &[&str])] = &[
    ("claim_task", &["agentId", "ventureId", "tags", "waitMs", "leaseSeconds"]),
    ("heartbeat", &["taskId", "agentId", "attempt"]),
    ("complete_task", &["taskId", "agentId", "attempt", "output", "actualCost", "tokensUsed"]),
    ("fail_task", &["taskId", "agentId", "attempt", "error"]),
    ("create_task", &["title", "ventureId", "description", "priority", "estimatedCost", "tags", "dependsOn"]),
    ("cancel_task", &["taskId", "reason"]),
    ("get_task", &["taskId"]),
    ("list_tasks", &["status", "ventureId", "limit"]),
    ("list_ventures", &[]),
];

async fn http_client(server: &TestServer, token: Option<&str>) -> Client {
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", server.base));
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    ().serve(StreamableHttpClientTransport::from_config(config)).await.expect("an MCP session over HTTP")
}

/// Calls a tool; returns whether the result is an error, and its text read as JSON (or as
/// a string when it is not JSON).
async fn call(client: &Client, tool: &str, args: Value) -> (bool, Value) {
    let Value::Object(args) = args else { panic!("arguments must be an object") };
    let result: CallToolResult = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
        .await
        .unwrap_or_else(|error| panic!("{tool}: a protocol error instead of a result: {error}"));
    let text = result.content.first().and_then(|c| c.as_text()).map(|t| t.text.clone()).unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (result.is_error == Some(true), value)
}

/// A result that must not be an error.
async fn ok(client: &Client, tool: &str, args: Value) -> Value {
    let (is_error, value) = call(client, tool, args.clone()).await;
    assert!(!is_error, "{tool} {args}: {value}");
    value
}

async fn new_venture(server: &TestServer, name: &str) -> String {
    let (status, venture) = server.post("/api/ventures", json!({ "name": name })).await;
    assert_eq!(status, StatusCode::CREATED, "{venture}");
    venture["id"].as_str().unwrap().to_owned()
}

async fn assert_tools(client: &Client) {
    let tools = client.list_all_tools().await.expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = TOOLS.iter().map(|(name, _)| *name).collect();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for (name, properties) in TOOLS {
        let tool = tools.iter().find(|t| t.name == *name).unwrap();
        assert!(tool.description.as_deref().is_some_and(|d| d.len() > 40), "{name} has no description");
        assert_eq!(tool.input_schema.get("type"), Some(&json!("object")), "{name}");
        let declared = tool.input_schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        let mut declared: Vec<&str> = declared.keys().map(String::as_str).collect();
        declared.sort_unstable();
        let mut listed = properties.to_vec();
        listed.sort_unstable();
        assert_eq!(declared, listed, "{name}'s input schema");
    }
    let claim = tools.iter().find(|t| t.name == "claim_task").unwrap();
    assert!(claim.description.as_deref().unwrap().contains("heartbeat every third"), "{claim:?}");
    let fail = tools.iter().find(|t| t.name == "fail_task").unwrap();
    assert_eq!(fail.input_schema.get("required"), Some(&json!(["taskId", "error"])));
}

#[tokio::test(flavor = "multi_thread")]
async fn http_lists_the_tools_with_descriptions_and_input_schemas() {
    let server = TestServer::start();
    let client = http_client(&server, None).await;
    assert_tools(&client).await;
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn http_create_claim_heartbeat_complete_round_trip() {
    let server = TestServer::start();
    let client = http_client(&server, None).await;
    let venture = new_venture(&server, "mcp").await;

    let created = ok(
        &client,
        "create_task",
        json!({"title": "write the report", "ventureId": venture, "priority": "high", "estimatedCost": 2.5, "tags": ["docs"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!((created["status"].as_str(), created["tags"].as_str()), (Some("queue"), Some("[\"docs\"]")));

    let claimed = ok(&client, "claim_task", json!({"agentId": "a1", "ventureId": venture, "leaseSeconds": 60})).await;
    assert_eq!(claimed["id"], id.as_str());
    assert_eq!((claimed["status"].as_str(), claimed["assignedTo"].as_str()), (Some("active"), Some("a1")));
    let attempt = claimed["attempts"].as_u64().unwrap();

    let beat = ok(&client, "heartbeat", json!({"taskId": id, "agentId": "a1", "attempt": attempt})).await;
    assert_eq!(beat["status"], "active");

    let ventures = ok(&client, "list_ventures", json!({})).await;
    let mine = ventures.as_array().unwrap().iter().find(|v| v["id"] == venture.as_str()).unwrap();
    assert_eq!(mine["budgetLeft"], Value::Null, "no budget: {mine}");

    let done = ok(
        &client,
        "complete_task",
        json!({"taskId": id, "agentId": "a1", "attempt": attempt, "output": "done", "actualCost": 2, "tokensUsed": 300}),
    )
    .await;
    assert_eq!((done["status"].as_str(), done["output"].as_str()), (Some("completed"), Some("done")));
    assert_eq!(server.ok(&format!("/api/tasks/{id}")).await["status"], "completed");

    let got = ok(&client, "get_task", json!({"taskId": id})).await;
    assert_eq!((got["id"].as_str(), got["actualCost"].as_f64()), (Some(id.as_str()), Some(2.0)));
    let listed = ok(&client, "list_tasks", json!({"status": "completed", "ventureId": venture})).await;
    assert_eq!(
        listed,
        json!([{
            "id": id, "title": "write the report", "status": "completed", "priority": "high", "ventureId": venture,
            "attempts": 1, "assignedTo": "a1", "blockedBy": []
        }])
    );

    // Nothing left: a claim answers that, and is no error.
    let (is_error, nothing) = call(&client, "claim_task", json!({"agentId": "a1", "ventureId": venture})).await;
    assert!(!is_error && nothing.as_str().unwrap().contains("No task"), "{nothing}");

    // fail_task and cancel_task on fresh tasks.
    let second = ok(&client, "create_task", json!({"title": "t2", "ventureId": venture})).await;
    let third = ok(&client, "create_task", json!({"title": "t3", "ventureId": venture})).await;
    let claimed = ok(&client, "claim_task", json!({"agentId": "a1", "ventureId": venture})).await;
    assert_eq!(claimed["id"], second["id"]);
    let failed = ok(&client, "fail_task", json!({"taskId": second["id"], "agentId": "a1", "error": "no access"})).await;
    assert_eq!((failed["status"].as_str(), failed["error"].as_str()), (Some("queue"), Some("no access")));
    let cancelled = ok(&client, "cancel_task", json!({"taskId": third["id"], "reason": "not needed"})).await;
    assert_eq!(cancelled["status"], "cancelled");
    let limited = ok(&client, "list_tasks", json!({})).await;
    assert!(limited.as_array().unwrap().len() <= 20, "limit defaults to 20");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn http_refusals_are_error_results_with_the_api_message() {
    let server = TestServer::start();
    let client = http_client(&server, None).await;
    let venture = new_venture(&server, "mcp").await;
    let task = ok(&client, "create_task", json!({"title": "held by nobody", "ventureId": venture})).await;

    // 409: completing a task the agent does not hold. The same request to the API gives
    // the same status, message and code.
    let report = json!({"taskId": task["id"], "agentId": "a1", "output": "x"});
    let (is_error, refusal) = call(&client, "complete_task", report.clone()).await;
    let (status, api) = server.post("/api/tasks/complete", report).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(is_error, "{refusal}");
    assert_eq!(
        (refusal["status"].as_u64(), &refusal["error"], &refusal["code"]),
        (Some(409), &api["error"], &api["code"])
    );

    // 404 and 400 likewise; over HTTP there is no default agent, so a claim without one is
    // the API's own 400.
    let (is_error, missing) = call(&client, "get_task", json!({"taskId": "no-such-task"})).await;
    assert!(is_error && missing["status"] == 404, "{missing}");
    let (is_error, no_agent) = call(&client, "claim_task", json!({})).await;
    assert!(is_error && no_agent["status"] == 400 && no_agent["field"] == "agentId", "{no_agent}");
    let (is_error, bad) =
        call(&client, "create_task", json!({"title": "x", "ventureId": venture, "priority": "urgent"})).await;
    assert!(is_error && bad["status"] == 400 && bad["field"] == "priority", "{bad}");
    let (is_error, _) = call(&client, "fail_task", json!({"taskId": task["id"], "agentId": "a1"})).await;
    assert!(is_error, "fail_task without an error is refused");
    assert_eq!(server.ok(&format!("/api/tasks/{}", task["id"].as_str().unwrap())).await["status"], "queue");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn http_mcp_takes_the_api_token() {
    let server = TestServer::start_with(&["--api-token", "s3cret"]);
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    for token in [None, Some("wrong")] {
        let mut request = server
            .client
            .post(format!("{}/mcp", server.base))
            .header("Accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "token {token:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized", "{body}");
    }

    let client = http_client(&server, Some("s3cret")).await;
    assert_tools(&client).await;
    let ventures = ok(&client, "list_ventures", json!({})).await;
    assert!(!ventures.as_array().unwrap().is_empty(), "{ventures}");
    let claimed = ok(&client, "claim_task", json!({"agentId": "a1"})).await;
    assert_eq!(claimed["assignedTo"], "a1");
    client.cancel().await.unwrap();
}

/// Times `claim_task` round trips over HTTP (each a tools/call whose tool claims in-process)
/// and prints the median.
#[tokio::test(flavor = "multi_thread")]
async fn http_claim_round_trip_time() {
    let server = TestServer::start();
    let client = http_client(&server, None).await;
    let venture = new_venture(&server, "timing").await;
    let mut times = Vec::new();
    for i in 0..40 {
        let (status, task) = server.post("/api/tasks", json!({"title": format!("t{i}"), "ventureId": venture})).await;
        assert_eq!(status, StatusCode::CREATED);
        let started = Instant::now();
        let claimed = ok(&client, "claim_task", json!({"agentId": "timer", "ventureId": venture})).await;
        times.push(started.elapsed());
        assert_eq!(claimed["id"], task["id"]);
        let report = json!({"taskId": task["id"], "agentId": "timer"});
        assert_eq!(server.post("/api/tasks/complete", report).await.0, StatusCode::OK);
    }
    times.sort_unstable();
    let median = times[times.len() / 2];
    println!(
        "claim_task over HTTP: median {median:?} over {} round trips (min {:?}, max {:?})",
        times.len(),
        times[0],
        times[times.len() - 1]
    );
    assert!(median < Duration::from_secs(1), "median {median:?}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_claims_as_the_configured_agent() {
    let server = TestServer::start();
    let base = server.base.clone();
    let transport = TokioChildProcess::new(tokio::process::Command::new(BIN).configure(|command| {
        command.args(["mcp", "--url", &base, "--agent-id", "a1"]).env_remove("MC_API_TOKEN");
    }))
    .expect("spawn mission-control mcp");
    let client = ().serve(transport).await.expect("an MCP session over stdio");
    assert_tools(&client).await;
    let claimed = ok(&client, "claim_task", json!({})).await;
    assert_eq!((claimed["status"].as_str(), claimed["assignedTo"].as_str()), (Some("active"), Some("a1")));
    let id = claimed["id"].as_str().unwrap().to_owned();
    let beat = ok(&client, "heartbeat", json!({"taskId": id, "attempt": claimed["attempts"]})).await;
    assert_eq!(beat["assignedTo"], "a1");
    // A refusal from the remote API is an error result too.
    let (is_error, stale) = call(&client, "complete_task", json!({"taskId": id, "attempt": 99})).await;
    assert!(is_error && stale["code"] == "stale_lease", "{stale}");
    let done = ok(&client, "complete_task", json!({"taskId": id, "output": "ok"})).await;
    assert_eq!(done["status"], "completed");
    client.cancel().await.unwrap();
}

/// The pinned Python SDK, in a virtual environment under `target/`.
const PYTHON_MCP: &str = "mcp==2.3.0";

/// The venv's python with the Python MCP SDK, or why it is unavailable.
fn python_with_mcp() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/mcp-venv");
    let python = venv.join("bin/python");
    let has_sdk = |python: &Path| {
        Command::new(python)
            .args(["-c", "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != sys.argv[1])"])
            .arg(PYTHON_MCP.trim_start_matches("mcp=="))
            .status()
            .is_ok_and(|status| status.success())
    };
    if has_sdk(&python) {
        return Ok(python);
    }
    let status = Command::new("python3").arg("-m").arg("venv").arg(&venv).status();
    if !status.as_ref().is_ok_and(|s| s.success()) {
        return Err(format!("python3 -m venv failed ({status:?})"));
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", PYTHON_MCP])
        .status();
    if !status.as_ref().is_ok_and(|s| s.success()) {
        return Err(format!("pip install {PYTHON_MCP} failed ({status:?})"));
    }
    if has_sdk(&python) {
        Ok(python)
    } else {
        Err(format!("{PYTHON_MCP} is not importable after installing it"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_works_with_the_python_sdk() {
    let python = match tokio::task::spawn_blocking(python_with_mcp).await.unwrap() {
        Ok(python) => python,
        Err(why) if std::env::var_os("MC_REQUIRE_PYTHON_MCP").is_some_and(|v| v == "1") => {
            panic!("MC_REQUIRE_PYTHON_MCP=1 but the Python MCP SDK is unavailable: {why}")
        }
        Err(why) => {
            eprintln!(
                "SKIPPED: the Python MCP SDK is unavailable ({why}); set MC_REQUIRE_PYTHON_MCP=1 to fail instead"
            );
            return;
        }
    };
    let server = TestServer::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .args([BIN, &server.base, "py-agent"])
        .env_remove("MC_API_TOKEN")
        .output()
        .await
        .expect("run tests/mcp_client.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let claimed: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the claim as JSON");
    assert_eq!((claimed["status"].as_str(), claimed["assignedTo"].as_str()), (Some("active"), Some("py-agent")));
    let id = claimed["id"].as_str().unwrap();
    assert_eq!(server.ok(&format!("/api/tasks/{id}")).await["assignedTo"], "py-agent");
}
