//! What is acknowledged survives: a clean stop, and `kill -9` in batch mode.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_after_sigterm_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keep.db");
    let server = TestServer::start_on(&db, &["--durability", "async", "--flush-ms", "50"]);
    server.post("/api/ventures", json!({"id": "v", "name": "V", "capitalBudget": 50})).await;
    server
        .post(
            "/api/tasks",
            json!({"id": "t", "title": "T", "ventureId": "v", "tags": ["a", "b"], "estimatedCost": 2.5}),
        )
        .await;
    server.post("/api/tasks/claim", json!({"agentId": "agent-main", "ventureId": "v", "leaseSeconds": 600})).await;
    server.post("/api/tasks/claim", json!({"agentId": "agent-telegram"})).await;
    server
        .post(
            "/api/tasks/complete",
            json!({"taskId": "clxyz123", "agentId": "agent-telegram", "actualCost": 3.25, "tokensUsed": 9}),
        )
        .await;
    server.patch("/api/agents/agent-telegram", json!({"status": "error"})).await;
    server.post("/api/activities", json!({"title": "by hand"})).await;
    let before = server.state().await;
    let status = server.terminate();
    assert!(status.success(), "SIGTERM exits 0, got {status:?}");

    let server = TestServer::start_on(&db, &[]);
    assert_eq!(server.state().await, before);
    let venture = server.ok("/api/ventures/v").await;
    assert_eq!(venture["capitalReserved"], 2.5, "the active task's reservation is rebuilt");
    let agent = server.ok("/api/agents/agent-main").await;
    assert_eq!((agent["status"].as_str(), agent["currentTask"].as_str()), (Some("busy"), Some("t")));
    let (s, _) =
        server.post("/api/tasks/complete", json!({"taskId": "t", "agentId": "agent-main", "attempt": 1})).await;
    assert_eq!(s, StatusCode::OK, "the holder keeps its lease across the restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_in_batch_mode_loses_no_acknowledged_completion() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let server = Arc::new(TestServer::start_on(&db, &["--no-seed"]));
    server.post("/api/ventures", json!({"id": "v", "name": "V"})).await;
    for i in 0..600 {
        server.post("/api/tasks", json!({"id": format!("t{i}"), "title": "x", "ventureId": "v"})).await;
    }
    // Each acknowledged completion: task id -> the cost it charged.
    let acknowledged = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (server, acknowledged, stop) = (server.clone(), acknowledged.clone(), stop.clone());
            tokio::spawn(async move {
                let agent = format!("w{w}");
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let url = format!("{}/api/tasks/claim", server.base);
                    let Ok(response) = server.client.post(url).json(&json!({"agentId": agent})).send().await else {
                        return;
                    };
                    if response.status() != StatusCode::OK {
                        return;
                    }
                    let Ok(task) = response.json::<serde_json::Value>().await else { return };
                    n += 1;
                    let cost = f64::from(n % 7) + 0.25;
                    let url = format!("{}/api/tasks/complete", server.base);
                    let body = json!({"taskId": task["id"], "agentId": agent, "actualCost": cost});
                    let Ok(response) = server.client.post(url).json(&body).send().await else { return };
                    if response.status() == StatusCode::OK {
                        acknowledged.lock().unwrap().insert(task["id"].as_str().unwrap().to_owned(), cost);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pid = server.pid();
    std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 20, "the load ran ({} completions)", acknowledged.len());
    drop(server);

    let server = TestServer::start_on(&db, &[]);
    let tasks = server.ok("/api/tasks").await;
    let by_id: HashMap<String, serde_json::Value> =
        tasks.as_array().unwrap().iter().map(|t| (t["id"].as_str().unwrap().to_owned(), t.clone())).collect();
    for (id, cost) in &acknowledged {
        let task = &by_id[id];
        assert_eq!(task["status"], "completed", "acknowledged completion of {id} was lost");
        assert_eq!(task["actualCost"].as_f64(), Some(*cost));
    }
    let charged: f64 =
        by_id.values().filter(|t| t["status"] == "completed").map(|t| t["actualCost"].as_f64().unwrap()).sum();
    let spent = server.ok("/api/ventures/v").await["capitalSpent"].as_f64().unwrap();
    assert!((spent - charged).abs() < 1e-6, "capital {spent} != sum of completed costs {charged}");
    // Every active task has one holder, who knows it.
    for task in by_id.values().filter(|t| t["status"] == "active") {
        let agent = server.ok(&format!("/api/agents/{}", task["assignedTo"].as_str().unwrap())).await;
        assert_eq!(agent["status"], "busy");
    }
}
