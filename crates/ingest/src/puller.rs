//! The puller: subscribes to a KubeArmor endpoint's WatchAlerts, WatchLogs and WatchMessages
//! and hands Arrow batches to the operator's writer.
//!
//! KubeArmor keeps no backlog and drops events for subscribers that fall behind, so each
//! stream is read by its own task that only decodes and batches; storing happens behind a
//! bounded channel. Streams carry no deadline; a stream that ends or fails is re-opened at
//! once, then with backoff up to 5 s.
//!
//! Garbage is limited, counted and skipped: a message over [`MAX_EVENT_BYTES`] is refused
//! before it is buffered, and one that does not decode is dropped. gRPC cannot resume a
//! stream after a bad message, so either ends the stream, which is re-opened at once; the
//! message is counted in the stream's `bad_messages` and named in its last error.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use armorlake_common::Table;
use armorlake_proto::feeder::log_service_client::LogServiceClient;
use armorlake_proto::feeder::{Alert, Log, Message, RequestMessage};
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::convert::{AlertBatchBuilder, LogBatchBuilder, MessageBatchBuilder};
use crate::status::{SourceStatus, StreamState};

/// A batch is handed on once it has this many rows...
const BATCH_ROWS: usize = 4096;
/// ...or its first row has waited this long, so rows are queryable within a second.
const BATCH_WAIT: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts (KubeArmor's relay waits 5 s too).
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where batches go: the operator's writer.
pub type BatchSender = mpsc::Sender<(Table, RecordBatch)>;

/// What to pull from one KubeArmor endpoint.
#[derive(Debug, Clone)]
pub struct PullerConfig {
    /// `host:port` of the KubeArmor daemon or relay.
    pub endpoint: String,
    /// The operator storing the rows (the `operator` column).
    pub operator: String,
    /// `RequestMessage.Filter` for WatchAlerts: `all` or `policy`.
    pub alert_filter: String,
    /// `RequestMessage.Filter` for WatchLogs: `all` or `system`.
    pub log_filter: String,
    /// TLS to KubeArmor, when its server has it on.
    pub tls: Option<KubeArmorTls>,
}

/// TLS settings for reaching a KubeArmor server.
#[derive(Debug, Clone)]
pub struct KubeArmorTls {
    /// PEM of the CA that signed KubeArmor's certificate.
    pub ca_pem: Vec<u8>,
    /// The name to check the certificate against, when it is not the endpoint's host.
    pub domain: Option<String>,
}

impl PullerConfig {
    /// Pull everything from `endpoint` for `operator`.
    pub fn new(endpoint: impl Into<String>, operator: impl Into<String>) -> PullerConfig {
        PullerConfig {
            endpoint: endpoint.into(),
            operator: operator.into(),
            alert_filter: "all".into(),
            log_filter: "all".into(),
            tls: None,
        }
    }
}

/// Accumulates events of one stream into record batches, and knows its stream's RPC.
trait Batcher: Send {
    type Event: Send + 'static;
    fn append(&mut self, event: &Self::Event);
    fn len(&self) -> usize;
    fn finish(&mut self) -> RecordBatch;
    /// Opens the stream of this batcher's events.
    fn subscribe(
        client: &mut LogServiceClient<Channel>,
        config: &PullerConfig,
    ) -> impl Future<Output = Result<tonic::Streaming<Self::Event>, tonic::Status>> + Send;
}

macro_rules! batcher {
    ($builder:ty, $event:ty, $rpc:ident, $filter:expr) => {
        impl Batcher for $builder {
            type Event = $event;
            fn append(&mut self, event: &$event) {
                <$builder>::append(self, event)
            }
            fn len(&self) -> usize {
                <$builder>::len(self)
            }
            fn finish(&mut self) -> RecordBatch {
                <$builder>::finish(self)
            }
            async fn subscribe(
                client: &mut LogServiceClient<Channel>,
                config: &PullerConfig,
            ) -> Result<tonic::Streaming<$event>, tonic::Status> {
                let filter: fn(&PullerConfig) -> String = $filter;
                let request = RequestMessage {
                    filter: filter(config),
                };
                Ok(client.$rpc(request).await?.into_inner())
            }
        }
    };
}
batcher!(AlertBatchBuilder, Alert, watch_alerts, |c| c
    .alert_filter
    .clone());
batcher!(LogBatchBuilder, Log, watch_logs, |c| c.log_filter.clone());
// WatchMessages ignores its filter.
batcher!(MessageBatchBuilder, Message, watch_messages, |_| {
    String::new()
});

/// Pulls all three streams of one endpoint until `shutdown` resolves. Returns the status of
/// each stream (alerts, logs, messages), updated while it runs, and the running tasks.
pub fn spawn(
    config: PullerConfig,
    sink: BatchSender,
    shutdown: CancellationToken,
) -> (Vec<Arc<SourceStatus>>, Vec<tokio::task::JoinHandle<()>>) {
    let endpoint = config.endpoint.clone();
    let status = |table: Table| Arc::new(SourceStatus::new(&endpoint, table));
    let (alerts, logs, messages) = (
        status(Table::Alerts),
        status(Table::Logs),
        status(Table::Messages),
    );
    let (op, ep) = (config.operator.as_str(), config.endpoint.as_str());
    let tasks = vec![
        tokio::spawn(pull(
            config.clone(),
            Table::Alerts,
            AlertBatchBuilder::new(op, ep, BATCH_ROWS),
            alerts.clone(),
            sink.clone(),
            shutdown.clone().cancelled_owned(),
        )),
        tokio::spawn(pull(
            config.clone(),
            Table::Logs,
            LogBatchBuilder::new(op, ep, BATCH_ROWS),
            logs.clone(),
            sink.clone(),
            shutdown.clone().cancelled_owned(),
        )),
        tokio::spawn(pull(
            config.clone(),
            Table::Messages,
            MessageBatchBuilder::new(op, ep, BATCH_ROWS),
            messages.clone(),
            sink,
            shutdown.cancelled_owned(),
        )),
    ];
    (vec![alerts, logs, messages], tasks)
}

/// The largest event accepted. KubeArmor's events are about 600 B; anything near this is
/// garbage, and is refused by the decoder rather than buffered.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// Whether `status` is the client's own verdict on one message (too large, or not a valid
/// protobuf message) rather than a failure of the connection or the server.
fn is_bad_message(status: &tonic::Status) -> bool {
    let message = status.message();
    match status.code() {
        tonic::Code::OutOfRange => message.contains("message length too large"),
        tonic::Code::ResourceExhausted => message.starts_with("Error decompressing"),
        tonic::Code::Internal => message.starts_with("failed to decode Protobuf message"),
        _ => false,
    }
}

fn connect(config: &PullerConfig) -> Result<LogServiceClient<Channel>, tonic::transport::Error> {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // No request timeout: a Watch call lives as long as the connection. No aggressive
    // keepalive either: KubeArmor refuses clients that ping more often than every 5 minutes.
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", config.endpoint))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if let Some(tls) = &config.tls {
        let mut tls_config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        if let Some(domain) = &tls.domain {
            tls_config = tls_config.domain_name(domain.clone());
        }
        endpoint = endpoint.tls_config(tls_config)?;
    }
    Ok(LogServiceClient::new(endpoint.connect_lazy()).max_decoding_message_size(MAX_EVENT_BYTES))
}

