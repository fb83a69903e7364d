//! [`StoredMeta`]: the master's state, served from memory and written through to a
//! [`KvStore`], so a master reopening the same store finds the same nodes, tables,
//! partitions and sources, and a version that only grows.
//!
//! Records (protobuf, `armorlake.meta.v1`):
//!
//! | key | value |
//! |---|---|
//! | `node/<id>` | `NodeInfo` |
//! | `report/<id>` | `NodeReport`: the node's last heartbeat (partitions, sources) |
//! | `table/<name>` | `TableInfo`: name and Arrow IPC schema |
//! | `version` | u64, big-endian |
//!
//! Every change writes its records and the next version in one atomic batch. Alert rules
//! and firings are described in `stored/alerting.rs`.

mod alerting;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use armorlake_proto::meta as pb;
use async_trait::async_trait;
use prost::Message;
use tokio::sync::{Mutex, MutexGuard, watch};

use crate::kv::{KvStore, MemoryKv, WriteBatch};
use crate::redb_store::RedbStore;
use crate::{
    Error, FiringReport, Firings, MetaService, NodeInfo, NodeReport, Partition, Result, Rule,
    Source, TableInfo, now_micros,
};

pub use alerting::KEPT_FIRINGS;

const NODE: &str = "node/";
const REPORT: &str = "report/";
const TABLE: &str = "table/";
const VERSION: &[u8] = b"version";

/// The file a master keeps its metadata in, under its data directory.
pub const META_FILE: &str = "meta.redb";

#[derive(Debug, Default)]
struct State {
    nodes: BTreeMap<String, NodeInfo>,
    reports: BTreeMap<String, NodeReport>,
    tables: BTreeMap<String, TableInfo>,
    alerting: alerting::Alerting,
}

/// The master's metadata: read from memory, every change written through to `S` first.
#[derive(Debug)]
pub struct StoredMeta<S> {
    store: S,
    state: RwLock<State>,
    /// Serialises changes, so records and versions are written in order.
    writer: Mutex<()>,
    version: watch::Sender<u64>,
    /// The newest firing's number.
    firing_seq: watch::Sender<u64>,
}

/// The master's metadata held in memory only: what `up` uses.
pub type MemoryMeta = StoredMeta<MemoryKv>;

fn key(prefix: &str, name: &str) -> Vec<u8> {
    format!("{prefix}{name}").into_bytes()
}

fn decode<P, T>(key: &[u8], value: &[u8]) -> Result<T>
where
    P: Message + Default,
    T: TryFrom<P, Error = Error>,
{
    let what = String::from_utf8_lossy(key);
    let message = P::decode(value).map_err(|e| Error::Invalid(format!("record {what}: {e}")))?;
    T::try_from(message).map_err(|e| Error::Invalid(format!("record {what}: {e}")))
}

fn name_of(prefix: &str, key: &[u8]) -> Result<String> {
    key.get(prefix.len()..)
        .and_then(|k| std::str::from_utf8(k).ok())
        .map(str::to_string)
        .ok_or_else(|| Error::Invalid(format!("record key {}", String::from_utf8_lossy(key))))
}

fn table_record(table: &TableInfo) -> Result<Vec<u8>> {
    Ok(pb::TableInfo::try_from(table)?.encode_to_vec())
}

/// Adds the built-in tables `state` lacks to it and to `batch`.
fn seed_tables(state: &mut State, batch: &mut WriteBatch) -> Result<()> {
    for table in TableInfo::builtin() {
        if !state.tables.contains_key(&table.name) {
            batch.put(key(TABLE, &table.name), table_record(&table)?);
            state.tables.insert(table.name.clone(), table);
        }
    }
    Ok(())
}

