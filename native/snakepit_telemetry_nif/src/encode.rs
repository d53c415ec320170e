//! Encodes a validated event as the three arguments of `:telemetry.execute/3`.
//! Runs once per event on the ingest path: no heap allocation for events of
//! usual size (the key/value arrays live on the stack).
//!
//! Every term built here is checked: a value with no term (a duration that
//! overflows in native units) or a map the BEAM refuses rejects the event
//! with a reason; nothing built from a failed `enif_make_*` is ever returned.

use rustler::{Encoder, Env, Term};
use smallvec::SmallVec;
use snakepit_telemetry_core::validate::{Key, Number, Rejection, ValidEvent};

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
) -> Result<Term<'a>, Rejection> {
    let (n, m, md) = event_terms(env, terms, e, ctx)?;
    Ok(rustler::types::tuple::make_tuple(env, &[n, m, md]))
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
) -> Result<(Term<'a>, Term<'a>, Term<'a>), Rejection> {
    let name = terms.event(e.event).encode(env);
    Ok((
        name,
        measurements(env, terms, e)?,
        metadata(env, terms, e, ctx)?,
    ))
}

/// The worker context as an Erlang term for `pool_name`.
pub fn name_term<'a>(env: Env<'a>, name: &Name) -> Term<'a> {
    match name {
        Name::Atom(a) => a.encode(env),
        Name::Text(s) => s.encode(env),
        Name::Nil => atoms::nil().encode(env),
    }
}

fn measurements<'a>(
    env: Env<'a>,
    terms: &CatalogTerms,
    e: &ValidEvent<'_>,
) -> Result<Term<'a>, Rejection> {
    let mut keys = Entries::new();
    let mut values = Entries::new();
    for (key, n) in &e.measurements {
        let (k, is_duration) = match key {
            Key::Known(id) => (
                terms.measurement_key(*id).encode(env),
                terms.catalog().is_duration(*id),
            ),
            Key::Other(s) => (s.as_ref().encode(env), false),
        };
        let n = if is_duration {
            terms.units().duration(*n)
        } else {
            Some(*n)
        };
        let v = match n {
            Some(Number::Int(i)) => i.encode(env),
            // Validation passes finite floats only; checked again here since
            // a non-finite float has no term (`enif_make_double` fails).
            Some(Number::Float(f)) if f.is_finite() => f.encode(env),
            _ => return Err(Rejection::MeasurementOutOfRange(key_text(terms, key))),
        };
        keys.push(k);
        values.push(v);
    }
    map(env, &keys, &values)
}

fn key_text(terms: &CatalogTerms, key: &Key<'_>) -> String {
    match key {
        Key::Known(id) => terms.catalog().measurement_keys[*id as usize].clone(),
        Key::Other(s) => s.to_string(),
    }
}

fn metadata<'a>(
    env: Env<'a>,
    terms: &CatalogTerms,
    e: &ValidEvent<'_>,
    ctx: Option<&WorkerContext>,
) -> Result<Term<'a>, Rejection> {
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

/// Builds a map. Keys are unique by construction (the parsers keep one
/// value per key, reserved keys are skipped above); should that ever fail,
/// the event is refused instead of the task panicking.
fn map<'a>(env: Env<'a>, keys: &[Term<'a>], values: &[Term<'a>]) -> Result<Term<'a>, Rejection> {
    Term::map_from_term_arrays(env, keys, values).map_err(|_| Rejection::DuplicateKey)
}
