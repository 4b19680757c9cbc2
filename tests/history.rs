//! History lives in the database: finished tasks leave the scheduler's memory, reads merge
//! memory and SQLite, listings stream with cursors, and retention prunes what is old.

mod common;

use std::path::Path;

use common::{count_rows, run_cli, until, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn venture(server: &TestServer, id: &str, budget: f64) {
    let (status, body) = server.post("/api/ventures", json!({"id": id, "name": id, "capitalBudget": budget})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn task(server: &TestServer, id: &str, venture: &str, max_attempts: u32) {
    let body = json!({"id": id, "title": id, "ventureId": venture, "maxAttempts": max_attempts});
    let (status, body) = server.post("/api/tasks", body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Claims the named task's venture's next task as `agent`; the task claimed must be `id`.
async fn claim(server: &TestServer, agent: &str, venture: &str, id: &str) {
    let (status, body) = server.post("/api/tasks/claim", json!({"agentId": agent, "ventureId": venture})).await;
    assert_eq!((status, body["id"].as_str()), (StatusCode::OK, Some(id)), "{body}");
}

async fn report(server: &TestServer, id: &str, agent: &str, outcome: Value) -> (StatusCode, Value) {
    let mut body = json!({"taskId": id, "agentId": agent});
    body.as_object_mut().unwrap().extend(outcome.as_object().unwrap().clone());
    server.post("/api/tasks/complete", body).await
}

fn ids(tasks: &Value) -> Vec<String> {
    tasks.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
}

/// Five tasks: `done1` and `done2` completed, `dead` failed, `busy` active, `next` queued.
async fn mixed_history(server: &TestServer) {
    venture(server, "v", 0.0).await;
    for (id, outcome) in [
        ("a_done", json!({"output": "first output", "actualCost": 1.5})),
        ("b_dead", json!({"error": "it broke"})),
        ("c_busy", Value::Null),
        ("d_done", json!({"output": "second output"})),
    ] {
        task(server, id, "v", 1).await;
        claim(server, "a1", "v", id).await;
        if !outcome.is_null() {
            let (status, body) = report(server, id, "a1", outcome).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    task(server, "e_next", "v", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn listings_merge_memory_and_the_database_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let server = TestServer::start_on(&db, &["--no-seed"]);
    mixed_history(&server).await;
    let before = server.ok("/api/tasks").await;
    assert_eq!(ids(&before), ["a_done", "b_dead", "c_busy", "d_done", "e_next"], "list order is creation order");
    let statuses: Vec<&str> = before.as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["completed", "failed", "active", "completed", "queue"]);
    assert_eq!(before[0]["venture"]["id"], "v", "finished tasks carry their venture too");
    assert!(server.terminate().success());

    let server = TestServer::start_on(&db, &["--no-seed"]);
    let after = server.ok("/api/tasks").await;
    assert_eq!(after, before, "the same answer from memory and from the database");
    assert_eq!(server.ok("/api/tasks/a_done").await["output"], "first output");
    assert_eq!(server.ok("/api/tasks/b_dead").await["error"], "it broke");
    assert_eq!(ids(&server.ok("/api/tasks?status=completed").await), ["a_done", "d_done"]);
    assert_eq!(ids(&server.ok("/api/tasks?status=failed").await), ["b_dead"]);
    assert_eq!(ids(&server.ok("/api/tasks?assignedTo=a1&limit=2").await), ["a_done", "b_dead"]);
    assert_eq!(ids(&server.ok("/api/tasks?ventureId=v&offset=3").await), ["d_done", "e_next"]);
    assert_eq!(ids(&server.ok("/api/tasks?ventureId=nope").await), Vec::<String>::new());
    // The exact counts of finished tasks survive the restart without their rows in memory.
    until("the task gauges are published", async || {
        server.metric("mission_control_tasks{status=\"completed\"}").await == Some(2.0)
    })
    .await;
    assert_eq!(server.metric("mission_control_tasks{status=\"failed\"}").await, Some(1.0));
    assert_eq!(server.metric("mission_control_tasks{status=\"active\"}").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn cursor_paging_walks_the_whole_list_once() {
    let server = TestServer::start_with(&["--no-seed"]);
    mixed_history(&server).await;
    for id in ["late1", "late2"] {
        task(&server, id, "v", 1).await;
    }
    let whole = ids(&server.ok("/api/tasks").await);
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(after) => format!("/api/tasks?limit=3&after={after}"),
            None => "/api/tasks?limit=3".to_owned(),
        };
        let page = ids(&server.ok(&path).await);
        if page.is_empty() {
            break;
        }
        cursor = page.last().cloned();
        walked.extend(page);
    }
    assert_eq!(walked, whole);
    assert_eq!(ids(&server.ok("/api/tasks?status=completed&after=a_done").await), ["d_done"]);
    let (status, body) = server.get("/api/tasks?after=no-such-task").await;
    assert_eq!(
        (status, body["code"].as_str(), body["field"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"), Some("after"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_tasks_still_answer_reports_edits_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("finished.db");
    let server = TestServer::start_on(&db, &["--no-seed"]);
    mixed_history(&server).await;
    // A restart leaves nothing finished in memory: every answer below comes from SQLite.
    assert!(server.terminate().success());
    let server = TestServer::start_on(&db, &["--no-seed"]);

    let (status, body) = report(&server, "a_done", "a1", json!({"output": "first output", "actualCost": 1.5})).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("completed")), "a repeat is answered");
    let (status, body) = report(&server, "a_done", "a2", json!({"output": "x"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("not_holder")), "{body}");
    let (status, body) = report(&server, "a_done", "a1", json!({"attempt": 7})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("stale_lease")), "{body}");
    let heartbeat = json!({"taskId": "d_done", "agentId": "a1"});
    assert_eq!(server.post("/api/tasks/heartbeat", heartbeat).await.0, StatusCode::CONFLICT);
    assert_eq!(server.ok("/api/ventures/v").await["capitalSpent"], 1.5, "the repeat charged nothing");

    let (status, body) = server.patch("/api/tasks/d_done", json!({"title": "renamed"})).await;
    assert_eq!(
        (status, body["title"].as_str(), body["output"].as_str()),
        (StatusCode::OK, Some("renamed"), Some("second output"))
    );
    assert_eq!(server.ok("/api/tasks/d_done").await["title"], "renamed");

    let (status, body) = server.post("/api/tasks", json!({"id": "a_done", "title": "again", "ventureId": "v"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_exists")),
        "a finished task's id stays taken"
    );
    let (status, body) = server.post("/api/activities", json!({"title": "about it", "taskId": "b_dead"})).await;
    assert_eq!(status, StatusCode::CREATED, "an activity may name a finished task: {body}");

    let (status, body) = server.patch("/api/tasks/b_dead", json!({"status": "queue"})).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("queue")), "{body}");
    claim(&server, "a3", "v", "b_dead").await;

    assert_eq!(server.delete("/api/tasks/a_done").await.0, StatusCode::OK);
    assert_eq!(server.get("/api/tasks/a_done").await.0, StatusCode::NOT_FOUND);
    assert_eq!(server.delete("/api/tasks/a_done").await.0, StatusCode::NOT_FOUND);
    assert_eq!(ids(&server.ok("/api/tasks").await), ["b_dead", "c_busy", "d_done", "e_next"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn light_listings_carry_only_the_fields_asked_for() {
    let server = TestServer::start_with(&["--no-seed"]);
    mixed_history(&server).await;
    let light = server.ok("/api/tasks?fields=id,status&status=completed").await;
    assert_eq!(light, json!([{"id": "a_done", "status": "completed"}, {"id": "d_done", "status": "completed"}]));
    let light = server.ok("/api/tasks?fields=%20title%20,venture&limit=1").await;
    assert_eq!(light, json!([{"title": "a_done", "venture": {"id": "v", "name": "v", "icon": "🚀"}}]));
    for bad in ["output,nope", "", "id,,status"] {
        let (status, body) = server.get(&format!("/api/tasks?fields={bad}")).await;
        assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("fields")), "{bad}: {body}");
    }
}

/// A venture with $2 left and three $3 tasks says why its work waits.
#[tokio::test(flavor = "multi_thread")]
async fn a_venture_says_how_many_queued_tasks_its_budget_holds_back() {
    let server = TestServer::start_with(&["--no-seed"]);
    let body = json!({"id": "v", "name": "v", "capitalBudget": 10, "capitalSpent": 8});
    assert_eq!(server.post("/api/ventures", body).await.0, StatusCode::CREATED);
    for id in ["t1", "t2", "t3"] {
        let body = json!({"id": id, "title": id, "ventureId": "v", "estimatedCost": 3});
        assert_eq!(server.post("/api/tasks", body).await.0, StatusCode::CREATED);
    }
    assert_eq!(server.ok("/api/ventures/v").await["budgetHeld"], 3);
    let claim = json!({"agentId": "a1", "ventureId": "v"});
    assert_eq!(server.post("/api/tasks/claim", claim.clone()).await.0, StatusCode::NO_CONTENT);
    assert_eq!(server.patch("/api/ventures/v", json!({"capitalBudget": 13})).await.0, StatusCode::OK);
    assert_eq!(server.ok("/api/ventures/v").await["budgetHeld"], 0, "$5 left: every $3 task fits");
    assert_eq!(server.post("/api/tasks/claim", claim).await.0, StatusCode::OK);
    let venture = &server.ok("/api/ventures").await[0];
    let seen = (venture["capitalReserved"].as_f64(), venture["budgetHeld"].as_u64());
    assert_eq!(seen, (Some(3.0), Some(2)), "$2 left after the claim's reservation: {venture}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_venture_takes_its_history_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("venture.db");
    let server = TestServer::start_on(&db, &["--no-seed"]);
    mixed_history(&server).await;
    venture(&server, "w", 0.0).await;
    task(&server, "w_task", "w", 1).await;
    claim(&server, "a2", "w", "w_task").await;
    assert_eq!(report(&server, "w_task", "a2", json!({"output": "kept"})).await.0, StatusCode::OK);
    assert!(server.terminate().success());
    let server = TestServer::start_on(&db, &["--no-seed"]);
    // `v` still has an active task; finish it first, as the contract asks.
    assert_eq!(report(&server, "c_busy", "a1", json!({"output": "done"})).await.0, StatusCode::OK);
    assert_eq!(server.delete("/api/ventures/v").await.0, StatusCode::OK);
    for id in ["a_done", "b_dead", "c_busy", "d_done", "e_next"] {
        assert_eq!(server.get(&format!("/api/tasks/{id}")).await.0, StatusCode::NOT_FOUND, "{id}");
    }
    assert_eq!(ids(&server.ok("/api/tasks").await), ["w_task"]);
    until("the counts leave with the venture", async || {
        server.metric("mission_control_tasks{status=\"completed\"}").await == Some(1.0)
    })
    .await;
    assert_eq!(server.metric("mission_control_tasks{status=\"failed\"}").await, Some(0.0));
    assert_eq!(count_rows(&db, "SELECT count(*) FROM Task WHERE ventureId = 'v'"), 0);
}

/// Concurrent requeues of one failed task: it comes back into memory exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requeues_of_a_finished_task_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("race.db");
    let server = TestServer::start_on(&db, &["--no-seed"]);
    mixed_history(&server).await;
    assert!(server.terminate().success());
    let server = TestServer::start_on(&db, &["--no-seed"]);
    let requeues = (0..16).map(|_| server.patch("/api/tasks/b_dead", json!({"status": "queue"})));
    let answers = futures_util::future::join_all(requeues).await;
    for (status, body) in &answers {
        assert_eq!((*status, body["status"].as_str()), (StatusCode::OK, Some("queue")), "{body}");
    }
    let log = server.ok("/api/activities?taskId=b_dead&type=task_updated").await;
    let requeued = log.as_array().unwrap().iter().filter(|a| a["title"].as_str().unwrap().contains("failed → queue"));
    assert_eq!(requeued.count(), 1, "one requeue won: {log}");
    until("the gauges count the task once", async || {
        server.metric("mission_control_tasks{status=\"queue\"}").await == Some(2.0)
    })
    .await;
    assert_eq!(server.metric("mission_control_tasks{status=\"failed\"}").await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_prunes_old_history_and_nothing_else() {
    let server = TestServer::start_with(&[
        "--no-seed",
        "--retain-completed",
        "1s",
        "--retain-failed",
        "1h",
        "--retain-activity",
        "2s",
    ]);
    venture(&server, "v", 100.0).await;
    for (id, outcome) in
        [("old1", json!({"actualCost": 10})), ("old2", json!({"actualCost": 5})), ("b_dead", json!({"error": "no"}))]
    {
        task(&server, id, "v", 1).await;
        claim(&server, "a1", "v", id).await;
        assert_eq!(report(&server, id, "a1", outcome).await.0, StatusCode::OK);
    }
    task(&server, "c_busy", "v", 1).await;
    claim(&server, "a1", "v", "c_busy").await;
    task(&server, "e_next", "v", 1).await;
    until("completed tasks past their window are pruned", async || {
        server.get("/api/tasks/old1").await.0 == StatusCode::NOT_FOUND
            && server.get("/api/tasks/old2").await.0 == StatusCode::NOT_FOUND
    })
    .await;
    assert_eq!(ids(&server.ok("/api/tasks").await), ["b_dead", "c_busy", "e_next"], "failed and unfinished tasks stay");
    let v = server.ok("/api/ventures/v").await;
    assert_eq!((v["capitalSpent"].as_f64(), v["capitalReserved"].as_f64()), (Some(15.0), Some(0.0)), "{v}");
    until("the pruned count and the gauges agree", async || {
        server.metric("mission_control_pruned_total{kind=\"task\"}").await == Some(2.0)
            && server.metric("mission_control_tasks{status=\"completed\"}").await == Some(0.0)
    })
    .await;
    until("old activities are pruned", async || {
        server.ok("/api/activities?limit=1000").await.as_array().unwrap().is_empty()
    })
    .await;
    assert!(server.ok("/api/agents/a1").await["id"] == "a1", "agents are never pruned");
    // A pruned task's attempts went with it; the others' stay.
    let attempts_of =
        |id: &str| common::count_rows(&server.db, &format!("SELECT count(*) FROM TaskAttempt WHERE taskId = '{id}'"));
    assert_eq!((attempts_of("old1"), attempts_of("old2"), attempts_of("b_dead"), attempts_of("c_busy")), (0, 0, 1, 1));
}

#[test]
fn a_malformed_retention_window_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bad.db");
    let db = db.to_str().unwrap();
    let (ok, text) = run_cli(&["serve", "--db", db, "--addr", "127.0.0.1:0", "--retain-completed", "7 parsecs"]);
    assert!(!ok, "{text}");
    assert!(text.contains("--retain-completed"), "the message names the option: {text}");
    assert!(!Path::new(db).exists(), "nothing was created");
}

/// Writes finished tasks straight into the file: start-up must not read them.
fn add_finished_history(db: &Path, n: usize) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("BEGIN").unwrap();
    let mut insert = conn
        .prepare(
            "INSERT INTO Task (id, title, status, priority, ventureId, attempts, maxAttempts, createdAt, updatedAt, completedAt, output)
             VALUES (?1, ?1, 'completed', 'medium', 'v', 1, 3, ?2, ?2, ?2, 'old output')",
        )
        .unwrap();
    for i in 0..n {
        insert.execute(rusqlite::params![format!("old-{i:07}"), "2026-01-01T00:00:00.000Z"]).unwrap();
    }
    drop(insert);
    conn.execute_batch("COMMIT").unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn start_up_loads_only_unfinished_tasks_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    let server = TestServer::start_on(&db, &["--no-seed"]);
    venture(&server, "v", 0.0).await;
    task(&server, "live", "v", 3).await;
    assert!(server.terminate().success());
    add_finished_history(&db, 50_000);

    let server = TestServer::start_on(&db, &["--no-seed"]);
    let log = strip_colour(&std::fs::read_to_string(db.with_extension("log")).unwrap());
    assert!(log.contains("unfinished_tasks=1") && log.contains("finished_tasks=50000"), "{log}");
    until("the gauge counts the history", async || {
        server.metric("mission_control_tasks{status=\"completed\"}").await == Some(50_000.0)
    })
    .await;
    assert_eq!(server.ok("/api/tasks/old-0049999").await["output"], "old output");
    let page = server.ok("/api/tasks?limit=2&after=old-0000001").await;
    assert_eq!(ids(&page), ["old-0000002", "old-0000003"]);
    let all = server.ok("/api/tasks").await;
    assert_eq!(all.as_array().unwrap().len(), 50_001);
    assert_eq!(all[50_000]["id"], "live", "the newest task comes last");
    assert_eq!(count_rows(&db, "SELECT count(*) FROM Task"), 50_001);
}

/// The log without ANSI colour codes.
fn strip_colour(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// Resident memory of the server process, from `/proc`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs `n` create → claim → complete cycles with a 16 KiB output, `lanes` at a time.
async fn finish_tasks(server: &TestServer, from: usize, n: usize, lanes: usize) {
    let output = "x".repeat(16 * 1024);
    let lanes = (0..lanes).map(|lane| {
        let output = output.clone();
        async move {
            let agent = format!("agent-{lane}");
            let venture = format!("lane-{lane}");
            for i in (from + lane..from + n).step_by(lanes) {
                let id = format!("t{i}");
                task(server, &id, &venture, 3).await;
                claim(server, &agent, &venture, &id).await;
                let (status, body) = report(server, &id, &agent, json!({"output": output})).await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        }
    });
    futures_util::future::join_all(lanes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_does_not_grow_with_finished_tasks() {
    let server = TestServer::start_with(&["--no-seed", "--durability", "async"]);
    const LANES: usize = 16;
    for lane in 0..LANES {
        venture(&server, &format!("lane-{lane}"), 0.0).await;
    }
    // Measured at rest: in `async` durability the changes not yet written are in memory.
    let written = async || server.ok("/readyz").await["pendingWrites"] == 0;
    finish_tasks(&server, 0, 10_000, LANES).await;
    until("every change is written", written).await;
    let at_10k = rss_kib(server.pid());
    finish_tasks(&server, 10_000, 20_000, LANES).await;
    until("every change is written", written).await;
    let at_30k = rss_kib(server.pid());
    eprintln!("resident memory: {at_10k} KiB at 10,000 finished tasks, {at_30k} KiB at 30,000");
    assert!(
        at_30k < at_10k + 16 * 1024,
        "memory grew by {} KiB between 10,000 and 30,000 finished 16 KiB tasks (at most 16 MiB)",
        at_30k.saturating_sub(at_10k)
    );
    until("every finished task is counted", async || {
        server.metric("mission_control_tasks{status=\"completed\"}").await == Some(30_000.0)
    })
    .await;

    // The whole list (about 500 MB of JSON) is streamed: the server never holds the answer.
    let before = rss_kib(server.pid());
    let mut response = server.client.get(format!("{}/api/tasks", server.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let needle: &[u8] = b"\"status\":\"completed\"";
    let (mut peak, mut listed, mut window) = (before, 0, Vec::new());
    while let Some(chunk) = response.chunk().await.unwrap() {
        window.extend_from_slice(&chunk);
        listed += window.windows(needle.len()).filter(|w| *w == needle).count();
        // Keep a partial match's bytes for the next chunk, never a whole one.
        window.drain(..window.len().saturating_sub(needle.len() - 1));
        peak = peak.max(rss_kib(server.pid()));
    }
    eprintln!("listing 30,000 tasks: resident memory {before} KiB before, {peak} KiB at most while streaming");
    assert_eq!(listed, 30_000);
    assert!(peak < before + 64 * 1024, "memory rose by {} KiB while listing", peak - before);
}
