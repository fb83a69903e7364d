//! The roles as separate processes: `armorlake master` and `armorlake operator`.
//!
//! The query role across processes comes with the distributed query path (datafusion-
//! distributed workers on the operators); until then `up` is the way to query.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use armorlake_meta::{GrpcMeta, MetaService, StoredMeta};
use armorlake_storage::StoreOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::operator::{Operator, OperatorConfig, PullOptions};
use crate::{Error, Result};

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// Serves the shared metadata, persisted under `data_dir`, until `shutdown`.
pub async fn run_master(
    listen: SocketAddr,
    data_dir: PathBuf,
    shutdown: CancellationToken,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    std::fs::create_dir_all(&data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
    let meta: Arc<dyn MetaService> = Arc::new(StoredMeta::open_dir(&data_dir).await?);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(io(format!("binding the master listener {listen}")))?;
    let addr = listener
        .local_addr()
        .map_err(io("reading the master's address".into()))?;
    ready(addr);
    armorlake_meta::serve(meta, listener, shutdown.cancelled_owned())
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
    /// The address query nodes reach it at.
    pub advertise: String,
    /// Where its tables live.
    pub data_dir: PathBuf,
    /// KubeArmor endpoints.
    pub kubearmor: Vec<String>,
    /// Filters and TLS for KubeArmor.
    pub pull: PullOptions,
    /// Storage behaviour.
    pub store: StoreOptions,
}

/// Runs an operator reporting to a remote master until `shutdown`; `ready` is called once it
/// has registered and started pulling.
pub async fn run_operator(
    config: OperatorProcess,
    shutdown: CancellationToken,
    ready: impl FnOnce(),
) -> Result<()> {
    let meta: Arc<dyn MetaService> = Arc::new(GrpcMeta::connect_lazy(&config.master)?);
    let operator = Operator::start(
        OperatorConfig {
            id: config.name,
            cluster: config.cluster,
            address: config.advertise,
            data_dir: config.data_dir,
            endpoints: config.kubearmor,
            pull: config.pull,
            store: config.store,
            heartbeat: Duration::from_secs(1),
        },
        meta,
        shutdown,
    )
    .await?;
    ready();
    operator.join().await;
    Ok(())
}
