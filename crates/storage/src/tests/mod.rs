//! Store-level tests: the WAL, flushing, crash points, compaction and retention.

mod distinct;
mod hours;
mod maintenance;
mod throughput;
mod wal;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use armorlake_common::Table;
use arrow::array::TimestampMicrosecondArray;
use arrow::array::{ArrayRef, Int32Array, ListBuilder, StringArray, StringBuilder};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::files::HOUR_MICROS;
use crate::{Store, StoreOptions};

const H: i64 = HOUR_MICROS;

/// Options for tests: nothing runs in the background, retired files go at once.
fn options() -> StoreOptions {
    StoreOptions {
        retired_file_grace: Duration::ZERO,
        ..StoreOptions::default()
    }
}

/// A batch of `table` with the given timestamps; every other column says `tag` and the row.
fn batch(table: Table, ts: &[i64], tag: &str) -> RecordBatch {
    let schema = table.schema();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            match field.data_type() {
                DataType::Timestamp(..) => {
                    Arc::new(TimestampMicrosecondArray::from(ts.to_vec()).with_timezone("UTC"))
                }
                DataType::Int32 => Arc::new(Int32Array::from_iter_values(0..ts.len() as i32)),
                DataType::List(_) => {
                    let mut b = ListBuilder::new(StringBuilder::new());
                    for i in 0..ts.len() {
                        b.values().append_value(format!("{tag}{i}"));
                        b.append(true);
                    }
                    Arc::new(b.finish())
                }
                _ => Arc::new(StringArray::from_iter_values(
                    (0..ts.len()).map(|i| format!("{tag}-{}-{i}", field.name())),
                )),
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}

/// Every row of `batches` as text.
fn render(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows = Vec::new();
    let options = FormatOptions::default();
    for b in batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            let cells: Vec<String> = formatters.iter().map(|f| f.value(r).to_string()).collect();
            rows.push(cells.join("|"));
        }
    }
    rows
}

/// The rows of a Parquet file, in file order.
fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// Every row `table` holds (memory and files) as text, sorted.
fn contents(store: &Store, table: Table) -> Vec<String> {
    let snap = store.table(table).snapshot();
    let mut rows = render(&snap.memory);
    for f in &snap.files {
        rows.extend(render(&read_parquet(&f.path)));
    }
    rows.sort();
    rows
}

/// `batches` as sorted text rows.
fn expected(batches: &[&RecordBatch]) -> Vec<String> {
    let owned: Vec<RecordBatch> = batches.iter().map(|b| (*b).clone()).collect();
    let mut rows = render(&owned);
    rows.sort();
    rows
}

/// The WAL segment files, sorted.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    found.sort();
    found
}

/// The Parquet files under `dir`, sorted.
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}
