//! The Prometheus recorder behind the `metrics` facade, installed once per process.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Duration;

use axum::http::Method;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

/// Latency buckets from 50 µs to 10 s: claims take microseconds in memory and
/// milliseconds when they wait for a commit.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];

/// How often buffered histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Gauges are set on every scheduler tick; one not set for this long belongs to something
/// gone (a deleted venture) and leaves the exposition.
const GAUGE_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// The process's recorder; the first call installs it.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("mission_control_persist_batch_size".into()), BATCH_BUCKETS)
                })
                .expect("bucket lists are not empty")
                .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            register_families();
            // Histogram samples wait in buckets until drained; without a scrape nothing
            // drains them, so a server nobody scrapes would grow without bound.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                })
                .expect("spawning the metrics upkeep thread");
            handle
        })
        .clone()
}

/// Every family an alert may name exists from the start, at zero, so that a rule such as
/// `rate(mission_control_failures_total[5m])` or an absent-series check works before the
/// first event. (Families labelled by venture or route appear with their first venture or
/// request; the scheduler publishes every venture's gauges on its first tick.)
fn register_families() {
    for result in ["claimed", "empty", "error"] {
        metrics::counter!("mission_control_claims_total", "result" => result).increment(0);
    }
    for outcome in ["completed", "requeued", "failed", "repeated"] {
        metrics::counter!("mission_control_completions_total", "outcome" => outcome).increment(0);
    }
    for outcome in ["requeued", "failed"] {
        metrics::counter!("mission_control_lease_expiries_total", "outcome" => outcome).increment(0);
    }
    for kind in ["task", "activity"] {
        metrics::counter!("mission_control_pruned_total", "kind" => kind).increment(0);
    }
    metrics::counter!("mission_control_persist_failures_total").increment(0);
    metrics::gauge!("mission_control_persist_pending").set(0.0);
    metrics::gauge!("mission_control_claim_waiters").set(0.0);
    metrics::counter!("mission_control_claims_released_total").increment(0);
    for name in [
        "mission_control_claim_duration_seconds",
        "mission_control_long_poll_duration_seconds",
        "mission_control_persist_batch_size",
        "mission_control_persist_commit_duration_seconds",
        "mission_control_persist_wal_restart_duration_seconds",
    ] {
        drop(metrics::histogram!(name));
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("mission_control_claims_total", "Claims by result: claimed, empty (nothing eligible) or error.");
    describe_counter!(
        "mission_control_completions_total",
        "Completion reports by outcome: completed, requeued, failed or repeated."
    );
    describe_counter!("mission_control_lease_expiries_total", "Leases that ran out, by what became of the task.");
    describe_histogram!(
        "mission_control_claim_duration_seconds",
        Unit::Seconds,
        "Claim latency, including the wait for its commit in batch mode."
    );
    describe_gauge!("mission_control_tasks", "Tasks by status.");
    describe_gauge!("mission_control_queue_depth", "Queued tasks by priority.");
    describe_histogram!("mission_control_persist_batch_size", "Changes per SQLite transaction.");
    describe_histogram!(
        "mission_control_persist_commit_duration_seconds",
        Unit::Seconds,
        "Time to write and commit one batch."
    );
    describe_histogram!(
        "mission_control_persist_wal_restart_duration_seconds",
        Unit::Seconds,
        "SQLite: the pause between two batches in which the writer copies the WAL's tail so that it starts over."
    );
    describe_gauge!("mission_control_persist_pending", "Changes accepted but not yet committed.");
    describe_counter!("mission_control_persist_failures_total", "Failed commits (each is retried).");
    describe_counter!("mission_control_http_requests_total", "HTTP requests by method, route pattern and status.");
    describe_histogram!(
        "mission_control_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route pattern."
    );
    describe_histogram!(
        "mission_control_long_poll_duration_seconds",
        Unit::Seconds,
        "Latency of claims that asked to wait (waitMs > 0), including the wait."
    );
    describe_gauge!("mission_control_claim_waiters", "Claims parked waiting for work (long polls).");
    describe_counter!(
        "mission_control_claims_released_total",
        "Claimed tasks given back because the answer never reached the agent."
    );
    describe_counter!("mission_control_pruned_total", "Records deleted by retention, by kind: task or activity.");
    describe_gauge!(
        "mission_control_venture_capital",
        "A venture's capital by kind: spent, reserved (estimated cost of its active tasks) or budget (0 = none)."
    );
    describe_gauge!("mission_control_venture_queued", "Queued tasks by venture.");
    describe_gauge!(
        "mission_control_budget_held_tasks",
        "Queued tasks each venture's budget holds back right now (they cost more than what is left)."
    );
    describe_gauge!(
        "mission_control_oldest_queued_seconds",
        Unit::Seconds,
        "Age of the oldest claimable queued task (0 when none): work that waits."
    );
    describe_gauge!("mission_control_agents", "Agents by status.");
    describe_counter!(
        "mission_control_failures_total",
        "Failed attempts (error reports and expired leases) by venture, since the server started."
    );
}

/// Counts a finished HTTP request and records its duration.
///
/// Registering a labelled metric hashes its name and labels and copies the labels, which
/// costs more than the increment itself; the handles are kept instead, one pair per
/// (route, method, status). Routes are the router's patterns, so the set stays small.
/// Methods outside HTTP's standard ones share the label `other`, so a client sending made-up
/// methods cannot grow it.
pub fn record_http_request(method: &Method, route: &str, status: u16, elapsed: Duration) {
    let method = method_label(method);
    let known = REQUEST_HANDLES
        .read()
        .expect("request metric handles lock")
        .get(route)
        .and_then(|by_status| by_status.get(&(method, status)))
        .cloned();
    let handles = known.unwrap_or_else(|| {
        let handles = RequestHandles {
            count: metrics::counter!("mission_control_http_requests_total",
                "method" => method, "route" => route.to_owned(), "status" => status.to_string()),
            duration: metrics::histogram!("mission_control_http_request_duration_seconds", "route" => route.to_owned()),
        };
        let mut all = REQUEST_HANDLES.write().expect("request metric handles lock");
        all.entry(route.into()).or_default().insert((method, status), handles.clone());
        handles
    });
    handles.count.increment(1);
    handles.duration.record(elapsed.as_secs_f64());
}

#[derive(Clone)]
struct RequestHandles {
    count: metrics::Counter,
    duration: metrics::Histogram,
}

type HandlesByRoute = HashMap<Box<str>, HashMap<(&'static str, u16), RequestHandles>>;

static REQUEST_HANDLES: LazyLock<RwLock<HandlesByRoute>> = LazyLock::new(Default::default);

fn method_label(method: &Method) -> &'static str {
    static STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD.iter().find(|standard| *standard == method).map_or("other", Method::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_keep_their_name_and_made_up_ones_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "other");
    }
}
