//! The stderr path off the schedulers: a worker's output lines go, raw, over
//! a bounded `crossbeam-channel` to one Rust thread that parses and
//! validates them and delivers batches to the owner (the process reading the
//! worker's port) with credit, as the gRPC path does. The owner's scheduler
//! only copies a line into the channel (`stderr_ingest_push`).
//!
//! Bounds: each ingest may have at most `MAX_QUEUED_LINES` lines and
//! `MAX_QUEUED_BYTES` bytes waiting (a line is cut at one past the line
//! limit: longer is refused from its length anyway); a full queue drops the
//! line and counts it. At most `CREDIT` batches are outstanding per owner;
//! without credit, items wait in the pending batch, at most
//! `MAX_PENDING_ITEMS`, then drop (counted). Message to the owner:
//! `{:snakepit_stderr_batch, id, [item], dropped}`, items in line order:
//! `{:event, name, measurements, metadata} | {:log, line} |
//! {:malformed, reason, message}`; `dropped` counts the items dropped for
//! want of credit since the previous batch.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use once_cell::sync::Lazy;
use rustler::env::SavedTerm;
use rustler::{Atom, Binary, Encoder, Env, LocalPid, OwnedEnv, ResourceArc, Term};
use snakepit_telemetry_core::budget::QueueBudget;
use snakepit_telemetry_core::catalog::CATALOG;
use snakepit_telemetry_core::stderr::{parse_line, StderrLine};

use crate::{atoms, catalog_terms, encode};

const CHANNEL_LINES: usize = 65_536;
const MAX_QUEUED_LINES: usize = 4_096;
const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
const MAX_BATCH: usize = 512;
const MAX_PENDING_ITEMS: usize = 8_192;
const CREDIT: i64 = 4;

mod keys {
    rustler::atoms! {
        snakepit_stderr_batch, event, log, malformed,
        lines, queue_full, backlog_full, batches, closed,
    }
}

/// One owner's ingest: what the thread and the NIF calls share.
pub struct Ingest {
    id: u64,
    owner: LocalPid,
    closed: AtomicBool,
    credit: AtomicI64,
    /// Lines pushed and not yet taken by the thread.
    queued: QueueBudget,
    lines: AtomicU64,
    queue_full: AtomicU64,
    backlog_full: AtomicU64,
    batches: AtomicU64,
    /// `backlog_full` at the last batch sent.
    reported_backlog: AtomicU64,
    /// In the thread's list of ingests to deliver (set by the thread only).
    waiting: AtomicBool,
    /// Touched by the ingest thread only (and never across a send).
    pending: Mutex<Pending>,
}

struct Pending {
    env: OwnedEnv,
    items: Vec<SavedTerm>,
}

/// The resource Elixir holds; the owner is monitored, so the ingest closes
/// when it exits.
pub struct IngestHandle(Arc<Ingest>);

#[rustler::resource_impl]
impl rustler::Resource for IngestHandle {
    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: rustler::Monitor) {
        self.0.closed.store(true, Relaxed);
    }
}

impl Drop for IngestHandle {
    fn drop(&mut self) {
        self.0.closed.store(true, Relaxed);
    }
}

enum Work {
    Line(Arc<Ingest>, Vec<u8>),
    /// Credit came back: deliver what is pending.
    Wake(Arc<Ingest>),
}

static CHANNEL: Lazy<Sender<Work>> = Lazy::new(|| {
    let (tx, rx) = crossbeam_channel::bounded(CHANNEL_LINES);
    std::thread::Builder::new()
        .name("snakepit-stderr".into())
        .spawn(move || run(rx))
        .expect("the stderr ingest thread starts");
    tx
});

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Starts the thread (from the load hook: spawning a thread costs about a
/// millisecond, too long for a NIF call on a scheduler).
pub fn init() {
    Lazy::force(&CHANNEL);
}

/// `{:ok, {id, handle}}`: an ingest delivering to `owner`.
#[rustler::nif]
fn stderr_ingest_start(env: Env, owner: LocalPid) -> (Atom, (u64, ResourceArc<IngestHandle>)) {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StderrIngestStart);
    let id = NEXT_ID.fetch_add(1, Relaxed);
    let ingest = Arc::new(Ingest {
        id,
        owner,
        closed: AtomicBool::new(false),
        credit: AtomicI64::new(CREDIT),
        queued: QueueBudget::new(MAX_QUEUED_LINES, MAX_QUEUED_BYTES),
        lines: AtomicU64::new(0),
        queue_full: AtomicU64::new(0),
        backlog_full: AtomicU64::new(0),
        batches: AtomicU64::new(0),
        reported_backlog: AtomicU64::new(0),
        waiting: AtomicBool::new(false),
        pending: Mutex::new(Pending {
            env: OwnedEnv::new(),
            items: Vec::new(),
        }),
    });
    let handle = ResourceArc::new(IngestHandle(ingest));
    if env.monitor(&handle, &owner).is_none() {
        handle.0.closed.store(true, Relaxed);
    }
    (atoms::ok(), (id, handle))
}

/// Queues one output line: `:ok | {:error, :queue_full}` (the drop is
/// counted). Copies at most one byte past the line limit.
#[rustler::nif]
fn stderr_ingest_push<'a>(
    env: Env<'a>,
    handle: ResourceArc<IngestHandle>,
    line: Binary<'a>,
) -> Term<'a> {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StderrIngestPush);
    let ingest = &handle.0;
    if ingest.closed.load(Relaxed) {
        return (atoms::error(), keys::closed()).encode(env);
    }
    let cut = line.len().min(CATALOG.limits.max_stderr_line_bytes + 1);
    if ingest.queued.try_admit(cut) {
        let work = Work::Line(ingest.clone(), line.as_slice()[..cut].to_vec());
        match CHANNEL.try_send(work) {
            Ok(()) => return atoms::ok().encode(env),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                ingest.queued.release(cut);
            }
        }
    }
    ingest.queue_full.fetch_add(1, Relaxed);
    (atoms::error(), keys::queue_full()).encode(env)
}

