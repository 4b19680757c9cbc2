use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mission_control::config::{Cli, Command, DbArgs, McpArgs, ServeArgs, WorkArgs};
use mission_control::domain::Millis;
use mission_control::store::Location;
use mission_control::{mcp, server, store, worker};

/// mimalloc rather than glibc's malloc (docs/PERFORMANCE.md, "The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before any thread or connection: SQLite takes a page cache only before it starts.
    let page_cache_wrapped = store::page_cache::install();
    let wal_writes_gathered = store::wal_writes::install();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: in a file or a log collector they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if !page_cache_wrapped {
        tracing::warn!("SQLite was started before its page cache could be wrapped: commits will be slower");
    }
    if !wal_writes_gathered {
        tracing::warn!("the WAL's writes could not be gathered: commits will be slower");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Migrate(db)) => migrate(&db),
        Some(Command::Seed(db)) => seed(&db, false),
        Some(Command::Reset(db)) => seed(&db, true),
        Some(Command::Backup { db, dest }) => backup(&db, &dest),
        Some(Command::Work(args)) => return work(args),
        Some(Command::Mcp(args)) => serve_mcp(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mission-control: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.http_threads())
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let listener =
        runtime.block_on(async { server::bind(args.addr) }).with_context(|| format!("binding {}", args.addr))?;
    let addr = listener.local_addr()?;
    // Outside the runtime: opening PostgreSQL's synchronous connections blocks.
    let running = server::start(&args, addr)?;
    runtime.block_on(async {
        if !addr.ip().is_loopback() && args.api_token.is_none() {
            tracing::warn!(%addr, "listening on a non-loopback address without --api-token: anyone who can reach it can change state");
        }
        println!("mission-control listening on http://{addr}");
        server::run(listener, running, shutdown_signal()).await.context("serving")?;
        tracing::info!("stopped; every accepted change is committed");
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: no new requests; flushing pending writes");
}

/// Exit 0 once drained or at a limit, 1 after a second signal or a refused claim.
fn work(args: WorkArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mission-control: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(worker::run(args)) {
        Ok(worker::Exit::Done) => ExitCode::SUCCESS,
        Ok(worker::Exit::Stopped) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("mission-control: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The MCP server over standard input and output, until the client closes it.
fn serve_mcp(args: McpArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(mcp::serve_stdio(args))
}

fn migrate(db: &DbArgs) -> anyhow::Result<()> {
    match db.location()? {
        Location::Sqlite(path) => {
            let _lock = store::ProcessLock::acquire(&path)?;
            let mut conn = store::open(&path)?;
            store::migrate(&mut conn, &path)?;
            println!("migrated {}", path.display());
        }
        Location::Postgres(config) => {
            store::postgres::migrate(&mut config.connect()?, false, Millis::now())?;
            println!("migrated {}", config.shown());
        }
    }
    Ok(())
}

/// `seed` writes the sample data; `reset` drops everything first.
fn seed(db: &DbArgs, reset: bool) -> anyhow::Result<()> {
    let done = if reset { "reset and seeded" } else { "seeded" };
    match db.location()? {
        Location::Sqlite(path) => {
            let _lock = store::ProcessLock::acquire(&path)?;
            let mut conn = store::open(&path)?;
            if reset {
                store::drop_everything(&mut conn)?;
            }
            store::migrate(&mut conn, &path)?;
            store::seed_sample_data(&mut conn, Millis::now())?;
            println!("{done} {}", path.display());
        }
        Location::Postgres(config) => {
            let mut client = config.connect()?;
            if reset {
                store::postgres::reset(&mut client, Millis::now())?;
            } else {
                store::postgres::migrate(&mut client, false, Millis::now())?;
                store::postgres::seed_sample_data(&mut client, Millis::now())?;
            }
            println!("{done} {}", config.shown());
        }
    }
    Ok(())
}

fn backup(db: &DbArgs, dest: &std::path::Path) -> anyhow::Result<()> {
    let path = match db.location()? {
        Location::Sqlite(path) => path,
        Location::Postgres(config) => anyhow::bail!(
            "{}: `backup` copies a SQLite file; back up PostgreSQL with its own tools (pg_dump, or the \
             base backups and WAL archiving of your replication setup)",
            config.shown()
        ),
    };
    anyhow::ensure!(path.is_file(), "{} does not exist", path.display());
    let conn = store::open_read_only(&path)?;
    store::backup(&conn, dest)?;
    println!("backed up {} to {}", path.display(), dest.display());
    Ok(())
}
