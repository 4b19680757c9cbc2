//! High availability on PostgreSQL: any number of nodes share one database and one leads.
//!
//! Leadership is the lease row of `store::postgres::Lease`. Each node runs an elector
//! thread: a standby tries to take the lease every second and answers requests with 503
//! `not_leader` (`api::standby`); the node that takes it loads the unfinished state in one
//! snapshot, starts the persister (whose every batch is fenced by the lease's epoch) and the
//! scheduler, and renews every second. It serves only while its lease is surely live by its
//! own monotonic clock (a margin short of the lease), so a paused leader stops answering
//! before a standby may take over; a leader that loses the lease exits, to come back as a
//! standby under its supervisor (`docs/OPERATIONS.md`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::IntoResponse;
use axum::Router;
use tower::ServiceExt;

use crate::api::standby::{self, LeaderDirectory};
use crate::config::ServeArgs;
use crate::domain::Millis;
use crate::persist::{PostgresTarget, Target};
use crate::server::{launch, Serving};
use crate::store::postgres::{self, Lease, PgConfig};
use crate::store::{Location, StoreError};

/// How often the leader renews and a standby looks for a lapsed lease.
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// The exit status of a leader that lost its lease.
pub const DEPOSED_EXIT_CODE: i32 = 3;

/// This process's part in the group.
pub struct Node {
    shared: Arc<Shared>,
    /// Asks the elector to step down (release the lease) and stop; it answers when done.
    step_down: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

struct Shared {
    base: Instant,
    /// Nanoseconds after `base` until which this node may act as the leader; 0 when it
    /// does not lead.
    valid_until: AtomicU64,
    serving: OnceLock<(Serving, Router)>,
    /// The live leader's `--advertise-url`, as a standby last read it.
    leader_url: Mutex<Option<String>>,
    advertise_url: String,
    standby: Router,
}

impl Node {
    /// Migrates (and seeds a database it creates, unless `--no-seed`), then starts the
    /// elector. Fails when the database cannot be reached at all.
    pub fn start(args: &ServeArgs, config: PgConfig, bound: std::net::SocketAddr) -> Result<Arc<Node>, StoreError> {
        let mut client = config.connect()?;
        if postgres::migrate(&mut client, !args.no_seed, Millis::now())? {
            tracing::info!(db = config.shown(), "created the schema");
        }
        let advertise_url = args.advertise_url.clone().unwrap_or_else(|| format!("http://{bound}"));
        // Known before the first request: a standby names the leader from the start.
        let leader_url = postgres::current_leader(&mut client)?.filter(|l| l.live).map(|l| l.advertise_url);
        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            let directory: Arc<dyn LeaderDirectory> = Arc::new(Directory(weak.clone()));
            Shared {
                base: Instant::now(),
                valid_until: AtomicU64::new(0),
                serving: OnceLock::new(),
                leader_url: Mutex::new(leader_url),
                advertise_url,
                standby: standby::router(directory),
            }
        });
        let (step_down, requests) = mpsc::channel();
        let (done, finished) = mpsc::channel();
        let elector = Elector {
            shared: shared.clone(),
            args: args.clone(),
            config,
            client: Some(client),
            holder: format!("{}/{}", shared.advertise_url, ulid::Ulid::new()),
            length: Duration::from_secs(u64::from(args.leader_lease_seconds)),
            requests,
        };
        std::thread::Builder::new()
            .name("elector".into())
            .spawn(move || {
                elector.run();
                let _ = done.send(());
            })
            .expect("spawning the elector thread");
        Ok(Arc::new(Node { shared, step_down: Mutex::new(Some((step_down, finished))) }))
    }

    /// The node's routes: the API while it leads, the standby's answers otherwise.
    pub fn router(self: &Arc<Self>) -> Router {
        let shared = self.shared.clone();
        Router::new().fallback(move |request: Request| {
            let shared = shared.clone();
            async move {
                let router = shared.leading().map(|(_, router)| router.clone());
                let router = router.unwrap_or_else(|| shared.standby.clone());
                match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
                .into_response()
            }
        })
    }

    /// The scheduler, while this node leads.
    pub fn serving(&self) -> Option<Serving> {
        self.shared.serving.get().map(|(serving, _)| serving.clone())
    }

    /// Releases the lease (after the scheduler has committed everything) so that a standby
    /// takes over at once, and stops the elector.
    pub async fn step_down(&self) {
        let Some((request, finished)) = self.step_down.lock().expect("step-down lock").take() else { return };
        let _ = request.send(());
        let _ = tokio::task::spawn_blocking(move || finished.recv_timeout(Duration::from_secs(10))).await;
    }
}

impl Shared {
    fn leading(&self) -> Option<&(Serving, Router)> {
        let until = self.valid_until.load(Ordering::Acquire);
        let now = self.base.elapsed().as_nanos() as u64;
        (now < until).then(|| self.serving.get()).flatten()
    }

