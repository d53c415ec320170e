//! The parts of Snakepit telemetry ingest that do not touch the BEAM: the
//! event catalog, event validation and the stderr line parser. The NIF crate
//! turns their results into Erlang terms.

pub mod catalog;
pub mod frame;
pub mod lifecycle;
pub mod raw_frames;
pub mod reconnect;
pub mod scan;
pub mod settings;
pub mod stderr;
pub mod totals;
pub mod units;
pub mod validate;
pub mod wire;
