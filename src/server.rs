//! Putting the pieces together: open and prepare the database, start the persister and
//! the scheduler, serve HTTP until told to stop, then drain.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::api::{self, App, AppState};
use crate::config::ServeArgs;
use crate::domain::Millis;
use crate::events::EventHub;
use crate::ha;
use crate::persist::{PersisterConfig, PersisterHandle, Retention, Target};
use crate::scheduler::{Scheduler, SchedulerConfig, SchedulerOptions, Snapshot, SystemClock};
use crate::store::{self, ActivityReader, Location, StoreError, TaskReader};

/// The most changes one SQLite transaction takes.
const MAX_BATCH: usize = 10_000;

/// A node ready to serve: on SQLite, a scheduler on the file; on PostgreSQL, a node that
/// leads or waits to (`ha`).
pub struct Running {
    pub node: Node,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

pub enum Node {
    /// The SQLite file, held by this process alone.
    Single {
        serving: Serving,
        /// Held until the process ends: no other process may serve or reset this database.
        lock: store::ProcessLock,
    },
    /// A PostgreSQL database that several nodes share; one leads.
    Replicated(Arc<ha::Node>),
}

/// A scheduler running on a loaded record, and the state the router needs.
#[derive(Clone)]
pub struct Serving {
    pub scheduler: Scheduler,
    pub app: AppState,
}

/// Opens the database (creating, migrating and seeding it as the options say); on SQLite,
/// loads it and starts the persister and the scheduler; on PostgreSQL, starts the elector,
/// which does so once this node leads.
pub fn start(args: &ServeArgs, bound: std::net::SocketAddr) -> Result<Running, StoreError> {
    let node = match args.db.location()? {
        Location::Sqlite(path) => start_sqlite(args, path)?,
        Location::Postgres(config) => Node::Replicated(ha::Node::start(args, config, bound)?),
    };
    Ok(Running {
        node,
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        body_timeout: Duration::from_millis(args.body_timeout_ms),
    })
}

fn start_sqlite(args: &ServeArgs, path: PathBuf) -> Result<Node, StoreError> {
    let lock = store::ProcessLock::acquire(&path)?;
    let mut conn = store::open(&path)?;
    let created = store::is_uninitialised(&conn)?;
    store::migrate(&mut conn, &path)?;
    store::check_writable(&conn, &path)?;
    if created && !args.no_seed {
        store::seed_sample_data(&mut conn, Millis::now())?;
        tracing::info!(path = %path.display(), "created the database with the sample data");
    }
    let snapshot = store::load_snapshot(&conn)?;
    drop(conn);
    let serving = launch(args, &Location::Sqlite(path.clone()), snapshot, Target::Sqlite(path))?;
    Ok(Node::Single { serving, lock })
}

/// Starts the persister (writing to `target`) and the scheduler on a loaded snapshot.
pub fn launch(
    args: &ServeArgs,
    location: &Location,
    snapshot: Snapshot,
    target: Target,
) -> Result<Serving, StoreError> {
    tracing::info!(
        ventures = snapshot.ventures.len(),
        unfinished_tasks = snapshot.tasks.len(),
        finished_tasks = snapshot.finished_counts.iter().map(|(_, _, n)| n).sum::<u64>(),
        agents = snapshot.agents.len(),
        "loaded state"
    );
    let persister = PersisterHandle::start(PersisterConfig {
        target,
        flush_interval: Duration::from_millis(args.flush_ms),
        max_batch: MAX_BATCH,
        wal_restart_frames: crate::persist::WAL_RESTART_FRAMES,
        retention: Retention {
            completed: args.retain_completed,
            failed: args.retain_failed,
            activity: args.retain_activity,
        },
    })?;
    let options = SchedulerOptions {
        config: SchedulerConfig {
            default_lease_seconds: args.lease_seconds,
            agent_timeout_seconds: args.agent_timeout,
        },
        durability: args.durability,
        max_pending: args.max_pending,
        commit_timeout: Duration::from_millis(args.commit_timeout_ms),
        max_waiters: args.max_waiters,
    };
    let events = Arc::new(EventHub::default());
    let tasks = TaskReader::new(location);
    let history = Arc::new(tasks.clone());
    let scheduler = Scheduler::start(options, snapshot, persister, history, events.clone(), Arc::new(SystemClock));
    return_loading_memory();
    let app = AppState::new(App {
        scheduler: scheduler.clone(),
        tasks,
        activities: ActivityReader::new(location),
        metrics: crate::metrics::recorder(),
        api_token: args.api_token.as_deref().filter(|t| !t.is_empty()).map(Arc::from),
        activity_id_lock: Arc::default(),
        max_pending: args.max_pending,
        events,
        event_streams: Arc::new(tokio::sync::Semaphore::new(args.max_event_streams)),
    });
    Ok(Serving { scheduler, app })
}

/// mimalloc, the binary's allocator, keeps what a thread frees for that thread to reuse.
/// Loading has just freed the decoded rows on this thread, which will not allocate that much
/// again: hand those pages back, or they stay resident (55% more memory per task at 1M
/// tasks; docs/PERFORMANCE.md, "The allocator"). Under another allocator this finds nothing.
fn return_loading_memory() {
    // SAFETY: mi_collect takes no arguments to trust; it walks this thread's mimalloc heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

impl Running {
    /// The routes: the API, or on PostgreSQL the node's gate in front of it.
    pub fn router(&self) -> axum::Router {
        match &self.node {
            Node::Single { serving, .. } => api::router(serving.app.clone()),
            Node::Replicated(node) => node.router(),
        }
    }
}

impl Serving {
    /// Answers parked claims with 204 and parks no more, and ends the event streams, so
    /// that the drain waits only for requests that are really working.
    async fn stop_waiting(&self) {
        self.scheduler.close_parking().await;
        self.app.events.close();
    }
}

/// Connections the kernel may queue before we accept them. Fleets connect in bursts; the
/// usual 1,024 makes a burst of thousands wait on SYN retries.
const ACCEPT_BACKLOG: u32 = 8192;

/// Binds the listening socket with a deep accept queue.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// How long requests in flight get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(35);

/// Serves until `shutdown` resolves, then stops taking requests, answers parked claims
/// with 204, lets the requests in flight finish, and waits until every accepted change is
/// committed.
pub async fn run(
    listener: TcpListener,
    running: Running,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = running.router();
    let Running { node, header_timeout, body_timeout } = running;
    // Slow clients cannot pin connections: headers and then the body must arrive in time.
    // Around the whole router rather than `Router::layer`, which wraps each route and so
    // costs every request a boxed service and future more.
    let service = tower::ServiceBuilder::new().layer(RequestBodyTimeoutLayer::new(body_timeout)).service(router);
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: keep serving the connections we have.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(service.clone());
        let connection = http.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let serving = match &node {
        Node::Single { serving, .. } => Some(serving.clone()),
        Node::Replicated(node) => node.serving(),
    };
    if let Some(serving) = &serving {
        serving.stop_waiting().await;
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("some requests were still running after {DRAIN_TIMEOUT:?}; closing them");
    }
    if let Some(serving) = serving {
        serving.scheduler.shutdown().await;
    }
    match node {
        Node::Single { lock, .. } => drop(lock),
        // Everything accepted is committed: hand over now rather than when the lease lapses.
        Node::Replicated(node) => node.step_down().await,
    }
    Ok(())
}
