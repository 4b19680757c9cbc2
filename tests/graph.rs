//! Task graphs and cancellation over HTTP: dependencies, blocked and unblocked tasks, the
//! failure cascade, cycles, cancels that reach a running agent, and large fans.

mod common;

use std::sync::Arc;

use common::{until, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn server_with_venture() -> TestServer {
    let server = TestServer::start_with(&["--no-seed"]);
    let (s, body) = server.post("/api/ventures", json!({"id": "v", "name": "v"})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    server
}

/// Creates a task with extra fields and returns it.
async fn create(server: &TestServer, id: &str, extra: Value) -> Value {
    let mut body = json!({"id": id, "title": format!("step {id}"), "ventureId": "v", "maxAttempts": 1});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (s, task) = server.post("/api/tasks", body).await;
    assert_eq!(s, StatusCode::CREATED, "{task}");
    task
}

async fn status(server: &TestServer, id: &str) -> String {
    server.ok(&format!("/api/tasks/{id}")).await["status"].as_str().unwrap().to_owned()
}

/// Claims `id` as `agent` (only it is claimable) and reports on it.
async fn run(server: &TestServer, agent: &str, id: &str, report: Value) -> Value {
    let (s, task) = server.post("/api/tasks/claim", json!({"agentId": agent})).await;
    assert_eq!((s, &task["id"]), (StatusCode::OK, &json!(id)), "{task}");
    let mut body = json!({"taskId": id, "agentId": agent});
    body.as_object_mut().unwrap().extend(report.as_object().unwrap().clone());
    let (s, task) = server.post("/api/tasks/complete", body).await;
    assert_eq!(s, StatusCode::OK, "{task}");
    task
}

async fn activity_titles(server: &TestServer, kind: &str) -> Vec<String> {
    let list = server.ok(&format!("/api/activities?type={kind}")).await;
    list.as_array().unwrap().iter().map(|a| a["title"].as_str().unwrap().to_owned()).collect()
}

fn refusal(answer: &(StatusCode, Value)) -> (StatusCode, &str) {
    (answer.0, answer.1["code"].as_str().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_waits_blocked_for_its_dependencies_and_is_queued_when_the_last_completes() {
    let server = server_with_venture().await;
    create(&server, "research", json!({})).await;
    create(&server, "outline", json!({})).await;
    let write = create(&server, "write", json!({"dependsOn": ["research", "outline", "research"]})).await;
    assert_eq!(write["status"], "blocked");
    assert_eq!(write["dependsOn"], json!(["research", "outline"]), "in the order given, without repeats");
    assert_eq!(write["blockedBy"], json!(["research", "outline"]));
    assert_eq!((&write["onDependencyFailure"], &write["cancelRequested"]), (&json!("cancel"), &json!(false)));
    let plain = server.ok("/api/tasks/research").await;
    assert_eq!((&plain["dependsOn"], &plain["blockedBy"]), (&json!([]), &json!([])));

    // A dependency that does not exist is a 404 naming the field; nothing is created.
    let (s, body) = server.post("/api/tasks", json!({"title": "x", "ventureId": "v", "dependsOn": ["nope"]})).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::NOT_FOUND, Some("dependsOn")), "{body}");

    // Blocked tasks are never claimed; a filter on status finds them.
    let blocked = server.ok("/api/tasks?status=blocked").await;
    assert_eq!(blocked.as_array().unwrap().len(), 1);
    run(&server, "a", "research", json!({"output": "notes"})).await;
    assert_eq!(server.ok("/api/tasks/write").await["blockedBy"], json!(["outline"]));
    assert_eq!(status(&server, "write").await, "blocked");

    // A parked claim is woken when the last dependency completes.
    let (s, outline) = server.post("/api/tasks/claim", json!({"agentId": "b"})).await;
    assert_eq!((s, &outline["id"]), (StatusCode::OK, &json!("outline")));
    let parked = {
        let client = server.client.clone();
        let url = format!("{}/api/tasks/claim", server.base);
        tokio::spawn(async move {
            let response = client.post(url).json(&json!({"agentId": "c", "waitMs": 20000})).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    until("the claim is parked", async || server.metric("mission_control_claim_waiters").await == Some(1.0)).await;
    let (s, _) = server.post("/api/tasks/complete", json!({"taskId": "outline", "agentId": "b"})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, claimed) = parked.await.unwrap();
    assert_eq!((s, &claimed["id"], &claimed["blockedBy"]), (StatusCode::OK, &json!("write"), &json!([])));
    assert_eq!(activity_titles(&server, "task_unblocked").await, ["Task unblocked: step write"]);

    // Depending on a completed task blocks nothing.
    let review = create(&server, "review", json!({"dependsOn": ["research"]})).await;
    assert_eq!((&review["status"], &review["blockedBy"]), (&json!("queue"), &json!([])));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_cancels_the_dependents_that_say_cancel_down_the_graph_and_frees_those_that_ignore_it() {
    let server = server_with_venture().await;
    create(&server, "fetch", json!({})).await;
    create(&server, "parse", json!({"dependsOn": ["fetch"]})).await;
    create(&server, "index", json!({"dependsOn": ["parse"]})).await;
    create(&server, "report", json!({"dependsOn": ["fetch"], "onDependencyFailure": "ignore"})).await;
    run(&server, "a", "fetch", json!({"error": "403 from the site"})).await;
    assert_eq!(status(&server, "fetch").await, "failed");
    let parse = server.ok("/api/tasks/parse").await;
    assert_eq!(parse["status"], "cancelled");
    assert!(parse["error"].as_str().unwrap().contains("`fetch` ended failed"), "{parse}");
    let index = server.ok("/api/tasks/index").await;
    assert_eq!(index["status"], "cancelled");
    assert!(index["error"].as_str().unwrap().contains("`parse` ended cancelled"), "{index}");
    assert_eq!(status(&server, "report").await, "queue", "`ignore` counts the failed dependency as done");
    let mut cancelled = activity_titles(&server, "task_cancelled").await;
    cancelled.sort();
    assert_eq!(cancelled, ["Task cancelled: step index", "Task cancelled: step parse"]);
    assert_eq!(server.ok("/api/tasks?status=cancelled").await.as_array().unwrap().len(), 2);

    // A new task on a failed dependency is cancelled at once, or queued with `ignore`.
    let late = create(&server, "late", json!({"dependsOn": ["fetch"]})).await;
    assert_eq!(late["status"], "cancelled");
    let tolerant = create(&server, "tolerant", json!({"dependsOn": ["fetch"], "onDependencyFailure": "ignore"})).await;
    assert_eq!(tolerant["status"], "queue");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_that_would_close_a_cycle_is_refused_naming_it_and_changes_nothing() {
    let server = server_with_venture().await;
    create(&server, "a", json!({})).await;
    create(&server, "b", json!({"dependsOn": ["a"]})).await;
    create(&server, "c", json!({"dependsOn": ["b"]})).await;
    let answer = server.patch("/api/tasks/a", json!({"dependsOn": ["c"], "title": "renamed"})).await;
    assert_eq!(refusal(&answer), (StatusCode::CONFLICT, "dependency_cycle"), "{}", answer.1);
    assert!(answer.1["error"].as_str().unwrap().contains("a -> c -> b -> a"), "{}", answer.1);
    let a = server.ok("/api/tasks/a").await;
    assert_eq!((&a["title"], &a["dependsOn"], &a["status"]), (&json!("step a"), &json!([]), &json!("queue")));
    let answer = server.patch("/api/tasks/b", json!({"dependsOn": ["b"]})).await;
    assert_eq!(refusal(&answer), (StatusCode::CONFLICT, "dependency_cycle"));
    assert!(answer.1["error"].as_str().unwrap().contains("b -> b"), "{}", answer.1);

    // A change that closes no cycle replaces the list and the status follows it.
    let (s, c) = server.patch("/api/tasks/c", json!({"dependsOn": ["a"]})).await;
    assert_eq!((s, &c["dependsOn"], &c["blockedBy"]), (StatusCode::OK, &json!(["a"]), &json!(["a"])));
    let (s, c) = server.patch("/api/tasks/c", json!({"dependsOn": []})).await;
    assert_eq!((s, &c["status"], &c["blockedBy"]), (StatusCode::OK, &json!("queue"), &json!([])));

    // Only a queued or blocked task's dependencies change; sending back what it has is fine.
    let (_, claimed) = server.post("/api/tasks/claim", json!({"agentId": "x"})).await;
    let held = claimed["id"].as_str().unwrap().to_owned();
    let answer = server.patch(&format!("/api/tasks/{held}"), json!({"dependsOn": ["b"]})).await;
    assert_eq!(refusal(&answer), (StatusCode::CONFLICT, "invalid_transition"));
    let answer = server.patch(&format!("/api/tasks/{held}"), claimed.clone()).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_others_wait_for_cannot_be_deleted_and_neither_can_its_venture() {
    let server = server_with_venture().await;
    let (s, _) = server.post("/api/ventures", json!({"id": "w", "name": "w"})).await;
    assert_eq!(s, StatusCode::CREATED);
    create(&server, "base", json!({})).await;
    let (s, _) =
        server.post("/api/tasks", json!({"id": "other", "title": "o", "ventureId": "w", "dependsOn": ["base"]})).await;
    assert_eq!(s, StatusCode::CREATED);
    let answer = server.delete("/api/tasks/base").await;
    assert_eq!(refusal(&answer), (StatusCode::CONFLICT, "has_dependents"), "{}", answer.1);
    assert!(answer.1["error"].as_str().unwrap().contains("`other`"), "{}", answer.1);
    let answer = server.delete("/api/ventures/v").await;
    assert_eq!(refusal(&answer), (StatusCode::CONFLICT, "has_dependents"), "{}", answer.1);
    assert_eq!(status(&server, "base").await, "queue");
    // Once the dependent is gone, so may the dependency be.
    assert_eq!(server.delete("/api/tasks/other").await.0, StatusCode::OK);
    assert_eq!(server.delete("/api/tasks/base").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_stops_waiting_work_at_once_and_running_work_at_its_next_report() {
    let server = server_with_venture().await;
    create(&server, "queued", json!({})).await;
    create(&server, "running", json!({"priority": "high"})).await;
    create(&server, "after", json!({"dependsOn": ["running"]})).await;

    let (s, cancelled) = server.post("/api/tasks/cancel", json!({"taskId": "queued", "reason": "not needed"})).await;
    assert_eq!(
        (s, &cancelled["status"], &cancelled["error"]),
        (StatusCode::OK, &json!("cancelled"), &json!("not needed"))
    );
    let (s, again) = server.post("/api/tasks/cancel", json!({"taskId": "queued"})).await;
    assert_eq!((s, &again["status"]), (StatusCode::OK, &json!("cancelled")), "a repeat answers 200");

    let (_, claimed) = server.post("/api/tasks/claim", json!({"agentId": "a"})).await;
    assert_eq!(claimed["id"], "running");
    let (s, asked) = server.patch("/api/tasks/running", json!({"status": "cancelled"})).await;
    assert_eq!((s, &asked["status"], &asked["cancelRequested"]), (StatusCode::OK, &json!("active"), &json!(true)));
    let (s, beat) = server.post("/api/tasks/heartbeat", json!({"taskId": "running", "agentId": "a"})).await;
    assert_eq!((s, &beat["cancelRequested"]), (StatusCode::OK, &json!(true)), "the holder learns it from a heartbeat");
    assert_eq!(activity_titles(&server, "task_cancel_requested").await, ["Cancel requested: step running"]);

    // Its next report ends it cancelled; the money it spent is charged.
    let report = json!({"taskId": "running", "agentId": "a", "output": "partial", "actualCost": 1.25});
    let (s, ended) = server.post("/api/tasks/complete", report.clone()).await;
    assert_eq!((s, &ended["status"], &ended["cancelRequested"]), (StatusCode::OK, &json!("cancelled"), &json!(false)));
    assert_eq!(server.ok("/api/ventures/v").await["capitalSpent"], 1.25);
    assert_eq!(server.post("/api/tasks/complete", report).await.0, StatusCode::OK, "the same report repeats safely");
    let attempts = server.ok("/api/tasks/running/attempts").await;
    assert_eq!(attempts[0]["outcome"], "cancelled");
    assert_eq!(status(&server, "after").await, "cancelled", "its dependent says `cancel`");
    assert_eq!(server.ok("/api/agents/a").await["status"], "online");

    // A finished task cannot be cancelled.
    create(&server, "done", json!({})).await;
    run(&server, "a", "done", json!({})).await;
    let answer = server.post("/api/tasks/cancel", json!({"taskId": "done"})).await;
    assert_eq!(refusal(&answer), (StatusCode::CONFLICT, "finished"), "{}", answer.1);
    let answer = server.post("/api/tasks/cancel", json!({"taskId": "nope"})).await;
    assert_eq!((answer.0, answer.1["field"].as_str()), (StatusCode::NOT_FOUND, Some("taskId")));
    let answer = server.patch("/api/tasks/done", json!({"status": "blocked"})).await;
    assert_eq!(refusal(&answer), (StatusCode::CONFLICT, "invalid_transition"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_requested_task_whose_holder_never_reports_ends_cancelled_when_its_lease_runs_out() {
    let server = server_with_venture().await;
    create(&server, "t", json!({"maxAttempts": 3})).await;
    let (_, claimed) = server.post("/api/tasks/claim", json!({"agentId": "a", "leaseSeconds": 1})).await;
    assert_eq!(claimed["id"], "t");
    assert_eq!(server.post("/api/tasks/cancel", json!({"taskId": "t"})).await.0, StatusCode::OK);
    until("the lease runs out", async || status(&server, "t").await != "active").await;
    assert_eq!(status(&server, "t").await, "cancelled", "not requeued, although attempts remain");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_graph_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("graph.db");
    let server = TestServer::start_on(&db, &["--no-seed"]);
    let (s, _) = server.post("/api/ventures", json!({"id": "v", "name": "v"})).await;
    assert_eq!(s, StatusCode::CREATED);
    create(&server, "a", json!({})).await;
    create(&server, "b", json!({})).await;
    create(&server, "c", json!({"dependsOn": ["a", "b"]})).await;
    run(&server, "x", "a", json!({})).await;
    server.terminate();

    let server = TestServer::start_on(&db, &[]);
    let c = server.ok("/api/tasks/c").await;
    assert_eq!(
        (&c["status"], &c["dependsOn"], &c["blockedBy"]),
        (&json!("blocked"), &json!(["a", "b"]), &json!(["b"]))
    );
    let a = server.ok("/api/tasks/a").await;
    assert_eq!(a["dependsOn"], json!([]), "a finished task read from the database");
    run(&server, "x", "b", json!({})).await;
    assert_eq!(status(&server, "c").await, "queue");
    server.terminate();
    let server = TestServer::start_on(&db, &[]);
    assert_eq!(server.ok("/api/tasks/c").await["dependsOn"], json!(["a", "b"]), "an unblocked task keeps its list");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_task_with_ten_thousand_dependents_and_one_with_a_hundred_dependencies_are_unblocked_exactly() {
    let server = Arc::new(server_with_venture().await);
    create(&server, "root", json!({})).await;
    // Fan-out: 10,000 tasks wait for `root`, created by a few concurrent clients.
    const FAN_OUT: usize = 10_000;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let server = server.clone();
            tokio::spawn(async move {
                for i in (w..FAN_OUT).step_by(8) {
                    let body = json!({"id": format!("d{i}"), "title": "d", "ventureId": "v", "dependsOn": ["root"]});
                    let (s, task) = server.post("/api/tasks", body).await;
                    assert_eq!((s, &task["status"]), (StatusCode::CREATED, &json!("blocked")));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let blocked = async |n: usize| server.metric("mission_control_tasks{status=\"blocked\"}").await == Some(n as f64);
    until("the gauge counts every blocked task", async || blocked(FAN_OUT).await).await;
    run(&server, "a", "root", json!({})).await;
    until("the gauge counts none", async || blocked(0).await).await;
    let queued = server.ok("/api/tasks?status=queue&fields=id").await;
    assert_eq!(queued.as_array().unwrap().len(), FAN_OUT);

    // Fan-in: one task waits for 100 others and is queued only after the last.
    for i in 0..FAN_OUT {
        let (s, _) = server.delete(&format!("/api/tasks/d{i}")).await;
        assert_eq!(s, StatusCode::OK);
    }
    let parts: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
    for part in &parts {
        create(&server, part, json!({})).await;
    }
    let join = create(&server, "join", json!({"dependsOn": parts})).await;
    assert_eq!(join["blockedBy"].as_array().unwrap().len(), 100);
    for left in (0..100).rev() {
        let (s, part) = server.post("/api/tasks/claim", json!({"agentId": "a"})).await;
        assert_eq!(s, StatusCode::OK);
        assert_ne!(part["id"], "join", "claimed while {} dependencies were unfinished", left + 1);
        let (s, _) = server.post("/api/tasks/complete", json!({"taskId": part["id"], "agentId": "a"})).await;
        assert_eq!(s, StatusCode::OK);
        let join = server.ok("/api/tasks/join").await;
        assert_eq!(join["blockedBy"].as_array().unwrap().len(), left, "after {}", part["id"]);
        assert_eq!(join["status"], if left == 0 { "queue" } else { "blocked" });
    }
}
