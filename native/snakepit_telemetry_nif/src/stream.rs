//! Stream handles: a `ResourceArc` per registered worker. The handle owns the
//! sending side of the task's control channel; closing it (explicit stop,
//! the owner process exiting, or the BEAM collecting the handle) ends the
//! task. The owner is monitored by the resource itself, so a task never
//! outlives its owner even while some other heap (an exit reason, a crash
//! report) still references the handle.
//! No call here blocks: it spawns, sends with `try_send`, or reads atomics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustler::{Atom, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};
use snakepit_telemetry_core::lifecycle::{StreamState, TaskEnd};
use snakepit_telemetry_core::validate::Rejection;
use snakepit_telemetry_core::wire::TelemetryControl;
use tokio::sync::{mpsc, Semaphore};

use crate::config::StreamConfig;
use crate::dispatch::Dispatcher;
use crate::ingest::{self, Shared};
use crate::stats::StreamStats;
use crate::{atoms, control, runtime};

pub struct StreamHandle {
    id: u64,
    controls: Mutex<Option<mpsc::Sender<TelemetryControl>>>,
    shared: Arc<Shared>,
}

impl StreamHandle {
    /// Closes the control channel: the task ends at its next await.
    fn close(&self) {
        // A poisoned lock still holds the sender: take it all the same.
        let mut guard = self.controls.lock().unwrap_or_else(|p| p.into_inner());
        guard.take();
    }
}

#[rustler::resource_impl]
impl rustler::Resource for StreamHandle {
    /// The owner exited (any reason): end the stream.
    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: rustler::Monitor) {
        self.close();
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Stream tasks currently running (started and not yet ended).
static RUNNING: AtomicU64 = AtomicU64::new(0);

/// Starts a stream task for `opts` delivering to `owner`; `{:ok, {id, handle}}`.
#[rustler::nif]
fn stream_start(
    env: Env,
    opts: Term,
    owner: LocalPid,
) -> NifResult<(Atom, (u64, ResourceArc<StreamHandle>))> {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StreamStart);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let cfg = StreamConfig::decode(env, id, opts)?;
    let (tx, rx) = mpsc::channel(64);
    let shared = Arc::new(Shared {
        stats: StreamStats::default(),
        credit: Semaphore::new(cfg.credit),
    });
    RUNNING.fetch_add(1, Ordering::Relaxed);
    let task = runtime::get().spawn(ingest::run(cfg, shared.clone(), rx, owner));
    // A panicking task must not vanish silently: tell the owner why it ended.
    runtime::get().spawn(async move {
        let ended = task.await;
        RUNNING.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = ended {
            let why = match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into()),
                Err(e) => e.to_string(),
            };
            Dispatcher::new(owner, id).send_ended(&TaskEnd::Panic(why));
        }
    });
    let handle = ResourceArc::new(StreamHandle {
        id,
        controls: Mutex::new(Some(tx)),
        shared,
    });
    // No monitor means the owner is already gone: the task ends at once.
    if env.monitor(&handle, &owner).is_none() {
        handle.close();
    }
    Ok((atoms::ok(), (id, handle)))
}

/// Ends the stream's task (idempotent).
#[rustler::nif]
fn stream_stop(handle: ResourceArc<StreamHandle>) -> Atom {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StreamStop);
    handle.close();
    atoms::ok()
}

/// Queues a control frame: `:ok | {:error, :control_queue_full | :stream_stopped}`.
#[rustler::nif]
fn stream_control<'a>(
    env: Env<'a>,
    handle: ResourceArc<StreamHandle>,
    control: Term<'a>,
) -> NifResult<Term<'a>> {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StreamControl);
    let frame = control::decode(control)?;
    let guard = handle.controls.lock().unwrap_or_else(|p| p.into_inner());
    let result = match guard.as_ref().map(|tx| tx.try_send(frame)) {
        Some(Ok(())) => atoms::ok().encode(env),
        Some(Err(mpsc::error::TrySendError::Full(_))) => {
            (atoms::error(), atoms::control_queue_full()).encode(env)
        }
        Some(Err(mpsc::error::TrySendError::Closed(_))) | None => {
            (atoms::error(), atoms::stream_stopped()).encode(env)
        }
    };
    Ok(result)
}

