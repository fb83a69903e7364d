//! An operator's local event store.
//!
//! Rows arrive as Arrow record batches and are queryable at once from memory. Every flush
//! they become Parquet files, one per table and hour, under
//! `<data_dir>/<table>/<yyyy-mm-dd>/<hh>/<seq>.parquet`: sorted by `timestamp`, zstd,
//! dictionary-encoded, with row-group statistics. A scan sees one consistent snapshot of
//! memory and files: a row is in exactly one of them at any moment.

mod error;
mod files;
mod provider;
mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use armorlake_common::Table;
use arrow::record_batch::RecordBatch;

pub use error::{Error, Result};
pub use files::FileMeta;
pub use provider::LocalTable;
pub use table::TableStore;

/// How the store behaves.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How often rows held in memory are written to Parquet.
    pub flush_interval: Duration,
    /// Flush a table early once this many rows wait in memory.
    pub flush_rows: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            flush_interval: Duration::from_secs(10),
            flush_rows: 1_000_000,
        }
    }
}

/// Rows, bytes and time range of what one table holds for one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStats {
    /// The table.
    pub table: Table,
    /// Start of the hour, microseconds since the epoch (UTC).
    pub hour_micros: i64,
    /// Rows stored, in memory and in files.
    pub rows: u64,
    /// Bytes of the Parquet files (rows still in memory count their Arrow size).
    pub bytes: u64,
    /// Earliest `timestamp`, microseconds.
    pub min_micros: i64,
    /// Latest `timestamp`, microseconds.
    pub max_micros: i64,
}

/// The event tables of one operator, under one data directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    options: StoreOptions,
    tables: Arc<BTreeMap<Table, Arc<TableStore>>>,
}

impl Store {
    /// Opens (or creates) the store under `dir`, picking up the Parquet files already there.
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        let mut tables = BTreeMap::new();
        for table in Table::ALL {
            tables.insert(table, Arc::new(TableStore::open(&dir, table)?));
        }
        Ok(Store {
            dir,
            options,
            tables: Arc::new(tables),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The store of one table.
    pub fn table(&self, table: Table) -> &Arc<TableStore> {
        // Every `Table` is inserted by `open`.
        &self.tables[&table]
    }

    /// Adds rows to `table`; they are queryable when this returns.
    pub fn append(&self, table: Table, batch: RecordBatch) -> Result<()> {
        self.table(table).append(batch)
    }

    /// Writes every table's rows held in memory to Parquet.
    pub async fn flush(&self) -> Result<()> {
        for store in self.tables.values() {
            store.flush().await?;
        }
        Ok(())
    }

    /// Tables whose rows in memory reached the flush size.
    pub fn due_for_flush(&self) -> Vec<Table> {
        self.tables
            .iter()
            .filter(|(_, s)| s.rows_in_memory() >= self.options.flush_rows)
            .map(|(t, _)| *t)
            .collect()
    }

    /// Per table and hour: rows, bytes and time range.
    pub fn partitions(&self) -> Vec<PartitionStats> {
        self.tables.values().flat_map(|s| s.partitions()).collect()
    }

    /// Flushes every `flush_interval` (and whenever a table reaches `flush_rows`) until
    /// `shutdown` resolves, then flushes once more.
    pub async fn run_flusher(&self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            let result = if last.elapsed() >= self.options.flush_interval {
                last = tokio::time::Instant::now();
                self.flush().await
            } else {
                let mut result = Ok(());
                for table in self.due_for_flush() {
                    result = result.and(self.table(table).flush().await);
                }
                result
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "flush to Parquet failed; rows stay in memory");
            }
        }
        if let Err(e) = self.flush().await {
            tracing::error!(error = %e, "final flush to Parquet failed");
        }
    }
}
