//! PostgreSQL 15 holding the same rows: a throwaway cluster, armorlake's tables with an index
//! on `timestamp`, loaded with COPY (the Parquet files' rows streamed as COPY text), vacuumed
//! and analysed, then timed through the wire protocol like armorlake.

use std::path::Path;
use std::time::{Duration, Instant};

use std::io::Write;

use armorlake_benches::copy::{create_table, quote_ident, write_copy_text};
use armorlake_benches::postgres::{Binaries, Cluster};
use armorlake_benches::process::{CpuClock, Machine, MachineCpu};

use crate::client::{Target, Timing, time_queries};
use crate::data::TableFiles;
use crate::queries::Query;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// What the PostgreSQL part measured.
#[derive(Debug)]
pub struct Postgres {
    pub version: String,
    /// COPY of every table, index included, then VACUUM ANALYZE.
    pub load: Duration,
    pub relation_bytes: u64,
    pub timings: Vec<Timing>,
    /// Cores PostgreSQL and this process kept busy while the queries ran.
    pub own_cores: f64,
    /// Cores other processes kept busy meanwhile.
    pub others_cores: f64,
}

/// The rows of a Parquet file as COPY text.
fn copy_text_of(parquet: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    let file = std::fs::File::open(parquet)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(8192).build())
        .map_err(std::io::Error::other)?;
    let mut out = out;
    for batch in reader {
        write_copy_text(&batch.map_err(std::io::Error::other)?, &mut out)?;
    }
    Ok(())
}

/// Settings the benchmark gives its sessions (`timeout` as `statement_timeout`).
fn session_setup(timeout: Duration) -> Vec<String> {
    vec![
        "SET TimeZone = 'UTC'".into(),
        format!("SET statement_timeout = {}", timeout.as_millis()),
    ]
}

/// Starts the cluster under `root`, loads `files` and times `queries`.
#[expect(clippy::too_many_arguments, reason = "one call site, all plain inputs")]
pub fn run(
    bin: &Binaries,
    root: &Path,
    settings: &[String],
    files: &[TableFiles],
    queries: &[Query],
    runs: usize,
    timeout: Duration,
    runtime: &tokio::runtime::Runtime,
) -> Result<Postgres, String> {
    let mut cluster = Cluster::start(bin, root, settings)?;
    let version = cluster.version()?;
    let loading = Instant::now();
    for f in files {
        let name = f.table.name();
        cluster.query(&create_table(name, &f.table.schema()).map_err(|e| e.to_string())?)?;
        cluster.query(&format!(
            "CREATE INDEX ON {} ({})",
            quote_ident(name),
            quote_ident(armorlake_common::TIMESTAMP_COLUMN)
        ))?;
        let rows = cluster.copy_streamed(name, |out| copy_text_of(&f.parquet, out))?;
        if rows != f.rows {
            return Err(format!(
                "COPY {name} loaded {rows} rows, the file has {}",
                f.rows
            ));
        }
        cluster.query(&format!("VACUUM ANALYZE {}", quote_ident(name)))?;
    }
    let load = loading.elapsed();
    let relation_bytes = files
        .iter()
        .map(|f| {
            cluster
                .query(&format!(
                    "SELECT pg_total_relation_size('{}')",
                    quote_ident(f.table.name())
                ))
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();

    let clock = CpuClock::new();
    let postmaster = cluster.postmaster_pid();
    let ours = || {
        clock.seconds()
            + postmaster
                .and_then(|p| clock.tree_seconds(p))
                .unwrap_or(0.0)
    };
    let (machine, ours_before, started) = (MachineCpu::now(), ours(), Instant::now());
    let setup = session_setup(timeout);
    let setup: Vec<&str> = setup.iter().map(String::as_str).collect();
    let timings = runtime.block_on(time_queries(
        &Target::postgres(cluster.port()),
        queries,
        runs,
        timeout,
        &setup,
    ))?;
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    let busy = MachineCpu::now().busy_cores_since(&machine, Machine::detect().cores);
    let own_cores = (ours() - ours_before) / wall;
    cluster.stop()?;
    Ok(Postgres {
        version,
        load,
        relation_bytes,
        timings,
        own_cores,
        others_cores: (busy - own_cores).max(0.0),
    })
}
