//! Mission Control: an atomic task scheduler for fleets of AI agents.
//!
//! # Layout
//! - [`domain`]: ventures, tasks, agents and activities as plain types; no I/O, no serde.
//! - [`scheduler`]: the `TaskQueue` actor that owns all live state (the priority index of
//!   queued tasks, leases, budgets) and the cloneable [`scheduler::Scheduler`] handle.
//! - [`persist`]: the persister thread that batches the scheduler's changes into SQLite.
//! - [`store`]: opening the file, migrations, sample data, loading at start, backups and
//!   the read-only queries of the activity log.
//! - [`api`]: the axum router, request decoding, JSON shapes and the one `ApiError`.
//! - [`events`]: the live feed of changes behind `GET /api/events`.
//! - [`dashboard`]: the board at `/`, its assets compiled in.
//! - [`server`]: wiring it together; [`config`]: the command line; [`metrics`]: Prometheus.
//! - [`client`]: a typed client of the agents' endpoints; [`worker`]: `mission-control work`,
//!   which runs a command for each claimed task. Neither uses the server's modules.
//! - [`mcp`]: the Model Context Protocol tools, over standard input and output
//!   (`mission-control mcp`, through [`client`]) and at `/mcp` (through the API's own router).
//!
//! `docs/ARCHITECTURE.md` tells how a claim flows through these parts.

pub mod api;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod domain;
pub mod events;
pub mod ha;
pub mod mcp;
pub mod metrics;
pub mod persist;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod worker;