/// The owner dispatched `n` batches: credit back, and pending items go out.
#[rustler::nif]
fn stderr_ingest_ack(handle: ResourceArc<IngestHandle>, n: i64) -> Atom {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StderrIngestAck);
    let ingest = &handle.0;
    ingest.credit.fetch_add(n.clamp(0, CREDIT), Relaxed);
    // A lost wake (channel full) is harmless: lines are queued, and the
    // thread delivers after each of them.
    let _ = CHANNEL.try_send(Work::Wake(ingest.clone()));
    atoms::ok()
}

/// `%{lines, queue_full, backlog_full, batches}` of this ingest.
#[rustler::nif]
fn stderr_ingest_stats(env: Env, handle: ResourceArc<IngestHandle>) -> Term {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StderrIngestStats);
    let i = &handle.0;
    let pairs = [
        (keys::lines(), i.lines.load(Relaxed)),
        (keys::queue_full(), i.queue_full.load(Relaxed)),
        (keys::backlog_full(), i.backlog_full.load(Relaxed)),
        (keys::batches(), i.batches.load(Relaxed)),
    ];
    let pairs: Vec<(Term, Term)> = pairs
        .iter()
        .map(|(k, v)| (k.encode(env), v.encode(env)))
        .collect();
    Term::map_from_pairs(env, &pairs).unwrap_or_else(|_| atoms::error().encode(env))
}

/// The ingest thread: parse, validate, encode, deliver.
fn run(rx: Receiver<Work>) {
    // Ingests with items waiting for credit or for the end of a burst.
    let mut waiting: Vec<Arc<Ingest>> = Vec::new();
    while let Ok(work) = rx.recv() {
        let mut next = Some(work);
        while let Some(work) = next.take() {
            match work {
                Work::Line(ingest, line) => {
                    ingest.queued.release(line.len());
                    ingest.lines.fetch_add(1, Relaxed);
                    if take_line(&ingest, &line) >= MAX_BATCH {
                        deliver(&ingest);
                    }
                    remember(&mut waiting, ingest);
                }
                Work::Wake(ingest) => remember(&mut waiting, ingest),
            }
            next = rx.try_recv().ok();
        }
        // A burst is over: deliver what every ingest has, credit allowing.
        waiting.retain(|ingest| {
            let done = deliver(ingest);
            ingest.waiting.store(!done, Relaxed);
            !done
        });
    }
}

fn remember(waiting: &mut Vec<Arc<Ingest>>, ingest: Arc<Ingest>) {
    if !ingest.waiting.swap(true, Relaxed) {
        waiting.push(ingest);
    }
}

/// Adds the line's item to the ingest's pending batch; returns its length.
fn take_line(ingest: &Ingest, line: &[u8]) -> usize {
    let mut pending = ingest.pending.lock().unwrap_or_else(|p| p.into_inner());
    if ingest.closed.load(Relaxed) {
        return 0;
    }
    if pending.items.len() >= MAX_PENDING_ITEMS {
        ingest.backlog_full.fetch_add(1, Relaxed);
        return pending.items.len();
    }
    let saved = pending.env.run(|env| pending.env.save(item(env, line)));
    pending.items.push(saved);
    pending.items.len()
}

fn item<'a>(env: Env<'a>, line: &[u8]) -> Term<'a> {
    let terms = catalog_terms::get();
    let parsed = parse_line(terms.catalog(), line).and_then(|parsed| match parsed {
        StderrLine::NotTelemetry => Ok(None),
        StderrLine::Event(e) => encode::event_terms(env, terms, &e, None).map(Some),
    });
    match parsed {
        Ok(Some((name, measurements, metadata))) => {
            (keys::event(), name, measurements, metadata).encode(env)
        }
        Ok(None) => {
            let mut bin = rustler::NewBinary::new(env, line.len());
            bin.as_mut_slice().copy_from_slice(line);
            (keys::log(), Term::from(bin)).encode(env)
        }
        Err(r) => (keys::malformed(), terms.reason(&r), r.to_string()).encode(env),
    }
}

/// Sends the pending batch if there is one and credit allows; true when
/// nothing is left waiting (sent, empty, or the owner is gone).
fn deliver(ingest: &Ingest) -> bool {
    let mut pending = ingest.pending.lock().unwrap_or_else(|p| p.into_inner());
    if pending.items.is_empty() {
        return true;
    }
    if ingest.closed.load(Relaxed) {
        pending.items.clear();
        pending.env.clear();
        return true;
    }
    if ingest.credit.load(Relaxed) <= 0 {
        return false;
    }
    ingest.credit.fetch_sub(1, Relaxed);
    let Pending { env, items } = &mut *pending;
    let id = ingest.id;
    let backlog = ingest.backlog_full.load(Relaxed);
    let dropped = backlog - ingest.reported_backlog.swap(backlog, Relaxed);
    let sent = env.send_and_clear(&ingest.owner, |env| {
        let list: Vec<Term> = items.iter().map(|t| t.load(env)).collect();
        (keys::snakepit_stderr_batch(), id, list, dropped).encode(env)
    });
    items.clear();
    match sent {
        Ok(()) => {
            ingest.batches.fetch_add(1, Relaxed);
        }
        Err(_) => ingest.closed.store(true, Relaxed),
    }
    true
}