/// Returns `n` batches of credit: the owner has dispatched them.
#[rustler::nif]
fn stream_ack(handle: ResourceArc<StreamHandle>, n: usize) -> Atom {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StreamAck);
    handle.shared.credit.add_permits(n.min(1024));
    atoms::ok()
}

/// Keys and states of `stream_stats`, made once at load: the call itself
/// never touches the atom table.
mod keys {
    rustler::atoms! {
        id, state, rpc, frames, bytes, events_received, events_delivered, batches,
        rejected, rejected_by_reason, connects, reconnects, python_dropped,
        python_emitted, python_sampled_out, python_filtered_out, python_disabled,
        python_lost, python_totals, python_auth_rejected, credit_waits, controls_sent, last_error,
        nif_sampled_out, sampling_applied_by, nif, worker,
        connecting, open, backoff, ended,
    }
}

fn state_atom(state: StreamState) -> Atom {
    match state {
        StreamState::Connecting => keys::connecting(),
        StreamState::Open => keys::open(),
        StreamState::Backoff => keys::backoff(),
        StreamState::Ended => keys::ended(),
    }
}

/// The stream's counters and state as a map.
#[rustler::nif]
fn stream_stats<'a>(env: Env<'a>, handle: ResourceArc<StreamHandle>) -> NifResult<Term<'a>> {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StreamStats);
    let s = &handle.shared.stats;
    let g = StreamStats::get;
    let terms = crate::catalog_terms::get();
    let mut rejected_total: u64 = 0;
    let mut rejected: Vec<(Term, Term)> = Vec::new();
    for (reason, n) in Rejection::REASONS.iter().zip(&s.rejected) {
        let n = g(n);
        if n > 0 {
            rejected_total = rejected_total.saturating_add(n);
            rejected.push((terms.reason_named(reason).encode(env), n.encode(env)));
        }
    }
    let last_error = s
        .last_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let (python, lost, reported) = s.sources.lock().unwrap_or_else(|p| p.into_inner()).totals();
    let state = s.state();
    let rpc = *s.rpc.lock().unwrap_or_else(|p| p.into_inner());
    let k = |a: Atom| a.encode(env);
    let pairs: Vec<(Term, Term)> = vec![
        (k(keys::id()), handle.id.encode(env)),
        (k(keys::state()), state_atom(state).encode(env)),
        (k(keys::rpc()), rpc.encode(env)),
        (k(keys::frames()), g(&s.frames).encode(env)),
        (k(keys::bytes()), g(&s.bytes).encode(env)),
        (
            k(keys::events_received()),
            g(&s.events_received).encode(env),
        ),
        (
            k(keys::events_delivered()),
            g(&s.events_delivered).encode(env),
        ),
        (k(keys::batches()), g(&s.batches_sent).encode(env)),
        (k(keys::rejected()), rejected_total.encode(env)),
        (
            k(keys::rejected_by_reason()),
            Term::map_from_pairs(env, &rejected)?,
        ),
        (k(keys::connects()), g(&s.connects).encode(env)),
        (k(keys::reconnects()), g(&s.reconnects).encode(env)),
        (k(keys::python_dropped()), python.dropped.encode(env)),
        (k(keys::python_emitted()), python.emitted.encode(env)),
        (
            k(keys::python_sampled_out()),
            python.sampled_out.encode(env),
        ),
        (
            k(keys::python_filtered_out()),
            python.filtered_out.encode(env),
        ),
        (k(keys::python_disabled()), python.disabled.encode(env)),
        (k(keys::python_lost()), lost.encode(env)),
        (
            k(keys::python_auth_rejected()),
            python.auth_rejected.encode(env),
        ),
        (k(keys::python_totals()), reported.encode(env)),
        (k(keys::credit_waits()), g(&s.credit_waits).encode(env)),
        (k(keys::controls_sent()), g(&s.controls_sent).encode(env)),
        (
            k(keys::nif_sampled_out()),
            g(&s.nif_sampled_out).encode(env),
        ),
        (
            k(keys::sampling_applied_by()),
            if s.nif_samples.load(Ordering::Relaxed) {
                k(keys::nif())
            } else {
                k(keys::worker())
            },
        ),
        (k(keys::last_error()), last_error.encode(env)),
    ];
    Term::map_from_pairs(env, &pairs)
}

/// How many stream tasks are running in this VM (all owners).
#[rustler::nif]
fn streams_running() -> u64 {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StreamsRunning);
    RUNNING.load(Ordering::Relaxed)
}
