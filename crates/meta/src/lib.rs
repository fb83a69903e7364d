//! The master's shared metadata: which nodes exist and which operator holds which rows.
//!
//! [`MetaService`] is the interface every role uses to reach the master. [`MemoryMeta`] is
//! the master's state; `up` hands it to the other roles directly, and the master process
//! serves the same trait over gRPC to operators and query nodes in other processes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use armorlake_common::Table;
use async_trait::async_trait;

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
}

/// The result of metadata operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The master's metadata as every role sees it.
#[async_trait]
pub trait MetaService: Send + Sync + fmt::Debug {
    /// Adds (or re-adds, after a restart) a node.
    async fn register(&self, node: NodeInfo) -> Result<()>;
    /// Marks a node alive and replaces what it reports holding and pulling.
    async fn heartbeat(&self, node_id: &str, report: NodeReport) -> Result<()>;
    /// Every registered node.
    async fn nodes(&self) -> Result<Vec<NodeInfo>>;
    /// The partition map.
    async fn partitions(&self) -> Result<Vec<Partition>>;
    /// Every KubeArmor stream of every operator.
    async fn sources(&self) -> Result<Vec<Source>>;
    /// A number that changes whenever nodes or partitions change.
    async fn version(&self) -> Result<u64>;
}

/// Microseconds since the epoch, now.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

#[derive(Debug, Default)]
struct State {
    nodes: BTreeMap<String, NodeInfo>,
    reports: BTreeMap<String, NodeReport>,
}

/// The master's metadata, held in memory.
#[derive(Debug, Default)]
pub struct MemoryMeta {
    state: RwLock<State>,
    version: AtomicU64,
}

impl MemoryMeta {
    /// Empty metadata.
    pub fn new() -> MemoryMeta {
        MemoryMeta::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.version.fetch_add(1, Ordering::AcqRel);
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl MetaService for MemoryMeta {
    async fn register(&self, node: NodeInfo) -> Result<()> {
        tracing::info!(id = %node.id, role = %node.role, address = %node.address, "node registered");
        self.write().nodes.insert(node.id.clone(), node);
        Ok(())
    }

    async fn heartbeat(&self, node_id: &str, report: NodeReport) -> Result<()> {
        let mut state = self.write();
        let node = state
            .nodes
            .get_mut(node_id)
            .ok_or_else(|| Error::UnknownNode(node_id.to_string()))?;
        node.heartbeat_micros = now_micros();
        state.reports.insert(node_id.to_string(), report);
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        Ok(self.read().nodes.values().cloned().collect())
    }

    async fn partitions(&self) -> Result<Vec<Partition>> {
        let state = self.read();
        Ok(state
            .reports
            .values()
            .flat_map(|r| r.partitions.clone())
            .collect())
    }

    async fn sources(&self) -> Result<Vec<Source>> {
        let state = self.read();
        Ok(state
            .reports
            .values()
            .flat_map(|r| r.sources.clone())
            .collect())
    }

    async fn version(&self) -> Result<u64> {
        Ok(self.version.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            role: Role::Operator,
            address: "127.0.0.1:1".into(),
            version: "0".into(),
            registered_micros: 1,
            heartbeat_micros: 1,
        }
    }

    #[tokio::test]
    async fn heartbeats_replace_partitions_and_bump_the_version() {
        let meta = MemoryMeta::new();
        assert!(matches!(
            meta.heartbeat("op1", NodeReport::default()).await,
            Err(Error::UnknownNode(_))
        ));
        meta.register(node("op1")).await.expect("register");
        let v0 = meta.version().await.expect("version");
        let p = Partition {
            table: Table::Alerts,
            hour_micros: 0,
            operator: "op1".into(),
            rows: 5,
            bytes: 10,
            min_micros: 1,
            max_micros: 2,
        };
        let report = NodeReport {
            partitions: vec![p.clone()],
            sources: vec![],
        };
        meta.heartbeat("op1", report.clone()).await.expect("hb");
        meta.heartbeat("op1", report).await.expect("hb");
        assert_eq!(meta.partitions().await.expect("partitions"), vec![p]);
        assert!(meta.version().await.expect("version") > v0);
        assert!(meta.nodes().await.expect("nodes")[0].heartbeat_micros > 1);
    }
}
