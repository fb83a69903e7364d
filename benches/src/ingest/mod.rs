//! The `ingest` benchmark: end-to-end ingest rate of one operator, and PostgreSQL 15's COPY
//! rate for the same events, measured in the same run (the binary is `src/bin/ingest.rs`).
//!
//! - [`run`]: the simulator, the operator and the stages, timed.
//! - [`pg`]: the same events as COPY text, loaded into a throwaway PostgreSQL cluster.
//! - [`report`]: printing what they measured.

pub mod pg;
pub mod report;
pub mod run;

use crate::postgres::DEFAULT_BIN;
use armorlake_common::Table;
use chrono::{DateTime, Utc};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// The goal for events per second, printed next to the figures (never asserted).
pub const GOAL_EVENTS_PER_SEC: f64 = 300_000.0;
/// The goal for armorlake's rate over PostgreSQL's (never asserted).
pub const GOAL_RATIO: f64 = 5.0;

/// How often the store is polled for its row count.
pub const POLL: Duration = Duration::from_millis(20);

/// Give up when the store has not grown for this long.
pub const STALL: Duration = Duration::from_secs(60);

/// The store's write-ahead log directory under its data dir (when it has one).
pub const WAL_DIR: &str = "wal";

/// The operator's name (its `operator` column).
pub const OPERATOR: &str = "operator";

/// End-to-end ingest rate of one operator vs PostgreSQL 15 COPY, same events, same run.
#[derive(Debug, Parser)]
#[command(name = "ingest")]
pub struct Args {
    /// Events the simulator serves in total (alerts + logs + messages).
    #[arg(long, default_value_t = 2_000_000)]
    pub events: u64,
    /// Seed of the simulator's event sequence.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated KubeArmor nodes (hosts) in the events.
    #[arg(long, default_value_t = 4)]
    pub nodes: u32,
    /// Runs of each measurement (armorlake's ingest, and PostgreSQL's COPY into re-created
    /// tables); the median run is reported, so one slow or fast run does not set the ratio.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
    /// Measure armorlake only.
    #[arg(long)]
    pub skip_postgres: bool,
    /// Also time the ingest path's stages on their own, each against its own simulator:
    /// gRPC only (events received as bytes and dropped), then the operator's pullers (read
    /// into Arrow batches) without a store.
    #[arg(long)]
    pub stages: bool,
    /// The operator's flush interval (StoreOptions::flush_interval; default: the store's).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub flush_interval: Option<Duration>,
    /// The operator's flush size in rows per table (StoreOptions::flush_rows; default: the
    /// store's).
    #[arg(long, value_name = "ROWS")]
    pub flush_rows: Option<usize>,
    /// The operator's memory budget in bytes of Arrow memory, all tables together
    /// (StoreOptions::flush_bytes; default: the store's).
    #[arg(long, value_name = "BYTES")]
    pub flush_bytes: Option<usize>,
    /// Alert rules for the second armorlake run (0: one run, without rules): predicate
    /// rules on every table, none of which matches often, so the figures compare the cost
    /// of evaluating them.
    #[arg(long, default_value_t = 20)]
    pub rules: usize,
    /// Where the temporary data directories go (default: the system's temp dir).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Directory of PostgreSQL 15's initdb, pg_ctl and postgres.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BIN)]
    pub pg_bin: PathBuf,
    /// Extra postgresql.conf line for the throwaway cluster (`name=value`), repeatable.
    /// Default: PostgreSQL's defaults (fsync on, synchronous_commit on).
    #[arg(long = "pg-setting", value_name = "NAME=VALUE")]
    pub pg_settings: Vec<String>,
}

/// What the armorlake part measured.
#[derive(Debug)]
pub struct Armorlake {
    pub events: u64,
    pub endpoint: String,
    pub started_utc: DateTime<Utc>,
    pub acknowledged: Duration,
    pub durable: Duration,
    pub marks: Vec<Mark>,
    pub max_sampled_rss: u64,
    /// Highest rows waiting in memory for Parquet during the run.
    pub max_in_memory: u64,
    pub peak_rss: u64,
    pub rss_before: u64,
    pub cpu_acknowledged: f64,
    pub cpu_durable: f64,
    /// Cores other processes kept busy on average during the run (noise).
    pub others_cores: f64,
    pub parquet_bytes: u64,
    pub parquet_files: usize,
    pub other_bytes: u64,
    pub other_files: usize,
    pub has_wal: bool,
    pub peak_wal_bytes: u64,
    pub rows_per_table: Vec<(Table, u64)>,
    pub dropped: u64,
}

/// The store's state when it reached a fraction of the events.
#[derive(Debug)]
pub struct Mark {
    pub percent: u64,
    pub rows: u64,
    pub elapsed: Duration,
    pub rss: u64,
    /// Highest of the quarter that ends here: VmRSS, rows waiting in memory for Parquet,
    /// and WAL bytes.
    pub quarter: Highs,
}

/// Highest values seen over a stretch of the run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Highs {
    pub rss: u64,
    pub in_memory: u64,
    pub wal: u64,
}

impl Highs {
    pub fn see(&mut self, rss: u64, in_memory: u64, wal: u64) {
        self.rss = self.rss.max(rss);
        self.in_memory = self.in_memory.max(in_memory);
        self.wal = self.wal.max(wal);
    }
}

/// What the PostgreSQL part measured.
#[derive(Debug)]
pub struct Postgres {
    pub version: String,
    /// The median run's COPY per table: rows and time.
    pub tables: Vec<(Table, u64, Duration)>,
    /// Every run's COPY of all tables, in the order they ran.
    pub runs: Vec<Duration>,
    pub copy_text_bytes: u64,
    pub generate: Duration,
    pub relation_bytes: u64,
    /// Cores PostgreSQL (server processes and psql) kept busy during the COPYs.
    pub postgres_cores: f64,
    /// Cores other processes kept busy during the COPYs (noise).
    pub others_cores: f64,
}

/// One stage's time and CPU for all the events.
#[derive(Debug)]
pub struct Stage {
    pub name: &'static str,
    pub took: Duration,
    pub cpu: f64,
    pub others_cores: f64,
}
