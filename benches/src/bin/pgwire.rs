//! `pgwire`: the same rows of `logs` streamed to psql by armorlake's PostgreSQL front end
//! and by PostgreSQL 15, in the same run, as query results and with `COPY … TO STDOUT`.
//!
//! ```text
//! cargo run --release -p armorlake-benches --bin pgwire -- --rows 1000000
//! ```
//!
//! 1. `up` runs in this process, pulling from an in-process simulator that serves enough
//!    events for `--rows` logs as fast as they are read.
//! 2. A throwaway PostgreSQL 15 cluster (`initdb` under a temporary directory, default
//!    settings) gets a `logs` table with armorlake's columns and an index on `timestamp`,
//!    filled by piping psql's `COPY (SELECT * FROM logs LIMIT rows) TO STDOUT` from
//!    armorlake into psql's `COPY logs FROM STDIN`: the same rows, and a check that
//!    PostgreSQL reads armorlake's COPY text. Then `VACUUM ANALYZE`.
//! 3. Each system, alternately, `--repeat` times, over TCP on 127.0.0.1 with psql (`-X -q`,
//!    output to /dev/null):
//!    - **query**: `psql -A -t -c "SELECT * FROM logs LIMIT rows"`: every row as a DataRow,
//!      read and printed (unaligned) by psql.
//!    - **COPY**: `psql -c "COPY (SELECT * FROM logs LIMIT rows) TO STDOUT"`.
//!
//! The figure is the best of the runs; each line also shows the cores other processes
//! used meanwhile (`NOISY` above 0.2). Everything printed is information: nothing is
//! asserted.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use armorlake_benches::embedded::{Embedded, events_for_logs, wait_for_all};
use armorlake_benches::postgres::{Binaries, Cluster, DEFAULT_BIN};
use armorlake_benches::process::{CpuClock, Machine, MachineCpu};
use armorlake_benches::thousands;
use clap::Parser;

