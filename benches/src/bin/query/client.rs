//! Timing queries through the PostgreSQL wire protocol with a real client (`tokio-postgres`,
//! simple query protocol, every row fetched as text).

use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::queries::{Answer, Query};

/// How one system ran one query.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Every timed run, sorted.
    pub runs: Vec<Duration>,
    /// The answer of the untimed first run (the warm-up), or why there is none.
    pub answer: Result<Answer, String>,
}

impl Timing {
    /// The median of the timed runs.
    pub fn p50(&self) -> Option<Duration> {
        (!self.runs.is_empty()).then(|| self.runs[self.runs.len() / 2])
    }

    /// The failure, when there was one.
    pub fn failed(error: String) -> Timing {
        Timing {
            runs: Vec::new(),
            answer: Err(error),
        }
    }
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub port: u16,
    pub user: &'static str,
    pub dbname: &'static str,
}

impl Target {
    /// An armorlake node (query node or `up`).
    pub fn armorlake(port: u16) -> Target {
        Target {
            port,
            user: "armorlake",
            dbname: "kubearmor",
        }
    }

    /// The throwaway PostgreSQL cluster.
    pub fn postgres(port: u16) -> Target {
        Target {
            port,
            user: "postgres",
            dbname: "postgres",
        }
    }

    /// A new connection over TCP to 127.0.0.1.
    pub async fn connect(&self) -> Result<Client, String> {
        let config = format!(
            "host=127.0.0.1 port={} user={} dbname={} connect_timeout=10",
            self.port, self.user, self.dbname
        );
        let (client, connection) = tokio_postgres::connect(&config, NoTls)
            .await
            .map_err(|e| format!("connecting to 127.0.0.1:{}: {e}", self.port))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing_error(&e.to_string());
            }
        });
        Ok(client)
    }
}

fn tracing_error(e: &str) {
    if !e.contains("closed") {
        eprintln!("warning: connection error: {e}");
    }
}

/// Runs `sql` and returns every row as text (`None` for NULL).
pub async fn rows(client: &Client, sql: &str) -> Result<Answer, String> {
    let messages = client.simple_query(sql).await.map_err(|e| describe(&e))?;
    let mut rows = Vec::new();
    for message in messages {
        if let SimpleQueryMessage::Row(row) = message {
            rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// The error with the server's message and SQLSTATE when it sent one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// The single integer `sql` returns.
pub async fn count(client: &Client, sql: &str) -> Result<u64, String> {
    let answer = rows(client, sql).await?;
    answer
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{sql}: no integer in {answer:?}"))
}

/// A new connection to `target`, with the `setup` statements run.
async fn connect_with(target: &Target, setup: &[&str]) -> Result<Client, String> {
    let client = target.connect().await?;
    for sql in setup {
        rows(&client, sql).await?;
    }
    Ok(client)
}

/// Runs each query once untimed (its answer is kept), then `runs` times timed, each on the
/// same connection. A query that takes longer than `timeout` is abandoned (the connection
/// is then replaced) and not run again.
pub async fn time_queries(
    target: &Target,
    queries: &[Query],
    runs: usize,
    timeout: Duration,
    setup: &[&str],
) -> Result<Vec<Timing>, String> {
    let mut client = connect_with(target, setup).await?;
    let mut timings = Vec::new();
    for query in queries {
        let mut timing = Timing {
            runs: Vec::new(),
            answer: Err(String::new()),
        };
        for run in 0..=runs {
            let started = Instant::now();
            let outcome = tokio::time::timeout(timeout, rows(&client, &query.sql)).await;
            let took = started.elapsed();
            match outcome {
                Ok(Ok(answer)) => {
                    if run == 0 {
                        timing.answer = Ok(answer);
                    } else {
                        timing.runs.push(took);
                    }
                }
                Ok(Err(e)) => {
                    timing.answer = Err(e);
                    timing.runs.clear();
                    break;
                }
                Err(_) => {
                    timing.answer = Err(format!("timed out after {} s", timeout.as_secs()));
                    timing.runs.clear();
                    client = connect_with(target, setup).await?;
                    break;
                }
            }
        }
        timing.runs.sort();
        timings.push(timing);
    }
    Ok(timings)
}
