//! Task graph benchmarks, in `SchedulerState` itself (no actor, no SQLite): unblocking many
//! dependents, the failure cascade, the cycle check of a `dependsOn` edit, and the claim
//! decision with many blocked (or delayed) tasks in memory.
//!
//! Graphs are built through the state's own commands (`create_task`, `claim`), untimed:
//! per iteration with `iter_batched` where the timed step consumes the graph, and once per
//! benchmark (the timed step undone untimed) where it does not.

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use mission_control::domain::{Id, Millis, TaskStatus};
use mission_control::scheduler::{
    CancelRequest, ClaimRequest, CompleteRequest, CompletionOutcome, NewTask, SchedulerConfig, SchedulerError,
    SchedulerState, TaskPatch, TaskView,
};

use common::label;

/// Tasks in each graph (dependents of one task, a chain, a tree), over two decades, so that
/// the per-task costs show how the work grows.
const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
/// Queued tasks for `claim_with_blocked` (the sizes `claim_decision` in `scheduler.rs` uses).
const QUEUE_SIZES: [usize; 2] = [1_000, 100_000];
/// Blocked tasks added for `claim_with_blocked`: 100k, and 1M as the control for `N_DELAYED`.
const N_BLOCKED: [usize; 2] = [100_000, 1_000_000];
/// Claims taken before the claimed tasks are put back, as in `scheduler.rs`.
const CHUNK: u64 = 64;

const CONFIG: SchedulerConfig = SchedulerConfig { default_lease_seconds: 1800, agent_timeout_seconds: 90 };

fn empty_state() -> SchedulerState {
    SchedulerState::new(CONFIG, common::snapshot(0), Millis::now())
}

fn create(state: &mut SchedulerState, title: &str, depends_on: Vec<Id>, max_attempts: Option<u32>) -> Id {
    let new = NewTask {
        title: title.into(),
        venture_id: common::venture_id(0),
        depends_on,
        max_attempts,
        ..NewTask::default()
    };
    state.create_task(new, None).expect("create").0.task.id.clone()
}

fn claim(state: &mut SchedulerState) -> TaskView {
    let request = ClaimRequest { agent_id: common::AGENT.into(), ..ClaimRequest::default() };
    state.claim(request).expect("claim").expect("a queued task")
}

fn report(view: &TaskView, error: Option<&str>) -> CompleteRequest {
    CompleteRequest {
        task_id: view.task.id.clone(),
        agent_id: common::AGENT.into(),
        attempt: Some(view.task.attempts),
        error: error.map(Into::into),
        ..CompleteRequest::default()
    }
}

fn count(state: &SchedulerState, status: TaskStatus) -> u64 {
    state.task_count(status)
}

/// `root`, claimed, and `n` tasks blocked on it alone. Returns the report that completes it.
fn fan_out(n: usize) -> (SchedulerState, CompleteRequest) {
    let mut state = empty_state();
    let root = create(&mut state, "root", Vec::new(), None);
    for i in 0..n {
        create(&mut state, &format!("dependent {i}"), vec![root.clone()], None);
    }
    let held = claim(&mut state);
    assert_eq!(held.task.id, root);
    drop(state.take_changes());
    (state, report(&held, None))
}

/// `root` (queued) and a chain of `n` blocked tasks under it, each depending on the one
/// before, all with the default policy `cancel`. Returns the cancel of the root.
fn chain(n: usize) -> (SchedulerState, CancelRequest) {
    let mut state = empty_state();
    let root = create(&mut state, "root", Vec::new(), None);
    let mut previous = root.clone();
    for i in 0..n {
        previous = create(&mut state, &format!("link {i}"), vec![previous], None);
    }
    drop(state.take_changes());
    (state, CancelRequest { task_id: root, reason: Some("benchmark".into()) })
}

/// `root`, claimed with `maxAttempts` 1, and a tree of `n` blocked tasks under it, four
/// children each (task `i` depends on task `i / 4`, the root being task 0), policy `cancel`.
/// Returns the error report that fails the root.
fn tree(n: usize) -> (SchedulerState, CompleteRequest) {
    let mut state = empty_state();
    let mut ids: Vec<Id> = vec![create(&mut state, "root", Vec::new(), Some(1))];
    for i in 1..=n {
        let parent = ids[i / 4].clone();
        ids.push(create(&mut state, &format!("node {i}"), vec![parent], None));
    }
    let held = claim(&mut state);
    assert_eq!(held.task.id, ids[0]);
    drop(state.take_changes());
    (state, report(&held, Some("benchmark: fail the root")))
}

