//! The Model Context Protocol: the scheduler's operations as tools for LLM agents.
//!
//! Every tool is a request to one of the API's own routes (`tools`), so validation, rules
//! and error messages are the API's. A [`Backend`] sends it: over standard input and output
//! (`mission-control mcp`) to the server at `--url`; at `/mcp` inside the server, to the
//! API's router in-process, with the caller's `Authorization` header.

mod tools;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request};
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::client::{Client, ClientError};
use crate::config::McpArgs;
pub use tools::Tools;

/// Where the tools' requests go.
pub enum Backend {
    /// A server over the network (`mission-control mcp --url`).
    Remote(Client),
    /// The API's router in this process (`/mcp`).
    Local(Router),
}

/// An answer of the API: its status and its JSON body (`null` when empty).
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Backend {
    /// Sends one request; `Err` only when no answer came (the server cannot be reached).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        authorization: Option<&HeaderValue>,
        timeout: Duration,
    ) -> Result<Answer, String> {
        let (status, bytes) = match self {
            Backend::Remote(client) => match client.send(method, path, body, timeout).await {
                Ok((status, bytes)) => (status.as_u16(), bytes),
                Err(ClientError::Unavailable(message)) => return Err(format!("server unavailable: {message}")),
                Err(error) => return Err(error.to_string()),
            },
            Backend::Local(router) => {
                let mut request = Request::builder().method(method).uri(path);
                if let Some(authorization) = authorization {
                    request = request.header(header::AUTHORIZATION, authorization);
                }
                let request = match body {
                    Some(body) => request
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(serde_json::to_vec(body).map_err(|error| error.to_string())?)),
                    None => request.body(Body::empty()),
                }
                .map_err(|error| error.to_string())?;
                let response = router.clone().oneshot(request).await.unwrap_or_else(|never| match never {});
                let status = response.status().as_u16();
                let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .map_err(|error| format!("reading the answer: {error}"))?;
                (status, bytes.to_vec())
            }
        };
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Ok(Answer { status, body })
    }
}

/// `mission-control mcp`: serves the tools over standard input and output until the client
/// closes them. Logs go to standard error; standard output carries the protocol only.
pub async fn serve_stdio(args: McpArgs) -> anyhow::Result<()> {
    let client =
        Client::new(&args.url, args.api_token.filter(|token| !token.is_empty())).context("creating the HTTP client")?;
    let tools = Tools::new(Arc::new(Backend::Remote(client)), args.agent_id);
    let session = tools.serve(rmcp::transport::stdio()).await.context("starting the MCP session")?;
    session.waiting().await.context("serving MCP")?;
    Ok(())
}

/// The streamable HTTP transport at `/mcp`, its tools calling `api` in-process. Stateless:
/// every request stands alone, answered with JSON. Without a token the server is meant for
/// this machine, so only loopback `Host` names are accepted (against DNS rebinding); with a
/// token, any.
pub fn http_service(
    api: Router,
    any_host: bool,
    max_body_bytes: usize,
) -> StreamableHttpService<Tools, LocalSessionManager> {
    let tools = Tools::new(Arc::new(Backend::Local(api)), None);
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(max_body_bytes);
    if any_host {
        config = config.disable_allowed_hosts();
    }
    StreamableHttpService::new(move || Ok(tools.clone()), Default::default(), config)
}
