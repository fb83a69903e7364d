//! The client side of KubeArmor's `feeder.LogService` Watch calls, receiving each event as
//! the protobuf bytes it arrived in.
//!
//! tonic's generated client would decode every event into a prost struct, allocating each of
//! its text fields, only for the batch builders to copy them again. Here a stream yields the
//! message's bytes (a slice of tonic's receive buffer, not a copy) and the builders read them
//! in place ([`crate::convert::LogView`]). On the wire it is the same call.

use armorlake_common::Table;
use armorlake_proto::feeder::RequestMessage;
use bytes::{Buf, Bytes};
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{GrpcMethod, Request, Status};

const SERVICE: &str = "feeder.LogService";

/// Opens the Watch stream of `table`'s events (`WatchAlerts`, `WatchLogs` or
/// `WatchMessages`) with `filter`, refusing any message over `max_message_bytes`.
pub async fn watch(
    channel: Channel,
    table: Table,
    filter: String,
    max_message_bytes: usize,
) -> Result<Streaming<Bytes>, Status> {
    let method = match table {
        Table::Alerts => "WatchAlerts",
        Table::Logs => "WatchLogs",
        Table::Messages => "WatchMessages",
    };
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(max_message_bytes);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("connecting: {e}")))?;
    let path = PathAndQuery::try_from(format!("/{SERVICE}/{method}"))
        .map_err(|e| Status::internal(e.to_string()))?;
    let mut request = Request::new(RequestMessage { filter });
    request
        .extensions_mut()
        .insert(GrpcMethod::new(SERVICE, method));
    Ok(grpc
        .server_streaming(request, path, EventBytes)
        .await?
        .into_inner())
}

/// Sends a prost-encoded `RequestMessage`; receives each event message as its bytes.
#[derive(Debug, Clone, Copy, Default)]
struct EventBytes;

impl Codec for EventBytes {
    type Encode = RequestMessage;
    type Decode = Bytes;
    type Encoder = EventBytes;
    type Decoder = EventBytes;

    fn encoder(&mut self) -> EventBytes {
        EventBytes
    }

    fn decoder(&mut self) -> EventBytes {
        EventBytes
    }
}

impl Encoder for EventBytes {
    type Item = RequestMessage;
    type Error = Status;

    fn encode(&mut self, item: RequestMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the request: {e}")))
    }
}

impl Decoder for EventBytes {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
