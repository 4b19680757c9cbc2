//! `mission-control work`: a real server, a real worker process, and real commands (shell
//! scripts written by each test). Waits are for conditions; time bounds are only there to
//! fail a test that hangs.

mod common;

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, BIN};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The longest any condition is waited for before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// A worker process and the directory holding its script and log.
struct Worker {
    child: Child,
    dir: tempfile::TempDir,
}

impl Worker {
    /// Runs `mission-control work OPTIONS -- sh SCRIPT` against `urls`; the script is
    /// written into a new directory, which the script knows as `$DIR`.
    fn start(urls: &[&str], options: &[&str], script: &str) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        let script_path = dir.path().join("task.sh");
        std::fs::write(&script_path, format!("DIR='{}'\n{script}", dir.path().display())).unwrap();
        let log = std::fs::File::create(dir.path().join("worker.log")).unwrap();
        let mut command = Command::new(BIN);
        command.arg("work");
        for url in urls {
            command.args(["--url", url]);
        }
        let child = command
            .args(options)
            .arg("--")
            .arg("sh")
            .arg(&script_path)
            .env_remove("MC_API_TOKEN")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn the worker");
        Worker { child, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("worker.log")).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the worker to exit on its own.
    async fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the worker did not exit; its log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a file the script writes.
    async fn file(&self, name: &str) -> String {
        let path = self.path(name);
        until(&format!("{name} to be written"), || async { std::fs::read_to_string(&path).ok() }).await
    }

