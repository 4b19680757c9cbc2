//! Scheduler benchmarks: the claim decision in the state itself, a claim's full round trip
//! through the `TaskQueue` actor, a long poll's wake-up, and the queued-task index.
//!
//! Queue sizes stay constant while measuring: whatever a timed step takes out is put back
//! untimed. Large fixtures are built once per size, outside any measurement.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mission_control::domain::{Id, Millis, Money, Priority};
use mission_control::events::EventHub;
use mission_control::persist::{PersisterConfig, PersisterHandle};
use mission_control::scheduler::queued_index::{QueueKey, QueuedIndex};
use mission_control::scheduler::Durability;
use mission_control::scheduler::{
    ClaimRequest, CompleteRequest, HistoryRecord, NewTask, NewVenture, Scheduler, SchedulerConfig, SchedulerOptions,
    SchedulerState, Snapshot, SystemClock, TaskView,
};
use mission_control::store;
use tokio::sync::oneshot;

use common::{label, BASE, N_VENTURES};

/// Queued tasks for `claim_decision` and `actor_round_trip`.
const QUEUE_SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
/// Entries for `queued_index`.
const INDEX_SIZES: [usize; 2] = [100_000, 1_000_000];
/// Claims taken before the claimed tasks are put back, so successive claims take different
/// tasks (the best ones in turn) while the queue stays within `CHUNK` of its size.
const CHUNK: u64 = 64;

const CONFIG: SchedulerConfig = SchedulerConfig { default_lease_seconds: 1800, agent_timeout_seconds: 90 };

fn claim_request() -> ClaimRequest {
    ClaimRequest { agent_id: common::AGENT.into(), ..ClaimRequest::default() }
}

/// The error report that requeues a claimed task (its `maxAttempts` is `u32::MAX`).
fn put_back(view: &TaskView) -> CompleteRequest {
    CompleteRequest {
        task_id: view.task.id.clone(),
        agent_id: common::AGENT.into(),
        attempt: Some(view.task.attempts),
        error: Some(common::error_text()),
        ..CompleteRequest::default()
    }
}

/// `SchedulerState::claim` alone: no actor, no channel, no SQLite. Each claim is timed on
/// its own, with the state's recorded changes taken (untimed) after each one as the actor
/// does after each message; every `CHUNK` claims the tasks are requeued with an error report.
fn claim_decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("claim_decision");
    for n in QUEUE_SIZES {
        let mut state = SchedulerState::new(CONFIG, common::snapshot(n), Millis::now());
        let request = claim_request();
        let mut held: Vec<TaskView> = Vec::with_capacity(CHUNK as usize);
        group.bench_function(label(n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let request = request.clone();
                    let started = Instant::now();
                    let claimed = state.claim(request);
                    total += started.elapsed();
                    held.push(claimed.expect("claim").expect("a queued task"));
                    drop(state.take_changes());
                    if held.len() as u64 == CHUNK {
                        requeue(&mut state, &mut held);
                    }
                }
                requeue(&mut state, &mut held);
                total
            })
        });
        drop(state);
    }
    group.finish();
}

fn requeue(state: &mut SchedulerState, held: &mut Vec<TaskView>) {
    for view in held.drain(..) {
        state.complete(put_back(&view), None).expect("requeue");
    }
    drop(state.take_changes());
}

/// A running scheduler as `server::start` makes one, on a fresh SQLite file in a temp dir,
/// in `async` durability (a reply does not wait for its commit; the persister still writes
/// every change in the background, as in production). The snapshot is loaded into memory
/// only: the file holds no tasks until the benchmark's own changes are written.
struct Running {
    scheduler: Scheduler,
    _dir: tempfile::TempDir,
}

