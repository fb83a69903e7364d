//! [`RedbStore`]: the master's [`KvStore`] in one embedded redb file.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, TableDefinition};

use crate::kv::{Entry, KvStore, WriteBatch, WriteOp};
use crate::{Error, Result};

/// The one table every key lives in.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("armorlake_meta");

/// A [`KvStore`] in a redb file: ACID transactions, each commit fsynced. One process at a
/// time may open the file. Calls run on tokio's blocking pool, so a slow disk never stalls
/// the runtime's workers.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

fn storage(context: &str) -> impl FnOnce(redb::Error) -> Error + '_ {
    move |e| Error::Storage(format!("{context}: {e}"))
}

impl RedbStore {
    /// Opens the store at `path`, creating the file (and its directory) when missing.
    /// Blocks on disk: call it before serving, or from a blocking task.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Storage(format!("creating {}: {e}", dir.display())))?;
        }
        let context = format!("opening {}", path.display());
        let db = Database::create(path).map_err(|e| storage(&context)(e.into()))?;
        // Create the table up front so that readers never meet a missing one.
        let txn = db.begin_write().map_err(|e| storage(&context)(e.into()))?;
        txn.open_table(ENTRIES)
            .map_err(|e| storage(&context)(e.into()))?;
        txn.commit().map_err(|e| storage(&context)(e.into()))?;
        Ok(RedbStore { db: Arc::new(db) })
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Error::Storage(format!("store task failed: {e}")))?
    }
}

fn get(db: &Database, key: &[u8]) -> Result<Option<Vec<u8>>, redb::Error> {
    let txn = db.begin_read()?;
    let table = txn.open_table(ENTRIES)?;
    Ok(table.get(key)?.map(|v| v.value().to_vec()))
}

fn scan(db: &Database, prefix: &[u8]) -> Result<Vec<Entry>, redb::Error> {
    let txn = db.begin_read()?;
    let table = txn.open_table(ENTRIES)?;
    let mut out = Vec::new();
    for entry in table.range::<&[u8]>(prefix..)? {
        let (k, v) = entry?;
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

fn write(db: &Database, batch: WriteBatch) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(ENTRIES)?;
        for op in batch.ops() {
            match op {
                WriteOp::Put(k, v) => {
                    table.insert(k.as_slice(), v.as_slice())?;
                }
                WriteOp::Delete(k) => {
                    table.remove(k.as_slice())?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

#[async_trait]
impl KvStore for RedbStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = key.to_vec();
        self.blocking(move |db| get(db, &key).map_err(storage("reading the store")))
            .await
    }

    async fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        let prefix = prefix.to_vec();
        self.blocking(move |db| scan(db, &prefix).map_err(storage("scanning the store")))
            .await
    }

    async fn write(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.blocking(move |db| write(db, batch).map_err(storage("writing the store")))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn redb_keeps_the_contract_and_its_data_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/meta.redb");
        {
            let store = RedbStore::open(&path).expect("open");
            crate::kv::tests::check_store(&store).await;
        }
        let store = RedbStore::open(&path).expect("reopen");
        assert_eq!(store.get(b"a/2").await.expect("get"), Some(b"two".to_vec()));
        assert_eq!(store.get(b"a/1").await.expect("get"), None);
        assert_eq!(store.scan_prefix(b"").await.expect("scan").len(), 2);
    }
}