/// Unblocking: the completion of a task that `n` blocked tasks wait for queues them all.
fn unblock(c: &mut Criterion) {
    let mut group = c.benchmark_group("graph_unblock");
    for n in SIZES {
        let (mut state, done) = fan_out(n);
        assert_eq!(count(&state, TaskStatus::Blocked), n as u64);
        let (_, outcome) = state.complete(done, None).expect("complete");
        assert_eq!(outcome, CompletionOutcome::Completed);
        assert_eq!(count(&state, TaskStatus::Blocked), 0);
        assert_eq!(count(&state, TaskStatus::Queue), n as u64);
        drop(state);
        group.bench_function(BenchmarkId::new("dependents", label(n)), |b| {
            b.iter_batched(
                || fan_out(n),
                |(mut state, done)| {
                    state.complete(done, None).expect("complete");
                    state
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// The failure cascade: a cancelled root cancels a chain of `n`; a failed root cancels a
/// tree of `n`.
fn cascade(c: &mut Criterion) {
    let mut group = c.benchmark_group("graph_cascade");
    for n in SIZES {
        let (mut state, cancel) = chain(n);
        state.cancel_task(cancel, None).expect("cancel");
        assert_eq!(count(&state, TaskStatus::Blocked), 0);
        assert_eq!(count(&state, TaskStatus::Cancelled), n as u64 + 1);
        let (mut state, fail) = tree(n);
        let (_, outcome) = state.complete(fail, None).expect("fail");
        assert_eq!(outcome, CompletionOutcome::Failed);
        assert_eq!(count(&state, TaskStatus::Blocked), 0);
        assert_eq!(count(&state, TaskStatus::Cancelled), n as u64);
        drop(state);
        group.bench_function(BenchmarkId::new("chain_cancel", label(n)), |b| {
            b.iter_batched(
                || chain(n),
                |(mut state, cancel)| {
                    state.cancel_task(cancel, None).expect("cancel");
                    state
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::new("tree_fail", label(n)), |b| {
            b.iter_batched(
                || tree(n),
                |(mut state, fail)| {
                    state.complete(fail, None).expect("fail");
                    state
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn depends_on(ids: Vec<Id>) -> TaskPatch {
    TaskPatch { depends_on: Some(ids), ..TaskPatch::default() }
}

/// The cycle check of a `dependsOn` edit over a chain `t0 <- t1 <- ... <- t{n-1}` (each
/// depends on the one before; `t0` queued, the rest blocked), built once per size:
///
/// - `refused`: `t0` to depend on `t{n-1}`, refused `dependency_cycle` after walking the
///   whole chain; nothing changes, so it is simply repeated.
/// - `accepted`: an unrelated queued task to depend on `t{n-1}`, accepted after walking the
///   chain down to `t0`; it is then blocked, and its `dependsOn` is emptied again, untimed.
fn cycle_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("graph_cycle_check");
    for n in SIZES {
        let mut state = empty_state();
        let t0 = create(&mut state, "t0", Vec::new(), None);
        let mut last = t0.clone();
        for i in 1..n {
            last = create(&mut state, &format!("t{i}"), vec![last], None);
        }
        let unrelated = create(&mut state, "unrelated", Vec::new(), None);
        drop(state.take_changes());
        assert_eq!(count(&state, TaskStatus::Blocked), n as u64 - 1);

        match state.update_task(&t0, depends_on(vec![last.clone()]), None) {
            Err(SchedulerError::Conflict { code: "dependency_cycle", message, .. }) => {
                assert_eq!(message.matches(" -> ").count(), n, "the path names the whole chain");
            }
            other => panic!("expected dependency_cycle, got {other:?}"),
        }
        group.bench_function(BenchmarkId::new("refused", label(n)), |b| {
            b.iter_batched(
                || depends_on(vec![last.clone()]),
                |patch| state.update_task(&t0, patch, None).expect_err("a cycle"),
                BatchSize::SmallInput,
            )
        });

        let undo = |state: &mut SchedulerState| {
            let view = state.update_task(&unrelated, depends_on(Vec::new()), None).expect("undo");
            assert_eq!(view.task.status, TaskStatus::Queue);
            drop(state.take_changes());
        };
        let view = state.update_task(&unrelated, depends_on(vec![last.clone()]), None).expect("accepted");
        assert_eq!(view.task.status, TaskStatus::Blocked);
        undo(&mut state);
        group.bench_function(BenchmarkId::new("accepted", label(n)), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let patch = depends_on(vec![last.clone()]);
                    let started = Instant::now();
                    let edited = state.update_task(&unrelated, patch, None);
                    total += started.elapsed();
                    drop(edited.expect("accepted"));
                    undo(&mut state);
                }
                total
            })
        });
    }
    group.finish();
}

/// How many delayed tasks `with_1M_delayed` adds.
const N_DELAYED: usize = 1_000_000;

/// What sits in memory next to the queue while the claim decision is timed.
#[derive(Clone, Copy)]
enum Beside {
    Nothing,
    /// This many tasks blocked on a dependency.
    Blocked(usize),
    /// `N_DELAYED` tasks whose `runAt` is a year off, so they stay blocked and in `delayed`.
    Delayed,
}

impl Beside {
    fn name(self) -> String {
        match self {
            Beside::Nothing => "no_blocked".to_string(),
            Beside::Blocked(n) => format!("with_{}_blocked", label(n)),
            Beside::Delayed => format!("with_{}_delayed", label(N_DELAYED)),
        }
    }

    fn blocked(self) -> u64 {
        match self {
            Beside::Nothing => 0,
            Beside::Blocked(n) => n as u64,
            Beside::Delayed => N_DELAYED as u64,
        }
    }
}

/// The state `claim_with_blocked` claims from: `n` queued tasks and what is `beside` them.
/// The delayed tasks are created through `create_task` with a `runAt` a year off (one
/// millisecond apart, over the ventures in turn) and generated ids, as the API creates them
/// (a chosen id would have to be looked up in the database first).
fn claim_state(n: usize, beside: Beside) -> SchedulerState {
    let now = Millis::now();
    let mut state = SchedulerState::new(
        CONFIG,
        common::snapshot_with_blocked(n, if let Beside::Blocked(b) = beside { b } else { 0 }),
        now,
    );
    if let Beside::Delayed = beside {
        let year_off = Millis(now.0 + 365 * 86_400_000);
        for i in 0..N_DELAYED {
            let new = NewTask {
                title: format!("Delayed {i}").into(),
                venture_id: common::venture_id(i % common::N_VENTURES),
                priority: Some(common::priority(i)),
                run_at: Some(Millis(year_off.0 + i as i64)),
                ..NewTask::default()
            };
            let (view, created) = state.create_task(new, None).expect("create a delayed task");
            assert!(created && view.task.status == TaskStatus::Blocked);
            if i % 10_000 == 0 {
                drop(state.take_changes());
            }
        }
        drop(state.take_changes());
        // A tick finds nothing due and leaves them all blocked.
        state.advance(Millis::now());
    }
    state
}

/// The claim decision as `claim_decision` in `scheduler.rs` times it (the same queue, the
/// same timing and requeueing), without blocked tasks, with 100k and 1M tasks blocked on a
/// dependency, and with `N_DELAYED` tasks delayed by `runAt`, in memory. The 1M blocked
/// tasks tell what the mere size of the task map costs from what the delayed index costs.
fn claim_with_blocked(c: &mut Criterion) {
    let mut group = c.benchmark_group("graph_claim");
    for n in QUEUE_SIZES {
        let blocked = N_BLOCKED.map(Beside::Blocked);
        for beside in [Beside::Nothing, blocked[0], blocked[1], Beside::Delayed] {
            let mut state = claim_state(n, beside);
            assert_eq!(count(&state, TaskStatus::Blocked), beside.blocked());
            assert_eq!(count(&state, TaskStatus::Queue), n as u64);
            let mut held: Vec<TaskView> = Vec::with_capacity(CHUNK as usize);
            group.bench_function(BenchmarkId::new(beside.name(), label(n)), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let request = ClaimRequest { agent_id: common::AGENT.into(), ..ClaimRequest::default() };
                        let started = Instant::now();
                        let claimed = state.claim(request);
                        total += started.elapsed();
                        let view = claimed.expect("claim").expect("a queued task");
                        assert!(view.task.run_at.is_none(), "a delayed task was handed out");
                        held.push(view);
                        drop(state.take_changes());
                        if held.len() as u64 == CHUNK {
                            requeue(&mut state, &mut held);
                        }
                    }
                    requeue(&mut state, &mut held);
                    total
                })
            });
            assert_eq!(count(&state, TaskStatus::Blocked), beside.blocked());
            drop(state);
        }
    }
    group.finish();
}

fn requeue(state: &mut SchedulerState, held: &mut Vec<TaskView>) {
    for view in held.drain(..) {
        let mut put_back = report(&view, None);
        put_back.error = Some(common::error_text());
        state.complete(put_back, None).expect("requeue");
    }
    drop(state.take_changes());
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = unblock, cascade, cycle_check, claim_with_blocked
}
criterion_main!(benches);
