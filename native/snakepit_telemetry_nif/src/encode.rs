//! Encodes a validated event as the three arguments of `:telemetry.execute/3`.
//! Runs once per event on the ingest path: no heap allocation for events of
//! usual size (the key/value arrays live on the stack).

use rustler::{Encoder, Env, Term};
use smallvec::SmallVec;
use snakepit_telemetry_core::catalog::CATALOG;
use snakepit_telemetry_core::validate::{Key, Number, ValidEvent};

use crate::atoms;
use crate::catalog_terms::{CatalogTerms, Reserved};
use crate::config::{Name, WorkerContext};

/// Map entries kept on the stack (metadata: the event's plus six set here).
type Entries<'a> = SmallVec<[Term<'a>; 16]>;

/// `{event_name, measurements, metadata}` as a tuple.
pub fn event_tuple<'a>(
    env: Env<'a>,
    terms: &CatalogTerms,
    e: &ValidEvent<'_>,
    ctx: Option<&WorkerContext>,
) -> Term<'a> {
    let (n, m, md) = event_terms(env, terms, e, ctx);
    rustler::types::tuple::make_tuple(env, &[n, m, md])
}

/// `{event_name, measurements, metadata}`; metadata holds the validated
/// entries plus `correlation_id` (nil when blank) and `timestamp_ns` (nil when
/// not given), and, when `ctx` is given, the worker's `node`, `worker_id`,
/// `pool_name` and `python_pid` (these replace worker-sent entries).
pub fn event_terms<'a>(
    env: Env<'a>,
    terms: &CatalogTerms,
    e: &ValidEvent<'_>,
    ctx: Option<&WorkerContext>,
) -> (Term<'a>, Term<'a>, Term<'a>) {
    let name = terms.event(e.event).encode(env);
    (
        name,
        measurements(env, terms, e),
        metadata(env, terms, e, ctx),
    )
}

/// The worker context as an Erlang term for `pool_name`.
pub fn name_term<'a>(env: Env<'a>, name: &Name) -> Term<'a> {
    match name {
        Name::Atom(a) => a.encode(env),
        Name::Text(s) => s.encode(env),
        Name::Nil => atoms::nil().encode(env),
    }
}

fn measurements<'a>(env: Env<'a>, terms: &CatalogTerms, e: &ValidEvent<'_>) -> Term<'a> {
    let mut keys = Entries::new();
    let mut values = Entries::new();
    for (key, n) in &e.measurements {
        let (k, is_duration) = match key {
            Key::Known(id) => (
                terms.measurement_key(*id).encode(env),
                CATALOG.is_duration(*id),
            ),
            Key::Other(s) => (s.as_ref().encode(env), false),
        };
        let v = match (*n, is_duration) {
            (Number::Int(i), true) => terms.ns_to_native(i).encode(env),
            (Number::Float(f), true) => terms.ns_to_native_f(f).encode(env),
            (Number::Int(i), false) => i.encode(env),
            (Number::Float(f), false) => f.encode(env),
        };
        keys.push(k);
        values.push(v);
    }
    map(env, &keys, &values)
}

fn metadata<'a>(
    env: Env<'a>,
    terms: &CatalogTerms,
    e: &ValidEvent<'_>,
    ctx: Option<&WorkerContext>,
) -> Term<'a> {
    let mut keys = Entries::new();
    let mut values = Entries::new();
    for (key, v) in &e.metadata {
        let k = match key {
            Key::Known(id) => match terms.reserved(*id) {
                Reserved::Always => continue,
                Reserved::WithContext if ctx.is_some() => continue,
                _ => terms.metadata_key(*id).encode(env),
            },
            Key::Other(s) => s.as_ref().encode(env),
        };
        keys.push(k);
        values.push(v.as_ref().encode(env));
    }
    let mut set = |k: rustler::Atom, v: Term<'a>| {
        keys.push(k.encode(env));
        values.push(v);
    };
    set(
        atoms::correlation_id(),
        opt(env, e.correlation_id.as_deref()),
    );
    set(atoms::timestamp_ns(), opt(env, e.timestamp_ns));
    if let Some(ctx) = ctx {
        set(atoms::node(), ctx.node.encode(env));
        set(atoms::worker_id(), ctx.worker_id.encode(env));
        set(atoms::pool_name(), name_term(env, &ctx.pool_name));
        set(atoms::python_pid(), opt(env, ctx.python_pid));
    }
    map(env, &keys, &values)
}

fn opt<T: Encoder>(env: Env<'_>, v: Option<T>) -> Term<'_> {
    match v {
        Some(v) => v.encode(env),
        None => atoms::nil().encode(env),
    }
}

/// Builds a map; keys are unique by construction (validated maps, reserved
/// keys skipped above).
fn map<'a>(env: Env<'a>, keys: &[Term<'a>], values: &[Term<'a>]) -> Term<'a> {
    Term::map_from_term_arrays(env, keys, values).expect("unique keys")
}
