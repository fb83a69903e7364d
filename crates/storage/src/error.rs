//! Errors of the storage layer.

/// What can go wrong storing or reading events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Arrow rejected a batch (schema mismatch, bad data).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Writing or reading Parquet failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A batch does not have the table's schema.
    #[error("batch for table {table} does not match its schema")]
    SchemaMismatch {
        /// The table.
        table: armorlake_common::Table,
    },
    /// Writing to the write-ahead log failed: the batches were not stored (not acknowledged)
    /// and nothing of them is left in the log. Retrying later is safe.
    #[error("write-ahead log segment {segment}: {source}")]
    Wal {
        /// The segment being written.
        segment: u64,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// The result of storage operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
