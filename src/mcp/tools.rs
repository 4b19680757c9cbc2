//! The tools: each one is a request to one API route, sent through the [`Backend`], whose
//! answer becomes the tool's result. The API validates and decides everything; a tool only
//! fills in the default `agentId`, shapes a query, and turns a refusal into an `isError`
//! result carrying the API's error body.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, Method};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, ContentBlock, Extensions, Implementation, JsonObject, ServerCapabilities, ServerConfig,
};
use rmcp::schemars::JsonSchema;
use rmcp::{tool, tool_handler, tool_router, ServerHandler};
use serde_json::Value;

use super::{Answer, Backend};

/// How long a request other than a claim may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much longer than its `waitMs` a long-polling claim may take.
const CLAIM_SLACK: Duration = Duration::from_secs(10);
/// `list_tasks` without `limit`.
const DEFAULT_LIST_LIMIT: u32 = 20;
/// The task fields `list_tasks` returns unless asked for others: enough to choose a task,
/// small enough for a model's context.
const LIST_FIELDS: &str = "id,title,status,priority,ventureId,attempts,assignedTo,blockedBy";

const INSTRUCTIONS: &str = "Mission Control hands out tasks to a fleet of agents. To work: \
claim_task gives you one task (or none); while you work on it call heartbeat every third of its lease \
(leaseSeconds) so that it is not handed to another agent; end it with complete_task on success or \
fail_task on failure. Pass the task's `attempts` value from the claim as `attempt` to heartbeat, \
complete_task and fail_task. Other tools create, cancel, look up and list tasks and list ventures. \
A refused call returns isError with the API's error message and code.";

/// The Model Context Protocol server: one instance serves a session (or, over HTTP, a request).
#[derive(Clone)]
pub struct Tools {
    backend: Arc<Backend>,
    /// The `agentId` of calls that give none (`mission-control mcp --agent-id`).
    agent_id: Option<String>,
    tool_router: ToolRouter<Tools>,
}

impl Tools {
    pub fn new(backend: Arc<Backend>, agent_id: Option<String>) -> Tools {
        Tools { backend, agent_id: agent_id.filter(|id| !id.is_empty()), tool_router: Tools::tool_router() }
    }

    /// Sends one request, with the caller's `Authorization` header when the call came over
    /// HTTP, and makes the answer the tool's result.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        extensions: &Extensions,
        timeout: Duration,
    ) -> Result<Answer, CallToolResult> {
        let authorization = extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.headers.get(header::AUTHORIZATION))
            .cloned();
        self.backend.send(method, path, body, authorization.as_ref(), timeout).await.map_err(refusal_text)
    }

    /// `args` with `agentId` set to the default when the call gives none.
    fn with_agent(&self, mut args: JsonObject) -> Value {
        if matches!(args.get("agentId"), None | Some(Value::Null)) {
            if let Some(agent) = &self.agent_id {
                args.insert("agentId".into(), Value::String(agent.clone()));
            }
        }
        Value::Object(args)
    }

    async fn post(&self, path: &str, body: Value, extensions: &Extensions, timeout: Duration) -> CallToolResult {
        match self.call(Method::POST, path, Some(&body), extensions, timeout).await {
            Ok(answer) => answer.into_result(),
            Err(result) => result,
        }
    }
}

