//! Throughput check: opens a telemetry stream on a running `snakepit_loadgen`,
//! sends `toggle(true)`, reads for a while and prints events/s.
//!
//! By default it does not parse event bodies (it splits a frame into its
//! events and decodes only the first, for the timestamp), so it measures what
//! the server produces rather than this client's decoding; `--full` decodes
//! every event as the NIF would; `--stock` uses the one-event-per-frame RPC.
//!
//! ```text
//! snakepit_loadgen --listen 127.0.0.1:50099 --ignore-stdin &
//! cargo run --release -p snakepit_loadgen --example drain -- --addr http://127.0.0.1:50099
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use prost::bytes::Bytes;
use prost::Message;
use snakepit_telemetry_core::wire::bridge_service_client::BridgeServiceClient;
use snakepit_telemetry_core::wire::telemetry_control::Control;
use snakepit_telemetry_core::wire::{TelemetryControl, TelemetryEvent, TelemetryToggle};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

#[derive(Debug, Parser)]
struct Args {
    /// Server address, e.g. http://127.0.0.1:50099
    #[arg(long)]
    addr: String,
    /// Seconds to measure (after the first frame).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Decode every event (like the NIF) instead of only splitting frames.
    #[arg(long)]
    full: bool,
    /// Use the stock StreamTelemetry RPC (one event per frame).
    #[arg(long)]
    stock: bool,
}

/// `TelemetryEventBatch` with the events left as bytes.
#[derive(Clone, PartialEq, Message)]
struct LiteBatch {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    events: Vec<Bytes>,
    #[prost(uint64, tag = "2")]
    dropped_total: u64,
}

#[derive(Default)]
struct Tally {
    events: u64,
    frames: u64,
    dropped_total: u64,
    /// Sum over frames of (receive time - timestamp_ns of its first event).
    age_ns: i128,
}

impl Tally {
    fn frame(&mut self, events: usize, dropped_total: u64, first: Option<&TelemetryEvent>) {
        self.frames += 1;
        self.events += events as u64;
        self.dropped_total = dropped_total;
        if let Some(e) = first {
            self.age_ns += now_ns() - e.timestamp_ns as i128;
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let channel = Endpoint::from_shared(args.addr.clone())?
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .connect()
        .await?;
    let window = Duration::from_secs_f64(args.seconds);
    let mode = match (args.stock, args.full) {
        (true, _) => "stock",
        (false, true) => "batched, full decode",
        (false, false) => "batched, frames split",
    };
    let start = Instant::now();
    let tally = if args.stock {
        stock(channel, window).await?
    } else if args.full {
        full(channel, window).await?
    } else {
        lite(channel, window).await?
    };
    let secs = start.elapsed().as_secs_f64().min(args.seconds);
    println!(
        "{mode}: {} events in {secs:.2}s = {:.0} events/s, {} frames ({:.1} events/frame), dropped_total={}, mean age at receipt {:.1} ms",
        tally.events,
        tally.events as f64 / secs,
        tally.frames,
        tally.events as f64 / tally.frames.max(1) as f64,
        tally.dropped_total,
        tally.age_ns as f64 / tally.frames.max(1) as f64 / 1e6,
    );
    Ok(())
}

/// A control stream that sends toggle(true) and then stays open.
fn toggle_on() -> ReceiverStream<TelemetryControl> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let on = TelemetryControl {
        control: Some(Control::Toggle(TelemetryToggle { enabled: true })),
    };
    tx.try_send(on).expect("room for one frame");
    std::mem::forget(tx);
    ReceiverStream::new(rx)
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

async fn lite(channel: Channel, window: Duration) -> Result<Tally, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = PathAndQuery::from_static("/snakepit.bridge.BridgeService/StreamTelemetryBatched");
    let codec = tonic_prost::ProstCodec::<TelemetryControl, LiteBatch>::default();
    let request = tonic::Request::new(toggle_on());
    let mut stream = grpc.streaming(request, path, codec).await?.into_inner();
    let start = Instant::now();
    let mut t = Tally::default();
    while start.elapsed() < window {
        let Some(f) = stream.message().await? else {
            break;
        };
        let first = f
            .events
            .first()
            .map(|b| TelemetryEvent::decode(b.clone()).unwrap());
        t.frame(f.events.len(), f.dropped_total, first.as_ref());
    }
    Ok(t)
}

async fn full(channel: Channel, window: Duration) -> Result<Tally, Status> {
    let mut client = BridgeServiceClient::new(channel);
    let mut stream = client
        .stream_telemetry_batched(toggle_on())
        .await?
        .into_inner();
    let start = Instant::now();
    let mut t = Tally::default();
    while start.elapsed() < window {
        let Some(f) = stream.message().await? else {
            break;
        };
        t.frame(f.events.len(), f.dropped_total, f.events.first());
    }
    Ok(t)
}

async fn stock(channel: Channel, window: Duration) -> Result<Tally, Status> {
    let mut client = BridgeServiceClient::new(channel);
    let mut stream = client.stream_telemetry(toggle_on()).await?.into_inner();
    let start = Instant::now();
    let mut t = Tally::default();
    while start.elapsed() < window {
        let Some(e) = stream.message().await? else {
            break;
        };
        t.frame(1, 0, Some(&e));
    }
    Ok(t)
}
