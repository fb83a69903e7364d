//! The master's shared metadata: which nodes exist, how operators group into clusters,
//! which tables exist with which Arrow schemas, and which operator holds which rows.
//!
//! [`MetaService`] is the interface every role uses to reach the master. [`StoredMeta`] is
//! the master's state, kept in a [`KvStore`]: [`MemoryMeta`] (in memory) is what `up` hands
//! to the other roles directly; the `master` process keeps it in a [`RedbStore`] file and
//! serves it over gRPC ([`serve`], [`MetaServer`]); other processes reach it with
//! [`GrpcMeta`], which implements the same trait.

mod alerting;
mod cache;
mod convert;
mod etcd_store;
mod grpc;
mod kv;
mod redb_store;
pub mod security;
mod stored;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use armorlake_common::Table;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;

pub use alerting::{Firing, FiringReport, Firings, Rule, RuleStats, WindowPart};
pub use cache::CachedMeta;
pub use convert::{schema_from_ipc, schema_to_ipc};
pub use etcd_store::EtcdStore;
pub use grpc::{GrpcMeta, MAX_WAIT, MetaServer, serve};
pub use kv::{Entry, KvStore, MemoryKv, WriteBatch, WriteOp};
pub use redb_store::RedbStore;
pub use security::{ClusterSecurity, ClusterTls};
pub use stored::{KEPT_FIRINGS, META_FILE, MemoryMeta, StoredMeta};

/// What a node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Holds the shared metadata.
    Master,
    /// Pulls KubeArmor events, stores them, executes query fragments.
    Operator,
    /// Serves clients, plans and distributes queries.
    Query,
}

impl Role {
    /// The role's name as shown in `armorlake.nodes`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Operator => "operator",
            Role::Query => "query",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Unique name of the node.
    pub id: String,
    /// What it does.
    pub role: Role,
    /// Where other nodes reach it (`host:port`), empty when it serves nothing.
    pub address: String,
    /// The armorlake version it runs.
    pub version: String,
    /// When it registered, microseconds since the epoch.
    pub registered_micros: i64,
    /// Its last heartbeat, microseconds since the epoch.
    pub heartbeat_micros: i64,
    /// The operator cluster (replica group) it belongs to; empty means a cluster of its
    /// own, named by its id (see [`NodeInfo::cluster_name`]).
    pub cluster: String,
}

impl NodeInfo {
    /// A node registering now: both timestamps are now, and it forms a cluster of its own.
    pub fn new(
        id: impl Into<String>,
        role: Role,
        address: impl Into<String>,
        version: impl Into<String>,
    ) -> NodeInfo {
        let now = now_micros();
        NodeInfo {
            id: id.into(),
            role,
            address: address.into(),
            version: version.into(),
            registered_micros: now,
            heartbeat_micros: now,
            cluster: String::new(),
        }
    }

    /// The same node, as a replica of `cluster`.
    pub fn with_cluster(mut self, cluster: impl Into<String>) -> NodeInfo {
        self.cluster = cluster.into();
        self
    }

    /// The cluster it belongs to: [`NodeInfo::cluster`], or its id when that is empty.
    pub fn cluster_name(&self) -> &str {
        if self.cluster.is_empty() {
            &self.id
        } else {
            &self.cluster
        }
    }
}

/// An operator cluster: operators that hold replicas of the same data, so that any live
/// member can serve a query for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Its name ([`NodeInfo::cluster_name`] of its members).
    pub name: String,
    /// Ids of its operators, sorted.
    pub members: Vec<String>,
}

/// The operator clusters that `nodes` form, sorted by name.
pub fn clusters(nodes: &[NodeInfo]) -> Vec<Cluster> {
    let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for node in nodes.iter().filter(|n| n.role == Role::Operator) {
        groups
            .entry(node.cluster_name())
            .or_default()
            .push(node.id.clone());
    }
    groups
        .into_iter()
        .map(|(name, mut members)| {
            members.sort();
            Cluster {
                name: name.to_string(),
                members,
            }
        })
        .collect()
}

