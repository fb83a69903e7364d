//! One table of the store: batches in memory, Parquet files on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use armorlake_common::Table;
use arrow::array::TimestampMicrosecondArray;
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::PartitionStats;
use crate::error::{Error, Result};
use crate::files::{self, FileMeta, hour_of};

/// A batch held in memory, with its time range.
#[derive(Debug, Clone)]
struct MemBatch {
    batch: RecordBatch,
    min_micros: i64,
    max_micros: i64,
}

#[derive(Debug, Default)]
struct State {
    memory: Vec<MemBatch>,
    memory_rows: usize,
    files: Vec<FileMeta>,
}

/// What a scan reads: the batches in memory and the files, taken at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Batches not yet in Parquet.
    pub memory: Vec<RecordBatch>,
    /// Parquet files.
    pub files: Vec<FileMeta>,
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
}

impl TableStore {
    /// Opens the table under `data_dir`, listing the Parquet files it already has.
    pub fn open(data_dir: &Path, table: Table) -> Result<TableStore> {
        let files = files::scan_dir(data_dir, table)?;
        Ok(TableStore {
            table,
            schema: table.schema(),
            data_dir: data_dir.to_path_buf(),
            state: RwLock::new(State {
                files,
                ..State::default()
            }),
            flush_lock: tokio::sync::Mutex::new(()),
        })
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

    /// Adds rows; they are visible to scans when this returns.
    pub fn append(&self, batch: RecordBatch) -> Result<()> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(Error::SchemaMismatch { table: self.table });
        }
        let Some((min_micros, max_micros)) = files::time_range(&batch) else {
            return Ok(()); // no rows
        };
        let rows = batch.num_rows();
        let mut state = self.write();
        state.memory.push(MemBatch {
            batch,
            min_micros,
            max_micros,
        });
        state.memory_rows += rows;
        Ok(())
    }

    /// Rows waiting in memory.
    pub fn rows_in_memory(&self) -> usize {
        self.read().memory_rows
    }

    /// The memory batches and files as they are now.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.read();
        Snapshot {
            memory: state.memory.iter().map(|m| m.batch.clone()).collect(),
            files: state.files.clone(),
        }
    }

    /// Writes the rows in memory to Parquet, one file per hour, then drops them from memory.
    /// Rows appended while the flush runs stay in memory for the next one.
    pub async fn flush(&self) -> Result<()> {
        let _one_at_a_time = self.flush_lock.lock().await;
        let taken: Vec<RecordBatch> = self.read().memory.iter().map(|m| m.batch.clone()).collect();
        if taken.is_empty() {
            return Ok(());
        }
        let (schema, dir, table) = (self.schema.clone(), self.data_dir.clone(), self.table);
        let count = taken.len();
        let written = tokio::task::spawn_blocking(move || -> Result<Vec<FileMeta>> {
            let sorted = sort_by_time(&schema, &taken)?;
            files::split_by_hour(&sorted)
                .into_iter()
                .map(|(hour, rows)| files::write_hour(&dir, table, hour, &rows))
                .collect()
        })
        .await??;
        let mut state = self.write();
        let rows: usize = state.memory[..count]
            .iter()
            .map(|m| m.batch.num_rows())
            .sum();
        state.memory.drain(..count);
        state.memory_rows -= rows;
        state.files.extend(written);
        tracing::debug!(table = %self.table, rows, "flushed to Parquet");
        Ok(())
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

/// Concatenates `batches` and sorts the rows by `timestamp` (the first column).
fn sort_by_time(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    let all = concat_batches(schema, batches)?;
    let indices = lexsort_to_indices(
        &[SortColumn {
            values: all.column(0).clone(),
            options: None,
        }],
        None,
    )?;
    Ok(take_record_batch(&all, &indices)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray};
    use std::sync::Arc;

    /// A messages batch with the given timestamps (microseconds).
    fn messages(ts: &[i64]) -> RecordBatch {
        let schema = Table::Messages.schema();
        let n = ts.len();
        let mut columns: Vec<ArrayRef> = vec![Arc::new(
            TimestampMicrosecondArray::from(ts.to_vec()).with_timezone("UTC"),
        )];
        for _ in 1..schema.fields().len() {
            columns.push(Arc::new(StringArray::from(vec!["x"; n])));
        }
        RecordBatch::try_new(schema, columns).expect("valid batch")
    }

    #[tokio::test]
    async fn flush_writes_one_sorted_file_per_hour_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = files::HOUR_MICROS;
        let store = TableStore::open(dir.path(), Table::Messages).expect("open");
        store
            .append(messages(&[h + 5, 2 * h + 1, h + 2]))
            .expect("append");
        store.append(messages(&[h + 3])).expect("append");
        assert_eq!(store.rows_in_memory(), 4);
        store.flush().await.expect("flush");
        assert_eq!(store.rows_in_memory(), 0);

        let snap = store.snapshot();
        assert!(snap.memory.is_empty());
        assert_eq!(snap.files.len(), 2);
        assert_eq!((snap.files[0].rows, snap.files[1].rows), (3, 1));
        assert_eq!(
            (snap.files[0].min_micros, snap.files[0].max_micros),
            (h + 2, h + 5)
        );
        assert!(
            snap.files[0]
                .path
                .to_string_lossy()
                .contains("/messages/1970-01-01/01/")
        );

        let parts = store.partitions();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].rows, 3);

        // A reopened store finds the same files.
        let reopened = TableStore::open(dir.path(), Table::Messages).expect("reopen");
        let mut again = reopened.snapshot().files;
        let mut before = snap.files;
        again.sort_by(|a, b| a.path.cmp(&b.path));
        before.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(again, before);
    }

    #[test]
    fn rejects_a_batch_of_another_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = TableStore::open(dir.path(), Table::Alerts).expect("open");
        assert!(matches!(
            store.append(messages(&[1])),
            Err(Error::SchemaMismatch { .. })
        ));
    }
}
