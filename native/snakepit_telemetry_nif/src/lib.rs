//! Rustler NIF of Snakepit telemetry. Each module holds one concern; the
//! validation itself lives in the BEAM-free `snakepit_telemetry_core` crate.

mod atoms;
mod auth;
mod catalog_nif;
mod catalog_terms;
mod channel;
mod config;
mod control;
mod dispatch;
mod encode;
mod fake_worker;
mod ingest;
mod json_term;
mod nif_clock;
mod ping_call;
mod runtime;
mod safe_decode;
mod stats;
mod stderr_ingest;
mod stderr_nif;
mod stream;
mod tls;
mod tool_call;

use rustler::{Env, Term};

/// Load hook: builds the catalog's atoms once (they come from the compiled-in
/// catalog, never from input) and starts the stderr ingest thread.
/// `load_info` is `%{native_time_unit: n}`.
fn on_load(env: Env, load_info: Term) -> bool {
    stderr_ingest::init();
    catalog_terms::init(env, load_info).is_ok()
}

rustler::init!("Elixir.Snakepit.Telemetry.Native", load = on_load);
