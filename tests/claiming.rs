//! Claiming and completing over HTTP: exactly once under concurrency, in order, within budget.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn create_venture(server: &TestServer, id: &str, budget: f64) {
    let (s, body) = server.post("/api/ventures", json!({"id": id, "name": id, "capitalBudget": budget})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}

/// Creates tasks concurrently from a few clients.
async fn create_tasks(server: &Arc<TestServer>, venture: &str, n: usize, cost: f64) {
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let server = server.clone();
            let venture = venture.to_owned();
            tokio::spawn(async move {
                for i in (w..n).step_by(8) {
                    let (s, body) = server
                        .post("/api/tasks", json!({"id": format!("{venture}-{i}"), "title": "job", "ventureId": venture, "estimatedCost": cost}))
                        .await;
                    assert_eq!(s, StatusCode::CREATED, "{body}");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_agents_claim_two_thousand_tasks_each_exactly_once() {
    let server = Arc::new(TestServer::start_with(&["--no-seed"]));
    create_venture(&server, "bulk", 0.0).await;
    create_tasks(&server, "bulk", 2000, 1.0).await;

    let agents: Vec<_> = (0..64)
        .map(|a| {
            let server = server.clone();
            tokio::spawn(async move {
                let agent = format!("agent-{a}");
                let mut mine = Vec::new();
                loop {
                    let (s, task) = server.post("/api/tasks/claim", json!({"agentId": agent})).await;
                    if s == StatusCode::NO_CONTENT {
                        return mine;
                    }
                    assert_eq!(s, StatusCode::OK, "{task}");
                    let id = task["id"].as_str().unwrap().to_owned();
                    assert_eq!(task["assignedTo"], agent);
                    let (s, done) = server
                        .post(
                            "/api/tasks/complete",
                            json!({"taskId": id, "agentId": agent, "actualCost": 0.5, "attempt": task["attempts"]}),
                        )
                        .await;
                    assert_eq!(s, StatusCode::OK, "{done}");
                    mine.push(id);
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for agent in agents {
        for id in agent.await.unwrap() {
            total += 1;
            assert!(seen.insert(id.clone()), "task {id} was handed out twice");
        }
    }
    assert_eq!(total, 2000);
    let venture = server.ok("/api/ventures/bulk").await;
    assert_eq!(venture["capitalSpent"], 1000.0);
    let done = server.ok("/api/tasks?status=completed").await;
    assert_eq!(done.as_array().unwrap().len(), 2000);
    assert!(done.as_array().unwrap().iter().all(|t| t["attempts"] == 1));
    assert_eq!(common::count_rows(&server.db, "SELECT count(*) FROM Task WHERE status = 'completed'"), 2000);
    assert_eq!(common::count_rows(&server.db, "SELECT count(*) FROM Activity WHERE type = 'task_completed'"), 2000);
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_go_high_before_medium_before_low_then_oldest_then_id() {
    let server = TestServer::start_with(&["--no-seed"]);
    create_venture(&server, "v", 0.0).await;
    for (id, priority) in
        [("c-low", "low"), ("b-med", "medium"), ("a-high", "high"), ("d-med", "medium"), ("e-high", "high")]
    {
        server.post("/api/tasks", json!({"id": id, "title": id, "ventureId": "v", "priority": priority})).await;
    }
    let mut order = Vec::new();
    loop {
        let (s, t) = server.post("/api/tasks/claim", json!({"agentId": "solo"})).await;
        if s == StatusCode::NO_CONTENT {
            break;
        }
        order.push(t["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(order, ["a-high", "e-high", "b-med", "d-med", "c-low"]);
    let agent = server.ok("/api/agents/solo").await;
    assert_eq!(agent["currentTask"], "c-low", "currentTask is the most recent claim");
    server.post("/api/tasks/complete", json!({"taskId": "c-low", "agentId": "solo"})).await;
    let agent = server.ok("/api/agents/solo").await;
    assert_eq!((agent["currentTask"].as_str(), agent["status"].as_str()), (Some("d-med"), Some("busy")));
}

#[tokio::test(flavor = "multi_thread")]
async fn paused_ventures_dispense_nothing_and_filters_narrow_the_claim() {
    let server = TestServer::start();
    server.patch("/api/ventures/clxyz-allbirds", json!({"status": "paused"})).await;
    let (_, t) = server.post("/api/tasks/claim", json!({"agentId": "a"})).await;
    assert_eq!(t["id"], "clxyz124", "the paused venture's high-priority task is skipped");
    let (s, _) = server.post("/api/tasks/claim", json!({"agentId": "a", "ventureId": "clxyz-allbirds"})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    server.patch("/api/ventures/clxyz-allbirds", json!({"status": "active"})).await;
    let (_, t) = server.post("/api/tasks/claim", json!({"agentId": "a", "tags": ["listings"]})).await;
    assert_eq!(t["id"], "clxyz125");
    let (_, t) = server
        .post("/api/tasks/claim", json!({"agentId": "a", "ventureId": "clxyz-allbirds", "tags": "[\"scraping\"]"}))
        .await;
    assert_eq!(t["id"], "clxyz123");
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_agents_against_a_budget_of_ten_get_exactly_ten() {
    let server = Arc::new(TestServer::start_with(&["--no-seed"]));
    create_venture(&server, "tight", 10.0).await;
    create_tasks(&server, "tight", 40, 1.0).await;
    let claims: Vec<_> = (0..32)
        .map(|a| {
            let server = server.clone();
            tokio::spawn(async move { server.post("/api/tasks/claim", json!({"agentId": format!("a{a}")})).await.0 })
        })
        .collect();
    let mut granted = 0;
    for claim in claims {
        if claim.await.unwrap() == StatusCode::OK {
            granted += 1;
        }
    }
    assert_eq!(granted, 10);
    let venture = server.ok("/api/ventures/tight").await;
    assert_eq!(venture["capitalReserved"], 10.0);
    // A completion that spends less than estimated frees room for more.
    let active = server.ok("/api/tasks?status=active").await;
    let first = &active[0];
    server
        .post("/api/tasks/complete", json!({"taskId": first["id"], "agentId": first["assignedTo"], "actualCost": 0}))
        .await;
    let (s, _) = server.post("/api/tasks/claim", json!({"agentId": "late"})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = server.post("/api/tasks/claim", json!({"agentId": "later"})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread")]
async fn completion_is_retry_safe_and_fenced() {
    let server = TestServer::start();
    let (_, t) = server.post("/api/tasks/claim", json!({"agentId": "agent-main"})).await;
    let report = json!({"taskId": "clxyz123", "agentId": "agent-main", "actualCost": 2, "tokensUsed": 100, "attempt": t["attempts"]});
    let (s, first) = server.post("/api/tasks/complete", report.clone()).await;
    assert_eq!(s, StatusCode::OK);
    let (s, again) = server.post("/api/tasks/complete", report.clone()).await;
    assert_eq!(s, StatusCode::OK, "a repeat is answered with the task as it is");
    assert_eq!(again["completedAt"], first["completedAt"]);
    assert_eq!(server.ok("/api/ventures/clxyz-allbirds").await["capitalSpent"], 47.0, "charged once");
    assert_eq!(server.ok("/api/agents/agent-main").await["tokensUsed"], 100, "tokens counted once");
    assert_eq!(server.ok("/api/activities?type=task_completed").await.as_array().unwrap().len(), 1);
    let (s, e) = server.post("/api/tasks/complete", json!({"taskId": "clxyz123", "agentId": "agent-telegram"})).await;
    assert_eq!((s, e["code"].as_str()), (StatusCode::CONFLICT, Some("not_holder")));

    // An error report requeues; its repeat changes nothing; a new claim fences the old holder.
    let (_, t) = server.post("/api/tasks/claim", json!({"agentId": "agent-main"})).await;
    let id = t["id"].as_str().unwrap().to_owned();
    let failure = json!({"taskId": id, "agentId": "agent-main", "error": "boom", "attempt": 1});
    assert_eq!(server.post("/api/tasks/complete", failure.clone()).await.1["status"], "queue");
    let (s, same) = server.post("/api/tasks/complete", failure.clone()).await;
    assert_eq!((s, same["attempts"].as_u64()), (StatusCode::OK, Some(1)));
    assert_eq!(server.ok(&format!("/api/activities?type=task_failed&taskId={id}")).await.as_array().unwrap().len(), 1);
    let (_, again) = server.post("/api/tasks/claim", json!({"agentId": "agent-telegram"})).await;
    assert_eq!((again["id"].as_str(), again["attempts"].as_u64()), (Some(id.as_str()), Some(2)));
    let (s, e) = server.post("/api/tasks/complete", failure).await;
    assert_eq!((s, e["code"].as_str()), (StatusCode::CONFLICT, Some("stale_lease")));
    let (s, e) =
        server.post("/api/tasks/heartbeat", json!({"taskId": id, "agentId": "agent-telegram", "attempt": 1})).await;
    assert_eq!((s, e["code"].as_str()), (StatusCode::CONFLICT, Some("stale_lease")));
    let (s, beat) = server
        .post(
            "/api/tasks/heartbeat",
            json!({"taskId": id, "agentId": "agent-telegram", "attempt": 2, "leaseSeconds": 60}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        beat["leaseExpiresAt"].as_str().unwrap() < again["leaseExpiresAt"].as_str().unwrap(),
        "a 60 s extension is earlier than the 1800 s lease"
    );

    // The last attempt's error fails the task for good.
    let (_, t) =
        server.post("/api/tasks/complete", json!({"taskId": id, "agentId": "agent-telegram", "error": "again"})).await;
    assert_eq!(t["status"], "queue");
    let (_, t) =
        server.post("/api/tasks/claim", json!({"agentId": "agent-telegram", "ventureId": "clxyz-ecommerce"})).await;
    assert_eq!((t["id"].as_str(), t["attempts"].as_u64()), (Some(id.as_str()), Some(3)));
    let (_, t) =
        server.post("/api/tasks/complete", json!({"taskId": id, "agentId": "agent-telegram", "error": "third"})).await;
    assert_eq!((t["status"].as_str(), t["assignedTo"].as_str()), (Some("failed"), Some("agent-telegram")));
    let remaining: Vec<Value> = server.ok("/api/tasks?status=queue").await.as_array().unwrap().clone();
    assert!(remaining.iter().all(|t| t["id"] != id.as_str()), "a failed task is never handed out again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_lease_expires_and_requeues() {
    let server = TestServer::start();
    let (_, t) = server.post("/api/tasks/claim", json!({"agentId": "agent-main", "leaseSeconds": 1})).await;
    assert_eq!(t["id"], "clxyz123");
    tokio::time::sleep(std::time::Duration::from_millis(1400)).await;
    let task = server.ok("/api/tasks/clxyz123").await;
    assert_eq!((task["status"].as_str(), task["assignedTo"].clone()), (Some("queue"), Value::Null));
    assert_eq!(server.ok("/api/agents/agent-main").await["status"], "offline");
    assert_eq!(server.ok("/api/activities?type=task_lease_expired").await.as_array().unwrap().len(), 1);
    let (s, e) = server.post("/api/tasks/complete", json!({"taskId": "clxyz123", "agentId": "agent-main"})).await;
    assert_eq!((s, e["code"].as_str()), (StatusCode::CONFLICT, Some("not_holder")));
}
