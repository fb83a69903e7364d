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
use std::io::{self, Read};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use armorlake_meta::{MetaService, NodeInfo, Role};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::config::ConfigOptions;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
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
use crate::fragment::{GatherFromOperators, RunOnOneOperator};
use crate::scan::{LocalOperator, OperatorScanExec, TaskTarget};

/// How long a probe may take before the operator counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long a connection held open to an operator vouches for it without a new probe. The
/// query node's background prober renews it twice a second; past this, a scan probes again.
const HELD_FRESH: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
struct Health {
    url: Url,
    live: bool,
}

/// A connection a probe opened and kept: while its far end stays open, the process that
/// accepted it is alive. It is never written to; the operator's end closes when its process
/// exits, however it dies, and a non-blocking read then sees the end at once.
#[derive(Debug)]
struct Held {
    stream: std::net::TcpStream,
    /// When a probe last connected.
    probed: Instant,
}

impl Held {
    /// Whether the far end is still open. Drains whatever the operator sent (an HTTP/2
    /// server greets first), so that an end behind it is seen.
    fn open(&mut self) -> bool {
        let mut scratch = [0_u8; 256];
        loop {
            match (&self.stream).read(&mut scratch) {
                Ok(0) => return false,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Which operators this query node can reach. A background prober keeps it current for the
/// stages that may run anywhere. A query checks the member it is about to use for a scan, so
/// that a killed operator is skipped at once rather than after a heartbeat timeout: a probe
/// (a TCP connect) keeps its connection open, and while that connection is open and less
/// than [`HELD_FRESH`] old, checking it is one non-blocking read, not a new connection on
/// both sides. Liveness is the query node's own observation: it keeps working while the
/// master is away.
#[derive(Debug, Default)]
pub struct Liveness {
    nodes: RwLock<HashMap<String, Health>>,
    /// Per operator address, the connection its last successful probe opened.
    held: Mutex<HashMap<String, Held>>,
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

    /// Whether `node` answers now: its held connection is still open, or a new probe
    /// connects.
    pub async fn check(&self, node: &NodeInfo) -> Result<bool> {
        let url = worker_url(&node.address)?;
        let live = self.still_open(&node.address) || self.probe(&node.address).await;
        self.record(&node.id, url, live);
        Ok(live)
    }

    /// Whether the connection held to `address` is fresh and still open; a closed or stale
    /// one is dropped.
    fn still_open(&self, address: &str) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let Some(h) = held.get_mut(address) else {
            return false;
        };
        if h.probed.elapsed() < HELD_FRESH && h.open() {
            return true;
        }
        held.remove(address);
        false
    }

    /// Connects to `address`; on success the connection is held for later checks.
    async fn probe(&self, address: &str) -> bool {
        let connected = tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(address)).await;
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        // Tokio's streams are non-blocking, and stay so as standard ones.
        match connected.map(|c| c.and_then(TcpStream::into_std)) {
            Ok(Ok(stream)) => {
                let probed = Instant::now();
                held.insert(address.to_string(), Held { stream, probed });
                true
            }
            _ => {
                held.remove(address);
                false
            }
        }
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

    /// Probes every operator `meta` lists, every `interval`, until `shutdown`. Each probe
    /// is a new connection, so an operator that stopped answering without closing its
    /// connections (a lost network path) is seen within a probe timeout.
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
                        let live = this.probe(&node.address).await;
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

/// Leaves out of every scan of a plan the slots that no scan of it reads, so a query whose
/// time range rules out most operator clusters runs as few tasks as it reads clusters:
/// each task costs a worker a plan, a session and a stream per partition, empty or not.
/// Slot `i` of every scan stays the same cluster, so scans remain aligned; a plan whose
/// scans disagree on that (the cluster list changed while it was planned) is left alone.
#[derive(Debug, Default)]
pub struct CompactScanSlots;

impl PhysicalOptimizerRule for CompactScanSlots {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Per slot: the cluster some scan reads there.
        let mut read: Vec<Option<String>> = Vec::new();
        let mut slots = None;
        let mut aligned = true;
        plan.apply(|node| {
            let Some(scan) = node.downcast_ref::<OperatorScanExec>() else {
                return Ok(TreeNodeRecursion::Continue);
            };
            let tasks = scan.tasks();
            if *slots.get_or_insert(tasks.len()) != tasks.len() {
                aligned = false;
                return Ok(TreeNodeRecursion::Stop);
            }
            read.resize(tasks.len(), None);
            for (slot, targets) in read.iter_mut().zip(tasks) {
                for target in targets {
                    match slot {
                        None => *slot = Some(target.cluster.clone()),
                        Some(cluster) if *cluster == target.cluster => {}
                        Some(_) => aligned = false,
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let kept: Vec<usize> = (0..read.len()).filter(|&i| read[i].is_some()).collect();
        if !aligned || kept.is_empty() || kept.len() == read.len() {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let Some(scan) = node.downcast_ref::<OperatorScanExec>() else {
                return Ok(Transformed::no(node));
            };
            let tasks = kept.iter().map(|&i| scan.tasks()[i].clone()).collect();
            let scan = scan.with_tasks(pad_lone_remote_slot(tasks))?;
            Ok(Transformed::yes(Arc::new(scan) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "armorlake_compact_scan_slots"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A lone slot read by another process gets an empty companion: the planner runs a
/// single-task stage on the query node itself, which holds no rows.
pub(crate) fn pad_lone_remote_slot(mut tasks: Vec<Vec<TaskTarget>>) -> Vec<Vec<TaskTarget>> {
    let remote = tasks.iter().flatten().any(|t| !t.url.is_empty());
    if remote && tasks.len() == 1 {
        tasks.push(Vec::new());
    }
    tasks
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
        .with_distributed_channel_resolver(channels.clone())
        .with_optimizer_rule(Arc::new(crate::eager_aggregate::EagerAggregation))
        .with_physical_optimizer_rule(Arc::new(crate::count_by_text::CountByText))
        .with_physical_optimizer_rule(Arc::new(CompactScanSlots))
        .with_physical_optimizer_rule(Arc::new(RunOnOneOperator::new(channels.clone())))
        .with_physical_optimizer_rule(Arc::new(GatherFromOperators::new(channels)))
        .with_physical_optimizer_rule(Arc::new(crate::local::WhereScansRun))
        .with_distributed_planner()
        .with_distributed_user_codec(ArmorlakeCodec)
        .with_distributed_desired_task_count_handler(desired_task_count)
        .with_distributed_scale_up_leaf_node_handler(scale_up)
        .with_distributed_route_tasks_handler(route_tasks)
        .with_distributed_max_tasks_per_stage(MAX_TASKS_PER_STAGE)?
        // A union's inputs run in the same tasks, each reading its slot: scans stay aligned
        // slot by slot, and a union over `up`'s local operator, or over operators' gathered
        // answers, stays on this process. (Run in tasks of their own, its inputs would be
        // sent to workers: `up` has none, and a worker cannot run an `OperatorPlanExec`.)
        .with_distributed_children_isolator_unions(false)?;
    let mut state = state.build();
    crate::functions::register(&mut state)?;
    Ok(state)
}

/// The worker an operator serves: it runs the stages query nodes send, reading `local`'s
/// rows for their scans; `channels` reach other workers when a stage reads from them.
///
/// Every task needs a session to decode its plan and run it. The library builds one per
/// task (all of DataFusion's functions registered again, its optimizer rules made anew);
/// here each task's session is a copy of one built at start, given the task's own
/// configuration (its task number, its feeds, the codec, the channels and the operator).
pub fn worker(local: LocalOperator, channels: crate::WorkerChannels) -> Result<Worker> {
    let local = Arc::new(local);
    let mut prototype = SessionStateBuilder::new().with_default_features().build();
    crate::functions::register(&mut prototype)?;
    let prototype = Arc::new(prototype);
    Ok(Worker::from_session_builder(
        move |ctx: WorkerQueryContext| {
            let (prototype, local, channels) = (prototype.clone(), local.clone(), channels.clone());
            async move {
                let mut builder = ctx.builder;
                let mut config = builder.config().take().unwrap_or_default();
                config.set_distributed_user_codec(ArmorlakeCodec);
                config.set_distributed_channel_resolver(channels);
                config.set_extension(local);
                let mut state = SessionState::clone(&prototype);
                *state.config_mut() = config;
                Ok(state)
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use armorlake_common::Table;
    use datafusion::physical_plan::union::UnionExec;

    fn target(cluster: &str, remote: bool) -> Vec<TaskTarget> {
        vec![TaskTarget {
            cluster: cluster.into(),
            node: format!("{cluster}-1"),
            url: match remote {
                true => format!("http://{cluster}:7000/"),
                false => String::new(),
            },
        }]
    }

    fn scan(tasks: Vec<Vec<TaskTarget>>) -> Arc<dyn ExecutionPlan> {
        Arc::new(OperatorScanExec::new(Table::Logs, None, vec![], None, tasks, 2).unwrap())
    }

    /// The slots of every scan in `plan`, as cluster names ("" for an empty slot).
    fn slots(plan: &Arc<dyn ExecutionPlan>) -> Vec<Vec<String>> {
        let mut all = Vec::new();
        plan.apply(|node| {
            if let Some(scan) = node.downcast_ref::<OperatorScanExec>() {
                let names = scan.tasks().iter().map(|t| {
                    t.iter()
                        .map(|t| t.cluster.as_str())
                        .collect::<Vec<_>>()
                        .join("+")
                });
                all.push(names.collect());
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        all
    }

    fn compact(plan: Arc<dyn ExecutionPlan>) -> Vec<Vec<String>> {
        slots(
            &CompactScanSlots
                .optimize(plan, &ConfigOptions::default())
                .unwrap(),
        )
    }

    #[test]
    fn a_scan_keeps_only_the_slots_it_reads_and_a_lone_remote_one_is_padded() {
        let one = scan(vec![vec![], target("b", true), vec![]]);
        assert_eq!(compact(one), [["b", ""]]);
        let two = scan(vec![target("a", true), vec![], target("c", true)]);
        assert_eq!(compact(two), [["a", "c"]]);
        let local = scan(vec![vec![], target("b", false), vec![]]);
        assert_eq!(compact(local), [["b"]]);
        let full = scan(vec![target("a", true), target("b", true)]);
        assert_eq!(compact(full), [["a", "b"]]);
    }

    #[test]
    fn scans_of_one_plan_keep_every_slot_any_of_them_reads_and_stay_aligned() {
        let a = scan(vec![vec![], target("b", true), vec![]]);
        let b = scan(vec![target("a", true), vec![], vec![]]);
        let union = UnionExec::try_new(vec![a, b]).unwrap();
        assert_eq!(compact(union), [["", "b"], ["a", ""]]);
    }

    #[test]
    fn scans_that_disagree_on_the_clusters_are_left_alone() {
        let a = scan(vec![vec![], target("b", true), vec![]]);
        let b = scan(vec![vec![], target("c", true), vec![]]);
        let union = UnionExec::try_new(vec![a, b]).unwrap();
        assert_eq!(compact(union), [["", "b", ""], ["", "c", ""]]);
        let a = scan(vec![vec![], target("b", true), vec![]]);
        let b = scan(vec![vec![], target("b", true)]);
        let union = UnionExec::try_new(vec![a, b]).unwrap();
        assert_eq!(compact(union), [vec!["", "b", ""], vec!["", "b"]]);
    }

    #[tokio::test]
    async fn a_held_connection_vouches_for_an_operator_until_its_process_closes_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let node = NodeInfo::new("op-1", Role::Operator, address.clone(), "test");
        let liveness = Liveness::new();

        assert!(liveness.check(&node).await.unwrap());
        let (mut accepted, _) = listener.accept().await.unwrap();
        // What a server sends first is read and ignored.
        tokio::io::AsyncWriteExt::write_all(&mut accepted, b"greeting")
            .await
            .unwrap();
        for _ in 0..3 {
            assert!(liveness.check(&node).await.unwrap());
        }
        // Checks while the connection is open made no new one.
        let another = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(another.is_err(), "a check connected again");
        assert_eq!(liveness.live_urls(), [worker_url(&address).unwrap()]);

        // The process exits: its end closes and its port stops listening. The next check
        // says so (on loopback the end arrives before `close` returns; a few retries keep
        // a loaded machine from failing the test).
        drop(accepted);
        drop(listener);
        let mut live = true;
        for _ in 0..50 {
            live = liveness.check(&node).await.unwrap();
            if !live {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!live, "a closed operator still counts as live");
        assert!(liveness.live_urls().is_empty());
    }
}
