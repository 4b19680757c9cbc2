//! `GET /api/events`: every change in order, resumable, and never a brake on the scheduler.

mod common;

use std::time::Duration;

use common::{EventStream, TestServer};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long an event that is due at once may take: generous, since a busy two-core machine
/// running the suite in parallel can hold a test back for seconds.
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn changes_arrive_in_order_with_increasing_ids() {
    let server = TestServer::start();
    let mut stream = EventStream::open(&server, None).await;
    server
        .post(
            "/api/tasks",
            json!({"id": "e1", "title": "watch me", "ventureId": "clxyz-ecommerce", "priority": "high"}),
        )
        .await;
    server.post("/api/tasks/claim", json!({"agentId": "agent-main"})).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(stream.next(WAIT).await.expect("an event"));
    }
    let kinds: Vec<&str> = seen.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["task", "activity", "task", "agent", "activity"]);
    assert_eq!((seen[0].data["id"].as_str(), seen[0].data["status"].as_str()), (Some("e1"), Some("queue")));
    assert_eq!(seen[1].data["type"], "task_created");
    assert_eq!(
        (seen[2].data["status"].as_str(), seen[2].data["assignedTo"].as_str()),
        (Some("active"), Some("agent-main"))
    );
    assert_eq!(seen[3].data["status"], "busy");
    assert_eq!(seen[4].data["type"], "task_claimed");
    let ids: Vec<u64> = seen.iter().map(|e| e.id.as_deref().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");

    server.delete("/api/tasks/clxyz125").await;
    let deleted = stream.next(WAIT).await.unwrap();
    assert_eq!((deleted.event.as_str(), deleted.data["id"].as_str()), ("task_deleted", Some("clxyz125")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconnect_with_last_event_id_resumes_without_loss_or_repeat() {
    let server = TestServer::start();
    let mut stream = EventStream::open(&server, None).await;
    server.post("/api/activities", json!({"title": "one"})).await;
    let first = stream.next(WAIT).await.unwrap();
    drop(stream);
    for title in ["two", "three"] {
        server.post("/api/activities", json!({"title": title})).await;
    }
    let mut resumed = EventStream::open(&server, first.id.as_deref()).await;
    let titles: Vec<String> = [resumed.next(WAIT).await.unwrap(), resumed.next(WAIT).await.unwrap()]
        .iter()
        .map(|e| e.data["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles, ["two", "three"]);
    assert!(resumed.next(Duration::from_millis(300)).await.is_none(), "nothing repeated");

    let mut stale = EventStream::open(&server, Some("1")).await;
    assert_eq!(stale.next(WAIT).await.unwrap().event, "reload", "an id from another run means reload");
    let (status, body) = server.get("/api/events?lastEventId=soon").await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("lastEventId")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_client_does_not_slow_claims_and_is_told_to_reload() {
    let server = TestServer::start_with(&["--no-seed"]);
    for w in 0..8 {
        server.post("/api/ventures", json!({"id": format!("v{w}"), "name": "v"})).await;
    }
    let mut stalled = StalledStream::open(&server).await;
    // 3,000 create + claim + complete cycles make about 24,000 events and, with each task
    // carrying a 2 KB description, about 20 MB of them: far past what a subscriber may fall
    // behind even after the kernel's socket buffers have taken their share.
    let description = "d".repeat(2048);
    let cycles: Vec<_> = (0..8)
        .map(|w| {
            let (client, base, description) = (server.client.clone(), server.base.clone(), description.clone());
            tokio::spawn(async move {
                for i in 0..375 {
                    let id = format!("s{w}-{i}");
                    let post =
                        |path: &str, body: serde_json::Value| client.post(format!("{base}{path}")).json(&body).send();
                    let venture = format!("v{w}");
                    let task = json!({"id": id, "title": "x", "ventureId": venture, "description": description});
                    let created = post("/api/tasks", task).await.unwrap();
                    assert_eq!(created.status(), 201);
                    let claimed = post("/api/tasks/claim", json!({"agentId": format!("a{w}"), "ventureId": venture}))
                        .await
                        .unwrap();
                    assert_eq!(claimed.status(), 200);
                    let done =
                        post("/api/tasks/complete", json!({"taskId": id, "agentId": format!("a{w}")})).await.unwrap();
                    assert_eq!(done.status(), 200);
                }
            })
        })
        .collect();
    for c in cycles {
        c.await.unwrap();
    }
    assert_eq!(server.ok("/api/tasks?status=completed").await.as_array().unwrap().len(), 3000);
    assert!(stalled.read_until("event: reload\n").await, "a client that fell behind is told to reload");
}

/// An event stream on a bare socket with a small receive buffer, left unread: what the
/// server cannot hand over waits on its side, whatever the machine's TCP buffer settings
/// (a client with the defaults can take megabytes before it looks stalled).
struct StalledStream {
    socket: TcpStream,
}

impl StalledStream {
    async fn open(server: &TestServer) -> StalledStream {
        let addr = server.address();
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut socket = socket.connect(addr).await.unwrap();
        let request = format!("GET /api/events HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut stalled = StalledStream { socket };
        assert!(stalled.read_until("\r\n\r\n").await, "the stream's headers");
        stalled
    }

    /// Reads until `needle` has arrived; false if the stream ends, or stays silent for
    /// `WAIT`, first.
    async fn read_until(&mut self, needle: &str) -> bool {
        let mut seen: Vec<u8> = Vec::new();
        let mut buffer = vec![0; 64 * 1024];
        loop {
            match tokio::time::timeout(WAIT, self.socket.read(&mut buffer)).await {
                Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buffer[..n]),
                _ => return false,
            }
            if seen.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return true;
            }
            // Only a needle cut by the read's edge can still be found in what is kept.
            let keep = seen.len().min(needle.len() - 1);
            seen.drain(..seen.len() - keep);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_replay_arrives_whole_and_in_order() {
    let server = TestServer::start_with(&["--no-seed"]);
    let mut first = EventStream::open(&server, None).await;
    // About 600 KB of events: a replay of them takes several of the stream's writes.
    let long = "x".repeat(900);
    for i in 0..600 {
        server.post("/api/activities", json!({"title": format!("{i} {long}")})).await;
    }
    let start = first.next(WAIT).await.expect("the first event");
    drop(first);
    let response = server
        .client
        .get(format!("{}/api/events", server.base))
        .header("Last-Event-ID", start.id.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut replay = EventStream::open(&server, start.id.as_deref()).await;
    let mut last: u64 = start.id.as_deref().unwrap().parse().unwrap();
    for i in 1..600 {
        let event = replay.next(WAIT).await.expect("a replayed event");
        let id: u64 = event.id.as_deref().unwrap().parse().unwrap();
        assert_eq!((id, event.data["title"].as_str()), (last + 1, Some(format!("{i} {long}").as_str())));
        last = id;
    }
    assert!(replay.next(Duration::from_millis(300)).await.is_none(), "nothing after the last");
}

#[tokio::test(flavor = "multi_thread")]
async fn event_streams_are_bounded() {
    let server = TestServer::start_with(&["--max-event-streams", "2"]);
    let _a = EventStream::open(&server, None).await;
    let _b = EventStream::open(&server, None).await;
    let (status, body) = server.get("/api/events").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")));
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_ends_open_streams_instead_of_waiting_for_them() {
    let server = TestServer::start();
    let mut stream = EventStream::open(&server, None).await;
    server.post("/api/activities", json!({"title": "before"})).await;
    assert!(stream.next(WAIT).await.is_some());
    let exit = tokio::task::spawn_blocking(move || server.terminate());
    let status = tokio::time::timeout(Duration::from_secs(15), exit).await.expect("the server stops").unwrap();
    assert!(status.success());
    assert!(stream.next(Duration::from_secs(2)).await.is_none(), "the stream ended");
}
