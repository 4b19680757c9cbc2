//! `TestServer`: the real binary on an ephemeral port with a SQLite file in a temp dir,
//! spoken to over HTTP. In the test binary `on_postgres`, which runs the API suites again,
//! every server gets a PostgreSQL database of its own instead (`postgres.rs`).
#![allow(dead_code)] // each test binary uses its own part of this helper

pub mod postgres;
pub mod rng;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_mission-control");

/// The server binary a `TestServer` runs: `MC_SERVER_BIN` if set (to time a release build,
/// say), else the one cargo built for the tests.
fn server_bin() -> std::ffi::OsString {
    std::env::var_os("MC_SERVER_BIN").unwrap_or_else(|| BIN.into())
}

pub struct TestServer {
    child: Child,
    pub base: String,
    pub db: PathBuf,
    /// The server's standard error.
    pub log: PathBuf,
    pub client: reqwest::Client,
    /// Keeps the directory alive as long as the server that uses it.
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server on a new, seeded database.
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// A server on a new database with extra command-line arguments.
    pub fn start_with(args: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = match on_postgres().then(postgres::new_database).flatten() {
            Some(url) => PathBuf::from(url),
            None => dir.path().join("mission-control.db"),
        };
        let mut server = TestServer::start_on(&db, args);
        server._dir = Some(dir);
        server
    }

    /// The server's socket address, for tests that speak to it over a bare socket.
    pub fn address(&self) -> std::net::SocketAddr {
        self.base.trim_start_matches("http://").parse().expect("the server's address")
    }

    /// A server on the given database file or `postgres://` URL (kept by the caller).
    pub fn start_on(db: &Path, args: &[&str]) -> TestServer {
        TestServer::start_node(db, args, true)
    }

    /// A node on a PostgreSQL database another node leads: it serves as a standby.
    pub fn start_standby(db: &Path, args: &[&str]) -> TestServer {
        TestServer::start_node(db, args, false)
    }

    fn start_node(db: &Path, args: &[&str], until_ready: bool) -> TestServer {
        let log_path = log_path(db);
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut child = Command::new(server_bin())
            .arg("serve")
            .arg("--db")
            .arg(db)
            // An ephemeral port, unless the caller names one (to restart on the same address).
            .args(if args.contains(&"--addr") { &[][..] } else { &["--addr", "127.0.0.1:0"][..] })
            .args(args)
            .env_remove("MC_API_TOKEN")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn mission-control");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = sender.send(line);
            }
            for _ in lines {} // keep the pipe drained
        });
        let line = receiver.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("the server did not start:\n{log}")
        });
        let base = line.rsplit(' ').next().expect("address").trim().to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "unexpected start line: {line}");
        let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().expect("client");
        if until_ready && db.to_str().is_some_and(|db| db.starts_with("postgres://")) {
            // A node serves as a standby until it takes the leader's lease, within a second.
            wait_until_ready(&base, &log_path);
        }
        TestServer { child, base, db: db.to_owned(), log: log_path, client, _dir: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// GET that must answer 200.
    pub async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// The value of one Prometheus series (`name{labels}`), or `None` while it is absent.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.get("/metrics").await.1.as_str().unwrap_or_default().to_owned();
        text.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
    }

    /// Everything a client can see of the live state, for "nothing changed" checks.
    pub async fn state(&self) -> Value {
        serde_json::json!({
            "ventures": self.ok("/api/ventures").await,
            "tasks": self.ok("/api/tasks").await,
            "agents": self.ok("/api/agents").await,
            "activities": self.ok("/api/activities?limit=1000").await,
        })
    }

    /// The exit status once the process has ended on its own, waiting up to 30 s.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        signal(self.child.id(), "TERM");
        self.child.wait().expect("wait")
    }

    /// SIGKILL, then waits for the exit.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `GET /readyz` answers 200 (a plain blocking request: callers may be on
/// the test's runtime or not).
pub fn wait_until_ready(base: &str, log_path: &Path) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://").to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect(&addr) {
            let _ = stream
                .write_all(format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes());
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(log_path).unwrap_or_default();
    panic!("the server at {base} did not become ready:\n{log}")
}

/// Whether this test binary runs its servers on PostgreSQL: `tests/on_postgres.rs`.
pub fn on_postgres() -> bool {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with("on_postgres"))
}

/// Where a server's log goes: next to a SQLite file, or in the temp dir for a database URL.
pub fn log_path(db: &Path) -> PathBuf {
    match db.to_str().filter(|db| db.starts_with("postgres://")) {
        Some(url) => std::env::temp_dir().join(format!(
            "mc-{}-{}.log",
            url.rsplit('/').next().unwrap_or("server"),
            ulid::Ulid::new().to_string().to_lowercase()
        )),
        None => db.with_extension("log"),
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("kill");
    assert!(status.success());
}

/// Waits for a condition, not for a time; gives up after a generous bound.
pub async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Runs the binary with arguments and returns (success, stdout + stderr).
pub fn run_cli(args: &[&str]) -> (bool, String) {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("MC_DB")
        .output()
        .expect("run mission-control");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Counts rows in a table straight from the database: the SQLite file, or PostgreSQL, where
/// the tables' and columns' camelCase names are quoted (`postgres::quote_names`).
pub fn count_rows(db: &Path, sql: &str) -> i64 {
    if let Some(url) = db.to_str().filter(|db| db.starts_with("postgres://")) {
        let (url, sql) = (url.to_owned(), postgres::quote_names(sql));
        return std::thread::spawn(move || {
            let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).expect("connect");
            client.query_one(sql.as_str(), &[]).expect("query").get(0)
        })
        .join()
        .expect("counting rows");
    }
    let conn = rusqlite::Connection::open(db).expect("open db");
    conn.query_row(sql, [], |row| row.get(0)).expect("query")
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// A reader of `GET /api/events`.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    pub async fn open(server: &TestServer, last_event_id: Option<&str>) -> EventStream {
        let mut request = server.client.get(format!("{}/api/events", server.base));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("open the event stream");
        assert_eq!(response.status(), StatusCode::OK);
        EventStream { response, buffer: String::new() }
    }

    /// The next event (keep-alive comments skipped), or `None` after `wait` without one.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(SseEvent { id, event, data: serde_json::from_str(&data).expect("event data is JSON") });
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?.expect("stream chunk")?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
