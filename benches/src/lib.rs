//! Shared pieces of the onboarding benchmarks: the flows' data, the two ways
//! of running a flow on an embedded database (through the SQL functions, and
//! the hand-written "floor"), and the reporting helpers.
//!
//! ```no_run
//! use onboarding_benches::{db, floor::Floor, flow::{FlowData, FunctionPath}};
//!
//! let dir = db::TempDir::new("example").unwrap();
//! let conn = db::open(&dir.path().join("a.db"), db::Settings::from_args()).unwrap();
//! let data = FlowData::new("example", 0);
//! FunctionPath::new(&conn).run_flow(&data).unwrap();
//! ```
//!
//! The benchmarks themselves are `benches/embedded.rs`, `benches/growth.rs`
//! and the HTTP load generator `src/bin/loadgen.rs`; see `benches/README.md`.

pub mod db;
pub mod floor;
pub mod flow;
pub mod knowledge;
pub mod report;

/// What a benchmark run failed on: a message for people.
pub type Result<T> = std::result::Result<T, String>;
