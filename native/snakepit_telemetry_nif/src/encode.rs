//! Encodes a validated event as the three arguments of `:telemetry.execute/3`.
//! Runs once per event on the ingest path: no heap allocation for events of
//! usual size (the key/value arrays live on the stack), map keys handed to
//! the BEAM already in term order (its insertion sort then only checks), and
//! with a [`BatchCache`] the terms every event of a batch shares (event
//! names, the worker context) built once per batch.
//!
//! Every term built here is checked: a value with no term (a duration that
//! overflows in native units) or a map the BEAM refuses rejects the event
//! with a reason; nothing built from a failed `enif_make_*` is ever returned.

use std::mem::MaybeUninit;

use rustler::sys::ErlNifTerm;
use rustler::{Encoder, Env, Term};
use smallvec::SmallVec;
use snakepit_telemetry_core::validate::{Key, Number, Rejection, ValidEvent};

use crate::atoms;
use crate::catalog_terms::{CatalogTerms, Reserved};
use crate::config::{Name, WorkerContext};

/// Map entries kept on the stack (metadata: the event's plus six set here):
/// `(place in term order, key, value)`.
type Entries = SmallVec<[(u32, ErlNifTerm, ErlNifTerm); 16]>;

/// The place of a binary (non-catalog) key: after every atom, as in the
/// BEAM's term order; the BEAM orders binary keys among themselves.
const BINARY_KEY: u32 = u32::MAX;

/// Terms shared by the events of one batch, valid as long as the
/// environment they were made in: [`BatchCache::clear`] must be called
/// whenever that environment is cleared.
#[derive(Default)]
pub struct BatchCache {
    names: Vec<Option<ErlNifTerm>>,
    /// `node`, `worker_id`, `pool_name`, `python_pid` of the stream.
    context: Option<[ErlNifTerm; 4]>,
}

impl BatchCache {
    /// Forgets every term (their environment was cleared).
    pub fn clear(&mut self) {
        self.names.iter_mut().for_each(|n| *n = None);
        self.context = None;
    }
}

/// `{event_name, measurements, metadata}` as a tuple.
/// `cache` holds terms made in `env` only (see [`BatchCache`]).
pub fn event_tuple<'a>(
    env: Env<'a>,
    terms: &CatalogTerms,
    e: &ValidEvent<'_>,
    ctx: &WorkerContext,
    cache: &mut BatchCache,
) -> Result<Term<'a>, Rejection> {
    let name = cached_name(env, terms, e, cache);
    let context = cached_context(env, ctx, cache);
    let m = measurements(env, terms, e)?;
    let md = metadata(env, terms, e, Some(context))?;
    Ok(rustler::types::tuple::make_tuple(env, &[name, m, md]))
}

fn cached_name<'a>(
    env: Env<'a>,
    terms: &CatalogTerms,
    e: &ValidEvent<'_>,
    cache: &mut BatchCache,
) -> Term<'a> {
    let id = e.event as usize;
    if cache.names.len() <= id {
        cache.names.resize(id + 1, None);
    }
    match cache.names[id] {
        // SAFETY: made in `env` since its last clear (the cache's contract).
        Some(raw) => unsafe { Term::new(env, raw) },
        None => {
            let name = terms.event(e.event).encode(env);
            cache.names[id] = Some(name.as_c_arg());
            name
        }
    }
}

fn cached_context(env: Env<'_>, ctx: &WorkerContext, cache: &mut BatchCache) -> [ErlNifTerm; 4] {
    *cache.context.get_or_insert_with(|| context_terms(env, ctx))
}