fn start_scheduler(snapshot: Snapshot) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.db");
    let mut conn = store::open(&path).expect("open");
    store::migrate(&mut conn, &path).expect("migrate");
    drop(conn);
    let history = Arc::new(store::TaskReader::new(&store::Location::Sqlite(path.clone())));
    let persister = PersisterHandle::start(PersisterConfig {
        target: mission_control::persist::Target::Sqlite(path),
        flush_interval: Duration::from_millis(10),
        max_batch: 10_000,
        wal_restart_frames: mission_control::persist::WAL_RESTART_FRAMES,
        retention: Default::default(),
    })
    .expect("persister");
    let options = SchedulerOptions {
        config: CONFIG,
        durability: Durability::Async,
        max_pending: 10_000_000,
        commit_timeout: Duration::from_secs(5),
        max_waiters: 10_000,
    };
    let events = Arc::new(EventHub::default());
    let scheduler = Scheduler::start(options, snapshot, persister, history, events, Arc::new(SystemClock));
    Running { scheduler, _dir: dir }
}

/// The runtime the benchmark thread awaits on; the actor and the persister run on threads
/// of their own, so every message crosses threads as an HTTP handler's would.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// `Scheduler::claim(request, Duration::ZERO)` awaited from the benchmark thread: the
/// message to the actor, lease expiry check, the claim, the hand-off of its changes to the
/// persister and the event hub, and the reply. Tasks are requeued untimed with an error
/// report (`Scheduler::complete`, another round trip) every `CHUNK` claims.
///
/// Claims back to back outrun the persister (a claim plus its requeue records about six
/// changes, each an SQLite upsert), so it works throughout the measurement and competes
/// for the CPU, as it would in production under the same load; the backlog left at the end
/// is printed. In production `--max-pending` would start answering 503 at some point; here
/// it is set high enough that it never does.
fn actor_round_trip(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("actor_round_trip");
    for n in QUEUE_SIZES {
        let running = start_scheduler(common::snapshot(n));
        let scheduler = &running.scheduler;
        let request = claim_request();
        group.bench_function(label(n), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    let mut held = Vec::with_capacity(CHUNK as usize);
                    for _ in 0..iters {
                        let request = request.clone();
                        let started = Instant::now();
                        let claimed = scheduler.claim(request, Duration::ZERO).await;
                        total += started.elapsed();
                        held.push(claimed.expect("claim").expect("a queued task"));
                        if held.len() as u64 == CHUNK {
                            for view in held.drain(..) {
                                scheduler.complete(put_back(&view)).await.expect("requeue");
                            }
                        }
                    }
                    for view in held.drain(..) {
                        scheduler.complete(put_back(&view)).await.expect("requeue");
                    }
                    total
                })
            })
        });
        // Waits until the persister has written everything, so no backlog runs into the
        // next measurement. The backlog shows whether the disk kept up with the claims.
        let backlog = scheduler.progress().pending();
        let draining = Instant::now();
        rt.block_on(scheduler.shutdown());
        eprintln!(
            "actor_round_trip/{}: {backlog} change(s) still unwritten after the measurement; written in {:.1?}",
            label(n),
            draining.elapsed()
        );
    }
    group.finish();
}

