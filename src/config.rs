//! The command line. Every option is also an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::store::postgres::PgConfig;
use crate::store::{Location, StoreError};

#[derive(Debug, Parser)]
#[command(name = "mission-control", version, about = "An atomic task scheduler for fleets of AI agents.")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand, `mission-control` serves.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API and the dashboard (the default).
    Serve(ServeArgs),
    /// Create the database if needed and apply migrations; seeds nothing.
    Migrate(DbArgs),
    /// Write the sample data (ventures, agents, tasks and notes) into the database.
    Seed(DbArgs),
    /// Drop everything, migrate and seed.
    Reset(DbArgs),
    /// Write a consistent copy of the database to DEST, safe while a server runs.
    Backup {
        #[command(flatten)]
        db: DbArgs,
        /// Where to write the copy; must not exist.
        dest: PathBuf,
    },
    /// Run COMMAND for each claimed task: an agent made of any program.
    ///
    /// The task's JSON is on the command's standard input; exit 0 completes the task with
    /// its standard output, anything else reports an error with its standard error.
    Work(WorkArgs),
    /// Serve the Model Context Protocol over standard input and output: the scheduler's
    /// operations as tools for an LLM agent, each one a call to the server at `--url`.
    Mcp(McpArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// The SQLite file, or a `postgres://` URL [default: ./mission-control.db, or
    /// DATABASE_URL=file:PATH or DATABASE_URL=postgres://...].
    #[arg(long, env = "MC_DB")]
    pub db: Option<PathBuf>,
}

impl DbArgs {
    /// The SQLite file, or the PostgreSQL database when `--db` or `DATABASE_URL` is a
    /// `postgres://` (or `postgresql://`) URL.
    pub fn location(&self) -> Result<Location, StoreError> {
        let given = match &self.db {
            Some(db) => db.to_str().map(str::to_owned),
            None => std::env::var("DATABASE_URL").ok(),
        };
        match given.as_deref().filter(|url| is_postgres_url(url)) {
            Some(url) => Ok(Location::Postgres(PgConfig::parse(url)?)),
            None => Ok(Location::Sqlite(self.path())),
        }
    }

    /// `--db`, else `DATABASE_URL=file:PATH` as the seed used it, else the default.
    pub fn path(&self) -> PathBuf {
        if let Some(path) = &self.db {
            return path.clone();
        }
        if let Some(path) = std::env::var("DATABASE_URL").ok().as_deref().and_then(database_url_path) {
            return path;
        }
        PathBuf::from("./mission-control.db")
    }
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `file:./dev.db` or `file:/abs/dev.db?connection_limit=1` → the path.
fn database_url_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("file:")?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty()).then(|| PathBuf::from(path))
}

pub use crate::scheduler::Durability;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Address to listen on; loopback unless told otherwise.
    #[arg(long, env = "MC_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// On PostgreSQL: the URL other nodes' standbys send clients to while this node leads
    /// [default: http://ADDR].
    #[arg(long, env = "MC_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// On PostgreSQL: the leader's lease; it renews every second, and a standby takes over
    /// this long after the leader's last renewal.
    #[arg(long, env = "MC_LEADER_LEASE_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=600))]
    pub leader_lease_seconds: u32,
    #[arg(long, env = "MC_DURABILITY", value_enum, default_value = "batch")]
    pub durability: Durability,
    /// The longest a write batch stays open while changes keep arriving, in milliseconds.
    #[arg(long, env = "MC_FLUSH_MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub flush_ms: u64,
    /// Lease length for a claim that does not ask for one.
    #[arg(long, env = "MC_LEASE_SECONDS", default_value_t = 1800, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub lease_seconds: u32,
    /// Seconds after which an agent holding no task and not heard from is shown `offline`.
    #[arg(long, env = "MC_AGENT_TIMEOUT", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=86_400 * 365))]
    pub agent_timeout: u32,
    /// Require `Authorization: Bearer <token>` on every /api request.
    #[arg(long, env = "MC_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Do not write the sample data into a database this run creates.
    #[arg(long, env = "MC_NO_SEED")]
    pub no_seed: bool,
    /// Uncommitted changes past which writes answer 503 until the disk catches up.
    #[arg(long, env = "MC_MAX_PENDING", default_value_t = 100_000)]
    pub max_pending: usize,
    /// How long a reply in `batch` durability waits for its commit before answering 503.
    #[arg(long, env = "MC_COMMIT_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub commit_timeout_ms: u64,
    /// A client must send a request's headers within this time, or the connection closes.
    #[arg(long, env = "MC_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,
    /// A client must send a request's body within this time, or gets 408.
    #[arg(long, env = "MC_BODY_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,
    /// Long-polling claims that may wait at once; past it a claim that would wait answers 503.
    #[arg(long, env = "MC_MAX_WAITERS", default_value_t = 10_000)]
    pub max_waiters: usize,
    /// Open `/api/events` streams allowed at once; past it a new one answers 503.
    #[arg(long, env = "MC_MAX_EVENT_STREAMS", default_value_t = 256)]
    pub max_event_streams: usize,
    /// Threads serving HTTP [default: one less than the cores, at least one].
    #[arg(long, env = "MC_HTTP_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub http_threads: Option<u16>,
    /// Delete completed tasks this long after `completedAt` (`90s`, `45m`, `12h`, `7d`);
    /// unset keeps them forever.
    #[arg(long, env = "MC_RETAIN_COMPLETED", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub retain_completed: Option<Duration>,
    /// Delete failed (and cancelled) tasks this long after their last update; unset keeps them.
    #[arg(long, env = "MC_RETAIN_FAILED", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub retain_failed: Option<Duration>,
    /// Delete activities this long after `createdAt`; unset keeps them.
    #[arg(long, env = "MC_RETAIN_ACTIVITY", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub retain_activity: Option<Duration>,
}