/// `node`, `worker_id`, `pool_name`, `python_pid`.
fn context_terms(env: Env<'_>, ctx: &WorkerContext) -> [ErlNifTerm; 4] {
    [
        ctx.node.encode(env).as_c_arg(),
        ctx.worker_id.encode(env).as_c_arg(),
        name_term(env, &ctx.pool_name).as_c_arg(),
        opt(env, ctx.python_pid).as_c_arg(),
    ]
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
    let context = ctx.map(|ctx| context_terms(env, ctx));
    Ok((
        name,
        measurements(env, terms, e)?,
        metadata(env, terms, e, context)?,
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
    let mut entries = Entries::new();
    for (key, n) in &e.measurements {
        let (place, k, is_duration) = match key {
            Key::Known(id) => (
                terms.measurement_order(*id),
                terms.measurement_key(*id).encode(env),
                terms.catalog().is_duration(*id),
            ),
            Key::Other(s) => (BINARY_KEY, s.as_ref().encode(env), false),
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
        entries.push((place, k.as_c_arg(), v.as_c_arg()));
    }
    map(env, &mut entries)
}

fn key_text(terms: &CatalogTerms, key: &Key<'_>) -> String {
    match key {
        Key::Known(id) => terms.catalog().measurement_keys[*id as usize].clone(),
        Key::Other(s) => s.to_string(),
    }
}

/// `context`: the worker's `node`, `worker_id`, `pool_name`, `python_pid`.
fn metadata<'a>(
    env: Env<'a>,
    terms: &CatalogTerms,
    e: &ValidEvent<'_>,
    context: Option<[ErlNifTerm; 4]>,
) -> Result<Term<'a>, Rejection> {
    let mut entries = Entries::new();
    for (key, v) in &e.metadata {
        let (place, k) = match key {
            Key::Known(id) => match terms.reserved(*id) {
                Reserved::Always => continue,
                Reserved::WithContext if context.is_some() => continue,
                _ => (
                    terms.metadata_order(*id),
                    terms.metadata_key(*id).encode(env),
                ),
            },
            Key::Other(s) => (BINARY_KEY, s.as_ref().encode(env)),
        };
        entries.push((place, k.as_c_arg(), v.as_ref().encode(env).as_c_arg()));
    }
    let mut set = |k: rustler::Atom, v: ErlNifTerm| {
        entries.push((terms.atom_order(k), k.encode(env).as_c_arg(), v));
    };
    set(
        atoms::correlation_id(),
        opt(env, e.correlation_id.as_deref()).as_c_arg(),
    );
    set(atoms::timestamp_ns(), opt(env, e.timestamp_ns).as_c_arg());
    if let Some([node, worker_id, pool_name, python_pid]) = context {
        set(atoms::node(), node);
        set(atoms::worker_id(), worker_id);
        set(atoms::pool_name(), pool_name);
        set(atoms::python_pid(), python_pid);
    }
    map(env, &mut entries)
}

fn opt<T: Encoder>(env: Env<'_>, v: Option<T>) -> Term<'_> {
    match v {
        Some(v) => v.encode(env),
        None => atoms::nil().encode(env),
    }
}

/// Builds a map. Keys are unique by construction (the parsers keep one
/// value per key, reserved keys are skipped above); should that ever fail,
/// the event is refused instead of the task panicking. The entries are put
/// in term order first (no allocation, O(n log n) whatever order a worker
/// sends; binary keys share one place and the BEAM orders them).
fn map<'a>(env: Env<'a>, entries: &mut Entries) -> Result<Term<'a>, Rejection> {
    entries.sort_unstable_by_key(|entry| entry.0);
    let keys: SmallVec<[ErlNifTerm; 16]> = entries.iter().map(|e| e.1).collect();
    let values: SmallVec<[ErlNifTerm; 16]> = entries.iter().map(|e| e.2).collect();
    let mut out = MaybeUninit::uninit();
    // SAFETY: `keys` and `values` are terms of `env`, of the same length;
    // `out` is read only when the call says it wrote a map.
    let made = unsafe {
        rustler::sys::enif_make_map_from_arrays(
            env.as_c_arg(),
            keys.as_ptr(),
            values.as_ptr(),
            keys.len(),
            out.as_mut_ptr(),
        )
    };
    if made == 0 {
        return Err(Rejection::DuplicateKey);
    }
    // SAFETY: written by the successful call above, a term of `env`.
    Ok(unsafe { Term::new(env, out.assume_init()) })
}
