//! The master's gRPC service (`armorlake.meta.v1.MetaService`): [`MetaServer`] serves any
//! [`MetaService`]; [`GrpcMeta`] is the client, itself a [`MetaService`], so a remote master
//! looks exactly like the local one.
//!
//! Errors cross the wire as status codes: [`Error::UnknownNode`] as `NOT_FOUND` (the node id
//! in binary metadata), [`Error::Storage`] as `INTERNAL`, [`Error::Invalid`] as
//! `INVALID_ARGUMENT`; a master that cannot be reached or does not answer in time is
//! [`Error::Unavailable`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use armorlake_proto::meta as pb;
use armorlake_proto::meta::meta_service_client::MetaServiceClient;
use armorlake_proto::meta::meta_service_server::{self, MetaServiceServer};
use async_trait::async_trait;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use crate::security::{ClusterSecurity, TokenChannel};
use tonic::{Request, Response, Status};

use crate::convert::{decode_all, from_status, to_status};
use crate::{
    Error, FiringReport, Firings, MetaService, NodeInfo, NodeReport, Partition, Result, Rule,
    Source, TableInfo, deadline_after,
};

/// The longest a `WaitVersion` call is held by the master; longer waits are re-issued by
/// [`GrpcMeta`].
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How long [`GrpcMeta`] tries to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`GrpcMeta`] waits for an answer (beyond a `WaitVersion`'s own wait).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message either side accepts: a big partition map is many megabytes.
const MAX_MESSAGE: usize = 64 << 20;

/// Serves a [`MetaService`] over gRPC.
#[derive(Debug, Clone)]
pub struct MetaServer {
    meta: Arc<dyn MetaService>,
    /// Turns true when the server shuts down, so long polls answer at once.
    stop: Option<watch::Receiver<bool>>,
}

impl MetaServer {
    /// The tonic service for `meta`, to mount with
    /// `tonic::transport::Server::builder().add_service(..)`.
    pub fn new(meta: Arc<dyn MetaService>) -> MetaServiceServer<MetaServer> {
        MetaServer::service(meta, None)
    }

    fn service(
        meta: Arc<dyn MetaService>,
        stop: Option<watch::Receiver<bool>>,
    ) -> MetaServiceServer<MetaServer> {
        MetaServiceServer::new(MetaServer { meta, stop })
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// Resolves when the server shuts down; never for a server without a stop signal.
    async fn stopped(&self) {
        match self.stop.clone() {
            // Err: the signal is gone with the server, which is stopping too.
            Some(mut stop) => drop(stop.wait_for(|s| *s).await),
            None => std::future::pending().await,
        }
    }

    async fn version(&self) -> Result<u64, Status> {
        self.meta.version().await.map_err(to_status)
    }
}

/// Runs a change to completion even when the caller goes away mid-way, so the master's
/// memory and store never disagree.
async fn detached<F>(change: F) -> Result<(), Status>
where
    F: Future<Output = Result<()>> + Send + 'static,
{
    tokio::spawn(change)
        .await
        .map_err(|e| Status::internal(format!("metadata change failed: {e}")))?
        .map_err(to_status)
}

#[async_trait]
impl meta_service_server::MetaService for MetaServer {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let node = request
            .into_inner()
            .node
            .ok_or_else(|| Status::invalid_argument("register without a node"))?;
        let node = NodeInfo::try_from(node).map_err(to_status)?;
        let meta = Arc::clone(&self.meta);
        detached(async move { meta.register(node).await }).await?;
        let version = self.version().await?;
        Ok(Response::new(pb::RegisterResponse { version }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let request = request.into_inner();
        let report = NodeReport::try_from(request.report.unwrap_or_default()).map_err(to_status)?;
        let meta = Arc::clone(&self.meta);
        detached(async move { meta.heartbeat(&request.node_id, report).await }).await?;
        let version = self.version().await?;
        Ok(Response::new(pb::HeartbeatResponse { version }))
    }

    async fn list_nodes(
        &self,
        _: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let nodes = self.meta.nodes().await.map_err(to_status)?;
        let nodes = nodes.into_iter().map(Into::into).collect();
        Ok(Response::new(pb::ListNodesResponse { nodes }))
    }

    async fn list_partitions(
        &self,
        _: Request<pb::ListPartitionsRequest>,
    ) -> Result<Response<pb::ListPartitionsResponse>, Status> {
        let partitions = self.meta.partitions().await.map_err(to_status)?;
        let partitions = partitions.into_iter().map(Into::into).collect();
        Ok(Response::new(pb::ListPartitionsResponse { partitions }))
    }

    async fn list_sources(
        &self,
        _: Request<pb::ListSourcesRequest>,
    ) -> Result<Response<pb::ListSourcesResponse>, Status> {
        let sources = self.meta.sources().await.map_err(to_status)?;
        let sources = sources.into_iter().map(Into::into).collect();
        Ok(Response::new(pb::ListSourcesResponse { sources }))
    }

    async fn list_tables(
        &self,
        _: Request<pb::ListTablesRequest>,
    ) -> Result<Response<pb::ListTablesResponse>, Status> {
        let tables = self.meta.tables().await.map_err(to_status)?;
        let tables = tables
            .iter()
            .map(pb::TableInfo::try_from)
            .collect::<Result<_>>()
            .map_err(to_status)?;
        Ok(Response::new(pb::ListTablesResponse { tables }))
    }

    async fn version(
        &self,
        _: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        let version = self.version().await?;
        Ok(Response::new(pb::VersionResponse { version }))
    }

    async fn wait_version(
        &self,
        request: Request<pb::WaitVersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        let request = request.into_inner();
        let timeout = Duration::from_millis(request.timeout_ms).min(MAX_WAIT);
        let version = tokio::select! {
            version = self.meta.wait_version(request.after, timeout) => version.map_err(to_status)?,
            () = self.stopped() => self.version().await?,
        };
        Ok(Response::new(pb::VersionResponse { version }))
    }

    async fn create_rule(
        &self,
        request: Request<pb::CreateRuleRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        let rule = request
            .into_inner()
            .rule
            .ok_or_else(|| Status::invalid_argument("create_rule without a rule"))?;
        let rule = Rule::try_from(rule).map_err(to_status)?;
        let meta = Arc::clone(&self.meta);
        detached(async move { meta.create_rule(rule).await }).await?;
        let version = self.version().await?;
        Ok(Response::new(pb::VersionResponse { version }))
    }

    async fn drop_rule(
        &self,
        request: Request<pb::DropRuleRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        let name = request.into_inner().name;
        let meta = Arc::clone(&self.meta);
        detached(async move { meta.drop_rule(&name).await }).await?;
        let version = self.version().await?;
        Ok(Response::new(pb::VersionResponse { version }))
    }

    async fn list_rules(
        &self,
        _: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        let rules = self.meta.rules().await.map_err(to_status)?;
        let rules = rules.into_iter().map(Into::into).collect();
        Ok(Response::new(pb::ListRulesResponse { rules }))
    }

    async fn report_firings(
        &self,
        request: Request<pb::ReportFiringsRequest>,
    ) -> Result<Response<pb::ReportFiringsResponse>, Status> {
        let reports: Vec<FiringReport> =
            decode_all(request.into_inner().firings).map_err(to_status)?;
        let meta = Arc::clone(&self.meta);
        detached(async move { meta.report_firings(reports).await }).await?;
        Ok(Response::new(pb::ReportFiringsResponse {}))
    }

    async fn wait_firings(
        &self,
        request: Request<pb::WaitFiringsRequest>,
    ) -> Result<Response<pb::WaitFiringsResponse>, Status> {
        let request = request.into_inner();
        let timeout = Duration::from_millis(request.timeout_ms).min(MAX_WAIT);
        let firings = tokio::select! {
            firings = self.meta.wait_firings(request.after, timeout) => firings.map_err(to_status)?,
            () = self.stopped() => self.meta.wait_firings(request.after, Duration::ZERO).await.map_err(to_status)?,
        };
        Ok(Response::new(pb::WaitFiringsResponse {
            firings: firings.firings.into_iter().map(Into::into).collect(),
            last: firings.last,
        }))
    }

    async fn record_delivery(
        &self,
        request: Request<pb::RecordDeliveryRequest>,
    ) -> Result<Response<pb::RecordDeliveryResponse>, Status> {
        let r = request.into_inner();
        let meta = Arc::clone(&self.meta);
        detached(async move {
            meta.record_delivery(&r.rule, r.delivered, r.failed_attempts)
                .await
        })
        .await?;
        Ok(Response::new(pb::RecordDeliveryResponse {}))
    }
}

/// Serves `meta` on `listener` until `shutdown` resolves; pending `WaitVersion` calls then
/// answer at once, so the graceful shutdown does not wait for them.
/// `security` decides who may call it (mutual TLS, a cluster token, or everyone).
pub async fn serve(
    meta: Arc<dyn MetaService>,
    listener: TcpListener,
    security: ClusterSecurity,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (stop, stopped) = watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        stop.send_replace(true);
    };
    tonic::transport::Server::builder()
        .layer(security.token_layer())
        .add_service(MetaServer::service(meta, Some(stopped)))
        .serve_with_incoming_shutdown(security.incoming(listener), shutdown)
        .await
}

/// A remote master, reached over gRPC. Cheap to clone; the connection is re-opened on its
/// own after the master restarts.
#[derive(Debug, Clone)]
pub struct GrpcMeta {
    client: MetaServiceClient<TokenChannel<Channel>>,
    url: String,
    /// Whether this node speaks TLS to the master (else a closed connection may mean the
    /// master wants it).
    tls: bool,
}

impl GrpcMeta {
    /// Connects to the master at `url` (`http://host:port`, or `host:port`), failing with
    /// [`Error::Unavailable`] when it cannot be reached within 2 s.
    pub async fn connect(url: &str, security: &ClusterSecurity) -> Result<GrpcMeta> {
        let (endpoint, url) = endpoint(url, security)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Error::Unavailable(format!("{url}: {}", error_chain(&e))))?;
        Ok(GrpcMeta::with_channel(
            security.channel(channel),
            url,
            security,
        ))
    }

    /// A client of the master at `url` that connects on its first call, so a node can
    /// start while the master is away.
    pub fn connect_lazy(url: &str, security: &ClusterSecurity) -> Result<GrpcMeta> {
        let (endpoint, url) = endpoint(url, security)?;
        Ok(GrpcMeta::with_channel(
            security.channel(endpoint.connect_lazy()),
            url,
            security,
        ))
    }

    fn with_channel(
        channel: TokenChannel<Channel>,
        url: String,
        security: &ClusterSecurity,
    ) -> GrpcMeta {
        let client = MetaServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        GrpcMeta {
            client,
            url,
            tls: security.uses_tls(),
        }
    }

    /// The master's address, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs one call, giving up after `timeout`.
    async fn call<T, F>(&self, timeout: Duration, call: F) -> Result<T>
    where
        F: Future<Output = Result<Response<T>, Status>>,
    {
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => {
                // A transport failure (refused TLS handshake, reset, protocol error) hides
                // its cause in the status' sources, whatever its code: the master was not
                // reached.
                let Some(cause) = std::error::Error::source(&status).map(error_chain) else {
                    return Err(match from_status(status) {
                        Error::Unavailable(e) => Error::Unavailable(format!("{}: {e}", self.url)),
                        e => e,
                    });
                };
                // Reached, then dropped by a master speaking another protocol (TLS).
                let dropped = !cause.contains("tcp connect error");
                let hint = match !self.tls && dropped {
                    true => {
                        " (if the master requires mutual TLS, give this node --cluster-ca, \
                         --cluster-cert and --cluster-key)"
                    }
                    false => "",
                };
                Err(Error::Unavailable(format!(
                    "{}: {:?}: {}: {cause}{hint}",
                    self.url,
                    status.code(),
                    status.message()
                )))
            }
            Err(_) => Err(Error::Unavailable(format!(
                "{}: no answer within {timeout:?}",
                self.url
            ))),
        }
    }
}