/// A table the cluster stores, with its Arrow schema.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// The SQL name (`alerts`, `logs`, `messages`).
    pub name: String,
    /// Its columns.
    pub schema: SchemaRef,
}

impl TableInfo {
    /// The built-in event tables of [`Table::ALL`], with their schemas.
    pub fn builtin() -> Vec<TableInfo> {
        Table::ALL
            .into_iter()
            .map(|t| TableInfo {
                name: t.name().to_string(),
                schema: t.schema(),
            })
            .collect()
    }
}

/// What one operator holds of one table for one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The table.
    pub table: Table,
    /// Start of the hour, microseconds since the epoch.
    pub hour_micros: i64,
    /// The operator holding the rows.
    pub operator: String,
    /// Rows.
    pub rows: u64,
    /// Bytes on disk (and in memory, for rows not yet in Parquet).
    pub bytes: u64,
    /// Earliest `timestamp`, microseconds.
    pub min_micros: i64,
    /// Latest `timestamp`, microseconds.
    pub max_micros: i64,
}

/// One KubeArmor stream an operator pulls (endpoint × table), as `armorlake.sources` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The operator pulling it.
    pub operator: String,
    /// The KubeArmor address.
    pub endpoint: String,
    /// The table the stream fills.
    pub table: Table,
    /// `connecting`, `streaming` or `reconnecting`.
    pub state: String,
    /// Events received since the operator started.
    pub events: u64,
    /// Times the stream was re-opened.
    pub reconnects: u64,
    /// Arrival of the last event, microseconds since the epoch.
    pub last_event_micros: Option<i64>,
    /// Time spent without a stream, microseconds.
    pub disconnected_micros: i64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Messages skipped as oversized or undecodable (each ends the stream, which is
    /// re-opened).
    pub bad_messages: u64,
}

/// What an operator reports with each heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeReport {
    /// Everything it holds, per table and hour.
    pub partitions: Vec<Partition>,
    /// Every stream it pulls.
    pub sources: Vec<Source>,
}

/// Errors reaching or updating the metadata.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A heartbeat from a node that never registered.
    #[error("node {0} is not registered")]
    UnknownNode(String),
    /// The master could not be reached.
    #[error("master unreachable: {0}")]
    Unavailable(String),
    /// The master refused this node: it lacks the cluster certificate or token.
    #[error("refused by the master: {0}")]
    Unauthenticated(String),
    /// Node-to-node security is misconfigured (unreadable certificates, an empty token).
    #[error("cluster security: {0}")]
    Security(String),
    /// The master's store failed to read or write.
    #[error("metadata store failed: {0}")]
    Storage(String),
    /// A message or stored record that does not decode (unknown role or table, bad schema).
    #[error("invalid metadata: {0}")]
    Invalid(String),
    /// An alert rule of that name exists already.
    #[error("alert rule \"{0}\" already exists")]
    RuleExists(String),
    /// No alert rule has that name.
    #[error("alert rule \"{0}\" does not exist")]
    UnknownRule(String),
}

/// The result of metadata operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How often the default [`MetaService::wait_version`] polls.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The master's metadata as every role sees it.
#[async_trait]
pub trait MetaService: Send + Sync + fmt::Debug {
    /// Adds (or re-adds, after a restart) a node.
    async fn register(&self, node: NodeInfo) -> Result<()>;
    /// Marks a node alive and replaces what it reports holding and pulling.
    /// [`Error::UnknownNode`] when it never registered.
    async fn heartbeat(&self, node_id: &str, report: NodeReport) -> Result<()>;
    /// Every registered node.
    async fn nodes(&self) -> Result<Vec<NodeInfo>>;
    /// The partition map.
    async fn partitions(&self) -> Result<Vec<Partition>>;
    /// Every KubeArmor stream of every operator.
    async fn sources(&self) -> Result<Vec<Source>>;
    /// A number that changes whenever nodes, tables or partitions change. It only grows,
    /// across restarts too, as long as the master keeps its store.
    async fn version(&self) -> Result<u64>;

