//! The benchmark's events: three simulators (different seeds, each from its own hour on), one
//! per operator; and the same rows as files for PostgreSQL (COPY text) and DuckDB (Parquet),
//! converted by armorlake's own ingest code.

use std::fs::File;
use std::path::{Path, PathBuf};

use armorlake_common::Table;
use armorlake_ingest::convert::{AlertBatchBuilder, LogBatchBuilder, MessageBatchBuilder};
use armorlake_sim::{EventKind, SimEvent};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use parquet::arrow::ArrowWriter;

/// Simulated KubeArmor nodes per simulator (the `kubearmor-sim` default).
pub const SIM_NODES: u32 = 4;
/// Milliseconds in an hour: a simulator at full speed stamps one event per millisecond.
const HOUR_MS: u64 = 3_600_000;
/// Rows per batch when writing the files.
const BATCH: usize = 8192;

/// One simulator and the operator that pulls it.
#[derive(Debug, Clone)]
pub struct Source {
    /// The operator's name (its `operator` column on the cluster).
    pub operator: String,
    /// The simulator's seed.
    pub seed: u64,
    /// Events it serves.
    pub events: u64,
    /// Time of its event 0; event n is at start + n ms.
    pub start: DateTime<Utc>,
    /// Its events per table, in [`Table::ALL`] order.
    pub per_table: [u64; 3],
}

/// The whole dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub sources: Vec<Source>,
}

impl Dataset {
    /// `events` split over `operators` simulators with seeds `seed`, `seed + 1`, …. Each one
    /// starts on an hour boundary of the day before yesterday (so the hours are complete and
    /// the operators compact them) and gets hours of its own.
    pub fn new(events: u64, operators: u64, seed: u64) -> Dataset {
        let day = TimeDelta::days(1);
        let base = (Utc::now() - day - day)
            .duration_trunc(day)
            .unwrap_or_else(|_| Utc::now());
        let share = events / operators;
        let hours_each = (share + events % operators).div_ceil(HOUR_MS).max(1);
        let sources = (0..operators)
            .map(|i| {
                let events = share + if i == 0 { events % operators } else { 0 };
                let source = armorlake_sim::source(seed + i, SIM_NODES);
                let mut per_table = [0u64; 3];
                for n in 0..events {
                    per_table[table_of(source.kind(n)).index()] += 1;
                }
                Source {
                    operator: format!("op-{}", i + 1),
                    seed: seed + i,
                    events,
                    start: base + TimeDelta::hours((i * hours_each) as i64),
                    per_table,
                }
            })
            .collect();
        Dataset { sources }
    }

    /// Events in total.
    pub fn events(&self) -> u64 {
        self.sources.iter().map(|s| s.events).sum()
    }

    /// The first hour of the first simulator.
    pub fn first_hour(&self) -> DateTime<Utc> {
        self.sources[0].start
    }

    /// The time of a log event in the middle of the middle simulator's events: exactly one
    /// row of `logs` has it.
    pub fn point_lookup(&self) -> DateTime<Utc> {
        let s = &self.sources[self.sources.len() / 2];
        let source = armorlake_sim::source(s.seed, SIM_NODES);
        let mut n = s.events / 2;
        while n + 1 < s.events && source.kind(n) != EventKind::Log {
            n += 1;
        }
        s.start + TimeDelta::milliseconds(n as i64)
    }
}

fn table_of(kind: EventKind) -> Table {
    match kind {
        EventKind::Alert => Table::Alerts,
        EventKind::Log => Table::Logs,
        EventKind::Message => Table::Messages,
    }
}

/// One table's files.
pub struct TableFiles {
    pub table: Table,
    pub parquet: PathBuf,
    pub rows: u64,
}

struct Output {
    table: Table,
    parquet_path: PathBuf,
    parquet: ArrowWriter<File>,
    rows: u64,
}

impl Output {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        self.parquet
            .write(batch)
            .map_err(|e| format!("writing Parquet: {e}"))
    }
}

/// Writes every event of `data` as the operators store them (operator name and endpoint
/// included; `endpoints[i]` is source i's simulator) into one Parquet file per table under
/// `dir`.
pub fn write_files(
    data: &Dataset,
    endpoints: &[String],
    dir: &Path,
) -> Result<Vec<TableFiles>, String> {
    let mut outputs = Vec::new();
    for table in Table::ALL {
        let parquet_path = dir.join(format!("{table}.parquet"));
        let create =
            |p: &Path| File::create(p).map_err(|e| format!("creating {}: {e}", p.display()));
        let parquet = ArrowWriter::try_new(create(&parquet_path)?, table.schema(), None)
            .map_err(|e| format!("opening a Parquet writer: {e}"))?;
        outputs.push(Output {
            table,
            parquet_path,
            parquet,
            rows: 0,
        });
    }
    for (s, endpoint) in data.sources.iter().zip(endpoints) {
        let source = armorlake_sim::source(s.seed, SIM_NODES);
        let mut alerts = AlertBatchBuilder::new(&s.operator, endpoint, BATCH);
        let mut logs = LogBatchBuilder::new(&s.operator, endpoint, BATCH);
        let mut messages = MessageBatchBuilder::new(&s.operator, endpoint, BATCH);
        for n in 0..s.events {
            let at = s.start + TimeDelta::milliseconds(n as i64);
            match source.event(n, at) {
                SimEvent::Alert(alert) => {
                    alerts.append(&alert);
                    if alerts.len() >= BATCH {
                        outputs[Table::Alerts.index()].write(&alerts.finish())?;
                    }
                }
                SimEvent::Log(log) => {
                    logs.append(&log);
                    if logs.len() >= BATCH {
                        outputs[Table::Logs.index()].write(&logs.finish())?;
                    }
                }
                SimEvent::Message(message) => {
                    messages.append(&message);
                    if messages.len() >= BATCH {
                        outputs[Table::Messages.index()].write(&messages.finish())?;
                    }
                }
            }
        }
        outputs[Table::Alerts.index()].write(&alerts.finish())?;
        outputs[Table::Logs.index()].write(&logs.finish())?;
        outputs[Table::Messages.index()].write(&messages.finish())?;
    }
    let mut files = Vec::new();
    for out in outputs {
        out.parquet
            .close()
            .map_err(|e| format!("closing Parquet: {e}"))?;
        files.push(TableFiles {
            table: out.table,
            parquet: out.parquet_path,
            rows: out.rows,
        });
    }
    Ok(files)
}