/// `e` and its sources, joined by `: `.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

fn endpoint(url: &str, security: &ClusterSecurity) -> Result<(Endpoint, String)> {
    let endpoint = security
        .endpoint(url)
        .map_err(|e| Error::Invalid(format!("master address: {e}")))?;
    let url = endpoint.uri().to_string();
    let endpoint = endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    Ok((endpoint, url))
}

#[async_trait]
impl MetaService for GrpcMeta {
    async fn register(&self, node: NodeInfo) -> Result<()> {
        let mut client = self.client.clone();
        let request = pb::RegisterRequest {
            node: Some(node.into()),
        };
        self.call(REQUEST_TIMEOUT, client.register(request)).await?;
        Ok(())
    }

    async fn heartbeat(&self, node_id: &str, report: NodeReport) -> Result<()> {
        let mut client = self.client.clone();
        let request = pb::HeartbeatRequest {
            node_id: node_id.to_string(),
            report: Some(report.into()),
        };
        self.call(REQUEST_TIMEOUT, client.heartbeat(request))
            .await?;
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let mut client = self.client.clone();
        let request = pb::ListNodesRequest {};
        let response = self.call(REQUEST_TIMEOUT, client.list_nodes(request));
        decode_all(response.await?.nodes)
    }

    async fn partitions(&self) -> Result<Vec<Partition>> {
        let mut client = self.client.clone();
        let request = pb::ListPartitionsRequest {};
        let response = self.call(REQUEST_TIMEOUT, client.list_partitions(request));
        decode_all(response.await?.partitions)
    }

