//! `query`: eight queries through the PostgreSQL wire protocol on a real armorlake cluster
//! (a master, three operators, a query node: separate processes of the release binary on
//! 127.0.0.1), with, in the same run, the same queries on `armorlake up` holding every row on
//! one node, on PostgreSQL 15 and on DuckDB holding the same rows.
//!
//! ```text
//! cargo build --release -p armorlake
//! cargo run --release -p armorlake-benches --bin query -- --events 3000000
//! ```
//!
//! Everything printed is information: no figure is asserted. docs/performance.md ("Query")
//! describes the steps.

mod client;
mod data;
mod duckdb;
mod nodes;
mod pg;
mod queries;
mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use armorlake_benches::postgres::{Binaries, DEFAULT_BIN};
use armorlake_benches::process::{CpuClock, Machine, MachineCpu};
use armorlake_benches::thousands;
use armorlake_common::Table;
use clap::Parser;

use crate::client::{Target, Timing, count, rows, time_queries};
use crate::data::Dataset;
use crate::nodes::{Launcher, Layout, PgProc, Proc, parquet_layout};
use crate::queries::queries;

/// Operators of the cluster (one simulator each).
const OPERATORS: u64 = 3;
/// Give up waiting for ingestion when the row count has not grown for this long.
const STALL: Duration = Duration::from_secs(120);
/// Wait at most this long for the stores to flush and compact (the operators' maintenance
/// runs every 60 s).
const SETTLE: Duration = Duration::from_secs(300);

/// Query times on an armorlake cluster against one node, PostgreSQL 15 and DuckDB.
#[derive(Debug, Parser)]
#[command(name = "query")]
struct Args {
    /// Events in total, split evenly over the three simulators (alerts + logs + messages).
    #[arg(long, default_value_t = 3_000_000)]
    events: u64,
    /// Seed of the first simulator (the others get the next seeds).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Timed runs of each query (after one untimed run).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Abandon a query (on PostgreSQL: statement_timeout) after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The release `armorlake` binary (default: next to this one, or under
    /// $CARGO_TARGET_DIR/release).
    #[arg(long, value_name = "PATH")]
    armorlake: Option<PathBuf>,
    /// Skip PostgreSQL.
    #[arg(long)]
    skip_postgres: bool,
    /// Skip DuckDB.
    #[arg(long)]
    skip_duckdb: bool,
    /// A Python with the duckdb package (default: a venv created in the temporary directory
    /// with `python3 -m venv` and `pip install duckdb`).
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Where the temporary directories go (default: the system's temp dir).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Directory of PostgreSQL 15's initdb, pg_ctl and postgres.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BIN)]
    pg_bin: PathBuf,
    /// Extra postgresql.conf line (`name=value`), repeatable. Default: PostgreSQL's defaults.
    #[arg(long = "pg-setting", value_name = "NAME=VALUE")]
    pg_settings: Vec<String>,
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
    if let Err(e) = run(&args) {
        eprintln!("query benchmark failed: {e}");
        std::process::exit(1);
    }
}

/// One system's timings of the queries, and the machine's other load meanwhile.
pub struct SystemRun {
    pub name: &'static str,
    pub timings: Vec<Timing>,
    pub own_cores: f64,
    pub others_cores: f64,
}

