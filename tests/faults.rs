//! Faults: a full disk, a read-only database file, and repeated `kill -9` under load.
//!
//! The disk tests mount a small tmpfs or set the immutable attribute, so they need root on
//! Linux. Elsewhere they skip with a message, except under CI (`CI` set), where they must run.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A tmpfs of a given size, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().to_owned();
        let mounted =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&path).status();
        if mounted.is_ok_and(|s| s.success()) {
            return Some(Tmpfs { path, _dir: dir });
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the disk fault tests, but mounting a tmpfs failed (root on Linux needed)"
        );
        eprintln!("SKIPPED: mounting a tmpfs needs root on Linux; the disk fault tests did not run");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes zeros until the file system is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn create(server: &TestServer, id: &str, description: &str) -> (StatusCode, Value) {
    server.post("/api/tasks", json!({"id": id, "title": id, "ventureId": "v", "description": description})).await
}

/// Refused writes say why and when to retry; reads and `/healthz` keep working; `/readyz` fails.
async fn check_refusing_writes(server: &TestServer) {
    let response = server
        .client
        .post(format!("{}/api/tasks", server.base))
        .json(&json!({"title": "x", "ventureId": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unavailable");
    assert!(body["error"].as_str().unwrap().contains("not taking writes"), "{body}");
    assert_eq!(server.get("/api/tasks").await.0, StatusCode::OK);
    assert_eq!(server.get("/healthz").await.0, StatusCode::OK);
    let (status, ready) = server.get("/readyz").await;
    assert_eq!((status, ready["writable"].as_bool()), (StatusCode::SERVICE_UNAVAILABLE, Some(false)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers_by_itself() {
    let Some(disk) = Tmpfs::mount("8m") else { return };
    let db = disk.path.join("full.db");
    let server = TestServer::start_on(&db, &["--no-seed", "--commit-timeout-ms", "1000"]);
    server.post("/api/ventures", json!({"id": "v", "name": "v"})).await;
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        assert_eq!(create(&server, &format!("small{i}"), "").await.0, StatusCode::CREATED);
        acknowledged.push(format!("small{i}"));
    }
    fill(&disk.path.join("filler"));
    let big = "x".repeat(200_000);
    let mut refused = None;
    for i in 0..100 {
        let id = format!("big{i}");
        match create(&server, &id, &big).await {
            (StatusCode::CREATED, _) => acknowledged.push(id),
            (status, body) => {
                refused = Some((status, body));
                break;
            }
        }
    }
    let (status, body) = refused.expect("a full disk refuses a write");
    assert_eq!((status, body["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")), "{body}");
    check_refusing_writes(&server).await;

    std::fs::remove_file(disk.path.join("filler")).unwrap();
    until("the store recovers", async || server.get("/readyz").await.0 == StatusCode::OK).await;
    assert_eq!(create(&server, "after", "").await.0, StatusCode::CREATED);
    acknowledged.push("after".into());

    assert!(server.terminate().success());
    let server = TestServer::start_on(&db, &[]);
    for id in &acknowledged {
        assert_eq!(
            server.get(&format!("/api/tasks/{id}")).await.0,
            StatusCode::OK,
            "acknowledged task {id} is missing"
        );
    }
}

/// Sets or clears the immutable attribute: even root's open descriptors cannot write an
/// immutable file, which makes it read-only under a running server.
fn immutable(paths: &[PathBuf], on: bool) -> bool {
    let flag = if on { "+i" } else { "-i" };
    paths.iter().all(|p| Command::new("chattr").arg(flag).arg(p).status().is_ok_and(|s| s.success()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_database_file_refuses_writes_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ro.db");
    let server = TestServer::start_on(&db, &["--no-seed", "--commit-timeout-ms", "1000"]);
    server.post("/api/ventures", json!({"id": "v", "name": "v"})).await;
    assert_eq!(create(&server, "before", "").await.0, StatusCode::CREATED);
    let files = [db.clone(), PathBuf::from(format!("{}-wal", db.display()))];
    if !immutable(&files, true) {
        immutable(&files, false);
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the read-only test, but chattr +i failed (root on ext4 needed)"
        );
        eprintln!("SKIPPED: chattr +i needs root on a file system that supports it; the read-only test did not run");
        return;
    }
    let (status, _) = create(&server, "during", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    check_refusing_writes(&server).await;
    assert!(immutable(&files, false));
    until("the store recovers", async || server.get("/readyz").await.0 == StatusCode::OK).await;
    assert_eq!(create(&server, "after", "").await.0, StatusCode::CREATED);
    assert!(server.terminate().success());
    let server = TestServer::start_on(&db, &[]);
    for id in ["before", "after"] {
        assert_eq!(server.get(&format!("/api/tasks/{id}")).await.0, StatusCode::OK, "{id}");
    }
}

/// What the agents were told, across all crash cycles.
#[derive(Default)]
struct Acknowledged {
    /// task -> (agent, attempt) of its last acknowledged claim
    claims: HashMap<String, (String, u64)>,
    /// task -> charged cost
    completions: HashMap<String, f64>,
}

/// Agents claim and complete until the server dies under them.
async fn run_until_killed(
    server: &Arc<TestServer>,
    cycle: usize,
    acknowledged: &Arc<Mutex<Acknowledged>>,
    run_for: Duration,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let agents: Vec<_> = (0..8)
        .map(|a| {
            let (server, acknowledged, stop) = (server.clone(), acknowledged.clone(), stop.clone());
            tokio::spawn(async move {
                let agent = format!("agent-{a}");
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let sent = server
                        .client
                        .post(format!("{}/api/tasks/claim", server.base))
                        .json(&json!({"agentId": agent}))
                        .send()
                        .await;
                    let Ok(response) = sent else { return };
                    if response.status() != StatusCode::OK {
                        return;
                    }
                    let Ok(task) = response.json::<Value>().await else { return };
                    let id = task["id"].as_str().unwrap().to_owned();
                    let attempt = task["attempts"].as_u64().unwrap();
                    acknowledged.lock().unwrap().claims.insert(id.clone(), (agent.clone(), attempt));
                    n += 1;
                    let cost = f64::from((n + cycle as u32) % 5) + 0.5;
                    let body = json!({"taskId": id, "agentId": agent, "attempt": attempt, "actualCost": cost});
                    let sent =
                        server.client.post(format!("{}/api/tasks/complete", server.base)).json(&body).send().await;
                    let Ok(response) = sent else { return };
                    if response.status() == StatusCode::OK {
                        acknowledged.lock().unwrap().completions.insert(id, cost);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(run_for).await;
    Command::new("kill").args(["-KILL", &server.pid().to_string()]).status().unwrap();
    stop.store(true, Ordering::Relaxed);
    for a in agents {
        a.await.unwrap();
    }
}

/// Ten cycles in the suite; `loadtest/crash-soak.sh` runs many more (`MC_CRASH_CYCLES`).
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_cycles_under_load_lose_nothing_acknowledged_in_batch_mode() {
    let cycles: usize = std::env::var("MC_CRASH_CYCLES").ok().and_then(|n| n.parse().ok()).unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let server = TestServer::start_on(&db, &["--no-seed"]);
    server.post("/api/ventures", json!({"id": "v", "name": "v"})).await;
    for i in 0..3000 {
        server
            .post("/api/tasks", json!({"id": format!("t{i}"), "title": "x", "ventureId": "v", "maxAttempts": 100}))
            .await;
    }
    drop(server);
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    for cycle in 0..cycles {
        let server = Arc::new(TestServer::start_on(&db, &["--lease-seconds", "2"]));
        run_until_killed(&server, cycle, &acknowledged, Duration::from_millis(250)).await;
    }
    let server = TestServer::start_on(&db, &[]);
    let tasks: HashMap<String, Value> = server
        .ok("/api/tasks")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t.clone()))
        .collect();
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(acknowledged.completions.len() > 50, "the load ran: {} completions", acknowledged.completions.len());
    eprintln!(
        "{cycles} kill -9 cycles: {} acknowledged claims and {} completions checked",
        acknowledged.claims.len(),
        acknowledged.completions.len()
    );
    for (id, cost) in &acknowledged.completions {
        let task = &tasks[id];
        assert_eq!(
            (task["status"].as_str(), task["actualCost"].as_f64()),
            (Some("completed"), Some(*cost)),
            "completion of {id} lost"
        );
    }
    for (id, (agent, attempt)) in &acknowledged.claims {
        let task = &tasks[id];
        let now = task["attempts"].as_u64().unwrap();
        assert!(now >= *attempt, "acknowledged claim of {id} (attempt {attempt}) lost: the task is on attempt {now}");
        if now == *attempt && task["status"] != "queue" {
            assert_eq!(task["assignedTo"].as_str(), Some(agent.as_str()), "{id} changed holder without a new attempt");
        }
    }
    let charged: f64 =
        tasks.values().filter(|t| t["status"] == "completed").map(|t| t["actualCost"].as_f64().unwrap()).sum();
    let spent = server.ok("/api/ventures/v").await["capitalSpent"].as_f64().unwrap();
    assert!((spent - charged).abs() < 1e-6, "capital {spent} is not the sum of completed costs {charged}");
    let agents = server.ok("/api/agents").await;
    for agent in agents.as_array().unwrap() {
        let held: Vec<&Value> =
            tasks.values().filter(|t| t["status"] == "active" && t["assignedTo"] == agent["id"]).collect();
        if let Some(current) = agent["currentTask"].as_str() {
            assert!(held.iter().any(|t| t["id"] == current), "{} names a task it does not hold", agent["id"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_in_async_mode_leaves_a_consistent_state() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("async.db");
    let server = TestServer::start_on(&db, &["--no-seed", "--durability", "async"]);
    server.post("/api/ventures", json!({"id": "v", "name": "v"})).await;
    for i in 0..1500 {
        server.post("/api/tasks", json!({"id": format!("t{i}"), "title": "x", "ventureId": "v"})).await;
    }
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    run_until_killed(&Arc::new(server), 0, &acknowledged, Duration::from_millis(400)).await;
    let server = TestServer::start_on(&db, &[]);
    let tasks = server.ok("/api/tasks").await;
    let tasks = tasks.as_array().unwrap();
    let completed: Vec<&Value> = tasks.iter().filter(|t| t["status"] == "completed").collect();
    let charged: f64 = completed.iter().map(|t| t["actualCost"].as_f64().unwrap()).sum();
    let spent = server.ok("/api/ventures/v").await["capitalSpent"].as_f64().unwrap();
    assert!((spent - charged).abs() < 1e-6, "capital {spent} != {charged}: a torn state");
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    let lost = acknowledged.completions.keys().filter(|id| !completed.iter().any(|t| t["id"] == id.as_str())).count();
    // Async mode may lose the last flush window; report it so the docs' figure can be checked.
    eprintln!("async kill -9: {} acknowledged completions, {lost} lost", acknowledged.completions.len());
    for task in tasks.iter().filter(|t| t["status"] == "active") {
        let holder = server.ok(&format!("/api/agents/{}", task["assignedTo"].as_str().unwrap())).await;
        assert_eq!(holder["status"], "busy", "an active task's holder knows it holds work");
    }
}