    /// Waits for the worker's log to say `text`.
    async fn logged(&self, text: &str) {
        until(&format!("the log to say {text:?}"), || async { self.log().contains(text).then_some(()) }).await;
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it gives a value; fails after `PATIENCE`.
async fn until<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server without sample data, and a venture with no budget.
async fn server() -> (TestServer, String) {
    let server = TestServer::start_with(&["--no-seed"]);
    let venture = venture(&server).await;
    (server, venture)
}

async fn venture(server: &TestServer) -> String {
    let (status, venture) = server.post("/api/ventures", json!({"name": "work"})).await;
    assert_eq!(status, StatusCode::CREATED, "{venture}");
    venture["id"].as_str().unwrap().to_owned()
}

async fn task(server: &TestServer, venture: &str, title: &str, extra: Value) -> String {
    let mut body = json!({"title": title, "ventureId": venture});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (status, task) = server.post("/api/tasks", body).await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    task["id"].as_str().unwrap().to_owned()
}

/// Waits for the task to reach `status`; returns it.
async fn task_in(server: &TestServer, id: &str, status: &str) -> Value {
    until(&format!("task {id} to be {status}"), || async {
        let task = server.ok(&format!("/api/tasks/{id}")).await;
        (task["status"] == status).then_some(task)
    })
    .await
}

fn alive(pid: &str) -> bool {
    // A process that is gone, or a zombie nobody has reaped yet, no longer runs.
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits for a TCP port nobody listens on, to restart a server on it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_that_exits_zero_completes_the_task_with_its_output() {
    let (server, venture) = server().await;
    let id = task(&server, &venture, "say hello", json!({})).await;
    // The first address refuses connections; the worker moves on to the second.
    let mut worker = Worker::start(
        &["http://127.0.0.1:1", &server.base],
        &["--agent-id", "w1", "--venture", &venture, "--max-tasks", "1"],
        r#"cat > "$DIR/stdin.json"
echo "hello from $MC_TASK_ID: $MC_TASK_TITLE, attempt $MC_ATTEMPT of $MC_VENTURE_ID by $MC_AGENT_ID"
echo "url $MC_URL"
"#,
    );
    assert!(worker.exit().await.success(), "{}", worker.log());
    let done = task_in(&server, &id, "completed").await;
    let expected = format!(
        "hello from {id}: say hello, attempt 1 of {venture} by w1\nurl {}\n",
        server.base.trim_end_matches('/')
    );
    assert_eq!(done["output"], expected.as_str());
    assert_eq!(done["assignedTo"], "w1");
    let stdin: Value = serde_json::from_str(&std::fs::read_to_string(worker.path("stdin.json")).unwrap()).unwrap();
    assert_eq!(
        (stdin["id"].as_str(), stdin["status"].as_str(), stdin["attempts"].as_u64()),
        (Some(&*id), Some("active"), Some(1))
    );
    assert_eq!(worker.log().matches("task reported").count(), 1, "one line per task:\n{}", worker.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_last_line_carries_output_cost_and_tokens() {
    let (server, venture) = server().await;
    let id = task(&server, &venture, "priced", json!({"estimatedCost": 3})).await;
    let mut worker = Worker::start(
        &[&server.base],
        &["--agent-id", "pricer", "--venture", &venture, "--max-tasks", "1"],
        r#"echo "thinking..."
echo '{"output": "the summary", "actualCost": 2.5, "tokensUsed": 1234}'
"#,
    );
    assert!(worker.exit().await.success(), "{}", worker.log());
    let done = task_in(&server, &id, "completed").await;
    assert_eq!((done["output"].as_str(), done["actualCost"].as_f64()), (Some("the summary"), Some(2.5)));
    let venture = server.ok(&format!("/api/ventures/{venture}")).await;
    assert_eq!(venture["capitalSpent"].as_f64(), Some(2.5));
    assert_eq!(server.ok("/api/agents/pricer").await["tokensUsed"].as_u64(), Some(1234));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_zero_exit_is_an_error_report_with_standard_error() {
    let (server, venture) = server().await;
    let id = task(&server, &venture, "breaks", json!({"maxAttempts": 1})).await;
    let mut worker = Worker::start(
        &[&server.base],
        &["--venture", &venture, "--max-tasks", "1"],
        "echo 'some output'\necho 'it broke: disk on fire' >&2\nexit 3\n",
    );
    assert!(worker.exit().await.success(), "{}", worker.log());
    let failed = task_in(&server, &id, "failed").await;
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("exit status 3") && error.contains("it broke: disk on fire"), "{error}");
    assert_eq!(failed["actualCost"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_last_256_kib_of_a_large_output_are_reported() {
    let (server, venture) = server().await;
    let id = task(&server, &venture, "chatty", json!({})).await;
    let mut worker = Worker::start(
        &[&server.base],
        &["--venture", &venture, "--max-tasks", "1"],
        "head -c 3000000 /dev/zero | tr '\\0' a\necho END\n",
    );
    assert!(worker.exit().await.success(), "{}", worker.log());
    let output = task_in(&server, &id, "completed").await["output"].as_str().unwrap().to_owned();
    assert_eq!(output.len(), 256 * 1024);
    assert!(output.ends_with("aaaaEND\n"), "{}", &output[output.len() - 10..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_lease_sends_sigterm_to_the_running_command() {
    let (server, venture) = server().await;
    let id = task(&server, &venture, "long", json!({})).await;
    let mut worker = Worker::start(
        &[&server.base],
        &["--venture", &venture, "--max-tasks", "1", "--lease-seconds", "3"],
        r#"trap 'echo stopped > "$DIR/term"; exit 143' TERM
echo $$ > "$DIR/started"
while true; do sleep 0.1; done
"#,
    );
    worker.file("started").await;
    // An operator takes the task back: the next heartbeat (every second) answers 409.
    let (status, body) = server.patch(&format!("/api/tasks/{id}"), json!({"status": "queue"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(worker.file("term").await.trim(), "stopped");
    assert!(worker.exit().await.success(), "{}", worker.log());
    assert!(worker.log().contains("lease lost"), "{}", worker.log());
    let task = server.ok(&format!("/api/tasks/{id}")).await;
    assert_eq!((task["status"].as_str(), task["assignedTo"].as_str()), (Some("queue"), None), "{task}");
}

/// A stand-in for a server with cancellation (not built yet): it hands out one task, answers
/// every heartbeat with `cancelRequested: true`, and keeps the reports it gets.
async fn cancelling_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::response::IntoResponse;
    use axum::routing::post;
    use axum::Json;
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let handed_out = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kept = reports.clone();
    let app = axum::Router::new()
        .route(
            "/api/tasks/claim",
            post(move || async move {
                if handed_out.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    return axum::http::StatusCode::NO_CONTENT.into_response();
                }
                let task = json!({"id": "t1", "title": "cancel me", "ventureId": "v", "attempts": 1});
                Json(task).into_response()
            }),
        )
        .route("/api/tasks/heartbeat", post(|| async { Json(json!({"id": "t1", "cancelRequested": true})) }))
        .route(
            "/api/tasks/complete",
            post(move |Json(report): Json<Value>| async move {
                kept.lock().unwrap().push(report);
                Json(json!({}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, reports)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_request_in_a_heartbeat_answer_stops_the_command_and_reports_it() {
    let (base, reports) = cancelling_server().await;
    let mut worker = Worker::start(
        &[&base],
        &["--agent-id", "w", "--max-tasks", "1", "--lease-seconds", "3"],
        r#"trap 'echo stopped > "$DIR/term"; exit 143' TERM
while true; do sleep 0.1; done
"#,
    );
    assert_eq!(worker.file("term").await.trim(), "stopped");
    assert!(worker.exit().await.success(), "{}", worker.log());
    let reports = reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!((&reports[0]["taskId"], &reports[0]["attempt"]), (&json!("t1"), &json!(1)));
    assert!(reports[0]["error"].as_str().unwrap().starts_with("cancelled; the command ended with exit status 143"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_that_ignores_sigterm_is_killed_with_its_group_after_the_grace() {
    let (server, venture) = server().await;
    let id = task(&server, &venture, "stubborn", json!({})).await;
    let mut worker = Worker::start(
        &[&server.base],
        &["--venture", &venture, "--max-tasks", "1", "--lease-seconds", "3", "--kill-grace", "1"],
        r#"trap '' TERM
sleep 600 &
echo $! > "$DIR/sleeper"
echo $$ > "$DIR/started"
wait
"#,
    );
    let shell = worker.file("started").await;
    let sleeper = worker.file("sleeper").await;
    server.patch(&format!("/api/tasks/{id}"), json!({"status": "queue"})).await;
    let stopped = Instant::now();
    assert!(worker.exit().await.success(), "{}", worker.log());
    assert!(stopped.elapsed() >= Duration::from_secs(1), "killed before the grace ran out");
    assert!(worker.log().contains("killed by signal 9"), "{}", worker.log());
    until("the shell and its background sleep to be killed", || async {
        (!alive(&shell) && !alive(&sleeper)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_keep_a_command_that_outlives_its_lease() {
    let (server, venture) = server().await;
    let id = task(&server, &venture, "slow", json!({"maxAttempts": 1})).await;
    let mut worker = Worker::start(
        &[&server.base],
        &["--venture", &venture, "--max-tasks", "1", "--lease-seconds", "3"],
        "sleep 5\necho finished\n",
    );
    assert!(worker.exit().await.success(), "{}", worker.log());
    let done = task_in(&server, &id, "completed").await;
    assert_eq!((done["output"].as_str(), done["attempts"].as_u64()), (Some("finished\n"), Some(1)));
    let (_, expiries) = server.get(&format!("/api/activities?taskId={id}&type=task_lease_expired")).await;
    assert_eq!(expiries, json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_the_running_command_then_exits_zero() {
    let (server, venture) = server().await;
    let first = task(&server, &venture, "running", json!({"priority": "high"})).await;
    let second = task(&server, &venture, "never claimed", json!({"priority": "low"})).await;
    let mut worker = Worker::start(
        &[&server.base],
        &["--venture", &venture],
        r#"touch "$DIR/started"
while [ ! -e "$DIR/go" ]; do sleep 0.05; done
echo "drained"
"#,
    );
    worker.file("started").await;
    worker.signal("TERM");
    worker.logged("claiming nothing more").await;
    std::fs::write(worker.path("go"), "").unwrap();
    assert!(worker.exit().await.success(), "{}", worker.log());
    assert_eq!(task_in(&server, &first, "completed").await["output"], "drained\n");
    assert_eq!(server.ok(&format!("/api/tasks/{second}")).await["status"], "queue");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_stops_the_commands_and_reports_them_as_errors() {
    let (server, venture) = server().await;
    let id = task(&server, &venture, "interrupted", json!({"maxAttempts": 1})).await;
    let mut worker = Worker::start(
        &[&server.base],
        &["--venture", &venture, "--kill-grace", "5"],
        "touch \"$DIR/started\"\nwhile true; do sleep 0.1; done\n",
    );
    worker.file("started").await;
    worker.signal("INT");
    worker.logged("claiming nothing more").await;
    worker.signal("INT");
    let status = worker.exit().await;
    assert_eq!(status.code(), Some(1), "{}", worker.log());
    let failed = task_in(&server, &id, "failed").await;
    assert!(failed["error"].as_str().unwrap().starts_with("stopped by the worker's shutdown"), "{failed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_lands_exactly_once_across_a_server_crash() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mc.db");
    let addr = format!("127.0.0.1:{}", free_port());
    let server = TestServer::start_on(&db, &["--no-seed", "--addr", &addr]);
    let venture = venture(&server).await;
    let id = task(&server, &venture, "survives", json!({"estimatedCost": 2})).await;
    let mut worker = Worker::start(
        &[&server.base],
        &["--agent-id", "steady", "--venture", &venture, "--max-tasks", "1"],
        r#"touch "$DIR/started"
while [ ! -e "$DIR/go" ]; do sleep 0.05; done
echo '{"output": "made it", "actualCost": 1.25, "tokensUsed": 7}'
"#,
    );
    worker.file("started").await;
    server.kill(); // kill -9
    std::fs::write(worker.path("go"), "").unwrap();
    worker.logged("server unavailable during a report").await;
    let server = TestServer::start_on(&db, &["--no-seed", "--addr", &addr]);
    assert!(worker.exit().await.success(), "{}", worker.log());
    let done = task_in(&server, &id, "completed").await;
    assert_eq!(done["output"], "made it");
    assert_eq!(server.ok(&format!("/api/ventures/{venture}")).await["capitalSpent"].as_f64(), Some(1.25));
    assert_eq!(server.ok("/api/agents/steady").await["tokensUsed"].as_u64(), Some(7));
    let completions = server.ok(&format!("/api/activities?taskId={id}&type=task_completed")).await;
    assert_eq!(completions.as_array().unwrap().len(), 1, "{completions}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_four_runs_four_commands_at_once() {
    let (server, venture) = server().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(task(&server, &venture, &format!("t{i}"), json!({})).await);
    }
    // Each command finishes only once all four have started, so fewer slots would hang.
    let mut worker = Worker::start(
        &[&server.base],
        &["--venture", &venture, "--concurrency", "4", "--max-tasks", "4"],
        r#"touch "$DIR/running-$MC_TASK_ID"
for _ in $(seq 600); do
  [ "$(ls "$DIR" | grep -c '^running-')" -ge 4 ] && { echo together; exit 0; }
  sleep 0.05
done
exit 1
"#,
    );
    assert!(worker.exit().await.success(), "{}", worker.log());
    for id in &ids {
        assert_eq!(task_in(&server, id, "completed").await["output"], "together\n");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn max_tasks_and_idle_exit_end_the_worker_with_zero() {
    let (server, venture) = server().await;
    for i in 0..3 {
        task(&server, &venture, &format!("t{i}"), json!({})).await;
    }
    let mut worker = Worker::start(&[&server.base], &["--venture", &venture, "--max-tasks", "2"], "echo ok\n");
    assert!(worker.exit().await.success(), "{}", worker.log());
    let queued = server.ok(&format!("/api/tasks?ventureId={venture}&status=queue")).await;
    assert_eq!(queued.as_array().unwrap().len(), 1, "exactly two were taken: {queued}");

    let started = Instant::now();
    let mut worker = Worker::start(&[&server.base], &["--venture", &venture, "--idle-exit", "2"], "echo ok\n");
    assert!(worker.exit().await.success(), "{}", worker.log());
    assert!(started.elapsed() >= Duration::from_secs(2), "exited after {:?}", started.elapsed());
    let queued = server.ok(&format!("/api/tasks?ventureId={venture}&status=queue")).await;
    assert_eq!(queued, json!([]), "the idle worker first ran what there was");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_claim_ends_the_worker_with_the_servers_message() {
    let (server, _) = server().await;
    let mut worker = Worker::start(&[&server.base], &["--venture", "no-such-venture"], "echo never\n");
    assert_eq!(worker.exit().await.code(), Some(1));
    let log = worker.log();
    assert!(log.contains("refused a claim") && log.contains("404") && log.contains("no-such-venture"), "{log}");
}

#[test]
fn bad_options_are_a_clear_message_and_exit_two() {
    for (args, says) in [
        (&["work", "--concurrency", "0", "--", "true"][..], "--concurrency"),
        (&["work", "--idle-exit", "soon", "--", "true"], "--idle-exit"),
        (&["work", "--url", "http://127.0.0.1:1"], "COMMAND"),
    ] {
        let output = Command::new(BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// A standby as `src/api/standby.rs` answers: 503 `not_leader` naming `leader`, with
/// `Retry-After: 1`, to every request, which it counts.
async fn standby(leader: Option<&str>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::response::IntoResponse;
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    let body = json!({"error": "this node is a standby", "code": "not_leader", "leader": leader});
    let app = axum::Router::new().fallback(move || async move {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], axum::Json(body)).into_response()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, requests)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_follows_a_standby_to_the_leader_it_names() {
    let (server, venture) = server().await;
    let id = task(&server, &venture, "follow the leader", json!({})).await;
    // The leader as the standby names it, with a trailing slash the client trims.
    let (pointing, pointed) = standby(Some(&format!("{}/", server.base.trim_end_matches('/')))).await;
    let (electing, asked_in_vain) = standby(None).await;
    // In order, the worker would ask the standby without a leader before the real server;
    // the first standby's answer sends it straight to the real one.
    let mut worker = Worker::start(
        &[&pointing, &electing, &server.base],
        &["--agent-id", "w1", "--venture", &venture, "--max-tasks", "1"],
        "echo followed\n",
    );
    assert!(worker.exit().await.success(), "{}", worker.log());
    let done = task_in(&server, &id, "completed").await;
    assert_eq!(done["output"], "followed\n");
    assert!(pointed.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert_eq!(asked_in_vain.load(std::sync::atomic::Ordering::SeqCst), 0, "the named leader is asked first");
}

#[tokio::test(flavor = "multi_thread")]
async fn while_every_address_is_a_standby_the_client_waits_for_an_election_within_its_timeout() {
    use mission_control::client::Client;
    let (first, first_asked) = standby(None).await;
    let (second, second_asked) = standby(None).await;
    let client = Client::new(&[first, second], None).unwrap();
    let started = Instant::now();
    let (status, body) = client
        .send(reqwest::Method::GET, "/api/tasks", None::<&()>, Duration::from_millis(2500))
        .await
        .expect("a standby's answer once the time is up");
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&body).contains("not_leader"));
    // Retry-After: 1 twice within 2.5 s: three passes over both addresses.
    assert!((Duration::from_secs(2)..Duration::from_secs(5)).contains(&waited), "{waited:?}");
    let asked =
        (first_asked.load(std::sync::atomic::Ordering::SeqCst), second_asked.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(asked, (3, 3));
}
