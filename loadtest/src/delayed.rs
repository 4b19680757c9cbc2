//! `--delayed N`: how late parked claims receive delayed tasks.
//!
//! It parks `--claimers` long-polling claims on a venture of its own, then creates N tasks
//! whose `runAt` is spread evenly over `--spread` seconds, starting `--lead` seconds after
//! the first create. Each claimer records, for every task it receives, the time it received
//! it minus the task's `runAt` (and the server's `claimedAt` minus `runAt`), completes it in
//! the background and parks again. It prints one JSON line: the lateness percentiles in ms,
//! the tasks handed out before their `runAt` (which must be none), and the tasks handed out
//! twice. It exits non-zero when a task came early, twice, or not at all.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::Client;

/// The longest `waitMs` the server accepts.
const WAIT_MS: u64 = 30_000;

pub struct Options {
    pub tasks: usize,
    pub claimers: usize,
    pub spread: f64,
    pub lead: f64,
}

#[derive(Default)]
struct Seen {
    /// Per task: the client's lateness (received − runAt) and the server's (claimedAt − runAt), ms.
    received: HashMap<String, (f64, i64)>,
    twice: u64,
    errors: u64,
}

pub async fn run(client: Rc<Client>, options: Options) -> anyhow::Result<()> {
    let Options { tasks: n, claimers, spread, lead } = options;
    let venture = format!("delayed-{}-{}", std::process::id(), now_ms());
    let (status, body) = client.post("/api/ventures", &json!({"id": venture, "name": venture})).await?;
    if status != StatusCode::CREATED {
        bail!("creating the venture: {status} {body:?}");
    }

    let run_at: Rc<HashMap<String, i64>> = Rc::new({
        let first = now_ms() + (lead * 1000.0) as i64;
        (0..n).map(|i| (format!("{venture}-{i}"), first + (i as f64 * spread * 1000.0 / n as f64) as i64)).collect()
    });
    let seen = Rc::new(RefCell::new(Seen::default()));
    let completions = Rc::new(RefCell::new(Vec::new()));
    for c in 0..claimers {
        let (client, seen, run_at, completions) = (client.clone(), seen.clone(), run_at.clone(), completions.clone());
        let agent = format!("{venture}-claimer-{c}");
        let body = json!({"agentId": agent, "ventureId": venture, "waitMs": WAIT_MS});
        tokio::task::spawn_local(async move {
            loop {
                let task = match client.post("/api/tasks/claim", &body).await {
                    Ok((StatusCode::OK, Some(task))) => task,
                    Ok((StatusCode::NO_CONTENT, _)) => continue,
                    _ => {
                        seen.borrow_mut().errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let received = now_ms_f64();
                let id = task["id"].as_str().unwrap_or_default().to_owned();
                let Some(&due) = run_at.get(&id) else { continue };
                let claimed_at = task["claimedAt"].as_str().and_then(parse_rfc3339_ms).unwrap_or(i64::MIN);
                let mut s = seen.borrow_mut();
                if s.received.insert(id.clone(), (received - due as f64, claimed_at - due)).is_some() {
                    s.twice += 1;
                }
                drop(s);
                let report = json!({"taskId": id, "agentId": agent, "attempt": task["attempts"], "output": "ok"});
                let client = client.clone();
                completions.borrow_mut().push(tokio::task::spawn_local(async move {
                    matches!(client.post("/api/tasks/complete", &report).await, Ok((StatusCode::OK, _)))
                }));
            }
        });
    }
    // Let every claimer park before the first task exists.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let not_blocked = create(&client, &venture, &run_at).await?;
    let created_by = now_ms();
    let last_due = run_at.values().copied().max().unwrap_or(0);
    let deadline = last_due + 10_000;
    while seen.borrow().received.len() < n && now_ms() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut completed = 0;
    let handles: Vec<_> = completions.borrow_mut().drain(..).collect();
    for handle in handles {
        if tokio::time::timeout(Duration::from_secs(5), handle).await.ok().and_then(Result::ok) == Some(true) {
            completed += 1;
        }
    }

    let seen = seen.borrow();
    let mut client_ms: Vec<f64> = seen.received.values().map(|(c, _)| *c).collect();
    let mut server_ms: Vec<f64> = seen.received.values().map(|(_, s)| *s as f64).collect();
    client_ms.sort_by(f64::total_cmp);
    server_ms.sort_by(f64::total_cmp);
    let early = seen.received.values().filter(|(c, s)| *c < 0.0 || *s < 0).count();
    let report = json!({
        "mode": "delayed",
        "tasks": n,
        "claimers": claimers,
        "spread_s": spread,
        "lead_s": lead,
        "created_before_first_run_at_ms": run_at.values().min().map(|first| first - created_by),
        "not_blocked_when_created": not_blocked,
        "received": seen.received.len(),
        "completed": completed,
        "lateness_ms": summary(&client_ms),
        "server_lateness_ms": summary(&server_ms),
        "early": early,
        "handed_out_twice": seen.twice,
        "claim_errors": seen.errors,
    });
    println!("{report}");
    if early > 0 || seen.twice > 0 || seen.received.len() < n {
        bail!("{early} tasks handed out early, {} twice, {} of {n} received", seen.twice, seen.received.len());
    }
    Ok(())
}

/// Creates the tasks, 32 at a time; returns how many were not `blocked` when created (their
/// `runAt` had passed: the creates were too slow for `--lead`).
async fn create(client: &Rc<Client>, venture: &str, run_at: &Rc<HashMap<String, i64>>) -> anyhow::Result<usize> {
    const CREATORS: usize = 32;
    let mut ids: Vec<(String, i64)> = run_at.iter().map(|(id, at)| (id.clone(), *at)).collect();
    ids.sort_by_key(|(_, at)| *at);
    let ids = Rc::new(ids);
    let creators: Vec<_> = (0..CREATORS)
        .map(|c| {
            let (client, venture, ids) = (client.clone(), venture.to_owned(), ids.clone());
            tokio::task::spawn_local(async move {
                let mut not_blocked = 0;
                for (id, at) in ids.iter().skip(c).step_by(CREATORS) {
                    let body =
                        json!({"id": id, "title": "delayed task", "ventureId": venture, "runAt": rfc3339_ms(*at)});
                    let (status, task) = client.post("/api/tasks", &body).await.context("creating tasks")?;
                    if status != StatusCode::CREATED {
                        bail!("creating {id}: {status} {task:?}");
                    }
                    if task.as_ref().and_then(|t| t["status"].as_str()) != Some("blocked") {
                        not_blocked += 1;
                    }
                }
                Ok(not_blocked)
            })
        })
        .collect();
    let mut not_blocked = 0;
    for creator in creators {
        not_blocked += creator.await??;
    }
    Ok(not_blocked)
}

fn summary(sorted: &[f64]) -> Value {
    let at = |q: f64| {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        (sorted[rank - 1] * 10.0).round() / 10.0
    };
    json!({"min": at(0.0), "p50": at(0.5), "p99": at(0.99), "max": at(1.0)})
}

fn now_ms() -> i64 {
    now_ms_f64() as i64
}

fn now_ms_f64() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the server's own form, for milliseconds since the epoch.
fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the epoch of an RFC 3339 time, as the server writes them.
fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|at| at.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
        for ms in [0, 951_782_400_000, 1_700_000_000_123, 1_709_164_800_000, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms));
        }
    }
}