#[tool_router]
impl Tools {
    #[tool(
        description = "Claim the next task to work on. Call this when you are ready for work. Returns the claimed \
task as JSON (now `active` and assigned to you), or a message saying none is available; nothing is claimed \
then, so call again later or pass waitMs to wait for one. Remember the task's `id`, `attempts` (pass it as \
`attempt` to heartbeat, complete_task and fail_task) and `leaseSeconds`: call heartbeat every third of the \
lease, or the task goes back to the queue and another agent gets it. Hold one task at a time unless told otherwise.",
        input_schema = input::<ClaimArgs>()
    )]
    async fn claim_task(&self, args: JsonObject, extensions: Extensions) -> CallToolResult {
        let wait_ms = args.get("waitMs").and_then(Value::as_u64).unwrap_or(0).min(30_000);
        let timeout = Duration::from_millis(wait_ms) + CLAIM_SLACK;
        let body = self.with_agent(args);
        match self.call(Method::POST, "/api/tasks/claim", Some(&body), &extensions, timeout).await {
            Ok(Answer { status: 204, .. }) => text_result(
                "No task is available to claim right now (HTTP 204); nothing was claimed. Call claim_task again \
later, or with waitMs (up to 30000) to wait for one.",
                false,
            ),
            Ok(answer) => answer.into_result(),
            Err(result) => result,
        }
    }

    #[tool(
        description = "Extend the lease of a task you hold, to show you are still working on it. Call it every \
third of the task's leaseSeconds while you work. Pass `attempt` (the task's `attempts` from your claim): if \
the answer is an error with code `stale_lease` or `not_holder`, the task was given to someone else, so stop \
working on it and do not report it. If the answer has `cancelRequested: true`, stop and report with fail_task.",
        input_schema = input::<HeartbeatArgs>()
    )]
    async fn heartbeat(&self, args: JsonObject, extensions: Extensions) -> CallToolResult {
        self.post("/api/tasks/heartbeat", self.with_agent(args), &extensions, REQUEST_TIMEOUT).await
    }

    #[tool(
        description = "Report that a task you hold is done, with its result in `output`. Pass `attempt` (the \
task's `attempts` from your claim), and `actualCost` (money spent) and `tokensUsed` when you know them. \
Returns the completed task. Repeating the same report is safe. Use fail_task instead when the task failed.",
        input_schema = input::<CompleteArgs>()
    )]
    async fn complete_task(&self, args: JsonObject, extensions: Extensions) -> CallToolResult {
        if args.get("error").is_some_and(|error| !error.is_null()) {
            return text_result("complete_task does not take `error`: report a failure with fail_task.", true);
        }
        self.post("/api/tasks/complete", self.with_agent(args), &extensions, REQUEST_TIMEOUT).await
    }

    #[tool(
        description = "Report that a task you hold failed, with `error` saying why (required). Pass `attempt` \
(the task's `attempts` from your claim). The task goes back to the queue for another try, or becomes \
`failed` after its last allowed attempt. Returns the task.",
        input_schema = input::<FailArgs>()
    )]
    async fn fail_task(&self, args: JsonObject, extensions: Extensions) -> CallToolResult {
        if args.get("error").is_none_or(Value::is_null) {
            return text_result("fail_task needs `error`: say why the task failed.", true);
        }
        self.post("/api/tasks/complete", self.with_agent(args), &extensions, REQUEST_TIMEOUT).await
    }

    #[tool(
        description = "Create a task in a venture (list_ventures gives their ids). It waits in the queue for \
an agent to claim it; with `dependsOn` (ids of other tasks) it waits until they are completed. Higher \
`priority` tasks are claimed first. Returns the created task.",
        input_schema = input::<CreateArgs>()
    )]
    async fn create_task(&self, args: JsonObject, extensions: Extensions) -> CallToolResult {
        self.post("/api/tasks", Value::Object(args), &extensions, REQUEST_TIMEOUT).await
    }

    #[tool(
        description = "Cancel a task that should not be done. A queued or blocked task is cancelled at once; an \
active one is marked `cancelRequested` and its holder stops at its next heartbeat. Returns the task.",
        input_schema = input::<CancelArgs>()
    )]
    async fn cancel_task(&self, args: JsonObject, extensions: Extensions) -> CallToolResult {
        self.post("/api/tasks/cancel", Value::Object(args), &extensions, REQUEST_TIMEOUT).await
    }

    #[tool(
        description = "Get one task with all its fields (description, status, output, error, attempts, lease, \
dependencies). Use it to read a task's details or check on its progress.",
        input_schema = input::<GetArgs>()
    )]
    async fn get_task(&self, args: JsonObject, extensions: Extensions) -> CallToolResult {
        let id = match args.get("taskId") {
            Some(Value::String(id)) => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => return text_result("get_task needs `taskId`, a task's id.", true),
        };
        let path = format!("/api/tasks/{}", encode_segment(&id));
        match self.call(Method::GET, &path, None, &extensions, REQUEST_TIMEOUT).await {
            Ok(answer) => answer.into_result(),
            Err(result) => result,
        }
    }

    #[tool(
        description = "List tasks, oldest first, with their id, title, status, priority, ventureId, attempts, \
assignedTo and blockedBy (get_task gives the rest). Filter by `status` and `ventureId`; `limit` defaults to 20.",
        input_schema = input::<ListTasksArgs>()
    )]
    async fn list_tasks(&self, args: JsonObject, extensions: Extensions) -> CallToolResult {
        let mut query: Vec<(String, String)> = Vec::new();
        for (name, value) in &args {
            match value {
                Value::Null => {}
                Value::String(text) => query.push((name.clone(), text.clone())),
                other => query.push((name.clone(), other.to_string())),
            }
        }
        if !args.contains_key("limit") {
            query.push(("limit".into(), DEFAULT_LIST_LIMIT.to_string()));
        }
        if !args.contains_key("fields") {
            query.push(("fields".into(), LIST_FIELDS.into()));
        }
        let query = serde_urlencoded::to_string(&query).unwrap_or_default();
        match self.call(Method::GET, &format!("/api/tasks?{query}"), None, &extensions, REQUEST_TIMEOUT).await {
            Ok(answer) => answer.into_result(),
            Err(result) => result,
        }
    }

    #[tool(
        description = "List the ventures (projects tasks belong to) with their status, priority and capital: \
`capitalBudget` (0 means no budget), `capitalSpent`, `capitalReserved` (held for active tasks) and \
`budgetLeft` (what is left to spend, null without a budget). Use it to find a `ventureId`.",
        input_schema = rmcp::handler::server::common::schema_for_empty_input()
    )]
    async fn list_ventures(&self, extensions: Extensions) -> CallToolResult {
        match self.call(Method::GET, "/api/ventures", None, &extensions, REQUEST_TIMEOUT).await {
            Ok(mut answer) => {
                if let (200, Value::Array(ventures)) = (answer.status, &mut answer.body) {
                    for venture in ventures.iter_mut().filter_map(Value::as_object_mut) {
                        let left = budget_left(venture);
                        venture.insert("budgetLeft".into(), left);
                    }
                }
                answer.into_result()
            }
            Err(result) => result,
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mission-control", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}

impl Answer {
    /// A 2xx is the result, anything else an `isError` result; both carry the API's JSON.
    fn into_result(self) -> CallToolResult {
        if (200..300).contains(&self.status) {
            text_result(&self.body.to_string(), false)
        } else {
            let mut body = match self.body {
                Value::Object(body) => body,
                other => JsonObject::from_iter([("error".to_owned(), other)]),
            };
            body.insert("status".into(), self.status.into());
            text_result(&Value::Object(body).to_string(), true)
        }
    }
}

/// A request that got no answer (the server could not be reached).
fn refusal_text(error: String) -> CallToolResult {
    text_result(&serde_json::json!({ "error": error, "code": "unavailable" }).to_string(), true)
}

fn text_result(text: &str, is_error: bool) -> CallToolResult {
    let content = vec![ContentBlock::text(text)];
    if is_error {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    }
}

/// `capitalBudget − capitalSpent − capitalReserved`, counted in millionths as the server
/// counts money; null for a venture without a budget.
fn budget_left(venture: &JsonObject) -> Value {
    let micros = |name: &str| (venture.get(name).and_then(Value::as_f64).unwrap_or(0.0) * 1e6).round() as i64;
    let budget = micros("capitalBudget");
    if budget <= 0 {
        return Value::Null;
    }
    let left = budget - micros("capitalSpent") - micros("capitalReserved");
    serde_json::Number::from_f64(left as f64 / 1e6).map_or(Value::Null, Value::Number)
}

/// One path segment, percent-encoded.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A tool's input schema. The arguments go to the API as they are (the API validates
/// them); these types only describe them.
fn input<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    rmcp::handler::server::common::schema_for_input::<T>()
        .unwrap_or_else(|error| panic!("input schema of {}: {error}", std::any::type_name::<T>()))
}

#[allow(dead_code)] // schemas only
#[derive(JsonSchema)]
#[schemars(crate = "rmcp::schemars", rename_all = "camelCase")]
struct ClaimArgs {
    /// Who claims; defaults to the server's configured agent (required over HTTP).
    agent_id: Option<String>,
    /// Claim only from this venture.
    venture_id: Option<String>,
    /// Claim only a task carrying every one of these tags.
    tags: Option<Vec<String>>,
    /// How long to wait for a task when none is available now, in milliseconds (0..30000, default 0).
    #[schemars(range(min = 0, max = 30000))]
    wait_ms: Option<u64>,
    /// How long the claim holds the task without a heartbeat, in seconds (default: the server's).
    #[schemars(range(min = 1, max = 86400))]
    lease_seconds: Option<u32>,
}

#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(crate = "rmcp::schemars", rename_all = "camelCase")]
struct HeartbeatArgs {
    /// The task you hold.
    task_id: String,
    /// Who holds it; defaults to the server's configured agent (required over HTTP).
    agent_id: Option<String>,
    /// The task's `attempts` from your claim: guards against acting on a lease you lost.
    attempt: Option<u32>,
}

#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(crate = "rmcp::schemars", rename_all = "camelCase")]
struct CompleteArgs {
    /// The task you hold.
    task_id: String,
    /// Who holds it; defaults to the server's configured agent (required over HTTP).
    agent_id: Option<String>,
    /// The task's `attempts` from your claim.
    attempt: Option<u32>,
    /// The result of the work.
    output: Option<String>,
    /// Money spent on the task.
    #[schemars(range(min = 0))]
    actual_cost: Option<f64>,
    /// Tokens used on the task.
    tokens_used: Option<u64>,
}

#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(crate = "rmcp::schemars", rename_all = "camelCase")]
struct FailArgs {
    /// The task you hold.
    task_id: String,
    /// Who holds it; defaults to the server's configured agent (required over HTTP).
    agent_id: Option<String>,
    /// The task's `attempts` from your claim.
    attempt: Option<u32>,
    /// Why the task failed.
    error: String,
}

#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(crate = "rmcp::schemars", rename_all = "lowercase")]
enum Priority {
    Low,
    Medium,
    High,
}

#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(crate = "rmcp::schemars", rename_all = "camelCase")]
struct CreateArgs {
    /// A short title saying what to do.
    title: String,
    /// The venture the task belongs to (see list_ventures).
    venture_id: String,
    /// Everything the agent doing the task needs to know.
    description: Option<String>,
    /// Default medium.
    priority: Option<Priority>,
    /// Expected cost; a venture's budget holds back tasks it cannot afford.
    #[schemars(range(min = 0))]
    estimated_cost: Option<f64>,
    /// Labels; a claim can ask for tasks carrying some.
    tags: Option<Vec<String>>,
    /// Ids of tasks that must be completed before this one can be claimed.
    depends_on: Option<Vec<String>>,
}

#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(crate = "rmcp::schemars", rename_all = "camelCase")]
struct CancelArgs {
    /// The task to cancel.
    task_id: String,
    /// Why; kept as the task's error.
    reason: Option<String>,
}

#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(crate = "rmcp::schemars", rename_all = "camelCase")]
struct GetArgs {
    /// The task's id.
    task_id: String,
}

#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(crate = "rmcp::schemars", rename_all = "lowercase")]
enum Status {
    Queue,
    Active,
    Blocked,
    Completed,
    Failed,
    Cancelled,
}

#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(crate = "rmcp::schemars", rename_all = "camelCase")]
struct ListTasksArgs {
    /// Only tasks with this status.
    status: Option<Status>,
    /// Only this venture's tasks.
    venture_id: Option<String>,
    /// At most this many tasks (default 20).
    #[schemars(range(min = 1))]
    limit: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_left_is_exact_and_null_without_a_budget() {
        let venture = |v: Value| v.as_object().unwrap().clone();
        let with = venture(serde_json::json!({"capitalBudget": 100.1, "capitalSpent": 20.0, "capitalReserved": 3.39}));
        assert_eq!(budget_left(&with), serde_json::json!(76.71));
        let without = venture(serde_json::json!({"capitalBudget": 0, "capitalSpent": 5}));
        assert_eq!(budget_left(&without), Value::Null);
    }

    #[test]
    fn ids_are_encoded_as_one_path_segment() {
        assert_eq!(encode_segment("t-1_a.b~"), "t-1_a.b~");
        assert_eq!(encode_segment("a/b c?"), "a%2Fb%20c%3F");
    }
}
