//! High availability on PostgreSQL: two nodes on one database of a throwaway cluster
//! (`common/postgres.rs`). One leads, the other answers 503 `not_leader`; a killed leader
//! is replaced within its lease, keeping every acknowledged change, and a paused one that
//! wakes after a standby took over commits nothing and stops answering as the leader.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Short, so that each failover takes about four seconds, and long enough that a busy
/// two-core machine renews in time.
const LEASE: &str = "3";

fn node_args() -> Vec<&'static str> {
    vec!["--no-seed", "--leader-lease-seconds", LEASE]
}

async fn ready(server: &TestServer) -> bool {
    server.get("/readyz").await.0 == StatusCode::OK
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_answers_not_leader_and_takes_over_a_dead_leaders_work() {
    let Some(url) = common::postgres::new_database() else { return };
    let db = PathBuf::from(&url);
    let leader = TestServer::start_on(&db, &node_args());
    let standby = TestServer::start_standby(&db, &node_args());

    // The standby is alive but not ready, and names the leader.
    assert_eq!(standby.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(standby.get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = standby.get("/api/tasks").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!((body["code"].as_str(), body["leader"].as_str()), (Some("not_leader"), Some(leader.base.as_str())));
    let (status, body) = standby.post("/mcp", json!({})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("not_leader")));

    // Work in flight on the leader: an active task with its holder, attempt and lease.
    let (status, venture) =
        leader.post("/api/ventures", json!({"name": "HA", "icon": "x", "capitalBudget": 100})).await;
    assert_eq!(status, StatusCode::CREATED, "{venture}");
    let venture_id = venture["id"].as_str().unwrap().to_owned();
    for title in ["held", "queued"] {
        let task = json!({"title": title, "ventureId": venture_id, "estimatedCost": 1});
        assert_eq!(leader.post("/api/tasks", task).await.0, StatusCode::CREATED);
    }
    let (status, held) = leader.post("/api/tasks/claim", json!({"agentId": "agent-1", "leaseSeconds": 600})).await;
    assert_eq!(status, StatusCode::OK, "{held}");
    let held_id = held["id"].as_str().unwrap().to_owned();

    let killed = Instant::now();
    leader.kill();
    common::until("the standby leads", async || ready(&standby).await).await;
    eprintln!("failover took {:?} with a {LEASE} s lease", killed.elapsed());

    let task = standby.ok(&format!("/api/tasks/{held_id}")).await;
    assert_eq!((task["status"].as_str(), task["assignedTo"].as_str()), (Some("active"), Some("agent-1")));
    assert_eq!(
        (task["attempts"].as_u64(), task["leaseExpiresAt"].clone()),
        (held["attempts"].as_u64(), held["leaseExpiresAt"].clone())
    );
    // The holder reports to the new leader, which charges it once.
    let report = json!({"taskId": held_id, "agentId": "agent-1", "actualCost": 1.5});
    assert_eq!(standby.post("/api/tasks/complete", report.clone()).await.0, StatusCode::OK);
    assert_eq!(standby.post("/api/tasks/complete", report).await.0, StatusCode::OK, "a repeat changes nothing");
    let venture = standby.ok(&format!("/api/ventures/{venture_id}")).await;
    assert_eq!(venture["capitalSpent"].as_f64(), Some(1.5));
    let (status, next) = standby.post("/api/tasks/claim", json!({"agentId": "agent-2"})).await;
    assert_eq!((status, next["title"].as_str()), (StatusCode::OK, Some("queued")));
}

/// The agents' side of a failover: requests go to whichever node answers as the leader.
struct Fleet {
    client: reqwest::Client,
    urls: Vec<String>,
    current: AtomicUsize,
}

impl Fleet {
    /// Posts until a node that leads answers, trying the other node after a refused
    /// connection or a 503; `None` after `patience`. Also when the request that was
    /// answered was sent.
    async fn post(&self, path: &str, body: &Value, patience: Duration) -> Option<(StatusCode, Value, Instant)> {
        let deadline = Instant::now() + patience;
        let mut last = String::new();
        while Instant::now() < deadline {
            let turn = self.current.load(Ordering::Relaxed);
            let index = turn % self.urls.len();
            let sent_at = Instant::now();
            let sent = self
                .client
                .post(format!("{}{path}", self.urls[index]))
                .json(body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match sent {
                Ok(response) if response.status() != StatusCode::SERVICE_UNAVAILABLE => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    return Some((status, serde_json::from_str(&text).unwrap_or(Value::Null), sent_at));
                }
                other => {
                    last = match other {
                        Ok(response) => format!("{} from {}", response.status(), self.urls[index]),
                        Err(error) => format!("{error} from {}", self.urls[index]),
                    };
                    let _ = self.current.compare_exchange(turn, turn + 1, Ordering::Relaxed, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        eprintln!("{path}: no leader answered within {patience:?}; last: {last}");
        None
    }
}

/// What the agents saw: every claim handed out, and every completion acknowledged.
#[derive(Default)]
struct Ledger {
    /// (task, attempt) → the agents it was handed to.
    claims: HashMap<(String, u64), HashSet<String>>,
    acknowledged: Vec<String>,
    /// From a leader's death to the next claim answered 200.
    gaps: Vec<Duration>,
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_failovers_under_load_lose_no_acknowledged_completion_and_never_double_hold() {
    let Some(url) = common::postgres::new_database() else { return };
    let db = PathBuf::from(&url);
    let mut nodes = [Some(TestServer::start_on(&db, &node_args())), Some(TestServer::start_standby(&db, &node_args()))];
    let first = nodes[0].as_ref().unwrap();
    let (_, venture) =
        first.post("/api/ventures", json!({"name": "Soak", "icon": "x", "capitalBudget": 1_000_000})).await;
    let venture_id = venture["id"].as_str().unwrap().to_owned();
    const TASKS: usize = 6_000;
    for chunk in 0..TASKS / 100 {
        let creates = (0..100).map(|i| {
            let task = json!({"title": format!("t{}", chunk * 100 + i), "ventureId": venture_id, "estimatedCost": 1});
            first.post("/api/tasks", task)
        });
        for (status, body) in futures_util::future::join_all(creates).await {
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }

    let fleet = Arc::new(Fleet {
        client: reqwest::Client::builder().pool_max_idle_per_host(128).build().unwrap(),
        urls: nodes.iter().map(|n| n.as_ref().unwrap().base.clone()).collect(),
        current: AtomicUsize::new(0),
    });
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // While the killed node restarts, the agents rest, so that each round spends few tasks.
    let resting = Arc::new(AtomicBool::new(false));
    let agents: Vec<_> = (0..64)
        .map(|n| {
            let (fleet, ledger, killed_at) = (fleet.clone(), ledger.clone(), killed_at.clone());
            let (stop, resting) = (stop.clone(), resting.clone());
            tokio::spawn(async move {
                let agent = format!("agent-{n}");
                let patience = Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) {
                    if resting.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    let claim = json!({"agentId": agent, "leaseSeconds": 5});
                    let Some((status, task, sent_at)) = fleet.post("/api/tasks/claim", &claim, patience).await else {
                        continue;
                    };
                    if status == StatusCode::NO_CONTENT {
                        panic!("the queue ran dry: the test needs more tasks");
                    }
                    assert_eq!(status, StatusCode::OK, "{task}");
                    let (id, attempt) = (task["id"].as_str().unwrap().to_owned(), task["attempts"].as_u64().unwrap());
                    {
                        let mut ledger = ledger.lock().unwrap();
                        // Only a claim sent after the kill was answered by the new leader.
                        let mut killed_at = killed_at.lock().unwrap();
                        if let Some(killed) = killed_at.filter(|&killed| sent_at > killed) {
                            ledger.gaps.push(killed.elapsed());
                            *killed_at = None;
                        }
                        ledger.claims.entry((id.clone(), attempt)).or_default().insert(agent.clone());
                    }
                    let report = json!({"taskId": id, "agentId": agent, "attempt": attempt, "actualCost": 1});
                    if let Some((StatusCode::OK, _, _)) = fleet.post("/api/tasks/complete", &report, patience).await {
                        ledger.lock().unwrap().acknowledged.push(id);
                    }
                }
            })
        })
        .collect();

    for round in 0..10 {
        let before = ledger.lock().unwrap().acknowledged.len();
        common::until("completions flow", async || ledger.lock().unwrap().acknowledged.len() >= before + 50).await;
        let mut leader = None;
        for (i, node) in nodes.iter().enumerate() {
            if ready(node.as_ref().unwrap()).await {
                leader = Some(i);
            }
        }
        let leader = leader.unwrap_or_else(|| panic!("round {round}: no node leads"));
        nodes[leader].take().unwrap().kill();
        *killed_at.lock().unwrap() = Some(Instant::now());
        common::until("a new leader answers claims", async || ledger.lock().unwrap().gaps.len() > round).await;
        let (acknowledged, gap) = {
            let ledger = ledger.lock().unwrap();
            (ledger.acknowledged.len(), ledger.gaps[round])
        };
        eprintln!("round {round}: node {leader} killed; first claim after {gap:?}; {acknowledged} acknowledged");
        // The killed node comes back as a standby, on its address.
        resting.store(true, Ordering::Relaxed);
        let addr = &fleet.urls[leader]["http://".len()..];
        let args = ["--no-seed", "--leader-lease-seconds", LEASE, "--addr", addr];
        nodes[leader] = Some(TestServer::start_standby(&db, &args));
        resting.store(false, Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    for agent in agents {
        agent.await.unwrap();
    }

    let mut leader = None;
    for node in nodes.iter().flatten() {
        if ready(node).await {
            leader = Some(node);
        }
    }
    let leader = leader.expect("a node leads");
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    let doubles: Vec<_> = ledger.claims.iter().filter(|(_, agents)| agents.len() > 1).collect();
    assert!(doubles.is_empty(), "tasks handed to two agents for one attempt: {doubles:?}");
    let acknowledged: HashSet<&String> = ledger.acknowledged.iter().collect();
    assert_eq!(acknowledged.len(), ledger.acknowledged.len(), "no completion was acknowledged twice");
    let tasks = leader.ok(&format!("/api/tasks?ventureId={venture_id}&fields=id,status,actualCost")).await;
    let completed: HashMap<&str, f64> = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "completed")
        .map(|t| (t["id"].as_str().unwrap(), t["actualCost"].as_f64().unwrap()))
        .collect();
    let lost: Vec<_> = acknowledged.iter().filter(|id| !completed.contains_key(id.as_str())).collect();
    assert!(lost.is_empty(), "acknowledged completions lost: {lost:?}");
    // Each completed task was charged exactly once; the venture's spend is their sum.
    assert!(completed.values().all(|&cost| cost == 1.0), "a task charged twice");
    let venture = leader.ok(&format!("/api/ventures/{venture_id}")).await;
    assert_eq!(venture["capitalSpent"].as_f64(), Some(completed.len() as f64));
    let mut gaps = ledger.gaps.clone();
    gaps.sort();
    eprintln!(
        "{} failovers with a {LEASE} s lease: first claim after the kill, median {:?}, worst {:?}; {} completions acknowledged, 0 lost",
        gaps.len(),
        gaps[gaps.len() / 2],
        gaps[gaps.len() - 1],
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_leader_that_wakes_after_a_takeover_commits_nothing_and_exits() {
    let Some(url) = common::postgres::new_database() else { return };
    let db = PathBuf::from(&url);
    let mut old = TestServer::start_on(&db, &node_args());
    let new = TestServer::start_standby(&db, &node_args());
    let (_, venture) = old.post("/api/ventures", json!({"name": "Fence", "icon": "x", "capitalBudget": 10})).await;
    let venture_id = venture["id"].as_str().unwrap().to_owned();

    old.signal("STOP");
    common::until("the standby takes over", async || ready(&new).await).await;
    let (status, _) = new.post("/api/tasks", json!({"title": "after the takeover", "ventureId": venture_id})).await;
    assert_eq!(status, StatusCode::CREATED, "the new leader takes writes");

    // A write sent to the old leader while it sleeps waits in its socket until it wakes.
    let late = {
        let client = old.client.clone();
        let url = format!("{}/api/tasks", old.base);
        let body = json!({"title": "sent to the deposed leader", "ventureId": venture_id});
        tokio::spawn(async move { client.post(url).json(&body).timeout(Duration::from_secs(20)).send().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    old.signal("CONT");
    // It may also have exited before answering.
    if let Ok(response) = late.await.unwrap() {
        assert_ne!(response.status(), StatusCode::CREATED, "the deposed leader acknowledged a write");
    }
    let status = old.exit_status().expect("the deposed leader exits");
    assert_eq!(status.code(), Some(3), "the exit status says it was deposed");

    // Nothing of the old leader's reached the record; the new leader still serves it.
    assert!(ready(&new).await);
    let tasks = new.ok(&format!("/api/tasks?ventureId={venture_id}&fields=title")).await;
    let titles: Vec<&str> = tasks.as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["after the takeover"]);
    let (_, row) = new.get("/readyz").await;
    assert_eq!(row["status"], "ready");
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_seed_and_reset_work_on_postgres_and_reset_refuses_while_a_node_leads() {
    let Some(url) = common::postgres::new_database() else { return };
    let (ok, text) = common::run_cli(&["migrate", "--db", &url]);
    assert!(ok, "{text}");
    let (ok, text) = common::run_cli(&["seed", "--db", &url]);
    assert!(ok, "{text}");
    assert_eq!(common::count_rows(&PathBuf::from(&url), "SELECT count(*) FROM Venture"), 2);

    let server = TestServer::start_on(&PathBuf::from(&url), &node_args());
    let (ok, text) = common::run_cli(&["reset", "--db", &url]);
    assert!(!ok && text.contains("stop it first"), "{text}");
    assert_eq!(server.ok("/api/ventures").await.as_array().unwrap().len(), 2, "nothing was dropped");
    let (ok, text) = common::run_cli(&["backup", "--db", &url, "/nonexistent/copy.db"]);
    assert!(!ok && text.contains("pg_dump"), "{text}");

    // A graceful stop releases the lease at once, so a reset need not wait for it to lapse.
    assert!(server.terminate().success());
    let (ok, text) = common::run_cli(&["reset", "--db", &url]);
    assert!(ok, "{text}");
    assert_eq!(common::count_rows(&PathBuf::from(&url), "SELECT count(*) FROM Task"), 3, "the sample data again");
}
