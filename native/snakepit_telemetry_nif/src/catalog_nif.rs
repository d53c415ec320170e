//! NIFs that expose the catalog as Rust compiled it in.

use snakepit_telemetry_core::catalog::CATALOG;

/// The canonical catalog summary (JSON); compared with Elixir's and Python's.
#[rustler::nif]
fn catalog_summary() -> String {
    CATALOG.summary_json()
}

/// The catalog's `version` field.
#[rustler::nif]
fn catalog_version() -> u32 {
    CATALOG.version
}
