//! Compaction: an hour's Parquet files merged into one (all of them once the hour is
//! complete; one size tier of them while it still fills, see `TableStore::compaction_candidates`).
//!
//! The files of an hour are each sorted by `timestamp`; they are merged with a streaming
//! k-way merge (memory: one batch per input), ties kept in the order the files were written.
//! The merged file is written durably (temporary name, fsync, rename, directory fsync) with
//! two footer entries: the names of the files it replaces and the largest WAL segment they
//! claimed (so the WAL claim of the hour stays valid, see `wal`). Only then is it swapped
//! into the table's file list; the old files are retired and deleted once no snapshot holds
//! them. A crash before the rename leaves a `.tmp` that `open` deletes; a crash after it
//! leaves old files that `open` deletes because the merged file names them. Either way each
//! row is on disk exactly once after the restart.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use armorlake_common::Table;
use arrow::array::{Array, TimestampMicrosecondArray};
use arrow::compute::interleave_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::KeyValue;

use crate::error::{Error, Result};
use crate::files::{self, FileMeta, REPLACES_KEY, WAL_SEGMENT_KEY};

/// Rows per batch written, and at most per batch read from an input.
const BATCH_ROWS: usize = 8192;

/// Rows held in memory across all inputs' current batches (an hour flushed every 10 s has
/// 360 files): each input reads batches of this divided by the inputs, at least 256 rows.
const MERGE_BUDGET_ROWS: usize = 128 * 1024;

/// What one compaction round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Merges done (one per complete hour, or per size tier of an hour still filling).
    pub merges: u64,
    /// Files merged (and retired).
    pub files_merged: u64,
    /// Rows rewritten.
    pub rows: u64,
    /// Bytes of the merged files before.
    pub bytes_before: u64,
    /// Bytes of the files written.
    pub bytes_after: u64,
    /// Merges that failed (logged; their files stay as they were).
    pub failed: u64,
}

/// Merges `inputs` (files of `table` and one hour, in the order they were written: all of the
/// hour's or some of them) into one durable file in the same directory. The WAL claims stay
/// true for any subset: the rows in Parquet are the same before and after.
pub(crate) fn merge_hour(
    data_dir: &Path,
    table: Table,
    hour_micros: i64,
    inputs: &[Arc<FileMeta>],
) -> Result<FileMeta> {
    let dir = files::hour_dir(data_dir, table, hour_micros);
    let mut names = Vec::with_capacity(inputs.len());
    for f in inputs {
        let name = f.path.file_name().and_then(|n| n.to_str());
        match name {
            Some(name) if f.path.parent() == Some(dir.as_path()) => names.push(name.to_string()),
            _ => {
                return Err(Error::io(format!("compacting {}", f.path.display()))(
                    std::io::Error::other("file is not in its hour's directory"),
                ));
            }
        }
    }
    let claim = inputs.iter().map(|f| f.wal_segment).max().unwrap_or(0);
    let metadata = vec![
        KeyValue::new(WAL_SEGMENT_KEY.to_string(), claim.to_string()),
        KeyValue::new(REPLACES_KEY.to_string(), names.join(",")),
    ];
    let schema = table.schema();
    let read_rows = (MERGE_BUDGET_ROWS / inputs.len().max(1)).clamp(256, BATCH_ROWS);
    let mut readers = Vec::with_capacity(inputs.len());
    for f in inputs {
        let file =
            File::open(&f.path).map_err(Error::io(format!("opening {}", f.path.display())))?;
        readers.push(
            ParquetRecordBatchReaderBuilder::try_new(file)?
                .with_batch_size(read_rows)
                .build()?,
        );
    }
    let expected: u64 = inputs.iter().map(|f| f.rows).sum();
    let (path, bytes) = files::write_durable(&dir, schema.clone(), metadata, |w| {
        let rows = merge(readers, &schema, w)?;
        if rows != expected {
            // Never rename into place a file that lost or gained rows: open() trusts its list.
            return Err(Error::io(format!("compacting {}", dir.display()))(
                std::io::Error::other(format!("merged {rows} rows, expected {expected}")),
            ));
        }
        Ok(())
    })?;
    Ok(FileMeta {
        path,
        bytes,
        rows: expected,
        hour_micros,
        min_micros: inputs
            .iter()
            .map(|f| f.min_micros)
            .min()
            .unwrap_or(hour_micros),
        max_micros: inputs
            .iter()
            .map(|f| f.max_micros)
            .max()
            .unwrap_or(hour_micros),
        wal_segment: claim,
    })
}

/// One input of the merge: its current batch and the next row to take from it.
struct Input {
    reader: ParquetRecordBatchReader,
    batch: RecordBatch,
    ts: TimestampMicrosecondArray,
    pos: usize,
    /// Where `batch` is in the batches the pending output rows point into.
    slot: usize,
}

/// The next non-empty batch of `reader` with its timestamps.
fn next_batch(
    reader: &mut ParquetRecordBatchReader,
) -> Result<Option<(RecordBatch, TimestampMicrosecondArray)>> {
    for batch in reader.by_ref() {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        let ts = batch
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| {
                arrow::error::ArrowError::SchemaError("first column is not a timestamp".into())
            })?
            .clone();
        return Ok(Some((batch, ts)));
    }
    Ok(None)
}

/// Merges the sorted `readers` into `writer`. Returns the rows written.
fn merge(
    readers: Vec<ParquetRecordBatchReader>,
    schema: &SchemaRef,
    writer: &mut ArrowWriter<File>,
) -> Result<u64> {
    let mut inputs = Vec::with_capacity(readers.len());
    // (timestamp, input): equal timestamps come out in input (file) order.
    let mut heap = BinaryHeap::new();
    for mut reader in readers {
        if let Some((batch, ts)) = next_batch(&mut reader)? {
            heap.push(Reverse((ts.value(0), inputs.len())));
            let slot = inputs.len();
            inputs.push(Input {
                reader,
                batch,
                ts,
                pos: 0,
                slot,
            });
        }
    }
    // The batches pending output rows point into: each input's current one, plus the ones
    // inputs moved past since the last write.
    let mut slots: Vec<RecordBatch> = inputs.iter().map(|x| x.batch.clone()).collect();
    let mut pending: Vec<(usize, usize)> = Vec::with_capacity(BATCH_ROWS);
    let mut rows = 0u64;
    while let Some(Reverse((_, i))) = heap.pop() {
        let input = &mut inputs[i];
        pending.push((input.slot, input.pos));
        input.pos += 1;
        if input.pos < input.batch.num_rows() {
            heap.push(Reverse((input.ts.value(input.pos), i)));
        } else if let Some((batch, ts)) = next_batch(&mut input.reader)? {
            heap.push(Reverse((ts.value(0), i)));
            slots.push(batch.clone());
            (input.batch, input.ts, input.pos, input.slot) = (batch, ts, 0, slots.len() - 1);
        }
        if pending.len() == BATCH_ROWS || heap.is_empty() {
            let batches: Vec<&RecordBatch> = slots.iter().collect();
            let out = interleave_record_batch(&batches, &pending)?;
            let out = RecordBatch::try_new(schema.clone(), out.columns().to_vec())?;
            writer.write(&out)?;
            rows += out.num_rows() as u64;
            pending.clear();
            slots.clear();
            for (slot, input) in inputs.iter_mut().enumerate() {
                slots.push(input.batch.clone());
                input.slot = slot;
            }
        }
    }
    Ok(rows)
}
