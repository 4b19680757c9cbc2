//! A throwaway PostgreSQL cluster for the tests: `initdb` and `postgres` from the machine's
//! PostgreSQL packages, in a temporary directory, on a free loopback port, one per test
//! process, stopped by a watchdog when the process ends. Each server gets a database of
//! its own.
//!
//! Where PostgreSQL is not installed the tests that need it say so and skip, unless
//! `MC_REQUIRE_POSTGRES=1` (CI sets it), which makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The cluster's URL without a database name, or `None` (after saying why) when the tests
/// must skip.
pub fn cluster() -> Option<String> {
    // The `postgres` client blocks on a runtime of its own, which cannot start on a thread
    // that drives the test's runtime.
    std::thread::spawn(cluster_on_this_thread).join().expect("starting the test cluster")
}

fn cluster_on_this_thread() -> Option<String> {
    let dir = std::env::temp_dir().join(format!("mc-test-pg-{}", std::process::id()));
    let port_file = dir.join("port");
    // Several copies of this module live in one test binary; the first to make the
    // directory starts the cluster, the others wait for its port.
    match std::fs::create_dir(&dir) {
        Ok(()) => match start(&dir) {
            Ok(port) => std::fs::write(&port_file, port.to_string()).expect("write the port"),
            Err(why) => {
                std::fs::write(dir.join("missing"), &why).expect("write the reason");
            }
        },
        Err(_) => {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !port_file.exists() && !dir.join("missing").exists() {
                assert!(Instant::now() < deadline, "the test cluster did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    if let Ok(why) = std::fs::read_to_string(dir.join("missing")) {
        assert!(
            std::env::var("MC_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "MC_REQUIRE_POSTGRES=1 but {why}: install Debian's `postgresql` package (.ci/run does)"
        );
        eprintln!("skipping: {why} (set MC_REQUIRE_POSTGRES=1 to make this a failure)");
        return None;
    }
    let port = std::fs::read_to_string(&port_file).expect("read the port");
    Some(format!("postgres://mc@127.0.0.1:{port}"))
}

/// A new empty database on the cluster: its URL.
pub fn new_database() -> Option<String> {
    let cluster = cluster()?;
    // Unique across the copies of this module in one binary, which count separately.
    let name = format!("t{}", ulid::Ulid::new().to_string().to_lowercase());
    let admin_url = format!("{cluster}/postgres");
    let create = format!("CREATE DATABASE {name}");
    std::thread::spawn(move || {
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).expect("connect");
        admin.batch_execute(&create).expect("create a database");
    })
    .join()
    .expect("creating a database");
    Some(format!("{cluster}/{name}"))
}

fn binary(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    // Debian keeps the server's programs out of PATH, under its major version.
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin").join(name))
        .filter(|path| path.is_file())
        .collect();
    versions.sort();
    on_path.or_else(|| versions.pop())
}

/// `initdb` and `postgres` run as the `postgres` user when the tests run as root, which
/// PostgreSQL refuses to run as.
fn as_server_user(program: &Path) -> Command {
    if unsafe { libc::geteuid() } == 0 {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn start(dir: &Path) -> Result<u16, String> {
    let (Some(initdb), Some(server)) = (binary("initdb"), binary("postgres")) else {
        return Err("PostgreSQL's `initdb` and `postgres` are not installed".into());
    };
    let data = dir.join("data");
    if unsafe { libc::geteuid() } == 0 {
        let status = Command::new("chown").arg("postgres").arg(dir).status().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("there is no `postgres` user to run the server as".into());
        }
    }
    let output = as_server_user(&initdb)
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "mc", "--no-sync", "-E", "UTF8"])
        .output()
        .map_err(|e| format!("running initdb: {e}"))?;
    if !output.status.success() {
        return Err(format!("initdb failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Durability is not under test here, speed is: no fsync.
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let mut child = as_server_user(&server)
        .arg("-D")
        .arg(&data)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=400", "-c", "shared_buffers=64MB"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting postgres: {e}"))?;
    // The watchdog stops the cluster and removes it once this test process has gone.
    let script = format!(
        "while kill -0 {test} 2>/dev/null; do sleep 1; done; \
         kill -INT $(head -n 1 '{data}/postmaster.pid'); sleep 3; rm -rf '{dir}'",
        test = std::process::id(),
        data = data.display(),
        dir = dir.display()
    );
    Command::new("sh").arg("-c").arg(script).stdin(Stdio::null()).spawn().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if postgres::Client::connect(&format!("postgres://mc@127.0.0.1:{port}/postgres"), postgres::NoTls).is_ok() {
            return Ok(port);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            return Err(format!("postgres exited ({status}): {log}"));
        }
        if Instant::now() > deadline {
            return Err("postgres did not accept connections within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The SQLite spelling of a query in PostgreSQL's: the tables' names and camelCase column
/// names quoted, outside string literals (`Task.ventureId` → `"Task"."ventureId"`).
pub fn quote_names(sql: &str) -> String {
    const TABLES: [&str; 6] = ["Venture", "Task", "Agent", "Activity", "TaskAttempt", "TaskDependency"];
    let mut out = String::with_capacity(sql.len() + 16);
    let mut word = String::new();
    let mut in_literal = false;
    let flush = |word: &mut String, out: &mut String| {
        let camel = word.starts_with(|c: char| c.is_ascii_lowercase()) && word.chars().any(|c| c.is_ascii_uppercase());
        if TABLES.contains(&word.as_str()) || camel {
            out.push('"');
            out.push_str(word);
            out.push('"');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in sql.chars() {
        if in_literal {
            out.push(c);
            in_literal = c != '\'';
        } else if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
            in_literal = c == '\'';
        }
    }
    flush(&mut word, &mut out);
    out
}
