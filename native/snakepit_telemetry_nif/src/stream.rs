//! Stream handles: a `ResourceArc` per registered worker. The handle owns the
//! sending side of the task's control channel; dropping the handle (explicit
//! stop, or the BEAM collecting it) closes that channel and the task ends.
//! No call here blocks: it spawns, sends with `try_send`, or reads atomics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustler::{Atom, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};
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

#[rustler::resource_impl]
impl rustler::Resource for StreamHandle {}

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
            Dispatcher::new(owner, id).send_ended(&format!("panic: {why}"));
        }
    });
    let handle = StreamHandle {
        id,
        controls: Mutex::new(Some(tx)),
        shared,
    };
    Ok((atoms::ok(), (id, ResourceArc::new(handle))))
}

/// Ends the stream's task (idempotent).
#[rustler::nif]
fn stream_stop(handle: ResourceArc<StreamHandle>) -> Atom {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StreamStop);
    handle.controls.lock().unwrap().take();
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
    let guard = handle.controls.lock().unwrap();
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

/// The stream's counters and state as a map.
#[rustler::nif]
fn stream_stats<'a>(env: Env<'a>, handle: ResourceArc<StreamHandle>) -> NifResult<Term<'a>> {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StreamStats);
    let s = &handle.shared.stats;
    let g = StreamStats::get;
    let rejected: Vec<(Atom, u64)> = Rejection::REASONS
        .iter()
        .zip(&s.rejected)
        .filter(|(_, n)| g(n) > 0)
        .map(|(r, n)| Ok((Atom::from_str(env, r)?, g(n))))
        .collect::<NifResult<_>>()?;
    let rejected_total: u64 = rejected.iter().map(|(_, n)| n).sum();
    let last_error = s.last_error.lock().unwrap().clone();
    let (python, lost) = s.sources.lock().unwrap().totals();
    let pairs: Vec<(Term, Term)> = vec![
        (key(env, "id"), handle.id.encode(env)),
        (
            key(env, "state"),
            Atom::from_str(env, *s.state.lock().unwrap())?.encode(env),
        ),
        (key(env, "rpc"), s.rpc.lock().unwrap().encode(env)),
        (key(env, "frames"), g(&s.frames).encode(env)),
        (key(env, "bytes"), g(&s.bytes).encode(env)),
        (
            key(env, "events_received"),
            g(&s.events_received).encode(env),
        ),
        (
            key(env, "events_delivered"),
            g(&s.events_delivered).encode(env),
        ),
        (key(env, "batches"), g(&s.batches_sent).encode(env)),
        (key(env, "rejected"), rejected_total.encode(env)),
        (
            key(env, "rejected_by_reason"),
            Term::map_from_pairs(env, &rejected)?,
        ),
        (key(env, "connects"), g(&s.connects).encode(env)),
        (key(env, "reconnects"), g(&s.reconnects).encode(env)),
        (key(env, "python_dropped"), python.dropped.encode(env)),
        (key(env, "python_emitted"), python.emitted.encode(env)),
        (
            key(env, "python_sampled_out"),
            python.sampled_out.encode(env),
        ),
        (
            key(env, "python_filtered_out"),
            python.filtered_out.encode(env),
        ),
        (key(env, "python_disabled"), python.disabled.encode(env)),
        (key(env, "python_lost"), lost.encode(env)),
        (key(env, "credit_waits"), g(&s.credit_waits).encode(env)),
        (key(env, "controls_sent"), g(&s.controls_sent).encode(env)),
        (key(env, "last_error"), last_error.encode(env)),
    ];
    Term::map_from_pairs(env, &pairs)
}

/// Stats keys are literals of this file.
fn key<'a>(env: Env<'a>, name: &str) -> Term<'a> {
    Atom::from_str(env, name)
        .expect("a literal atom")
        .encode(env)
}

/// How many stream tasks are running in this VM (all owners).
#[rustler::nif]
fn streams_running() -> u64 {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StreamsRunning);
    RUNNING.load(Ordering::Relaxed)
}
