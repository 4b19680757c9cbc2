//! Fleet scheduling over HTTP: long polling, heartbeats, and waking on freed budget.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use reqwest::StatusCode;
use serde_json::json;

async fn venture(server: &TestServer, id: &str, budget: f64) {
    let (s, body) = server.post("/api/ventures", json!({"id": id, "name": id, "capitalBudget": budget})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}

/// Starts a long poll in the background.
fn long_poll(
    server: &Arc<TestServer>,
    agent: &str,
    wait_ms: u64,
) -> tokio::task::JoinHandle<(StatusCode, serde_json::Value, Duration)> {
    let server = server.clone();
    let agent = agent.to_owned();
    tokio::spawn(async move {
        let started = Instant::now();
        let (s, body) = server.post("/api/tasks/claim", json!({"agentId": agent, "waitMs": wait_ms})).await;
        (s, body, started.elapsed())
    })
}

/// Waits until the server reports this many parked claims.
async fn until_waiting(server: &TestServer, n: usize) {
    let needle = format!("mission_control_claim_waiters {n}");
    for _ in 0..100 {
        let metrics = server.get("/metrics").await.1;
        if metrics.as_str().is_some_and(|m| m.lines().any(|l| l == needle)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("never saw {n} parked claims");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_poll_is_woken_by_a_create_from_another_client() {
    let server = Arc::new(TestServer::start_with(&["--no-seed"]));
    venture(&server, "v", 0.0).await;
    let poll = long_poll(&server, "waiter", 10_000);
    until_waiting(&server, 1).await;
    let created_at = Instant::now();
    server.post("/api/tasks", json!({"id": "fresh", "title": "new work", "ventureId": "v"})).await;
    let (s, task, _) = poll.await.unwrap();
    let woke_after = created_at.elapsed();
    assert_eq!((s, task["id"].as_str()), (StatusCode::OK, Some("fresh")));
    assert!(woke_after < Duration::from_millis(500), "woken {woke_after:?} after the create");
    assert_eq!(server.ok("/api/agents/waiter").await["currentTask"], "fresh");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_poll_with_nothing_to_claim_answers_204_when_its_wait_runs_out() {
    let server = Arc::new(TestServer::start_with(&["--no-seed"]));
    let (s, _, waited) = long_poll(&server, "patient", 600).await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(waited >= Duration::from_millis(580) && waited < Duration::from_millis(2000), "{waited:?}");
    assert_eq!(server.get("/api/agents/patient").await.0, StatusCode::NOT_FOUND, "an empty claim registers nobody");
}

#[tokio::test(flavor = "multi_thread")]
async fn parked_claims_end_at_their_own_deadlines_whatever_order_they_came_in() {
    let server = Arc::new(TestServer::start_with(&["--no-seed"]));
    venture(&server, "v", 0.0).await;
    let long = long_poll(&server, "long", 30_000);
    until_waiting(&server, 1).await;
    let short = long_poll(&server, "short", 300);
    let (s, _, waited) = short.await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(waited >= Duration::from_millis(280), "{waited:?}");
    // The earlier deadline ended only its own claim: the other is still parked, and the
    // timer still ends it or hands it work.
    until_waiting(&server, 1).await;
    assert!(!long.is_finished());
    server.post("/api/tasks", json!({"id": "late", "title": "x", "ventureId": "v"})).await;
    let (s, task, _) = long.await.unwrap();
    assert_eq!((s, task["id"].as_str()), (StatusCode::OK, Some("late")));
    let again = long_poll(&server, "again", 200);
    assert_eq!(again.await.unwrap().0, StatusCode::NO_CONTENT, "a claim parked after the others ends too");
}

#[tokio::test(flavor = "multi_thread")]
async fn waiters_are_served_longest_waiting_first() {
    let server = Arc::new(TestServer::start_with(&["--no-seed"]));
    venture(&server, "v", 0.0).await;
    let mut polls = Vec::new();
    for i in 0..3 {
        polls.push(long_poll(&server, &format!("w{i}"), 10_000));
        until_waiting(&server, i + 1).await;
    }
    for i in 0..3 {
        server.post("/api/tasks", json!({"id": format!("t{i}"), "title": "x", "ventureId": "v"})).await;
    }
    for (i, poll) in polls.into_iter().enumerate() {
        let (s, task, _) = poll.await.unwrap();
        assert_eq!(
            (s, task["id"].as_str(), task["assignedTo"].as_str()),
            (StatusCode::OK, Some(format!("t{i}").as_str()), Some(format!("w{i}").as_str()))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiter_whose_client_went_away_is_never_handed_a_task() {
    let server = Arc::new(TestServer::start_with(&["--no-seed"]));
    venture(&server, "v", 0.0).await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let gone = impatient
        .post(format!("{}/api/tasks/claim", server.base))
        .json(&json!({"agentId": "gone", "waitMs": 20_000}))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up");
    let poll = long_poll(&server, "present", 10_000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.post("/api/tasks", json!({"id": "only", "title": "x", "ventureId": "v"})).await;
    let (s, task, _) = poll.await.unwrap();
    assert_eq!((s, task["assignedTo"].as_str()), (StatusCode::OK, Some("present")));
    let gone_agent = server.get("/api/agents/gone").await;
    assert!(gone_agent.0 == StatusCode::NOT_FOUND || gone_agent.1["currentTask"].is_null(), "{gone_agent:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn freed_budget_wakes_a_waiter() {
    let server = Arc::new(TestServer::start_with(&["--no-seed"]));
    venture(&server, "tight", 1.0).await;
    for i in 0..2 {
        server
            .post("/api/tasks", json!({"id": format!("t{i}"), "title": "x", "ventureId": "tight", "estimatedCost": 1}))
            .await;
    }
    let (_, first) = server.post("/api/tasks/claim", json!({"agentId": "a"})).await;
    assert_eq!(first["id"], "t0");
    let poll = long_poll(&server, "b", 10_000);
    until_waiting(&server, 1).await;
    server.post("/api/tasks/complete", json!({"taskId": "t0", "agentId": "a", "actualCost": 0})).await;
    let (s, task, _) = poll.await.unwrap();
    assert_eq!((s, task["id"].as_str()), (StatusCode::OK, Some("t1")));

    // A budget raise wakes one too.
    server.post("/api/tasks", json!({"id": "t2", "title": "x", "ventureId": "tight", "estimatedCost": 1})).await;
    let poll = long_poll(&server, "c", 10_000);
    until_waiting(&server, 1).await;
    server.patch("/api/ventures/tight", json!({"capitalBudget": 5})).await;
    let (s, task, _) = poll.await.unwrap();
    assert_eq!((s, task["id"].as_str()), (StatusCode::OK, Some("t2")));
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_keep_a_two_second_lease_alive_for_five_seconds() {
    let server = TestServer::start();
    let (_, task) = server.post("/api/tasks/claim", json!({"agentId": "agent-main", "leaseSeconds": 2})).await;
    let beat = json!({"taskId": task["id"], "agentId": "agent-main", "attempt": task["attempts"]});
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (s, body) = server.post("/api/tasks/heartbeat", beat.clone()).await;
        assert_eq!(s, StatusCode::OK, "heartbeat at {:?}: {body}", started.elapsed());
    }
    let held = server.ok(&format!("/api/tasks/{}", task["id"].as_str().unwrap())).await;
    assert_eq!((held["status"].as_str(), held["assignedTo"].as_str()), (Some("active"), Some("agent-main")));
    let (s, _) =
        server.post("/api/tasks/complete", json!({"taskId": task["id"], "agentId": "agent-main", "attempt": 1})).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn parked_claims_are_bounded() {
    let server = Arc::new(TestServer::start_with(&["--no-seed", "--max-waiters", "1"]));
    let parked = long_poll(&server, "first", 3_000);
    until_waiting(&server, 1).await;
    let (status, body) = server.post("/api/tasks/claim", json!({"agentId": "second", "waitMs": 3_000})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")));
    let (status, _) = server.post("/api/tasks/claim", json!({"agentId": "third"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "a claim that does not wait is still answered");
    assert_eq!(parked.await.unwrap().0, StatusCode::NO_CONTENT);
}