/// A long poll's wake-up. A claim with a 10 s wait runs in a task spawned on the runtime,
/// as each HTTP request does, and parks in the actor (its venture has no queued task). The
/// benchmark task then sends a `create_task`; the time measured runs from sending the create
/// to the moment the parked claim returns the new task. Untimed per iteration: parking the
/// claim (and a read round trip that proves it is parked) and deleting the task afterwards.
fn wake_up(c: &mut Criterion) {
    let rt = runtime();
    let running = start_scheduler(common::snapshot(0));
    let scheduler = &running.scheduler;
    let request = claim_request();
    let venture_id = common::venture_id(0);
    c.bench_function("wake_up", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (enqueued, is_enqueued) = oneshot::channel();
                    let parked = tokio::spawn({
                        let scheduler = scheduler.clone();
                        let request = request.clone();
                        async move {
                            let mut claim = pin!(scheduler.claim(request, Duration::from_secs(10)));
                            // The first poll puts the claim in the actor's mailbox.
                            std::future::poll_fn(|cx| {
                                assert!(claim.as_mut().poll(cx).is_pending(), "no task should be queued yet");
                                Poll::Ready(())
                            })
                            .await;
                            let _ = enqueued.send(());
                            let claimed = claim.await;
                            (claimed, Instant::now())
                        }
                    });
                    is_enqueued.await.expect("the parked claim started");
                    // The actor handles messages in order, so once this read is answered the
                    // claim has found nothing and is parked.
                    scheduler.list_ventures().await.expect("read");
                    let new = NewTask { title: "Wake-up".into(), venture_id: venture_id.clone(), ..NewTask::default() };
                    let started = Instant::now();
                    let (created, _) = scheduler.create_task(new).await.expect("create");
                    let (claimed, returned_at) = parked.await.expect("the parked claim's task");
                    total += returned_at - started;
                    let claimed = claimed.expect("claim").expect("woken with the new task");
                    assert_eq!(claimed.task.id, created.task.id);
                    scheduler.delete_task(claimed.task.id.clone()).await.expect("delete");
                }
                total
            })
        })
    });
    rt.block_on(scheduler.shutdown());
}

/// `QueuedIndex` alone, with `n` untagged entries over `N_VENTURES` ventures and mixed
/// priorities. Operations are timed in runs of `CHUNK` (one clock read per run, not per
/// operation) and undone untimed after each run, so the index stays within `CHUNK` of `n`.
///
/// - `insert`: a new key at a pseudo-random place in claim order, then removed untimed.
/// - `remove`: an existing key picked pseudo-randomly, reinserted untimed.
/// - `pop_best`: `first_fitting(venture, ∞)` and `remove` of the key it returns, as a claim
///   does, over the ventures in turn; the keys are reinserted untimed.
fn queued_index(c: &mut Criterion) {
    let mut group = c.benchmark_group("queued_index");
    let ventures: Vec<Id> = (0..N_VENTURES).map(common::venture_id).collect();
    let cost = |key: &QueueKey| Money::units((key.created_at.0 - BASE.0) % 10);
    for n in INDEX_SIZES {
        let mut index = QueuedIndex::default();
        let mut keys: Vec<QueueKey> = Vec::with_capacity(n);
        for i in 0..n {
            let key = QueueKey {
                priority: common::priority(i),
                created_at: Millis(BASE.0 + i as i64),
                id: format!("t{i}").into(),
            };
            index.insert(&ventures[i % N_VENTURES], key.clone(), cost(&key), &[]);
            keys.push(key);
        }
        // Walks 0..n in a scrambled order without repeats (the stride is prime, n is not a multiple of it).
        let stride = 999_983;
        let mut next = 0usize;
        let mut pick = move || {
            next = (next + stride) % n;
            next
        };

        group.bench_function(BenchmarkId::new("insert", label(n)), |b| {
            let mut fresh = 0u64;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let run = CHUNK.min(iters - done);
                    let batch: Vec<(usize, QueueKey)> = (0..run)
                        .map(|_| {
                            let i = pick();
                            fresh += 1;
                            let key = QueueKey {
                                priority: common::priority(i + 1),
                                created_at: Millis(BASE.0 + i as i64),
                                id: format!("new{fresh}").into(),
                            };
                            (i % N_VENTURES, key)
                        })
                        .collect();
                    let inserted = batch.clone();
                    let started = Instant::now();
                    for (v, key) in inserted {
                        let c = cost(&key);
                        index.insert(&ventures[v], key, c, &[]);
                    }
                    total += started.elapsed();
                    for (v, key) in &batch {
                        assert!(index.remove(&ventures[*v], key, &[]));
                    }
                    done += run;
                }
                total
            })
        });

        group.bench_function(BenchmarkId::new("remove", label(n)), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let run = CHUNK.min(iters - done);
                    let batch: Vec<usize> = (0..run).map(|_| pick()).collect();
                    let started = Instant::now();
                    for &i in &batch {
                        index.remove(&ventures[i % N_VENTURES], &keys[i], &[]);
                    }
                    total += started.elapsed();
                    for &i in &batch {
                        index.insert(&ventures[i % N_VENTURES], keys[i].clone(), cost(&keys[i]), &[]);
                    }
                    done += run;
                }
                assert_eq!(index.len(), n);
                total
            })
        });

        group.bench_function(BenchmarkId::new("pop_best", label(n)), |b| {
            let mut turn = 0usize;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                let mut popped: Vec<(usize, QueueKey)> = Vec::with_capacity(CHUNK as usize);
                while done < iters {
                    let run = CHUNK.min(iters - done);
                    let started = Instant::now();
                    for _ in 0..run {
                        turn = (turn + 1) % N_VENTURES;
                        let venture = &ventures[turn];
                        let key = index.first_fitting(venture, Money::MAX).cloned().expect("a queued entry");
                        index.remove(venture, &key, &[]);
                        popped.push((turn, key));
                    }
                    total += started.elapsed();
                    for (v, key) in popped.drain(..) {
                        let c = cost(&key);
                        index.insert(&ventures[v], key, c, &[]);
                    }
                    done += run;
                }
                assert_eq!(index.len(), n);
                total
            })
        });
        drop(index);
    }
    group.finish();
}

