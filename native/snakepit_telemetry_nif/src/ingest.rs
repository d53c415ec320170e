//! One task per registered worker: connect, open the telemetry stream, read
//! frames, validate, batch and deliver them with credit; reconnect with
//! backoff while the handle lives.
//!
//! Flow control: at most `credit` batches are outstanding at the owner. With
//! no credit left the task stops reading, so HTTP/2 flow control pushes back
//! to the worker, whose bounded queue drops and counts.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rustler::LocalPid;
use snakepit_telemetry_core::lifecycle::{Disconnect, Status, StreamState, TaskEnd};
use snakepit_telemetry_core::local_sampling::{for_peer, Local, LocalSampling};
use snakepit_telemetry_core::raw_frames::RawFrames;
use snakepit_telemetry_core::reconnect::Backoff;
use snakepit_telemetry_core::scan::{split_batch, EventScratch};
use snakepit_telemetry_core::validate::Rejection;
use snakepit_telemetry_core::wire::TelemetryControl;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, IntoStreamingRequest, Streaming};

use crate::auth::Bearer;
use crate::catalog_terms;
use crate::config::{RpcChoice, StreamConfig};
use crate::dispatch::{Dispatcher, OwnerGone};
use crate::stats::StreamStats;
use snakepit_telemetry_core::settings::Settings;

/// State shared between the task and its handle.
pub struct Shared {
    pub stats: StreamStats,
    pub credit: Semaphore,
}

/// An open telemetry stream: raw frames, decoded by `scan` in `ingest`
/// (stock RPC: a frame is one `TelemetryEvent`; else a `TelemetryEventBatch`).
struct Incoming {
    frames: Streaming<Bytes>,
}

impl Incoming {
    /// Cancel-safe: `Streaming::message` keeps no state in its future.
    async fn next(&mut self) -> Result<Option<Bytes>, tonic::Status> {
        self.frames.message().await
    }
}

const STOCK_PATH: &str = "/snakepit.bridge.BridgeService/StreamTelemetry";
const BATCHED_PATH: &str = "/snakepit.bridge.BridgeService/StreamTelemetryBatched";

/// Why the task stopped.
enum Stop {
    /// The handle was dropped or stopped.
    Stopped,
    OwnerGone,
}

impl From<OwnerGone> for Stop {
    fn from(_: OwnerGone) -> Self {
        Stop::OwnerGone
    }
}

struct Task {
    cfg: StreamConfig,
    shared: Arc<Shared>,
    controls: mpsc::Receiver<TelemetryControl>,
    dispatcher: Dispatcher,
    settings: Settings,
    use_stock: bool,
    /// Pattern sampling applied here for a stock peer (see `local_sampling`).
    local: Option<LocalSampling>,
    /// xorshift state for `local`'s draws.
    rng: u64,
}

/// Runs a stream until its handle goes away or its owner dies.
pub async fn run(
    cfg: StreamConfig,
    shared: Arc<Shared>,
    controls: mpsc::Receiver<TelemetryControl>,
    owner: LocalPid,
) {
    let mut task = Task {
        dispatcher: Dispatcher::new(owner, cfg.stream_id),
        use_stock: cfg.rpc == RpcChoice::Stock,
        settings: Settings::default(),
        local: None,
        rng: seed(cfg.stream_id),
        cfg,
        shared,
        controls,
    };
    let end = match task.supervise().await {
        Err(Stop::Stopped) => TaskEnd::Stopped,
        Err(Stop::OwnerGone) => TaskEnd::OwnerDown,
        Ok(never) => match never {},
    };
    task.shared.stats.set_state(StreamState::Ended);
    task.dispatcher.send_ended(&end);
}

fn nanos_since(t: Instant) -> i64 {
    native(t.elapsed().as_nanos())
}

fn system_time() -> i64 {
    native(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    )
}

fn native(ns: u128) -> i64 {
    let ns = i64::try_from(ns).unwrap_or(i64::MAX);
    catalog_terms::get().units().from_ns_saturating(ns)
}

impl Task {
    /// Connects and reconnects until stopped.
    async fn supervise(&mut self) -> Result<std::convert::Infallible, Stop> {
        let mut failures: u32 = 0;
        let mut lost_at: Option<Instant> = None;
        loop {
            self.shared.stats.set_state(StreamState::Connecting);
            let started = Instant::now();
            match self.open().await? {
                Ok((incoming, tx)) => {
                    let retries = i64::from(failures);
                    self.opened(started, retries, lost_at)?;
                    let (reason, opened_at, messages) = self.pump(incoming, tx).await?;
                    self.lost(&reason, opened_at, messages)?;
                    lost_at = Some(Instant::now());
                    failures = self
                        .backoff_policy()
                        .after_stream(failures, opened_at.elapsed());
                }
                Err(error) => {
                    self.shared.stats.set_error(&error);
                    failures = failures.saturating_add(1);
                }
            }
            self.backoff(failures).await?;
        }
    }

