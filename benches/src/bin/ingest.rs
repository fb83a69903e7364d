//! `ingest`: end-to-end ingest rate of one operator, and PostgreSQL 15's COPY rate for the
//! same events, measured in the same run.
//!
//! ```text
//! cargo run --release -p armorlake-benches --bin ingest -- --events 5000000
//! ```
//!
//! 1. The built-in KubeArmor simulator (`rate` 0: as fast as the client reads, KubeArmor's
//!    gRPC protocol) serves `--events` events in total on 127.0.0.1.
//! 2. One operator, started as `armorlake up` starts it, pulls them (gRPC → Arrow → store).
//!    Timed: until the store holds every event (acknowledged: queryable, and in the WAL when
//!    the store has one), and until the final flush has put them all in Parquet (durable).
//!    VmRSS is sampled at 25/50/75/100 % of the events; VmHWM is the peak.
//! 3. The same events (`armorlake_sim` sequence, converted by the same ingest code) are
//!    written as COPY text files (not timed), then loaded with `psql -c "COPY t FROM STDIN"`
//!    into a throwaway PostgreSQL 15 cluster, one table per armorlake table with an index on
//!    `timestamp` (timed).
//!
//! Everything printed is information: no figure is asserted.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use armorlake_benches::copy::{create_table, quote_ident, write_copy_text};
use armorlake_benches::postgres::{Binaries, Cluster, DEFAULT_BIN};
use armorlake_benches::process::{self, CpuClock, Machine, MachineCpu};
use armorlake_benches::{human_bytes, thousands};
use armorlake_common::Table;
use armorlake_ingest::convert::{AlertBatchBuilder, LogBatchBuilder, MessageBatchBuilder};
use armorlake_meta::{MemoryMeta, MetaService};
use armorlake_node::operator::{Operator, OperatorConfig, PullOptions};
use armorlake_sim::{SimConfig, SimEvent, Simulator};
use armorlake_storage::StoreOptions;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Goals of the issue, printed next to the figures (never asserted).
const GOAL_EVENTS_PER_SEC: f64 = 300_000.0;
const GOAL_RATIO: f64 = 5.0;
/// How often the store is polled for its row count.
const POLL: Duration = Duration::from_millis(20);
/// Give up when the store has not grown for this long.
const STALL: Duration = Duration::from_secs(60);
/// The store's write-ahead log directory under its data dir (when it has one).
const WAL_DIR: &str = "wal";
/// The operator's name (its `operator` column).
const OPERATOR: &str = "operator";

/// End-to-end ingest rate of one operator vs PostgreSQL 15 COPY, same events, same run.
#[derive(Debug, Parser)]
#[command(name = "ingest")]
struct Args {
    /// Events the simulator serves in total (alerts + logs + messages).
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Seed of the simulator's event sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated KubeArmor nodes (hosts) in the events.
    #[arg(long, default_value_t = 4)]
    nodes: u32,
    /// Measure armorlake only.
    #[arg(long)]
    skip_postgres: bool,
    /// Also time the ingest path's stages on their own, each against its own simulator:
    /// gRPC with prost decoding only, then the operator's pullers (decode + Arrow batches)
    /// without a store.
    #[arg(long)]
    stages: bool,
    /// The operator's flush interval (StoreOptions::flush_interval; default: the store's).
    #[arg(long, value_parser = humantime::parse_duration)]
    flush_interval: Option<Duration>,
    /// The operator's flush size in rows per table (StoreOptions::flush_rows; default: the
    /// store's).
    #[arg(long, value_name = "ROWS")]
    flush_rows: Option<usize>,
    /// The operator's memory budget in bytes of Arrow memory, all tables together
    /// (StoreOptions::flush_bytes; default: the store's).
    #[arg(long, value_name = "BYTES")]
    flush_bytes: Option<usize>,
    /// Where the temporary data directories go (default: the system's temp dir).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Directory of PostgreSQL 15's initdb, pg_ctl and postgres.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BIN)]
    pg_bin: PathBuf,
    /// Extra postgresql.conf line for the throwaway cluster (`name=value`), repeatable.
    /// Default: PostgreSQL's defaults (fsync on, synchronous_commit on).
    #[arg(long = "pg-setting", value_name = "NAME=VALUE")]
    pg_settings: Vec<String>,
}

