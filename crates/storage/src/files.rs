//! Parquet files of one table: writing an hour's sorted rows, and finding what is on disk.
//!
//! Two key-value entries in a file's footer tie it to the write-ahead log and to compaction:
//!
//! - [`WAL_SEGMENT_KEY`]: the WAL segment the flush that wrote the file had sealed. Every row of
//!   this table and hour that was in a segment up to that number is in a Parquet file.
//! - [`REPLACES_KEY`]: for a file written by compaction, the names of the files (same
//!   directory) it merged. If they are still there when the store opens, a crash hit between
//!   the merged file's rename and their deletion: they are deleted then.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use armorlake_common::{TIMESTAMP_COLUMN, Table};
use arrow::array::{Array, TimestampMicrosecondArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::hours::Hour;

/// Microseconds in one hour.
pub const HOUR_MICROS: i64 = 3_600_000_000;

/// Rows per Parquet row group: small enough for min/max pruning within an hour.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Rows per data page. Small pages let a selective scan (a point lookup in an hour) decode
/// only the pages its page index says can match; at 4096 rows the files are no larger than
/// at the writer's default of 20,000, and a point lookup takes about a third less time.
const DATA_PAGE_ROWS: usize = 4096;

/// Footer key: the WAL segment the file's rows are flushed through (see the module doc).
pub const WAL_SEGMENT_KEY: &str = "armorlake.wal_segment";
/// Footer key: comma-separated names of the files a compacted file replaces.
pub const REPLACES_KEY: &str = "armorlake.replaces";

/// One Parquet file of a table, as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Absolute path of the file.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// Rows in the file.
    pub rows: u64,
    /// Start of the hour the file belongs to, microseconds since the epoch.
    pub hour_micros: i64,
    /// Earliest `timestamp` in the file, microseconds.
    pub min_micros: i64,
    /// Latest `timestamp` in the file, microseconds.
    pub max_micros: i64,
    /// Every row of this table and hour from WAL segments up to this one is in Parquet
    /// (0: the file makes no claim).
    pub wal_segment: u64,
}

/// The start of the hour holding `micros`.
pub fn hour_of(micros: i64) -> i64 {
    micros.div_euclid(HOUR_MICROS) * HOUR_MICROS
}

/// `<data_dir>/<table>/<yyyy-mm-dd>/<hh>`.
pub(crate) fn hour_dir(data_dir: &Path, table: Table, hour_micros: i64) -> PathBuf {
    let t = DateTime::<Utc>::from_timestamp_micros(hour_micros).unwrap_or_default();
    data_dir
        .join(table.name())
        .join(t.format("%Y-%m-%d").to_string())
        .join(t.format("%H").to_string())
}

fn writer_properties() -> Result<WriterProperties> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_dictionary_enabled(true)
        // Every timestamp differs: a dictionary of a row group's 64 Ki values (512 KiB) would
        // be decompressed whole by every lookup. Sorted, they delta-encode to a few bits each.
        .set_column_dictionary_enabled(ColumnPath::from(TIMESTAMP_COLUMN), false)
        .set_column_encoding(
            ColumnPath::from(TIMESTAMP_COLUMN),
            Encoding::DELTA_BINARY_PACKED,
        )
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(DATA_PAGE_ROWS)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .build())
}

/// A name no other file of this process or an earlier run has.
fn unique_name() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = Utc::now().timestamp_micros();
    format!(
        "{now:016x}-{:04x}.parquet",
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fsyncs a directory, so a rename or a new file in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(format!("syncing {}", dir.display())))
}

