//! The OpenAPI document the server serves at `/openapi.json` is the one checked in as
//! `docs/openapi.json`. After changing the API, regenerate it with
//! `MC_UPDATE_OPENAPI=1 cargo test --test openapi` and review the diff.

mod common;

use std::path::Path;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::Value;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

#[tokio::test(flavor = "multi_thread")]
async fn served_document_matches_docs_openapi_json() {
    let server = TestServer::start();
    let response = server.client.get(format!("{}/openapi.json", server.base)).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "content type {content_type}");
    let served: Value = response.json().await.expect("the document is JSON");
    assert_eq!(served["openapi"], "3.1.0");

    if std::env::var_os("MC_UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(&served).expect("encode") + "\n";
        std::fs::write(CHECKED_IN, text).expect("write docs/openapi.json");
        eprintln!("rewrote {CHECKED_IN}");
        return;
    }
    let checked_in = std::fs::read_to_string(Path::new(CHECKED_IN)).unwrap_or_default();
    let checked_in: Value = serde_json::from_str(&checked_in).unwrap_or(Value::Null);
    assert!(
        served == checked_in,
        "docs/openapi.json differs from the document the server serves at /openapi.json.\n\
         Regenerate it with `MC_UPDATE_OPENAPI=1 cargo test --test openapi` and review the diff."
    );
}

/// The document needs no token even when one is set, like `/healthz`.
#[tokio::test(flavor = "multi_thread")]
async fn document_is_open_when_a_token_is_set() {
    let server = TestServer::start_with(&["--api-token", "s3cret"]);
    let (status, body) = server.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["paths"]["/api/tasks/claim"]["post"].is_object(), "{body}");
    let (status, _) = server.get("/api/tasks").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
