//! An in-process loadgen server on 127.0.0.1:0 and a client for tests.
#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::time::Duration;

use snakepit_loadgen::stats::Counts;
use snakepit_loadgen::Config;
use snakepit_telemetry_core::wire::bridge_service_client::BridgeServiceClient;
use snakepit_telemetry_core::wire::telemetry_control::Control;
use snakepit_telemetry_core::wire::{
    TelemetryControl, TelemetryEventBatch, TelemetryEventFilter, TelemetrySamplingUpdate,
    TelemetryToggle,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

pub struct TestServer {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<Counts, String>>,
}

pub async fn start(config: Config) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(snakepit_loadgen::serve(listener, config, async {
        let _ = stopped.await;
    }));
    TestServer { addr, stop, task }
}

impl TestServer {
    pub async fn client(&self) -> BridgeServiceClient<Channel> {
        BridgeServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// Signals shutdown and returns the server's totals.
    pub async fn stop(self) -> Counts {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }
}

/// The request side of a telemetry stream.
pub struct Controls(pub mpsc::Sender<TelemetryControl>);

impl Controls {
    async fn send(&self, control: Control) {
        self.0
            .send(TelemetryControl {
                control: Some(control),
            })
            .await
            .unwrap();
    }

    pub async fn toggle(&self, enabled: bool) {
        self.send(Control::Toggle(TelemetryToggle { enabled }))
            .await;
    }

    pub async fn sampling(&self, rate: f64, patterns: &[&str]) {
        let event_patterns = patterns.iter().map(|s| s.to_string()).collect();
        self.send(Control::Sampling(TelemetrySamplingUpdate {
            sampling_rate: rate,
            event_patterns,
        }))
        .await;
    }

    pub async fn filter(&self, allow: &[&str], deny: &[&str]) {
        let strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        self.send(Control::Filter(TelemetryEventFilter {
            allow: strings(allow),
            deny: strings(deny),
        }))
        .await;
    }
}

fn control_stream() -> (Controls, ReceiverStream<TelemetryControl>) {
    let (tx, rx) = mpsc::channel(8);
    (Controls(tx), ReceiverStream::new(rx))
}

pub async fn open_batched(
    client: &mut BridgeServiceClient<Channel>,
) -> (Controls, Streaming<TelemetryEventBatch>) {
    let (controls, requests) = control_stream();
    let events = client
        .stream_telemetry_batched(requests)
        .await
        .unwrap()
        .into_inner();
    (controls, events)
}

pub async fn open_stock(
    client: &mut BridgeServiceClient<Channel>,
) -> (
    Controls,
    Streaming<snakepit_telemetry_core::wire::TelemetryEvent>,
) {
    let (controls, requests) = control_stream();
    let events = client
        .stream_telemetry(requests)
        .await
        .unwrap()
        .into_inner();
    (controls, events)
}

/// The next message, `None` when none arrives within `within` or the stream ended.
pub async fn next<T>(stream: &mut Streaming<T>, within: Duration) -> Option<T> {
    match tokio::time::timeout(within, stream.message()).await {
        Ok(r) => r.expect("stream failed"),
        Err(_) => None,
    }
}

/// Reads until no frame arrives for `quiet` (what was in flight has arrived).
pub async fn drain_until_quiet(
    stream: &mut Streaming<TelemetryEventBatch>,
    quiet: Duration,
) -> Vec<TelemetryEventBatch> {
    let mut frames = Vec::new();
    while let Some(f) = next(stream, quiet).await {
        frames.push(f);
    }
    frames
}

/// Reads frames until they hold at least `n` events.
pub async fn collect_events(
    stream: &mut Streaming<TelemetryEventBatch>,
    n: usize,
) -> Vec<TelemetryEventBatch> {
    let mut frames = Vec::new();
    let mut seen = 0;
    while seen < n {
        let f = next(stream, Duration::from_secs(2))
            .await
            .expect("events stopped arriving");
        seen += f.events.len();
        frames.push(f);
    }
    frames
}

pub fn name(e: &snakepit_telemetry_core::wire::TelemetryEvent) -> String {
    e.event_parts.join(".")
}

pub const QUIET: Duration = Duration::from_millis(150);
pub const SOON: Duration = Duration::from_secs(2);
