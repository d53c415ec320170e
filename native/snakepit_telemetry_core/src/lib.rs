//! The parts of Snakepit telemetry ingest that do not touch the BEAM, each
//! unit-tested here; the NIF crate turns their results into Erlang terms.
//!
//! - `catalog`: the event catalog, limits, defaults and rejection reasons
//!   (`priv/catalog/telemetry_catalog.json`);
//! - `validate`: the value rules (`priv/catalog/value_rules.json`) and
//!   typed rejections; `units`: durations in native time units;
//! - `scan`: a frame's bytes to validated events without building messages;
//!   `frame`: the same for a prost-decoded event (the reference `scan` is
//!   tested against); `stderr`: a `TELEMETRY:` line;
//! - `totals`: the workers' running totals and the accounting of a stream;
//!   `settings`: the controls a stream replays when it reconnects;
//! - `glob`: sampling and filter patterns with `fnmatchcase`'s meaning;
//!   `local_sampling`: pattern sampling the NIF applies for a stock peer;
//! - `budget`: the bound on a producer's queued items and bytes;
//! - `lifecycle`: stream states, typed disconnects and the gRPC status
//!   events; `reconnect`: backoff;
//! - `raw_frames`, `wire`: the tonic codec and the generated protobuf types;
//! - `worker_controls`: the worker side of the controls (what a worker
//!   keeps, filters and samples), for the Rust peers.

pub mod budget;
pub mod catalog;
pub mod frame;
pub mod glob;
pub mod lifecycle;
pub mod local_sampling;
pub mod raw_frames;
pub mod reconnect;
pub mod scan;
pub mod settings;
pub mod stderr;
pub mod totals;
pub mod units;
pub mod validate;
pub mod wire;
pub mod worker_controls;
