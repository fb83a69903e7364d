//! A flush's rows arranged into hours, each written sorted by `timestamp`, copied only when
//! they arrived out of order.
//!
//! Within one stream, events arrive in time order, so usually every batch is sorted and each
//! starts where the previous one ended. Then an hour is its batches' slices as they are, and
//! they go straight to the Parquet writer: no concatenation, no copy. Otherwise (several
//! endpoints, a clock step back) the hour's rows are put in order by sorting
//! (timestamp, batch, row) keys, and the output is gathered with `interleave` one chunk at a
//! time, so no copy of the whole hour is ever held. Either way the rows come out sorted by
//! timestamp, rows with equal timestamps in the order they arrived.

use std::fs::File;

use arrow::array::{TimestampMicrosecondArray, UInt32Array};
use arrow::compute::{interleave_record_batch, take_record_batch};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;

use crate::error::Result;
use crate::files;

/// Rows gathered per write when an hour's rows must be reordered.
const CHUNK_ROWS: usize = 64 * 1024;

/// The rows of one hour of a flush.
#[derive(Debug)]
pub(crate) struct Hour {
    /// Start of the hour, microseconds.
    pub hour_micros: i64,
    /// Slices of the flushed batches, in arrival order, each sorted by timestamp.
    parts: Vec<RecordBatch>,
    /// Each part starts at or after the end of the previous one: the parts in order are the
    /// hour's rows sorted.
    in_order: bool,
    /// Rows in all parts.
    pub rows: u64,
    /// Earliest timestamp.
    pub min_micros: i64,
    /// Latest timestamp.
    pub max_micros: i64,
}

/// The timestamps (first column) of a batch of the store.
fn timestamps(batch: &RecordBatch) -> Result<&TimestampMicrosecondArray> {
    batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| {
            arrow::error::ArrowError::SchemaError("first column is not a timestamp".into()).into()
        })
}

/// `batch` sorted by timestamp, equal timestamps in row order; the batch itself (no copy)
/// when it already is.
fn sorted(batch: &RecordBatch) -> Result<RecordBatch> {
    let ts = timestamps(batch)?.values();
    if ts.is_sorted() {
        return Ok(batch.clone());
    }
    let mut order: Vec<u32> = (0..ts.len() as u32).collect();
    // Stable: equal timestamps keep their order.
    order.sort_by_key(|&i| ts[i as usize]);
    Ok(take_record_batch(batch, &UInt32Array::from(order))?)
}

/// Arranges `batches` (in the order they arrived) into hours, earliest first.
pub(crate) fn by_hour(batches: &[RecordBatch]) -> Result<Vec<Hour>> {
    let mut hours: std::collections::BTreeMap<i64, Hour> = Default::default();
    for batch in batches {
        let batch = sorted(batch)?;
        for (hour_micros, part) in files::split_by_hour(&batch) {
            let ts = timestamps(&part)?.values();
            let (Some(&first), Some(&last)) = (ts.first(), ts.last()) else {
                continue;
            };
            let hour = hours.entry(hour_micros).or_insert(Hour {
                hour_micros,
                parts: Vec::new(),
                in_order: true,
                rows: 0,
                min_micros: first,
                max_micros: last,
            });
            // While in order, `max_micros` is the end of the previous part.
            if !hour.parts.is_empty() && first < hour.max_micros {
                hour.in_order = false;
            }
            hour.rows += part.num_rows() as u64;
            hour.min_micros = hour.min_micros.min(first);
            hour.max_micros = hour.max_micros.max(last);
            hour.parts.push(part);
        }
    }
    Ok(hours.into_values().collect())
}

impl Hour {
    /// Whether the rows are written as they are, without reordering.
    #[cfg(test)]
    pub(crate) fn in_order(&self) -> bool {
        self.in_order
    }

    /// The slices the hour is made of, in arrival order.
    #[cfg(test)]
    pub(crate) fn parts(&self) -> &[RecordBatch] {
        &self.parts
    }

    /// Writes the hour's rows to `writer`, sorted by timestamp.
    pub(crate) fn write(&self, writer: &mut ArrowWriter<File>) -> Result<()> {
        if self.in_order {
            for part in &self.parts {
                writer.write(part)?;
            }
            return Ok(());
        }
        let order = self.merge_order()?;
        let parts: Vec<&RecordBatch> = self.parts.iter().collect();
        for chunk in order.chunks(CHUNK_ROWS) {
            writer.write(&interleave_record_batch(&parts, chunk)?)?;
        }
        Ok(())
    }

    /// (part, row) of every row, sorted by timestamp, equal timestamps in arrival order.
    fn merge_order(&self) -> Result<Vec<(usize, usize)>> {
        let mut keys = Vec::with_capacity(self.rows as usize);
        for (p, part) in self.parts.iter().enumerate() {
            let ts = timestamps(part)?.values();
            keys.extend(ts.iter().enumerate().map(|(r, &t)| (t, p, r)));
        }
        // Stable, and fast on the sorted runs the parts are.
        keys.sort_by_key(|&(t, _, _)| t);
        Ok(keys.into_iter().map(|(_, p, r)| (p, r)).collect())
    }
}
