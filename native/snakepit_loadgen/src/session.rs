//! One telemetry stream: a task that reads control frames, runs the
//! generator and forwards the queue to the response stream, then logs what
//! happened. Either side ending closes both (as in the Python worker).

use std::sync::Arc;

use snakepit_telemetry_core::wire::{TelemetryControl, TelemetryEvent, TelemetryEventBatch};
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};

use crate::config::Config;
use crate::control::ControlState;
use crate::frame::{message_batch, EncodedBatch};
use crate::generator::{EventPool, Generator, Stamped};
use crate::producer::{End, Producer};
use crate::queue::EventQueue;
use crate::stats::{ServerTotals, StreamStats};

/// What every stream of a server shares.
#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub pool: Arc<EventPool>,
    pub totals: Arc<ServerTotals>,
    /// Becomes true when the server shuts down: every stream ends.
    pub shutdown: watch::Receiver<bool>,
}

/// Where a stream's events go.
pub enum Sink {
    /// The batched RPC, frames encoded from the templates' bytes (`serve`).
    Encoded(mpsc::Sender<Result<EncodedBatch, Status>>),
    /// The batched RPC, frames built as messages (the generated server).
    Batched(mpsc::Sender<Result<TelemetryEventBatch, Status>>),
    /// The stock RPC, one event per frame.
    Single(mpsc::Sender<Result<TelemetryEvent, Status>>),
}

impl Sink {
    fn kind(&self) -> &'static str {
        match self {
            Sink::Encoded(_) | Sink::Batched(_) => "batched",
            Sink::Single(_) => "stock",
        }
    }

    /// Sends one batch of events; false when the client is gone.
    async fn send(&self, pool: &EventPool, events: &[Stamped], stats: &StreamStats) -> bool {
        match self {
            Sink::Encoded(tx) => {
                let frame = EncodedBatch::new(pool, events, &stats.snapshot());
                tx.send(Ok(frame)).await.is_ok()
            }
            Sink::Batched(tx) => {
                let frame = message_batch(pool, events, &stats.snapshot());
                tx.send(Ok(frame)).await.is_ok()
            }
            Sink::Single(tx) => {
                for s in events {
                    if tx.send(Ok(pool.event(*s))).await.is_err() {
                        return false;
                    }
                }
                true
            }
        }
    }
}

/// Starts a stream's task; events go to `sink` until either side ends.
pub fn spawn(ctx: Arc<Context>, requests: Streaming<TelemetryControl>, sink: Sink) {
    let id = ctx.totals.open_stream();
    eprintln!("loadgen: stream {id} ({}) opened", sink.kind());
    tokio::spawn(run(id, ctx, requests, sink));
}

async fn run(id: u64, ctx: Arc<Context>, requests: Streaming<TelemetryControl>, sink: Sink) {
    let cfg = &ctx.config;
    let kind = sink.kind();
    let queue = Arc::new(EventQueue::new(cfg.queue_capacity));
    // Unique across streams and (by the pid) across load generator restarts.
    let source_id = (u64::from(std::process::id()) << 32) | id;
    let stats = Arc::new(StreamStats::new(source_id));
    let stream_seed = cfg.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let generator = Generator::new(ctx.pool.clone(), stream_seed, cfg.invalid_ratio);
    let producer = Producer::new(
        generator,
        !stream_seed,
        queue.clone(),
        stats.clone(),
        cfg.rate,
        cfg.total,
    );
    let mut initial = ControlState::default();
    initial.ignore_sampling_patterns = cfg.reference_sampling;
    let (control_tx, control_rx) = watch::channel(initial);
    let mut shutdown = ctx.shutdown.clone();

    let forward = forward(&ctx.pool, &queue, &stats, sink, cfg.batch);
    tokio::pin!(forward);
    let mut forwarded = false;
    let reason = tokio::select! {
        r = read_controls(id, requests, control_tx) => r,
        end = producer.run(control_rx) => match end {
            End::TotalReached => "total reached".to_string(),
            End::Closed => "client went away".to_string(),
        },
        _ = shutdown.wait_for(|down| *down) => "server shutting down".to_string(),
        _ = &mut forward => {
            forwarded = true;
            "client went away".to_string()
        }
    };
    // Deliver what is queued, then end the response stream (status OK).
    queue.close();
    if !forwarded {
        forward.await;
    }
    let counts = stats.snapshot();
    eprintln!("loadgen: stream {id} ({kind}) closed ({reason}): {counts}");
    ctx.totals.finish_stream(&counts);
}

/// Applies control frames until the client closes its side or fails.
async fn read_controls(
    id: u64,
    mut requests: Streaming<TelemetryControl>,
    control: watch::Sender<ControlState>,
) -> String {
    loop {
        match requests.message().await {
            Ok(Some(frame)) => {
                let mut outcome = Ok(());
                control.send_modify(|state| outcome = state.apply(&frame));
                match outcome {
                    Ok(()) => eprintln!("loadgen: stream {id} control {:?}", frame.control),
                    Err(why) => eprintln!("loadgen: stream {id} ignored a control frame: {why}"),
                }
            }
            Ok(None) => return "client closed its control stream".to_string(),
            Err(status) => return format!("control stream failed: {}", status.message()),
        }
    }
}

/// Moves queued events to the response stream, in frames of up to `batch`
/// events (batched) or one by one (stock). Closes the queue when the client
/// stops taking them so the generator ends too. Once the queue is drained, a
/// batched stream gets one frame without events carrying the final totals:
/// the last events counted may have been filtered or sampled out, which no
/// event frame would report.
async fn forward(
    pool: &EventPool,
    queue: &EventQueue,
    stats: &StreamStats,
    sink: Sink,
    batch: usize,
) {
    while let Some(events) = queue.pop_batch(batch).await {
        if !sink.send(pool, &events, stats).await {
            queue.close();
            return;
        }
        stats.record_sent(events.len() as u64);
    }
    // The stock RPC has no totals: nothing is sent for it.
    sink.send(pool, &[], stats).await;
}
