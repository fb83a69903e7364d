//! How a query node reaches the operators' workers: one gRPC channel per worker URL, over the
//! cluster's TLS and carrying its token when [`ClusterSecurity`] asks for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use armorlake_meta::ClusterSecurity;
use async_trait::async_trait;
use datafusion::error::{DataFusionError, Result};
use datafusion_distributed::grpc::{BoxCloneSyncChannel, create_worker_client};
use datafusion_distributed::{ChannelResolver, WorkerChannel};
use url::Url;

/// How long opening a connection to a worker may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Streams this side cancelled that HTTP/2 remembers (hyper's default: 10), so that the
/// frames a worker had already sent on them are ignored rather than counted as its errors.
const RESET_STREAMS_REMEMBERED: usize = 4096;

/// The channel resolver a coordinating session uses: channels are opened lazily, once per
/// worker URL, and reconnect on their own after an operator restarts.
#[derive(Clone)]
pub struct WorkerChannels {
    security: ClusterSecurity,
    channels: Arc<Mutex<HashMap<Url, BoxCloneSyncChannel>>>,
}

impl std::fmt::Debug for WorkerChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerChannels")
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

impl WorkerChannels {
    /// Channels secured by `security`.
    pub fn new(security: ClusterSecurity) -> WorkerChannels {
        WorkerChannels {
            security,
            channels: Arc::default(),
        }
    }

    /// The channel to the worker at `url`, opened on first use.
    pub(crate) fn channel(&self, url: &Url) -> Result<BoxCloneSyncChannel> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| DataFusionError::Internal("worker channel cache poisoned".into()))?;
        if let Some(channel) = channels.get(url) {
            return Ok(channel.clone());
        }
        let endpoint = self
            .security
            .endpoint(url.as_str())
            .map_err(|e| DataFusionError::Configuration(format!("worker {url}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            // A query that stops reading early (a LIMIT reached, a sibling failed) cancels
            // its streams to the workers. hyper counts frames arriving on cancelled streams it
            // no longer remembers as the peer's errors, never forgets the count, and at 1,024
            // in a connection's life closes it with GOAWAY(ENHANCE_YOUR_CALM), failing every
            // query on it: a busy query node got there in minutes. Workers are the cluster's
            // own nodes, authenticated by its TLS or token, so that guard is off here.
            .http2_max_concurrent_reset_streams(RESET_STREAMS_REMEMBERED)
            .http2_max_local_error_reset_streams(None);
        let channel = BoxCloneSyncChannel::new(self.security.channel(endpoint.connect_lazy()));
        channels.insert(url.clone(), channel.clone());
        Ok(channel)
    }
}

#[async_trait]
impl ChannelResolver for WorkerChannels {
    async fn get_worker_client_for_url(&self, url: &Url) -> Result<Box<dyn WorkerChannel>> {
        Ok(create_worker_client(self.channel(url)?))
    }
}
