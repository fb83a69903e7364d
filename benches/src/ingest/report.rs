//! Prints what the benchmark measured; every figure is information, none is asserted.

use crate::{human_bytes, thousands};
use std::time::Duration;

use super::{Args, Armorlake, GOAL_EVENTS_PER_SEC, GOAL_RATIO, Postgres, Stage, WAL_DIR};

/// A warning when other processes used a noticeable share of the machine.
pub fn noise(others_cores: f64) -> &'static str {
    if others_cores > 0.2 {
        " (NOISY: figures are lower than on a quiet machine)"
    } else {
        ""
    }
}

pub fn rate(events: u64, took: Duration) -> f64 {
    events as f64 / took.as_secs_f64().max(1e-9)
}

pub fn print_stages(stages: &[Stage], a: &Armorlake) {
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

pub fn print_armorlake(a: &Armorlake) {
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

pub fn print_postgres(pg: &Postgres, args: &Args) {
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
    print_runs("  COPY, all tables", total_rows(pg), &pg.runs);
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

/// Every run's rate, and which one the figures are from.
pub fn print_runs(what: &str, events: u64, runs: &[Duration]) {
    let rates: Vec<String> = runs
        .iter()
        .map(|took| format!("{} events/s", thousands(rate(events, *took) as u64)))
        .collect();
    println!(
        "\n{what}, {} run(s) in order: {}; the median run is reported",
        runs.len(),
        rates.join(", ")
    );
}

pub fn total_rows(pg: &Postgres) -> u64 {
    pg.tables.iter().map(|(_, rows, _)| rows).sum()
}

pub fn total_copy(pg: &Postgres) -> Duration {
    pg.tables.iter().map(|(_, _, took)| *took).sum()
}

pub fn yes(met: bool) -> &'static str {
    if met { "yes" } else { "no" }
}

pub fn print_summary(a: &Armorlake, pg: Option<&Postgres>) {
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
