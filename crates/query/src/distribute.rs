//! Distributed execution on datafusion-distributed: which operators are alive, how scans
//! are split into tasks, where each task runs, and the worker the operators serve.
//!
//! A scan has one slot per operator cluster, in the cluster order of the metadata, holding the
//! cluster and the live member chosen to serve it (empty when the time range rules the
//! cluster out). Slot `i` becomes task `i`, and the router sends it to its member, so scans
//! of one stage stay aligned and every task reads exactly one cluster's rows. A lone remote
//! slot is padded with an empty one, because the planner runs single-task stages on the
//! query node itself, which holds no rows.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use armorlake_meta::{MetaService, NodeInfo, Role};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::SessionConfig;
use datafusion_distributed::{
    DesiredTaskCountEvent, DesiredTaskCountEventResponse, DistributedExt, NetworkBoundaryExt,
    RouteTasksEvent, RouteTasksEventResponse, ScaleUpLeafNodeEvent, ScaleUpLeafNodeEventResponse,
    SessionStateBuilderExt, Worker, WorkerQueryContext, WorkerResolver,
    get_distributed_worker_resolver,
};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::codec::ArmorlakeCodec;
use crate::scan::{LocalOperator, OperatorScanExec};

/// How long a probe may take before the operator counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone)]
struct Health {
    url: Url,
    live: bool,
}

/// Which operators this query node can reach. A background prober keeps it current for the
/// stages that may run anywhere; a query probes the member it is about to use for a scan
/// (a TCP connect: well under a millisecond nearby), so a killed operator is skipped at once
/// rather than after a heartbeat timeout. Liveness is the query node's own observation: it
/// keeps working while the master is away.
#[derive(Debug, Default)]
pub struct Liveness {
    nodes: RwLock<HashMap<String, Health>>,
}

/// The URL of an operator's worker service.
pub fn worker_url(address: &str) -> Result<Url> {
    Url::parse(&format!("http://{address}")).map_err(|e| {
        DataFusionError::Configuration(format!("operator address {address:?} is not valid: {e}"))
    })
}

impl Liveness {
    /// Nothing known yet.
    pub fn new() -> Arc<Liveness> {
        Arc::new(Liveness::default())
    }

    /// Whether `node` answers now.
    pub async fn check(&self, node: &NodeInfo) -> Result<bool> {
        let url = worker_url(&node.address)?;
        let live = probe(&node.address).await;
        self.record(&node.id, url, live);
        Ok(live)
    }

