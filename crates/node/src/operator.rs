//! The operator role: pulls from KubeArmor endpoints, stores the rows, scans them for
//! query nodes, and reports what it holds to the master.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use armorlake_common::Table;
use armorlake_ingest::{KubeArmorTls, PullerConfig, SourceStatus};
use armorlake_meta::{MetaService, NodeInfo, NodeReport, Partition, Role, Source};
use armorlake_query::{LocalOperator, OperatorHandle};
use armorlake_storage::{LocalTable, Store, StoreOptions};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::rules::RuleRunner;
use crate::{Result, VERSION};

/// Batches in flight between the pullers and the writer: enough to ride out a slow disk
/// for a moment without stalling KubeArmor's streams.
const WRITE_QUEUE: usize = 256;

/// How an operator runs.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// The node's unique name.
    pub id: String,
    /// Its replica group (operators pulling the same endpoints); empty: its own.
    pub cluster: String,
    /// Where query nodes reach it.
    pub address: String,
    /// Where its tables live.
    pub data_dir: PathBuf,
    /// KubeArmor endpoints (`host:port`) to pull from.
    pub endpoints: Vec<String>,
    /// How to pull from them: filters and TLS. Its endpoint and operator are set per
    /// endpoint.
    pub pull: PullOptions,
    /// Storage behaviour.
    pub store: StoreOptions,
    /// How often it reports to the master.
    pub heartbeat: Duration,
}

/// How an operator subscribes to KubeArmor.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// WatchAlerts filter: `all` or `policy`.
    pub alert_filter: String,
    /// WatchLogs filter: `all` or `system`.
    pub log_filter: String,
    /// TLS to KubeArmor, if its servers use it.
    pub tls: Option<KubeArmorTls>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            alert_filter: "all".into(),
            log_filter: "all".into(),
            tls: None,
        }
    }
}

/// A running operator.
#[derive(Debug)]
pub struct Operator {
    cluster: String,
    store: Store,
    sources: Vec<Arc<SourceStatus>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Operator {
    /// Opens the store, registers with the master, and starts pulling, flushing and
    /// heartbeating until `shutdown` is cancelled.
    pub async fn start(
        config: OperatorConfig,
        meta: Arc<dyn MetaService>,
        shutdown: CancellationToken,
    ) -> Result<Operator> {
        let store = Store::open(&config.data_dir, config.store.clone())?;
        meta.register(
            NodeInfo::new(
                config.id.clone(),
                Role::Operator,
                config.address.clone(),
                VERSION,
            )
            .with_cluster(config.cluster.clone()),
        )
        .await?;

        let (sink, queue) = mpsc::channel(WRITE_QUEUE);
        let mut tasks = Vec::new();
        let mut sources = Vec::new();
        for endpoint in &config.endpoints {
            let puller = PullerConfig {
                alert_filter: config.pull.alert_filter.clone(),
                log_filter: config.pull.log_filter.clone(),
                tls: config.pull.tls.clone(),
                ..PullerConfig::new(endpoint.clone(), config.id.clone())
            };
            let (status, handles) =
                armorlake_ingest::puller::spawn(puller, sink.clone(), shutdown.clone());
            sources.extend(status);
            tasks.extend(handles);
        }
        drop(sink);

        let (rules, firings) = RuleRunner::new(config.id.clone());
        tasks.push(tokio::spawn(crate::rules::run(
            rules.clone(),
            meta.clone(),
            firings,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(write_loop(
            store.clone(),
            rules,
            queue,
            shutdown.clone(),
        )));

        let flusher = store.clone();
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            flusher.run_flusher(stop.cancelled_owned()).await;
        }));

        let (reporter, id, every) = (store.clone(), config.id.clone(), config.heartbeat);
        let statuses = sources.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let report = report(&id, &reporter, &statuses);
                if let Err(e) = meta.heartbeat(&id, report).await {
                    tracing::warn!(error = %e, "heartbeat to the master failed");
                }
            }
        }));

        let cluster = match config.cluster.is_empty() {
            true => config.id.clone(),
            false => config.cluster.clone(),
        };
        Ok(Operator {
            cluster,
            store,
            sources,
            tasks,
        })
    }

    /// The operator's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The status of every stream it pulls.
    pub fn sources(&self) -> &[Arc<SourceStatus>] {
        &self.sources
    }

    /// Waits for every task to end (after shutdown), including the final flush.
    pub async fn join(self) {
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "an operator task failed");
            }
        }
    }

    /// Its rows, for the query plans that run in this process (its worker, or `up`'s
    /// query engine).
    pub fn local(&self) -> LocalOperator {
        LocalOperator {
            cluster: self.cluster.clone(),
            handle: Arc::new(StoreScan(self.store.clone())),
        }
    }
}

/// Most batches committed together: one WAL write and one fsync for all of them.
const GROUP_MAX: usize = 64;

/// The operator's single writer. Takes everything the pullers have queued (group commit),
/// appends it to the WAL with one fsync and makes it queryable. A failed write (disk full)
/// keeps the group and retries with backoff; meanwhile the queue fills and the pullers wait,
/// and nothing already stored is touched. Once a group is acknowledged, the alert rules run
/// on it.
async fn write_loop(
    store: Store,
    rules: Arc<RuleRunner>,
    mut queue: mpsc::Receiver<(Table, RecordBatch)>,
    shutdown: CancellationToken,
) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let (writer, batches, rules) = (store.clone(), group.clone(), rules.clone());
            let append = move || {
                writer.append_many(batches.clone())?;
                rules.evaluate(&batches);
                Ok::<_, armorlake_storage::Error>(())
            };
            match tokio::task::spawn_blocking(append).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "ingest stopped: storing events failed; retrying");
                }
                Err(e) => tracing::error!(error = %e, "ingest writer task failed; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// What the operator holds and pulls, in the master's terms.
fn report(operator: &str, store: &Store, sources: &[Arc<SourceStatus>]) -> NodeReport {
    let partitions = store
        .partitions()
        .into_iter()
        .map(|p| Partition {
            table: p.table,
            hour_micros: p.hour_micros,
            operator: operator.to_string(),
            rows: p.rows,
            bytes: p.bytes,
            min_micros: p.min_micros,
            max_micros: p.max_micros,
        })
        .collect();
    let sources = sources
        .iter()
        .map(|s| {
            let s = s.snapshot();
            Source {
                operator: operator.to_string(),
                endpoint: s.endpoint,
                table: s.table,
                state: s.state.name().to_string(),
                events: s.events,
                reconnects: s.reconnects,
                last_event_micros: s.last_event_micros,
                disconnected_micros: s.disconnected_micros,
                last_error: s.last_error,
                bad_messages: s.bad_messages,
            }
        })
        .collect();
    NodeReport {
        partitions,
        sources,
    }
}

/// Scans of the operator's own store.
#[derive(Debug)]
struct StoreScan(Store);

#[async_trait]
impl OperatorHandle for StoreScan {
    async fn scan(
        &self,
        state: &dyn Session,
        table: Table,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
        dictionaries: &[usize],
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        LocalTable::new(self.0.table(table).clone())
            .scan_with_dictionaries(state, projection, filters, limit, dictionaries)
            .await
    }

    async fn distinct_text(
        &self,
        state: &dyn Session,
        table: Table,
        column: usize,
    ) -> datafusion::error::Result<Option<Arc<dyn ExecutionPlan>>> {
        LocalTable::new(self.0.table(table).clone())
            .distinct_text(state, column)
            .await
    }
}
