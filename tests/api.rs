//! Every endpoint over real HTTP, in both id styles, with the seed's shapes and flows.

mod common;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array().unwrap().iter().map(|v| v[key].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_database_holds_exactly_the_seed_sample_data() {
    let server = TestServer::start();
    let ventures = server.ok("/api/ventures").await;
    assert_eq!(names(&ventures, "name"), ["E-Commerce Automation", "Allbirds Automation"]);
    let allbirds = &ventures[1];
    assert_eq!(
        (allbirds["icon"].as_str(), allbirds["capitalSpent"].as_f64(), allbirds["capitalBudget"].as_f64()),
        (Some("👟"), Some(45.0), Some(80.0))
    );
    assert_eq!(ventures[0]["icon"], "🛒");
    assert_eq!(ventures[0]["capitalBudget"], 100.0);

    let agents = server.ok("/api/agents").await;
    assert_eq!(names(&agents, "id"), ["agent-main", "agent-telegram"]);
    assert_eq!(names(&agents, "name"), ["Main Agent", "Telegram Bot"]);
    assert!(agents.as_array().unwrap().iter().all(|a| a["status"] == "online"));

    let tasks = server.ok("/api/tasks").await;
    assert_eq!(
        names(&tasks, "title"),
        ["Set up web scraper for Allbirds product pages", "Research trending products", "Optimize product listings"]
    );
    assert_eq!(names(&tasks, "priority"), ["high", "medium", "low"]);
    assert!(tasks.as_array().unwrap().iter().all(|t| t["status"] == "queue"));
    assert_eq!(tasks[0]["estimatedCost"], 5.0);

    let activities = server.ok("/api/activities").await;
    assert_eq!(activities.as_array().unwrap().len(), 2);
    assert!(activities.as_array().unwrap().iter().all(|a| a["type"] == "note"));
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_have_every_field_with_nulls_and_js_timestamps() {
    let server = TestServer::start();
    let task = &server.ok("/api/tasks").await[1];
    for key in [
        "id",
        "title",
        "description",
        "status",
        "priority",
        "estimatedCost",
        "actualCost",
        "tags",
        "output",
        "error",
        "assignedTo",
        "ventureId",
        "venture",
        "attempts",
        "maxAttempts",
        "leaseExpiresAt",
        "claimedAt",
        "createdAt",
        "updatedAt",
        "completedAt",
    ] {
        assert!(task.get(key).is_some(), "task lacks {key}: {task}");
    }
    assert_eq!(task["output"], Value::Null);
    assert_eq!(task["tags"], "[\"research\"]");
    assert_eq!(task["venture"], json!({"id": "clxyz-ecommerce", "name": "E-Commerce Automation", "icon": "🛒"}));
    let created = task["createdAt"].as_str().unwrap();
    assert_eq!(created.len(), 24, "{created}");
    assert!(created.ends_with('Z') && created.as_bytes()[19] == b'.', "{created}");

    let agent = &server.ok("/api/agents").await[0];
    for key in [
        "id",
        "name",
        "status",
        "model",
        "currentTask",
        "tokensUsed",
        "maxTokens",
        "sessionsCount",
        "lastActiveAt",
        "createdAt",
        "updatedAt",
    ] {
        assert!(agent.get(key).is_some(), "agent lacks {key}");
    }
    let venture = &server.ok("/api/ventures").await[0];
    for key in [
        "id",
        "name",
        "icon",
        "status",
        "priority",
        "capitalSpent",
        "capitalBudget",
        "description",
        "createdAt",
        "updatedAt",
    ] {
        assert!(venture.get(key).is_some(), "venture lacks {key}");
    }
    let activity = &server.ok("/api/activities").await[0];
    for key in ["id", "type", "title", "description", "ventureId", "taskId", "agentId", "createdAt"] {
        assert!(activity.get(key).is_some(), "activity lacks {key}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_readme_agent_workflow_works_verbatim() {
    let server = TestServer::start();
    let (status, task) =
        server.post("/api/tasks/claim", json!({"agentId": "agent-main", "agentName": "Main Agent"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(task["id"], "clxyz123");
    assert_eq!(task["title"], "Set up web scraper for Allbirds product pages");
    assert_eq!((task["status"].as_str(), task["assignedTo"].as_str()), (Some("active"), Some("agent-main")));
    assert_eq!(task["venture"]["name"], "Allbirds Automation");
    assert_eq!(task["attempts"], 1);
    assert!(task["leaseExpiresAt"].is_string() && task["claimedAt"].is_string());
    let agent = server.ok("/api/agents/agent-main").await;
    assert_eq!((agent["status"].as_str(), agent["currentTask"].as_str()), (Some("busy"), Some("clxyz123")));

    let (status, done) = server
        .post(
            "/api/tasks/complete",
            json!({"taskId": "clxyz123", "agentId": "agent-main", "output": "Scraper created and tested successfully", "actualCost": 4.50}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["actualCost"], 4.5);
    assert!(done["completedAt"].is_string());
    let allbirds = server.ok("/api/ventures/clxyz-allbirds").await;
    assert_eq!(allbirds["capitalSpent"], 49.5);
    let agent = server.ok("/api/agents/agent-main").await;
    assert_eq!((agent["status"].as_str(), agent["currentTask"].clone()), (Some("online"), Value::Null));
    let kinds = names(&server.ok("/api/activities?limit=2").await, "type");
    assert_eq!(kinds, ["task_completed", "task_claimed"]);

    // The failure path: the task goes back to the queue, nothing is charged.
    let (_, next) = server.post("/api/tasks/claim", json!({"agentId": "agent-main"})).await;
    assert_eq!(next["title"], "Research trending products");
    let id = next["id"].as_str().unwrap();
    let (status, failed) = server
        .post(
            "/api/tasks/complete",
            json!({"taskId": id, "agentId": "agent-main", "error": "Website blocked the scraper"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((failed["status"].as_str(), failed["assignedTo"].clone()), (Some("queue"), Value::Null));
    assert_eq!(failed["error"], "Website blocked the scraper");
    assert_eq!(server.ok("/api/ventures/clxyz-ecommerce").await["capitalSpent"], 0.0);
    assert_eq!(server.ok("/api/activities?limit=1").await[0]["type"], "task_failed");

    // The seed's create example names its venture by a fixed id.
    let (status, created) = server
        .post(
            "/api/tasks",
            json!({"title": "Analyze competitor pricing", "description": "Scrape top 10 competitors and compare prices", "ventureId": "clxyz-ecommerce", "priority": "high", "estimatedCost": 6}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        (created["status"].as_str(), created["maxAttempts"].as_u64(), created["attempts"].as_u64()),
        (Some("queue"), Some(3), Some(0))
    );

    // Phase 4 of the seed: register an agent.
    let (status, agent) = server
        .post("/api/agents", json!({"id": "agent-worker-1", "name": "Worker Bot 1", "model": "gpt-4", "status": "online", "maxTokens": 150000}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!((agent["model"].as_str(), agent["maxTokens"].as_u64()), (Some("gpt-4"), Some(150000)));
    let (status, again) = server.post("/api/agents", json!({"id": "agent-worker-1", "model": "gpt-5"})).await;
    assert_eq!(status, StatusCode::OK, "an upsert of a known agent is 200");
    assert_eq!((again["name"].as_str(), again["model"].as_str()), (Some("Worker Bot 1"), Some("gpt-5")));
}

#[tokio::test(flavor = "multi_thread")]
async fn both_id_styles_work_for_every_collection() {
    let server = TestServer::start();
    // Ventures.
    let (s, v) = server.post("/api/ventures", json!({"id": "v1", "name": "One"})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        (v["icon"].as_str(), v["status"].as_str(), v["priority"].as_str(), v["capitalBudget"].as_f64()),
        (Some("🚀"), Some("active"), Some("medium"), Some(0.0))
    );
    assert_eq!(server.patch("/api/ventures", json!({"id": "v1", "name": "Uno"})).await.1["name"], "Uno");
    assert_eq!(server.patch("/api/ventures?id=v1", json!({"icon": "1️⃣"})).await.1["icon"], "1️⃣");
    assert_eq!(server.patch("/api/ventures/v1", json!({"capitalBudget": 10})).await.1["capitalBudget"], 10.0);
    assert_eq!(server.ok("/api/ventures/v1").await["name"], "Uno");

    // Tasks.
    for (id, path_style) in [("t1", "body"), ("t2", "query"), ("t3", "path")] {
        let (s, _) = server.post("/api/tasks", json!({"id": id, "title": id, "ventureId": "v1"})).await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, t) = match path_style {
            "body" => server.patch("/api/tasks", json!({"id": id, "priority": "high"})).await,
            "query" => server.patch(&format!("/api/tasks?id={id}"), json!({"priority": "high"})).await,
            _ => server.patch(&format!("/api/tasks/{id}"), json!({"priority": "high"})).await,
        };
        assert_eq!((s, t["priority"].as_str()), (StatusCode::OK, Some("high")), "{path_style}");
        assert_eq!(server.ok(&format!("/api/tasks/{id}")).await["id"], id);
    }
    let (s, deleted) = server.call(reqwest::Method::DELETE, "/api/tasks", Some(json!({"id": "t1"}))).await;
    assert_eq!((s, deleted["id"].as_str()), (StatusCode::OK, Some("t1")));
    assert_eq!(server.delete("/api/tasks?id=t2").await.1["id"], "t2");
    assert_eq!(server.delete("/api/tasks/t3").await.1["id"], "t3");
    assert_eq!(server.get("/api/tasks/t3").await.0, StatusCode::NOT_FOUND);

    // Agents.
    server.post("/api/agents", json!({"id": "a1", "name": "A"})).await;
    assert_eq!(server.patch("/api/agents", json!({"id": "a1", "model": "m1"})).await.1["model"], "m1");
    assert_eq!(server.patch("/api/agents?id=a1", json!({"tokensUsed": 7})).await.1["tokensUsed"], 7);
    assert_eq!(server.patch("/api/agents/a1", json!({"status": "error"})).await.1["status"], "error");
    assert_eq!(server.ok("/api/agents/a1").await["status"], "error");
    assert_eq!(server.delete("/api/agents?id=a1").await.1["id"], "a1");
    server.post("/api/agents", json!({"id": "a2", "name": "B"})).await;
    assert_eq!(server.delete("/api/agents/a2").await.1["id"], "a2");
    assert_eq!(server.get("/api/agents/a2").await.0, StatusCode::NOT_FOUND);

    // Activities: GET only by id.
    let (s, a) = server.post("/api/activities", json!({"title": "hello", "ventureId": "v1"})).await;
    assert_eq!((s, a["type"].as_str()), (StatusCode::CREATED, Some("note")));
    let id = a["id"].as_str().unwrap();
    assert_eq!(server.ok(&format!("/api/activities/{id}")).await["title"], "hello");
    assert_eq!(server.delete(&format!("/api/activities/{id}")).await.0, StatusCode::METHOD_NOT_ALLOWED);

    // Ventures last: deleting removes its tasks.
    server.post("/api/tasks", json!({"id": "t4", "title": "t4", "ventureId": "v1"})).await;
    assert_eq!(server.delete("/api/ventures?id=v1").await.1["id"], "v1");
    assert_eq!(server.get("/api/tasks/t4").await.0, StatusCode::NOT_FOUND);
    let (s, _) = server.post("/api/ventures", json!({"id": "v2", "name": "Two"})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(server.call(reqwest::Method::DELETE, "/api/ventures", Some(json!({"id": "v2"}))).await.1["id"], "v2");
}

#[tokio::test(flavor = "multi_thread")]
async fn task_lists_filter_and_page_oldest_first() {
    let server = TestServer::start();
    for i in 0..5 {
        let priority = if i % 2 == 0 { "low" } else { "high" };
        server
            .post(
                "/api/tasks",
                json!({"id": format!("p{i}"), "title": "x", "ventureId": "clxyz-allbirds", "priority": priority}),
            )
            .await;
    }
    let all = server.ok("/api/tasks").await;
    assert_eq!(all.as_array().unwrap().len(), 8);
    let mine = server.ok("/api/tasks?ventureId=clxyz-allbirds&priority=low").await;
    assert_eq!(names(&mine, "id"), ["p0", "p2", "p4"]);
    assert_eq!(names(&server.ok("/api/tasks?ventureId=clxyz-allbirds&limit=2&offset=2").await, "id"), ["p1", "p2"]);
    assert_eq!(server.ok("/api/tasks?ventureId=nope").await, json!([]));
    assert_eq!(server.ok("/api/tasks?assignedTo=nobody").await, json!([]));
    server.post("/api/tasks/claim", json!({"agentId": "agent-telegram"})).await;
    let held = server.ok("/api/tasks?assignedTo=agent-telegram&status=active").await;
    assert_eq!(names(&held, "id"), ["clxyz123"]);
    assert_eq!(server.ok("/api/tasks?status=queue").await.as_array().unwrap().len(), 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn activities_page_back_and_filter() {
    let server = TestServer::start();
    for i in 0..5 {
        server
            .post("/api/activities", json!({"title": format!("n{i}"), "type": "custom", "agentId": "agent-main"}))
            .await;
    }
    let page = server.ok("/api/activities?type=custom&limit=2").await;
    assert_eq!(names(&page, "title"), ["n4", "n3"]);
    let before = page[1]["id"].as_str().unwrap();
    let next = server.ok(&format!("/api/activities?type=custom&limit=2&before={before}")).await;
    assert_eq!(names(&next, "title"), ["n2", "n1"]);
    assert_eq!(server.ok("/api/activities?agentId=agent-main").await.as_array().unwrap().len(), 5);
    assert_eq!(server.ok("/api/activities?taskId=unknown").await, json!([]));
    assert_eq!(server.ok("/api/activities?before=unknown").await, json!([]));
    assert_eq!(server.ok("/api/activities").await.as_array().unwrap().len(), 7);

    let (s, a) = server.post("/api/activities", json!({"id": "mine", "title": "chosen id"})).await;
    assert_eq!((s, a["id"].as_str()), (StatusCode::CREATED, Some("mine")));
    let (s, e) = server.post("/api/activities", json!({"id": "mine", "title": "again"})).await;
    assert_eq!((s, e["code"].as_str()), (StatusCode::CONFLICT, Some("already_exists")));

    // Racing creates with one id: exactly one is acknowledged, and it is the one logged.
    let racers = (0..8).map(|i| server.post("/api/activities", json!({"id": "raced", "title": format!("racer {i}")})));
    let answers = futures_util::future::join_all(racers).await;
    let won: Vec<&Value> = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).map(|(_, a)| a).collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    assert!(answers.iter().all(|(s, e)| *s == StatusCode::CREATED || e["code"] == "already_exists"));
    assert_eq!(server.ok("/api/activities/raced").await["title"], won[0]["title"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_status_is_an_operator_action_that_never_charges() {
    let server = TestServer::start();
    let (_, task) = server.post("/api/tasks/claim", json!({"agentId": "agent-main"})).await;
    assert_eq!(task["id"], "clxyz123");
    // active -> queue frees the agent.
    let (s, t) = server.patch("/api/tasks/clxyz123", json!({"status": "queue"})).await;
    assert_eq!((s, t["status"].as_str(), t["assignedTo"].clone()), (StatusCode::OK, Some("queue"), Value::Null));
    assert_eq!(server.ok("/api/agents/agent-main").await["status"], "online");
    // active only by a claim.
    let (s, e) = server.patch("/api/tasks/clxyz123", json!({"status": "active"})).await;
    assert_eq!(
        (s, e["code"].as_str(), e["field"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_transition"), Some("status"))
    );
    // queue -> completed by hand: no charge.
    let (s, t) = server.patch("/api/tasks/clxyz123", json!({"status": "completed"})).await;
    assert_eq!((s, t["status"].as_str()), (StatusCode::OK, Some("completed")));
    assert_eq!(server.ok("/api/ventures/clxyz-allbirds").await["capitalSpent"], 45.0);
    // failed -> queue keeps attempts (the fencing token never repeats) and grants a fresh
    // allowance of claims.
    let (_, t) = server.post("/api/tasks/claim", json!({"agentId": "agent-main"})).await;
    let id = t["id"].as_str().unwrap().to_owned();
    let (_, t) = server.patch(&format!("/api/tasks/{id}"), json!({"status": "failed"})).await;
    assert_eq!(
        (t["status"].as_str(), t["assignedTo"].as_str(), t["attempts"].as_u64()),
        (Some("failed"), Some("agent-main"), Some(1))
    );
    let (_, t) = server.patch(&format!("/api/tasks/{id}"), json!({"status": "queue"})).await;
    assert_eq!(
        (t["status"].as_str(), t["attempts"].as_u64(), t["maxAttempts"].as_u64()),
        (Some("queue"), Some(1), Some(4))
    );
    // Deleting an active task frees its agent.
    let (_, t) = server.post("/api/tasks/claim", json!({"agentId": "agent-telegram"})).await;
    server.delete(&format!("/api/tasks/{}", t["id"].as_str().unwrap())).await;
    let agent = server.ok("/api/agents/agent-telegram").await;
    assert_eq!((agent["status"].as_str(), agent["currentTask"].clone()), (Some("online"), Value::Null));
    assert_eq!(server.ok("/api/activities?type=task_deleted").await.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_agent_requeues_its_tasks_and_a_busy_venture_refuses_deletion() {
    let server = TestServer::start();
    let (_, t) = server.post("/api/tasks/claim", json!({"agentId": "agent-x", "agentName": "X"})).await;
    let agent = server.ok("/api/agents/agent-x").await;
    assert_eq!((agent["name"].as_str(), agent["status"].as_str()), (Some("X"), Some("busy")));
    assert_eq!(server.ok("/api/activities?type=agent_registered").await.as_array().unwrap().len(), 1);
    let (s, e) = server.delete("/api/ventures/clxyz-allbirds").await;
    assert_eq!((s, e["code"].as_str()), (StatusCode::CONFLICT, Some("venture_in_use")));
    server.delete("/api/agents/agent-x").await;
    let task = server.ok(&format!("/api/tasks/{}", t["id"].as_str().unwrap())).await;
    assert_eq!((task["status"].as_str(), task["assignedTo"].clone()), (Some("queue"), Value::Null));
    assert_eq!(server.delete("/api/ventures/clxyz-allbirds").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_metrics_and_dashboard_answer() {
    let server = TestServer::start();
    assert_eq!(server.ok("/healthz").await["status"], "ok");
    assert_eq!(server.ok("/readyz").await["status"], "ready");
    server.post("/api/tasks/claim", json!({"agentId": "a"})).await;
    server.post("/api/tasks/claim", json!({"agentId": "a", "ventureId": "clxyz-allbirds"})).await;
    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = metrics.as_str().unwrap();
    for needle in [
        "mission_control_claims_total{result=\"claimed\"} 1",
        "mission_control_claims_total{result=\"empty\"} 1",
        "mission_control_claim_duration_seconds_bucket",
        "mission_control_persist_batch_size_bucket",
        "mission_control_persist_commit_duration_seconds_bucket",
        "mission_control_persist_pending",
        "mission_control_http_requests_total{method=\"POST\",route=\"/api/tasks/claim\",status=\"200\"} 1",
        "mission_control_http_request_duration_seconds_bucket{route=\"/api/tasks/claim\"",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    // Gauges are refreshed on the scheduler's tick.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let text = server.get("/metrics").await.1.as_str().unwrap().to_owned();
    assert!(text.contains("mission_control_queue_depth{priority=\"medium\"} 1"), "{text}");
    assert!(text.contains("mission_control_tasks{status=\"active\"} 1"), "{text}");
    let page = server.client.get(format!("{}/", server.base)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
}

/// Alerts can be written before anything happens: every family exists from the start with
/// a HELP line, and the per-venture and fleet gauges say what an operator alerts on.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_for_alerts_exist_from_the_start_and_follow_the_fleet() {
    let server = TestServer::start();
    let text = server.get("/metrics").await.1.as_str().unwrap().to_owned();
    for family in [
        "mission_control_claims_total",
        "mission_control_completions_total",
        "mission_control_lease_expiries_total",
        "mission_control_pruned_total",
        "mission_control_persist_failures_total",
        "mission_control_claim_duration_seconds",
        "mission_control_persist_batch_size",
        "mission_control_persist_commit_duration_seconds",
    ] {
        assert!(text.contains(&format!("# HELP {family} ")), "no HELP for {family}:\n{text}");
        assert!(text.lines().any(|l| l.starts_with(family)), "no series of {family} yet:\n{text}");
    }
    assert!(text.contains("mission_control_completions_total{outcome=\"failed\"} 0"), "{text}");
    // The gauges come with the scheduler's first ticks.
    for needle in [
        "mission_control_venture_capital{venture=\"clxyz-allbirds\",kind=\"spent\"} 45",
        "mission_control_venture_capital{venture=\"clxyz-allbirds\",kind=\"budget\"} 80",
        "mission_control_venture_queued{venture=\"clxyz-ecommerce\"} 2",
        "mission_control_agents{status=\"online\"} 2",
    ] {
        let (name, value) = needle.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let mut seen = None;
        for _ in 0..100 {
            seen = server.metric(name).await;
            if seen == Some(value) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(seen, Some(value), "{name}");
    }
    assert!(server.metric("mission_control_oldest_queued_seconds").await.is_some());

    // A failure report counts against its venture; a budget that holds work back says so.
    let (_, task) = server.post("/api/tasks/claim", json!({"agentId": "a", "ventureId": "clxyz-allbirds"})).await;
    let report = json!({"taskId": task["id"], "agentId": "a", "error": "blocked"});
    assert_eq!(server.post("/api/tasks/complete", report).await.0, StatusCode::OK);
    assert_eq!(server.patch("/api/ventures/clxyz-allbirds", json!({"capitalSpent": 79})).await.0, StatusCode::OK);
    let mut seen = (None, None);
    for _ in 0..100 {
        seen = (
            server.metric("mission_control_failures_total{venture=\"clxyz-allbirds\"}").await,
            server.metric("mission_control_budget_held_tasks{venture=\"clxyz-allbirds\"}").await,
        );
        if seen == (Some(1.0), Some(1.0)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, (Some(1.0), Some(1.0)), "one failure; the $5 scraper does not fit the $1 left");
}

/// Six tasks over two ventures, created in id order: `t0`, `t3` and `t1` completed, `t2`
/// failed, `t4` queued, `t5` active; then `t6` queued.
async fn two_ventures_with_history(server: &TestServer) {
    for v in ["va", "vb"] {
        let (s, body) = server.post("/api/ventures", json!({"id": v, "name": v})).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    for i in 0..7 {
        let (id, venture) = (format!("t{i}"), if i % 2 == 0 { "va" } else { "vb" });
        let (s, body) =
            server.post("/api/tasks", json!({"id": id, "title": id, "ventureId": venture, "maxAttempts": 1})).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        if i > 5 {
            continue;
        }
        let (s, claimed) = server.post("/api/tasks/claim", json!({"agentId": "a1", "ventureId": venture})).await;
        assert_eq!((s, claimed["id"].as_str()), (StatusCode::OK, Some(id.as_str())), "{claimed}");
        let outcome = match i {
            2 => json!({"taskId": id, "agentId": "a1", "error": "it broke"}),
            4 => {
                let (s, body) = server.patch(&format!("/api/tasks/{id}"), json!({"status": "queue"})).await;
                assert_eq!(s, StatusCode::OK, "{body}");
                continue;
            }
            5 => continue,
            _ => json!({"taskId": id, "agentId": "a1", "output": "done"}),
        };
        let (s, body) = server.post("/api/tasks/complete", outcome).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn task_lists_run_newest_first_with_order_desc() {
    let server = TestServer::start_with(&["--no-seed"]);
    two_ventures_with_history(&server).await;
    let asc = names(&server.ok("/api/tasks").await, "id");
    assert_eq!(asc, ["t0", "t1", "t2", "t3", "t4", "t5", "t6"]);
    assert_eq!(names(&server.ok("/api/tasks?order=asc").await, "id"), asc);
    let desc = names(&server.ok("/api/tasks?order=desc").await, "id");
    assert_eq!(desc, asc.iter().rev().cloned().collect::<Vec<_>>());

    // Pages of two with the cursor walk the whole list once, newest first.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(after) => format!("/api/tasks?order=desc&limit=2&after={after}"),
            None => "/api/tasks?order=desc&limit=2".to_owned(),
        };
        let page = names(&server.ok(&path).await, "id");
        if page.is_empty() {
            break;
        }
        cursor = page.last().cloned();
        walked.extend(page);
    }
    assert_eq!(walked, desc);

    // Filters, cursors on finished and unfinished tasks, offset, fields.
    let cases = [
        ("status=completed", vec!["t3", "t1", "t0"]),
        ("status=completed&limit=2", vec!["t3", "t1"]),
        ("status=completed&after=t3", vec!["t1", "t0"]),
        ("status=completed&after=t4", vec!["t3", "t1", "t0"]),
        ("status=queue&after=t6", vec!["t4"]),
        ("ventureId=va", vec!["t6", "t4", "t2", "t0"]),
        ("ventureId=vb&status=completed", vec!["t3", "t1"]),
        ("assignedTo=a1", vec!["t5", "t3", "t2", "t1", "t0"]),
        ("status=failed", vec!["t2"]),
        ("offset=1&limit=2", vec!["t5", "t4"]),
        ("after=t0", vec![]),
        ("ventureId=nope", vec![]),
    ];
    for (query, expected) in cases {
        assert_eq!(names(&server.ok(&format!("/api/tasks?order=desc&{query}")).await, "id"), expected, "{query}");
    }
    let light = server.ok("/api/tasks?order=desc&status=completed&limit=1&fields=id,status").await;
    assert_eq!(light, json!([{"id": "t3", "status": "completed"}]));

    for bad in ["order=up", "order=DESC", "order=desc&order=1"] {
        let (s, body) = server.get(&format!("/api/tasks?{bad}")).await;
        assert_eq!(
            (s, body["code"].as_str(), body["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("validation_error"), Some("order")),
            "{bad}: {body}"
        );
    }
    let (s, body) = server.get("/api/tasks?order=desc&after=no-such-task").await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::NOT_FOUND, Some("after")), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ventures_count_their_tasks_by_status_history_included() {
    let server = TestServer::start_with(&["--no-seed"]);
    two_ventures_with_history(&server).await;
    let counts = |venture: &Value| venture["taskCounts"].clone();
    let va = json!({"queue": 2, "blocked": 0, "active": 0, "completed": 1, "failed": 1, "cancelled": 0});
    let vb = json!({"queue": 0, "blocked": 0, "active": 1, "completed": 2, "failed": 0, "cancelled": 0});
    assert_eq!(counts(&server.ok("/api/ventures/va").await), va);
    assert_eq!(counts(&server.ok("/api/ventures/vb").await), vb);
    let listed = server.ok("/api/ventures").await;
    assert_eq!(listed.as_array().unwrap().iter().map(counts).collect::<Vec<_>>(), [va, vb]);

    // A completion, a cancel and a requeue of a finished task move the counts.
    let done = json!({"taskId": "t5", "agentId": "a1", "output": "done"});
    assert_eq!(server.post("/api/tasks/complete", done).await.0, StatusCode::OK);
    assert_eq!(server.patch("/api/tasks/t6", json!({"status": "cancelled"})).await.0, StatusCode::OK);
    assert_eq!(server.patch("/api/tasks/t2", json!({"status": "queue"})).await.0, StatusCode::OK);
    let va = json!({"queue": 2, "blocked": 0, "active": 0, "completed": 1, "failed": 0, "cancelled": 1});
    let vb = json!({"queue": 0, "blocked": 0, "active": 0, "completed": 3, "failed": 0, "cancelled": 0});
    assert_eq!(counts(&server.ok("/api/ventures/va").await), va);
    assert_eq!(counts(&server.ok("/api/ventures/vb").await), vb);
    // The sum over ventures is the metric, status by status (published every so often).
    let expected = [("queue", 2.0), ("active", 0.0), ("completed", 4.0), ("failed", 0.0), ("cancelled", 1.0)];
    common::until("the task gauges agree with the counts", async || {
        for (status, n) in expected {
            if server.metric(&format!("mission_control_tasks{{status=\"{status}\"}}")).await != Some(n) {
                return false;
            }
        }
        true
    })
    .await;
}
