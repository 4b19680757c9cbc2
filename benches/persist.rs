//! `persist_commit/{1,100,10000}`: one SQLite transaction of task upserts, as the persister
//! commits a batch: `BEGIN`, `write_changes`, `COMMIT`, on a file opened with `store::open`
//! (WAL, `synchronous = NORMAL`, as in production) and migrated.
//!
//! Ids: the table is first filled with `TABLE_ROWS` tasks; each batch then upserts the next
//! `n` of those same ids (a window that walks the table and wraps), so every upsert updates
//! an existing row, batches within a pass never repeat an id and the table keeps its size.
//! The rows alternate between two versions (attempts and timestamps differ), so each
//! upsert really changes its row. WAL checkpoints happen when SQLite decides, as in
//! production, and are part of the time of the commit that triggers them. SQLite's page
//! cache is wrapped and the WAL's writes gathered as in the server (`store::page_cache`,
//! `store::wal_writes`).

mod common;

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use mission_control::domain::{Id, Millis, TaskStatus};
use mission_control::scheduler::Change;
use mission_control::store;
use mission_control::store::write_changes;

const BATCH_SIZES: [usize; 3] = [1, 100, 10_000];
/// Rows in the Task table; a multiple of every batch size.
const TABLE_ROWS: usize = 100_000;

/// Two versions of every task: queued, and claimed by the benchmark agent.
fn versions() -> [Vec<Change>; 2] {
    let ventures: Vec<Id> = (0..common::N_VENTURES).map(common::venture_id).collect();
    let queued: Vec<Change> =
        (0..TABLE_ROWS).map(|i| Change::Task(Arc::new(common::queued_task(i, &ventures)))).collect();
    let claimed = queued
        .iter()
        .map(|change| {
            let Change::Task(task) = change else { unreachable!() };
            let mut task = (**task).clone();
            let now = Millis(task.created_at.0 + 60_000);
            task.status = TaskStatus::Active;
            task.attempts += 1;
            task.assigned_to = Some(common::AGENT.into());
            task.claimed_at = Some(now);
            task.lease_expires_at = Some(now.plus_seconds(task.lease_seconds));
            task.updated_at = now;
            Change::Task(Arc::new(task))
        })
        .collect();
    [queued, claimed]
}

fn persist_commit(c: &mut Criterion) {
    // As `main` does, before SQLite starts: commits are timed with the page cache and the
    // WAL writes the server runs.
    assert!(store::page_cache::install(), "SQLite started before the benchmark");
    assert!(store::wal_writes::install(), "the WAL's writes are gathered");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.db");
    let mut conn = store::open(&path).expect("open");
    store::migrate(&mut conn, &path).expect("migrate");
    // As the persister's own connection has it.
    conn.set_prepared_statement_cache_capacity(16);
    let versions = versions();
    let tx = conn.transaction().expect("begin");
    write_changes(&tx, &versions[0]).expect("fill the table");
    tx.commit().expect("commit");

    let mut group = c.benchmark_group("persist_commit");
    // A 10,000-row commit takes tens of milliseconds: the same number of commits per sample
    // keeps the group's time bounded where linear sampling would need hundreds.
    group.sampling_mode(SamplingMode::Flat);
    // Rows upserted so far; the window starts at `written % TABLE_ROWS`, and each pass over
    // the table writes the other version.
    let mut written = 0usize;
    for n in BATCH_SIZES {
        // `n` divides TABLE_ROWS, so a window aligned to `n` never runs past the table's end.
        written = written.div_ceil(n) * n;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let start = written % TABLE_ROWS;
                let version = (written / TABLE_ROWS + 1) % 2;
                written += n;
                let tx = conn.transaction().expect("begin");
                write_changes(&tx, &versions[version][start..start + n]).expect("write");
                tx.commit().expect("commit");
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = persist_commit
}
criterion_main!(benches);