/// Writes a new Parquet file in `dir` and makes it durable: written under a temporary name,
/// fsynced, renamed, directory fsynced. `write` feeds the rows (sorted by `timestamp`).
/// Returns the final path and the file's size.
pub(crate) fn write_durable(
    dir: &Path,
    schema: SchemaRef,
    metadata: Vec<KeyValue>,
    write: impl FnOnce(&mut ArrowWriter<File>) -> Result<()>,
) -> Result<(PathBuf, u64)> {
    fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let path = dir.join(unique_name());
    let tmp = path.with_extension("parquet.tmp");
    let result = (|| {
        let file = File::create(&tmp).map_err(Error::io(format!("creating {}", tmp.display())))?;
        let mut writer = ArrowWriter::try_new(file, schema, Some(writer_properties()?))?;
        for kv in metadata {
            writer.append_key_value_metadata(kv);
        }
        write(&mut writer)?;
        let file = writer.into_inner()?;
        file.sync_all()
            .map_err(Error::io(format!("syncing {}", tmp.display())))?;
        let bytes = file
            .metadata()
            .map_err(Error::io(format!("reading size of {}", tmp.display())))?
            .len();
        drop(file);
        fs::rename(&tmp, &path).map_err(Error::io(format!("renaming {}", tmp.display())))?;
        Ok(bytes)
    })();
    match result {
        Ok(bytes) => {
            sync_dir(dir)?;
            crate::metrics::PARQUET_BYTES.inc_by(bytes);
            Ok((path, bytes))
        }
        Err(e) => {
            // Best effort: open() removes leftovers too.
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes the rows of one hour as a new durable Parquet file, sorted by `timestamp`,
/// recording that it holds the table's rows of this hour through WAL segment `wal_segment`.
pub(crate) fn write_hour(
    data_dir: &Path,
    table: Table,
    hour: &Hour,
    wal_segment: u64,
) -> Result<FileMeta> {
    let dir = hour_dir(data_dir, table, hour.hour_micros);
    let metadata = vec![KeyValue::new(
        WAL_SEGMENT_KEY.to_string(),
        wal_segment.to_string(),
    )];
    let (path, bytes) = write_durable(&dir, table.schema(), metadata, |w| hour.write(w))?;
    Ok(FileMeta {
        path,
        bytes,
        rows: hour.rows,
        hour_micros: hour.hour_micros,
        min_micros: hour.min_micros,
        max_micros: hour.max_micros,
        wal_segment,
    })
}

/// The min and max of the batch's `timestamp` column (the first), if it has rows.
pub fn time_range(batch: &RecordBatch) -> Option<(i64, i64)> {
    let ts = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()?;
    let min = arrow::compute::min(ts)?;
    let max = arrow::compute::max(ts)?;
    Some((min, max))
}

/// The Parquet files of `table` under `data_dir`, oldest hour first. Temporary files left
/// by a crash in the middle of a write are removed, and so are files a compacted file of the
/// same hour replaces (a crash between the compacted file's rename and their deletion).
pub fn scan_dir(data_dir: &Path, table: Table) -> Result<Vec<FileMeta>> {
    let root = data_dir.join(table.name());
    let mut found = Vec::new();
    if !root.exists() {
        return Ok(found);
    }
    for day in read_dir_sorted(&root)? {
        if !day.is_dir() {
            continue;
        }
        for hour in read_dir_sorted(&day)? {
            if !hour.is_dir() {
                continue;
            }
            let mut in_hour = Vec::new();
            let mut replaced = Vec::new();
            for path in read_dir_sorted(&hour)? {
                match path.extension().and_then(|e| e.to_str()) {
                    Some("parquet") => {
                        let (meta, replaces) = read_meta(&path)?;
                        replaced.extend(replaces);
                        in_hour.push(meta);
                    }
                    Some("tmp") => {
                        tracing::warn!(path = %path.display(), "removing unfinished Parquet file");
                        fs::remove_file(&path)
                            .map_err(Error::io(format!("removing {}", path.display())))?;
                    }
                    _ => {}
                }
            }
            for meta in in_hour {
                let name = meta.path.file_name().and_then(|n| n.to_str());
                if name.is_some_and(|n| replaced.iter().any(|r| r == n)) {
                    tracing::warn!(path = %meta.path.display(), "removing a file already compacted");
                    fs::remove_file(&meta.path)
                        .map_err(Error::io(format!("removing {}", meta.path.display())))?;
                } else {
                    found.push(meta);
                }
            }
        }
    }
    Ok(found)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = fs::read_dir(dir)
        .map_err(Error::io(format!("listing {}", dir.display())))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(Error::io(format!("listing {}", dir.display())))?;
    paths.sort();
    Ok(paths)
}

/// Rows, time range and WAL segment of a Parquet file, and the names of the files it
/// replaces, from its footer.
fn read_meta(path: &Path) -> Result<(FileMeta, Vec<String>)> {
    let file = File::open(path).map_err(Error::io(format!("opening {}", path.display())))?;
    let bytes = file
        .metadata()
        .map_err(Error::io(format!("reading size of {}", path.display())))?
        .len();
    let reader = SerializedFileReader::new(file)?;
    let meta = reader.metadata();
    let rows = meta.file_metadata().num_rows().max(0) as u64;
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for rg in meta.row_groups() {
        if let Some(Statistics::Int64(s)) = rg.column(0).statistics() {
            if let Some(v) = s.min_opt() {
                min = min.min(*v);
            }
            if let Some(v) = s.max_opt() {
                max = max.max(*v);
            }
        }
    }
    if min > max {
        (min, max) = (0, 0);
    }
    let (mut wal_segment, mut replaces) = (0, Vec::new());
    for kv in meta
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
    {
        let value = kv.value.as_deref().unwrap_or_default();
        if kv.key == WAL_SEGMENT_KEY {
            wal_segment = value.parse().unwrap_or(0);
        } else if kv.key == REPLACES_KEY {
            replaces = value
                .split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect();
        }
    }
    let meta = FileMeta {
        path: path.to_path_buf(),
        bytes,
        rows,
        hour_micros: hour_of(min),
        min_micros: min,
        max_micros: max,
        wal_segment,
    };
    Ok((meta, replaces))
}

/// Splits `batch`, sorted by `timestamp`, into one slice per hour.
pub fn split_by_hour(batch: &RecordBatch) -> Vec<(i64, RecordBatch)> {
    let Some(ts) = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut start = 0;
    while start < ts.len() {
        let hour = hour_of(ts.value(start));
        let next = hour + HOUR_MICROS;
        // Rows are sorted: the hour ends at the first row at or past `next`.
        let len = ts.values()[start..].partition_point(|&v| v < next);
        out.push((hour, batch.slice(start, len)));
        start += len;
    }
    out
}
