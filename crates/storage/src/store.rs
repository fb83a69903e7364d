//! [`Store`]: the event tables of one operator, their WAL, flushing and maintenance.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use armorlake_common::Table;
use arrow::array::{BooleanArray, TimestampMicrosecondArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use chrono::Utc;

use crate::compact::{self, CompactionStats};
use crate::error::{Error, Result};
use crate::files::{self, FileMeta, hour_of};
use crate::table::TableStore;
use crate::wal::{self, Record, Wal};
use crate::{PartitionStats, StoreOptions};

/// The event tables of one operator, under one data directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    options: StoreOptions,
    tables: Arc<BTreeMap<Table, Arc<TableStore>>>,
    wal: Arc<Mutex<Wal>>,
    /// One `Store::flush` at a time.
    flush_lock: Arc<tokio::sync::Mutex<()>>,
    /// One compaction or retention pass at a time.
    maintenance: Arc<Mutex<()>>,
}

/// Per table and hour, the largest WAL segment a Parquet file claims.
type Claims = BTreeMap<(Table, i64), u64>;

impl Store {
    /// Opens (or creates) the store under `dir`: picks up the Parquet files already there
    /// (finishing or undoing an interrupted compaction) and replays the WAL into memory, so
    /// every acknowledged row is queryable when this returns. A torn or corrupt WAL never
    /// stops the store from opening (see the `wal` module).
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        crate::metrics::init();
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        // Absolute, because query plans read its files by path (a relative --data-dir
        // would be resolved against the object store's root).
        let dir =
            fs::canonicalize(&dir).map_err(Error::io(format!("resolving {}", dir.display())))?;
        let mut files = BTreeMap::new();
        let mut claims = Claims::new();
        for table in Table::ALL {
            let found: Vec<FileMeta> = files::scan_dir(&dir, table)?;
            for f in &found {
                let claim = claims.entry((table, f.hour_micros)).or_default();
                *claim = (*claim).max(f.wal_segment);
            }
            files.insert(table, found);
        }
        let wal_dir = dir.join(wal::DIR);
        let replayed = wal::replay(&wal_dir)?;
        let last_segment = replayed.segments.last().copied().unwrap_or(0);
        let last_claim = claims.values().copied().max().unwrap_or(0);
        let wal = Wal::create(
            &wal_dir,
            last_segment.max(last_claim) + 1,
            replayed.segments,
        )?;
        let wal = Arc::new(Mutex::new(wal));
        let tables: BTreeMap<Table, Arc<TableStore>> = files
            .into_iter()
            .map(|(table, found)| {
                let store = TableStore::with_files(&dir, table, found, Some(wal.clone()));
                (table, Arc::new(store))
            })
            .collect();
        let (mut rows, mut skipped) = (0, 0);
        for (segment, table, batch) in replayed.records {
            let all = batch.num_rows();
            let batch = unflushed(&claims, table, segment, batch)?;
            skipped += all - batch.num_rows();
            if let Some(range) = files::time_range(&batch) {
                rows += batch.num_rows();
                tables[&table].insert(batch, segment, range);
            }
        }
        if rows > 0 || skipped > 0 {
            tracing::info!(rows, skipped_already_flushed = skipped, "replayed the WAL");
        }
        Ok(Store {
            dir,
            options,
            tables: Arc::new(tables),
            wal,
            flush_lock: Arc::new(tokio::sync::Mutex::new(())),
            maintenance: Arc::new(Mutex::new(())),
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

    /// Durably appends one batch: see [`Store::append_many`].
    pub fn append(&self, table: Table, batch: RecordBatch) -> Result<()> {
        self.append_many(vec![(table, batch)])
    }

    /// Durably appends a group of batches: all are written to the WAL and fsynced once, then
    /// made visible to scans. When this returns `Ok`, the rows are acknowledged.
    ///
    /// Synchronous: it blocks on the fsync, so async callers run it in `spawn_blocking`. On
    /// error (a batch of the wrong schema, or a WAL write failure such as a full disk)
    /// nothing of the group is stored or visible, and calling again with the same batches
    /// is safe.
    pub fn append_many(&self, batches: Vec<(Table, RecordBatch)>) -> Result<()> {
        let mut checked = Vec::with_capacity(batches.len());
        for (table, batch) in batches {
            if let Some(range) = self.table(table).check(&batch)? {
                checked.push((table, batch, range));
            }
        }
        if checked.is_empty() {
            return Ok(());
        }
        // Encoding (and checksumming) happens outside the lock.
        let records = checked
            .iter()
            .map(|(table, batch, _)| Record::encode(*table, batch))
            .collect::<Result<Vec<_>, _>>()?;
        // Inserted while the WAL is locked: a rotation sees every batch of the segments it
        // seals already in memory.
        let mut wal = wal::lock(&self.wal);
        let segment = wal.append(&records)?;
        for (table, batch, range) in checked {
            self.table(table).insert(batch, segment, range);
        }
        Ok(())
    }

    /// Writes every table's rows held in memory to Parquet, then deletes the WAL segments
    /// they came from. Rows appended meanwhile stay in memory (and in the WAL). Runs as its
    /// own task: dropping the returned future does not stop a flush half-way.
    pub async fn flush(&self) -> Result<()> {
        let store = self.clone();
        tokio::spawn(async move { store.flush_now().await }).await?
    }

    async fn flush_now(&self) -> Result<()> {
        let _one_at_a_time = self.flush_lock.lock().await;
        let _timer = crate::metrics::FLUSH_SECONDS.start_timer();
        let wal = self.wal.clone();
        let sealed = tokio::task::spawn_blocking(move || wal::lock(&wal).rotate()).await??;
        let mut result = Ok(());
        for store in self.tables.values() {
            if let Err(e) = store.flush_through(sealed).await {
                result = result.and(Err(e));
            }
        }
        // Segments go only once every table's rows of them are in durable Parquet files.
        result?;
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || wal::lock(&wal).remove_through(sealed)).await?;
        Ok(())
    }

    /// Tables due for an early flush: those whose rows in memory reached `flush_rows`, or
    /// every table holding rows once all of them together reached `flush_bytes`.
    pub fn due_for_flush(&self) -> Vec<Table> {
        let bytes: usize = self.tables.values().map(|s| s.bytes_in_memory()).sum();
        let over_budget = bytes >= self.options.flush_bytes;
        self.tables
            .iter()
            .filter(|(_, s)| {
                let rows = s.rows_in_memory();
                rows >= self.options.flush_rows || (over_budget && rows > 0)
            })
            .map(|(t, _)| *t)
            .collect()
    }

    /// Arrow memory of the rows waiting for Parquet, all tables together.
    pub fn bytes_in_memory(&self) -> usize {
        self.tables.values().map(|s| s.bytes_in_memory()).sum()
    }

    /// Per table and hour: rows, bytes and time range.
    pub fn partitions(&self) -> Vec<PartitionStats> {
        self.tables.values().flat_map(|s| s.partitions()).collect()
    }

    fn maintenance_lock(&self) -> MutexGuard<'_, ()> {
        self.maintenance.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Merges the files of every complete hour (ended at least `compaction_grace` ago) that
    /// has more than one, per table, into one sorted file; in the hours still filling, merges
    /// the files of each size tier that has gathered enough of them (so a live hour flushed
    /// every 10 s stays at a few files). Blocking (run it in `spawn_blocking`). A failed
    /// merge is logged and counted, the others still done.
    pub fn compact(&self) -> Result<CompactionStats> {
        self.compact_at(Utc::now().timestamp_micros())
    }

    /// [`Store::compact`] as if the time were `now_micros`.
    pub(crate) fn compact_at(&self, now_micros: i64) -> Result<CompactionStats> {
        let _one_at_a_time = self.maintenance_lock();
        let _timer = crate::metrics::COMPACTION_SECONDS.start_timer();
        let grace = micros(self.options.compaction_grace);
        let before = hour_of(now_micros.saturating_sub(grace));
        let mut stats = CompactionStats::default();
        for (&table, store) in self.tables.iter() {
            for (hour, inputs) in store.compaction_candidates(before) {
                let merged = match compact::merge_hour(&self.dir, table, hour, &inputs) {
                    Ok(merged) => merged,
                    Err(e) => {
                        tracing::error!(%table, hour, error = %e, "compacting an hour failed");
                        stats.failed += 1;
                        continue;
                    }
                };
                let bytes_after = merged.bytes;
                let path = merged.path.clone();
                if !store.swap_compacted(&inputs, merged) {
                    // Cannot happen under the maintenance lock; undo to be safe.
                    let _ = fs::remove_file(&path);
                    continue;
                }
                stats.merges += 1;
                stats.files_merged += inputs.len() as u64;
                stats.rows += inputs.iter().map(|f| f.rows).sum::<u64>();
                stats.bytes_before += inputs.iter().map(|f| f.bytes).sum::<u64>();
                stats.bytes_after += bytes_after;
            }
            store.purge_retired(self.options.retired_file_grace);
        }
        if stats.merges > 0 {
            tracing::info!(?stats, "compacted");
        }
        Ok(stats)
    }

    /// Drops every hour whose end is older than `now_micros` minus the retention: its files
    /// and its rows still in memory. Returns the rows dropped (0 without a retention).
    /// Blocking (run it in `spawn_blocking`). Rows dropped from memory are still in the WAL
    /// until the next flush: after a restart before it they are back until the next pass
    /// (`run_flusher` runs one at start).
    pub fn apply_retention(&self, now_micros: i64) -> Result<u64> {
        let Some(retention) = self.options.retention else {
            return Ok(0);
        };
        let _one_at_a_time = self.maintenance_lock();
        // Rows before the start of the hour holding the cutoff are in hours that ended by it.
        let before = hour_of(now_micros.saturating_sub(micros(retention)));
        let mut dropped = 0;
        for store in self.tables.values() {
            dropped += store.drop_before(before);
            store.purge_retired(self.options.retired_file_grace);
        }
        crate::metrics::RETENTION_ROWS.inc_by(dropped);
        if dropped > 0 {
            tracing::info!(rows = dropped, before, "retention dropped old hours");
        }
        Ok(dropped)
    }

    /// One maintenance pass: compaction, then retention. Errors are logged.
    fn maintain(&self) {
        if let Err(e) = self.compact() {
            tracing::error!(error = %e, "compaction failed");
        }
        if let Err(e) = self.apply_retention(Utc::now().timestamp_micros()) {
            tracing::error!(error = %e, "retention failed");
        }
    }

    /// Flushes every `flush_interval` (and early, see [`Store::due_for_flush`]), and
    /// compacts and applies retention every `maintenance_interval` (first at start, in the
    /// background so flushes go on meanwhile), until `shutdown` resolves; then flushes once
    /// more.
    pub async fn run_flusher(&self, shutdown: impl std::future::Future<Output = ()>) {
        // Short: at full speed the memory budget fills at a few hundred MB/s.
        let period = Duration::from_millis(50)
            .min(self.options.flush_interval)
            .min(self.options.maintenance_interval);
        let mut tick = tokio::time::interval(period.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_flush = tokio::time::Instant::now();
        let mut last_maintenance: Option<tokio::time::Instant> = None;
        let mut maintenance: Option<tokio::task::JoinHandle<()>> = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            if last_flush.elapsed() >= self.options.flush_interval
                || !self.due_for_flush().is_empty()
            {
                last_flush = tokio::time::Instant::now();
                if let Err(e) = self.flush().await {
                    tracing::error!(error = %e, "flush to Parquet failed; rows stay in memory");
                }
            }
            let due =
                last_maintenance.is_none_or(|t| t.elapsed() >= self.options.maintenance_interval);
            if due && maintenance.as_ref().is_none_or(|h| h.is_finished()) {
                last_maintenance = Some(tokio::time::Instant::now());
                let store = self.clone();
                maintenance = Some(tokio::task::spawn_blocking(move || store.maintain()));
            }
        }
        if let Some(running) = maintenance {
            let _ = running.await;
        }
        if let Err(e) = self.flush().await {
            tracing::error!(error = %e, "final flush to Parquet failed");
        }
    }

    /// Test hook: WAL writes fail as if the disk were full once `bytes` more were written.
    #[cfg(test)]
    pub(crate) fn wal_fail_after(&self, bytes: Option<u64>) {
        wal::lock(&self.wal).fail_after(bytes);
    }

    /// The open WAL segment's path.
    #[cfg(test)]
    pub(crate) fn wal_path(&self) -> PathBuf {
        wal::lock(&self.wal).current_path()
    }
}

/// A duration in microseconds, saturating.
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The rows of a replayed `batch` (of `table`, from WAL `segment`) that no Parquet file
/// claims yet.
fn unflushed(
    claims: &Claims,
    table: Table,
    segment: u64,
    batch: RecordBatch,
) -> Result<RecordBatch> {
    let claimed = |hour: i64| claims.get(&(table, hour)).is_some_and(|&c| c >= segment);
    let Some((min, max)) = files::time_range(&batch) else {
        return Ok(batch);
    };
    let any = claims
        .range((table, hour_of(min))..=(table, hour_of(max)))
        .any(|(_, &c)| c >= segment);
    if !any {
        return Ok(batch);
    }
    let Some(ts) = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
    else {
        return Ok(batch);
    };
    let keep: BooleanArray = ts
        .values()
        .iter()
        .map(|&v| Some(!claimed(hour_of(v))))
        .collect();
    Ok(filter_record_batch(&batch, &keep)?)
}
