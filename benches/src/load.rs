//! The load run: many PostgreSQL sessions at once, each sending a mix of queries back to
//! back for a while, with the server's resident memory sampled throughout. Used by the
//! `load` binary (minutes, release build) and by a short CI slice in the integration tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_postgres::NoTls;

/// The mix: what dashboards, psql users and drivers send. Every session cycles through it,
/// each from its own starting point, half over the simple protocol and half over the
/// extended one.
pub const QUERIES: &[&str] = &[
    "SELECT count(*) FROM alerts",
    "SELECT namespace_name, count(*) FROM alerts GROUP BY 1 ORDER BY 2 DESC",
    "SELECT process_name, count(*) AS n FROM alerts WHERE action = 'Block' GROUP BY 1 ORDER BY n DESC LIMIT 10",
    "SELECT \"timestamp\", pod_name, process_name, resource, action FROM alerts ORDER BY \"timestamp\" DESC LIMIT 10",
    "SELECT increments('minute', 1, \"timestamp\") AS t, count(*) FROM logs \
     WHERE \"timestamp\" > now() - interval '10 minutes' GROUP BY 1 ORDER BY 1",
    "SELECT operation, result, count(*) FROM logs GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT count(DISTINCT pod_name) FROM logs",
    "SELECT type, count(*) FROM messages GROUP BY 1 ORDER BY 1",
    "SELECT operator, endpoint, stream, state, reconnects FROM armorlake.sources ORDER BY 1, 2, 3",
    "SELECT table_name, rows FROM armorlake.tables ORDER BY 1",
    "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = 'public' ORDER BY 1",
    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'alerts' ORDER BY ordinal_position",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The server's PostgreSQL port on 127.0.0.1 (user armorlake, database kubearmor).
    pub port: u16,
    /// Sessions at once.
    pub connections: usize,
    /// How long every session keeps sending.
    pub duration: Duration,
    /// The server's process id, to sample its memory (`/proc/PID/status`).
    pub server_pid: Option<u32>,
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Statements that succeeded.
    pub queries: u64,
    /// Statements or connections that failed.
    pub errors: u64,
    /// The first few errors, for the report.
    pub first_errors: Vec<String>,
    /// Latency percentiles in milliseconds: p50, p95, p99, max.
    pub latency_ms: [f64; 4],
    /// The server's resident memory: at start, peak during the run, at the end (bytes).
    pub rss: Option<(u64, u64, u64)>,
    /// The highest resident memory sampled in each tenth of the run (bytes), to tell a
    /// plateau from growth.
    pub rss_tenths: Vec<u64>,
    /// How long the run took.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Statements per second.
    pub fn qps(&self) -> f64 {
        self.queries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The resident memory of process `pid` in bytes (Linux).
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix("VmRSS:")?;
        let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kib * 1024)
    })
}

struct Shared {
    queries: AtomicU64,
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
    latencies: Mutex<Vec<f64>>,
}

impl Shared {
    async fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().await;
        if first.len() < 10 {
            first.push(what);
        }
    }
}

/// One session: connects, then sends the mix until `stop`.
async fn session(port: u16, n: usize, stop: Arc<AtomicBool>, shared: Arc<Shared>) {
    let conninfo = format!("host=127.0.0.1 port={port} user=armorlake dbname=kubearmor");
    let (client, connection) = match tokio_postgres::connect(&conninfo, NoTls).await {
        Ok(c) => c,
        Err(e) => return shared.error(format!("session {n}: connecting: {e}")).await,
    };
    let driver = tokio::spawn(connection);
    let mut latencies = Vec::new();
    let mut i = n;
    while !stop.load(Ordering::Relaxed) {
        let sql = QUERIES[i % QUERIES.len()];
        let started = Instant::now();
        let result = match (i / QUERIES.len() + n) % 2 {
            0 => client.simple_query(sql).await.map(|_| ()),
            _ => client.query(sql, &[]).await.map(|_| ()),
        };
        match result {
            Ok(()) => {
                shared.queries.fetch_add(1, Ordering::Relaxed);
                latencies.push(started.elapsed().as_secs_f64() * 1e3);
            }
            Err(e) => shared.error(format!("session {n}: {sql}: {e:?}")).await,
        }
        i += 1;
    }
    drop(client);
    let _ = driver.await;
    shared.latencies.lock().await.extend(latencies);
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// Runs `options.connections` sessions for `options.duration` and reports.
pub async fn run(options: &LoadOptions) -> LoadReport {
    let shared = Arc::new(Shared {
        queries: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_errors: Mutex::new(Vec::new()),
        latencies: Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let rss_start = options.server_pid.and_then(rss_of);
    let started = Instant::now();
    let sessions: Vec<_> = (0..options.connections)
        .map(|n| tokio::spawn(session(options.port, n, stop.clone(), shared.clone())))
        .collect();
    let mut peak = rss_start.unwrap_or(0);
    let mut rss_tenths = Vec::new();
    while started.elapsed() < options.duration {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(rss) = options.server_pid.and_then(rss_of) {
            peak = peak.max(rss);
            let tenth = (started.elapsed().as_secs_f64() / options.duration.as_secs_f64() * 10.0)
                .min(9.0) as usize;
            if rss_tenths.len() <= tenth {
                rss_tenths.resize(tenth + 1, 0);
            }
            rss_tenths[tenth] = rss_tenths[tenth].max(rss);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in sessions {
        if let Err(e) = s.await {
            shared.error(format!("a session panicked: {e}")).await;
        }
    }
    let elapsed = started.elapsed();
    let mut latencies = std::mem::take(&mut *shared.latencies.lock().await);
    latencies.sort_by(f64::total_cmp);
    let rss_end = options.server_pid.and_then(rss_of);
    LoadReport {
        queries: shared.queries.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        first_errors: shared.first_errors.lock().await.clone(),
        latency_ms: [
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.95),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or(0.0),
        ],
        rss: match (rss_start, rss_end) {
            (Some(s), Some(e)) => Some((s, peak.max(e), e)),
            _ => None,
        },
        rss_tenths,
        elapsed,
    }
}