/// Reads one stream of one endpoint forever: subscribe, batch, reconnect.
async fn pull<B>(
    config: PullerConfig,
    table: Table,
    mut batcher: B,
    status: Arc<SourceStatus>,
    sink: BatchSender,
    shutdown: impl Future<Output = ()>,
) where
    B: Batcher,
{
    tokio::pin!(shutdown);
    let mut backoff = Duration::ZERO;
    loop {
        if !backoff.is_zero() {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
        let outcome = tokio::select! {
            _ = &mut shutdown => return,
            outcome = session(&config, table, &mut batcher, &status, &sink) => outcome,
        };
        // Whatever was batched before the stream broke is kept.
        if batcher.len() > 0 && !hand_off(table, &mut batcher, &status, &sink).await {
            return;
        }
        match outcome {
            Ended::Closed { events } if events > 0 => backoff = Duration::ZERO,
            Ended::Closed { .. } => {
                let filter = match table {
                    Table::Alerts => &config.alert_filter,
                    Table::Logs => &config.log_filter,
                    Table::Messages => "",
                };
                status.failed(format!(
                    "KubeArmor ended the {table} stream at once with no events: check the \
                     filter '{filter}' (WatchAlerts accepts all|policy, WatchLogs all|system)"
                ));
                backoff = MAX_BACKOFF;
            }
            Ended::Failed { events, error } => {
                status.failed(error);
                backoff = if events > 0 {
                    Duration::ZERO
                } else {
                    (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF)
                };
            }
            Ended::SinkClosed => return,
        }
        status.set_state(StreamState::Reconnecting);
    }
}

enum Ended {
    Closed { events: u64 },
    Failed { events: u64, error: String },
    SinkClosed,
}

/// One subscription: from connecting until the stream ends.
async fn session<B>(
    config: &PullerConfig,
    table: Table,
    batcher: &mut B,
    status: &SourceStatus,
    sink: &BatchSender,
) -> Ended
where
    B: Batcher,
{
    let mut client = match connect(config) {
        Ok(c) => c,
        Err(e) => {
            return Ended::Failed {
                events: 0,
                error: format!("bad endpoint {}: {e}", config.endpoint),
            };
        }
    };
    let mut stream = match B::subscribe(&mut client, config).await {
        Ok(s) => s,
        Err(e) => {
            return Ended::Failed {
                events: 0,
                error: format!("subscribing to {}: {}", config.endpoint, e.message()),
            };
        }
    };
    status.connected();
    let mut events = 0u64;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = sleep_until(deadline) => {
                deadline = None;
                if !hand_off(table, batcher, status, sink).await {
                    return Ended::SinkClosed;
                }
                continue;
            }
        };
        match next {
            Some(Ok(event)) => {
                batcher.append(&event);
                events += 1;
                if batcher.len() >= BATCH_ROWS {
                    deadline = None;
                    if !hand_off(table, batcher, status, sink).await {
                        return Ended::SinkClosed;
                    }
                } else if deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + BATCH_WAIT);
                }
            }
            Some(Err(e)) => {
                let error = if is_bad_message(&e) {
                    status.bad_message();
                    format!(
                        "{table} stream from {}: skipped a bad message ({}); re-opening the stream",
                        config.endpoint,
                        e.message()
                    )
                } else {
                    format!("{table} stream from {}: {}", config.endpoint, e.message())
                };
                return Ended::Failed { events, error };
            }
            None => return Ended::Closed { events },
        }
    }
}

