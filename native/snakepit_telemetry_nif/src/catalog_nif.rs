//! NIFs that expose the catalog as Rust compiled it in, and install an
//! application's extension of it.

use rustler::{Atom, Env};
use snakepit_telemetry_core::catalog::{Extension, CATALOG};

use crate::atoms;

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

/// Installs the application's events and keys (a JSON `Extension`), once
/// per VM: `:ok` or `{:error, reason}` (a clash, a bad name, a second
/// different extension). Dirty: parsing and building the tables may take
/// longer than a scheduler should be held.
#[rustler::nif(schedule = "DirtyCpu")]
fn catalog_install(env: Env, json: String) -> Result<Atom, String> {
    let ext: Extension = serde_json::from_str(&json).map_err(|e| format!("bad extension: {e}"))?;
    crate::catalog_terms::install(env, &ext)?;
    Ok(atoms::ok())
}

/// The installed catalog's summary (the compiled-in one's before any install).
#[rustler::nif]
fn catalog_installed_summary() -> String {
    crate::catalog_terms::get().catalog().summary_json()
}
