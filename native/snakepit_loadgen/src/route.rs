//! The service `serve` mounts: `StreamTelemetryBatched` goes to the
//! pre-encoded frame path ([`EncodedBatch`]); every other RPC (and the
//! batched one under `--stock-only`) goes to the generated server.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use snakepit_telemetry_core::wire::bridge_service_server::{BridgeServiceServer, SERVICE_NAME};
use snakepit_telemetry_core::wire::TelemetryControl;
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Status, Streaming};
use tonic_prost::ProstCodec;

use crate::frame::EncodedBatch;
use crate::server::LoadgenService;

const BATCHED_PATH: &str = "/snakepit.bridge.BridgeService/StreamTelemetryBatched";

#[derive(Clone)]
pub struct LoadgenRoutes {
    service: Arc<LoadgenService>,
    generated: BridgeServiceServer<LoadgenService>,
}

impl LoadgenRoutes {
    pub fn new(service: LoadgenService) -> LoadgenRoutes {
        let service = Arc::new(service);
        LoadgenRoutes {
            generated: BridgeServiceServer::from_arc(service.clone()),
            service,
        }
    }
}

impl Service<http::Request<Body>> for LoadgenRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != BATCHED_PATH || self.service.stock_only() {
            return self.generated.call(req);
        }
        let method = EncodedBatched(self.service.clone());
        Box::pin(async move {
            let mut grpc = Grpc::new(ProstCodec::<EncodedBatch, TelemetryControl>::default());
            Ok(grpc.streaming(method, req).await)
        })
    }
}

impl NamedService for LoadgenRoutes {
    const NAME: &'static str = SERVICE_NAME;
}

/// `StreamTelemetryBatched` with pre-encoded frames.
struct EncodedBatched(Arc<LoadgenService>);

impl StreamingService<TelemetryControl> for EncodedBatched {
    type Response = EncodedBatch;
    type ResponseStream = ReceiverStream<Result<EncodedBatch, Status>>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<TelemetryControl>>) -> Self::Future {
        let stream = self.0.open_encoded(request.into_inner());
        Box::pin(async move { Ok(tonic::Response::new(stream)) })
    }
}
