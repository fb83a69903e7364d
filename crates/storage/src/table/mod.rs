//! One table of the store: batches in memory, Parquet files on disk.

mod maintain;

#[cfg(test)]
pub(crate) use maintain::tier;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use armorlake_common::Table;
use arrow::array::{BooleanArray, TimestampMicrosecondArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::execution::cache::default_cache::DefaultCache;

use crate::PartitionStats;
use crate::error::{Error, Result};
use crate::files::{self, FileMeta, hour_of};
use crate::hours;
use crate::range::TimeRange;
use crate::wal::{self, Record, Wal};

/// A batch held in memory, with its time range and the WAL segment holding it.
#[derive(Debug, Clone)]
struct MemBatch {
    /// Unique within the table: a flush removes exactly the batches it wrote.
    id: u64,
    /// The WAL segment the batch is in (0: none).
    segment: u64,
    batch: RecordBatch,
    min_micros: i64,
    max_micros: i64,
}

/// A file no longer in the table, deleted once no snapshot holds it and the grace passed.
#[derive(Debug)]
struct Retired {
    file: Arc<FileMeta>,
    since: Instant,
}

#[derive(Debug)]
struct State {
    memory: Vec<MemBatch>,
    memory_rows: usize,
    /// Arrow memory of `memory`.
    memory_bytes: usize,
    next_id: u64,
    files: Vec<Arc<FileMeta>>,
    retired: Vec<Retired>,
    /// Retention dropped every row before this instant (hour aligned).
    dropped_before: i64,
}

/// What a scan reads: the batches in memory and the files, taken at one instant. While a
/// snapshot (or a clone of one of its files) is alive, its files stay on disk even if
/// compaction or retention removed them from the table.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Batches not yet in Parquet.
    pub memory: Vec<RecordBatch>,
    /// Parquet files.
    pub files: Vec<Arc<FileMeta>>,
}

/// One event table of an operator.
#[derive(Debug)]
pub struct TableStore {
    table: Table,
    schema: SchemaRef,
    data_dir: PathBuf,
    state: RwLock<State>,
    /// One flush at a time: a flush removes from memory exactly the batches it wrote.
    flush_lock: tokio::sync::Mutex<()>,
    /// The store's WAL; `None` for a table opened on its own (memory only until flushed).
    wal: Option<Arc<Mutex<Wal>>>,
    /// Footers and page indexes of the table's Parquet files, read once and kept for the
    /// scans that follow (least recently used out first).
    metadata: Arc<FileMetadataCache>,
}

/// How much Parquet metadata (footers and page indexes) a table keeps in memory.
const METADATA_CACHE_BYTES: usize = 32 << 20;

impl TableStore {
    /// Opens the table under `data_dir` on its own, without a write-ahead log (rows appended
    /// are held in memory only until flushed), listing the Parquet files it already has.
    pub fn open(data_dir: &Path, table: Table) -> Result<TableStore> {
        let files = files::scan_dir(data_dir, table)?;
        Ok(TableStore::with_files(data_dir, table, files, None))
    }

    /// A table over `files`, writing to `wal` if given.
    pub(crate) fn with_files(
        data_dir: &Path,
        table: Table,
        files: Vec<FileMeta>,
        wal: Option<Arc<Mutex<Wal>>>,
    ) -> TableStore {
        TableStore {
            metadata: Arc::new(
                DefaultCache::new(METADATA_CACHE_BYTES).with_name("armorlake-parquet-metadata"),
            ),
            table,
            schema: table.schema(),
            data_dir: data_dir.to_path_buf(),
            state: RwLock::new(State {
                memory: Vec::new(),
                memory_rows: 0,
                memory_bytes: 0,
                next_id: 0,
                files: files.into_iter().map(Arc::new).collect(),
                retired: Vec::new(),
                dropped_before: i64::MIN,
            }),
            flush_lock: tokio::sync::Mutex::new(()),
            wal,
        }
    }

    /// The table.
    pub fn table(&self) -> Table {
        self.table
    }

