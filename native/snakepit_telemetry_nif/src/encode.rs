//! Encodes a validated event as the three arguments of `:telemetry.execute/3`.

use rustler::{Encoder, Env, Term};
use snakepit_telemetry_core::catalog::CATALOG;
use snakepit_telemetry_core::validate::{Key, Number, ValidEvent};

use crate::atoms;
use crate::catalog_terms::CatalogTerms;
use crate::config::{Name, WorkerContext};

/// `{event_name, measurements, metadata}`; metadata holds the validated
/// entries plus `correlation_id` (nil when blank) and `timestamp_ns` (nil when
/// not given), and, when `ctx` is given, the worker's `node`, `worker_id`,
/// `pool_name` and `python_pid` (these replace worker-sent entries).
pub fn event_terms<'a>(
    env: Env<'a>,
    terms: &CatalogTerms,
    e: &ValidEvent,
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

fn measurements<'a>(env: Env<'a>, terms: &CatalogTerms, e: &ValidEvent) -> Term<'a> {
    let mut keys = Vec::with_capacity(e.measurements.len());
    let mut values = Vec::with_capacity(e.measurements.len());
    for (key, n) in &e.measurements {
        let (k, is_duration) = match key {
            Key::Known(id) => (
                terms.measurement_key(*id).encode(env),
                CATALOG.is_duration(*id),
            ),
            Key::Other(s) => (s.encode(env), false),
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
    e: &ValidEvent,
    ctx: Option<&WorkerContext>,
) -> Term<'a> {
    let n = e.metadata.len() + 6;
    let mut keys = Vec::with_capacity(n);
    let mut values = Vec::with_capacity(n);
    for (key, v) in &e.metadata {
        let k = match key {
            Key::Known(id) => terms.metadata_key(*id).encode(env),
            Key::Other(s) => s.encode(env),
        };
        keys.push(k);
        values.push(v.encode(env));
    }
    put(
        &mut keys,
        &mut values,
        atoms::correlation_id().encode(env),
        opt(env, &e.correlation_id),
    );
    put(
        &mut keys,
        &mut values,
        atoms::timestamp_ns().encode(env),
        opt(env, &e.timestamp_ns),
    );
    if let Some(ctx) = ctx {
        let mut set = |k: rustler::Atom, v: Term<'a>| put(&mut keys, &mut values, k.encode(env), v);
        set(atoms::node(), ctx.node.encode(env));
        set(atoms::worker_id(), ctx.worker_id.encode(env));
        set(atoms::pool_name(), name_term(env, &ctx.pool_name));
        set(atoms::python_pid(), opt(env, &ctx.python_pid));
    }
    map(env, &keys, &values)
}

fn opt<'a, T: Encoder>(env: Env<'a>, v: &Option<T>) -> Term<'a> {
    match v {
        Some(v) => v.encode(env),
        None => atoms::nil().encode(env),
    }
}

/// Sets `key` (replacing a worker-sent entry of the same name).
fn put<'a>(keys: &mut Vec<Term<'a>>, values: &mut Vec<Term<'a>>, key: Term<'a>, value: Term<'a>) {
    match keys.iter().position(|k| *k == key) {
        Some(i) => values[i] = value,
        None => {
            keys.push(key);
            values.push(value);
        }
    }
}

/// Builds a map; keys are unique by construction (validated maps, `put`).
fn map<'a>(env: Env<'a>, keys: &[Term<'a>], values: &[Term<'a>]) -> Term<'a> {
    Term::map_from_term_arrays(env, keys, values).expect("unique keys")
}
