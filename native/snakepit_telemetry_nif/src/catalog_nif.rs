//! NIFs that expose the catalog as Rust compiled it in.

use snakepit_telemetry_core::catalog::CATALOG;

/// The canonical catalog summary (JSON); compared with Elixir's and Python's.
#[rustler::nif]
fn catalog_summary() -> String {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::CatalogSummary);
    CATALOG.summary_json()
}

/// The catalog's `version` field.
#[rustler::nif]
fn catalog_version() -> u32 {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::CatalogVersion);
    CATALOG.version
}
