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

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the epoch (after 1970).
fn rfc3339_ms(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// The inverse of `rfc3339_ms`, for the server's own form (UTC, milliseconds).
fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 24 || b[23] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, m, s, milli) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400_000 + ((h * 60 + m) * 60 + s) * 1000 + milli)
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
