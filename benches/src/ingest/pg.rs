//! The same events as COPY text files, loaded into PostgreSQL 15 with COPY.

use crate::copy::{create_table, quote_ident, write_copy_text};
use crate::postgres::{Binaries, Cluster};
use crate::process::{CpuClock, Machine, MachineCpu};
use armorlake_common::Table;
use armorlake_ingest::convert::{AlertBatchBuilder, LogBatchBuilder, MessageBatchBuilder};
use armorlake_sim::SimEvent;
use arrow::record_batch::RecordBatch;
use chrono::TimeDelta;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Args, Armorlake, OPERATOR, Postgres};

/// Event `n` as a row of its table, through the ingest crate's converters.
pub struct Converters {
    alerts: AlertBatchBuilder,
    logs: LogBatchBuilder,
    messages: MessageBatchBuilder,
}

/// Rows per batch when writing the COPY files.
pub const COPY_BATCH: usize = 4096;

/// One table's COPY text file.
pub struct CopyFile {
    table: Table,
    path: PathBuf,
    rows: u64,
}

/// Writes the COPY text files of the events the simulator served: one per table, rows
/// converted exactly as the operator converts them. Returns the files and their bytes.
pub fn write_copy_files(
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
pub fn postgres(
    args: &Args,
    bin: &Binaries,
    root: &Path,
    a: &Armorlake,
) -> Result<Postgres, String> {
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
    let mut runs: Vec<Vec<(Table, u64, Duration)>> = Vec::new();
    for run in 0..args.runs {
        if run > 0 {
            // Empty tables again for the next run (not timed).
            for table in Table::ALL {
                cluster.query(&format!("TRUNCATE {}", quote_ident(table.name())))?;
            }
            cluster.query("CHECKPOINT")?;
        }
        let mut tables = Vec::new();
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
        runs.push(tables);
    }
    let total = |tables: &Vec<(Table, u64, Duration)>| -> Duration {
        tables.iter().map(|(_, _, took)| *took).sum()
    };
    let totals: Vec<Duration> = runs.iter().map(total).collect();
    runs.sort_by_key(total);
    let tables = runs.swap_remove(runs.len() / 2);
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
        runs: totals,
        copy_text_bytes,
        generate,
        relation_bytes,
        postgres_cores,
        others_cores,
    })
}
