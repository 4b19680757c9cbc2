//! A fleet of simulated agents against a running mission-control.
//!
//! It creates a venture of its own and a pool of tasks, then runs N agents that each loop
//! claim → (heartbeat) → complete over keep-alive connections, on one client thread. It prints one JSON line: cycles per second over the measured window,
//! claim and complete latency percentiles, errors by status, and two correctness checks:
//! no task handed out twice, and the venture's `capitalSpent` equal to what was charged.
//! It exits non-zero when a check fails.
//!
//! With `--listers K`, K more clients fetch a listing (`--listing-path`, by default every
//! task, `GET /api/tasks`) over and over on a thread of their own while the agents run,
//! reading each streamed answer to its end; the summary then counts the listings. That is
//! the question "does a listing during load raise claim latency?" (`listing.sh`).
//!
//! `--url` may name several nodes of one PostgreSQL-backed cluster: requests go to the node
//! that answered last and follow a standby's 503 `not_leader` to the leader it names (or to
//! the next address). Across a failover it reports the gaps (first failed request to the
//! first claim answered after it, and how many requests failed in between), and it checks
//! at the end that every acknowledged completion (task, attempt) is on the server exactly
//! once: the task completed with that attempt, and `capitalSpent` equal to the number of
//! completed tasks, so no report was charged twice.
//!
//! With `--delayed N` it measures something else: how late parked claims receive tasks
//! delayed by `runAt` (see `delayed.rs`).

mod delayed;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(about = "Simulated agents against a running mission-control")]
struct Args {
    /// The server's base address (loopback only: this is a local tool); repeat it, or
    /// separate addresses with commas, for the nodes of a highly available cluster.
    #[arg(long, default_value = "http://127.0.0.1:3000", value_delimiter = ',')]
    url: Vec<String>,
    /// Concurrent agents.
    #[arg(long, default_value_t = 64)]
    agents: usize,
    /// Tasks created before the run; the run ends early when they are all done.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// Length of the measured window, in seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Send one heartbeat between claim and complete.
    #[arg(long)]
    heartbeat: bool,
    /// Report every Nth cycle as a failure (0: never); failed tasks are requeued and claimed again.
    #[arg(long, default_value_t = 0)]
    fail_every: u64,
    /// After each completion, create a fresh task, so the queue never drains (for soaks).
    #[arg(long)]
    refill: bool,
    /// Delete each task once completed, so the server's live set stays constant (for soaks).
    #[arg(long)]
    delete_done: bool,
    /// Print a JSON line of interval figures every this many seconds (0: only the summary).
    #[arg(long, default_value_t = 0.0)]
    report_every: f64,
    /// Instead of the claim → complete loop: create this many tasks with `runAt` spread over
    /// `--spread` seconds and measure how late parked claims receive them.
    #[arg(long)]
    delayed: Option<usize>,
    /// With `--delayed`: the parked claimers.
    #[arg(long, default_value_t = 32)]
    claimers: usize,
    /// With `--delayed`: the seconds the `runAt`s are spread over.
    #[arg(long, default_value_t = 5.0)]
    spread: f64,
    /// With `--delayed`: the seconds from the first create to the first `runAt`.
    #[arg(long, default_value_t = 1.0)]
    lead: f64,
    /// Clients that fetch `--listing-path` in a loop, each on its own connection, while
    /// the agents run (0: none).
    #[arg(long, default_value_t = 0)]
    listers: usize,
    /// What the listers fetch; `GET /api/tasks` lists every task, finished ones streamed
    /// from the database. `/api/events` replays the event feed instead: each lister
    /// reconnects with a `Last-Event-ID` `REPLAY_EVENTS` events back, reads that many
    /// events and hangs up, over and over.
    #[arg(long, default_value = "/api/tasks")]
    listing_path: String,
    /// The nice value of the listers' thread: above 0, reading the listings yields the
    /// client's share of the cores to the agents, which share the machine with the server.
    #[arg(long, default_value_t = 0)]
    listers_nice: i32,
    /// Bearer token, if the server has one.
    #[arg(long, env = "MC_API_TOKEN")]
    token: Option<String>,
}

