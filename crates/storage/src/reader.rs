//! The Parquet reader a table's scans use: DataFusion's cached reader, asked for the page
//! index along with the footer so both stay in the table's metadata cache.
//!
//! DataFusion's Parquet opener asks for the footer alone and loads the page index itself
//! when a predicate can use it, outside the cache: every point lookup re-read and re-parsed
//! the column and offset indexes of its files, and the offset index it read was not the one
//! the page readers got, so skipping the rows before a match decompressed every page of the
//! row group. Asking for the index here puts the whole metadata in the cache once; the opener
//! then finds the index loaded and skips pages by their offsets.
//!
//! The bytes themselves are read with `pread` on the file, in the task that asks for them
//! when they are few ([`READ_INLINE_BYTES`]). The object store's local files hand every
//! read to tokio's blocking pool: a thread wake-up and a hand-back per column chunk, which
//! for a count over a few million rows (one read of a few tens of KiB per 64 Ki-row row
//! group) cost more than the reads, served from the page cache. Larger reads still go to
//! the blocking pool, where copying them overlaps the other partitions' decoding. The
//! files are local and immutable while a scan holds them.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
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

use crate::provider::FileLease;

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
        let path = file
            .extension::<FileLease>()
            .map(|lease| lease.0.path.clone());
        let inner = self
            .0
            .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(IndexedReader {
            inner,
            path,
            file: None,
        }))
    }
}

struct IndexedReader {
    /// DataFusion's cached reader: the metadata, and the bytes of a file not of a table.
    inner: Box<dyn AsyncFileReader + Send>,
    /// The table's file, read in place.
    path: Option<PathBuf>,
    /// It, once opened.
    file: Option<Arc<File>>,
}

/// Reads up to this many bytes at once in the asking task (a row group's chunk of one or
/// two columns: a count's); larger ones go to the blocking pool, whose thread copies them
/// while the other partitions decode (a scan of six columns reads ~230 KiB per row group,
/// and answered 8 % slower with every read in its task).
const READ_INLINE_BYTES: u64 = 64 * 1024;

impl IndexedReader {
    /// `ranges` of the table's file at `path`.
    fn read(
        &mut self,
        path: PathBuf,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'static, parquet::errors::Result<Vec<Bytes>>> {
        let file = match &self.file {
            Some(file) => Ok(Arc::clone(file)),
            None => File::open(&path).map(Arc::new),
        };
        let file = match file {
            Ok(file) => {
                self.file = Some(Arc::clone(&file));
                file
            }
            Err(e) => return futures::future::ready(Err(read_error(&path, e))).boxed(),
        };
        let bytes: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        let read = move || {
            ranges
                .iter()
                .map(|range| {
                    let mut bytes = vec![0; (range.end - range.start) as usize];
                    file.read_exact_at(&mut bytes, range.start)
                        .map_err(|e| read_error(&path, e))?;
                    Ok(Bytes::from(bytes))
                })
                .collect()
        };
        if bytes <= READ_INLINE_BYTES {
            return futures::future::ready(read()).boxed();
        }
        async move {
            tokio::task::spawn_blocking(read)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?
        }
        .boxed()
    }
}

fn read_error(path: &std::path::Path, e: std::io::Error) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::External(Box::new(std::io::Error::new(
        e.kind(),
        format!("reading {}: {e}", path.display()),
    )))
}

impl AsyncFileReader for IndexedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        match self.path.clone() {
            Some(path) => {
                let read = self.read(path, vec![range]);
                async move { read.await.map(|mut b| b.remove(0)) }.boxed()
            }
            None => self.inner.get_bytes(range),
        }
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        match self.path.clone() {
            Some(path) => self.read(path, ranges),
            None => self.inner.get_byte_ranges(ranges),
        }
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let options = options
            .cloned()
            .unwrap_or_default()
            .with_page_index_policy(PageIndexPolicy::Optional);
        async move { self.inner.get_metadata(Some(&options)).await }.boxed()
    }
}