    /// Connects and opens the preferred RPC; `Err(Stop)` only when stopped
    /// meanwhile, `Ok(Err(text))` when the attempt failed.
    #[allow(clippy::type_complexity)]
    async fn open(
        &mut self,
    ) -> Result<Result<(Incoming, mpsc::Sender<TelemetryControl>), Disconnect>, Stop> {
        let cfg = self.cfg.clone();
        let opening = self.settings.opening_frames();
        let stock = self.use_stock;
        let attempt = async move {
            open_stream(&cfg, opening.clone(), stock)
                .await
                .map(|r| (r, opening))
        };
        let result = self.recording_controls(attempt).await?;
        Ok(result.map(|((incoming, tx, stock), sent)| {
            self.use_stock = stock;
            let local = match self.settings.sampling().map(|c| for_peer(c, stock).1) {
                Some(Local::On(local)) => Some(local),
                _ => None,
            };
            self.set_local(local);
            // Controls that arrived while connecting were only recorded:
            // send the settings again if they changed meanwhile.
            let now = self.settings.opening_frames();
            if now != sent {
                for frame in now {
                    self.forward(&tx, frame);
                }
            }
            (incoming, tx)
        }))
    }

    /// Awaits `fut` while recording the control frames that arrive meanwhile
    /// (they go out with the next connection's opening frames); `Err` when
    /// the handle is dropped.
    async fn recording_controls<F: Future>(&mut self, fut: F) -> Result<F::Output, Stop> {
        let mut fut = pin!(fut);
        loop {
            tokio::select! {
                biased;
                c = self.controls.recv() => match c {
                    None => return Err(Stop::Stopped),
                    Some(c) => self.settings.record(&c),
                },
                r = &mut fut => return Ok(r),
            }
        }
    }

    fn opened(
        &mut self,
        started: Instant,
        retries: i64,
        lost_at: Option<Instant>,
    ) -> Result<(), Stop> {
        let stats = &self.shared.stats;
        StreamStats::add(&stats.connects, 1);
        stats.set_state(StreamState::Open);
        let rpc = if self.use_stock {
            "StreamTelemetry"
        } else {
            "StreamTelemetryBatched"
        };
        stats.set_rpc(rpc);
        let ctx = &self.cfg.context;
        let established = Status::connection_established(
            nanos_since(started),
            system_time(),
            ctx.python_port,
            retries,
        );
        self.dispatcher.send_status(&established, ctx)?;
        if let Some(lost) = lost_at {
            StreamStats::add(&stats.reconnects, 1);
            let again = Status::connection_reconnected(nanos_since(lost), retries);
            self.dispatcher.send_status(&again, ctx)?;
        }
        let opened = Status::stream_opened(system_time(), rpc);
        self.dispatcher.send_status(&opened, ctx)?;
        Ok(())
    }

    fn lost(&mut self, why: &Disconnect, opened_at: Instant, messages: i64) -> Result<(), Stop> {
        self.shared.stats.set_error(why);
        let ctx = &self.cfg.context;
        let uptime = nanos_since(opened_at);
        let closed = Status::stream_closed(uptime, messages, Some(why));
        self.dispatcher.send_status(&closed, ctx)?;
        let lost = Status::connection_lost(uptime, messages, why);
        self.dispatcher.send_status(&lost, ctx)?;
        Ok(())
    }

    /// Reads frames until the stream ends; returns why, when it opened and
    /// how many frames it carried.
    async fn pump(
        &mut self,
        mut incoming: Incoming,
        tx: mpsc::Sender<TelemetryControl>,
    ) -> Result<(Disconnect, Instant, i64), Stop> {
        let opened_at = Instant::now();
        let mut messages: i64 = 0;
        loop {
            let next = tokio::select! {
                biased;
                c = self.controls.recv() => {
                    let Some(c) = c else {
                        self.closing(opened_at, messages);
                        return Err(Stop::Stopped);
                    };
                    self.forward(&tx, c);
                    continue;
                }
                r = incoming.next() => r,
            };
            let mut end = self.take(next, &mut messages);
            // Take what is already there, up to a batch, then deliver: large
            // batches under load, no added latency when the stream is idle.
            while end.is_none() && self.dispatcher.pending() < self.cfg.max_batch {
                match now_or_never(incoming.next()) {
                    Some(next) => end = self.take(next, &mut messages),
                    None => break,
                }
            }
            self.flush(&tx).await?;
            if let Some(reason) = end {
                return Ok((reason, opened_at, messages));
            }
        }
    }

