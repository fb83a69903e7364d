//! The Parquet reader a table's scans use: DataFusion's cached reader, asked for the page
//! index along with the footer so both stay in the table's metadata cache.
//!
//! DataFusion's Parquet opener asks for the footer alone and loads the page index itself
//! when a predicate can use it, outside the cache: every point lookup re-read and re-parsed
//! the column and offset indexes of its files, and the offset index it read was not the one
//! the page readers got, so skipping the rows before a match decompressed every page of the
//! row group. Asking for the index here puts the whole metadata in the cache once; the opener
//! then finds the index loaded and skips pages by their offsets.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::object_store::ObjectStore;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};

/// Readers whose metadata always includes the page index, cached per table.
#[derive(Debug)]
pub(crate) struct IndexedReaderFactory(CachedParquetFileReaderFactory);

impl IndexedReaderFactory {
    /// Readers of files in `store`, with footers and page indexes kept in `cache`.
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        cache: Arc<FileMetadataCache>,
    ) -> IndexedReaderFactory {
        IndexedReaderFactory(CachedParquetFileReaderFactory::new(store, cache))
    }
}

impl ParquetFileReaderFactory for IndexedReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::common::Result<Box<dyn AsyncFileReader + Send>> {
        let inner = self
            .0
            .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(IndexedReader(inner)))
    }
}

struct IndexedReader(Box<dyn AsyncFileReader + Send>);

impl AsyncFileReader for IndexedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.0.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.0.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let options = options
            .cloned()
            .unwrap_or_default()
            .with_page_index_policy(PageIndexPolicy::Optional);
        async move { self.0.get_metadata(Some(&options)).await }.boxed()
    }
}