fn run(args: &Args) -> Result<(), String> {
    if args.events < OPERATORS {
        return Err(format!("--events must be at least {OPERATORS}"));
    }
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let machine = Machine::detect();
    let data = Dataset::new(args.events, OPERATORS, args.seed);
    let queries = queries(&data);
    report::print_setup(&machine, &data, args.runs);
    let bin = nodes::find_armorlake(args.armorlake.as_deref())?;
    let temp = match &args.dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("armorlake-qbench-")
            .tempdir_in(dir),
        None => tempfile::Builder::new()
            .prefix("armorlake-qbench-")
            .tempdir(),
    }
    .map_err(|e| format!("creating a temporary directory: {e}"))?;
    let root = temp.path();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the tokio runtime: {e}"))?;

    // armorlake: simulators, master, operators, query node, and `up` over the same simulators.
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let launcher = Launcher {
        bin: bin.clone(),
        log_dir: logs,
    };
    println!(
        "\narmorlake: {} (logs in {})",
        bin.display(),
        root.join("logs").display()
    );
    let mut sims = Vec::new();
    for (i, s) in data.sources.iter().enumerate() {
        let start = s.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        sims.push(launcher.sim(&format!("sim-{}", i + 1), s.seed, s.events, &start)?);
    }
    let endpoints: Vec<String> = sims.iter().map(|s| s.addr.clone()).collect();
    let (master, master_url) = launcher.master(&root.join("master"))?;
    let op_dirs: Vec<PathBuf> = data
        .sources
        .iter()
        .map(|s| root.join(&s.operator))
        .collect();
    let mut operators = Vec::new();
    for ((s, sim), dir) in data.sources.iter().zip(&endpoints).zip(&op_dirs) {
        operators.push(launcher.operator(&master_url, &s.operator, sim, dir)?);
    }
    let mut query = launcher.query(&master_url)?;
    let up_dir = root.join("up");
    let mut up = launcher.up(&endpoints, &up_dir)?;
    let ingest_started = Instant::now();
    println!(
        "  started 3 simulators, a master, operators {}, a query node (port {}) and `up` \
         (port {}) pulling from the same simulators",
        data.sources
            .iter()
            .map(|s| s.operator.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        query.port,
        up.port
    );

    // The rows for PostgreSQL and DuckDB, written while armorlake ingests.
    let files_dir = root.join("files");
    std::fs::create_dir_all(&files_dir)
        .map_err(|e| format!("creating {}: {e}", files_dir.display()))?;
    let writer = (!(args.skip_postgres && args.skip_duckdb)).then(|| {
        let (data, endpoints, dir) = (data.clone(), endpoints.clone(), files_dir.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            data::write_files(&data, &endpoints, &dir).map(|f| (f, started.elapsed()))
        })
    });

    let waited = runtime
        .block_on(wait_ingested(&data, &mut query, "cluster"))
        .and_then(|c| Ok((c, runtime.block_on(wait_ingested(&data, &mut up, "up"))?)));
    let (cluster_done, up_done) = match waited {
        Ok(done) => done,
        Err(e) => {
            drop((up, query, operators, master, sims));
            return Err(format!("{e}\n  (logs kept in {})", temp.keep().display()));
        }
    };
    println!(
        "  every event ingested (count(*) of each table): cluster after {:.1} s, up after \
         {:.1} s (both ingesting at once)",
        (cluster_done - ingest_started).as_secs_f64(),
        (up_done - ingest_started).as_secs_f64()
    );
    let mut stores: Vec<(&Path, u64)> = op_dirs
        .iter()
        .zip(&data.sources)
        .map(|(d, s)| (d.as_path(), s.events))
        .collect();
    stores.push((&up_dir, data.events()));
    wait_settled(&stores);
    runtime.block_on(print_spread(query.port))?;

    let mut cluster_pids = vec![master.pid(), query.proc.pid()];
    cluster_pids.extend(operators.iter().map(Proc::pid));
    let cluster = time_armorlake(&runtime, "cluster", &query, &cluster_pids, &queries, args)?;
    let single = time_armorlake(&runtime, "up", &up, &[up.proc.pid()], &queries, args)?;
    report::print_system(&cluster, &queries);
    report::print_system(&single, &queries);
    // Free the machine for the others.
    drop((up, query, operators, master, sims));

    let files = match writer {
        Some(handle) => {
            let (files, took) = handle
                .join()
                .map_err(|_| "the file writer panicked".to_string())??;
            println!(
                "\nthe same rows as Parquet files for PostgreSQL and DuckDB (armorlake's \
                 converters; written during ingestion in {:.1} s): {}",
                took.as_secs_f64(),
                files
                    .iter()
                    .map(|f| format!("{} {}", f.table, thousands(f.rows)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            files
        }
        None => Vec::new(),
    };

    let mut others = Vec::new();
    if args.skip_postgres {
        println!("\nPostgreSQL: skipped (--skip-postgres)");
    } else {
        match Binaries::find(&args.pg_bin) {
            Err(missing) => println!("\nPostgreSQL: skipped: {missing}"),
            Ok(pg_bin) => {
                let pg_root = root.join("postgres");
                std::fs::create_dir_all(&pg_root)
                    .map_err(|e| format!("creating {}: {e}", pg_root.display()))?;
                println!("\nPostgreSQL: loading (COPY, index on timestamp, VACUUM ANALYZE)...");
                match pg::run(
                    &pg_bin,
                    &pg_root,
                    &args.pg_settings,
                    &files,
                    &queries,
                    args.runs,
                    args.timeout,
                    &runtime,
                ) {
                    Ok(p) => {
                        report::print_postgres(&p, &args.pg_settings);
                        let run = SystemRun {
                            name: "PostgreSQL",
                            timings: p.timings,
                            own_cores: p.own_cores,
                            others_cores: p.others_cores,
                        };
                        report::print_system(&run, &queries);
                        others.push(run);
                    }
                    Err(e) => println!("PostgreSQL: failed, no comparison in this run: {e}"),
                }
            }
        }
    }
    if args.skip_duckdb {
        println!("\nDuckDB: skipped (--skip-duckdb)");
    } else {
        println!("\nDuckDB: preparing Python and loading the Parquet files...");
        let duck = duckdb::python(args.python.as_deref(), root).and_then(|python| {
            let dir = root.join("duckdb");
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            duckdb::run(&python, &dir, &files, &queries, args.runs)
        });
        match duck {
            Ok(d) => {
                println!(
                    "DuckDB {} (Python package, {} threads, in-process: no wire protocol): \
                     loaded in {:.1} s",
                    d.version,
                    d.threads,
                    d.load.as_secs_f64()
                );
                let run = SystemRun {
                    name: "DuckDB",
                    timings: d.timings,
                    own_cores: d.own_cores,
                    others_cores: d.others_cores,
                };
                report::print_system(&run, &queries);
                others.push(run);
            }
            Err(e) => println!("DuckDB: failed, no comparison in this run: {e}"),
        }
    }
    report::print_summary(&data, &queries, &cluster, &single, &others);
    Ok(())
}

/// Polls `count(*)` of every table on `node` until it holds every event of `data`.
async fn wait_ingested(data: &Dataset, node: &mut PgProc, what: &str) -> Result<Instant, String> {
    let client = Target::armorlake(node.port).connect().await?;
    let expected = data.events();
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let mut total = 0;
        for table in Table::ALL {
            total += count(&client, &format!("SELECT count(*) FROM {table}"))
                .await
                .map_err(|e| format!("{what}: {e}"))?;
        }
        if total >= expected {
            if total > expected {
                eprintln!("warning: {what} holds {total} events, expected {expected}");
            }
            return Ok(Instant::now());
        }
        node.proc.check_alive()?;
        if total > last {
            (last, since) = (total, Instant::now());
        } else if since.elapsed() > STALL {
            let sources = rows(
                &client,
                "SELECT operator, endpoint, stream, state, events, reconnects, last_error \
                 FROM armorlake.sources ORDER BY 1, 2, 3",
            )
            .await
            .unwrap_or_default();
            let sources: Vec<String> = sources
                .iter()
                .map(|r| {
                    let v: Vec<String> = r.iter().map(|v| v.clone().unwrap_or_default()).collect();
                    format!("\n    {}", v.join(" | "))
                })
                .collect();
            return Err(format!(
                "{what}: stalled at {total} of {expected} events; armorlake.sources:{}",
                sources.concat()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Rows per operator, as the master's partition map has them.
async fn print_spread(port: u16) -> Result<(), String> {
    let client = Target::armorlake(port).connect().await?;
    let answer = rows(
        &client,
        "SELECT operator, count(DISTINCT hour) AS hours, sum(rows) AS rows \
         FROM armorlake.partitions GROUP BY operator ORDER BY operator",
    )
    .await?;
    let spread: Vec<String> = answer
        .iter()
        .map(|r| {
            let v = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            let rows = v(2).parse().map(thousands).unwrap_or_else(|_| v(2));
            format!("{} {rows} rows in {} hours", v(0), v(1))
        })
        .collect();
    println!("  partition map: {}", spread.join("; "));
    Ok(())
}

/// Waits until every store (data directory, events it must hold) has flushed all its rows
/// and compacted every hour (the newest file of each table-hour holds all its rows), or
/// [`SETTLE`] has passed.
fn wait_settled(stores: &[(&Path, u64)]) {
    let started = Instant::now();
    loop {
        let layouts: Vec<Layout> = stores.iter().map(|(d, _)| parquet_layout(d)).collect();
        let settled = layouts
            .iter()
            .zip(stores)
            .all(|(l, (_, events))| !l.writing && l.newest_rows == *events);
        if settled || started.elapsed() > SETTLE {
            let files: usize = layouts.iter().map(|l| l.files).sum();
            let hours: usize = layouts.iter().map(|l| l.hours).sum();
            let rows: u64 = layouts.iter().map(|l| l.newest_rows).sum();
            println!(
                "  {} {:.0} s later: {} rows in the newest Parquet file of each of {hours} \
                 table-hours over the four stores ({files} files on disk, replaced ones \
                 included)",
                if settled {
                    "every row in Parquet, every hour compacted"
                } else {
                    "NOT settled (rows in memory or hours not compacted)"
                },
                started.elapsed().as_secs_f64(),
                thousands(rows)
            );
            return;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Times the queries on an armorlake node whose processes are `pids`.
fn time_armorlake(
    runtime: &tokio::runtime::Runtime,
    name: &'static str,
    node: &PgProc,
    pids: &[u32],
    queries: &[queries::Query],
    args: &Args,
) -> Result<SystemRun, String> {
    let clock = CpuClock::new();
    let ours = || {
        clock.seconds()
            + pids
                .iter()
                .map(|p| clock.tree_seconds(*p).unwrap_or(0.0))
                .sum::<f64>()
    };
    let (machine, before, started) = (MachineCpu::now(), ours(), Instant::now());
    let timings = runtime.block_on(time_queries(
        &Target::armorlake(node.port),
        queries,
        args.runs,
        args.timeout,
        &[],
    ))?;
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    let busy = MachineCpu::now().busy_cores_since(&machine, Machine::detect().cores);
    let own_cores = (ours() - before) / wall;
    Ok(SystemRun {
        name,
        timings,
        own_cores,
        others_cores: (busy - own_cores).max(0.0),
    })
}