    /// Ingests one read result; `Some(reason)` when the stream ended.
    fn take(
        &mut self,
        next: Result<Option<Bytes>, tonic::Status>,
        messages: &mut i64,
    ) -> Option<Disconnect> {
        match next {
            Ok(Some(frame)) => {
                *messages += 1;
                self.ingest(&frame);
                None
            }
            Ok(None) => Some(Disconnect::ClosedByWorker),
            Err(status) if is_oversized_frame(&status) => {
                let limit = self.cfg.max_frame_bytes;
                self.shared.stats.reject(&Rejection::FrameTooLarge(limit));
                Some(Disconnect::FrameTooLarge(status.message().to_owned()))
            }
            Err(status) => Some(disconnect(&status)),
        }
    }

    /// Decodes, validates and encodes one frame's events into the next
    /// batch; rejections are counted by reason.
    fn ingest(&mut self, frame: &[u8]) {
        let stats = &self.shared.stats;
        StreamStats::add(&stats.frames, 1);
        StreamStats::add(&stats.bytes, frame.len() as u64);
        let mut batch = Vec::new();
        let events: &[&[u8]] = if self.use_stock {
            std::slice::from_ref(&frame)
        } else {
            match split_batch(frame, &mut batch) {
                Ok(totals) => {
                    let n = batch.len() as u64;
                    stats.sources.lock().unwrap().observe(&totals, n);
                    &batch
                }
                Err(e) => {
                    // Its events cannot be counted: the frame counts as one.
                    stats.reject(&Rejection::Malformed(e.0));
                    return;
                }
            }
        };
        StreamStats::add(&stats.events_received, events.len() as u64);
        let mut scratch = EventScratch::new();
        let catalog = crate::catalog_terms::get().catalog();
        for event in events {
            let pushed = scratch.validate(catalog, event).and_then(|valid| {
                if let Some(local) = &self.local {
                    let name = catalog.events[valid.event as usize].python_name.as_deref();
                    if !local.keeps(name.unwrap_or(""), draw(&mut self.rng)) {
                        StreamStats::add(&stats.nif_sampled_out, 1);
                        return Ok(());
                    }
                }
                self.dispatcher.push(&valid, &self.cfg.context)
            });
            if let Err(rejection) = pushed {
                stats.reject(&rejection);
            }
        }
    }

    /// Delivers pending events as one batch, waiting for credit first.
    async fn flush(&mut self, tx: &mpsc::Sender<TelemetryControl>) -> Result<(), Stop> {
        let n = self.dispatcher.pending();
        if n == 0 {
            return Ok(());
        }
        let got_credit = self.shared.credit.try_acquire().map(|p| p.forget()).is_ok();
        if !got_credit {
            StreamStats::add(&self.shared.stats.credit_waits, 1);
            let shared = self.shared.clone();
            let mut wait = pin!(shared.credit.acquire());
            loop {
                tokio::select! {
                    biased;
                    c = self.controls.recv() => match c {
                        None => return Err(Stop::Stopped),
                        Some(c) => self.forward(tx, c),
                    },
                    p = &mut wait => {
                        p.expect("the semaphore is never closed").forget();
                        break;
                    }
                }
            }
        }
        // Counted before the send: a handler that has an event must find it
        // in stream_stats (the owner may run before this thread goes on).
        let stats = &self.shared.stats;
        StreamStats::add(&stats.events_delivered, n as u64);
        StreamStats::add(&stats.batches_sent, 1);
        self.dispatcher.send_batch()?;
        Ok(())
    }

    fn forward(&mut self, tx: &mpsc::Sender<TelemetryControl>, c: TelemetryControl) {
        self.settings.record(&c);
        let (sent, local) = for_peer(&c, self.use_stock);
        match local {
            Local::Unchanged => {}
            Local::Off => self.set_local(None),
            Local::On(local) => self.set_local(Some(local)),
        }
        // A full request channel means the worker is not reading controls;
        // the setting is still replayed on the next connection.
        if tx.try_send(sent).is_ok() {
            StreamStats::add(&self.shared.stats.controls_sent, 1);
        }
    }

