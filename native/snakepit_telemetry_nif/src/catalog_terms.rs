//! The catalog the NIF validates against, with its Erlang terms: event names,
//! allowlisted keys and rejection reasons as atoms. These are the only atoms
//! the NIF ever makes from strings, and all of them come from the
//! compiled-in catalog, or from the application's extension installed once
//! at start (`catalog_install`, from `config :snakepit_telemetry, events:`,
//! whose names are atoms already) — never from a worker's input.

use once_cell::sync::OnceCell;
use rustler::{Atom, Env, NifResult, Term};
use snakepit_telemetry_core::catalog::{Catalog, EventId, Extension, KeyId, CATALOG};
use snakepit_telemetry_core::units::NativeUnits;
use snakepit_telemetry_core::validate::Rejection;

use crate::atoms;

/// Metadata keys the NIF sets on every event: a worker-sent entry under one
/// of these names is replaced, so it is skipped while encoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    No,
    /// `correlation_id`, `timestamp_ns`: set on every path.
    Always,
    /// `node`, `worker_id`, `pool_name`, `python_pid`: set when the event
    /// comes with a worker context (gRPC streams).
    WithContext,
}

pub struct CatalogTerms {
    catalog: &'static Catalog,
    events: Vec<Vec<Atom>>,
    measurement_keys: Vec<Atom>,
    metadata_keys: Vec<Atom>,
    reasons: Vec<Atom>,
    /// Per metadata key: set by the NIF itself, so a worker's value is
    /// replaced (see [`Reserved`]).
    reserved: Vec<Reserved>,
    /// `:erlang.convert_time_unit(1, :second, :native)`.
    units: NativeUnits,
    /// Each key atom's place in term order (the BEAM orders atoms by name):
    /// maps are handed to the BEAM sorted (see `encode::map`).
    measurement_order: Vec<u32>,
    metadata_order: Vec<u32>,
    /// The same for the metadata keys the NIF sets itself.
    set_order: Vec<(Atom, u32)>,
}

/// The metadata keys the NIF sets on events (see [`Reserved`]).
const SET_KEYS: [&str; 6] = [
    "correlation_id",
    "timestamp_ns",
    "node",
    "worker_id",
    "pool_name",
    "python_pid",
];

/// The place of each of `names` in the sorted list of `names` plus `extra`.
fn term_order(names: &[String], extra: &[&str]) -> (Vec<u32>, Vec<u32>) {
    let mut all: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    let place = |n: &str| all.binary_search(&n).expect("listed above") as u32;
    (
        names.iter().map(|n| place(n)).collect(),
        extra.iter().map(|n| place(n)).collect(),
    )
}

static TERMS: OnceCell<CatalogTerms> = OnceCell::new();
/// The compiled-in catalog plus the application's events (set once).
static INSTALLED: OnceCell<CatalogTerms> = OnceCell::new();

fn atoms_of(env: Env, names: &[String]) -> NifResult<Vec<Atom>> {
    names.iter().map(|n| Atom::from_str(env, n)).collect()
}

pub fn init(env: Env, load_info: Term) -> NifResult<()> {
    let units = load_info
        .map_get(atoms::native_time_unit())
        .and_then(|t| t.decode::<i64>())
        .ok()
        .and_then(NativeUnits::new)
        .unwrap_or(NativeUnits::NANOSECONDS);
    let terms = build(env, &CATALOG, units)?;
    // A second load (upgrade) keeps the first set: the atoms are identical.
    let _ = TERMS.set(terms);
    Ok(())
}