/// What the armorlake part measured.
#[derive(Debug)]
struct Armorlake {
    events: u64,
    endpoint: String,
    started_utc: DateTime<Utc>,
    acknowledged: Duration,
    durable: Duration,
    marks: Vec<Mark>,
    max_sampled_rss: u64,
    /// Highest rows waiting in memory for Parquet during the run.
    max_in_memory: u64,
    peak_rss: u64,
    rss_before: u64,
    cpu_acknowledged: f64,
    cpu_durable: f64,
    /// Cores other processes kept busy on average during the run (noise).
    others_cores: f64,
    parquet_bytes: u64,
    parquet_files: usize,
    other_bytes: u64,
    other_files: usize,
    has_wal: bool,
    peak_wal_bytes: u64,
    rows_per_table: Vec<(Table, u64)>,
    dropped: u64,
}

/// The store's state when it reached a fraction of the events.
#[derive(Debug)]
struct Mark {
    percent: u64,
    rows: u64,
    elapsed: Duration,
    rss: u64,
    /// Highest of the quarter that ends here: VmRSS, rows waiting in memory for Parquet,
    /// and WAL bytes.
    quarter: Highs,
}

/// Highest values seen over a stretch of the run.
#[derive(Debug, Default, Clone, Copy)]
struct Highs {
    rss: u64,
    in_memory: u64,
    wal: u64,
}

impl Highs {
    fn see(&mut self, rss: u64, in_memory: u64, wal: u64) {
        self.rss = self.rss.max(rss);
        self.in_memory = self.in_memory.max(in_memory);
        self.wal = self.wal.max(wal);
    }
}

/// What the PostgreSQL part measured.
#[derive(Debug)]
struct Postgres {
    version: String,
    tables: Vec<(Table, u64, Duration)>,
    copy_text_bytes: u64,
    generate: Duration,
    relation_bytes: u64,
    /// Cores PostgreSQL (server processes and psql) kept busy during the COPYs.
    postgres_cores: f64,
    /// Cores other processes kept busy during the COPYs (noise).
    others_cores: f64,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(&args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("ingest benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let machine = Machine::detect();
    println!(
        "armorlake ingest benchmark: {} events (seed {}, {} simulated nodes)",
        thousands(args.events),
        args.seed,
        args.nodes
    );
    println!(
        "machine: {} cores, {} RAM, {}",
        machine.cores,
        human_bytes(machine.ram),
        machine.cpu
    );
    if args.events == 0 {
        return Err("--events must be at least 1".into());
    }
    let temp = match &args.dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("armorlake-bench-")
            .tempdir_in(dir),
        None => tempfile::Builder::new()
            .prefix("armorlake-bench-")
            .tempdir(),
    }
    .map_err(|e| format!("creating a temporary directory: {e}"))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the tokio runtime: {e}"))?;
    let armorlake = runtime.block_on(armorlake(args, &temp.path().join("armorlake")))?;
    // After the measurement, so they leave its peak RSS alone.
    let mut stages = Vec::new();
    if args.stages {
        stages.push(runtime.block_on(stage_decode(args))?);
        stages.push(runtime.block_on(stage_convert(args))?);
    }
    // Ends the simulator's and operator's leftovers before PostgreSQL runs.
    runtime.shutdown_timeout(Duration::from_secs(5));
    print_armorlake(&armorlake);
    if args.stages {
        print_stages(&stages, &armorlake);
    }

    let postgres = if args.skip_postgres {
        println!("\nPostgreSQL: skipped (--skip-postgres)");
        None
    } else {
        match Binaries::find(&args.pg_bin) {
            Err(missing) => {
                println!("\nPostgreSQL: skipped: {missing}");
                None
            }
            Ok(bin) => {
                let root = temp.path().join("postgres");
                std::fs::create_dir_all(&root)
                    .map_err(|e| format!("creating {}: {e}", root.display()))?;
                match postgres(args, &bin, &root, &armorlake) {
                    Ok(pg) => {
                        print_postgres(&pg, args);
                        Some(pg)
                    }
                    Err(e) => {
                        println!("\nPostgreSQL: failed, no comparison in this run: {e}");
                        None
                    }
                }
            }
        }
    };
    print_summary(&armorlake, postgres.as_ref());
    Ok(())
}

/// A running in-process simulator serving `events` events as fast as they are read.
struct Sim {
    sim: Simulator,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Sim {
    async fn start(args: &Args) -> Result<Sim, String> {
        let sim = Simulator::new(SimConfig {
            rate: 0,
            seed: args.seed,
            nodes: args.nodes,
            count: Some(args.events),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding the simulator: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("reading the simulator's address: {e}"))?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(sim.clone().serve(listener, stop.clone().cancelled_owned()));
        Ok(Sim {
            sim,
            addr,
            stop,
            task,
        })
    }

    /// Stops serving; returns the events it dropped (0 unless a subscriber lagged).
    async fn stop(self) -> u64 {
        self.stop.cancel();
        let dropped = self.sim.dropped();
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("warning: the simulator ended with an error: {e}"),
            Ok(Err(e)) => eprintln!("warning: the simulator task failed: {e}"),
            Err(_) => eprintln!("warning: the simulator did not stop within 10 s"),
        }
        dropped
    }
}

/// One stage's time and CPU for all the events.
#[derive(Debug)]
struct Stage {
    name: &'static str,
    took: Duration,
    cpu: f64,
    others_cores: f64,
}

/// Measures a stage's wall time, this process's CPU and the other processes' CPU.
struct Meter {
    started: Instant,
    cpu: CpuClock,
    cpu_start: f64,
    machine: MachineCpu,
}

impl Meter {
    fn start() -> Meter {
        let cpu = CpuClock::new();
        Meter {
            machine: MachineCpu::now(),
            cpu_start: cpu.seconds(),
            cpu,
            started: Instant::now(),
        }
    }

