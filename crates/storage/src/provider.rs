//! `LocalTable`: a DataFusion table over one operator's rows of one table.

use std::fmt;
use std::sync::Arc;

use armorlake_common::schema::with_dictionaries;
use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, Result, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;

use crate::files::FileMeta;
use crate::range::TimeRange;
use crate::reader::IndexedReaderFactory;
use crate::table::TableStore;

/// Reads one consistent snapshot of a table: its batches in memory and its Parquet files,
/// leaving out those whose rows all lie outside the time range the filters allow.
/// Filters are pushed into the Parquet reader (row-group and page pruning) and re-checked
/// above the scan.
#[derive(Clone)]
pub struct LocalTable {
    pub(crate) store: Arc<TableStore>,
}

impl LocalTable {
    /// A table provider over `store`.
    pub fn new(store: Arc<TableStore>) -> LocalTable {
        LocalTable { store }
    }
}

impl fmt::Debug for LocalTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalTable")
            .field("table", &self.store.table())
            .finish()
    }
}

#[async_trait]
impl TableProvider for LocalTable {
    fn schema(&self) -> SchemaRef {
        self.store.table().query_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.scan_with_dictionaries(state, projection, filters, limit, &[])
            .await
    }
}

impl LocalTable {
    /// [`TableProvider::scan`], reading the text columns `dictionaries` (indexes into the
    /// table's columns) as `Dictionary(Int32, Utf8)` instead of `Utf8View`: from Parquet, the
    /// keys into each column chunk's dictionary page and the page itself, with no string
    /// touched per row (a chunk that fell back to plain pages is packed into a dictionary by
    /// the reader). For `CountByTextExec`, which only needs to tell the values apart.
    ///
    /// Filters on those columns are left out of what the Parquet reader prunes by (they are
    /// checked above the scan all the same).
    pub async fn scan_with_dictionaries(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
        dictionaries: &[usize],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let table = self.store.table();
        let not_text = |c: usize| plan_err!("column {c} of {table} is not text");
        let schema = with_dictionaries(&self.schema(), dictionaries).or_else(not_text)?;
        let projected = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema.clone(),
        };
        let snapshot = self.store.snapshot_within(TimeRange::of(filters));
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();

        if !snapshot.files.is_empty() {
            // Footers and page indexes come from the table's cache after the first read.
            let object_store = state
                .runtime_env()
                .object_store(ObjectStoreUrl::local_filesystem())?;
            let reader =
                IndexedReaderFactory::new(object_store, self.store.metadata_cache().clone());
            // The session's Parquet options (`datafusion.execution.parquet.*`), as DataFusion's
            // own tables take them.
            let mut source = ParquetSource::new(schema.clone())
                .with_table_parquet_options(state.default_table_options().parquet)
                .with_parquet_file_reader_factory(Arc::new(reader));
            let prunable = filters
                .iter()
                .filter(|f| {
                    f.column_refs().iter().all(|c| {
                        !dictionaries
                            .iter()
                            .any(|&d| schema.field(d).name() == &c.name)
                    })
                })
                .cloned()
                .collect::<Vec<_>>();
            if let Some(predicate) = conjunction(prunable) {
                let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
                source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
            }
            // The reader is told which columns to give as dictionaries by the file's Arrow
            // schema: every file is written in the table's stored schema. (Should that schema
            // ever gain a column, files written before it would need their own here.)
            let file_schema = match dictionaries.is_empty() {
                true => None,
                false => Some(with_dictionaries(&table.schema(), dictionaries).or_else(not_text)?),
            };
            let files = snapshot
                .files
                .iter()
                .map(|f| {
                    let file = PartitionedFile::new(f.path.to_string_lossy(), f.bytes)
                        .with_extension(FileLease(f.clone()));
                    match &file_schema {
                        Some(s) => file.with_arrow_schema(s.clone()),
                        None => file,
                    }
                })
                .collect::<Vec<_>>();
            let groups = split_groups(files, state.config().target_partitions());
            let config =
                FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                    .with_projection_indices(projection.cloned())?
                    .with_file_groups(groups)
                    .with_limit(limit)
                    .build();
            inputs.push(DataSourceExec::from_data_source(config));
        }
        if !snapshot.memory.is_empty() {
            // Rows in memory are stored with `Utf8` text; only the columns read are cast.
            let batches = snapshot
                .memory
                .iter()
                .map(|b| as_query_batch(b, projection, &projected))
                .collect::<Result<Vec<_>>>()?;
            let mem =
                MemorySourceConfig::try_new(&[batches], projected.clone(), None)?.with_limit(limit);
            inputs.push(DataSourceExec::from_data_source(mem));
        }
        if inputs.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}

/// The columns `projection` of a stored `batch`, in the query schema's types (`projected`):
/// text becomes `Utf8View`, whose views point into the batch's own buffers.
fn as_query_batch(
    batch: &RecordBatch,
    projection: Option<&Vec<usize>>,
    projected: &SchemaRef,
) -> Result<RecordBatch> {
    let batch = match projection {
        Some(p) => batch.project(p)?,
        None => batch.clone(),
    };
    let columns = batch
        .columns()
        .iter()
        .zip(projected.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        projected.clone(),
        columns,
        &options,
    )?)
}

/// Keeps a snapshot's file on disk for as long as the plan reading it lives, even if
/// compaction or retention removed it from the table meanwhile; the reader reads the file
/// at its path.
#[derive(Debug)]
pub(crate) struct FileLease(pub(crate) Arc<FileMeta>);

/// Spreads files over at most `n` groups read in parallel.
fn split_groups(files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
    let n = n.clamp(1, files.len().max(1));
    let mut groups: Vec<Vec<PartitionedFile>> = (0..n).map(|_| Vec::new()).collect();
    for (i, f) in files.into_iter().enumerate() {
        groups[i % n].push(f);
    }
    groups.into_iter().map(FileGroup::new).collect()
}
