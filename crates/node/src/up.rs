//! `armorlake up`: master, operator and query roles in one process, fed by the built-in
//! KubeArmor simulator unless real endpoints are given.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use armorlake_meta::{ClusterSecurity, MemoryMeta, MetaService, NodeInfo, Role};
use armorlake_query::{Liveness, QueryEngine, WorkerChannels};
use armorlake_sim::{SimConfig, Simulator};
use armorlake_storage::StoreOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::front::{FrontEnds, Listening};
use crate::operator::{Operator, OperatorConfig, PullOptions};
use crate::{Error, Result, VERSION};

/// What `up` runs.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Where the operator keeps its tables.
    pub data_dir: PathBuf,
    /// The PostgreSQL and Flight SQL front ends.
    pub front: FrontEnds,
    /// KubeArmor endpoints; none starts the built-in simulator.
    pub kubearmor: Vec<String>,
    /// Events per second of the built-in simulator.
    pub simulate: u64,
    /// How to subscribe to KubeArmor.
    pub pull: PullOptions,
    /// How the operator stores events (flush interval, retention, …).
    pub store: StoreOptions,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// Runs every role until `shutdown` is cancelled. `ready` receives the front ends'
/// addresses once clients can connect.
pub async fn run_up(
    config: UpConfig,
    shutdown: CancellationToken,
    ready: impl FnOnce(Listening),
) -> Result<()> {
    let mut endpoints = config.kubearmor.clone();
    let mut sim_task = None;
    if endpoints.is_empty() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("binding the built-in simulator".into()))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the simulator's address".into()))?;
        let sim = Simulator::new(SimConfig {
            rate: config.simulate,
            ..SimConfig::default()
        });
        let stop = shutdown.clone();
        sim_task = Some(tokio::spawn(sim.serve(listener, stop.cancelled_owned())));
        tracing::info!(%addr, rate = config.simulate, "built-in KubeArmor simulator started");
        endpoints.push(addr.to_string());
    }

    let meta: Arc<dyn MetaService> = Arc::new(MemoryMeta::new());
    meta.register(NodeInfo::new("master", Role::Master, "", VERSION))
        .await?;
    tokio::spawn(crate::webhook::run(meta.clone(), shutdown.clone()));

    let operator = Operator::start(
        OperatorConfig {
            id: "operator".into(),
            cluster: String::new(),
            address: String::new(),
            data_dir: config.data_dir.clone(),
            endpoints,
            pull: config.pull.clone(),
            store: config.store.clone(),
            heartbeat: Duration::from_secs(1),
        },
        meta.clone(),
        shutdown.clone(),
    )
    .await?;

    // The query engine plans as on a query node; the scans of this process's operator run
    // here, without a network hop.
    let meta_for_query = meta.clone();
    // Every role runs in this process: no node-to-node link to secure.
    let channels = WorkerChannels::new(ClusterSecurity::none());
    let engine = QueryEngine::new(meta, Liveness::new(), Some(operator.local()), channels)?
        .with_memory_limit(config.front.query_memory_limit);
    let front = config.front.bind().await?;
    let addrs = front.addrs;
    meta_for_query
        .register(NodeInfo::new(
            "query",
            Role::Query,
            addrs.pg.to_string(),
            VERSION,
        ))
        .await?;
    ready(addrs);

    front.serve(&engine, shutdown.clone()).await?;
    operator.join().await;
    if let Some(task) = sim_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Simulator(e.to_string())),
            Err(e) => return Err(Error::Simulator(e.to_string())),
        }
    }
    Ok(())
}