    /// The tables and their Arrow schemas. By default the built-in event tables.
    async fn tables(&self) -> Result<Vec<TableInfo>> {
        Ok(TableInfo::builtin())
    }

    /// Waits until the version differs from `after` (normally: exceeds it; a lower number
    /// means the master's store was replaced) or `timeout` passes, and returns the version
    /// then. A cache refreshes when the answer differs from the version it holds.
    ///
    /// The default polls [`MetaService::version`].
    async fn wait_version(&self, after: u64, timeout: Duration) -> Result<u64> {
        let deadline = deadline_after(timeout);
        loop {
            let version = self.version().await?;
            let now = tokio::time::Instant::now();
            if version != after || now >= deadline {
                return Ok(version);
            }
            tokio::time::sleep_until(deadline.min(now + POLL_INTERVAL)).await;
        }
    }

    /// Stores an alert rule and bumps the version; [`Error::RuleExists`] when its name is
    /// taken.
    async fn create_rule(&self, rule: Rule) -> Result<()>;
    /// Removes an alert rule and bumps the version; [`Error::UnknownRule`] when there is
    /// none of that name.
    async fn drop_rule(&self, name: &str) -> Result<()>;
    /// Every alert rule, with its counters.
    async fn rules(&self) -> Result<Vec<Rule>>;
    /// Records what operators' rules matched (merging window counts across operators).
    async fn report_firings(&self, reports: Vec<FiringReport>) -> Result<()>;
    /// The recorded firings numbered after `after`, as soon as there is one, or none when
    /// `timeout` passes first (a zero timeout answers at once). Only the newest firings
    /// are kept (see `docs/alerting.md`).
    async fn wait_firings(&self, after: u64, timeout: Duration) -> Result<Firings>;
    /// Counts one webhook delivery of `rule`'s: `delivered` or given up (a dead letter),
    /// after `failed_attempts` failed attempts.
    async fn record_delivery(
        &self,
        rule: &str,
        delivered: bool,
        failed_attempts: u64,
    ) -> Result<()>;

    /// The operator clusters, from [`MetaService::nodes`].
    async fn clusters(&self) -> Result<Vec<Cluster>> {
        Ok(clusters(&self.nodes().await?))
    }
}

/// The instant `timeout` from now; a year from now for longer (or endless) timeouts.
pub(crate) fn deadline_after(timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout.min(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// [`MetaService::wait_version`] over a version kept in a watch channel: the version once it
/// differs from `after`, or when `timeout` passes.
pub(crate) async fn wait_for_change(
    version: &tokio::sync::watch::Sender<u64>,
    after: u64,
    timeout: Duration,
) -> u64 {
    let mut changes = version.subscribe();
    // Err only when the sender is gone, which the caller prevents; either way: answer now.
    let _ = tokio::time::timeout(timeout, changes.wait_for(|v| *v != after)).await;
    *changes.borrow()
}

/// Microseconds since the epoch, now.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_without_a_cluster_form_their_own() {
        let nodes = vec![
            NodeInfo::new("op2", Role::Operator, "a:1", "0").with_cluster("east"),
            NodeInfo::new("op1", Role::Operator, "a:2", "0").with_cluster("east"),
            NodeInfo::new("op3", Role::Operator, "a:3", "0"),
            NodeInfo::new("q", Role::Query, "a:4", "0"),
        ];
        assert_eq!(
            clusters(&nodes),
            vec![
                Cluster {
                    name: "east".into(),
                    members: vec!["op1".into(), "op2".into()],
                },
                Cluster {
                    name: "op3".into(),
                    members: vec!["op3".into()],
                },
            ]
        );
        assert!(nodes[3].registered_micros > 0);
    }
}
