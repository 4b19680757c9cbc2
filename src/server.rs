//! Putting the pieces together: open and prepare the database, start the persister and
//! the scheduler, serve HTTP until told to stop, then drain.

use std::future::Future;
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
use crate::persist::{PersisterConfig, PersisterHandle, Retention};
use crate::scheduler::{Scheduler, SchedulerConfig, SchedulerOptions, SystemClock};
use crate::store::{self, ActivityReader, StoreError, TaskReader};

/// The most changes one SQLite transaction takes.
const MAX_BATCH: usize = 10_000;

/// A scheduler running on a prepared database, and the state the router needs.
pub struct Running {
    pub scheduler: Scheduler,
    pub app: AppState,
    /// Held until the process ends: no other process may serve or reset this database.
    pub lock: store::ProcessLock,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

/// Opens the database (creating, migrating and seeding it as the options say), loads it
/// and starts the persister and the scheduler.
pub fn start(args: &ServeArgs) -> Result<Running, StoreError> {
    let path = args.db.path();
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
    tracing::info!(
        ventures = snapshot.ventures.len(),
        unfinished_tasks = snapshot.tasks.len(),
        finished_tasks = snapshot.finished_counts.iter().map(|(_, _, n)| n).sum::<u64>(),
        agents = snapshot.agents.len(),
        "loaded state"
    );
    drop(conn);

    let persister = PersisterHandle::start(PersisterConfig {
        path: path.clone(),
        flush_interval: Duration::from_millis(args.flush_ms),
        max_batch: MAX_BATCH,
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
    let tasks = TaskReader::new(path.clone());
    let history = Arc::new(tasks.clone());
    let scheduler = Scheduler::start(options, snapshot, persister, history, events.clone(), Arc::new(SystemClock));
    let app = AppState::new(App {
        scheduler: scheduler.clone(),
        tasks,
        activities: ActivityReader::new(path),
        metrics: crate::metrics::recorder(),
        api_token: args.api_token.as_deref().filter(|t| !t.is_empty()).map(Arc::from),
        activity_id_lock: Arc::default(),
        max_pending: args.max_pending,
        events,
        event_streams: Arc::new(tokio::sync::Semaphore::new(args.max_event_streams)),
    });
    Ok(Running {
        scheduler,
        app,
        lock,
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        body_timeout: Duration::from_millis(args.body_timeout_ms),
    })
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
    let Running { scheduler, app, lock, header_timeout, body_timeout } = running;
    let events = app.events.clone();
    // Slow clients cannot pin connections: headers and then the body must arrive in time.
    let router = api::router(app).layer(RequestBodyTimeoutLayer::new(body_timeout));
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
        let service = TowerToHyperService::new(router.clone());
        let connection = http.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Parked claims would otherwise hold the drain for up to their `waitMs`.
    scheduler.close_parking().await;
    events.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("some requests were still running after {DRAIN_TIMEOUT:?}; closing them");
    }
    scheduler.shutdown().await;
    drop(lock);
    Ok(())
}
