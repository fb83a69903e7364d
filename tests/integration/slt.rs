//! sqllogictest files (tests/slt/) run through the PostgreSQL wire protocol against armorlake
//! (`up` or a query node) and against a real PostgreSQL 15 loaded with the same events.
//!
//! `standard.slt` is plain SQL that must give the same answers on all three;
//! `armorlake.slt` uses armorlake's own functions (armorlake only). The expected results
//! are checked in; `ARMORLAKE_SLT_COMPLETE=1` rewrites them from the first database a
//! test runs them on (review the diff before committing it).

use std::path::{Path, PathBuf};

use armorlake_benches::copy::{create_table, quote_ident, write_copy_text};
use armorlake_benches::postgres::{Binaries, Cluster};
use armorlake_common::{TIMESTAMP_COLUMN, Table};
use armorlake_ingest::convert::{AlertBatchBuilder, LogBatchBuilder, MessageBatchBuilder};
use armorlake_sim::SimEvent;
use async_trait::async_trait;
use sqllogictest::{DBOutput, DefaultColumnType, Runner};
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// The slt file `name`.
pub fn file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/slt")
        .join(name)
}

/// A database reached over the PostgreSQL wire protocol, for sqllogictest.
struct Wire {
    client: tokio_postgres::Client,
}

#[async_trait]
impl sqllogictest::AsyncDB for Wire {
    type Error = tokio_postgres::Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let mut rows = Vec::new();
        let mut columns = None;
        let mut affected = 0;
        for message in self.client.simple_query(sql).await? {
            match message {
                SimpleQueryMessage::RowDescription(c) => columns = Some(c.len()),
                SimpleQueryMessage::Row(row) => {
                    columns.get_or_insert(row.len());
                    rows.push(
                        (0..row.len())
                            .map(|i| match row.get(i) {
                                None => "NULL".to_string(),
                                Some("") => "(empty)".to_string(),
                                Some(v) => v.to_string(),
                            })
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => affected = n,
                _ => {}
            }
        }
        Ok(match columns {
            Some(n) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            },
            None => DBOutput::StatementComplete(affected),
        })
    }

    async fn shutdown(&mut self) {}

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

fn runner(conninfo: &str) -> Runner<Wire, impl sqllogictest::MakeConnection<Conn = Wire>> {
    let conninfo = conninfo.to_string();
    Runner::new(move || {
        let conninfo = conninfo.clone();
        async move {
            let (client, connection) = tokio_postgres::connect(&conninfo, NoTls).await?;
            tokio::spawn(connection);
            Ok(Wire { client })
        }
    })
}

/// Runs the slt file `name` against the database at `conninfo`.
pub fn run(rt: &tokio::runtime::Runtime, name: &str, conninfo: &str) {
    let mut runner = runner(conninfo);
    if let Err(e) = rt.block_on(runner.run_file_async(file(name))) {
        panic!("{name} against {conninfo}: {}", e.display(true));
    }
}

/// With `ARMORLAKE_SLT_COMPLETE` set, rewrites the expected results of `name` from the
/// database at `conninfo` (then [`run`] checks the others against them).
pub fn complete_if_asked(rt: &tokio::runtime::Runtime, name: &str, conninfo: &str) {
    if std::env::var_os("ARMORLAKE_SLT_COMPLETE").is_none() {
        return;
    }
    let mut runner = runner(conninfo);
    rt.block_on(runner.update_test_file(
        file(name),
        " ",
        sqllogictest::default_validator,
        sqllogictest::default_normalizer,
        sqllogictest::default_column_validator,
    ))
    .unwrap();
}

/// The connection string of armorlake's PostgreSQL listener on `port`.
pub fn armorlake(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user=armorlake dbname=kubearmor")
}

/// A throwaway PostgreSQL 15 holding the events that full-speed simulators with fixed
/// clocks served: `(seed, events, start)` each, event `n` at `start + n` ms, converted by
/// armorlake's own converters. Every table has an index on `timestamp`.
pub struct Reference {
    cluster: Cluster,
    _dir: tempfile::TempDir,
}

impl Reference {
    pub fn load(sims: &[(u64, u64, &str)]) -> Reference {
        let bin = Binaries::find(Path::new("/usr/lib/postgresql/15/bin")).unwrap_or_else(|e| {
            panic!("PostgreSQL 15's server programs are needed (.ci/deps.sh installs them): {e}")
        });
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::start(&bin, dir.path(), &[]).unwrap();
        for table in Table::ALL {
            let name = table.name();
            cluster
                .query(&create_table(name, &table.schema()).unwrap())
                .unwrap();
            cluster
                .query(&format!(
                    "CREATE INDEX ON {} ({})",
                    quote_ident(name),
                    quote_ident(TIMESTAMP_COLUMN)
                ))
                .unwrap();
        }
        let mut alerts = AlertBatchBuilder::new("postgres", "reference", 4096);
        let mut logs = LogBatchBuilder::new("postgres", "reference", 4096);
        let mut messages = MessageBatchBuilder::new("postgres", "reference", 4096);
        for &(seed, events, start) in sims {
            let source = armorlake_sim::source(seed, 4);
            let start: chrono::DateTime<chrono::Utc> = start.parse().unwrap();
            for n in 0..events {
                let at = start + chrono::TimeDelta::milliseconds(n as i64);
                match source.event(n, at) {
                    SimEvent::Alert(a) => alerts.append(&a),
                    SimEvent::Log(l) => logs.append(&l),
                    SimEvent::Message(m) => messages.append(&m),
                }
            }
        }
        let batches = [
            (Table::Alerts, alerts.finish()),
            (Table::Logs, logs.finish()),
            (Table::Messages, messages.finish()),
        ];
        for (table, batch) in batches {
            let path = dir.path().join(format!("{table}.copy"));
            let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            write_copy_text(&batch, &mut out).unwrap();
            drop(out);
            let (rows, _) = cluster.copy_from(table.name(), &path).unwrap();
            assert_eq!(rows, batch.num_rows() as u64, "rows loaded into {table}");
        }
        cluster.query("ANALYZE").unwrap();
        Reference { cluster, _dir: dir }
    }

    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.cluster.port()
        )
    }
}
