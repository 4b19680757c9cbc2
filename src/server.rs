//! Putting the pieces together: open and prepare the database, start the persister and
//! the scheduler, serve HTTP until told to stop, then drain.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::config::ServeArgs;
use crate::domain::Millis;
use crate::events::EventHub;
use crate::persist::{PersisterConfig, PersisterHandle};
use crate::scheduler::{Scheduler, SchedulerConfig, SchedulerOptions, SystemClock};
use crate::store::{self, ActivityReader, StoreError};

/// The most changes one SQLite transaction takes.
const MAX_BATCH: usize = 10_000;

/// A scheduler running on a prepared database, and the state the router needs.
pub struct Running {
    pub scheduler: Scheduler,
    pub app: AppState,
    /// Held until the process ends: no other process may serve or reset this database.
    pub lock: store::ProcessLock,
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
        tasks = snapshot.tasks.len(),
        agents = snapshot.agents.len(),
        "loaded state"
    );
    drop(conn);

    let persister = PersisterHandle::start(PersisterConfig {
        path: path.clone(),
        flush_interval: Duration::from_millis(args.flush_ms),
        max_batch: MAX_BATCH,
    })?;
    let options = SchedulerOptions {
        config: SchedulerConfig { default_lease_seconds: args.lease_seconds },
        durability: args.durability,
        max_pending: args.max_pending,
        commit_timeout: Duration::from_millis(args.commit_timeout_ms),
        max_waiters: args.max_waiters,
    };
    let events = Arc::new(EventHub::default());
    let scheduler = Scheduler::start(options, snapshot, persister, events.clone(), Arc::new(SystemClock));
    let app = AppState {
        scheduler: scheduler.clone(),
        activities: ActivityReader::new(path),
        metrics: crate::metrics::recorder(),
        api_token: args.api_token.as_deref().filter(|t| !t.is_empty()).map(Arc::from),
        activity_id_lock: Arc::default(),
        max_pending: args.max_pending,
        events,
        event_streams: Arc::new(tokio::sync::Semaphore::new(args.max_event_streams)),
    };
    Ok(Running { scheduler, app, lock })
}

/// Serves until `shutdown` resolves, then stops taking requests, lets the ones in flight
/// finish, and waits until every accepted change is committed.
pub async fn run(
    listener: TcpListener,
    running: Running,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Running { scheduler, app, lock } = running;
    let served = axum::serve(listener, api::router(app)).with_graceful_shutdown(shutdown).await;
    scheduler.shutdown().await;
    drop(lock);
    served
}