/// Hands the batched events to the writer and counts them as received (once per batch, not
/// per event). False when the writer is gone.
async fn hand_off<B: Batcher>(
    table: Table,
    batcher: &mut B,
    status: &SourceStatus,
    sink: &BatchSender,
) -> bool {
    status.received(batcher.len() as u64);
    sink.send((table, batcher.finish())).await.is_ok()
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn the_decoders_verdicts_are_bad_messages_and_stream_failures_are_not() {
        // What tonic's prost codec reports for bytes that are not a Log.
        let garbage = Log::decode(&[0xff_u8, 0xff, 0xff][..]).expect_err("garbage");
        assert!(is_bad_message(&tonic::Status::internal(
            garbage.to_string()
        )));
        assert!(is_bad_message(&tonic::Status::out_of_range(format!(
            "Error, decoded message length too large: found {} bytes, the limit is: \
             {MAX_EVENT_BYTES} bytes",
            MAX_EVENT_BYTES + 1
        ))));
        assert!(!is_bad_message(&tonic::Status::internal(
            "Unexpected EOF decoding stream."
        )));
        assert!(!is_bad_message(&tonic::Status::unavailable(
            "connection reset"
        )));
        assert!(!is_bad_message(&tonic::Status::out_of_range(
            "seek past end"
        )));
    }
}
