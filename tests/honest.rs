//! "Honest answers": what the API says is true, over real HTTP.

mod common;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn create_venture(server: &TestServer, id: &str, budget: f64) {
    let (s, body) = server.post("/api/ventures", json!({"id": id, "name": id, "capitalBudget": budget})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}

async fn create_task(server: &TestServer, id: &str, venture: &str, max_attempts: u32) {
    let (s, body) = server
        .post(
            "/api/tasks",
            json!({"id": id, "title": format!("job {id}"), "ventureId": venture, "maxAttempts": max_attempts}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}

/// Claims as `agent` and returns the task it got.
async fn claim(server: &TestServer, agent: &str) -> Value {
    let (s, task) = server.post("/api/tasks/claim", json!({"agentId": agent})).await;
    assert_eq!(s, StatusCode::OK, "{task}");
    task
}

/// The refusal's status and code.
async fn refusal(server: &TestServer, path: &str, body: Value) -> (StatusCode, String) {
    let (s, answer) = server.post(path, body).await;
    (s, answer["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_attempt_an_agent_that_no_longer_holds_the_task_is_not_its_holder() {
    let server = TestServer::start_with(&["--no-seed"]);
    create_venture(&server, "v", 0.0).await;
    create_task(&server, "t", "v", 3).await;
    claim(&server, "first").await;
    let (s, _) = server.post("/api/tasks/complete", json!({"taskId": "t", "agentId": "first", "error": "boom"})).await;
    assert_eq!(s, StatusCode::OK);
    claim(&server, "second").await;

    let conflict = (StatusCode::CONFLICT, "not_holder".to_owned());
    let beat = json!({"taskId": "t", "agentId": "first"});
    assert_eq!(refusal(&server, "/api/tasks/heartbeat", beat).await, conflict);
    let report = json!({"taskId": "t", "agentId": "first", "error": "boom"});
    assert_eq!(refusal(&server, "/api/tasks/complete", report).await, conflict);

    // With the old attempt given, the answer says it is stale.
    let stale = (StatusCode::CONFLICT, "stale_lease".to_owned());
    let beat = json!({"taskId": "t", "agentId": "first", "attempt": 1});
    assert_eq!(refusal(&server, "/api/tasks/heartbeat", beat).await, stale);
    let report = json!({"taskId": "t", "agentId": "first", "attempt": 1, "error": "boom"});
    assert_eq!(refusal(&server, "/api/tasks/complete", report).await, stale);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_takes_one_report_repeats_are_answered_and_different_reports_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mission-control.db");
    let server = TestServer::start_on(&db, &["--no-seed"]);
    create_venture(&server, "v", 0.0).await;
    create_task(&server, "ok", "v", 3).await;
    create_task(&server, "bad", "v", 3).await;
    claim(&server, "agent").await;
    claim(&server, "agent").await;
    let success = json!({"taskId": "ok", "agentId": "agent", "actualCost": 2.5, "output": "done"});
    let failure = json!({"taskId": "bad", "agentId": "agent", "actualCost": 1.0, "error": "boom"});
    for report in [&success, &failure] {
        let (s, body) = server.post("/api/tasks/complete", report.clone()).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }

    let differently = |report: &Value, field: &str, value: Value| {
        let mut other = report.clone();
        other[field] = value;
        other
    };
    let conflicts = [
        differently(&success, "actualCost", json!(3.0)),
        differently(&success, "output", json!("other")),
        differently(&success, "error", json!("boom after all")),
        differently(&failure, "error", json!("another error")),
        differently(&failure, "actualCost", Value::Null),
    ];
    // The finished task is answered from memory first, then from the database after a restart.
    let mut server = server;
    for round in ["before", "after"] {
        let before = server.state().await;
        for report in [&success, &failure] {
            let (s, body) = server.post("/api/tasks/complete", report.clone()).await;
            assert_eq!(s, StatusCode::OK, "{round} restart, repeat of {report}: {body}");
        }
        for report in &conflicts {
            let (s, body) = server.post("/api/tasks/complete", report.clone()).await;
            assert_eq!(s, StatusCode::CONFLICT, "{round} restart, {report}: {body}");
            assert_eq!(body["code"], "conflicting_report", "{body}");
        }
        assert_eq!(server.state().await, before, "{round} restart, a repeat or a refused report changed something");
        if round == "before" {
            assert!(server.terminate().success());
            server = TestServer::start_on(&db, &["--no-seed"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_attempts_are_charged_what_they_cost_and_the_task_shows_the_total() {
    let server = TestServer::start_with(&["--no-seed"]);
    create_venture(&server, "v", 0.0).await;
    create_task(&server, "t", "v", 4).await;
    let reports = [
        (json!({"error": "out of context", "actualCost": 3}), 3.0),
        (json!({"error": "timed out"}), 3.0),
        (json!({"actualCost": 2.5, "output": "done"}), 5.5),
    ];
    for (report, spent) in reports {
        let task = claim(&server, "agent").await;
        let mut body = json!({"taskId": "t", "agentId": "agent", "attempt": task["attempts"]});
        body.as_object_mut().unwrap().extend(report.as_object().unwrap().clone());
        let (s, answer) = server.post("/api/tasks/complete", body).await;
        assert_eq!(s, StatusCode::OK, "{answer}");
        assert_eq!(answer["actualCost"], spent, "the task's actualCost is the total over its attempts: {answer}");
        let venture = server.ok("/api/ventures/v").await;
        assert_eq!(venture["capitalSpent"], spent, "after {report}: {venture}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_at_its_token_limit_takes_no_new_task_but_finishes_what_it_holds() {
    let server = TestServer::start_with(&["--no-seed"]);
    create_venture(&server, "v", 0.0).await;
    for id in ["held", "next"] {
        create_task(&server, id, "v", 3).await;
    }
    let (s, body) = server.post("/api/agents", json!({"id": "spender", "name": "spender", "maxTokens": 1000})).await;
    assert!(s.is_success(), "{body}");
    claim(&server, "spender").await;
    let (s, body) = server.patch("/api/agents/spender", json!({"tokensUsed": 1000})).await;
    assert_eq!(s, StatusCode::OK, "{body}");

    let limit = (StatusCode::CONFLICT, "token_limit".to_owned());
    assert_eq!(refusal(&server, "/api/tasks/claim", json!({"agentId": "spender"})).await, limit);
    let (s, body) = server.post("/api/tasks/heartbeat", json!({"taskId": "held", "agentId": "spender"})).await;
    assert_eq!(s, StatusCode::OK, "the task it holds goes on: {body}");
    let (s, body) = server.post("/api/tasks/complete", json!({"taskId": "held", "agentId": "spender"})).await;
    assert_eq!(s, StatusCode::OK, "the task it holds goes on: {body}");
    assert_eq!(server.ok("/api/tasks/next").await["status"], "queue");
    // Another agent takes the work.
    assert_eq!(claim(&server, "other").await["id"], "next");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_claim_is_not_handed_work_once_its_agent_reaches_its_token_limit() {
    let server = std::sync::Arc::new(TestServer::start_with(&["--no-seed"]));
    create_venture(&server, "v", 0.0).await;
    create_task(&server, "first", "v", 3).await;
    let (s, body) = server.post("/api/agents", json!({"id": "spender", "name": "spender", "maxTokens": 1000})).await;
    assert!(s.is_success(), "{body}");
    claim(&server, "spender").await;
    let parked = {
        let server = server.clone();
        tokio::spawn(
            async move { server.post("/api/tasks/claim", json!({"agentId": "spender", "waitMs": 10000})).await },
        )
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let report = json!({"taskId": "first", "agentId": "spender", "tokensUsed": 1000});
    let (s, body) = server.post("/api/tasks/complete", report).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    create_task(&server, "second", "v", 3).await;
    let (s, body) = parked.await.unwrap();
    assert_eq!((s, body["code"].as_str()), (StatusCode::CONFLICT, Some("token_limit")), "{body}");
    assert_eq!(server.ok("/api/tasks/second").await["status"], "queue");
}

/// The newest activities of a type.
async fn activities(server: &TestServer, kind: &str) -> Vec<Value> {
    server.ok(&format!("/api/activities?type={kind}")).await.as_array().expect("a list").clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_error_makes_a_short_failure_title_that_names_the_task() {
    let server = TestServer::start_with(&["--no-seed"]);
    create_venture(&server, "v", 0.0).await;
    create_task(&server, "t", "v", 1).await;
    claim(&server, "agent").await;
    let traceback = format!("ValueError: bad input\n{}", "  File \"agent.py\", line 1, in run\n".repeat(3_000));
    assert!(traceback.len() > 95_000);
    let report = json!({"taskId": "t", "agentId": "agent", "error": traceback});
    let (s, body) = server.post("/api/tasks/complete", report).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["error"], traceback, "the whole error stays on the task");

    let failed = activities(&server, "task_failed").await;
    let title = failed[0]["title"].as_str().unwrap();
    assert!(title.chars().count() <= 1_000, "a title of {} characters", title.chars().count());
    assert_eq!(title, "Task failed: job t: ValueError: bad input");
}

#[tokio::test(flavor = "multi_thread")]
async fn long_titles_are_cut_to_the_limit() {
    let server = TestServer::start_with(&["--no-seed"]);
    create_venture(&server, "v", 0.0).await;
    let title = "x".repeat(1_000);
    let (s, body) =
        server.post("/api/tasks", json!({"id": "t", "title": title, "ventureId": "v", "maxAttempts": 1})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    claim(&server, "agent").await;
    let report = json!({"taskId": "t", "agentId": "agent", "error": "e".repeat(5_000)});
    let (s, body) = server.post("/api/tasks/complete", report).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    for kind in ["task_created", "task_claimed", "task_failed"] {
        let title = activities(&server, kind).await[0]["title"].as_str().unwrap().to_owned();
        assert_eq!(title.chars().count(), 1_000, "{kind}");
        assert!(title.ends_with('…'), "{kind}: a cut title says so");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn budget_spending_and_status_edits_of_a_venture_are_logged_with_old_and_new_values() {
    let server = TestServer::start_with(&["--no-seed"]);
    create_venture(&server, "v", 100.0).await;
    let edits = [
        (json!({"capitalBudget": 250}), vec!["capitalBudget 100 → 250"]),
        (json!({"capitalSpent": 12.5}), vec!["capitalSpent 0 → 12.5"]),
        (json!({"status": "paused", "capitalSpent": 0}), vec!["capitalSpent 12.5 → 0", "status active → paused"]),
    ];
    for (edit, said) in edits {
        let (s, body) = server.patch("/api/ventures/v", edit.clone()).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let logged = activities(&server, "venture_updated").await;
        let description = logged[0]["description"].as_str().unwrap_or_default();
        for words in said {
            assert!(description.contains(words), "{edit}: {description:?} lacks {words:?}");
        }
        assert_eq!(logged[0]["ventureId"], "v");
    }
    // An edit that changes none of them is not logged.
    let (s, _) = server.patch("/api/ventures/v", json!({"description": "new words"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(activities(&server, "venture_updated").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_answers_a_parked_claim_at_once_and_exits_without_waiting_it_out() {
    let server = TestServer::start_with(&["--no-seed"]);
    let (client, url) = (server.client.clone(), format!("{}/api/tasks/claim", server.base));
    let parked = tokio::spawn(async move {
        let response = client.post(url).json(&json!({"agentId": "idle", "waitMs": 25_000})).send().await;
        (response.map(|r| r.status()), std::time::Instant::now())
    });
    // Let the claim reach the server and park.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let signalled = std::time::Instant::now();
    let stopped = tokio::task::spawn_blocking(move || (server.terminate(), std::time::Instant::now()));
    let (exit, exited) = stopped.await.unwrap();
    let (answer, answered) = parked.await.unwrap();
    assert_eq!(answer.expect("the parked claim is answered"), StatusCode::NO_CONTENT);
    assert!(exit.success(), "{exit:?}");
    assert!(answered <= exited, "the parked claim was answered before the server exited");
    let took = exited - signalled;
    assert!(took < std::time::Duration::from_secs(15), "the server took {took:?} to stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_agent_not_heard_from_goes_offline_and_is_online_again_at_its_next_request() {
    let server = TestServer::start_with(&["--no-seed", "--agent-timeout", "1"]);
    let (s, body) = server.post("/api/agents", json!({"id": "quiet", "name": "quiet"})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = server.post("/api/agents/nobody/heartbeat", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");

    // A heartbeat keeps it alive past the timeout.
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let (s, agent) = server.post("/api/agents/quiet/heartbeat", json!({})).await;
        assert_eq!(s, StatusCode::OK, "{agent}");
        assert_eq!(agent["status"], "online");
    }
    // So does a claim that finds nothing, and its lastActiveAt moves.
    let seen = server.ok("/api/agents/quiet").await["lastActiveAt"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let (s, _) = server.post("/api/tasks/claim", json!({"agentId": "quiet"})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let agent = server.ok("/api/agents/quiet").await;
    assert_eq!(agent["status"], "online");
    assert_ne!(agent["lastActiveAt"], seen, "an empty claim is activity");

    // Silence: offline, and the log says so.
    tokio::time::sleep(std::time::Duration::from_millis(1_800)).await;
    assert_eq!(server.ok("/api/agents/quiet").await["status"], "offline");
    let offline = activities(&server, "agent_offline").await;
    assert_eq!(offline.len(), 1, "{offline:?}");
    assert_eq!(offline[0]["agentId"], "quiet");

    // The next request brings it back.
    let (s, _) = server.post("/api/tasks/claim", json!({"agentId": "quiet", "waitMs": 100})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(server.ok("/api/agents/quiet").await["status"], "online");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_holding_a_task_does_not_time_out() {
    let server = TestServer::start_with(&["--no-seed", "--agent-timeout", "1"]);
    create_venture(&server, "v", 0.0).await;
    create_task(&server, "t", "v", 3).await;
    claim(&server, "worker").await;
    tokio::time::sleep(std::time::Duration::from_millis(1_800)).await;
    assert_eq!(server.ok("/api/agents/worker").await["status"], "busy");
    let (s, body) = server.post("/api/tasks/complete", json!({"taskId": "t", "agentId": "worker"})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(server.ok("/api/agents/worker").await["status"], "online");
    tokio::time::sleep(std::time::Duration::from_millis(1_800)).await;
    assert_eq!(server.ok("/api/agents/worker").await["status"], "offline", "timed out once it held nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_event_shows_its_venture_as_rest_does() {
    let server = TestServer::start_with(&["--no-seed"]);
    create_venture(&server, "v", 0.0).await;
    let mut stream = common::EventStream::open(&server, None).await;
    create_task(&server, "t", "v", 3).await;
    let wait = std::time::Duration::from_secs(5);
    let event = loop {
        let event = stream.next(wait).await.expect("an event");
        if event.event == "task" {
            break event;
        }
    };
    let rest = server.ok("/api/tasks/t").await;
    assert_eq!(event.data["venture"], json!({"id": "v", "name": "v", "icon": "🚀"}));
    assert_eq!(event.data["venture"], rest["venture"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_of_zero_is_told_the_lower_bound_not_the_type_limit() {
    let server = TestServer::start_with(&["--no-seed"]);
    for path in ["/api/tasks?limit=0", "/api/tasks?offset=-1"] {
        let (s, body) = server.get(path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("of at least"), "{path}: {error}");
        assert!(!error.contains(&u64::MAX.to_string()), "{path}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_written_to_a_file_carry_no_colour_codes() {
    let server = TestServer::start_with(&["--no-seed"]);
    // The server logs its start; its standard error is a file.
    server.ok("/healthz").await;
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.is_empty(), "the server logged nothing");
    assert!(!log.contains('\u{1b}'), "colour codes in a log file:\n{log}");
}

/// Each attempt as `(attempt, agentId, outcome)`.
fn attempt_rows(attempts: &Value) -> Vec<(u64, String, String)> {
    attempts
        .as_array()
        .expect("a list")
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["agentId"].as_str().unwrap().into(),
                a["outcome"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn attempts_list_every_claim_and_how_it_ended_and_leave_with_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mission-control.db");
    let server = TestServer::start_on(&db, &["--no-seed"]);
    create_venture(&server, "v", 0.0).await;
    create_task(&server, "t", "v", 5).await;
    let (s, none) = server.get("/api/tasks/t/attempts").await;
    assert_eq!((s, none), (StatusCode::OK, json!([])));

    claim(&server, "a1").await;
    let failure = json!({"taskId": "t", "agentId": "a1", "error": "boom", "actualCost": 1.5, "tokensUsed": 10});
    let (s, body) = server.post("/api/tasks/complete", failure).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // An operator PATCH that takes the task from its holder ends the attempt `released`.
    claim(&server, "a2").await;
    let (s, body) = server.patch("/api/tasks/t", json!({"status": "queue"})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // So does deleting the agent that holds it.
    claim(&server, "a3").await;
    let (s, body) = server.delete("/api/agents/a3").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    claim(&server, "a4").await;
    let (s, attempts) = server.get("/api/tasks/t/attempts").await;
    assert_eq!(s, StatusCode::OK, "{attempts}");
    let expected = |last: &str| {
        vec![
            (1, "a1".to_owned(), "failed".to_owned()),
            (2, "a2".to_owned(), "released".to_owned()),
            (3, "a3".to_owned(), "released".to_owned()),
            (4, "a4".to_owned(), last.to_owned()),
        ]
    };
    assert_eq!(attempt_rows(&attempts), expected("active"));
    let first = &attempts[0];
    assert_eq!(
        (&first["error"], &first["actualCost"], &first["tokensUsed"]),
        (&json!("boom"), &json!(1.5), &json!(10))
    );
    assert!(first["claimedAt"].is_string() && first["endedAt"].is_string(), "{first}");
    assert!(attempts[3]["endedAt"].is_null(), "{attempts}");

    let success = json!({"taskId": "t", "agentId": "a4", "actualCost": 2.0, "tokensUsed": 7});
    let (s, body) = server.post("/api/tasks/complete", success).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // A finished task's attempts are still there, after a restart too.
    server.terminate();
    let server = TestServer::start_on(&db, &["--no-seed"]);
    let (s, attempts) = server.get("/api/tasks/t/attempts").await;
    assert_eq!(s, StatusCode::OK, "{attempts}");
    assert_eq!(attempt_rows(&attempts), expected("completed"));
    assert_eq!((&attempts[3]["actualCost"], &attempts[3]["error"]), (&json!(2), &Value::Null));

    // A lease that runs out ends its attempt `expired`.
    create_task(&server, "e", "v", 1).await;
    let (s, task) = server.post("/api/tasks/claim", json!({"agentId": "slow", "leaseSeconds": 1})).await;
    assert_eq!((s, &task["id"]), (StatusCode::OK, &json!("e")), "{task}");
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let (_, attempts) = server.get("/api/tasks/e/attempts").await;
    assert_eq!(attempt_rows(&attempts), [(1, "slow".to_owned(), "expired".to_owned())]);

    let (s, body) = server.get("/api/tasks/nope/attempts").await;
    assert_eq!((s, &body["code"]), (StatusCode::NOT_FOUND, &json!("not_found")), "{body}");
    // The attempts leave with their task.
    let (s, _) = server.delete("/api/tasks/t").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = server.get("/api/tasks/t/attempts").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    server.terminate();
    assert_eq!(common::count_rows(&db, "SELECT count(*) FROM TaskAttempt WHERE taskId = 't'"), 0);
    assert_eq!(common::count_rows(&db, "SELECT count(*) FROM TaskAttempt WHERE taskId = 'e'"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_field_or_parameter_outside_the_request_is_refused_and_a_task_sent_back_whole_is_not() {
    let server = TestServer::start_with(&["--no-seed"]);
    create_venture(&server, "v", 0.0).await;
    create_task(&server, "t", "v", 3).await;
    let unknown = |field: &str| (StatusCode::BAD_REQUEST, "unknown_field".to_owned(), field.to_owned());
    let refused = |(s, body): (StatusCode, Value)| {
        (s, body["code"].as_str().unwrap_or_default().to_owned(), body["field"].as_str().unwrap_or_default().to_owned())
    };

    let claim_body = json!({"agentId": "a", "venture_id": "v"});
    assert_eq!(refused(server.post("/api/tasks/claim", claim_body).await), unknown("venture_id"));
    let create = json!({"title": "x", "ventureId": "v", "estimated_cost": 5});
    assert_eq!(refused(server.post("/api/tasks", create).await), unknown("estimated_cost"));
    assert_eq!(refused(server.get("/api/tasks?venture=x").await), unknown("venture"));
    assert_eq!(refused(server.get("/api/tasks/t?verbose=1").await), unknown("verbose"));
    assert_eq!(refused(server.post("/api/tasks/claim?agentId=a", json!({"agentId": "a"})).await), unknown("agentId"));
    assert_eq!(refused(server.delete("/api/tasks?id=t&force=1").await), unknown("force"));
    assert_eq!(refused(server.get("/api/agents?status=busy").await), unknown("status"));
    // Nothing was claimed or created by the refusals.
    let (_, tasks) = server.get("/api/tasks").await;
    assert_eq!(tasks.as_array().map(Vec::len), Some(1), "{tasks}");
    assert_eq!(tasks[0]["status"], "queue");

    claim(&server, "a").await;
    let report = json!({"taskId": "t", "agentId": "a", "cost": 5});
    assert_eq!(refused(server.post("/api/tasks/complete", report).await), unknown("cost"));
    let beat = json!({"taskId": "t", "agentId": "a", "status": "active"});
    assert_eq!(refused(server.post("/api/tasks/heartbeat", beat).await), unknown("status"));

    // A task read with GET and sent back whole is accepted; its read-only fields are ignored.
    let (_, mut task) = server.get("/api/tasks/t").await;
    task["title"] = json!("renamed");
    let (s, updated) = server.patch("/api/tasks/t", task.clone()).await;
    assert_eq!((s, &updated["title"], &updated["status"]), (StatusCode::OK, &json!("renamed"), &json!("active")));
    let (s, updated) = server.patch("/api/tasks", task).await;
    assert_eq!((s, &updated["id"]), (StatusCode::OK, &json!("t")), "{updated}");
    // So is a venture, and `?id=` in the seed style.
    let (_, venture) = server.get("/api/ventures/v").await;
    let (s, body) = server.patch("/api/ventures?id=v", venture).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = server.patch("/api/tasks?id=t", json!({"title": "again", "bogus": 1})).await;
    assert_eq!(refused((s, body)), unknown("bogus"));
}

/// The body of `GET path` as the server wrote it.
async fn raw_body(server: &TestServer, path: &str) -> String {
    let response = server.client.get(format!("{}{path}", server.base)).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("body")
}

#[tokio::test(flavor = "multi_thread")]
async fn money_is_exact_in_sums_in_the_budget_guard_and_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("money.db");
    let server = TestServer::start_on(&db, &["--no-seed"]);
    // 1.1 + 1.1 + 1.1 is 3.3000000000000003 in binary floating point: over a budget of 3.3.
    create_venture(&server, "v", 3.3).await;
    for i in 0..3 {
        let (s, body) = server
            .post("/api/tasks", json!({"id": format!("t{i}"), "title": "t", "ventureId": "v", "estimatedCost": 1.1}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    for i in 0..3 {
        let task = claim(&server, &format!("a{i}")).await;
        assert_eq!(task["id"], format!("t{i}"), "the budget lets all three out: {task}");
    }
    let venture = raw_body(&server, "/api/ventures/v").await;
    assert!(venture.contains(r#""capitalReserved":3.3,"#), "{venture}");
    assert!(venture.contains(r#""budgetHeld":0,"#), "{venture}");

    // 20 + 3.39 is 23.389999999999997 in floating point.
    for (i, cost) in [(0, 20.0), (1, 3.39)] {
        let body = json!({"taskId": format!("t{i}"), "agentId": format!("a{i}"), "actualCost": cost});
        let (s, answer) = server.post("/api/tasks/complete", body).await;
        assert_eq!(s, StatusCode::OK, "{answer}");
    }
    let venture = raw_body(&server, "/api/ventures/v").await;
    assert!(venture.contains(r#""capitalSpent":23.39,"#), "{venture}");
    assert!(venture.contains(r#""capitalReserved":1.1,"#), "{venture}");
    let task = raw_body(&server, "/api/tasks/t1").await;
    assert!(task.contains(r#""estimatedCost":1.1,"actualCost":3.39,"#), "{task}");

    // Sums past 10^9 stay exact to the millionth.
    let (s, answer) =
        server.patch("/api/ventures/v", json!({"capitalSpent": 999999999.999999, "capitalBudget": 0})).await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    let body = json!({"taskId": "t2", "agentId": "a2", "actualCost": 0.000002});
    assert_eq!(server.post("/api/tasks/complete", body).await.0, StatusCode::OK);
    let venture = raw_body(&server, "/api/ventures/v").await;
    assert!(venture.contains(r#""capitalSpent":1000000000.000001,"#), "{venture}");

    // The file holds the amounts as numbers sqlite3 shows as they read, and a restart reads
    // them back exactly.
    server.terminate();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let shown: String =
        conn.query_row("SELECT CAST(actualCost AS TEXT) FROM Task WHERE id = 't1'", [], |r| r.get(0)).unwrap();
    assert_eq!(shown, "3.39");
    drop(conn);
    let server = TestServer::start_on(&db, &[]);
    let venture = raw_body(&server, "/api/ventures/v").await;
    assert!(venture.contains(r#""capitalSpent":1000000000.000001,"#), "{venture}");
    let task = raw_body(&server, "/api/tasks/t1").await;
    assert!(task.contains(r#""actualCost":3.39,"#), "{task}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_amount_with_more_than_six_decimal_places_is_refused_naming_its_field() {
    let server = TestServer::start_with(&["--no-seed"]);
    create_venture(&server, "v", 0.0).await;
    let refused = |(s, body): (StatusCode, Value), field: &str| {
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!((body["code"].as_str(), body["field"].as_str()), (Some("validation_error"), Some(field)), "{body}");
        assert!(body["error"].as_str().unwrap().contains("6 decimal places"), "{body}");
    };
    refused(
        server.post("/api/tasks", json!({"title": "t", "ventureId": "v", "estimatedCost": 0.1234567})).await,
        "estimatedCost",
    );
    refused(server.post("/api/ventures", json!({"name": "w", "capitalBudget": 1e-7})).await, "capitalBudget");
    refused(server.patch("/api/ventures/v", json!({"capitalSpent": 2.0000001})).await, "capitalSpent");
    create_task(&server, "t", "v", 3).await;
    claim(&server, "a").await;
    let report = json!({"taskId": "t", "agentId": "a", "actualCost": 0.0030853});
    refused(server.post("/api/tasks/complete", report).await, "actualCost");
    // Nothing changed: the task is still held, and six places are taken.
    assert_eq!(server.ok("/api/tasks/t").await["status"], "active");
    let report = json!({"taskId": "t", "agentId": "a", "actualCost": 0.003085});
    let (s, task) = server.post("/api/tasks/complete", report).await;
    assert_eq!((s, task["actualCost"].as_f64()), (StatusCode::OK, Some(0.003085)), "{task}");
    assert_eq!(server.ok("/api/ventures").await[0]["capitalSpent"], 0.003085);
}