/// Rows of logs to psql from armorlake and from PostgreSQL, same rows, same run.
#[derive(Debug, Parser)]
#[command(name = "pgwire")]
struct Args {
    /// Rows of `logs` to stream.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Runs of each system and mode (alternating); the best is reported.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Where PostgreSQL's server programs are.
    #[arg(long, default_value = DEFAULT_BIN)]
    pg_bin: PathBuf,
    /// A postgresql.conf setting (`name=value`), repeatable.
    #[arg(long = "pg-setting")]
    pg_settings: Vec<String>,
    /// Where the temporary directories go.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgwire: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgwire: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Where psql connects: host, port, user, database.
struct Server {
    name: &'static str,
    port: u16,
    user: &'static str,
    database: &'static str,
}

impl Server {
    fn psql(&self, bin: &Binaries) -> Command {
        let mut c = Command::new(bin.psql());
        c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", self.user, "-d", self.database])
            .env_remove("PGOPTIONS")
            .env("PGTZ", "UTC");
        c
    }
}

/// How the rows are fetched.
#[derive(Clone, Copy)]
enum Mode {
    Query,
    Copy,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Query => "query",
            Mode::Copy => "COPY ",
        }
    }

    fn args(self, rows: u64) -> Vec<String> {
        let select = format!("SELECT * FROM logs LIMIT {rows}");
        match self {
            Mode::Query => vec!["-A".into(), "-t".into(), "-c".into(), select],
            Mode::Copy => vec!["-c".into(), format!("COPY ({select}) TO STDOUT")],
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let bin = Binaries::find(&args.pg_bin)?;
    let temp = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .map_err(|e| format!("a temporary directory: {e}"))?;
    let machine = Machine::detect();
    println!("{} cores, {}", machine.cores, machine.cpu);

    let events = events_for_logs(args.rows);
    let data_dir = temp.path().join("armorlake");
    let up = Embedded::start(events, data_dir).await?;
    let pg = up.connect().await?;
    println!("armorlake: loading {} events …", thousands(events));
    let loaded = Instant::now();
    let logs = wait_for_all(&pg, events).await?;
    println!(
        "armorlake: stored {} events ({} logs) in {:.1} s",
        thousands(events),
        thousands(logs),
        loaded.elapsed().as_secs_f64()
    );
    if logs < args.rows {
        return Err(format!("only {logs} logs; asked for {}", args.rows));
    }
    let armorlake = Server {
        name: "armorlake ",
        port: up.addrs.pg.port(),
        user: "armorlake",
        database: "kubearmor",
    };

    let pg_root = temp.path().join("postgres");
    std::fs::create_dir(&pg_root).map_err(|e| format!("{}: {e}", pg_root.display()))?;
    let mut cluster = Cluster::start(&bin, &pg_root, &args.pg_settings)?;
    println!("PostgreSQL {}", cluster.version()?);
    load_postgres(&bin, &armorlake, &cluster, args.rows)?;
    let postgres = Server {
        name: "PostgreSQL",
        port: cluster.port(),
        user: "postgres",
        database: "postgres",
    };
    let pg_pid = cluster.postmaster_pid();

    let mut best = [[f64::MAX; 2]; 2];
    for run in 1..=args.repeat {
        for (m, mode) in [Mode::Query, Mode::Copy].into_iter().enumerate() {
            for (s, server) in [&armorlake, &postgres].into_iter().enumerate() {
                let server_pid = if s == 0 { None } else { pg_pid };
                let secs = timed(&bin, server, mode, args.rows, server_pid, &machine)?;
                println!(
                    "run {run}: {} {} {} rows in {:.2} s = {} rows/s",
                    server.name,
                    mode.name(),
                    thousands(args.rows),
                    secs.seconds,
                    thousands((args.rows as f64 / secs.seconds) as u64),
                );
                println!("       {}", secs.load);
                best[m][s] = best[m][s].min(secs.seconds);
            }
        }
    }

    println!();
    println!(
        "best of {} runs, {} rows of logs to psql:",
        args.repeat,
        thousands(args.rows)
    );
    println!(
        "| mode | armorlake rows/s | PostgreSQL rows/s | armorlake ÷ PostgreSQL (goal ≥ 1.0) |"
    );
    println!("|---|---|---|---|");
    for (m, mode) in [Mode::Query, Mode::Copy].into_iter().enumerate() {
        let rate = |secs: f64| args.rows as f64 / secs;
        println!(
            "| {} | {} | {} | {:.2}× |",
            mode.name().trim(),
            thousands(rate(best[m][0]) as u64),
            thousands(rate(best[m][1]) as u64),
            best[m][1] / best[m][0]
        );
    }
    drop(pg);
    cluster.stop()?;
    up.stop().await
}

/// Creates `logs` in `cluster` and fills it with the first `rows` logs of `armorlake`,
/// through a pipe from one psql's COPY TO STDOUT to the other's COPY FROM STDIN.
fn load_postgres(
    bin: &Binaries,
    armorlake: &Server,
    cluster: &Cluster,
    rows: u64,
) -> Result<(), String> {
    let schema = armorlake_common::Table::Logs.schema();
    let create =
        armorlake_benches::copy::create_table("logs", &schema).map_err(|e| e.to_string())?;
    cluster.query(&create)?;
    cluster.query("CREATE INDEX ON logs (\"timestamp\")")?;
    let started = Instant::now();
    let mut export = armorlake
        .psql(bin)
        .args([
            "-c",
            &format!("COPY (SELECT * FROM logs LIMIT {rows}) TO STDOUT"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running psql: {e}"))?;
    let rows_out = export.stdout.take().ok_or("psql has no stdout")?;
    let import = Command::new(bin.psql())
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(cluster.socket_dir())
        .arg("-p")
        .arg(cluster.port().to_string())
        .args([
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            "COPY logs FROM STDIN",
        ])
        .stdin(rows_out)
        .output()
        .map_err(|e| format!("running psql: {e}"))?;
    let exported = export
        .wait_with_output()
        .map_err(|e| format!("waiting for psql: {e}"))?;
    if !exported.status.success() {
        return Err(format!(
            "COPY TO STDOUT from armorlake failed: {}",
            String::from_utf8_lossy(&exported.stderr).trim()
        ));
    }
    if !import.status.success() {
        return Err(format!(
            "COPY FROM STDIN into PostgreSQL failed: {}",
            String::from_utf8_lossy(&import.stderr).trim()
        ));
    }
    cluster.query("VACUUM ANALYZE logs")?;
    let loaded: u64 = cluster
        .query("SELECT count(*) FROM logs")?
        .parse()
        .map_err(|e| format!("counting PostgreSQL's logs: {e}"))?;
    if loaded != rows {
        return Err(format!("PostgreSQL holds {loaded} logs, not {rows}"));
    }
    println!(
        "PostgreSQL: {} logs copied from armorlake in {:.1} s",
        thousands(loaded),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

struct Timed {
    seconds: f64,
    load: String,
}

/// Other processes' cores above which a figure is marked `NOISY`.
const NOISY_CORES: f64 = 0.2;

/// One psql run of `mode` against `server`, its output thrown away. `server_pid`: the
/// server's process when it is not this one.
fn timed(
    bin: &Binaries,
    server: &Server,
    mode: Mode,
    rows: u64,
    server_pid: Option<u32>,
    machine: &Machine,
) -> Result<Timed, String> {
    let clock = CpuClock::new();
    let server_cpu = || match server_pid {
        Some(pid) => clock.tree_seconds(pid).unwrap_or(f64::NAN),
        None => clock.seconds(),
    };
    let (server_before, all_before) = (server_cpu(), clock.seconds_with_children());
    let own_before = clock.seconds();
    let machine_before = MachineCpu::now();
    let started = Instant::now();
    let out = server
        .psql(bin)
        .args(mode.args(rows))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running psql: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "{} {}: {}",
            server.name.trim(),
            mode.name().trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let busy = MachineCpu::now().busy_cores_since(&machine_before, machine.cores);
    let server_cores = (server_cpu() - server_before) / seconds;
    // psql is this process's child: its CPU is in the children's share once it has exited.
    let psql_cores =
        ((clock.seconds_with_children() - all_before) - (clock.seconds() - own_before)) / seconds;
    let others = (busy - server_cores - psql_cores).max(0.0);
    let load = format!(
        "server {server_cores:.2} cores, psql {psql_cores:.2}, other processes {others:.2}{}",
        if others > NOISY_CORES { " (NOISY)" } else { "" }
    );
    Ok(Timed { seconds, load })
}
