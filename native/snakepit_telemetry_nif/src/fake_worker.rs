//! A fake worker for the tests of applications (`Snakepit.Test.FakeWorker`):
//! a `BridgeService` on 127.0.0.1 that streams the events a test hands it,
//! honours the controls as a Python worker does (`worker_controls`), reports
//! the running totals, and can be killed. It runs on the NIF's runtime, so a
//! test needs no Python and no other binary. Test-only in spirit, but safe
//! anywhere: it listens on loopback only and every queue is bounded.

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener as StdListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rustler::{Atom, Encoder, Env, NifResult, ResourceArc, Term};
use snakepit_telemetry_core::wire::bridge_service_server::{BridgeService, BridgeServiceServer};
use snakepit_telemetry_core::wire::telemetry_value::Value;
use snakepit_telemetry_core::wire::{
    ExecuteToolRequest, ExecuteToolResponse, PingRequest, PingResponse, TelemetryControl,
    TelemetryEvent, TelemetryEventBatch, TelemetryValue,
};
use snakepit_telemetry_core::worker_controls::{ControlState, Verdict};
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use crate::{atoms, runtime};

/// Events waiting for a stream, at most; more are dropped (and counted).
const MAX_QUEUED: usize = 100_000;
/// Events per batch frame, at most.
const MAX_BATCH: usize = 512;

#[derive(Default)]
struct Totals {
    emitted: u64,
    dropped: u64,
    sampled_out: u64,
    filtered_out: u64,
    disabled: u64,
}

struct Shared {
    queue: Mutex<VecDeque<TelemetryEvent>>,
    notify: Notify,
    controls: Mutex<ControlState>,
    totals: Mutex<Totals>,
    source_id: u64,
    rng: AtomicU64,
    killed: AtomicBool,
    tasks: Mutex<Vec<AbortHandle>>,
    streams: AtomicU64,
}

impl Shared {
    fn track(&self, handle: AbortHandle) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            t.abort();
        }
        self.notify.notify_waiters();
    }

    /// A uniform draw in [0, 1) (xorshift: sampling needs no crypto).
    fn draw(&self) -> f64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Takes up to a batch of events that pass the controls, counting the rest.
    fn take(&self) -> (Vec<TelemetryEvent>, bool) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let controls = self
            .controls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        while out.len() < MAX_BATCH {
            let Some(event) = queue.pop_front() else {
                break;
            };
            let name = event.event_parts.join(".");
            if !controls.enabled {
                totals.disabled += 1;
                continue;
            }
            match controls.verdict(&name) {
                Verdict::Filtered => totals.filtered_out += 1,
                Verdict::Sample(rate) if self.draw() >= rate => totals.sampled_out += 1,
                _ => out.push(event),
            }
        }
        let more = !queue.is_empty();
        (out, more)
    }

    fn totals_now(&self) -> (u64, u64, u64, u64, u64) {
        let t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        (
            t.emitted,
            t.dropped,
            t.sampled_out,
            t.filtered_out,
            t.disabled,
        )
    }

    fn batch(&self, events: Vec<TelemetryEvent>) -> TelemetryEventBatch {
        // Only totals locked here: take() has released the queue by now.
        let t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        TelemetryEventBatch {
            events,
            dropped_total: t.dropped,
            emitted_total: t.emitted,
            sampled_out_total: t.sampled_out,
            filtered_out_total: t.filtered_out,
            disabled_total: t.disabled,
            source_id: self.source_id,
            auth_rejected_total: 0,
        }
    }
}

struct Service(Arc<Shared>);