    async fn sources(&self) -> Result<Vec<Source>> {
        let mut client = self.client.clone();
        let request = pb::ListSourcesRequest {};
        let response = self.call(REQUEST_TIMEOUT, client.list_sources(request));
        decode_all(response.await?.sources)
    }

    async fn version(&self) -> Result<u64> {
        let mut client = self.client.clone();
        let request = pb::VersionRequest {};
        let response = self.call(REQUEST_TIMEOUT, client.version(request));
        Ok(response.await?.version)
    }

    async fn tables(&self) -> Result<Vec<TableInfo>> {
        let mut client = self.client.clone();
        let request = pb::ListTablesRequest {};
        let response = self.call(REQUEST_TIMEOUT, client.list_tables(request));
        decode_all(response.await?.tables)
    }

    async fn wait_version(&self, after: u64, timeout: Duration) -> Result<u64> {
        let deadline = deadline_after(timeout);
        loop {
            let wait = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(MAX_WAIT);
            let mut client = self.client.clone();
            let request = pb::WaitVersionRequest {
                after,
                timeout_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            };
            let response = self.call(wait + REQUEST_TIMEOUT, client.wait_version(request));
            let version = response.await?.version;
            if version != after || tokio::time::Instant::now() >= deadline {
                return Ok(version);
            }
        }
    }

