//! A load-generating `BridgeService`: it speaks the worker side of
//! `priv/proto/snakepit_bridge.proto` and streams realistic Python-layer
//! telemetry, honouring the same control frames a Python worker does. The
//! `snakepit_loadgen` binary wraps [`serve`]; tests run it in-process.

pub mod cli;
pub mod config;
pub use snakepit_telemetry_core::worker_controls as control;
pub mod frame;
pub mod generator;
pub use snakepit_telemetry_core::glob;
pub mod producer;
pub mod queue;
pub mod rng;
pub mod route;
pub mod server;
pub mod session;
pub mod stats;

pub use config::Config;
pub use server::serve;