#[tonic::async_trait]
impl BridgeService for Service {
    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {
            message: format!("Pong: {}", request.into_inner().message),
            server_time: Some(prost_types::Timestamp::from(SystemTime::now())),
        }))
    }

    async fn execute_tool(
        &self,
        _request: Request<ExecuteToolRequest>,
    ) -> Result<Response<ExecuteToolResponse>, Status> {
        Err(Status::unimplemented(
            "a fake worker streams telemetry only",
        ))
    }

    type StreamTelemetryStream = ReceiverStream<Result<TelemetryEvent, Status>>;

    async fn stream_telemetry(
        &self,
        _request: Request<Streaming<TelemetryControl>>,
    ) -> Result<Response<Self::StreamTelemetryStream>, Status> {
        Err(Status::unimplemented(
            "a fake worker serves StreamTelemetryBatched",
        ))
    }

    type StreamTelemetryBatchedStream = ReceiverStream<Result<TelemetryEventBatch, Status>>;

    async fn stream_telemetry_batched(
        &self,
        request: Request<Streaming<TelemetryControl>>,
    ) -> Result<Response<Self::StreamTelemetryBatchedStream>, Status> {
        let shared = self.0.clone();
        shared.streams.fetch_add(1, Ordering::Relaxed);
        let mut controls = request.into_inner();
        let reader_shared = shared.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(c)) = controls.message().await {
                let mut state = reader_shared
                    .controls
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let _ = state.apply(&c);
            }
        });
        shared.track(reader.abort_handle());
        let (tx, rx) = mpsc::channel(4);
        let sender_shared = shared.clone();
        let sender = tokio::spawn(async move {
            let shared = sender_shared;
            let mut sent_totals = None;
            loop {
                // Registered before looking, so an emit in between wakes us.
                let notified = shared.notify.notified();
                let (events, more) = shared.take();
                // Totals that changed go out even when no event passed (as a
                // Python worker's idle batch), so Elixir sees what was dropped.
                let totals = shared.totals_now();
                if (!events.is_empty() || sent_totals != Some(totals))
                    && tx.send(Ok(shared.batch(events))).await.is_err()
                {
                    return;
                }
                sent_totals = Some(totals);
                if shared.killed.load(Ordering::SeqCst) {
                    return;
                }
                if !more {
                    tokio::select! {
                        _ = notified => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        });
        shared.track(sender.abort_handle());
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

pub struct FakeWorkerHandle {
    shared: Arc<Shared>,
}

#[rustler::resource_impl]
impl rustler::Resource for FakeWorkerHandle {}

impl Drop for FakeWorkerHandle {
    fn drop(&mut self) {
        self.shared.kill();
    }
}

/// Starts a fake worker on 127.0.0.1 (an ephemeral port):
/// `{:ok, {port, handle}}`; it stops when killed or when the handle is
/// collected.
#[rustler::nif]
fn fake_worker_start() -> NifResult<(Atom, (u16, ResourceArc<FakeWorkerHandle>))> {
    let listener = StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .map_err(|e| rustler::Error::Term(Box::new(format!("cannot listen: {e}"))))?;
    let port = listener
        .local_addr()
        .map_err(|e| rustler::Error::Term(Box::new(e.to_string())))?
        .port();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut controls = ControlState::default();
    // A Python worker starts on; the stream's opening frames set it anyway.
    controls.enabled = true;
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        notify: Notify::new(),
        controls: Mutex::new(controls),
        totals: Mutex::new(Totals::default()),
        source_id: seed >> 1 | 1,
        rng: AtomicU64::new(seed),
        killed: AtomicBool::new(false),
        tasks: Mutex::new(Vec::new()),
        streams: AtomicU64::new(0),
    });
    let service = Service(shared.clone());
    let server = runtime::get().spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let _ = tonic::transport::Server::builder()
            .add_service(BridgeServiceServer::new(service))
            .serve_with_incoming(incoming)
            .await;
    });
    shared.track(server.abort_handle());
    Ok((
        atoms::ok(),
        (port, ResourceArc::new(FakeWorkerHandle { shared })),
    ))
}

/// Queues one event (Python name, measurements `%{key => number}`,
/// metadata `%{key => string}`, correlation id or `nil`): `:ok`, or
/// `{:error, :killed}`. A full queue drops it (counted in `dropped`).
#[rustler::nif]
fn fake_worker_emit<'a>(
    env: Env<'a>,
    handle: ResourceArc<FakeWorkerHandle>,
    name: String,
    measurements: HashMap<String, Term<'a>>,
    metadata: HashMap<String, String>,
    correlation_id: Option<String>,
) -> NifResult<Term<'a>> {
    let shared = &handle.shared;
    if shared.killed.load(Ordering::SeqCst) {
        return Ok((atoms::error(), atoms::killed()).encode(env));
    }
    let mut values = HashMap::with_capacity(measurements.len());
    for (k, v) in measurements {
        let value = if let Ok(i) = v.decode::<i64>() {
            Value::IntValue(i)
        } else {
            Value::FloatValue(v.decode::<f64>()?)
        };
        values.insert(k, TelemetryValue { value: Some(value) });
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let event = TelemetryEvent {
        event_parts: name.split('.').map(str::to_string).collect(),
        measurements: values,
        metadata,
        timestamp_ns: now,
        correlation_id: correlation_id.unwrap_or_default(),
    };
    {
        // Lock order everywhere: queue, controls, totals.
        let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        let mut totals = shared.totals.lock().unwrap_or_else(|p| p.into_inner());
        totals.emitted += 1;
        if queue.len() >= MAX_QUEUED {
            totals.dropped += 1;
        } else {
            queue.push_back(event);
        }
    }
    shared.notify.notify_waiters();
    Ok(atoms::ok().encode(env))
}

/// What the fake worker has in force and counted: `%{enabled, sampling_rate,
/// emitted, dropped, sampled_out, filtered_out, disabled, queued, streams}`.
#[rustler::nif]
fn fake_worker_state(env: Env, handle: ResourceArc<FakeWorkerHandle>) -> NifResult<Term> {
    let shared = &handle.shared;
    let c = shared
        .controls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let t = shared.totals.lock().unwrap_or_else(|p| p.into_inner());
    let queued = shared.queue.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
    let pairs = [
        (atoms::enabled(), c.enabled.encode(env)),
        (atoms::sampling_rate(), c.sampling_rate.encode(env)),
        (atoms::emitted(), t.emitted.encode(env)),
        (atoms::dropped(), t.dropped.encode(env)),
        (atoms::sampled_out(), t.sampled_out.encode(env)),
        (atoms::filtered_out(), t.filtered_out.encode(env)),
        (atoms::disabled(), t.disabled.encode(env)),
        (atoms::queued(), queued.encode(env)),
        (
            atoms::streams(),
            shared.streams.load(Ordering::Relaxed).encode(env),
        ),
        (
            atoms::killed(),
            shared.killed.load(Ordering::SeqCst).encode(env),
        ),
    ];
    let mut map = Term::map_new(env);
    for (k, v) in pairs {
        map = map.map_put(k, v)?;
    }
    Ok(map)
}

/// Kills it: the listener closes and every open stream ends at once.
#[rustler::nif]
fn fake_worker_kill(handle: ResourceArc<FakeWorkerHandle>) -> Atom {
    handle.shared.kill();
    atoms::ok()
}