    /// (wall time, own CPU seconds, cores other processes kept busy).
    fn read(&self) -> (Duration, f64, f64) {
        let took = self.started.elapsed();
        let cpu = self.cpu.seconds() - self.cpu_start;
        let busy = MachineCpu::now().busy_cores_since(&self.machine, Machine::detect().cores);
        let others = (busy - cpu / took.as_secs_f64().max(1e-9)).max(0.0);
        (took, cpu, others)
    }
}

/// A warning when other processes used a noticeable share of the machine.
fn noise(others_cores: f64) -> &'static str {
    if others_cores > 0.2 {
        " (NOISY: figures are lower than on a quiet machine)"
    } else {
        ""
    }
}

/// Polls `count` until it reaches `n` (or stalls for [`STALL`]).
async fn wait_for(n: u64, count: impl Fn() -> u64) -> Result<(), String> {
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let now = count();
        if now >= n {
            return Ok(());
        }
        if now > last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > STALL {
            return Err(format!("stalled at {now} of {n} events"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// gRPC only: the three Watch streams, each on its own connection as the puller opens
/// them, decoded by prost and dropped.
async fn stage_decode(args: &Args) -> Result<Stage, String> {
    use armorlake_proto::feeder::RequestMessage;
    use armorlake_proto::feeder::log_service_client::LogServiceClient;
    use std::sync::atomic::{AtomicU64, Ordering};

    let sim = Sim::start(args).await?;
    let meter = Meter::start();
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for kind in [Table::Alerts, Table::Logs, Table::Messages] {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", sim.addr))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("connecting to the simulator: {e}"))?;
        let mut client = LogServiceClient::new(channel).max_decoding_message_size(4 << 20);
        let received = received.clone();
        let request = RequestMessage {
            filter: "all".into(),
        };
        tasks.push(tokio::spawn(async move {
            macro_rules! drain {
                ($call:ident) => {{
                    let Ok(response) = client.$call(request).await else {
                        return;
                    };
                    let mut stream = response.into_inner();
                    while let Ok(Some(_event)) = stream.message().await {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }};
            }
            match kind {
                Table::Alerts => drain!(watch_alerts),
                Table::Logs => drain!(watch_logs),
                Table::Messages => drain!(watch_messages),
            }
        }));
    }
    let outcome = wait_for(args.events, || received.load(Ordering::Relaxed)).await;
    let (took, cpu, others_cores) = meter.read();
    for task in &tasks {
        task.abort();
    }
    sim.stop().await;
    outcome?;
    Ok(Stage {
        name: "gRPC + prost decode only (events dropped)",
        took,
        cpu,
        others_cores,
    })
}

/// The operator's pullers (decode + Arrow batches of 4096 rows) into a channel that is
/// drained and dropped: the operator without its store.
async fn stage_convert(args: &Args) -> Result<Stage, String> {
    use std::sync::atomic::{AtomicU64, Ordering};

    let sim = Sim::start(args).await?;
    let meter = Meter::start();
    let (sink, mut queue) = tokio::sync::mpsc::channel::<(Table, RecordBatch)>(256);
    let shutdown = CancellationToken::new();
    let (_status, tasks) = armorlake_ingest::puller::spawn(
        armorlake_ingest::PullerConfig::new(sim.addr.to_string(), OPERATOR),
        sink,
        shutdown.clone(),
    );
    let rows = Arc::new(AtomicU64::new(0));
    let counter = rows.clone();
    let drain = tokio::spawn(async move {
        while let Some((_, batch)) = queue.recv().await {
            counter.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        }
    });
    let outcome = wait_for(args.events, || rows.load(Ordering::Relaxed)).await;
    let (took, cpu, others_cores) = meter.read();
    shutdown.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let _ = drain.await;
    sim.stop().await;
    outcome?;
    Ok(Stage {
        name: "+ Arrow batches (the operator's pullers, no store)",
        took,
        cpu,
        others_cores,
    })
}

fn print_stages(stages: &[Stage], a: &Armorlake) {
    println!(
        "
stages (each against its own simulator; the simulator's work is included):"
    );
    let line = |name: &str, took: Duration, cpu: f64, others: f64| {
        println!(
            "  {name:<52} {:>6.2} s  {:>9} events/s  CPU {:>5.1} s ({:.2} cores, {:.2} \
             µs/event), others {others:.2} cores",
            took.as_secs_f64(),
            thousands(rate(a.events, took) as u64),
            cpu,
            cpu / took.as_secs_f64().max(1e-9),
            cpu * 1e6 / a.events as f64
        );
    };
    for s in stages {
        line(s.name, s.took, s.cpu, s.others_cores);
    }
    line(
        "+ store (the operator: WAL, acknowledged)",
        a.acknowledged,
        a.cpu_acknowledged,
        a.others_cores,
    );
    line(
        "+ final flush (durable in Parquet)",
        a.durable,
        a.cpu_durable,
        a.others_cores,
    );
}

/// Rows the store holds over all tables (memory and Parquet), and how many of them wait in
/// memory for Parquet; one consistent snapshot per table. Cheaper than `Store::partitions`,
/// which sizes every batch in memory.
fn stored_rows(store: &armorlake_storage::Store) -> (u64, u64) {
    let (mut stored, mut in_memory) = (0, 0);
    for table in Table::ALL {
        let snapshot = store.table(table).snapshot();
        let memory: u64 = snapshot.memory.iter().map(|b| b.num_rows() as u64).sum();
        let files: u64 = snapshot.files.iter().map(|f| f.rows).sum();
        stored += memory + files;
        in_memory += memory;
    }
    (stored, in_memory)
}

/// Runs the simulator and one operator until the store holds every event, then shuts the
/// operator down (final flush included).
async fn armorlake(args: &Args, data_dir: &Path) -> Result<Armorlake, String> {
    let n = args.events;
    let sim = Sim::start(args).await?;
    let addr = sim.addr;

    let mut store = StoreOptions::default();
    if let Some(every) = args.flush_interval {
        store.flush_interval = every;
    }
    if let Some(rows) = args.flush_rows {
        store.flush_rows = rows;
    }
    if let Some(bytes) = args.flush_bytes {
        store.flush_bytes = bytes;
    }
    println!(
        "operator: 1 endpoint (in-process simulator at {addr}, rate 0 = as fast as read), \
         flush every {:?}, or at {} rows in a table or {} in memory, data in {}",
        store.flush_interval,
        thousands(store.flush_rows as u64),
        human_bytes(store.flush_bytes as u64),
        data_dir.display()
    );
    let meta: Arc<dyn MetaService> = Arc::new(MemoryMeta::new());
    let shutdown = CancellationToken::new();
    let cpu = CpuClock::new();
    let rss_before = process::rss();
    let machine_start = MachineCpu::now();
    let cpu_start = cpu.seconds();
    let started_utc = Utc::now();
    let started = Instant::now();
    let operator = Operator::start(
        OperatorConfig {
            id: OPERATOR.into(),
            cluster: String::new(),
            address: String::new(),
            data_dir: data_dir.to_path_buf(),
            endpoints: vec![addr.to_string()],
            pull: PullOptions::default(),
            store,
            heartbeat: Duration::from_secs(1),
        },
        meta,
        shutdown.clone(),
    )
    .await
    .map_err(|e| format!("starting the operator: {e}"))?;

    let wal_dir = data_dir.join(WAL_DIR);
    let mut marks = Vec::new();
    let (mut max_sampled_rss, mut peak_wal_bytes, mut wal_bytes) = (0, 0, 0);
    let (mut quarter, mut run_highs) = (Highs::default(), Highs::default());
    let (mut last_rows, mut last_growth) = (0u64, Instant::now());
    for poll in 0u64.. {
        tokio::time::sleep(POLL).await;
        let (rows, in_memory) = stored_rows(operator.store());
        let rss = process::rss();
        max_sampled_rss = max_sampled_rss.max(rss);
        if poll.is_multiple_of(5) {
            wal_bytes = files_under(&wal_dir, |_| true).1;
            peak_wal_bytes = peak_wal_bytes.max(wal_bytes);
        }
        quarter.see(rss, in_memory, wal_bytes);
        run_highs.see(rss, in_memory, wal_bytes);
        for percent in [25u64, 50, 75, 100] {
            let reached = u128::from(rows) * 100 >= u128::from(n) * u128::from(percent);
            if reached && !marks.iter().any(|m: &Mark| m.percent == percent) {
                marks.push(Mark {
                    percent,
                    rows,
                    elapsed: started.elapsed(),
                    rss,
                    quarter,
                });
                quarter = Highs::default();
            }
        }
        if rows >= n {
            break;
        }
        if rows > last_rows {
            (last_rows, last_growth) = (rows, Instant::now());
        } else if last_growth.elapsed() > STALL {
            let streams: Vec<String> = operator
                .sources()
                .iter()
                .map(|s| {
                    let s = s.snapshot();
                    format!(
                        "{} {} events {} ({})",
                        s.table,
                        s.state.name(),
                        s.events,
                        s.last_error.unwrap_or_default()
                    )
                })
                .collect();
            shutdown.cancel();
            sim.stop().await;
            return Err(format!(
                "the store stopped growing at {rows} of {n} rows for {STALL:?}; streams: {}",
                streams.join("; ")
            ));
        }
    }
    let acknowledged = started.elapsed();
    let cpu_acknowledged = cpu.seconds() - cpu_start;

    let store = operator.store().clone();
    shutdown.cancel();
    operator.join().await;
    let durable = started.elapsed();
    let cpu_durable = cpu.seconds() - cpu_start;
    let busy = MachineCpu::now().busy_cores_since(&machine_start, Machine::detect().cores);
    let others_cores = (busy - cpu_durable / durable.as_secs_f64().max(1e-9)).max(0.0);
    max_sampled_rss = max_sampled_rss.max(process::rss());
    let peak_rss = process::peak_rss();

    let dropped = sim.stop().await;

    let mut rows_per_table = Vec::new();
    let (mut parquet_rows, mut parquet_bytes, mut parquet_files) = (0u64, 0u64, 0usize);
    for table in Table::ALL {
        let snapshot = store.table(table).snapshot();
        let rows: u64 = snapshot.files.iter().map(|f| f.rows).sum();
        let in_memory: usize = snapshot.memory.iter().map(|b| b.num_rows()).sum();
        if in_memory > 0 {
            eprintln!("warning: {in_memory} {table} rows still in memory after the final flush");
        }
        parquet_rows += rows;
        parquet_bytes += snapshot.files.iter().map(|f| f.bytes).sum::<u64>();
        parquet_files += snapshot.files.len();
        rows_per_table.push((table, rows));
    }
    if parquet_rows != n {
        eprintln!("warning: Parquet holds {parquet_rows} rows, expected {n}");
    }
    let has_wal = wal_dir.is_dir();
    let (other_files, other_bytes) =
        files_under(data_dir, |p| p.extension().is_none_or(|e| e != "parquet"));

    Ok(Armorlake {
        events: n,
        endpoint: addr.to_string(),
        started_utc,
        acknowledged,
        durable,
        marks,
        max_sampled_rss,
        max_in_memory: run_highs.in_memory,
        peak_rss,
        rss_before,
        cpu_acknowledged,
        cpu_durable,
        others_cores,
        parquet_bytes,
        parquet_files,
        other_bytes,
        other_files,
        has_wal,
        peak_wal_bytes,
        rows_per_table,
        dropped,
    })
}

/// Count and bytes of the files under `dir` (recursively) that `select` picks.
fn files_under(dir: &Path, select: impl Fn(&Path) -> bool) -> (usize, u64) {
    let mut stack = vec![dir.to_path_buf()];
    let (mut count, mut bytes) = (0, 0);
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if select(&path) {
                count += 1;
                bytes += meta.len();
            }
        }
    }
    (count, bytes)
}

fn rate(events: u64, took: Duration) -> f64 {
    events as f64 / took.as_secs_f64().max(1e-9)
}

fn print_armorlake(a: &Armorlake) {
    println!("\narmorlake: simulator → gRPC → operator (Arrow) → store → Parquet, one process");
    println!(
        "  {:>8}  {:>12}  {:>9}  {:>10}  | {:>10}  {:>14}  {:>10}",
        "progress", "rows stored", "elapsed", "VmRSS", "max VmRSS", "max in memory", "max WAL"
    );
    println!(
        "  {:>8}  {:>12}  {:>9}  {:>10}  |",
        "start",
        0,
        "0.00 s",
        human_bytes(a.rss_before)
    );
    for m in &a.marks {
        println!(
            "  {:>7}%  {:>12}  {:>7.2} s  {:>10}  | {:>10}  {:>14}  {:>10}",
            m.percent,
            thousands(m.rows),
            m.elapsed.as_secs_f64(),
            human_bytes(m.rss),
            human_bytes(m.quarter.rss),
            thousands(m.quarter.in_memory),
            human_bytes(m.quarter.wal)
        );
    }
    println!(
        "  (max: highest sampled since the previous line; in memory: rows not yet in Parquet)"
    );
    let per_table: Vec<String> = a
        .rows_per_table
        .iter()
        .map(|(t, rows)| format!("{t} {}", thousands(*rows)))
        .collect();
    println!("  events by table: {}", per_table.join(", "));
    let wal = if a.has_wal {
        "in the WAL"
    } else {
        "in memory: this store keeps no WAL"
    };
    println!(
        "  acknowledged (queryable; {wal}): {} events in {:.2} s = {} events/s, CPU {:.1} s \
         ({:.2} cores)",
        thousands(a.events),
        a.acknowledged.as_secs_f64(),
        thousands(rate(a.events, a.acknowledged) as u64),
        a.cpu_acknowledged,
        a.cpu_acknowledged / a.acknowledged.as_secs_f64().max(1e-9)
    );
    println!(
        "  durable in Parquet (after the final flush):   {} events in {:.2} s = {} events/s, \
         CPU {:.1} s ({:.2} cores)",
        thousands(a.events),
        a.durable.as_secs_f64(),
        thousands(rate(a.events, a.durable) as u64),
        a.cpu_durable,
        a.cpu_durable / a.durable.as_secs_f64().max(1e-9)
    );
    println!(
        "  Parquet: {} bytes ({}) in {} files, {:.1} bytes/event",
        thousands(a.parquet_bytes),
        human_bytes(a.parquet_bytes),
        a.parquet_files,
        a.parquet_bytes as f64 / a.events as f64,
    );
    if a.has_wal {
        println!(
            "  WAL ({WAL_DIR}/): largest sampled size {}; left after the final flush: {} \
             files, {} bytes",
            human_bytes(a.peak_wal_bytes),
            a.other_files,
            thousands(a.other_bytes)
        );
    }
    println!(
        "  other processes kept {:.2} cores busy on average meanwhile{}",
        a.others_cores,
        noise(a.others_cores)
    );
    println!(
        "  memory: peak RSS (VmHWM) {}, highest sampled VmRSS {} (simulator included); most \
         rows waiting in memory for Parquet {}; events dropped by the simulator: {}",
        human_bytes(a.peak_rss),
        human_bytes(a.max_sampled_rss),
        thousands(a.max_in_memory),
        a.dropped
    );
}

/// Event `n` as a row of its table, through the ingest crate's converters.
struct Converters {
    alerts: AlertBatchBuilder,
    logs: LogBatchBuilder,
    messages: MessageBatchBuilder,
}

/// Rows per batch when writing the COPY files.
const COPY_BATCH: usize = 4096;

/// One table's COPY text file.
struct CopyFile {
    table: Table,
    path: PathBuf,
    rows: u64,
}

/// Writes the COPY text files of the events the simulator served: one per table, rows
/// converted exactly as the operator converts them. Returns the files and their bytes.
fn write_copy_files(
    args: &Args,
    a: &Armorlake,
    dir: &Path,
) -> Result<(Vec<CopyFile>, u64), String> {
    let source = armorlake_sim::source(args.seed, args.nodes);
    let mut conv = Converters {
        alerts: AlertBatchBuilder::new(OPERATOR, &a.endpoint, COPY_BATCH),
        logs: LogBatchBuilder::new(OPERATOR, &a.endpoint, COPY_BATCH),
        messages: MessageBatchBuilder::new(OPERATOR, &a.endpoint, COPY_BATCH),
    };
    let mut outputs = Vec::new();
    for table in Table::ALL {
        let path = dir.join(format!("{table}.copy"));
        let file = File::create(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        outputs.push((table, path, BufWriter::with_capacity(1 << 20, file), 0u64));
    }
    let io = |e: std::io::Error| format!("writing COPY text: {e}");
    let mut flush = |table: Table, batch: RecordBatch| -> Result<(), String> {
        let (_, _, out, rows) = &mut outputs[table.index()];
        *rows += batch.num_rows() as u64;
        write_copy_text(&batch, out).map_err(io)
    };
    // The simulator stamped event n with the time it was served; spread the same span.
    let span = a.acknowledged.as_micros() as f64;
    for n in 0..a.events {
        let offset = (span * n as f64 / a.events as f64) as i64;
        let at = a
            .started_utc
            .checked_add_signed(TimeDelta::microseconds(offset))
            .unwrap_or(a.started_utc);
        match source.event(n, at) {
            SimEvent::Alert(alert) => {
                conv.alerts.append(&alert);
                if conv.alerts.len() >= COPY_BATCH {
                    flush(Table::Alerts, conv.alerts.finish())?;
                }
            }
            SimEvent::Log(log) => {
                conv.logs.append(&log);
                if conv.logs.len() >= COPY_BATCH {
                    flush(Table::Logs, conv.logs.finish())?;
                }
            }
            SimEvent::Message(message) => {
                conv.messages.append(&message);
                if conv.messages.len() >= COPY_BATCH {
                    flush(Table::Messages, conv.messages.finish())?;
                }
            }
        }
    }
    flush(Table::Alerts, conv.alerts.finish())?;
    flush(Table::Logs, conv.logs.finish())?;
    flush(Table::Messages, conv.messages.finish())?;
    let mut files = Vec::new();
    let mut bytes = 0;
    for (table, path, out, rows) in outputs {
        // On disk before PostgreSQL is timed, so their writeback does not compete with it.
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        files.push(CopyFile { table, path, rows });
    }
    Ok((files, bytes))
}

/// Loads the same events into PostgreSQL 15 with COPY, one table per armorlake table, each
/// with an index on `timestamp`.
fn postgres(args: &Args, bin: &Binaries, root: &Path, a: &Armorlake) -> Result<Postgres, String> {
    println!("\nPostgreSQL 15: writing the same events as COPY text files (not timed)...");
    let generating = Instant::now();
    let (files, copy_text_bytes) = write_copy_files(args, a, root)?;
    let generate = generating.elapsed();

    let mut cluster = Cluster::start(bin, root, &args.pg_settings)?;
    let version = cluster.version()?;
    for table in Table::ALL {
        let name = table.name();
        cluster.query(&create_table(name, &table.schema()).map_err(|e| e.to_string())?)?;
        cluster.query(&format!(
            "CREATE INDEX ON {} ({})",
            quote_ident(name),
            quote_ident(armorlake_common::TIMESTAMP_COLUMN)
        ))?;
    }
    let mut tables = Vec::new();
    // Who else used the machine meanwhile: everything but PostgreSQL, psql and this process.
    let clock = CpuClock::new();
    let postmaster = cluster.postmaster_pid();
    let ours = |clock: &CpuClock| {
        clock.seconds_with_children()
            + postmaster
                .and_then(|p| clock.tree_seconds(p))
                .unwrap_or(0.0)
    };
    let machine = MachineCpu::now();
    let ours_before = ours(&clock);
    let copying = Instant::now();
    for file in &files {
        let (copied, took) = cluster.copy_from(file.table.name(), &file.path)?;
        if copied != file.rows {
            return Err(format!(
                "COPY {} loaded {copied} rows, the file has {}",
                file.table, file.rows
            ));
        }
        tables.push((file.table, copied, took));
    }
    let copy_wall = copying.elapsed().as_secs_f64().max(1e-9);
    let busy = MachineCpu::now().busy_cores_since(&machine, Machine::detect().cores);
    let postgres_cores = (ours(&clock) - ours_before) / copy_wall;
    let others_cores = (busy - postgres_cores).max(0.0);
    let relation_bytes = Table::ALL
        .iter()
        .map(|t| {
            cluster
                .query(&format!(
                    "SELECT pg_total_relation_size('{}')",
                    quote_ident(t.name())
                ))
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    cluster.stop()?;
    Ok(Postgres {
        version,
        tables,
        copy_text_bytes,
        generate,
        relation_bytes,
        postgres_cores,
        others_cores,
    })
}

fn print_postgres(pg: &Postgres, args: &Args) {
    let settings = if args.pg_settings.is_empty() {
        "default settings (fsync on, synchronous_commit on, shared_buffers 128MB, \
         max_wal_size 1GB)"
            .to_string()
    } else {
        format!("defaults plus {}", args.pg_settings.join(", "))
    };
    println!(
        "PostgreSQL {}: tables alerts, logs, messages (armorlake's columns; timestamptz, \
         integer, text, text[]), each with an index on timestamp; {settings}",
        pg.version
    );
    println!(
        "  COPY text: {} ({:.0} bytes/event), written in {:.1} s (not timed)",
        human_bytes(pg.copy_text_bytes),
        pg.copy_text_bytes as f64 / total_rows(pg) as f64,
        pg.generate.as_secs_f64()
    );
    for (table, rows, took) in &pg.tables {
        println!(
            "  psql -c \"COPY {table} FROM STDIN\" < {table}.copy: {} rows in {:.2} s = {} \
             rows/s",
            thousands(*rows),
            took.as_secs_f64(),
            thousands(rate(*rows, *took) as u64)
        );
    }
    println!(
        "  COPY, all tables one after the other: {} events in {:.2} s = {} events/s; tables \
         + indexes on disk {} ({:.0} bytes/event)",
        thousands(total_rows(pg)),
        total_copy(pg).as_secs_f64(),
        thousands(rate(total_rows(pg), total_copy(pg)) as u64),
        human_bytes(pg.relation_bytes),
        pg.relation_bytes as f64 / total_rows(pg) as f64
    );
    println!(
        "  PostgreSQL and psql kept {:.2} cores busy; other processes {:.2} cores{}",
        pg.postgres_cores,
        pg.others_cores,
        noise(pg.others_cores)
    );
}

fn total_rows(pg: &Postgres) -> u64 {
    pg.tables.iter().map(|(_, rows, _)| rows).sum()
}

fn total_copy(pg: &Postgres) -> Duration {
    pg.tables.iter().map(|(_, _, took)| *took).sum()
}

fn yes(met: bool) -> &'static str {
    if met { "yes" } else { "no" }
}

fn print_summary(a: &Armorlake, pg: Option<&Postgres>) {
    let durable = rate(a.events, a.durable);
    let acknowledged = rate(a.events, a.acknowledged);
    println!(
        "\nsummary ({} events; information, not assertions)",
        thousands(a.events)
    );
    println!("  {:<44} {:>16}  {:<12} met", "", "value", "goal");
    let row = |name: &str, value: String, goal: &str, met: &str| {
        println!("  {name:<44} {value:>16}  {goal:<12} {met}");
    };
    row(
        "armorlake, durable in Parquet (events/s)",
        thousands(durable as u64),
        "≥ 300,000",
        yes(durable >= GOAL_EVENTS_PER_SEC),
    );
    row(
        "armorlake, acknowledged (events/s)",
        thousands(acknowledged as u64),
        "≥ 300,000",
        yes(acknowledged >= GOAL_EVENTS_PER_SEC),
    );
    match pg {
        Some(pg) => {
            let copy = rate(total_rows(pg), total_copy(pg));
            row(
                "PostgreSQL 15 COPY (events/s)",
                thousands(copy as u64),
                "",
                "",
            );
            row(
                "ratio: durable / PostgreSQL",
                format!("{:.2}×", durable / copy),
                "≥ 5×",
                yes(durable / copy >= GOAL_RATIO),
            );
            row(
                "ratio: acknowledged / PostgreSQL",
                format!("{:.2}×", acknowledged / copy),
                "≥ 5×",
                yes(acknowledged / copy >= GOAL_RATIO),
            );
            row(
                "bytes on disk per event: armorlake / PG",
                format!(
                    "{:.0} / {:.0}",
                    a.parquet_bytes as f64 / a.events as f64,
                    pg.relation_bytes as f64 / total_rows(pg) as f64
                ),
                "",
                "",
            );
        }
        None => row(
            "PostgreSQL 15 COPY (events/s)",
            "not measured".into(),
            "",
            "",
        ),
    }
    let quarters: Vec<String> = a.marks.iter().map(|m| human_bytes(m.quarter.rss)).collect();
    row(
        "peak RSS (VmHWM)",
        human_bytes(a.peak_rss),
        "bounded",
        &format!("highest VmRSS per quarter: {}", quarters.join(" / ")),
    );
}
