//! The small key-value interface the master's state sits on, and its in-memory form.
//!
//! Keys and values are bytes; a [`WriteBatch`] applies atomically, so a record and the
//! version number that announces it are never seen apart. Implementations: [`MemoryKv`]
//! (tests, `up`), [`crate::RedbStore`] (an embedded file, the default master); an etcd one
//! can follow behind the same trait.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::Result;

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One change of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Sets `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Removes `key` (nothing when it is absent).
    Delete(Vec<u8>),
}

/// Changes applied together or not at all, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// No changes.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(WriteOp::Put(key.into(), value.into()));
        self
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(WriteOp::Delete(key.into()));
        self
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The changes, in order.
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    /// The changes, in order, owned.
    pub fn into_ops(self) -> Vec<WriteOp> {
        self.ops
    }
}

/// A durable, ordered map of byte keys to byte values.
#[async_trait]
pub trait KvStore: Send + Sync + fmt::Debug + 'static {
    /// The value of `key`, if any.
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Every entry whose key starts with `prefix`, in key order.
    async fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>>;

    /// Applies `batch` atomically: once this returns, all of it is durable, and a crash
    /// before leaves none of it.
    async fn write(&self, batch: WriteBatch) -> Result<()>;

    /// Sets one key.
    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(key, value);
        self.write(batch).await
    }

    /// Removes one key.
    async fn delete(&self, key: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.delete(key);
        self.write(batch).await
    }
}

/// A [`KvStore`] in memory: gone with the process.
#[derive(Debug, Default)]
pub struct MemoryKv {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryKv {
    /// An empty store.
    pub fn new() -> MemoryKv {
        MemoryKv::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `batch` at once (the store never waits on anything).
    pub(crate) fn apply(&self, batch: WriteBatch) {
        let mut map = self.map();
        for op in batch.into_ops() {
            match op {
                WriteOp::Put(k, v) => {
                    map.insert(k, v);
                }
                WriteOp::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
    }
}

#[async_trait]
impl KvStore for MemoryKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map().get(key).cloned())
    }

    async fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        Ok(self
            .map()
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn write(&self, batch: WriteBatch) -> Result<()> {
        self.apply(batch);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The contract every [`KvStore`] keeps.
    pub(crate) async fn check_store(kv: &dyn KvStore) {
        assert_eq!(kv.get(b"a/1").await.expect("get"), None);
        kv.put(b"a/1", b"one").await.expect("put");
        let mut batch = WriteBatch::new();
        batch
            .put(b"a/2".to_vec(), b"two".to_vec())
            .put(b"b/1".to_vec(), b"other".to_vec())
            .put(b"a/0".to_vec(), b"zero".to_vec())
            .delete(b"a/0".to_vec());
        kv.write(batch).await.expect("write");
        assert_eq!(kv.get(b"a/1").await.expect("get"), Some(b"one".to_vec()));
        assert_eq!(kv.get(b"a/0").await.expect("get"), None);
        let scanned = kv.scan_prefix(b"a/").await.expect("scan");
        assert_eq!(
            scanned,
            vec![
                (b"a/1".to_vec(), b"one".to_vec()),
                (b"a/2".to_vec(), b"two".to_vec())
            ]
        );
        assert_eq!(kv.scan_prefix(b"").await.expect("scan").len(), 3);
        assert!(kv.scan_prefix(b"c").await.expect("scan").is_empty());
        kv.delete(b"a/1").await.expect("delete");
        kv.delete(b"missing")
            .await
            .expect("delete of a missing key");
        assert_eq!(kv.scan_prefix(b"a/").await.expect("scan").len(), 1);
    }

    #[tokio::test]
    async fn memory_kv_keeps_the_contract() {
        check_store(&MemoryKv::new()).await;
    }
}
