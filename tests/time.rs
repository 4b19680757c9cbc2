//! Time, identity and fencing over HTTP: delayed tasks, back-off between retries,
//! idempotent creates and a fencing token that never repeats.

mod common;

use std::sync::Arc;

use common::{until, TestServer};
use mission_control::domain::Millis;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn server_with_venture() -> TestServer {
    let server = TestServer::start_with(&["--no-seed"]);
    for venture in ["v", "w"] {
        let (s, body) = server.post("/api/ventures", json!({"id": venture, "name": venture})).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    server
}

fn time(value: &Value) -> Millis {
    Millis::parse(value.as_str().expect("a time")).expect("RFC 3339")
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_with_one_key_make_one_task_and_the_key_holds_while_the_task_is_kept() {
    let server = Arc::new(server_with_venture().await);
    let creates: Vec<_> = (0..64)
        .map(|i| {
            let server = server.clone();
            tokio::spawn(async move {
                // Whatever else the requests say, the first one wins.
                let body = json!({"title": format!("attempt {i}"), "ventureId": "v", "idempotencyKey": "order-42"});
                server.post("/api/tasks", body).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for create in creates {
        answers.push(create.await.unwrap());
    }
    let created: Vec<&Value> = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).map(|(_, t)| t).collect();
    assert_eq!(created.len(), 1, "exactly one create makes the task");
    let id = created[0]["id"].clone();
    assert_eq!(created[0]["idempotencyKey"], "order-42");
    for (s, task) in &answers {
        assert!(*s == StatusCode::CREATED || *s == StatusCode::OK, "{s} {task}");
        assert_eq!(task["id"], id, "every answer is the one task");
    }
    assert_eq!(server.ok("/api/tasks?fields=id").await.as_array().unwrap().len(), 1);

    // Another venture has keys of its own.
    let (s, other) =
        server.post("/api/tasks", json!({"title": "t", "ventureId": "w", "idempotencyKey": "order-42"})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_ne!(other["id"], id);

    // Finished, the task still holds its key (it is in the database, not in memory)...
    let (_, claimed) = server.post("/api/tasks/claim", json!({"agentId": "a", "ventureId": "v"})).await;
    let (s, _) = server.post("/api/tasks/complete", json!({"taskId": claimed["id"], "agentId": "a"})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, again) =
        server.post("/api/tasks", json!({"title": "again", "ventureId": "v", "idempotencyKey": "order-42"})).await;
    assert_eq!((s, &again["id"], &again["status"]), (StatusCode::OK, &id, &json!("completed")));
    // ...until it is deleted.
    assert_eq!(server.delete(&format!("/api/tasks/{}", id.as_str().unwrap())).await.0, StatusCode::OK);
    let (s, fresh) =
        server.post("/api/tasks", json!({"title": "fresh", "ventureId": "v", "idempotencyKey": "order-42"})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_ne!(fresh["id"], id);

    let (s, body) = server.post("/api/tasks", json!({"title": "t", "ventureId": "v", "idempotencyKey": ""})).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("idempotencyKey")));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let server = TestServer::start_on(&db, &["--no-seed"]);
    let (s, _) = server.post("/api/ventures", json!({"id": "v", "name": "v"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let body = json!({"id": "first", "title": "t", "ventureId": "v", "idempotencyKey": "k"});
    assert_eq!(server.post("/api/tasks", body).await.0, StatusCode::CREATED);
    server.terminate();
    let server = TestServer::start_on(&db, &[]);
    let (s, task) = server.post("/api/tasks", json!({"title": "t2", "ventureId": "v", "idempotencyKey": "k"})).await;
    assert_eq!((s, &task["id"]), (StatusCode::OK, &json!("first")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_task_waits_blocked_until_its_time_and_is_handed_to_a_parked_claim() {
    let server = server_with_venture().await;
    let run_at = Millis(Millis::now().0 + 1_500);
    let (s, task) = server
        .post("/api/tasks", json!({"id": "later", "title": "t", "ventureId": "v", "runAt": run_at.to_string()}))
        .await;
    assert_eq!(
        (s, &task["status"], &task["runAt"]),
        (StatusCode::CREATED, &json!("blocked"), &json!(run_at.to_string()))
    );
    let (s, _) = server.post("/api/tasks/claim", json!({"agentId": "early"})).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "not claimable before its time");

    let (s, claimed) = server.post("/api/tasks/claim", json!({"agentId": "patient", "waitMs": 20000})).await;
    let claimed_at = Millis::now();
    assert_eq!((s, &claimed["id"]), (StatusCode::OK, &json!("later")));
    assert!(claimed_at >= run_at, "handed out {} ms early", run_at.0 - claimed_at.0);
    eprintln!("lateness of a delayed task to a parked claim: {} ms", claimed_at.0 - run_at.0);
    let unblocked = server.ok("/api/activities?type=task_unblocked").await;
    assert!(unblocked[0]["description"].as_str().unwrap().contains("runAt"), "{unblocked}");

    // A time in the past delays nothing; `null` clears a time; a running task keeps its own.
    let past = Millis(Millis::now().0 - 60_000).to_string();
    let (_, now) = server.post("/api/tasks", json!({"id": "now", "title": "t", "ventureId": "v", "runAt": past})).await;
    assert_eq!(now["status"], "queue");
    let tomorrow = Millis(Millis::now().0 + 86_400_000).to_string();
    let (_, t) = server.patch("/api/tasks/now", json!({"runAt": tomorrow})).await;
    assert_eq!(t["status"], "blocked");
    let (_, t) = server.patch("/api/tasks/now", json!({"runAt": null})).await;
    assert_eq!((&t["status"], &t["runAt"]), (&json!("queue"), &Value::Null));
    let answer = server.patch("/api/tasks/later", json!({"runAt": tomorrow})).await;
    assert_eq!((answer.0, answer.1["field"].as_str()), (StatusCode::CONFLICT, Some("runAt")));
    let answer = server.post("/api/tasks", json!({"title": "t", "ventureId": "v", "runAt": "tomorrow"})).await;
    assert_eq!((answer.0, answer.1["field"].as_str()), (StatusCode::BAD_REQUEST, Some("runAt")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_with_dependencies_and_a_time_waits_for_both() {
    let server = server_with_venture().await;
    let (_, _) = server.post("/api/tasks", json!({"id": "dep", "title": "t", "ventureId": "v"})).await;
    let run_at = Millis(Millis::now().0 + 86_400_000).to_string();
    let body = json!({"id": "both", "title": "t", "ventureId": "v", "dependsOn": ["dep"], "runAt": run_at});
    let (_, both) = server.post("/api/tasks", body).await;
    assert_eq!((&both["status"], &both["blockedBy"]), (&json!("blocked"), &json!(["dep"])));
    let (_, claimed) = server.post("/api/tasks/claim", json!({"agentId": "a"})).await;
    assert_eq!(claimed["id"], "dep");
    server.post("/api/tasks/complete", json!({"taskId": "dep", "agentId": "a"})).await;
    let both = server.ok("/api/tasks/both").await;
    assert_eq!((&both["status"], &both["blockedBy"]), (&json!("blocked"), &json!([])), "its time is still to come");
    let (_, both) = server.patch("/api/tasks/both", json!({"runAt": null})).await;
    assert_eq!(both["status"], "queue");
}

/// Seconds from the task's last change to its `runAt`: the back-off it was given.
fn back_off_seconds(task: &Value) -> i64 {
    (time(&task["runAt"]).0 - time(&task["updatedAt"]).0) / 1000
}

#[tokio::test(flavor = "multi_thread")]
async fn back_off_doubles_with_each_failed_attempt_and_stops_at_an_hour() {
    let server = server_with_venture().await;
    let body = json!({"id": "flaky", "title": "t", "ventureId": "v", "maxAttempts": 10, "retryDelaySeconds": 1000});
    assert_eq!(server.post("/api/tasks", body).await.0, StatusCode::CREATED);
    let mut delays = Vec::new();
    for _ in 0..3 {
        let (s, task) = server.post("/api/tasks/claim", json!({"agentId": "a"})).await;
        assert_eq!(s, StatusCode::OK, "{task}");
        let report = json!({"taskId": "flaky", "agentId": "a", "attempt": task["attempts"], "error": "rate limited"});
        let (_, task) = server.post("/api/tasks/complete", report).await;
        assert_eq!(task["status"], "blocked", "{task}");
        delays.push(back_off_seconds(&task));
        // Waited out by hand: the operator clears the time.
        let (_, task) = server.patch("/api/tasks/flaky", json!({"runAt": null})).await;
        assert_eq!(task["status"], "queue");
    }
    assert_eq!(delays, [1000, 2000, 3600]);

    // An expired lease counts as a failed attempt.
    let body = json!({"id": "slow", "title": "t", "ventureId": "w", "retryDelaySeconds": 30});
    assert_eq!(server.post("/api/tasks", body).await.0, StatusCode::CREATED);
    let (_, task) = server.post("/api/tasks/claim", json!({"agentId": "b", "ventureId": "w", "leaseSeconds": 1})).await;
    assert_eq!(task["id"], "slow");
    until("the lease runs out", async || server.ok("/api/tasks/slow").await["status"] != "active").await;
    let task = server.ok("/api/tasks/slow").await;
    assert_eq!((&task["status"], back_off_seconds(&task)), (&json!("blocked"), 30));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_from_before_a_requeue_is_refused_even_from_the_agent_that_holds_the_task_now() {
    let server = server_with_venture().await;
    let body = json!({"id": "t", "title": "t", "ventureId": "v", "maxAttempts": 1});
    assert_eq!(server.post("/api/tasks", body).await.0, StatusCode::CREATED);
    let (_, first) = server.post("/api/tasks/claim", json!({"agentId": "a"})).await;
    assert_eq!(first["attempts"], 1);
    let (_, failed) =
        server.post("/api/tasks/complete", json!({"taskId": "t", "agentId": "a", "attempt": 1, "error": "boom"})).await;
    assert_eq!(failed["status"], "failed");
    let (_, requeued) = server.patch("/api/tasks/t", json!({"status": "queue"})).await;
    assert_eq!((&requeued["attempts"], &requeued["maxAttempts"]), (&json!(1), &json!(4)), "a fresh allowance of 3");
    let (_, second) = server.post("/api/tasks/claim", json!({"agentId": "a"})).await;
    assert_eq!(second["attempts"], 2, "attempt numbers never repeat");
    for stale in [
        json!({"taskId": "t", "agentId": "a", "attempt": 1, "output": "late"}),
        json!({"taskId": "t", "agentId": "a", "attempt": 1, "error": "boom"}),
    ] {
        let (s, e) = server.post("/api/tasks/complete", stale).await;
        assert_eq!((s, e["code"].as_str()), (StatusCode::CONFLICT, Some("stale_lease")), "{e}");
    }
    let (s, e) = server.post("/api/tasks/heartbeat", json!({"taskId": "t", "agentId": "a", "attempt": 1})).await;
    assert_eq!((s, e["code"].as_str()), (StatusCode::CONFLICT, Some("stale_lease")));
    let (s, done) = server.post("/api/tasks/complete", json!({"taskId": "t", "agentId": "a", "attempt": 2})).await;
    assert_eq!((s, &done["status"]), (StatusCode::OK, &json!("completed")));
    let attempts = server.ok("/api/tasks/t/attempts").await;
    let numbers: Vec<u64> = attempts.as_array().unwrap().iter().map(|a| a["attempt"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2], "one row per attempt, none overwritten");
}