fn build(env: Env, catalog: &'static Catalog, units: NativeUnits) -> NifResult<CatalogTerms> {
    let events = catalog
        .events
        .iter()
        .map(|e| atoms_of(env, &e.event))
        .collect::<NifResult<_>>()?;
    let reasons = Rejection::REASONS
        .iter()
        .map(|r| Atom::from_str(env, r))
        .collect::<NifResult<_>>()?;
    let reserved = catalog
        .metadata_keys
        .iter()
        .map(|k| match k.as_str() {
            "correlation_id" | "timestamp_ns" => Reserved::Always,
            "node" | "worker_id" | "pool_name" | "python_pid" => Reserved::WithContext,
            _ => Reserved::No,
        })
        .collect();
    let (measurement_order, _) = term_order(&catalog.measurement_keys, &[]);
    let (metadata_order, set_places) = term_order(&catalog.metadata_keys, &SET_KEYS);
    let set_order = SET_KEYS
        .iter()
        .zip(set_places)
        .map(|(name, place)| Ok((Atom::from_str(env, name)?, place)))
        .collect::<NifResult<_>>()?;
    Ok(CatalogTerms {
        catalog,
        events,
        reserved,
        measurement_order,
        metadata_order,
        set_order,
        measurement_keys: atoms_of(env, &catalog.measurement_keys)?,
        metadata_keys: atoms_of(env, &catalog.metadata_keys)?,
        reasons,
        units,
    })
}

/// Installs the compiled-in catalog plus `ext`, once (streams started
/// before it keep validating against the catalog they had). Installing the
/// same extension again is a no-op; another one is refused.
pub fn install(env: Env, ext: &Extension) -> Result<(), String> {
    let catalog = CATALOG.extended(ext)?;
    if let Some(installed) = INSTALLED.get() {
        return if installed.catalog.summary_json() == catalog.summary_json() {
            Ok(())
        } else {
            Err(
                "another catalog extension is installed already (restart the VM to change it)"
                    .into(),
            )
        };
    }
    let units = get().units;
    // Leaked once per VM: streams hold `&'static` references to it.
    let catalog: &'static Catalog = Box::leak(Box::new(catalog));
    let terms =
        build(env, catalog, units).map_err(|_| "cannot make the extension's atoms".to_string())?;
    let _ = INSTALLED.set(terms);
    Ok(())
}

/// The installed catalog's terms, else the compiled-in one's.
pub fn get() -> &'static CatalogTerms {
    INSTALLED
        .get()
        .or_else(|| TERMS.get())
        .expect("catalog terms are built in the load hook")
}

impl CatalogTerms {
    /// The catalog these terms were built from (validate against it).
    pub fn catalog(&self) -> &'static Catalog {
        self.catalog
    }

    pub fn event(&self, id: EventId) -> &[Atom] {
        &self.events[id as usize]
    }

    pub fn measurement_key(&self, id: KeyId) -> Atom {
        self.measurement_keys[id as usize]
    }

    pub fn metadata_key(&self, id: KeyId) -> Atom {
        self.metadata_keys[id as usize]
    }

    /// A measurement key's place in term order.
    pub fn measurement_order(&self, id: KeyId) -> u32 {
        self.measurement_order[id as usize]
    }

    /// A metadata key's place in term order.
    pub fn metadata_order(&self, id: KeyId) -> u32 {
        self.metadata_order[id as usize]
    }

    /// The place in term order of a metadata key the NIF sets (one of six;
    /// any other atom goes last, which only costs the BEAM's sort a step).
    pub fn atom_order(&self, key: Atom) -> u32 {
        self.set_order
            .iter()
            .find(|(atom, _)| *atom == key)
            .map_or(u32::MAX - 1, |(_, place)| *place)
    }

    pub fn reserved(&self, id: KeyId) -> Reserved {
        self.reserved[id as usize]
    }

    pub fn reason(&self, rejection: &Rejection) -> Atom {
        self.reason_named(rejection.reason())
    }

    /// The atom of a name in `Rejection::REASONS`.
    pub fn reason_named(&self, name: &str) -> Atom {
        let i = Rejection::REASONS
            .iter()
            .position(|r| *r == name)
            .expect("every reason is listed");
        self.reasons[i]
    }

    /// Python sends durations in nanoseconds; `:telemetry` wants native
    /// units (checked: see `NativeUnits::duration`).
    pub fn units(&self) -> NativeUnits {
        self.units
    }
}