    fn set_local(&mut self, local: Option<LocalSampling>) {
        let on = local.is_some();
        self.local = local;
        self.shared
            .stats
            .nif_samples
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The stream ends because the worker was unregistered.
    fn closing(&mut self, opened_at: Instant, messages: i64) {
        let closed = Status::stream_closed(nanos_since(opened_at), messages, None);
        let _ = self.dispatcher.send_status(&closed, &self.cfg.context);
    }

    fn backoff_policy(&self) -> Backoff {
        Backoff {
            initial: self.cfg.backoff_initial,
            max: self.cfg.backoff_max,
        }
    }

    /// Exponential backoff, bounded, with jitter; returns early when stopped.
    async fn backoff(&mut self, failures: u32) -> Result<(), Stop> {
        self.shared.stats.set_state(StreamState::Backoff);
        // The clock's nanoseconds: enough to spread workers that failed together.
        let entropy = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let wait = self.backoff_policy().delay(failures, u64::from(entropy));
        self.recording_controls(tokio::time::sleep(wait)).await
    }
}

/// Connects and opens the telemetry stream, sending `opening` first. Tries
/// the batched RPC unless `stock`; on UNIMPLEMENTED falls back to the stock
/// one. Returns the stream, its control sender and whether it is stock.
async fn open_stream(
    cfg: &StreamConfig,
    opening: Vec<TelemetryControl>,
    mut stock: bool,
) -> Result<(Incoming, mpsc::Sender<TelemetryControl>, bool), Disconnect> {
    let endpoint = crate::tls::endpoint(&cfg.endpoint, cfg.tls.as_ref())
        .map_err(Disconnect::InvalidEndpoint)?
        .connect_timeout(cfg.connect_timeout)
        .tcp_nodelay(true)
        // The HTTP/2 windows bound what the worker can send ahead of our
        // reading: the memory a stream can hold here, and how soon a slow
        // consumer pushes back to the worker's queue.
        .initial_stream_window_size(Some(cfg.window_bytes))
        .initial_connection_window_size(Some(cfg.window_bytes.saturating_mul(2)))
        .http2_keep_alive_interval(cfg.keepalive_interval)
        .keep_alive_timeout(cfg.keepalive_timeout);
    let channel = tokio::time::timeout(cfg.connect_timeout, endpoint.connect())
        .await
        .map_err(|_| Disconnect::ConnectTimeout)?
        .map_err(|e| Disconnect::ConnectFailed(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(cfg.max_frame_bytes);
    loop {
        let (tx, rx) = mpsc::channel(64);
        for frame in &opening {
            // A stock peer gets pattern sampling as rate 1.0 (applied here).
            tx.try_send(for_peer(frame, stock).0)
                .expect("room for the opening frames");
        }
        let opened =
            tokio::time::timeout(cfg.open_timeout, open_call(&mut grpc, rx, stock, &cfg.auth))
                .await;
        match opened {
            Ok(Ok(frames)) => return Ok((Incoming { frames }, tx, stock)),
            Ok(Err(s))
                if s.code() == Code::Unimplemented && !stock && cfg.rpc == RpcChoice::Auto =>
            {
                stock = true;
            }
            Ok(Err(s)) => return Err(disconnect(&s)),
            Err(_) => return Err(Disconnect::OpenTimeout),
        }
    }
}

/// Opens either telemetry RPC, receiving its frames undecoded.
async fn open_call(
    grpc: &mut tonic::client::Grpc<Channel>,
    controls: mpsc::Receiver<TelemetryControl>,
    stock: bool,
    auth: &Bearer,
) -> Result<Streaming<Bytes>, tonic::Status> {
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("channel not ready: {e}")))?;
    let path = PathAndQuery::from_static(if stock { STOCK_PATH } else { BATCHED_PATH });
    let mut request = ReceiverStream::new(controls).into_streaming_request();
    auth.apply(&mut request);
    let codec = RawFrames::<TelemetryControl>::default();
    Ok(grpc.streaming(request, path, codec).await?.into_inner())
}

/// tonic's own verdict on a frame over `max_decoding_message_size`, made
/// from the frame's length prefix (the body is never buffered).
fn is_oversized_frame(s: &tonic::Status) -> bool {
    s.code() == Code::OutOfRange && s.message().contains("message length too large")
}

fn disconnect(s: &tonic::Status) -> Disconnect {
    Disconnect::Status {
        code: s.code(),
        message: s.message().to_owned(),
    }
}

fn seed(stream_id: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    (stream_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos) | 1
}

/// A uniform draw in [0, 1) (xorshift64*: sampling needs speed, not secrecy).
fn draw(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

/// Polls a future once: `Some(output)` if it is ready now.
fn now_or_never<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}
