//! An operator's local event store.
//!
//! Rows arrive as Arrow record batches. [`Store::append_many`] writes them to the
//! write-ahead log under `<data_dir>/wal/` and fsyncs before they count as received; then
//! they are queryable at once from memory. Every flush they become Parquet files, one per
//! table and hour, under `<data_dir>/<table>/<yyyy-mm-dd>/<hh>/<name>.parquet`: sorted by
//! `timestamp`, zstd, dictionary-encoded, with row-group statistics; the WAL segments they
//! came from are deleted after that. On open the WAL is replayed. Complete hours with several
//! files are compacted into one; retention drops whole hours. A scan sees one consistent
//! snapshot of memory and files: a row is in exactly one of them at any moment.
//!
//! Crash safety is argued in the docs of the `wal` and `compact` modules.

mod compact;
mod distinct;
mod error;
mod files;
mod hours;
pub mod metrics;
mod provider;
mod range;
mod reader;
mod store;
mod table;
mod wal;

#[cfg(test)]
mod tests;

use std::time::Duration;

use armorlake_common::Table;

pub use compact::CompactionStats;
pub use error::{Error, Result};
pub use files::FileMeta;
pub use provider::LocalTable;
pub use range::TimeRange;
pub use store::Store;
pub use table::{Snapshot, TableStore};

/// How the store behaves.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How often rows held in memory are written to Parquet.
    pub flush_interval: Duration,
    /// Flush early once a table has this many rows waiting in memory.
    pub flush_rows: usize,
    /// Flush early once the rows waiting in memory, all tables together, take this many
    /// bytes of Arrow memory. This bounds the store's memory; rows keep arriving while a
    /// flush runs, so the most held is about twice this.
    pub flush_bytes: usize,
    /// Drop whole hours once their end is older than this; `None` keeps everything.
    pub retention: Option<Duration>,
    /// How often `run_flusher` compacts and applies retention.
    pub maintenance_interval: Duration,
    /// An hour is compacted only once it ended at least this long ago (late rows may still
    /// arrive before).
    pub compaction_grace: Duration,
    /// A file compaction or retention removed is deleted once no snapshot holds it and at
    /// least this long has passed (for plans that outlive the snapshot they were built from
    /// without holding its files).
    pub retired_file_grace: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            flush_interval: Duration::from_secs(10),
            flush_rows: 1_000_000,
            flush_bytes: 256 * 1024 * 1024,
            retention: None,
            maintenance_interval: Duration::from_secs(60),
            compaction_grace: Duration::from_secs(10 * 60),
            retired_file_grace: Duration::from_secs(60),
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
