//! The roles as separate processes: `armorlake master`, `armorlake operator` and
//! `armorlake query`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use armorlake_meta::{
    CachedMeta, ClusterSecurity, EtcdStore, GrpcMeta, MetaService, NodeInfo, Role, StoredMeta,
};
use armorlake_query::{Liveness, QueryEngine, WorkerChannels};
use armorlake_storage::StoreOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::front::{FrontEnds, Listening};
use crate::operator::{Operator, OperatorConfig, PullOptions};
use crate::{Error, Result, VERSION};

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// What `armorlake master` runs.
#[derive(Debug, Clone)]
pub struct MasterProcess {
    /// Where the metadata service listens (gRPC).
    pub listen: SocketAddr,
    /// Where the metadata is kept.
    pub store: MetaStore,
    /// Who may call it.
    pub security: ClusterSecurity,
}

/// Where the master keeps the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaStore {
    /// An embedded redb file, `meta.redb` in this directory.
    Dir(PathBuf),
    /// An etcd cluster: its endpoints (`host:port`) and the key prefix of this armorlake.
    Etcd {
        /// etcd's client endpoints.
        endpoints: Vec<String>,
        /// Every key starts with this.
        prefix: String,
    },
}

/// Serves the shared metadata until `shutdown`.
pub async fn run_master(
    config: MasterProcess,
    shutdown: CancellationToken,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let listen = config.listen;
    let meta: Arc<dyn MetaService> = match &config.store {
        MetaStore::Dir(data_dir) => {
            std::fs::create_dir_all(data_dir)
                .map_err(io(format!("creating {}", data_dir.display())))?;
            Arc::new(StoredMeta::open_dir(data_dir).await?)
        }
        MetaStore::Etcd { endpoints, prefix } => {
            let kv = EtcdStore::connect(endpoints, prefix).await?;
            Arc::new(StoredMeta::open(kv).await?)
        }
    };
    let listener = TcpListener::bind(listen)
        .await
        .map_err(io(format!("binding the master listener {listen}")))?;
    let addr = listener
        .local_addr()
        .map_err(io("reading the master's address".into()))?;
    tokio::spawn(crate::webhook::run(meta.clone(), shutdown.clone()));
    ready(addr);
    armorlake_meta::serve(meta, listener, config.security, shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Io {
            context: "serving the master".into(),
            source: std::io::Error::other(e),
        })
}

/// What `armorlake operator` runs.
#[derive(Debug, Clone)]
pub struct OperatorProcess {
    /// The master's URL (`http://host:port`).
    pub master: String,
    /// The node's name.
    pub name: String,
    /// Its replica group; empty: its own.
    pub cluster: String,
    /// Where it serves query fragments (datafusion-distributed's worker service).
    pub listen: SocketAddr,
    /// The address query nodes reach it at; empty: the bound `listen` address.
    pub advertise: String,
    /// Where its tables live.
    pub data_dir: PathBuf,
    /// KubeArmor endpoints.
    pub kubearmor: Vec<String>,
    /// Filters and TLS for KubeArmor.
    pub pull: PullOptions,
    /// Storage behaviour.
    pub store: StoreOptions,
    /// How it authenticates to the master and the query nodes to it.
    pub security: ClusterSecurity,
}

/// Runs an operator reporting to a remote master until `shutdown`; `ready` is called with
/// its worker address once it has registered, started pulling and serves query fragments.
pub async fn run_operator(
    config: OperatorProcess,
    shutdown: CancellationToken,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let meta: Arc<dyn MetaService> =
        Arc::new(GrpcMeta::connect_lazy(&config.master, &config.security)?);
    let listener = TcpListener::bind(config.listen).await.map_err(io(format!(
        "binding the operator listener {}",
        config.listen
    )))?;
    let addr = listener
        .local_addr()
        .map_err(io("reading the operator's address".into()))?;
    let advertise = match config.advertise.is_empty() {
        true => addr.to_string(),
        false => config.advertise,
    };
    let operator = Operator::start(
        OperatorConfig {
            id: config.name,
            cluster: config.cluster,
            address: advertise,
            data_dir: config.data_dir,
            endpoints: config.kubearmor,
            pull: config.pull,
            store: config.store,
            heartbeat: Duration::from_secs(1),
        },
        meta,
        shutdown.clone(),
    )
    .await?;
    let fragments = armorlake_query::fragment::FragmentService::new(operator.local())?;
    let worker = armorlake_query::worker(
        operator.local(),
        WorkerChannels::new(config.security.clone()),
    )?;
    // The incoming connections are TCP_NODELAY: small gRPC writes must not wait for the
    // query node's delayed ACK (Nagle), or every fragment's answer stalls ~40 ms.
    let served = tonic::transport::Server::builder()
        .layer(config.security.token_layer())
        .add_service(worker.into_worker_server())
        .add_service(fragments.into_server())
        .serve_with_incoming_shutdown(
            config.security.incoming(listener),
            shutdown.clone().cancelled_owned(),
        );
    ready(addr);
    let served = served.await;
    operator.join().await;
    served.map_err(|e| Error::Io {
        context: "serving query fragments".into(),
        source: std::io::Error::other(e),
    })
}

/// What `armorlake query` runs.
#[derive(Debug, Clone)]
pub struct QueryProcess {
    /// The master's URL (`http://host:port`).
    pub master: String,
    /// The node's name.
    pub name: String,
    /// The PostgreSQL and Flight SQL front ends.
    pub front: FrontEnds,
    /// How it authenticates to the master and the operators.
    pub security: ClusterSecurity,
}

/// How often a query node probes the operators.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Runs a query node until `shutdown`: its catalog comes from the master (cached, so it goes
/// on while the master is away) and its queries run on the operators. `ready` receives the
/// front ends' addresses.
pub async fn run_query(
    config: QueryProcess,
    shutdown: CancellationToken,
    ready: impl FnOnce(Listening),
) -> Result<()> {
    let master: Arc<dyn MetaService> =
        Arc::new(GrpcMeta::connect_lazy(&config.master, &config.security)?);
    let meta = CachedMeta::new(master.clone());
    if let Err(e) = meta.refresh().await {
        tracing::warn!(error = %e, "master unreachable at start; the catalog fills once it answers");
    }
    tokio::spawn(meta.clone().run(shutdown.clone().cancelled_owned()));
    let liveness = Liveness::new();
    tokio::spawn(
        liveness
            .clone()
            .run_prober(meta.clone(), PROBE_INTERVAL, shutdown.clone()),
    );
    let channels = WorkerChannels::new(config.security.clone());
    let engine = QueryEngine::new(meta, liveness, None, channels)?
        .with_memory_limit(config.front.query_memory_limit);
    let front = config.front.bind().await?;
    let addrs = front.addrs;
    let node = NodeInfo::new(config.name, Role::Query, addrs.pg.to_string(), VERSION);
    tokio::spawn(register_until_accepted(master, node, shutdown.clone()));
    ready(addrs);
    front.serve(&engine, shutdown).await
}

/// Registers `node` with the master, retrying while it is unreachable.
async fn register_until_accepted(
    master: Arc<dyn MetaService>,
    node: NodeInfo,
    shutdown: CancellationToken,
) {
    loop {
        match master.register(node.clone()).await {
            Ok(()) => return,
            Err(e) => tracing::debug!(error = %e, "registering with the master failed; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
