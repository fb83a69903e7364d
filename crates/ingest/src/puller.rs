//! The puller: subscribes to a KubeArmor endpoint's WatchAlerts, WatchLogs and WatchMessages
//! and hands Arrow batches to the operator's writer.
//!
//! KubeArmor keeps no backlog and drops events for subscribers that fall behind, so each
//! stream is read by its own task that only decodes and batches; storing happens behind a
//! bounded channel. Streams carry no deadline; a stream that ends or fails is re-opened at
//! once, then with backoff up to 5 s.
//!
//! Events arrive as their protobuf bytes ([`crate::feed`]) and are read in place into the
//! Arrow builders.
//!
//! Garbage is limited, counted and skipped; every such message is counted in the stream's
//! `bad_messages` and named in its last error:
//! - a message over [`MAX_EVENT_BYTES`] is refused by gRPC before it is buffered. gRPC cannot
//!   resume a stream after that, so the stream ends and is re-opened at once;
//! - a message whose framing is sound but whose content is not a valid event is skipped, and
//!   the stream goes on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use armorlake_common::Table;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::convert::{AlertBatchBuilder, LogBatchBuilder, MessageBatchBuilder, WireError};
use crate::feed;
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

/// Accumulates events of one stream into record batches.
trait Batcher: Send {
    /// Appends the event encoded in `bytes` as a row; nothing when it is not a valid event.
    fn append_wire(&mut self, bytes: &[u8]) -> Result<(), WireError>;
    fn len(&self) -> usize;
    fn finish(&mut self) -> RecordBatch;
}

macro_rules! batcher {
    ($builder:ty) => {
        impl Batcher for $builder {
            fn append_wire(&mut self, bytes: &[u8]) -> Result<(), WireError> {
                <$builder>::append_wire(self, bytes)
            }
            fn len(&self) -> usize {
                <$builder>::len(self)
            }
            fn finish(&mut self) -> RecordBatch {
                <$builder>::finish(self)
            }
        }
    };
}
batcher!(AlertBatchBuilder);
batcher!(LogBatchBuilder);
batcher!(MessageBatchBuilder);

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

/// Whether `status` is the client's own verdict on one message (too large, or not
/// decompressible) rather than a failure of the connection or the server.
fn is_bad_message(status: &tonic::Status) -> bool {
    let message = status.message();
    match status.code() {
        tonic::Code::OutOfRange => message.contains("message length too large"),
        tonic::Code::ResourceExhausted => message.starts_with("Error decompressing"),
        _ => false,
    }
}

fn connect(config: &PullerConfig) -> Result<Channel, tonic::transport::Error> {
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
    Ok(endpoint.connect_lazy())
}

impl PullerConfig {
    /// `RequestMessage.Filter` for `table`'s Watch call (WatchMessages ignores it).
    fn filter(&self, table: Table) -> &str {
        match table {
            Table::Alerts => &self.alert_filter,
            Table::Logs => &self.log_filter,
            Table::Messages => "",
        }
    }
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
                let filter = config.filter(table);
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
    let channel = match connect(config) {
        Ok(c) => c,
        Err(e) => {
            return Ended::Failed {
                events: 0,
                error: format!("bad endpoint {}: {e}", config.endpoint),
            };
        }
    };
    let filter = config.filter(table).to_owned();
    let mut stream = match feed::watch(channel, table, filter, MAX_EVENT_BYTES).await {
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
                if let Err(e) = batcher.append_wire(&event) {
                    // The framing is intact, so the stream goes on past the bad event.
                    status.skipped(format!(
                        "{table} stream from {}: skipped a bad message ({e})",
                        config.endpoint
                    ));
                    continue;
                }
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

    #[test]
    fn the_decoders_verdicts_are_bad_messages_and_stream_failures_are_not() {
        assert!(is_bad_message(&tonic::Status::out_of_range(format!(
            "Error, decoded message length too large: found {} bytes, the limit is: \
             {MAX_EVENT_BYTES} bytes",
            MAX_EVENT_BYTES + 1
        ))));
        assert!(is_bad_message(&tonic::Status::resource_exhausted(
            "Error decompressing: corrupt deflate stream"
        )));
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