    fn record(&self, id: &str, url: Url, live: bool) {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        nodes.insert(id.to_string(), Health { url, live });
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Health>> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The workers last seen alive.
    pub fn live_urls(&self) -> Vec<Url> {
        let mut urls: Vec<Url> = self
            .read()
            .values()
            .filter(|h| h.live)
            .map(|h| h.url.clone())
            .collect();
        urls.sort();
        urls.dedup();
        urls
    }

    /// Probes every operator `meta` lists, every `interval`, until `shutdown`.
    pub async fn run_prober(
        self: Arc<Self>,
        meta: Arc<dyn MetaService>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            if let Ok(nodes) = meta.nodes().await {
                let operators = nodes
                    .into_iter()
                    .filter(|n| n.role == Role::Operator && !n.address.is_empty());
                let probes = operators.map(|node| {
                    let this = self.clone();
                    async move {
                        let Ok(url) = worker_url(&node.address) else {
                            return;
                        };
                        let live = probe(&node.address).await;
                        this.record(&node.id, url, live);
                    }
                });
                futures::future::join_all(probes).await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

async fn probe(address: &str) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(address)).await,
        Ok(Ok(_))
    )
}

/// The workers a coordinator may send stages to: the operators last seen alive.
#[derive(Debug, Clone)]
struct LiveWorkers(Arc<Liveness>);

impl WorkerResolver for LiveWorkers {
    fn get_urls(&self) -> Result<Vec<Url>> {
        Ok(self.0.live_urls())
    }
}

/// A scan runs on as many tasks as it has slots, or on this process alone when the
/// operator it reads lives here (`up`).
fn desired_task_count(ev: DesiredTaskCountEvent) -> Option<Result<DesiredTaskCountEventResponse>> {
    let scan = ev.plan.downcast_ref::<OperatorScanExec>()?;
    let local = ev.session_config.get_extension::<LocalOperator>();
    let all_local = scan
        .tasks()
        .iter()
        .flatten()
        .all(|t| local.as_ref().is_some_and(|l| l.cluster == t.cluster));
    Some(Ok(match all_local {
        true => DesiredTaskCountEventResponse::maximum(1),
        false => DesiredTaskCountEventResponse::desired(scan.tasks().len()),
    }))
}

/// Once the stage's task count is settled, re-spreads the slots over it.
fn scale_up(ev: ScaleUpLeafNodeEvent) -> Option<Result<ScaleUpLeafNodeEventResponse>> {
    let scan = ev.plan.downcast_ref::<OperatorScanExec>()?;
    if scan.tasks().len() == ev.task_count {
        return None;
    }
    Some(
        scan.with_task_count(ev.task_count)
            .map(|s| ScaleUpLeafNodeEventResponse::new(Arc::new(s))),
    )
}

/// Sends each task of a stage that scans operators to the member chosen for its slot.
fn route_tasks(ev: RouteTasksEvent) -> Option<Result<RouteTasksEventResponse>> {
    let mut per_task: Vec<Option<(String, Url)>> = vec![None; ev.task_count];
    let mut found = false;
    let walked = ev.plan.apply(|node| {
        if node.is_network_boundary() {
            return Ok(TreeNodeRecursion::Jump);
        }
        let Some(scan) = node.downcast_ref::<OperatorScanExec>() else {
            return Ok(TreeNodeRecursion::Continue);
        };
        found = true;
        for (i, task) in scan.tasks().iter().enumerate().take(ev.task_count) {
            for target in task {
                let url = worker_url_of(&target.url)?;
                match &per_task[i] {
                    None => per_task[i] = Some((target.cluster.clone(), url)),
                    Some((cluster, _)) if *cluster == target.cluster => {}
                    Some((cluster, _)) => {
                        return Err(DataFusionError::NotImplemented(format!(
                            "one task would have to read the rows of operator clusters \
                             {cluster} and {}; this query shape cannot be distributed",
                            target.cluster
                        )));
                    }
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if let Err(e) = walked {
        return Some(Err(e));
    }
    if !found {
        return None;
    }
    // Empty tasks go where the stage already runs, so no other operator is contacted.
    let fallback = match per_task.iter().flatten().next() {
        Some((_, url)) => url.clone(),
        None => match get_distributed_worker_resolver(ev.task_ctx.session_config())
            .and_then(|r| r.get_urls())
        {
            Ok(urls) if !urls.is_empty() => urls[0].clone(),
            Ok(_) => {
                return Some(Err(DataFusionError::Execution(
                    "no operator is reachable".into(),
                )));
            }
            Err(e) => return Some(Err(e)),
        },
    };
    let urls = per_task
        .into_iter()
        .map(|t| t.map_or_else(|| fallback.clone(), |(_, url)| url))
        .collect();
    Some(Ok(RouteTasksEventResponse::new(urls)))
}

fn worker_url_of(url: &str) -> Result<Url> {
    Url::parse(url).map_err(|e| DataFusionError::Internal(format!("worker URL {url:?}: {e}")))
}

/// Limits the planner's tasks per stage: high enough never to merge two clusters' slots.
const MAX_TASKS_PER_STAGE: usize = 4096;

/// A coordinating session: DataFusion's planner followed by datafusion-distributed's, with
/// armorlake's scan handlers, over the operators `liveness` reaches. `local` is the operator
/// of this process, if any (`up`); `channels` reach the workers.
pub fn coordinator_state(
    config: SessionConfig,
    liveness: Arc<Liveness>,
    local: Option<LocalOperator>,
    channels: crate::WorkerChannels,
) -> Result<SessionState> {
    let mut config = config;
    if let Some(local) = local {
        config = config.with_extension(Arc::new(local));
    }
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_distributed_worker_resolver(LiveWorkers(liveness))
        .with_distributed_channel_resolver(channels)
        .with_distributed_planner()
        .with_distributed_user_codec(ArmorlakeCodec)
        .with_distributed_desired_task_count_handler(desired_task_count)
        .with_distributed_scale_up_leaf_node_handler(scale_up)
        .with_distributed_route_tasks_handler(route_tasks)
        .with_distributed_max_tasks_per_stage(MAX_TASKS_PER_STAGE)?;
    let mut state = state.build();
    crate::functions::register(&mut state)?;
    Ok(state)
}

/// The worker an operator serves: it runs the stages query nodes send, reading `local`'s
/// rows for their scans; `channels` reach other workers when a stage reads from them.
pub fn worker(local: LocalOperator, channels: crate::WorkerChannels) -> Worker {
    let local = Arc::new(local);
    Worker::from_session_builder(move |ctx: WorkerQueryContext| {
        let local = local.clone();
        let channels = channels.clone();
        async move {
            let mut builder = ctx
                .builder
                .with_distributed_user_codec(ArmorlakeCodec)
                .with_distributed_channel_resolver(channels);
            let config = builder.config().get_or_insert_default();
            config.set_extension(local);
            let mut state = builder.build();
            crate::functions::register(&mut state)?;
            Ok(state)
        }
    })
}