impl ServeArgs {
    /// The HTTP runtime's threads. Under load the scheduler's actor and the persister keep
    /// a core busy between them, so by default HTTP leaves them one: on two cores, one HTTP
    /// thread ran 1.11x the cycles/s of two at 64 agents (docs/PERFORMANCE.md).
    pub fn http_threads(&self) -> usize {
        self.http_threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |cores| cores.get().saturating_sub(1).max(1)),
            usize::from,
        )
    }
}

/// `mission-control work [OPTIONS] -- COMMAND [ARGS...]`.
#[derive(Debug, Clone, Args)]
pub struct WorkArgs {
    /// The server; give it several times (or comma-separated) to try them in order.
    #[arg(long, env = "MC_URL", value_delimiter = ',', default_value = "http://127.0.0.1:3000")]
    pub url: Vec<String>,
    /// Sent as `Authorization: Bearer <token>`.
    #[arg(long, env = "MC_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// The agent this worker claims as [default: the host name and the process id].
    #[arg(long, env = "MC_AGENT_ID")]
    pub agent_id: Option<String>,
    /// The agent's name, when a claim registers it.
    #[arg(long, env = "MC_AGENT_NAME")]
    pub agent_name: Option<String>,
    /// Claim only this venture's tasks.
    #[arg(long, env = "MC_VENTURE", value_name = "VENTURE_ID")]
    pub venture: Option<String>,
    /// Claim only tasks carrying every one of these tags (comma-separated).
    #[arg(long, env = "MC_TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Tasks run at once.
    #[arg(long, env = "MC_CONCURRENCY", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// The lease each claim asks for; the worker heartbeats every third of it.
    #[arg(long, env = "MC_LEASE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(3..=86_400))]
    pub lease_seconds: u32,
    /// Seconds between SIGTERM and SIGKILL when a command is stopped.
    #[arg(long, env = "MC_KILL_GRACE", default_value_t = 10, value_name = "SECONDS")]
    pub kill_grace: u64,
    /// Exit 0 after this many tasks.
    #[arg(long, env = "MC_MAX_TASKS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tasks: Option<u64>,
    /// Exit 0 after this long with nothing to do.
    #[arg(long, env = "MC_IDLE_EXIT", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_exit: Option<u64>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `mission-control mcp [--url URL] [--api-token TOKEN] [--agent-id ID]`.
#[derive(Debug, Clone, Args)]
pub struct McpArgs {
    /// The server; give it several times (or comma-separated) to try them in order.
    #[arg(long, env = "MC_URL", value_delimiter = ',', default_value = "http://127.0.0.1:3000")]
    pub url: Vec<String>,
    /// Sent as `Authorization: Bearer <token>`.
    #[arg(long, env = "MC_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// The agent the tools act as when a call gives no `agentId`.
    #[arg(long, env = "MC_AGENT_ID")]
    pub agent_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_is_read_as_the_seed_wrote_it() {
        assert_eq!(database_url_path("file:./dev.db"), Some(PathBuf::from("./dev.db")));
        assert_eq!(database_url_path("file:/a/b.db?connection_limit=1"), Some(PathBuf::from("/a/b.db")));
        assert_eq!(database_url_path("postgres://x"), None);
        assert_eq!(database_url_path("file:"), None);
    }

    #[test]
    fn no_arguments_means_serve_with_defaults() {
        let cli = Cli::try_parse_from(["mission-control"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.durability, Durability::Batch);
        assert_eq!(cli.serve.addr.to_string(), "127.0.0.1:3000");
        assert!(Cli::try_parse_from(["mission-control", "--lease-seconds", "0"]).is_err());
        assert_eq!(cli.serve.agent_timeout, 90, "an idle agent is offline after 90 s by default");
        assert_eq!(cli.serve.retain_completed, None, "history is kept forever by default");
    }

    #[test]
    fn work_takes_its_command_after_a_double_dash() {
        let cli = Cli::try_parse_from(["mission-control", "work", "--tags", "a,b", "--", "sh", "-c", "true"]).unwrap();
        let Some(Command::Work(args)) = cli.command else { panic!("not work") };
        assert_eq!(args.command, ["sh", "-c", "true"]);
        assert_eq!(args.tags, ["a", "b"]);
        assert_eq!((args.concurrency, args.lease_seconds, args.kill_grace), (1, 60, 10));
        for bad in [&["work"][..], &["work", "--concurrency", "0", "--", "true"], &["work", "--bogus", "--", "true"]] {
            let error = Cli::try_parse_from(std::iter::once("mission-control").chain(bad.iter().copied())).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn http_leaves_the_actor_and_the_persister_a_core_unless_told() {
        let cores = std::thread::available_parallelism().unwrap().get();
        let default = Cli::try_parse_from(["mission-control"]).unwrap().serve.http_threads();
        assert_eq!(default, cores.saturating_sub(1).max(1));
        let told = Cli::try_parse_from(["mission-control", "--http-threads", "3"]).unwrap();
        assert_eq!(told.serve.http_threads(), 3);
        for bad in ["0", "1025", "many"] {
            assert!(Cli::try_parse_from(["mission-control", "--http-threads", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn retention_windows_take_a_number_and_a_unit() {
        let cli =
            Cli::try_parse_from(["mission-control", "--retain-completed", "7d", "--retain-activity", "90s"]).unwrap();
        assert_eq!(cli.serve.retain_completed, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(cli.serve.retain_activity, Some(Duration::from_secs(90)));
        for bad in ["7", "seven days", "-1h", "12x"] {
            assert!(Cli::try_parse_from(["mission-control", "--retain-failed", bad]).is_err(), "{bad}");
        }
    }
}
