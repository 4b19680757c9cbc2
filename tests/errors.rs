//! Every bad request gets a clear JSON error with the right status and changes nothing.

mod common;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// One bad request and what it must answer: status, `code`, and `field` when one is at fault.
struct Case {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn case(
    method: Method,
    path: &'static str,
    body: Option<Value>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case { method, path, body, status, code, field }
}

fn post(path: &'static str, body: Value, status: u16, code: &'static str, field: Option<&'static str>) -> Case {
    case(Method::POST, path, Some(body), status, code, field)
}

fn patch(path: &'static str, body: Value, status: u16, code: &'static str, field: Option<&'static str>) -> Case {
    case(Method::PATCH, path, Some(body), status, code, field)
}

async fn check_all(server: &TestServer, cases: Vec<Case>) {
    let before = server.state().await;
    for c in cases {
        let (status, body) = server.call(c.method.clone(), c.path, c.body.clone()).await;
        let label = format!("{} {} {:?}", c.method, c.path, c.body);
        assert_eq!(status.as_u16(), c.status, "{label}: {body}");
        assert_eq!(body["code"], c.code, "{label}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.len() > 10), "{label}: no sentence in {body}");
        assert_eq!(body["field"].as_str(), c.field, "{label}: {body}");
    }
    assert_eq!(server.state().await, before, "a refused request changed state");
}

#[tokio::test(flavor = "multi_thread")]
async fn validation_errors_name_their_field_and_change_nothing() {
    let server = TestServer::start();
    let long = "x".repeat(1001);
    let huge = "x".repeat(256 * 1024 + 1);
    check_all(
        &server,
        vec![
            post("/api/tasks", json!({"ventureId": "clxyz-allbirds"}), 400, "missing_field", Some("title")),
            post("/api/tasks", json!({"title": "t"}), 400, "missing_field", Some("ventureId")),
            post(
                "/api/tasks",
                json!({"title": 5, "ventureId": "clxyz-allbirds"}),
                400,
                "validation_error",
                Some("title"),
            ),
            post(
                "/api/tasks",
                json!({"title": "  ", "ventureId": "clxyz-allbirds"}),
                400,
                "validation_error",
                Some("title"),
            ),
            post(
                "/api/tasks",
                json!({"title": long, "ventureId": "clxyz-allbirds"}),
                400,
                "validation_error",
                Some("title"),
            ),
            post(
                "/api/tasks",
                json!({"title": "t", "description": huge, "ventureId": "clxyz-allbirds"}),
                400,
                "validation_error",
                Some("description"),
            ),
            post(
                "/api/tasks",
                json!({"title": "t", "ventureId": "clxyz-allbirds", "priority": "urgent"}),
                400,
                "validation_error",
                Some("priority"),
            ),
            post(
                "/api/tasks",
                json!({"title": "t", "ventureId": "clxyz-allbirds", "estimatedCost": -1}),
                400,
                "validation_error",
                Some("estimatedCost"),
            ),
            post(
                "/api/tasks",
                json!({"title": "t", "ventureId": "clxyz-allbirds", "estimatedCost": "5"}),
                400,
                "validation_error",
                Some("estimatedCost"),
            ),
            post(
                "/api/tasks",
                json!({"title": "t", "ventureId": "clxyz-allbirds", "maxAttempts": 0}),
                400,
                "validation_error",
                Some("maxAttempts"),
            ),
            post(
                "/api/tasks",
                json!({"title": "t", "ventureId": "clxyz-allbirds", "tags": "scraping"}),
                400,
                "validation_error",
                Some("tags"),
            ),
            post(
                "/api/tasks",
                json!({"title": "t", "ventureId": "clxyz-allbirds", "tags": [1, 2]}),
                400,
                "validation_error",
                Some("tags"),
            ),
            post(
                "/api/tasks",
                json!({"title": "t", "ventureId": "clxyz-allbirds", "tags": {"a": 1}}),
                400,
                "validation_error",
                Some("tags"),
            ),
            post("/api/tasks", json!({"title": "t", "ventureId": "nope"}), 404, "not_found", Some("ventureId")),
            post(
                "/api/tasks",
                json!({"id": "clxyz123", "title": "t", "ventureId": "clxyz-allbirds"}),
                409,
                "already_exists",
                Some("id"),
            ),
            post("/api/ventures", json!({}), 400, "missing_field", Some("name")),
            post("/api/ventures", json!({"name": "v", "status": "sleeping"}), 400, "validation_error", Some("status")),
            post(
                "/api/ventures",
                json!({"name": "v", "capitalBudget": -5}),
                400,
                "validation_error",
                Some("capitalBudget"),
            ),
            post("/api/ventures", json!({"name": "v", "icon": long}), 400, "validation_error", Some("icon")),
            post("/api/agents", json!({"id": "new-agent"}), 400, "validation_error", Some("name")),
            post(
                "/api/agents",
                json!({"id": "agent-main", "tokensUsed": -3}),
                400,
                "validation_error",
                Some("tokensUsed"),
            ),
            post(
                "/api/agents",
                json!({"id": "agent-main", "maxTokens": 1.5}),
                400,
                "validation_error",
                Some("maxTokens"),
            ),
            post(
                "/api/agents",
                json!({"id": "agent-main", "status": "asleep"}),
                400,
                "validation_error",
                Some("status"),
            ),
            post("/api/agents", json!({"id": "agent-main", "model": long}), 400, "validation_error", Some("model")),
            post("/api/activities", json!({}), 400, "missing_field", Some("title")),
            post("/api/activities", json!({"title": "t", "type": long}), 400, "validation_error", Some("type")),
            post("/api/activities", json!({"title": "t", "taskId": "nope"}), 404, "not_found", Some("taskId")),
            post("/api/activities", json!({"title": "t", "ventureId": "nope"}), 404, "not_found", Some("ventureId")),
            post("/api/activities", json!({"title": "t", "agentId": "nope"}), 404, "not_found", Some("agentId")),
            post("/api/activities", json!({"id": "clxyz-activity-1", "title": "t"}), 409, "already_exists", Some("id")),
            post("/api/tasks/claim", json!({}), 400, "missing_field", Some("agentId")),
            post("/api/tasks/claim", json!({"agentId": 7}), 400, "validation_error", Some("agentId")),
            post(
                "/api/tasks/claim",
                json!({"agentId": "a", "agentName": long}),
                400,
                "validation_error",
                Some("agentName"),
            ),
            post("/api/tasks/claim", json!({"agentId": "a", "waitMs": 30001}), 400, "validation_error", Some("waitMs")),
            post("/api/tasks/claim", json!({"agentId": "a", "waitMs": -1}), 400, "validation_error", Some("waitMs")),
            post(
                "/api/tasks/claim",
                json!({"agentId": "a", "leaseSeconds": 0}),
                400,
                "validation_error",
                Some("leaseSeconds"),
            ),
            post(
                "/api/tasks/claim",
                json!({"agentId": "a", "leaseSeconds": 86401}),
                400,
                "validation_error",
                Some("leaseSeconds"),
            ),
            post("/api/tasks/claim", json!({"agentId": "a", "tags": 3}), 400, "validation_error", Some("tags")),
            post("/api/tasks/claim", json!({"agentId": "a", "ventureId": "nope"}), 404, "not_found", Some("ventureId")),
            post("/api/tasks/complete", json!({"agentId": "a"}), 400, "missing_field", Some("taskId")),
            post("/api/tasks/complete", json!({"taskId": "clxyz123"}), 400, "missing_field", Some("agentId")),
            post(
                "/api/tasks/complete",
                json!({"taskId": "clxyz123", "agentId": "a", "actualCost": -1}),
                400,
                "validation_error",
                Some("actualCost"),
            ),
            post(
                "/api/tasks/complete",
                json!({"taskId": "clxyz123", "agentId": "a", "tokensUsed": "many"}),
                400,
                "validation_error",
                Some("tokensUsed"),
            ),
            post("/api/tasks/complete", json!({"taskId": "nope", "agentId": "a"}), 404, "not_found", Some("taskId")),
            post(
                "/api/tasks/complete",
                json!({"taskId": "clxyz123", "agentId": "agent-main"}),
                409,
                "not_holder",
                None,
            ),
            post(
                "/api/tasks/heartbeat",
                json!({"taskId": "clxyz123", "agentId": "agent-main"}),
                409,
                "not_holder",
                None,
            ),
            post(
                "/api/tasks/heartbeat",
                json!({"taskId": "nope", "agentId": "agent-main"}),
                404,
                "not_found",
                Some("taskId"),
            ),
            patch("/api/tasks", json!({"title": "no id"}), 400, "missing_field", Some("id")),
            patch("/api/tasks/nope", json!({"title": "x"}), 404, "not_found", None),
            patch("/api/tasks/clxyz123", json!({"status": "done"}), 400, "validation_error", Some("status")),
            patch("/api/tasks/clxyz123", json!({"status": "active"}), 409, "invalid_transition", Some("status")),
            patch("/api/tasks/clxyz123", json!({"maxAttempts": -2}), 400, "validation_error", Some("maxAttempts")),
            patch("/api/ventures/nope", json!({"name": "x"}), 404, "not_found", None),
            patch("/api/agents/nope", json!({"name": "x"}), 404, "not_found", None),
            case(Method::DELETE, "/api/tasks", None, 400, "missing_field", Some("id")),
            case(Method::DELETE, "/api/tasks?id=nope", None, 404, "not_found", None),
            case(Method::DELETE, "/api/ventures/nope", None, 404, "not_found", None),
            case(Method::DELETE, "/api/agents/nope", None, 404, "not_found", None),
            case(Method::GET, "/api/tasks/nope", None, 404, "not_found", None),
            case(Method::GET, "/api/activities/nope", None, 404, "not_found", None),
            case(Method::GET, "/api/tasks?status=bogus", None, 400, "validation_error", Some("status")),
            case(Method::GET, "/api/tasks?limit=0", None, 400, "validation_error", Some("limit")),
            case(Method::GET, "/api/tasks?offset=-1", None, 400, "validation_error", Some("offset")),
            case(Method::GET, "/api/activities?limit=1001", None, 400, "validation_error", Some("limit")),
            case(Method::GET, "/api/nowhere", None, 404, "route_not_found", None),
            case(Method::PUT, "/api/tasks", None, 405, "method_not_allowed", None),
            case(Method::GET, "/api/tasks/claim", None, 405, "method_not_allowed", None),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_bodies_are_refused() {
    let server = TestServer::start();
    let before = server.state().await;
    let send = |body: Vec<u8>| {
        server
            .client
            .post(format!("{}/api/tasks", server.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, status, code) in [
        (b"{not json".to_vec(), 400, "malformed_json"),
        (b"[1,2]".to_vec(), 400, "malformed_json"),
        (b"\"text\"".to_vec(), 400, "malformed_json"),
        (vec![0xff, 0xfe, 0x00], 400, "malformed_json"),
        (format!("{{\"title\":\"{}\"}}", "x".repeat(1024 * 1024)).into_bytes(), 413, "payload_too_large"),
    ] {
        let response = send(body).await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        let json: Value = response.json().await.unwrap();
        assert_eq!(json["code"], code);
    }
    assert_eq!(server.state().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_guards_the_api_but_not_health_or_metrics() {
    let server = TestServer::start_with(&["--api-token", "s3cret"]);
    let url = |p: &str| format!("{}{}", server.base, p);
    let response = server.client.get(url("/api/tasks")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "unauthorized");
    let wrong = server.client.get(url("/api/tasks")).bearer_auth("guess").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = server.client.get(url("/api/tasks")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    for open in ["/healthz", "/readyz", "/metrics", "/"] {
        assert_eq!(server.client.get(url(open)).send().await.unwrap().status(), StatusCode::OK, "{open}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn costs_past_the_limit_are_refused_so_sums_stay_finite() {
    let server = TestServer::start();
    check_all(
        &server,
        vec![
            post(
                "/api/ventures",
                json!({"name": "v", "capitalSpent": 1.7e308}),
                400,
                "validation_error",
                Some("capitalSpent"),
            ),
            patch(
                "/api/ventures/clxyz-allbirds",
                json!({"capitalBudget": 1e9 + 1.0}),
                400,
                "validation_error",
                Some("capitalBudget"),
            ),
            post(
                "/api/tasks",
                json!({"title": "t", "ventureId": "clxyz-allbirds", "estimatedCost": 1e300}),
                400,
                "validation_error",
                Some("estimatedCost"),
            ),
            post(
                "/api/tasks/complete",
                json!({"taskId": "clxyz123", "agentId": "a", "actualCost": 2e9}),
                400,
                "validation_error",
                Some("actualCost"),
            ),
        ],
    )
    .await;
    let (status, venture) = server.patch("/api/ventures/clxyz-allbirds", json!({"capitalSpent": 1e9})).await;
    assert_eq!((status, venture["capitalSpent"].as_f64()), (StatusCode::OK, Some(1e9)), "the limit itself is allowed");
}