impl MemoryMeta {
    /// Metadata knowing the built-in tables and nothing else.
    pub fn new() -> MemoryMeta {
        let store = MemoryKv::new();
        let mut state = State::default();
        let mut batch = WriteBatch::new();
        let mut version: u64 = 0;
        match seed_tables(&mut state, &mut batch) {
            Ok(()) => {
                version = 1;
                batch.put(VERSION, version.to_be_bytes().to_vec());
                store.apply(batch);
            }
            Err(e) => tracing::error!(error = %e, "cannot encode the built-in tables"),
        }
        StoredMeta::with_state(store, state, version)
    }
}

impl Default for MemoryMeta {
    fn default() -> MemoryMeta {
        MemoryMeta::new()
    }
}

impl StoredMeta<RedbStore> {
    /// The master's metadata in `<data_dir>/meta.redb` ([`META_FILE`]), created when
    /// missing.
    pub async fn open_dir(data_dir: impl AsRef<Path>) -> Result<StoredMeta<RedbStore>> {
        let path = data_dir.as_ref().join(META_FILE);
        let store = tokio::task::spawn_blocking(move || RedbStore::open(path))
            .await
            .map_err(|e| Error::Storage(format!("opening the store: {e}")))??;
        StoredMeta::open(store).await
    }
}