    /// The table's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks that `batch` belongs to this table; its time range, or `None` if it has no rows.
    pub(crate) fn check(&self, batch: &RecordBatch) -> Result<Option<(i64, i64)>> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(Error::SchemaMismatch { table: self.table });
        }
        Ok(files::time_range(batch))
    }

    /// Makes `batch` (checked, with time range `range`) visible, as stored in WAL `segment`.
    pub(crate) fn insert(&self, batch: RecordBatch, segment: u64, range: (i64, i64)) {
        let rows = batch.num_rows();
        let bytes = batch.get_array_memory_size();
        let mut state = self.write();
        let id = state.next_id;
        state.next_id += 1;
        state.memory.push(MemBatch {
            id,
            segment,
            batch,
            min_micros: range.0,
            max_micros: range.1,
        });
        state.memory_rows += rows;
        state.memory_bytes += bytes;
    }

    /// Adds rows; they are visible to scans when this returns. A table of a [`crate::Store`]
    /// writes them to the WAL and fsyncs first (prefer `Store::append_many`, which groups
    /// batches under one fsync).
    pub fn append(&self, batch: RecordBatch) -> Result<()> {
        let Some(range) = self.check(&batch)? else {
            return Ok(()); // no rows
        };
        let Some(wal) = &self.wal else {
            self.insert(batch, 0, range);
            return Ok(());
        };
        let record = Record::encode(self.table, &batch)?;
        let mut wal = wal::lock(wal);
        let segment = wal.append(&[record])?;
        self.insert(batch, segment, range);
        Ok(())
    }

    /// Rows waiting in memory.
    pub fn rows_in_memory(&self) -> usize {
        self.read().memory_rows
    }

    /// Arrow memory of the rows waiting in memory (buffers shared between batches counted
    /// once per batch).
    pub fn bytes_in_memory(&self) -> usize {
        self.read().memory_bytes
    }

    /// The metadata of the table's Parquet files read so far.
    pub(crate) fn metadata_cache(&self) -> &Arc<FileMetadataCache> {
        &self.metadata
    }

    /// The memory batches and files as they are now.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_within(TimeRange::ALL)
    }

    /// The memory batches and files as they are now that may hold rows in `range`.
    pub fn snapshot_within(&self, range: TimeRange) -> Snapshot {
        let state = self.read();
        Snapshot {
            memory: state
                .memory
                .iter()
                .filter(|m| range.overlaps(m.min_micros, m.max_micros))
                .map(|m| m.batch.clone())
                .collect(),
            files: state
                .files
                .iter()
                .filter(|f| range.overlaps(f.min_micros, f.max_micros))
                .cloned()
                .collect(),
        }
    }

    /// Writes the rows in memory to Parquet, one file per hour, then drops them from memory.
    /// Rows appended while the flush runs stay in memory for the next one. With a WAL, the
    /// segments stay on disk until the next `Store::flush` (their rows are skipped on replay).
    pub async fn flush(&self) -> Result<()> {
        let sealed = match &self.wal {
            None => u64::MAX,
            Some(wal) => {
                let wal = wal.clone();
                tokio::task::spawn_blocking(move || wal::lock(&wal).rotate()).await??
            }
        };
        self.flush_through(sealed).await
    }

    /// Writes the memory batches of WAL segments up to `sealed` to Parquet, one file per
    /// hour, each claiming `sealed`; then drops them from memory. If only some hours could
    /// be written, the rows of the others stay in memory and the error is returned.
    pub(crate) async fn flush_through(&self, sealed: u64) -> Result<()> {
        let _one_at_a_time = self.flush_lock.lock().await;
        let (mut ids, batches): (Vec<u64>, Vec<RecordBatch>) = self
            .read()
            .memory
            .iter()
            .filter(|m| m.segment <= sealed)
            .map(|m| (m.id, m.batch.clone()))
            .unzip();
        if batches.is_empty() {
            return Ok(());
        }
        let claim = if self.wal.is_some() { sealed } else { 0 };
        let (dir, table) = (self.data_dir.clone(), self.table);
        let outcome = tokio::task::spawn_blocking(move || -> Result<Outcome> {
            let mut outcome = Outcome::default();
            // Earliest hour first: on an error, every later hour stays unwritten.
            for hour in hours::by_hour(&batches)? {
                match files::write_hour(&dir, table, &hour, claim) {
                    Ok(file) => outcome.written.push(file),
                    Err(e) if outcome.written.is_empty() => return Err(e),
                    Err(e) => {
                        outcome.unwritten = Some((hour.hour_micros, e));
                        break;
                    }
                }
            }
            Ok(outcome)
        })
        .await??;

        ids.sort_unstable();
        let mut state = self.write();
        let taken = |m: &MemBatch| ids.binary_search(&m.id).is_ok();
        let mut result = Ok(());
        match outcome.unwritten {
            None => state.memory.retain(|m| !taken(m)),
            Some((from_hour, e)) => {
                // Hours from `from_hour` on were not written: those rows stay, each in its
                // batch, so each keeps the WAL segment it is in.
                let mut memory = Vec::with_capacity(state.memory.len());
                for m in std::mem::take(&mut state.memory) {
                    if !taken(&m) || m.min_micros >= from_hour {
                        memory.push(m);
                    } else if m.max_micros >= from_hour {
                        memory.push(m.keep_from(from_hour));
                    }
                }
                state.memory = memory;
                result = Err(e);
            }
        }
        // Recounted: retention may have dropped some of the taken rows meanwhile.
        state.recount();
        let mut rows = 0;
        for file in outcome.written {
            rows += file.rows;
            let file = Arc::new(file);
            if file.hour_micros < state.dropped_before {
                // Retention dropped this hour while the flush ran.
                state.retired.push(Retired {
                    file,
                    since: Instant::now(),
                });
            } else {
                state.files.push(file);
            }
        }
        tracing::debug!(table = %self.table, rows, "flushed to Parquet");
        result
    }

    /// Rows, bytes and time range per hour.
    pub fn partitions(&self) -> Vec<PartitionStats> {
        let state = self.read();
        let mut hours: BTreeMap<i64, PartitionStats> = BTreeMap::new();
        let mut add = |hour: i64, rows: u64, bytes: u64, min: i64, max: i64| {
            let p = hours.entry(hour).or_insert(PartitionStats {
                table: self.table,
                hour_micros: hour,
                rows: 0,
                bytes: 0,
                min_micros: min,
                max_micros: max,
            });
            p.rows += rows;
            p.bytes += bytes;
            p.min_micros = p.min_micros.min(min);
            p.max_micros = p.max_micros.max(max);
        };
        for f in &state.files {
            add(f.hour_micros, f.rows, f.bytes, f.min_micros, f.max_micros);
        }
        for m in &state.memory {
            let bytes = m.batch.get_array_memory_size() as u64;
            if hour_of(m.min_micros) == hour_of(m.max_micros) {
                let rows = m.batch.num_rows() as u64;
                add(
                    hour_of(m.min_micros),
                    rows,
                    bytes,
                    m.min_micros,
                    m.max_micros,
                );
            } else if let Some(ts) = m
                .batch
                .column(0)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
            {
                // A batch across an hour boundary: attribute each row to its hour.
                for &v in ts.values() {
                    add(hour_of(v), 1, 0, v, v);
                }
            }
        }
        hours.into_values().collect()
    }
}

