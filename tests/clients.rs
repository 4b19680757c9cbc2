//! Slow and greedy clients: they cannot pin connections or stop claims.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TestServer;
use reqwest::StatusCode;
use serde_json::json;

fn server() -> TestServer {
    TestServer::start_with(&["--header-timeout-ms", "500", "--body-timeout-ms", "500"])
}

fn connect(server: &TestServer) -> TcpStream {
    let stream = TcpStream::connect(server.address()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream
}

/// Reads until the server closes the connection; returns what it sent and how long it took.
fn read_to_close(mut stream: TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut text = Vec::new();
    let _ = stream.read_to_end(&mut text);
    (String::from_utf8_lossy(&text).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let server = server();
    let mut stream = connect(&server);
    stream.write_all(b"GET /api/tasks HTTP/1.1\r\nHost: x\r\n").unwrap();
    let (_, waited) = tokio::task::spawn_blocking(move || read_to_close(stream)).await.unwrap();
    assert!(waited < Duration::from_secs(4), "closed after {waited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_body_gets_a_json_408() {
    let server = server();
    let mut stream = connect(&server);
    stream
        .write_all(b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"title\":")
        .unwrap();
    let (reply, waited) = tokio::task::spawn_blocking(move || read_to_close(stream)).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("\"code\":\"request_timeout\""), "{reply}");
    assert!(waited < Duration::from_secs(4), "answered after {waited:?}");
    assert_eq!(server.ok("/api/tasks").await.as_array().unwrap().len(), 3, "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_idle_connections_do_not_stop_claims() {
    let server = TestServer::start();
    let address = server.address();
    let idle = tokio::task::spawn_blocking(move || {
        (0..10_000).map(|_| TcpStream::connect(address).expect("connect")).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(idle.len(), 10_000);
    let (status, task) = server.post("/api/tasks/claim", json!({"agentId": "agent-main"})).await;
    assert_eq!((status, task["id"].as_str()), (StatusCode::OK, Some("clxyz123")));
    let (status, _) = server.post("/api/tasks/complete", json!({"taskId": "clxyz123", "agentId": "agent-main"})).await;
    assert_eq!(status, StatusCode::OK);
    drop(idle);
}
