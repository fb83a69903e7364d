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

use armorlake_benches::postgres::Binaries;
use armorlake_benches::process::Machine;
use armorlake_benches::{human_bytes, thousands};
use clap::Parser;
use std::time::Duration;

use armorlake_benches::ingest::Args;
use armorlake_benches::ingest::pg::postgres;
use armorlake_benches::ingest::report::{
    print_armorlake, print_postgres, print_runs, print_stages, print_summary,
};
use armorlake_benches::ingest::run::{armorlake, bench_rules, stage_convert, stage_decode};

/// The allocator the `armorlake` binary runs with, so the operator measured here allocates
/// as the one users run.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    let mut runs = Vec::new();
    for run in 0..args.runs {
        let dir = temp.path().join(format!("armorlake-{run}"));
        runs.push(runtime.block_on(armorlake(args, &dir, &[]))?);
        // Each run's data goes before the next, so the disk is in the same state for each.
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            eprintln!("warning: removing {}: {e}", dir.display());
        }
    }
    let took: Vec<Duration> = runs.iter().map(|a| a.acknowledged).collect();
    runs.sort_by_key(|a| a.acknowledged);
    let armorlake = runs.swap_remove(runs.len() / 2);
    // The same run again with alert rules (issue 8: at most 10 % slower with 20 rules).
    let with_rules = match args.rules {
        0 => None,
        n => Some(runtime.block_on(armorlake_benches::ingest::run::armorlake(
            args,
            &temp.path().join("armorlake-rules"),
            &bench_rules(n),
        ))?),
    };
    // After the measurement, so they leave its peak RSS alone.
    let mut stages = Vec::new();
    if args.stages {
        stages.push(runtime.block_on(stage_decode(args))?);
        stages.push(runtime.block_on(stage_convert(args))?);
    }
    // Ends the simulator's and operator's leftovers before PostgreSQL runs.
    runtime.shutdown_timeout(Duration::from_secs(5));
    print_runs("armorlake, acknowledged", armorlake.events, &took);
    print_armorlake(&armorlake);
    if let Some(ruled) = &with_rules {
        let rate = |a: &armorlake_benches::ingest::Armorlake| {
            a.events as f64 / a.acknowledged.as_secs_f64().max(1e-9)
        };
        let (plain, ruled_rate) = (rate(&armorlake), rate(ruled));
        println!(
            "\nalert rules: {} events/s acknowledged without rules, {} events/s with {} \
             predicate rules: {:+.1} % (goal: no more than 10 % slower)",
            thousands(plain as u64),
            thousands(ruled_rate as u64),
            args.rules,
            (ruled_rate / plain - 1.0) * 100.0
        );
    }
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