    /// This node may act as the leader until `renewed + length - margin`, `renewed` being
    /// when the renewal that succeeded was sent: the database's lease runs from later.
    fn extend(&self, renewed: Instant, length: Duration) {
        let until = renewed + length - length / 5;
        let nanos = until.saturating_duration_since(self.base).as_nanos() as u64;
        self.valid_until.store(nanos, Ordering::Release);
    }

    /// Stops serving at once and exits: whatever this node did not commit was never
    /// acknowledged, and the new leader serves from what it did.
    fn depose(&self, why: &str) -> ! {
        self.valid_until.store(0, Ordering::Release);
        tracing::error!("{why}: this node no longer leads; exiting so that its supervisor restarts it as a standby");
        std::process::exit(DEPOSED_EXIT_CODE)
    }
}

struct Directory(std::sync::Weak<Shared>);

impl LeaderDirectory for Directory {
    fn leader_url(&self) -> Option<String> {
        let shared = self.0.upgrade()?;
        if shared.leading().is_some() {
            return Some(shared.advertise_url.clone());
        }
        let url = shared.leader_url.lock().expect("leader lock").clone();
        url
    }
}

struct Elector {
    shared: Arc<Shared>,
    args: ServeArgs,
    config: PgConfig,
    client: Option<::postgres::Client>,
    holder: String,
    length: Duration,
    requests: mpsc::Receiver<()>,
}

impl Elector {
    fn run(mut self) {
        let Some((lease, acquired)) = self.campaign() else { return };
        tracing::info!(epoch = lease.epoch, "this node leads");
        self.shared.extend(acquired, self.length);
        let serving = match self.take_over(&lease) {
            Ok(serving) => serving,
            Err(error) => self.shared.depose(&format!("loading the state failed: {error}")),
        };
        let router = crate::api::router(serving.app.clone());
        let _ = self.shared.serving.set((serving, router));
        *self.shared.leader_url.lock().expect("leader lock") = Some(self.shared.advertise_url.clone());
        self.keep(lease);
    }

    /// Waits for a lapsed lease and takes it; `None` when asked to stop first.
    fn campaign(&mut self) -> Option<(Lease, Instant)> {
        loop {
            let attempt = Instant::now();
            let (shared, holder, length) = (self.shared.clone(), self.holder.clone(), self.length);
            match self.client().and_then(|c| Lease::try_acquire(c, &holder, &shared.advertise_url, length)) {
                Ok(Some(lease)) => return Some((lease, attempt)),
                Ok(None) => {
                    let leader = self.client().and_then(postgres::current_leader);
                    let url = leader.ok().flatten().filter(|l| l.live).map(|l| l.advertise_url);
                    *self.shared.leader_url.lock().expect("leader lock") = url;
                }
                Err(error) => self.failed("looking for a lapsed lease", &error),
            }
            match self.requests.recv_timeout(RENEW_EVERY) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Loads the unfinished state as one snapshot and starts serving it.
    fn take_over(&mut self, lease: &Lease) -> Result<Serving, StoreError> {
        let client = self.client()?;
        let mut tx = client
            .build_transaction()
            .isolation_level(::postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(StoreError::postgres("loading the state"))?;
        let snapshot = postgres::load_snapshot(&mut tx)?;
        tx.commit().map_err(StoreError::postgres("loading the state"))?;
        let shared = self.shared.clone();
        let target = Target::Postgres(PostgresTarget {
            config: self.config.clone(),
            lease: lease.clone(),
            deposed: Arc::new(move || shared.depose("a batch found the lease taken")),
        });
        launch(&self.args, &Location::Postgres(self.config.clone()), snapshot, target)
    }

    /// Renews every second until asked to step down; deposes this node when the lease is
    /// gone or could not be renewed in time.
    fn keep(&mut self, lease: Lease) {
        loop {
            match self.requests.recv_timeout(RENEW_EVERY) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    self.shared.valid_until.store(0, Ordering::Release);
                    match self.client().and_then(|c| lease.release(c)) {
                        Ok(()) => tracing::info!(epoch = lease.epoch, "released the leader's lease"),
                        Err(error) => tracing::warn!(%error, "could not release the lease; it lapses on its own"),
                    }
                    return;
                }
            }
            let attempt = Instant::now();
            match self.client().and_then(|c| lease.renew(c)) {
                Ok(true) => self.shared.extend(attempt, self.length),
                Ok(false) => self.shared.depose("the lease lapsed or another node took it"),
                Err(error) => {
                    self.failed("renewing the lease", &error);
                    if self.shared.leading().is_none() {
                        self.shared.depose("the lease could not be renewed before it ran out");
                    }
                }
            }
        }
    }

    fn client(&mut self) -> Result<&mut ::postgres::Client, StoreError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = Some(self.config.connect()?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    fn failed(&mut self, what: &str, error: &StoreError) {
        tracing::warn!(%error, "{what} failed; retrying");
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
    }
}
