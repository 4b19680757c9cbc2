//! The API suites again, every server on a PostgreSQL database of its own (a throwaway
//! cluster the harness starts: `common/postgres.rs`), so that both stores keep one
//! behaviour. Where PostgreSQL is not installed they run on SQLite, unless
//! `MC_REQUIRE_POSTGRES=1`, which makes that a failure.
// Each suite brings its own copy of the harness (`mod common;`), as it does on its own.
#![allow(clippy::duplicate_mod)]

#[path = "api.rs"]
mod api;
#[path = "claiming.rs"]
mod claiming;
#[path = "clients.rs"]
mod clients;
#[path = "errors.rs"]
mod errors;
#[path = "events.rs"]
mod events;
#[path = "fleet.rs"]
mod fleet;
#[path = "graph.rs"]
mod graph;
#[path = "history.rs"]
mod history;
#[path = "honest.rs"]
mod honest;
#[path = "time.rs"]
mod time;
#[path = "worker.rs"]
mod worker;
