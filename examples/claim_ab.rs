//! The claim decision of `benches/graph.rs` (`graph_claim`), with no other tasks, with 1M
//! tasks blocked on a dependency and with 1M tasks delayed by `runAt`, interleaved: 60
//! rounds of 4,096 claims on each state in turn (the order rotating), so that the load of a
//! shared machine falls on all three alike. Prints each state's median of the per-round
//! mean claim time, and the medians of the per-round ratios.
//!
//! `cargo run --release --example claim_ab -- [QUEUED]` (default 1000 queued tasks)

#[path = "../benches/common/mod.rs"]
mod common;

use mission_control::domain::Millis;
use mission_control::scheduler::{ClaimRequest, CompleteRequest, NewTask, SchedulerConfig, SchedulerState, TaskView};
use std::time::{Duration, Instant};

const CONFIG: SchedulerConfig = SchedulerConfig { default_lease_seconds: 1800, agent_timeout_seconds: 90 };

/// `n` queued tasks, with `blocked` tasks blocked on one that never finishes and `delayed`
/// tasks a year away.
fn state(n: usize, blocked: usize, delayed: usize) -> SchedulerState {
    let snapshot = common::snapshot_with_blocked(n, blocked);
    let now = Millis::now();
    let mut s = SchedulerState::new(CONFIG, snapshot, now);
    for i in 0..delayed {
        let new = NewTask {
            title: format!("Delayed {i}").into(),
            venture_id: common::venture_id(i % 4),
            priority: Some(common::priority(i)),
            run_at: Some(Millis(now.0 + 365 * 86_400_000 + i as i64)),
            ..NewTask::default()
        };
        s.create_task(new, None).unwrap();
        if i % 10_000 == 0 {
            drop(s.take_changes());
        }
    }
    drop(s.take_changes());
    s
}

/// The error report that requeues each held task (their `maxAttempts` is `u32::MAX`).
fn requeue(s: &mut SchedulerState, held: &mut Vec<TaskView>) {
    for view in held.drain(..) {
        let put_back = CompleteRequest {
            task_id: view.task.id.clone(),
            agent_id: common::AGENT.into(),
            attempt: Some(view.task.attempts),
            error: Some(common::error_text()),
            ..CompleteRequest::default()
        };
        s.complete(put_back, None).unwrap();
    }
    drop(s.take_changes());
}

/// The mean time of `claims` claims, the claimed tasks requeued every 64, untimed.
fn block(s: &mut SchedulerState, claims: usize) -> f64 {
    let mut total = Duration::ZERO;
    let mut held: Vec<TaskView> = Vec::new();
    for _ in 0..claims {
        let request = ClaimRequest { agent_id: common::AGENT.into(), ..ClaimRequest::default() };
        let started = Instant::now();
        let claimed = s.claim(request);
        total += started.elapsed();
        held.push(claimed.unwrap().unwrap());
        drop(s.take_changes());
        if held.len() == 64 {
            requeue(s, &mut held);
        }
    }
    requeue(s, &mut held);
    total.as_nanos() as f64 / claims as f64
}

fn med(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
fn main() {
    let n: usize = std::env::args().nth(1).map_or(1000, |a| a.parse().unwrap());
    let mut states =
        [("none", state(n, 0, 0)), ("1M_blocked", state(n, 1_000_000, 0)), ("1M_delayed", state(n, 0, 1_000_000))];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for round in 0..60 {
        for k in 0..3 {
            let i = (k + round) % 3;
            times[i].push(block(&mut states[i].1, 4096));
        }
    }
    let ratio = |a: usize, b: usize| med(times[a].iter().zip(&times[b]).map(|(x, y)| x / y).collect());
    for i in 0..3 {
        println!("{} median {:.0} ns", states[i].0, med(times[i].clone()));
    }
    println!("delayed/none {:.3} blocked/none {:.3} delayed/blocked {:.3}", ratio(2, 0), ratio(1, 0), ratio(2, 1));
}
