//! The page cache wrapper (`store::page_cache`) under a workload that splits, merges and
//! swaps b-tree pages, grows and shrinks the file, and rolls transactions back: the data
//! read back must match a model, the file must pass SQLite's integrity check, and the
//! wrapper must have skipped the truncation that ends every commit.
//!
//! One test in its own binary: the wrapper is installed before SQLite starts, once per
//! process.

use std::collections::BTreeMap;

mod common;

use common::rng::Rng;
use mission_control::store::page_cache;
use rusqlite::{params, Connection};

#[test]
fn the_wrapped_page_cache_keeps_every_row_and_skips_empty_truncations() {
    assert!(page_cache::install(), "the wrapper is installed before SQLite starts");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pages.db");
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    // A small cache, so pages are evicted and fetched again as well as truncated.
    conn.pragma_update(None, "cache_size", 64).unwrap();
    conn.execute_batch(
        "CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL);
         CREATE INDEX t_v ON t (v, n);",
    )
    .unwrap();
    let reader = Connection::open(&path).unwrap();

    let mut rng = Rng(14);
    let mut model: BTreeMap<String, (String, i64)> = BTreeMap::new();
    let skipped_before = page_cache::truncations_skipped();
    let mut commits = 0;
    for round in 0..300 {
        let tx = conn.unchecked_transaction().unwrap();
        let mut pending = model.clone();
        for _ in 0..1 + rng.below(60) {
            let key = rng.text(6);
            if rng.one_in(4) {
                tx.execute("DELETE FROM t WHERE k = ?1", [&key]).unwrap();
                pending.remove(&key);
            } else {
                // Long values fill pages quickly: many splits, and so many sibling swaps.
                let value = rng.text(300);
                let n = rng.below(1_000_000) as i64;
                tx.execute(
                    "INSERT INTO t (k, v, n) VALUES (?1, ?2, ?3) ON CONFLICT (k) DO UPDATE SET v = ?2, n = ?3",
                    params![key, value, n],
                )
                .unwrap();
                pending.insert(key, (value, n));
            }
        }
        if rng.one_in(5) {
            tx.rollback().unwrap();
        } else {
            tx.commit().unwrap();
            model = pending;
            commits += 1;
        }
        if round % 50 == 49 {
            // Deletes free pages; a vacuum shrinks the file, so the cache must drop the
            // pages past its new end.
            conn.execute_batch("VACUUM").unwrap();
        }
    }

    let mut statement = reader.prepare("SELECT k, v, n FROM t ORDER BY k").unwrap();
    let rows: BTreeMap<String, (String, i64)> = statement
        .query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), model.len());
    assert!(rows == model, "the rows read back differ from the model");
    let check: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(check, "ok");
    let via_index: i64 =
        conn.query_row("SELECT count(*) FROM t INDEXED BY t_v WHERE v > ''", [], |r| r.get(0)).unwrap();
    assert_eq!(via_index, model.len() as i64);
    // A commit's own pages all lie within the file, so the truncation that ends it always
    // has nothing to drop: splits that parked a page must not change that. (Rollbacks and
    // vacuums may leave pages past the end; their truncations go through.)
    let skipped = page_cache::truncations_skipped() - skipped_before;
    assert!(skipped >= commits, "{skipped} truncations skipped in {commits} commits");
}
