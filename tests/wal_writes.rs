//! The WAL's gathered writes (`store::wal_writes`) under a workload that commits, rolls
//! back, spills pages mid-transaction and rewrites them, runs transactions larger than the
//! buffer, checkpoints and starts the WAL over: after every commit a second connection must
//! read what a model holds, and a copy of the files taken then (what a process that died at
//! that moment would leave) must open to the same rows. Where transactions only append, the
//! writes must also have been gathered: many fewer reached the file than SQLite asked for.
//!
//! One test in its own binary: the VFS is installed before the first connection, once per
//! process.

use std::collections::BTreeMap;
use std::path::Path;

mod common;

use common::rng::Rng;
use mission_control::store::wal_writes;
use rusqlite::{params, Connection};

type Rows = BTreeMap<i64, String>;

fn read_all(conn: &Connection) -> Rows {
    let mut statement = conn.prepare("SELECT k, v FROM t ORDER BY k").unwrap();
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// The database and its WAL as they are on disk now, opened elsewhere: SQLite recovers the
/// commits from the WAL it finds, as after a crash.
fn reopened_copy(path: &Path, into: &Path) -> Connection {
    for suffix in ["", "-wal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", into.display()));
        let from = format!("{}{suffix}", path.display());
        if Path::new(&from).exists() {
            std::fs::copy(&from, format!("{}{suffix}", into.display())).unwrap();
        }
    }
    let _ = std::fs::remove_file(format!("{}-shm", into.display()));
    Connection::open(into).unwrap()
}

#[test]
fn gathered_wal_writes_keep_every_commit_and_reach_the_file_in_few_writes() {
    assert!(wal_writes::install(), "the VFS is installed before the first connection");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.pragma_update(None, "synchronous", "normal").unwrap();
    // For the first half, a cache this small spills dirty pages into the WAL before the
    // commit, and SQLite then rewrites some of them in place; checkpoints at 200 pages start
    // the WAL over, and the size limit truncates it.
    conn.pragma_update(None, "cache_size", 16).unwrap();
    conn.pragma_update(None, "wal_autocheckpoint", 200).unwrap();
    conn.pragma_update(None, "journal_size_limit", 256 * 1024).unwrap();
    conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL); CREATE INDEX t_v ON t (v);").unwrap();
    let reader = Connection::open(&path).unwrap();

    let mut rng = Rng(7);
    let mut model = Rows::new();
    let mut before = wal_writes::writes();
    for round in 0..240 {
        if round == 120 {
            // The second half appends whole transactions, as the server's persister does;
            // those writes are the ones counted.
            conn.pragma_update(None, "cache_size", 4_000).unwrap();
            before = wal_writes::writes();
        }
        let tx = conn.unchecked_transaction().unwrap();
        let mut pending = model.clone();
        if round == 180 {
            // Larger than the buffer (4 MiB) and than nothing else: it goes out in pieces.
            for i in 0..1_500 {
                let value = rng.text(3_000) + &"x".repeat(2_000);
                tx.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", params![10_000 + i, value]).unwrap();
                pending.insert(10_000 + i, value);
            }
        }
        // In the first half, now and then one that spills most of what it writes.
        let (changes, longest) =
            if round % 60 == 30 && round < 120 { (2_500, 3_000) } else { (1 + rng.below(80), 1_200) };
        for _ in 0..changes {
            let key = rng.below(4_000) as i64;
            if rng.one_in(4) {
                tx.execute("DELETE FROM t WHERE k = ?1", [key]).unwrap();
                pending.remove(&key);
            } else {
                let value = rng.text(longest);
                tx.execute(
                    "INSERT INTO t (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = ?2",
                    params![key, value],
                )
                .unwrap();
                pending.insert(key, value);
            }
        }
        if rng.one_in(6) {
            tx.rollback().unwrap();
        } else {
            tx.commit().unwrap();
            model = pending;
        }
        assert!(read_all(&reader) == model, "round {round}: another connection reads what was committed");
        if round % 20 == 0 {
            let copy = reopened_copy(&path, &dir.path().join("copy.db"));
            assert!(read_all(&copy) == model, "round {round}: the files hold every commit");
        }
        if round % 50 == 49 {
            reader.execute_batch("PRAGMA wal_checkpoint(PASSIVE)").unwrap();
        }
    }

    // A connection that starts writing into a WAL another one wrote, past frames not yet
    // copied back (so it does not start the WAL over): its first write is not an append of
    // its own, and a commit of one frame, one row of a table without indexes, is all it writes.
    conn.execute_batch("CREATE TABLE one (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO one VALUES (1, 'first')")
        .unwrap();
    let second = Connection::open(&path).unwrap();
    second.pragma_update(None, "synchronous", "normal").unwrap();
    let (asked_before, _) = wal_writes::writes();
    second.execute("UPDATE one SET v = 'second' WHERE k = 1", []).unwrap();
    assert_eq!(wal_writes::writes().0 - asked_before, 2, "one frame: its header and its page");
    let copy = reopened_copy(&path, &dir.path().join("copy.db"));
    let one: String = copy.query_row("SELECT v FROM one", [], |row| row.get(0)).unwrap();
    assert_eq!(one, "second", "the second writer's one-frame commit is in the files");
    drop(second);

    let check: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(check, "ok");
    let (asked, passed) = wal_writes::writes();
    let (asked, passed) = (asked - before.0, passed - before.1);
    assert!(passed * 10 < asked, "{passed} writes reached the WAL for the {asked} SQLite asked for");
    drop(reader);
    drop(conn);
    let reopened = Connection::open(&path).unwrap();
    assert!(read_all(&reopened) == model, "the rows survive closing and opening again");
}