    async fn create_rule(&self, rule: Rule) -> Result<()> {
        let mut client = self.client.clone();
        let request = pb::CreateRuleRequest {
            rule: Some(rule.into()),
        };
        self.call(REQUEST_TIMEOUT, client.create_rule(request))
            .await?;
        Ok(())
    }

    async fn drop_rule(&self, name: &str) -> Result<()> {
        let mut client = self.client.clone();
        let request = pb::DropRuleRequest {
            name: name.to_string(),
        };
        self.call(REQUEST_TIMEOUT, client.drop_rule(request))
            .await?;
        Ok(())
    }

    async fn rules(&self) -> Result<Vec<Rule>> {
        let mut client = self.client.clone();
        let response = self.call(REQUEST_TIMEOUT, client.list_rules(pb::ListRulesRequest {}));
        decode_all(response.await?.rules)
    }

    async fn report_firings(&self, reports: Vec<FiringReport>) -> Result<()> {
        let mut client = self.client.clone();
        let request = pb::ReportFiringsRequest {
            firings: reports.into_iter().map(Into::into).collect(),
        };
        self.call(REQUEST_TIMEOUT, client.report_firings(request))
            .await?;
        Ok(())
    }

    async fn wait_firings(&self, after: u64, timeout: Duration) -> Result<Firings> {
        let wait = timeout.min(MAX_WAIT);
        let mut client = self.client.clone();
        let request = pb::WaitFiringsRequest {
            after,
            timeout_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        let response = self
            .call(wait + REQUEST_TIMEOUT, client.wait_firings(request))
            .await?;
        Ok(Firings {
            firings: decode_all(response.firings)?,
            last: response.last,
        })
    }

    async fn record_delivery(
        &self,
        rule: &str,
        delivered: bool,
        failed_attempts: u64,
    ) -> Result<()> {
        let mut client = self.client.clone();
        let request = pb::RecordDeliveryRequest {
            rule: rule.to_string(),
            delivered,
            failed_attempts,
        };
        self.call(REQUEST_TIMEOUT, client.record_delivery(request))
            .await?;
        Ok(())
    }
}
