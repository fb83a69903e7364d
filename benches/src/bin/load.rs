//! The load and memory run: `armorlake up` (with its built-in simulator) or a running query
//! node, and many PostgreSQL sessions sending a mix of queries back to back for minutes.
//! Fails (exit 1) on any error or when the server's resident memory passes `--max-rss-mib`.
//!
//! ```sh
//! cargo build --release -p armorlake
//! cargo run --release -p armorlake-benches --bin load -- --connections 100 --duration 5m
//! ```
//!
//! The fault half of the suite lives in the integration tests (see docs/operations.md):
//! SIGKILL during ingest (tests/integration/durability.rs), a replica cut, a cluster's last
//! member cut and the master stopped (tests/integration/distributed.rs).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use armorlake_benches::human_bytes;
use armorlake_benches::load::{LoadOptions, QUERIES, run};
use clap::Parser;

/// Many PostgreSQL sessions with mixed queries against armorlake; 0 errors, memory bounded.
#[derive(Debug, Parser)]
struct Args {
    /// Sessions at once.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// How long they send queries.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Fail when the server's resident memory passes this many MiB.
    #[arg(long, default_value_t = 2048)]
    max_rss_mib: u64,
    /// Use a running server on this port (user armorlake, database kubearmor) instead of
    /// starting `armorlake up`.
    #[arg(long)]
    port: Option<u16>,
    /// With --port: the server's process id, to sample its memory.
    #[arg(long)]
    pid: Option<u32>,
    /// The armorlake binary (default: next to this one, i.e. the same profile's build).
    #[arg(long)]
    armorlake: Option<PathBuf>,
    /// Events per second of `up`'s built-in simulator.
    #[arg(long, default_value_t = 2000)]
    simulate: u64,
    /// How long `up` ingests before the load starts.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    warmup: Duration,
}

/// `armorlake up`, killed when dropped.
struct Up {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_up(args: &Args) -> Result<Up, String> {
    let bin = match &args.armorlake {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("armorlake"),
    };
    if !bin.is_file() {
        return Err(format!(
            "{} is missing: build it first (cargo build [--release] -p armorlake) or pass \
             --armorlake PATH",
            bin.display()
        ));
    }
    let data = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut child = Command::new(&bin)
        .args([
            "up",
            "--pg-listen",
            "127.0.0.1:0",
            "--flight-listen",
            "127.0.0.1:0",
        ])
        .args(["--simulate", &args.simulate.to_string()])
        .args(["--max-connections", &(args.connections + 10).to_string()])
        .arg("--data-dir")
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines
            .next()
            .ok_or("armorlake up exited before it was ready")?
            .map_err(|e| e.to_string())?;
        if line.contains("armorlake is ready") {
            break line
                .split_whitespace()
                .skip_while(|w| *w != "-p")
                .nth(1)
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("no port in {line:?}"))?;
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Up {
        child,
        port,
        _data: data,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let up = match args.port {
        Some(_) => None,
        None => match start_up(&args) {
            Ok(up) => Some(up),
            Err(e) => {
                eprintln!("load: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let (port, pid) = match &up {
        Some(up) => (up.port, Some(up.child.id())),
        None => (args.port.unwrap_or(5433), args.pid),
    };
    if up.is_some() {
        println!(
            "armorlake up on port {port}: ingesting for {:?}",
            args.warmup
        );
        tokio::time::sleep(args.warmup).await;
    }
    println!(
        "{} sessions, {} queries in the mix, for {:?}",
        args.connections,
        QUERIES.len(),
        args.duration
    );
    let report = run(&LoadOptions {
        port,
        connections: args.connections,
        duration: args.duration,
        server_pid: pid,
    })
    .await;
    let [p50, p95, p99, max] = report.latency_ms;
    println!(
        "queries: {} ({:.0}/s), errors: {}",
        report.queries,
        report.qps(),
        report.errors
    );
    println!("latency ms: p50 {p50:.1}, p95 {p95:.1}, p99 {p99:.1}, max {max:.1}");
    for e in &report.first_errors {
        println!("error: {e}");
    }
    let mut ok = report.errors == 0 && report.queries > 0;
    if let Some((start, peak, end)) = report.rss {
        println!(
            "server RSS: start {}, peak {}, end {}",
            human_bytes(start),
            human_bytes(peak),
            human_bytes(end)
        );
        let tenths: Vec<String> = report.rss_tenths.iter().map(|b| human_bytes(*b)).collect();
        println!(
            "server RSS, highest in each tenth of the run: {}",
            tenths.join(" / ")
        );
        if peak > args.max_rss_mib << 20 {
            println!("FAIL: peak RSS above --max-rss-mib {}", args.max_rss_mib);
            ok = false;
        }
    }
    println!("{}", if ok { "PASS" } else { "FAIL" });
    match ok {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}
