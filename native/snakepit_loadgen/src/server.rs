//! The `BridgeService` a worker would serve, backed by generated telemetry,
//! and [`serve`], which runs it until a shutdown signal.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use snakepit_telemetry_core::wire::bridge_service_server::BridgeService;
use snakepit_telemetry_core::wire::{
    ExecuteToolRequest, ExecuteToolResponse, PingRequest, PingResponse, TelemetryControl,
    TelemetryEvent, TelemetryEventBatch,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

use crate::config::Config;
use crate::frame::EncodedBatch;
use crate::generator::EventPool;
use crate::route::LoadgenRoutes;
use crate::session::{self, Context, Sink};
use crate::stats::{Counts, ServerTotals};

/// How long streams get to finish after a shutdown signal before the server
/// stops waiting for them (a client that stopped reading cannot hold it up).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Frames buffered between a stream's task and tonic (batched RPC); the
/// stock RPC buffers this many single events times the batch size.
const BATCH_FRAMES_IN_FLIGHT: usize = 2;

pub struct LoadgenService {
    ctx: Arc<Context>,
}

impl LoadgenService {
    pub fn new(config: Config, shutdown: watch::Receiver<bool>) -> LoadgenService {
        let pool = Arc::new(EventPool::build(config.seed));
        let totals = Arc::new(ServerTotals::default());
        LoadgenService {
            ctx: Arc::new(Context {
                config,
                pool,
                totals,
                shutdown,
            }),
        }
    }

    pub fn totals(&self) -> Arc<ServerTotals> {
        self.ctx.totals.clone()
    }

    pub fn stock_only(&self) -> bool {
        self.ctx.config.stock_only
    }

    /// Opens a batched stream with pre-encoded frames (see [`LoadgenRoutes`]).
    pub fn open_encoded(
        &self,
        requests: Streaming<TelemetryControl>,
    ) -> ReceiverStream<Result<EncodedBatch, Status>> {
        let (tx, rx) = mpsc::channel(BATCH_FRAMES_IN_FLIGHT);
        session::spawn(self.ctx.clone(), requests, Sink::Encoded(tx));
        ReceiverStream::new(rx)
    }
}

#[tonic::async_trait]
impl BridgeService for LoadgenService {
    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let reply = PingResponse {
            message: format!("Pong: {}", request.into_inner().message),
            server_time: Some(prost_types::Timestamp::from(SystemTime::now())),
        };
        Ok(Response::new(reply))
    }

    async fn execute_tool(
        &self,
        _request: Request<ExecuteToolRequest>,
    ) -> Result<Response<ExecuteToolResponse>, Status> {
        Err(Status::unimplemented(
            "snakepit_loadgen only streams telemetry",
        ))
    }

    type StreamTelemetryStream = ReceiverStream<Result<TelemetryEvent, Status>>;

    async fn stream_telemetry(
        &self,
        request: Request<Streaming<TelemetryControl>>,
    ) -> Result<Response<Self::StreamTelemetryStream>, Status> {
        let (tx, rx) = mpsc::channel(self.ctx.config.batch * BATCH_FRAMES_IN_FLIGHT);
        session::spawn(self.ctx.clone(), request.into_inner(), Sink::Single(tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type StreamTelemetryBatchedStream = ReceiverStream<Result<TelemetryEventBatch, Status>>;

    /// Frames built as messages. `serve` routes this RPC to the pre-encoded
    /// path instead ([`LoadgenRoutes`]); this one serves when the service is
    /// mounted with the plain generated `BridgeServiceServer`.
    async fn stream_telemetry_batched(
        &self,
        request: Request<Streaming<TelemetryControl>>,
    ) -> Result<Response<Self::StreamTelemetryBatchedStream>, Status> {
        if self.ctx.config.stock_only {
            return Err(Status::unimplemented(
                "StreamTelemetryBatched is disabled (--stock-only)",
            ));
        }
        let (tx, rx) = mpsc::channel(BATCH_FRAMES_IN_FLIGHT);
        session::spawn(self.ctx.clone(), request.into_inner(), Sink::Batched(tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Serves on `listener` until `shutdown` completes, then ends every stream
/// (clients see a clean end of stream) and waits up to [`SHUTDOWN_GRACE`]
/// for them. Returns the counts summed over all streams.
pub async fn serve<F>(listener: TcpListener, config: Config, shutdown: F) -> Result<Counts, String>
where
    F: Future<Output = ()> + Send,
{
    config.validate()?;
    let (down_tx, down_rx) = watch::channel(false);
    let service = LoadgenService::new(config, down_rx.clone());
    let totals = service.totals();
    let signal = async move {
        shutdown.await;
        let _ = down_tx.send(true);
    };
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = Server::builder()
        .add_service(LoadgenRoutes::new(service))
        .serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(server);
    let mut down = down_rx;
    let finished = tokio::select! {
        r = &mut server => Some(r),
        _ = async { down.wait_for(|d| *d).await.is_ok() } => None,
    };
    let result = match finished {
        Some(r) => r,
        None => {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    eprintln!("loadgen: streams did not finish within {SHUTDOWN_GRACE:?}; stopping anyway");
                    Ok(())
                }
            }
        }
    };
    result.map_err(|e| format!("server failed: {e}"))?;
    let counts = totals.finished();
    eprintln!(
        "loadgen: shut down after {} streams: {counts}",
        totals.streams()
    );
    Ok(counts)
}
