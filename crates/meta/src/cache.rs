//! `CachedMeta`: a query node's copy of the master's metadata. Reads are answered from the
//! copy, which follows the master's version (long-polling `wait_version`) and stays as it
//! last was while the master is away, so queries go on.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{
    Error, FiringReport, Firings, MetaService, NodeInfo, NodeReport, Partition, Result, Rule,
    Source, TableInfo,
};

/// How long one long poll of the master lasts.
const POLL: Duration = Duration::from_secs(10);
/// How long to wait before asking an unreachable master again.
const RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
struct Snapshot {
    nodes: Vec<NodeInfo>,
    partitions: Vec<Partition>,
    sources: Vec<Source>,
    tables: Vec<TableInfo>,
}

/// The master's metadata, cached. Writes (register, heartbeat) go straight to the master.
#[derive(Debug)]
pub struct CachedMeta {
    inner: Arc<dyn MetaService>,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    version: watch::Sender<u64>,
}

impl CachedMeta {
    /// A cache of `inner`, empty until the first refresh ([`CachedMeta::refresh`] or
    /// [`CachedMeta::run`]).
    pub fn new(inner: Arc<dyn MetaService>) -> Arc<CachedMeta> {
        Arc::new(CachedMeta {
            inner,
            snapshot: RwLock::new(None),
            version: watch::channel(0).0,
        })
    }

    /// Reads everything from the master into the cache.
    pub async fn refresh(&self) -> Result<u64> {
        let version = self.inner.version().await?;
        let snapshot = Snapshot {
            nodes: self.inner.nodes().await?,
            partitions: self.inner.partitions().await?,
            sources: self.inner.sources().await?,
            tables: self.inner.tables().await?,
        };
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(snapshot));
        self.version.send_replace(version);
        Ok(version)
    }

    /// Follows the master until `shutdown` resolves: refreshes whenever its version moves,
    /// and retries quietly while it is unreachable.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut held: Option<u64> = None;
        let mut reachable = true;
        loop {
            let step = async {
                let after = held.unwrap_or(u64::MAX);
                let version = match held {
                    None => self.inner.version().await?,
                    Some(_) => {
                        match tokio::time::timeout(POLL * 2, self.inner.wait_version(after, POLL))
                            .await
                        {
                            Ok(v) => v?,
                            Err(_) => return Err(Error::Unavailable("no answer".into())),
                        }
                    }
                };
                if Some(version) != held {
                    return self.refresh().await.map(Some);
                }
                Ok(None)
            };
            let outcome = tokio::select! {
                _ = &mut shutdown => return,
                outcome = step => outcome,
            };
            match outcome {
                Ok(refreshed) => {
                    if !reachable {
                        tracing::info!("master reachable again; metadata refreshed");
                        reachable = true;
                    }
                    if let Some(v) = refreshed {
                        held = Some(v);
                    }
                }
                Err(e) => {
                    if reachable {
                        tracing::warn!(error = %e, "master unreachable; answering from cached metadata");
                        reachable = false;
                    }
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
    }

    async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let cached = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match cached {
            Some(s) => Ok(s),
            None => {
                self.refresh().await?;
                self.snapshot
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .ok_or_else(|| Error::Unavailable("no metadata yet".into()))
            }
        }
    }
}

#[async_trait]
impl MetaService for CachedMeta {
    async fn register(&self, node: NodeInfo) -> Result<()> {
        self.inner.register(node).await
    }

    async fn heartbeat(&self, node_id: &str, report: NodeReport) -> Result<()> {
        self.inner.heartbeat(node_id, report).await
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        Ok(self.snapshot().await?.nodes.clone())
    }

    async fn partitions(&self) -> Result<Vec<Partition>> {
        Ok(self.snapshot().await?.partitions.clone())
    }

    async fn sources(&self) -> Result<Vec<Source>> {
        Ok(self.snapshot().await?.sources.clone())
    }

    async fn tables(&self) -> Result<Vec<TableInfo>> {
        Ok(self.snapshot().await?.tables.clone())
    }

    async fn version(&self) -> Result<u64> {
        self.snapshot().await?;
        Ok(*self.version.borrow())
    }

    async fn wait_version(&self, after: u64, timeout: Duration) -> Result<u64> {
        Ok(crate::wait_for_change(&self.version, after, timeout).await)
    }

    // Rules and firings are not cached: their counters change without a version change,
    // and they are only read by `armorlake.rules`, `armorlake.rule_firings` and the
    // query node's firing feed.

    async fn create_rule(&self, rule: Rule) -> Result<()> {
        self.inner.create_rule(rule).await
    }

    async fn drop_rule(&self, name: &str) -> Result<()> {
        self.inner.drop_rule(name).await
    }

    async fn rules(&self) -> Result<Vec<Rule>> {
        self.inner.rules().await
    }

    async fn report_firings(&self, reports: Vec<FiringReport>) -> Result<()> {
        self.inner.report_firings(reports).await
    }

    async fn wait_firings(&self, after: u64, timeout: Duration) -> Result<Firings> {
        self.inner.wait_firings(after, timeout).await
    }

    async fn record_delivery(
        &self,
        rule: &str,
        delivered: bool,
        failed_attempts: u64,
    ) -> Result<()> {
        self.inner
            .record_delivery(rule, delivered, failed_attempts)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryMeta, Role};

    #[tokio::test]
    async fn follows_the_master_and_keeps_the_last_copy() {
        let master = Arc::new(MemoryMeta::new());
        master
            .register(NodeInfo::new("op1", Role::Operator, "a:1", "0"))
            .await
            .unwrap();
        let cache = CachedMeta::new(master.clone());
        let stop = stop_signal();
        let runner = tokio::spawn(cache.clone().run(stop.1));
        assert_eq!(cache.nodes().await.unwrap().len(), 1);

        let before = cache.version().await.unwrap();
        master
            .register(NodeInfo::new("op2", Role::Operator, "a:2", "0"))
            .await
            .unwrap();
        let after = cache
            .wait_version(before, Duration::from_secs(5))
            .await
            .unwrap();
        assert_ne!(after, before);
        assert_eq!(cache.nodes().await.unwrap().len(), 2);

        let _ = stop.0.send(());
        runner.await.unwrap();
        // Stopped following: the copy stays.
        assert_eq!(cache.nodes().await.unwrap().len(), 2);
    }

    fn stop_signal() -> (
        tokio::sync::oneshot::Sender<()>,
        impl std::future::Future<Output = ()>,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        (tx, async move {
            let _ = rx.await;
        })
    }
}