impl<S: KvStore> StoredMeta<S> {
    /// Loads everything `store` holds, adding the built-in tables it lacks.
    pub async fn open(store: S) -> Result<StoredMeta<S>> {
        let mut state = State::default();
        for (k, v) in store.scan_prefix(NODE.as_bytes()).await? {
            let node: NodeInfo = decode::<pb::NodeInfo, _>(&k, &v)?;
            state.nodes.insert(node.id.clone(), node);
        }
        for (k, v) in store.scan_prefix(REPORT.as_bytes()).await? {
            let report = decode::<pb::NodeReport, _>(&k, &v)?;
            state.reports.insert(name_of(REPORT, &k)?, report);
        }
        for (k, v) in store.scan_prefix(TABLE.as_bytes()).await? {
            let table: TableInfo = decode::<pb::TableInfo, _>(&k, &v)?;
            state.tables.insert(table.name.clone(), table);
        }
        alerting::load(&store, &mut state).await?;
        let mut version = match store.get(VERSION).await? {
            None => 0,
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Invalid("record version".into()))?,
        };
        let mut batch = WriteBatch::new();
        seed_tables(&mut state, &mut batch)?;
        if !batch.is_empty() {
            version += 1;
            batch.put(VERSION, version.to_be_bytes().to_vec());
            store.write(batch).await?;
        }
        tracing::info!(
            nodes = state.nodes.len(),
            tables = state.tables.len(),
            version,
            "metadata loaded"
        );
        Ok(StoredMeta::with_state(store, state, version))
    }

    fn with_state(store: S, state: State, version: u64) -> StoredMeta<S> {
        let firing_seq = state.alerting.last_firing;
        StoredMeta {
            store,
            state: RwLock::new(state),
            writer: Mutex::new(()),
            version: watch::channel(version).0,
            firing_seq: watch::channel(firing_seq).0,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `batch` with the next version, then applies `change` to memory and announces
    /// the version. A failed write changes nothing.
    async fn commit(
        &self,
        _writer: &MutexGuard<'_, ()>,
        mut batch: WriteBatch,
        change: impl FnOnce(&mut State),
    ) -> Result<()> {
        let next = *self.version.borrow() + 1;
        batch.put(VERSION, next.to_be_bytes().to_vec());
        self.store.write(batch).await?;
        change(&mut self.write());
        self.version.send_replace(next);
        Ok(())
    }
}

#[async_trait]
impl<S: KvStore> MetaService for StoredMeta<S> {
    async fn register(&self, node: NodeInfo) -> Result<()> {
        let writer = self.writer.lock().await;
        let mut batch = WriteBatch::new();
        batch.put(
            key(NODE, &node.id),
            pb::NodeInfo::from(node.clone()).encode_to_vec(),
        );
        tracing::info!(
            id = %node.id, role = %node.role, address = %node.address,
            cluster = %node.cluster_name(), "node registered"
        );
        self.commit(&writer, batch, |state| {
            state.nodes.insert(node.id.clone(), node);
        })
        .await
    }

    async fn heartbeat(&self, node_id: &str, report: NodeReport) -> Result<()> {
        let writer = self.writer.lock().await;
        let mut node = self
            .read()
            .nodes
            .get(node_id)
            .cloned()
            .ok_or_else(|| Error::UnknownNode(node_id.to_string()))?;
        node.heartbeat_micros = now_micros();
        let mut batch = WriteBatch::new();
        batch
            .put(
                key(NODE, node_id),
                pb::NodeInfo::from(node.clone()).encode_to_vec(),
            )
            .put(
                key(REPORT, node_id),
                pb::NodeReport::from(report.clone()).encode_to_vec(),
            );
        self.commit(&writer, batch, |state| {
            state.nodes.insert(node_id.to_string(), node);
            state.reports.insert(node_id.to_string(), report);
        })
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        Ok(self.read().nodes.values().cloned().collect())
    }

    async fn partitions(&self) -> Result<Vec<Partition>> {
        let state = self.read();
        Ok(state
            .reports
            .values()
            .flat_map(|r| r.partitions.iter().cloned())
            .collect())
    }

    async fn sources(&self) -> Result<Vec<Source>> {
        let state = self.read();
        Ok(state
            .reports
            .values()
            .flat_map(|r| r.sources.iter().cloned())
            .collect())
    }

    async fn version(&self) -> Result<u64> {
        Ok(*self.version.borrow())
    }

    async fn tables(&self) -> Result<Vec<TableInfo>> {
        Ok(self.read().tables.values().cloned().collect())
    }

    async fn wait_version(&self, after: u64, timeout: Duration) -> Result<u64> {
        Ok(crate::wait_for_change(&self.version, after, timeout).await)
    }

    async fn create_rule(&self, rule: Rule) -> Result<()> {
        self.create_rule_stored(rule).await
    }

    async fn drop_rule(&self, name: &str) -> Result<()> {
        self.drop_rule_stored(name).await
    }

    async fn rules(&self) -> Result<Vec<Rule>> {
        Ok(self.read().alerting.rules.values().cloned().collect())
    }

    async fn report_firings(&self, reports: Vec<FiringReport>) -> Result<()> {
        self.report_firings_stored(reports).await
    }

    async fn wait_firings(&self, after: u64, timeout: Duration) -> Result<Firings> {
        self.wait_firings_stored(after, timeout).await
    }

    async fn record_delivery(
        &self,
        rule: &str,
        delivered: bool,
        failed_attempts: u64,
    ) -> Result<()> {
        self.record_delivery_stored(rule, delivered, failed_attempts)
            .await
    }
}

#[cfg(test)]
mod tests {
    use armorlake_common::Table;

    use super::*;
    use crate::Role;

    fn node(id: &str) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            role: Role::Operator,
            address: "127.0.0.1:1".into(),
            version: "0".into(),
            registered_micros: 1,
            heartbeat_micros: 1,
            cluster: String::new(),
        }
    }

    fn report(operator: &str, rows: u64) -> NodeReport {
        NodeReport {
            partitions: vec![Partition {
                table: Table::Alerts,
                hour_micros: 0,
                operator: operator.into(),
                rows,
                bytes: 10,
                min_micros: 1,
                max_micros: 2,
            }],
            sources: vec![Source {
                operator: operator.into(),
                endpoint: "127.0.0.1:32767".into(),
                table: Table::Alerts,
                state: "streaming".into(),
                events: rows,
                reconnects: 0,
                last_event_micros: Some(3),
                disconnected_micros: 0,
                last_error: Some("once".into()),
                bad_messages: 0,
            }],
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
        meta.heartbeat("op1", report("op1", 4)).await.expect("hb");
        meta.heartbeat("op1", report("op1", 5)).await.expect("hb");
        assert_eq!(
            meta.partitions().await.expect("partitions"),
            report("op1", 5).partitions
        );
        assert!(meta.version().await.expect("version") > v0);
        assert!(meta.nodes().await.expect("nodes")[0].heartbeat_micros > 1);
        assert_eq!(meta.tables().await.expect("tables"), TableInfo::builtin());
    }

    #[tokio::test]
    async fn wait_version_wakes_on_a_change_or_times_out() {
        let meta = std::sync::Arc::new(MemoryMeta::new());
        let v = meta.version().await.expect("version");
        let timed_out = meta
            .wait_version(v, Duration::from_millis(20))
            .await
            .expect("wait");
        assert_eq!(timed_out, v);
        // A version the caller has not seen answers at once.
        assert_eq!(
            meta.wait_version(v + 7, Duration::from_secs(60))
                .await
                .expect("wait"),
            v
        );
        let waiter = {
            let meta = meta.clone();
            tokio::spawn(async move { meta.wait_version(v, Duration::from_secs(60)).await })
        };
        meta.register(node("op1")).await.expect("register");
        let woke = waiter.await.expect("join").expect("wait");
        assert!(woke > v);
    }

    #[tokio::test]
    async fn redb_metadata_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (nodes, version) = {
            let meta = StoredMeta::open_dir(dir.path()).await.expect("open");
            assert_eq!(meta.tables().await.expect("tables"), TableInfo::builtin());
            meta.register(node("op1").with_cluster("east"))
                .await
                .expect("register");
            meta.register(node("op2")).await.expect("register");
            meta.heartbeat("op1", report("op1", 7)).await.expect("hb");
            meta.heartbeat("op2", report("op2", 8)).await.expect("hb");
            (
                meta.nodes().await.expect("nodes"),
                meta.version().await.expect("version"),
            )
        };
        let meta = StoredMeta::open_dir(dir.path()).await.expect("reopen");
        assert_eq!(meta.nodes().await.expect("nodes"), nodes);
        assert_eq!(nodes[0].cluster, "east");
        let mut partitions = report("op1", 7).partitions;
        partitions.extend(report("op2", 8).partitions);
        assert_eq!(meta.partitions().await.expect("partitions"), partitions);
        assert_eq!(meta.sources().await.expect("sources").len(), 2);
        assert_eq!(meta.tables().await.expect("tables"), TableInfo::builtin());
        // Reopening writes nothing, so the version stays; the next change moves it on.
        assert_eq!(meta.version().await.expect("version"), version);
        meta.heartbeat("op2", NodeReport::default())
            .await
            .expect("hb");
        let after = meta.version().await.expect("version");
        assert!(after > version);
        drop(meta);
        let meta = StoredMeta::open_dir(dir.path()).await.expect("reopen");
        assert_eq!(meta.version().await.expect("version"), after);
        assert_eq!(
            meta.partitions().await.expect("partitions"),
            report("op1", 7).partitions
        );
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing() {
        #[derive(Debug)]
        struct Broken;
        #[async_trait]
        impl KvStore for Broken {
            async fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>> {
                Ok(None)
            }
            async fn scan_prefix(&self, _: &[u8]) -> Result<Vec<crate::kv::Entry>> {
                Ok(Vec::new())
            }
            async fn write(&self, _: WriteBatch) -> Result<()> {
                Err(Error::Storage("disk full".into()))
            }
        }
        assert!(matches!(
            StoredMeta::open(Broken).await,
            Err(Error::Storage(_))
        ));
        let meta = StoredMeta::with_state(Broken, State::default(), 3);
        assert!(matches!(
            meta.register(node("op1")).await,
            Err(Error::Storage(_))
        ));
        assert!(meta.nodes().await.expect("nodes").is_empty());
        assert_eq!(meta.version().await.expect("version"), 3);
    }
}
