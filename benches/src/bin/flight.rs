//! `flight`: the same rows of `logs` streamed out of `armorlake up` through Arrow Flight SQL
//! and through the PostgreSQL wire protocol, in the same run, with both rates printed.
//!
//! ```text
//! cargo run --release -p armorlake-benches --bin flight -- --rows 1000000
//! ```
//!
//! 1. `up` runs in this process, pulling from an in-process simulator that serves a fixed
//!    number of events as fast as they are read (enough for `--rows` logs), with its
//!    PostgreSQL and Flight SQL listeners on 127.0.0.1.
//! 2. Once every event is stored, `SELECT * FROM logs LIMIT rows` runs through each front
//!    end, alternately, `--repeat` times: Flight SQL with arrow-flight's client
//!    (GetFlightInfo + DoGet, batches counted as they arrive) and pgwire with tokio-postgres'
//!    simple query protocol (text rows, as psql reads them, counted as they arrive).
//!
//! Everything printed is information: no figure is asserted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use armorlake_benches::embedded::{Embedded, events_for_logs, wait_for_all};
use armorlake_benches::thousands;
use arrow_flight::sql::client::FlightSqlServiceClient;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use tokio_postgres::SimpleQueryMessage;

/// Rows of logs through Flight SQL and through pgwire, same rows, same run.
#[derive(Debug, Parser)]
#[command(name = "flight")]
struct Args {
    /// Rows of `logs` to stream.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Runs of each front end (alternating); the best of each is reported too.
    #[arg(long, default_value_t = 2)]
    repeat: u32,
    /// Where `up` keeps its data (default: a temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flight: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flight: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temp.path().into());
    let events = events_for_logs(args.rows);
    let up = Embedded::start(events, data_dir).await?;
    let flight_addr = up.addrs.flight;
    let pg = up.connect().await?;
    println!(
        "loading {} events (as fast as the operator takes them) …",
        thousands(events)
    );
    let loaded = Instant::now();
    let logs = wait_for_all(&pg, events).await?;
    println!(
        "stored {} events ({} logs) in {:.1} s",
        thousands(events),
        thousands(logs),
        loaded.elapsed().as_secs_f64()
    );
    if logs < args.rows {
        return Err(format!("only {logs} logs; asked for {}", args.rows));
    }

    let sql = format!("SELECT * FROM logs LIMIT {}", args.rows);
    let mut flight_best = f64::MAX;
    let mut pg_best = f64::MAX;
    for run in 1..=args.repeat {
        let (rows, secs) = through_flight(flight_addr, &sql).await?;
        report(run, "Flight SQL", rows, secs);
        flight_best = flight_best.min(secs);
        let (rows, secs) = through_pgwire(&pg, &sql).await?;
        report(run, "pgwire    ", rows, secs);
        pg_best = pg_best.min(secs);
    }
    let rate = |secs: f64| args.rows as f64 / secs;
    println!(
        "best: Flight SQL {} rows/s, pgwire {} rows/s: Flight SQL is {:.1}x pgwire",
        thousands(rate(flight_best) as u64),
        thousands(rate(pg_best) as u64),
        pg_best / flight_best
    );

    up.stop().await
}

fn report(run: u32, what: &str, rows: u64, secs: f64) {
    println!(
        "run {run}: {what} {} rows in {:.2} s = {} rows/s",
        thousands(rows),
        secs,
        thousands((rows as f64 / secs) as u64)
    );
}

async fn through_flight(addr: SocketAddr, sql: &str) -> Result<(u64, f64), String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connecting to Flight SQL: {e}"))?;
    let mut client = FlightSqlServiceClient::new(channel);
    let started = Instant::now();
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = 0u64;
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.ok_or("an endpoint without a ticket")?;
        let mut batches = client.do_get(ticket).await.map_err(|e| e.to_string())?;
        while let Some(batch) = batches.try_next().await.map_err(|e| e.to_string())? {
            rows += batch.num_rows() as u64;
        }
    }
    Ok((rows, started.elapsed().as_secs_f64()))
}

async fn through_pgwire(pg: &tokio_postgres::Client, sql: &str) -> Result<(u64, f64), String> {
    let started = Instant::now();
    let stream = pg.simple_query_raw(sql).await.map_err(|e| e.to_string())?;
    let mut stream = std::pin::pin!(stream);
    let mut rows = 0u64;
    while let Some(message) = stream.next().await {
        if let SimpleQueryMessage::Row(_) = message.map_err(|e| e.to_string())? {
            rows += 1;
        }
    }
    Ok((rows, started.elapsed().as_secs_f64()))
}