/// What the database says of a new task's client-chosen id: no such task.
fn id_is_free(task: &NewTask) -> HistoryRecord {
    let id = task.id.clone().expect("a client-chosen id");
    HistoryRecord { tasks: [(id, None)].into(), ..HistoryRecord::default() }
}

/// A venture whose budget is nearly spent (room 0.5) with n queued tasks that do not fit
/// (cost 5) and one that does, last in claim order. Each create re-checks the venture's best
/// eligible task; it must not walk the n that do not fit. Timed: one create of another task
/// that does not fit (deleted again untimed), with n = 0 and n = 100k in one run.
fn budget_cliff(c: &mut Criterion) {
    let mut group = c.benchmark_group("budget_cliff");
    let venture: Id = "nearly-spent".into();
    let new_task = |id: String, cost: Money, priority| NewTask {
        id: Some(id.into()),
        title: "t".into(),
        venture_id: venture.clone(),
        priority: Some(priority),
        estimated_cost: Some(cost),
        ..NewTask::default()
    };
    for n in [0, 100_000] {
        let mut state = SchedulerState::new(CONFIG, Snapshot::default(), Millis::now());
        let budget = NewVenture {
            id: Some(venture.clone()),
            name: "Nearly spent".into(),
            capital_budget: Some(Money::units(10)),
            capital_spent: Some(Money::from_micros(9_500_000)),
            ..NewVenture::default()
        };
        state.create_venture(budget).expect("venture");
        let create = |state: &mut SchedulerState, task: NewTask| {
            let free = id_is_free(&task);
            state.create_task(task, Some(&free)).expect("create")
        };
        for i in 0..n {
            create(&mut state, new_task(format!("dear{i}"), Money::units(5), Priority::High));
        }
        create(&mut state, new_task("cheap".into(), Money::from_micros(250_000), Priority::Low));
        assert_eq!(state.get_venture(&venture).expect("venture").budget_held, n as u64);
        drop(state.take_changes());
        let mut i = 0u64;
        group.bench_function(label(n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    i += 1;
                    let task = new_task(format!("more{i}"), Money::units(5), Priority::High);
                    let free = id_is_free(&task);
                    let started = Instant::now();
                    let (view, _) = state.create_task(task, Some(&free)).expect("create");
                    total += started.elapsed();
                    state.delete_task(&view.task.id, None).expect("delete");
                    // As the actor does after each message: the records go out and are
                    // committed, so the state's buffers of uncommitted ones stay empty.
                    drop(state.take_changes());
                    state.changes_sent(i);
                    state.changes_committed(i);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = claim_decision, actor_round_trip, wake_up, queued_index, budget_cliff
}
criterion_main!(benches);