impl State {
    /// Recomputes the rows and bytes of `memory`.
    fn recount(&mut self) {
        self.memory_rows = self.memory.iter().map(|m| m.batch.num_rows()).sum();
        self.memory_bytes = self
            .memory
            .iter()
            .map(|m| m.batch.get_array_memory_size())
            .sum();
    }
}

/// What a flush wrote, and the first hour it could not write with the reason.
#[derive(Default)]
struct Outcome {
    written: Vec<FileMeta>,
    unwritten: Option<(i64, Error)>,
}

impl MemBatch {
    /// The batch without its rows before `micros`; it must keep at least one row. Filtering
    /// a valid batch cannot fail; if it did, the batch is kept whole (its earlier rows would
    /// be written twice, so this is logged as an error).
    fn keep_from(self, micros: i64) -> MemBatch {
        let batch = match filter_from(&self.batch, micros) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "cannot split a batch after a partial flush; keeping it whole");
                return self;
            }
        };
        let (min_micros, max_micros) = files::time_range(&batch).unwrap_or((micros, micros));
        MemBatch {
            batch,
            min_micros,
            max_micros,
            ..self
        }
    }
}

/// The rows of `batch` at or after `micros`.
pub(crate) fn filter_from(batch: &RecordBatch, micros: i64) -> Result<RecordBatch> {
    let Some(ts) = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
    else {
        return Ok(batch.clone());
    };
    let keep: BooleanArray = ts.values().iter().map(|&v| Some(v >= micros)).collect();
    Ok(filter_record_batch(batch, &keep)?)
}
