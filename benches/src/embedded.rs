//! `armorlake up` in this process, pulling a fixed number of events from an in-process
//! simulator that serves them as fast as they are read, with its PostgreSQL and Flight SQL
//! listeners on 127.0.0.1: the setup of the benchmarks that read rows out of one node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use armorlake_node::{FlightOptions, FrontEnds, Listening, PullOptions, UpConfig, run_up};
use armorlake_sim::{SimConfig, Simulator};
use armorlake_storage::StoreOptions;
use tokio::task::JoinHandle;
use tokio_postgres::{NoTls, SimpleQueryMessage};
use tokio_util::sync::CancellationToken;

/// A running `up` and its simulator.
pub struct Embedded {
    /// Where its front ends listen.
    pub addrs: Listening,
    shutdown: CancellationToken,
    up: JoinHandle<Result<(), String>>,
}

/// Simulator events that give at least `logs` rows of `logs` (well over 3/4 of the
/// simulator's events are logs).
pub fn events_for_logs(logs: u64) -> u64 {
    logs * 4 / 3 + 1000
}

impl Embedded {
    /// Starts a simulator serving `events` events and `up` pulling from it, keeping its
    /// data in `data_dir`.
    pub async fn start(events: u64, data_dir: PathBuf) -> Result<Embedded, String> {
        let shutdown = CancellationToken::new();
        let sim = Simulator::new(SimConfig {
            rate: 0,
            count: Some(events),
            ..SimConfig::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding the simulator: {e}"))?;
        let sim_addr = listener.local_addr().map_err(|e| e.to_string())?;
        tokio::spawn(sim.serve(listener, shutdown.clone().cancelled_owned()));

        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let config = UpConfig {
            data_dir,
            front: FrontEnds {
                pg_listen: loopback(0),
                pg: Default::default(),
                flight_listen: loopback(0),
                flight: FlightOptions::default(),
                query_memory_limit: None,
            },
            kubearmor: vec![sim_addr.to_string()],
            simulate: 0,
            pull: PullOptions::default(),
            store: StoreOptions::default(),
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Listening>();
        let stop = shutdown.clone();
        let up = tokio::spawn(async move {
            run_up(config, stop, move |addrs| {
                let _ = ready_tx.send(addrs);
            })
            .await
            .map_err(|e| e.to_string())
        });
        let addrs = ready_rx
            .await
            .map_err(|_| "armorlake up stopped before it was ready".to_string())?;
        Ok(Embedded {
            addrs,
            shutdown,
            up,
        })
    }

    /// A tokio-postgres connection to its PostgreSQL front end.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, String> {
        let addr = self.addrs.pg;
        let conn = format!(
            "host={} port={} user=armorlake dbname=kubearmor",
            addr.ip(),
            addr.port()
        );
        let (client, connection) = tokio_postgres::connect(&conn, NoTls)
            .await
            .map_err(|e| format!("connecting to PostgreSQL front end: {e}"))?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Stops `up` and waits for it (its final flush included).
    pub async fn stop(self) -> Result<(), String> {
        self.shutdown.cancel();
        self.up.await.map_err(|e| e.to_string())?
    }
}

/// The number `sql` answers in its first row.
pub async fn count(pg: &tokio_postgres::Client, sql: &str) -> Result<u64, String> {
    let messages = pg.simple_query(sql).await.map_err(|e| e.to_string())?;
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .ok_or_else(|| format!("no count from {sql}"))
}

/// Waits until the store holds all `events`; returns the number of logs.
pub async fn wait_for_all(pg: &tokio_postgres::Client, events: u64) -> Result<u64, String> {
    let started = Instant::now();
    loop {
        let total = count(
            pg,
            "SELECT (SELECT count(*) FROM alerts) + (SELECT count(*) FROM logs) \
             + (SELECT count(*) FROM messages)",
        )
        .await?;
        if total >= events {
            return count(pg, "SELECT count(*) FROM logs").await;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {total} of {events} events after 10 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