/// What one agent saw.
#[derive(Default)]
struct Tally {
    claim_us: Option<Histogram<u64>>,
    complete_us: Option<Histogram<u64>>,
    measured_cycles: u64,
    completed: u64,
    /// (task id, attempt) of every claim: a repeat is a double hand-out. Deleted tasks leave.
    claims: HashSet<(String, u64)>,
    double_claims: u64,
    errors: BTreeMap<String, u64>,
    interval_claim_us: Option<Histogram<u64>>,
    interval_cycles: u64,
    /// (task id, attempt) of every completion the server acknowledged with a 2xx.
    acknowledged: Vec<(String, u64)>,
    /// Since when requests have been failing (sent time of the first failure), if they are.
    outage_since: Option<Instant>,
    /// Requests failed since `outage_since`.
    failed_in_outage: u64,
    /// Every outage that ended: (length, requests failed during it).
    outages: Vec<(Duration, u64)>,
}

impl Tally {
    /// A request sent at `sent` failed: no answer, or a 5xx.
    fn failed(&mut self, sent: Instant) {
        self.outage_since.get_or_insert(sent);
        self.failed_in_outage += 1;
    }

    /// A claim sent at `sent` was answered: an outage that began before it is over.
    fn claim_answered(&mut self, sent: Instant) {
        if let Some(since) = self.outage_since.filter(|since| *since <= sent) {
            self.outages.push((Instant::now() - since, std::mem::take(&mut self.failed_in_outage)));
            self.outage_since = None;
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// The load's HTTP client: one connection pool, several addresses of which one leads.
struct Client {
    http: reqwest::Client,
    /// Base addresses without a trailing `/`.
    urls: Vec<String>,
    /// The index in `urls` of the address that answered last.
    current: Cell<usize>,
    token: Option<String>,
}

/// What a standby says in its 503.
struct NotLeader {
    leader: Option<String>,
}

fn not_leader(status: StatusCode, body: Option<&Value>) -> Option<NotLeader> {
    let body = body.filter(|body| status == StatusCode::SERVICE_UNAVAILABLE && body["code"] == "not_leader")?;
    Some(NotLeader { leader: body["leader"].as_str().map(|url| url.trim_end_matches('/').to_owned()) })
}

impl Client {
    /// Sends to the address in use; on a refused connection or a standby's refusal, moves
    /// once round the others (the named leader first) and returns the last answer or error.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Result<(StatusCode, Option<Value>)> {
        let mut index = self.current.get();
        let mut tried = vec![false; self.urls.len()];
        loop {
            tried[index] = true;
            let mut request = self.http.request(method.clone(), format!("{}{}", self.urls[index], path));
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let mut leader = None;
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let bytes = response.bytes().await?;
                    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
                    match not_leader(status, body.as_ref()) {
                        None => {
                            self.current.set(index);
                            return Ok((status, body));
                        }
                        Some(refusal) => leader = refusal.leader,
                    }
                    Ok((status, body))
                }
                Err(error) if error.is_connect() => Err(error),
                Err(error) => return Err(error),
            };
            let named =
                leader.and_then(|leader| self.urls.iter().position(|url| *url == leader)).filter(|&i| !tried[i]);
            let next = named
                .or_else(|| (1..self.urls.len()).map(|step| (index + step) % self.urls.len()).find(|&i| !tried[i]));
            match next {
                Some(next) => index = next,
                None => {
                    // Nobody leads right now: the next request starts at the next address.
                    self.current.set((index + 1) % self.urls.len());
                    return outcome;
                }
            }
        }
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Result<(StatusCode, Option<Value>)> {
        self.request(Method::POST, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> reqwest::Result<StatusCode> {
        Ok(self.request(Method::DELETE, path, None).await?.0)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        match self.request(Method::GET, path, None).await? {
            (StatusCode::OK, Some(body)) => Ok(body),
            (status, body) => bail!("GET {path}: {status} {body:?}"),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for url in &args.url {
        let host = url.trim_start_matches("http://").split(['/', ':']).next().unwrap_or_default();
        if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            bail!("refusing to load {host}: this tool only targets the loopback interface");
        }
    }
    // One client thread, as the published targets assume; the agents share its tally.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(tokio::task::LocalSet::new().run_until(run(args)))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let client = Rc::new(Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.agents.max(args.claimers) + 40)
            .tcp_nodelay(true)
            .build()?,
        urls: args.url.iter().map(|url| url.trim_end_matches('/').to_owned()).collect(),
        current: Cell::new(0),
        token: args.token.clone(),
    });
    if let Some(tasks) = args.delayed {
        let options = delayed::Options { tasks, claimers: args.claimers, spread: args.spread, lead: args.lead };
        return delayed::run(client, options).await;
    }
    let venture = format!("loadtest-{}-{}", std::process::id(), now_millis());
    create(&client, "/api/ventures", &json!({"id": venture, "name": venture})).await.context("creating the venture")?;
    create_tasks(&client, &venture, args.tasks).await?;

    let tally = Rc::new(RefCell::new(Tally {
        claim_us: Some(histogram()),
        complete_us: Some(histogram()),
        interval_claim_us: Some(histogram()),
        ..Tally::default()
    }));
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    if args.report_every > 0.0 {
        let (tally, every) = (tally.clone(), Duration::from_secs_f64(args.report_every));
        tokio::task::spawn_local(async move {
            while Instant::now() + every <= end {
                tokio::time::sleep(every).await;
                let mut tally = tally.borrow_mut();
                let claim = tally.interval_claim_us.replace(histogram()).expect("histogram");
                let cycles = std::mem::take(&mut tally.interval_cycles);
                let ms = |q: f64| claim.value_at_quantile(q) as f64 / 1000.0;
                let line = json!({
                    "elapsed_s": round(started.elapsed().as_secs_f64()),
                    "cycles_per_s": round(cycles as f64 / every.as_secs_f64()),
                    "claim_ms": {"p50": ms(0.5), "p99": ms(0.99)},
                    "errors": tally.errors.values().sum::<u64>(),
                });
                println!("{line}");
            }
        });
    }
    let listings = (args.listers > 0).then(|| {
        // Listings go to the first address; they measure a single server under load.
        let base = args.url[0].trim_end_matches('/').to_owned();
        let listing = Listing {
            url: format!("{base}{}", args.listing_path),
            token: args.token.clone(),
            last_event: std::cell::Cell::new(0),
        };
        listing.start(args.listers, args.listers_nice, end)
    });
    let options = AgentOptions {
        heartbeat: args.heartbeat,
        fail_every: args.fail_every,
        refill: args.refill,
        delete_done: args.delete_done,
    };
    let agents: Vec<_> = (0..args.agents)
        .map(|a| {
            let (client, tally, venture) = (client.clone(), tally.clone(), venture.clone());
            tokio::task::spawn_local(async move {
                agent_loop(a, &client, &tally, &venture, measure_from, end, options).await
            })
        })
        .collect();
    for agent in agents {
        agent.await?;
    }
    let finished = Instant::now().min(end);
    let window = finished.saturating_duration_since(measure_from).as_secs_f64();

    let listings = match listings {
        Some(thread) => Some(thread.join().map_err(|_| anyhow::anyhow!("the listers' thread panicked"))??),
        None => None,
    };
    let spent = client.get(&format!("/api/ventures/{venture}")).await?["capitalSpent"].as_f64().unwrap_or(-1.0);
    // Every acknowledged completion is on the server exactly once. Deleted tasks are gone,
    // so with --delete-done only the charge is checked.
    let acknowledged_list = std::mem::take(&mut tally.borrow_mut().acknowledged);
    let acknowledged = verify_acknowledged(&client, &venture, &acknowledged_list, args.delete_done).await?;
    let tally = tally.borrow();
    let double_claims = tally.double_claims;
    let capital_consistent = match acknowledged.completed_on_server {
        Some(completed) => (spent - completed as f64).abs() < 1e-6 && completed >= tally.completed,
        None => (spent - tally.completed as f64).abs() < 1e-6,
    };
    let claim = tally.claim_us.as_ref().expect("histogram");
    let complete = tally.complete_us.as_ref().expect("histogram");
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let longest = tally.outages.iter().max_by_key(|(gap, _)| *gap).copied();
    let gap_ms = |gap: Duration| round(gap.as_secs_f64() * 1000.0);
    let report = json!({
        "agents": args.agents,
        "window_s": round(window),
        "cycles": tally.measured_cycles,
        "cycles_per_s": round(if window > 0.0 { tally.measured_cycles as f64 / window } else { 0.0 }),
        "claim_ms": {"p50": ms(claim, 0.5), "p99": ms(claim, 0.99), "p999": ms(claim, 0.999)},
        "complete_ms": {"p50": ms(complete, 0.5), "p99": ms(complete, 0.99), "p999": ms(complete, 0.999)},
        "errors": tally.errors,
        "completed_total": tally.completed,
        "double_claims": double_claims,
        "capital_spent": spent,
        "capital_consistent": capital_consistent,
        "listings": listings.map(|l| json!({
            "listers": args.listers,
            "path": args.listing_path,
            "completed": l.completed,
            "failed": l.failed,
            "mb": round(l.bytes as f64 / 1e6),
            "mean_ms": round(if l.completed > 0 { l.busy.as_secs_f64() * 1000.0 / l.completed as f64 } else { 0.0 }),
        })),
        "acknowledged_completions": acknowledged_list.len(),
        "acknowledged_lost": acknowledged.lost,
        "acknowledged_twice": acknowledged.twice,
        "completed_on_server": acknowledged.completed_on_server,
        "failover_gap_ms": longest.map(|(gap, _)| gap_ms(gap)),
        "failed_in_gap": longest.map(|(_, failed)| failed),
        "gaps_ms": tally.outages.iter().map(|(gap, _)| gap_ms(*gap)).collect::<Vec<_>>(),
        "unended_outage": tally.outage_since.is_some(),
    });
    println!("{report}");
    if double_claims > 0 || !capital_consistent || acknowledged.lost > 0 || acknowledged.twice > 0 {
        bail!(
            "correctness check failed: {double_claims} double claims, capital {spent} for {} acknowledged completions, \
             {} acknowledged completions lost, {} acknowledged twice",
            tally.completed,
            acknowledged.lost,
            acknowledged.twice
        );
    }
    Ok(())
}

/// Listings fetched in a loop beside the agents.
struct Listing {
    url: String,
    token: Option<String>,
    /// The newest event id a replaying lister has read (0: none yet).
    last_event: std::cell::Cell<u64>,
}

/// Events each replay of the event feed reads: most of what the server keeps (10,000).
const REPLAY_EVENTS: u64 = 9_000;

/// What the listers did.
#[derive(Default)]
struct Listed {
    completed: u64,
    failed: u64,
    bytes: u64,
    /// Time spent in listings that completed.
    busy: Duration,
}

impl Listing {
    /// Runs `listers` clients until `end` on a thread of their own, so that reading the
    /// answers does not delay the agents' client thread (the server's cores are shared
    /// all the same), at `nice` (Linux: a thread's own nice value).
    fn start(self, listers: usize, nice: i32, end: Instant) -> std::thread::JoinHandle<anyhow::Result<Listed>> {
        std::thread::spawn(move || {
            if nice > 0 {
                // SAFETY: plain system calls on this thread; on failure it keeps its priority.
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS as _, libc::syscall(libc::SYS_gettid) as libc::id_t, nice)
                };
            }
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
                let listing = Rc::new(self);
                let total = Rc::new(RefCell::new(Listed::default()));
                let local = tokio::task::LocalSet::new();
                for _ in 0..listers {
                    let (http, listing, total) = (http.clone(), listing.clone(), total.clone());
                    local.spawn_local(async move {
                        while Instant::now() < end {
                            let started = Instant::now();
                            let result = tokio::time::timeout_at(end.into(), listing.fetch(&http)).await;
                            let mut total = total.borrow_mut();
                            match result {
                                Ok(Ok(bytes)) => {
                                    total.completed += 1;
                                    total.bytes += bytes;
                                    total.busy += started.elapsed();
                                }
                                Ok(Err(_)) => total.failed += 1,
                                Err(_) => {} // cut off by the end of the run
                            }
                        }
                    });
                }
                local.await;
                Ok(Rc::try_unwrap(total).map_err(|_| anyhow::anyhow!("a lister outlived the run"))?.into_inner())
            })
        })
    }

    /// One listing, read to its end a chunk at a time; returns its length.
    async fn fetch(&self, http: &reqwest::Client) -> anyhow::Result<u64> {
        if self.url.contains("/api/events") {
            return self.replay(http).await;
        }
        let mut response = self.get(http).send().await?.error_for_status()?;
        let mut bytes = 0u64;
        while let Some(chunk) = response.chunk().await? {
            bytes += chunk.len() as u64;
        }
        Ok(bytes)
    }

    fn get(&self, http: &reqwest::Client) -> reqwest::RequestBuilder {
        let request = http.get(&self.url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// One replay of the event feed from `REPLAY_EVENTS` before the newest event read so
    /// far (the first connection only learns an id); returns the bytes read.
    async fn replay(&self, http: &reqwest::Client) -> anyhow::Result<u64> {
        let last = self.last_event.get();
        let mut request = self.get(http);
        let wanted = if last == 0 {
            1
        } else {
            request = request.header("Last-Event-ID", last.saturating_sub(REPLAY_EVENTS).to_string());
            REPLAY_EVENTS
        };
        let mut response = request.send().await?.error_for_status()?;
        let (mut bytes, mut events, mut line) = (0u64, 0u64, Vec::new());
        while events < wanted {
            let Some(chunk) = response.chunk().await? else { break };
            bytes += chunk.len() as u64;
            for &byte in chunk.iter() {
                if byte != b'\n' {
                    line.push(byte);
                    continue;
                }
                if let Some(id) = line.strip_prefix(b"id:") {
                    if let Some(id) = std::str::from_utf8(id).ok().and_then(|id| id.trim().parse::<u64>().ok()) {
                        self.last_event.set(self.last_event.get().max(id));
                        events += 1;
                    }
                } else if line.starts_with(b"event: reload") || line.starts_with(b"event:reload") {
                    // Too far back: start over from the live feed.
                    self.last_event.set(0);
                    return Ok(bytes);
                }
                line.clear();
            }
        }
        Ok(bytes)
    }
}

/// What the server holds of the acknowledged completions.
struct Acknowledged {
    /// Acknowledged (task, attempt) not found completed with that attempt.
    lost: u64,
    /// Tasks whose completion was acknowledged more than once.
    twice: u64,
    /// The venture's completed tasks, when they were listed.
    completed_on_server: Option<u64>,
}

async fn verify_acknowledged(
    client: &Client,
    venture: &str,
    acknowledged: &[(String, u64)],
    deleted: bool,
) -> anyhow::Result<Acknowledged> {
    let mut seen = HashSet::new();
    let twice = acknowledged.iter().filter(|(id, _)| !seen.insert(id.as_str())).count() as u64;
    if deleted {
        return Ok(Acknowledged { lost: 0, twice, completed_on_server: None });
    }
    // A server without the listing (the in-memory baseline) is checked by its charge only.
    let listed =
        match client.request(Method::GET, &format!("/api/tasks?ventureId={venture}&status=completed"), None).await? {
            (StatusCode::OK, Some(listed)) => listed,
            (StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED, _) => {
                return Ok(Acknowledged { lost: 0, twice, completed_on_server: None })
            }
            (status, body) => bail!("listing the completed tasks: {status} {body:?}"),
        };
    let completed: HashMap<&str, u64> = listed
        .as_array()
        .context("the task list is not an array")?
        .iter()
        .filter(|task| task["status"] == "completed")
        .map(|task| (task["id"].as_str().unwrap_or_default(), task["attempts"].as_u64().unwrap_or(0)))
        .collect();
    let lost = acknowledged.iter().filter(|(id, attempt)| completed.get(id.as_str()) != Some(attempt)).count() as u64;
    Ok(Acknowledged { lost, twice, completed_on_server: Some(completed.len() as u64) })
}

/// What each agent does besides claim and complete.
#[derive(Clone, Copy)]
struct AgentOptions {
    heartbeat: bool,
    fail_every: u64,
    refill: bool,
    delete_done: bool,
}

async fn agent_loop(
    index: usize,
    client: &Client,
    tally: &RefCell<Tally>,
    venture: &str,
    measure_from: Instant,
    end: Instant,
    options: AgentOptions,
) {
    let AgentOptions { heartbeat, fail_every, refill, delete_done } = options;
    let agent = format!("{venture}-agent-{index}");
    let claim_body = json!({"agentId": agent, "ventureId": venture});
    let mut cycle = 0u64;
    while Instant::now() < end {
        let t0 = Instant::now();
        let claimed = match client.post("/api/tasks/claim", &claim_body).await {
            Ok((StatusCode::OK, Some(task))) => {
                tally.borrow_mut().claim_answered(t0);
                task
            }
            Ok((StatusCode::NO_CONTENT, _)) => {
                tally.borrow_mut().claim_answered(t0);
                return; // drained
            }
            Ok((status, _)) => {
                record_error(tally, "claim", status.as_u16());
                if status.is_server_error() {
                    tally.borrow_mut().failed(t0);
                }
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            Err(_) => {
                record_error(tally, "claim", 0);
                tally.borrow_mut().failed(t0);
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let t1 = Instant::now();
        let id = claimed["id"].as_str().unwrap_or_default().to_owned();
        let attempt = claimed["attempts"].as_u64().unwrap_or(0);
        if heartbeat {
            let beat = json!({"taskId": id, "agentId": agent, "attempt": attempt});
            if !matches!(client.post("/api/tasks/heartbeat", &beat).await, Ok((StatusCode::OK, _))) {
                record_error(tally, "heartbeat", 0);
            }
        }
        cycle += 1;
        let fail = fail_every > 0 && cycle.is_multiple_of(fail_every);
        let report = if fail {
            json!({"taskId": id, "agentId": agent, "attempt": attempt, "error": "simulated failure"})
        } else {
            json!({"taskId": id, "agentId": agent, "attempt": attempt, "actualCost": 1.0, "output": "ok"})
        };
        let t2 = Instant::now();
        let result = send_report(client, tally, &report, end).await;
        let t3 = Instant::now();
        let completed = {
            let mut tally = tally.borrow_mut();
            if !tally.claims.insert((id.clone(), attempt)) {
                tally.double_claims += 1;
            }
            match result {
                Ok((StatusCode::OK, _)) => {
                    if !fail {
                        tally.completed += 1;
                        tally.acknowledged.push((id.clone(), attempt));
                    }
                    if t0 >= measure_from && t3 <= end {
                        tally.measured_cycles += 1;
                        tally.interval_cycles += 1;
                        let _ = tally.claim_us.as_mut().expect("histogram").record(micros(t1 - t0));
                        let _ = tally.interval_claim_us.as_mut().expect("histogram").record(micros(t1 - t0));
                        let _ = tally.complete_us.as_mut().expect("histogram").record(micros(t3 - t2));
                    }
                    !fail
                }
                Ok((status, _)) => {
                    *tally.errors.entry(format!("complete_{}", status.as_u16())).or_default() += 1;
                    false
                }
                Err(_) => {
                    *tally.errors.entry("complete_io".into()).or_default() += 1;
                    false
                }
            }
        };
        if completed && delete_done {
            if matches!(client.delete(&format!("/api/tasks/{id}")).await, Ok(StatusCode::OK)) {
                // A deleted task is never handed out again: stop remembering its claims.
                tally.borrow_mut().claims.retain(|(claimed, _)| *claimed != id);
            } else {
                record_error(tally, "delete", 0);
            }
        }
        if completed && refill {
            let body = json!({"id": format!("{agent}-refill-{cycle}"), "title": "refill", "ventureId": venture, "estimatedCost": 1.0});
            if !matches!(client.post("/api/tasks", &body).await, Ok((StatusCode::CREATED, _))) {
                record_error(tally, "refill", 0);
            }
        }
    }
}

/// The pause before a request that failed is sent again.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Sends a report until it is answered with anything but a failure (no answer, or a 5xx),
/// or until the run is over; the fencing attempt makes a repeat harmless. Returns the last
/// outcome.
async fn send_report(
    client: &Client,
    tally: &RefCell<Tally>,
    report: &Value,
    end: Instant,
) -> reqwest::Result<(StatusCode, Option<Value>)> {
    loop {
        let sent = Instant::now();
        let result = client.post("/api/tasks/complete", report).await;
        let failed = match &result {
            Ok((status, _)) => status.is_server_error(),
            Err(_) => true,
        };
        if !failed || Instant::now() >= end {
            return result;
        }
        let what = match &result {
            Ok((status, _)) => format!("complete_retried_{}", status.as_u16()),
            Err(_) => "complete_retried_io".to_owned(),
        };
        {
            let mut tally = tally.borrow_mut();
            *tally.errors.entry(what).or_default() += 1;
            tally.failed(sent);
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

async fn create_tasks(client: &Rc<Client>, venture: &str, n: usize) -> anyhow::Result<()> {
    const CREATORS: usize = 32;
    let creators: Vec<_> = (0..CREATORS)
        .map(|c| {
            let (client, venture) = (client.clone(), venture.to_owned());
            tokio::task::spawn_local(async move {
                for i in (c..n).step_by(CREATORS) {
                    let body = json!({"id": format!("{venture}-{i}"), "title": format!("load task {i}"), "ventureId": venture, "estimatedCost": 1.0});
                    create(&client, "/api/tasks", &body).await.with_context(|| format!("creating task {i}"))?;
                }
                Ok::<(), anyhow::Error>(())
            })
        })
        .collect();
    for creator in creators {
        creator.await??;
    }
    Ok(())
}

/// Creates something with a client-chosen id, through a failover if need be: a lost answer
/// or a 5xx is retried for up to a minute, and a 409 after such a retry means the first
/// attempt had landed.
async fn create(client: &Client, path: &str, body: &Value) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut retried = false;
    loop {
        match client.post(path, body).await {
            Ok((StatusCode::CREATED, _)) => return Ok(()),
            Ok((StatusCode::CONFLICT, _)) if retried => return Ok(()),
            Ok((status, _)) if status.is_server_error() && Instant::now() < deadline => {}
            Err(_) if Instant::now() < deadline => {}
            Ok((status, body)) => bail!("{status} {body:?}"),
            Err(error) => return Err(error.into()),
        }
        retried = true;
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

fn record_error(tally: &RefCell<Tally>, what: &str, status: u16) {
    let key = if status == 0 { format!("{what}_io") } else { format!("{what}_{status}") };
    *tally.borrow_mut().errors.entry(key).or_default() += 1;
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn now_millis() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}
