//! Prometheus metrics of an operator's storage: WAL and Parquet bytes written, flush and
//! compaction times, rows dropped by retention.

use std::sync::LazyLock;

use prometheus::{
    Histogram, IntCounter, exponential_buckets, register_histogram, register_int_counter,
};

/// Bytes appended (and fsynced) to the write-ahead log.
pub static WAL_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "armorlake_wal_bytes_written_total",
        "Bytes appended and fsynced to the write-ahead log"
    )
    .expect("a valid static metric")
});

/// Bytes of durable Parquet files written, by flushes and compactions.
pub static PARQUET_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "armorlake_parquet_bytes_written_total",
        "Bytes of Parquet files written durably (flushes and compactions)"
    )
    .expect("a valid static metric")
});

/// How long a flush of the rows in memory to Parquet took.
pub static FLUSH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "armorlake_flush_seconds",
        "Time to write the rows held in memory to Parquet and drop their WAL segments",
        exponential_buckets(0.001, 4.0, 10).expect("valid buckets")
    )
    .expect("a valid static metric")
});

/// How long a compaction pass took.
pub static COMPACTION_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "armorlake_compaction_seconds",
        "Time of one compaction pass (merging the files of complete hours)",
        exponential_buckets(0.001, 4.0, 10).expect("valid buckets")
    )
    .expect("a valid static metric")
});

/// Rows dropped by retention.
pub static RETENTION_ROWS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "armorlake_retention_rows_dropped_total",
        "Rows dropped because their hour is older than the retention"
    )
    .expect("a valid static metric")
});

/// Makes every series exist from the start, so a scrape shows them before the first flush.
pub fn init() {
    LazyLock::force(&WAL_BYTES);
    LazyLock::force(&PARQUET_BYTES);
    LazyLock::force(&FLUSH_SECONDS);
    LazyLock::force(&COMPACTION_SECONDS);
    LazyLock::force(&RETENTION_ROWS);
}
