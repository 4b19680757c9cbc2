//! The command line: migrate, seed, reset, backup, the database path, and bad files.

mod common;

use common::{count_rows, run_cli, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_migrated_file_is_not_seeded_by_serve_but_seed_fills_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let db_arg = db.to_str().unwrap();
    let (ok, out) = run_cli(&["migrate", "--db", db_arg]);
    assert!(ok, "{out}");
    let server = TestServer::start_on(&db, &[]);
    assert_eq!(server.ok("/api/ventures").await, json!([]));
    drop(server);
    let (ok, out) = run_cli(&["seed", "--db", db_arg]);
    assert!(ok, "{out}");
    assert_eq!(count_rows(&db, "SELECT count(*) FROM Venture"), 2);
    assert_eq!(count_rows(&db, "SELECT count(*) FROM Task"), 3);
    assert_eq!(count_rows(&db, "SELECT count(*) FROM Agent"), 2);
    assert_eq!(count_rows(&db, "SELECT count(*) FROM Activity"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_drops_everything_then_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let server = TestServer::start_on(&db, &[]);
    server.post("/api/ventures", json!({"name": "extra"})).await;
    server.post("/api/tasks/claim", json!({"agentId": "agent-main"})).await;
    assert!(server.terminate().success());
    let (ok, out) = run_cli(&["reset", "--db", db.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(count_rows(&db, "SELECT count(*) FROM Venture"), 2);
    assert_eq!(count_rows(&db, "SELECT count(*) FROM Task WHERE status = 'queue'"), 3);
    assert_eq!(count_rows(&db, "SELECT count(*) FROM Activity"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_is_consistent_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let server = TestServer::start_on(&db, &[]);
    for i in 0..50 {
        server.post("/api/tasks", json!({"title": format!("t{i}"), "ventureId": "clxyz-allbirds"})).await;
    }
    let copy = dir.path().join("copy.db");
    let (ok, out) = run_cli(&["backup", "--db", db.to_str().unwrap(), copy.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(count_rows(&copy, "SELECT count(*) FROM Task"), 53);
    let (ok, out) = run_cli(&["backup", "--db", db.to_str().unwrap(), copy.to_str().unwrap()]);
    assert!(!ok && out.contains("already exists"), "{out}");
    // The copy serves as a database of its own.
    let restored = TestServer::start_on(&copy, &[]);
    assert_eq!(restored.ok("/api/tasks").await.as_array().unwrap().len(), 53);
}

#[test]
fn database_url_names_the_file_as_in_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dev.db");
    let output = std::process::Command::new(common::BIN)
        .arg("migrate")
        .env_remove("MC_DB")
        .env("DATABASE_URL", format!("file:{}", db.display()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(db.exists());
}

#[test]
fn bad_database_files_are_refused_with_a_message_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run_cli(&["migrate", "--db", dir.path().to_str().unwrap()]);
    assert!(!ok && out.contains("directory"), "{out}");

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, b"this is not a database, just some bytes that are long enough to be a header").unwrap();
    let before = std::fs::read(&garbage).unwrap();
    let (ok, out) = run_cli(&["serve", "--db", garbage.to_str().unwrap(), "--addr", "127.0.0.1:0"]);
    assert!(!ok && out.to_lowercase().contains("not a database"), "{out}");
    assert_eq!(std::fs::read(&garbage).unwrap(), before, "the file is untouched");

    let newer = dir.path().join("newer.db");
    let conn = rusqlite::Connection::open(&newer).unwrap();
    conn.execute_batch("CREATE TABLE Future (x); PRAGMA user_version = 99;").unwrap();
    drop(conn);
    let (ok, out) = run_cli(&["serve", "--db", newer.to_str().unwrap(), "--addr", "127.0.0.1:0"]);
    assert!(!ok && out.contains("migrating"), "{out}");
    assert_eq!(count_rows(&newer, "PRAGMA user_version"), 99);
}

#[test]
fn help_lists_every_option_with_its_environment_variable() {
    let (ok, out) = run_cli(&["serve", "--help"]);
    assert!(ok);
    for option in [
        "--db",
        "--addr",
        "--durability",
        "--flush-ms",
        "--lease-seconds",
        "--api-token",
        "--no-seed",
        "MC_API_TOKEN",
        "MC_DURABILITY",
    ] {
        assert!(out.contains(option), "help lacks {option}:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_in_use_is_refused_by_a_second_server_and_by_reset() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("busy.db");
    let db_arg = db.to_str().unwrap();
    let server = TestServer::start_on(&db, &[]);
    let (ok, out) = run_cli(&["serve", "--db", db_arg, "--addr", "127.0.0.1:0"]);
    assert!(!ok && out.contains("another mission-control process"), "{out}");
    let (ok, out) = run_cli(&["reset", "--db", db_arg]);
    assert!(!ok && out.contains("another mission-control process"), "{out}");
    assert_eq!(server.ok("/api/tasks").await.as_array().unwrap().len(), 3, "the running server's data is untouched");
}

#[test]
fn a_database_locked_by_another_program_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locked.db");
    let (ok, out) = run_cli(&["migrate", "--db", db.to_str().unwrap()]);
    assert!(ok, "{out}");
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let (ok, out) = run_cli(&["serve", "--db", db.to_str().unwrap(), "--addr", "127.0.0.1:0"]);
    assert!(!ok && out.contains("lock"), "{out}");
    holder.execute_batch("COMMIT;").unwrap();
}
