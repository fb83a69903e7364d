//! The distinct values of a text column, from the Parquet files' dictionary pages.
//!
//! A column chunk whose data pages are all dictionary encoded holds exactly the values of its
//! dictionary page (the writer puts a value there when a row holds it), so the chunk's
//! distinct values are that one page: a few kilobytes, where reading the rows means every
//! data page and a key per row. `count(DISTINCT pod_name)` and `SELECT DISTINCT
//! namespace_name`, which dashboards ask for their pickers, need no more.

use std::fs::File;
use std::sync::Arc;

use armorlake_common::schema::text_dictionary_type;
use arrow::array::{ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, Schema};
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use parquet::basic::Encoding;
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::serialized_reader::SerializedPageReader;

use crate::files::FileMeta;
use crate::provider::{FileLease, LocalTable};
use crate::reader::IndexedReaderFactory;

impl LocalTable {
    /// A plan giving every distinct value of the text column `column` (an index into the
    /// table's columns) at least once, as [`text_dictionary_type`], NULL included when a row
    /// holds it; `None` when a file cannot tell them from its dictionary pages alone (a
    /// chunk left plain, or no null count), and the rows must be read.
    pub async fn distinct_text(
        &self,
        state: &dyn Session,
        column: usize,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let stored = self.store.table().schema();
        let Some(field) = stored.fields().get(column) else {
            return Ok(None);
        };
        if field.data_type() != &DataType::Utf8 {
            return Ok(None);
        }
        // The field as the scan reading it as a dictionary gives it.
        let read_as = field
            .as_ref()
            .clone()
            .with_data_type(text_dictionary_type());
        let schema = Arc::new(Schema::new(vec![read_as]));
        let snapshot = self.store.snapshot();
        let object_store = state
            .runtime_env()
            .object_store(ObjectStoreUrl::local_filesystem())?;
        let reader = IndexedReaderFactory::new(object_store, self.store.metadata_cache().clone());
        let mut batches = Vec::new();
        let mut null = false;
        for file in &snapshot.files {
            match dictionary_values(&reader, file, field.name()).await? {
                Some((values, nulls)) => {
                    batches.extend(values);
                    null |= nulls;
                }
                None => return Ok(None),
            }
        }
        for batch in &snapshot.memory {
            let values = cast(batch.column(column), &text_dictionary_type())?;
            batches.push(values);
        }
        if null {
            let keys = Int32Array::new_null(1);
            let values = Arc::new(StringArray::from(Vec::<&str>::new())) as ArrayRef;
            batches.push(Arc::new(DictionaryArray::<Int32Type>::new(keys, values)));
        }
        let batches = batches
            .into_iter()
            .map(|values| RecordBatch::try_new(Arc::clone(&schema), vec![values]))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let plan = MemorySourceConfig::try_new_exec(&[batches], schema, None)?;
        Ok(Some(plan))
    }
}

/// The dictionary pages of column `name` in `file`, one array per row group, and whether
/// any row of it is NULL; `None` when a chunk is not all dictionary encoded or its null
/// count is unknown.
async fn dictionary_values(
    reader: &IndexedReaderFactory,
    file: &Arc<FileMeta>,
    name: &str,
) -> Result<Option<(Vec<ArrayRef>, bool)>> {
    let partitioned = PartitionedFile::new(file.path.to_string_lossy(), file.bytes)
        .with_extension(FileLease(Arc::clone(file)));
    let metadata = reader
        .create_reader(0, partitioned, None, &ExecutionPlanMetricsSet::new())?
        .get_metadata(None)
        .await?;
    let leaf = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().parts() == [name]);
    let Some(leaf) = leaf else {
        return Ok(None);
    };
    let handle = Arc::new(File::open(&file.path).map_err(|e| {
        DataFusionError::External(format!("opening {}: {e}", file.path.display()).into())
    })?);
    let mut values = Vec::with_capacity(metadata.num_row_groups());
    let mut nulls = false;
    for row_group in metadata.row_groups() {
        let chunk = row_group.column(leaf);
        let Some(null_count) = chunk.statistics().and_then(|s| s.null_count_opt()) else {
            return Ok(None);
        };
        nulls |= null_count > 0;
        if null_count == row_group.num_rows() as u64 {
            continue;
        }
        if !all_dictionary_encoded(chunk) {
            return Ok(None);
        }
        let rows = row_group.num_rows() as usize;
        let mut pages = SerializedPageReader::new(Arc::clone(&handle), chunk, rows, None)?;
        match pages.get_next_page()? {
            Some(Page::DictionaryPage {
                buf, num_values, ..
            }) => values.push(plain_strings(&buf, num_values as usize, &file.path)?),
            _ => return Ok(None),
        }
    }
    Ok(Some((values, nulls)))
}

/// Whether every data page of `chunk` is dictionary encoded (parquet's page encoding
/// statistics, read as a mask of the data pages' encodings).
fn all_dictionary_encoded(chunk: &ColumnChunkMetaData) -> bool {
    chunk.dictionary_page_offset().is_some()
        && chunk.page_encoding_stats_mask().is_some_and(|mask| {
            mask.is_only(Encoding::RLE_DICTIONARY) || mask.is_only(Encoding::PLAIN_DICTIONARY)
        })
}

/// A dictionary page of text (`PLAIN`: each value a little-endian `u32` length and its
/// bytes) as the values of a dictionary whose keys are each value once.
fn plain_strings(page: &[u8], count: usize, path: &std::path::Path) -> Result<ArrayRef> {
    let corrupt = |what: &str| {
        DataFusionError::External(format!("{}: a dictionary page {what}", path.display()).into())
    };
    let mut rest = page;
    let mut strings = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("ends inside a length"))?;
        let len = u32::from_le_bytes(*len) as usize;
        let value = after
            .get(..len)
            .ok_or_else(|| corrupt("ends inside a value"))?;
        strings
            .push(std::str::from_utf8(value).map_err(|_| corrupt("holds text that is not UTF-8"))?);
        rest = &after[len..];
    }
    let values = Arc::new(StringArray::from(strings)) as ArrayRef;
    let keys = Int32Array::from_iter_values(0..count as i32);
    Ok(Arc::new(DictionaryArray::<Int32Type>::new(keys, values)))
}
