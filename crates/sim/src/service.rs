//! The tonic service for `feeder.LogService`, hand-written instead of the generated
//! `LogServiceServer` so the streams can carry pre-encoded events: a subscriber's queue holds
//! `(n, at)` pairs and [`WireCodec`] writes each event's protobuf straight into tonic's buffer
//! (no message structs, no allocation per event). On the wire it is the same service.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use armorlake_proto::feeder::{NonceMessage, ReplyMessage, RequestMessage};
use chrono::{DateTime, Utc};
use prost::Message as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, StdError, http};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};

use crate::generate::{EventKind, EventSource};
use crate::server::Simulator;

/// Event `n` of the sequence, happening at `at`: what a subscriber's queue holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Due {
    /// Sequence number.
    pub n: u64,
    /// When it happens (`Timestamp`, `UpdatedTime`).
    pub at: DateTime<Utc>,
}

/// Encodes [`Due`] events from an [`EventSource`]; decodes `RequestMessage`.
#[derive(Clone, Debug)]
pub(crate) struct WireCodec {
    source: Arc<EventSource>,
}

impl Codec for WireCodec {
    type Encode = Due;
    type Decode = RequestMessage;
    type Encoder = WireCodec;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        self.clone()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder
    }
}

impl Encoder for WireCodec {
    type Item = Due;
    type Error = Status;

    fn encode(&mut self, item: Due, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        self.source.encode(item.n, item.at, dst);
        Ok(())
    }
}

/// Decodes `RequestMessage` with prost.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestDecoder;

impl Decoder for RequestDecoder {
    type Item = RequestMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<RequestMessage>, Status> {
        RequestMessage::decode(src)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("bad RequestMessage: {e}")))
    }
}

/// `HealthCheck`: echoes the nonce.
struct HealthCheck;

impl UnaryService<NonceMessage> for HealthCheck {
    type Response = ReplyMessage;
    type Future = Ready<Result<Response<ReplyMessage>, Status>>;

    fn call(&mut self, request: Request<NonceMessage>) -> Self::Future {
        ready(Ok(Response::new(ReplyMessage {
            retval: request.into_inner().nonce,
        })))
    }
}

/// `WatchLogs`, `WatchAlerts`, `WatchMessages`.
struct Watch {
    sim: Simulator,
    kind: EventKind,
}

impl ServerStreamingService<RequestMessage> for Watch {
    type Response = Due;
    type ResponseStream = ReceiverStream<Result<Due, Status>>;
    type Future = Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<RequestMessage>) -> Self::Future {
        let filter = request.into_inner().filter;
        // KubeArmor: alerts take "all"/"policy", logs "all"/"system", messages anything;
        // any other filter ends the stream at once with status OK.
        let accepted = match self.kind {
            EventKind::Alert => matches!(filter.as_str(), "all" | "policy"),
            EventKind::Log => matches!(filter.as_str(), "all" | "system"),
            EventKind::Message => true,
        };
        let stream = if accepted {
            self.sim.subscribe(self.kind)
        } else {
            tracing::debug!(kind = ?self.kind, %filter, "unknown filter, ending the stream");
            let (_, rx) = tokio::sync::mpsc::channel(1);
            ReceiverStream::new(rx)
        };
        ready(Ok(Response::new(stream)))
    }
}

/// The `feeder.LogService` server of a [`Simulator`]; mount it with
/// `tonic::transport::Server::builder().add_service(..)`.
#[derive(Clone, Debug)]
pub struct FeederServer {
    sim: Simulator,
}

impl FeederServer {
    /// The service of `sim`.
    pub fn new(sim: Simulator) -> Self {
        FeederServer { sim }
    }
}

impl NamedService for FeederServer {
    const NAME: &'static str = "feeder.LogService";
}

impl<B> tonic::codegen::Service<http::Request<B>> for FeederServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let kind = match req.uri().path() {
            "/feeder.LogService/HealthCheck" => {
                return Box::pin(async move {
                    let mut grpc =
                        Grpc::new(tonic_prost::ProstCodec::<ReplyMessage, NonceMessage>::default());
                    Ok(grpc.unary(HealthCheck, req).await)
                });
            }
            "/feeder.LogService/WatchLogs" => EventKind::Log,
            "/feeder.LogService/WatchAlerts" => EventKind::Alert,
            "/feeder.LogService/WatchMessages" => EventKind::Message,
            _ => {
                return Box::pin(async move {
                    let mut response = http::Response::new(tonic::body::Body::default());
                    let headers = response.headers_mut();
                    headers.insert(
                        Status::GRPC_STATUS,
                        (tonic::Code::Unimplemented as i32).into(),
                    );
                    headers.insert(
                        http::header::CONTENT_TYPE,
                        tonic::metadata::GRPC_CONTENT_TYPE,
                    );
                    Ok(response)
                });
            }
        };
        let sim = self.sim.clone();
        Box::pin(async move {
            let codec = WireCodec {
                source: sim.shared_source(),
            };
            let mut grpc = Grpc::new(codec);
            Ok(grpc.server_streaming(Watch { sim, kind }, req).await)
        })
    }
}
