//! Sends ready-made terms from a stream task to the owning Elixir process.
//! Runs only on the runtime's threads (`OwnedEnv::send_and_clear` refuses
//! scheduler threads). Events are turned into terms as they are validated,
//! while the frame they borrow from is at hand, in the batch's own
//! `OwnedEnv`; status messages use another, so neither clears the other.

use rustler::sys::ErlNifTerm;
use rustler::{Atom, Encoder, Env, LocalPid, OwnedEnv, Term};
use snakepit_telemetry_core::lifecycle::{Status, StatusValue, TaskEnd};
use snakepit_telemetry_core::validate::{Rejection, ValidEvent};

use crate::config::WorkerContext;
use crate::{atoms, catalog_terms, encode};

/// The owner is gone: the stream has nobody to deliver to.
#[derive(Debug)]
pub struct OwnerGone;

pub struct Dispatcher {
    owner: LocalPid,
    env: OwnedEnv,
    stream_id: u64,
    batch: Batch,
}

/// The events of the next batch message, already terms of `env`; `events`
/// and `cache` are emptied whenever `env` is cleared (their terms die with
/// it), which only `send_batch` does.
struct Batch {
    env: OwnedEnv,
    events: Vec<ErlNifTerm>,
    cache: encode::BatchCache,
}

impl Dispatcher {
    pub fn new(owner: LocalPid, stream_id: u64) -> Self {
        Dispatcher {
            owner,
            env: OwnedEnv::new(),
            stream_id,
            batch: Batch {
                env: OwnedEnv::new(),
                events: Vec::new(),
                cache: encode::BatchCache::default(),
            },
        }
    }

    /// Adds an event to the next batch, or says why it has no terms.
    pub fn push(&mut self, e: &ValidEvent<'_>, ctx: &WorkerContext) -> Result<(), Rejection> {
        let batch = &mut self.batch;
        let terms = catalog_terms::get();
        let cache = &mut batch.cache;
        let event = batch.env.run(|env| {
            encode::event_tuple(env, terms, e, ctx, cache).map(|tuple| tuple.as_c_arg())
        })?;
        batch.events.push(event);
        Ok(())
    }

    /// Events waiting for `send_batch`.
    pub fn pending(&self) -> usize {
        self.batch.events.len()
    }

    /// `{:snakepit_telemetry_batch, stream_id, [{event, measurements, metadata}, ...]}`
    /// with the events pushed since the last one.
    pub fn send_batch(&mut self) -> Result<(), OwnerGone> {
        let id = self.stream_id;
        let batch = &mut self.batch;
        let events = &batch.events;
        let sent = batch.env.send_and_clear(&self.owner, |env| {
            // SAFETY: made in this env since its last clear (see `Batch`).
            let list: Vec<Term> = events
                .iter()
                .map(|t| unsafe { Term::new(env, *t) })
                .collect();
            (atoms::snakepit_telemetry_batch(), id, list).encode(env)
        });
        batch.events.clear();
        batch.cache.clear();
        sent.map_err(|_| OwnerGone)
    }

    /// `{:snakepit_telemetry_status, stream_id, event, measurements, metadata}`
    pub fn send_status(&mut self, status: &Status, ctx: &WorkerContext) -> Result<(), OwnerGone> {
        let id = self.stream_id;
        self.env
            .send_and_clear(&self.owner, |env| {
                let event = status_event(env, status.event);
                let m: Vec<(Atom, i64)> = status
                    .measurements
                    .iter()
                    .map(|&(k, v)| (atom(env, k), v))
                    .collect();
                let mut md: Vec<(Term, Term)> = vec![
                    (atoms::node().encode(env), ctx.node.encode(env)),
                    (atoms::worker_id().encode(env), ctx.worker_id.encode(env)),
                    (atoms::stream_id().encode(env), id.to_string().encode(env)),
                ];
                for (k, v) in &status.metadata {
                    let v = match v {
                        StatusValue::Text(s) => s.as_ref().encode(env),
                        StatusValue::Int(i) => i.encode(env),
                        StatusValue::Nil => atoms::nil().encode(env),
                    };
                    md.push((atom(env, k).encode(env), v));
                }
                let m = Term::map_from_pairs(env, &m).expect("unique keys");
                let md = Term::map_from_pairs(env, &md).expect("unique keys");
                (atoms::snakepit_telemetry_status(), id, event, m, md).encode(env)
            })
            .map_err(|_| OwnerGone)
    }

    /// `{:snakepit_telemetry_ended, stream_id, reason}`, the task's last
    /// word: `:stopped`, `:owner_down` or `{:panic, message}`.
    pub fn send_ended(&mut self, end: &TaskEnd) {
        let id = self.stream_id;
        let _ = self.env.send_and_clear(&self.owner, |env| {
            let reason = match end {
                TaskEnd::Stopped => atoms::stopped().encode(env),
                TaskEnd::OwnerDown => atoms::owner_down().encode(env),
                TaskEnd::Panic(why) => (atoms::panic(), why.as_str()).encode(env),
            };
            (atoms::snakepit_telemetry_ended(), id, reason).encode(env)
        });
    }
}

/// Status keys are fixed literals of this crate that are also catalog keys.
fn atom<'a>(env: Env<'a>, name: &'static str) -> Atom {
    Atom::from_str(env, name).expect("a literal atom")
}

fn status_event<'a>(env: Env<'a>, dotted: &'static str) -> Term<'a> {
    let parts: Vec<Atom> = ["snakepit", "grpc"]
        .into_iter()
        .chain(dotted.split('.'))
        .map(|p| atom(env, p))
        .collect();
    parts.encode(env)
}
