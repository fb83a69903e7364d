//! Runs the simulator and one operator, and the stages on their own, timed.

use crate::process::{self, CpuClock, Machine, MachineCpu};
use crate::{human_bytes, thousands};
use armorlake_common::Table;
use armorlake_meta::{MemoryMeta, MetaService};
use armorlake_node::operator::{Operator, OperatorConfig, PullOptions};
use armorlake_sim::{SimConfig, Simulator};
use armorlake_storage::StoreOptions;
use arrow::record_batch::RecordBatch;
use chrono::Utc;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::{Args, Armorlake, Highs, Mark, OPERATOR, POLL, STALL, Stage, WAL_DIR};

/// A running in-process simulator serving `events` events as fast as they are read.
pub struct Sim {
    sim: Simulator,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Sim {
    async fn start(args: &Args) -> Result<Sim, String> {
        let sim = Simulator::new(SimConfig {
            rate: 0,
            seed: args.seed,
            nodes: args.nodes,
            count: Some(args.events),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding the simulator: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("reading the simulator's address: {e}"))?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(sim.clone().serve(listener, stop.clone().cancelled_owned()));
        Ok(Sim {
            sim,
            addr,
            stop,
            task,
        })
    }

    /// Stops serving; returns the events it dropped (0 unless a subscriber lagged).
    async fn stop(self) -> u64 {
        self.stop.cancel();
        let dropped = self.sim.dropped();
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("warning: the simulator ended with an error: {e}"),
            Ok(Err(e)) => eprintln!("warning: the simulator task failed: {e}"),
            Err(_) => eprintln!("warning: the simulator did not stop within 10 s"),
        }
        dropped
    }
}

/// Measures a stage's wall time, this process's CPU and the other processes' CPU.
pub struct Meter {
    started: Instant,
    cpu: CpuClock,
    cpu_start: f64,
    machine: MachineCpu,
}

impl Meter {
    pub fn start() -> Meter {
        let cpu = CpuClock::new();
        Meter {
            machine: MachineCpu::now(),
            cpu_start: cpu.seconds(),
            cpu,
            started: Instant::now(),
        }
    }

    /// (wall time, own CPU seconds, cores other processes kept busy).
    pub fn read(&self) -> (Duration, f64, f64) {
        let took = self.started.elapsed();
        let cpu = self.cpu.seconds() - self.cpu_start;
        let busy = MachineCpu::now().busy_cores_since(&self.machine, Machine::detect().cores);
        let others = (busy - cpu / took.as_secs_f64().max(1e-9)).max(0.0);
        (took, cpu, others)
    }
}

/// Polls `count` until it reaches `n` (or stalls for [`STALL`]).
pub async fn wait_for(n: u64, count: impl Fn() -> u64) -> Result<(), String> {
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let now = count();
        if now >= n {
            return Ok(());
        }
        if now > last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > STALL {
            return Err(format!("stalled at {now} of {n} events"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// gRPC only: the three Watch streams, each on its own connection as the puller opens
/// them, received as bytes (as the puller receives them) and dropped.
pub async fn stage_decode(args: &Args) -> Result<Stage, String> {
    use futures::StreamExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    let sim = Sim::start(args).await?;
    let meter = Meter::start();
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for table in [Table::Alerts, Table::Logs, Table::Messages] {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", sim.addr))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("connecting to the simulator: {e}"))?;
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let max = armorlake_ingest::puller::MAX_EVENT_BYTES;
            let Ok(mut stream) =
                armorlake_ingest::feed::watch(channel, table, "all".into(), max).await
            else {
                return;
            };
            while let Some(Ok(_event)) = stream.next().await {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let outcome = wait_for(args.events, || received.load(Ordering::Relaxed)).await;
    let (took, cpu, others_cores) = meter.read();
    for task in &tasks {
        task.abort();
    }
    sim.stop().await;
    outcome?;
    Ok(Stage {
        name: "gRPC only (events received as bytes, dropped)",
        took,
        cpu,
        others_cores,
    })
}

/// The operator's pullers (decode + Arrow batches of 4096 rows) into a channel that is
/// drained and dropped: the operator without its store.
pub async fn stage_convert(args: &Args) -> Result<Stage, String> {
    use std::sync::atomic::{AtomicU64, Ordering};

    let sim = Sim::start(args).await?;
    let meter = Meter::start();
    let (sink, mut queue) = tokio::sync::mpsc::channel::<(Table, RecordBatch)>(256);
    let shutdown = CancellationToken::new();
    let (_status, tasks) = armorlake_ingest::puller::spawn(
        armorlake_ingest::PullerConfig::new(sim.addr.to_string(), OPERATOR),
        sink,
        shutdown.clone(),
    );
    let rows = Arc::new(AtomicU64::new(0));
    let counter = rows.clone();
    let drain = tokio::spawn(async move {
        while let Some((_, batch)) = queue.recv().await {
            counter.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        }
    });
    let outcome = wait_for(args.events, || rows.load(Ordering::Relaxed)).await;
    let (took, cpu, others_cores) = meter.read();
    shutdown.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let _ = drain.await;
    sim.stop().await;
    outcome?;
    Ok(Stage {
        name: "+ Arrow batches (the operator's pullers, no store)",
        took,
        cpu,
        others_cores,
    })
}

/// Rows the store holds over all tables (memory and Parquet), and how many of them wait in
/// memory for Parquet; one consistent snapshot per table. Cheaper than `Store::partitions`,
/// which sizes every batch in memory.
pub fn stored_rows(store: &armorlake_storage::Store) -> (u64, u64) {
    let (mut stored, mut in_memory) = (0, 0);
    for table in Table::ALL {
        let snapshot = store.table(table).snapshot();
        let memory: u64 = snapshot.memory.iter().map(|b| b.num_rows() as u64).sum();
        let files: u64 = snapshot.files.iter().map(|f| f.rows).sum();
        stored += memory + files;
        in_memory += memory;
    }
    (stored, in_memory)
}

/// `n` predicate alert rules spread over the three tables: realistic predicates (string
/// comparisons, `LIKE`, `IN`) that seldom match the simulated events.
pub fn bench_rules(n: usize) -> Vec<String> {
    let templates = [
        (
            "alerts",
            "action = 'Block' AND namespace_name = 'bench-{i}'",
        ),
        (
            "logs",
            "result <> 'Passed' AND resource LIKE '/etc/shadow-{i}%'",
        ),
        (
            "alerts",
            "process_name IN ('/bin/nc-{i}', '/usr/bin/ncat-{i}')",
        ),
        ("logs", "operation = 'Network' AND pod_name = 'exfil-{i}'"),
        ("messages", "level = 'Error' AND message LIKE '%bench-{i}%'"),
    ];
    (0..n)
        .map(|i| {
            let (table, predicate) = templates[i % templates.len()];
            let predicate = predicate.replace("{i}", &i.to_string());
            format!("CREATE ALERT RULE bench_{i} ON {table} WHERE {predicate}")
        })
        .collect()
}

/// Runs the simulator and one operator until the store holds every event, then shuts the
/// operator down (final flush included). `rules` (CREATE ALERT RULE statements) are stored
/// in the metadata first, so the operator evaluates them on every batch from the start.
pub async fn armorlake(
    args: &Args,
    data_dir: &Path,
    rules: &[String],
) -> Result<Armorlake, String> {
    let n = args.events;
    let sim = Sim::start(args).await?;
    let addr = sim.addr;

    let mut store = StoreOptions::default();
    if let Some(every) = args.flush_interval {
        store.flush_interval = every;
    }
    if let Some(rows) = args.flush_rows {
        store.flush_rows = rows;
    }
    if let Some(bytes) = args.flush_bytes {
        store.flush_bytes = bytes;
    }
    println!(
        "operator: 1 endpoint (in-process simulator at {addr}, rate 0 = as fast as read), \
         flush every {:?}, or at {} rows in a table or {} in memory, data in {}",
        store.flush_interval,
        thousands(store.flush_rows as u64),
        human_bytes(store.flush_bytes as u64),
        data_dir.display()
    );
    let meta: Arc<dyn MetaService> = Arc::new(MemoryMeta::new());
    for (i, sql) in rules.iter().enumerate() {
        meta.create_rule(armorlake_meta::Rule {
            name: format!("bench_{i}"),
            sql: sql.clone(),
            created_micros: armorlake_meta::now_micros(),
            stats: armorlake_meta::RuleStats::default(),
        })
        .await
        .map_err(|e| format!("creating alert rule {i}: {e}"))?;
    }
    let shutdown = CancellationToken::new();
    let cpu = CpuClock::new();
    let rss_before = process::rss();
    let machine_start = MachineCpu::now();
    let cpu_start = cpu.seconds();
    let started_utc = Utc::now();
    let started = Instant::now();
    let operator = Operator::start(
        OperatorConfig {
            id: OPERATOR.into(),
            cluster: String::new(),
            address: String::new(),
            data_dir: data_dir.to_path_buf(),
            endpoints: vec![addr.to_string()],
            pull: PullOptions::default(),
            store,
            heartbeat: Duration::from_secs(1),
        },
        meta,
        shutdown.clone(),
    )
    .await
    .map_err(|e| format!("starting the operator: {e}"))?;

    let wal_dir = data_dir.join(WAL_DIR);
    let mut marks = Vec::new();
    let (mut max_sampled_rss, mut peak_wal_bytes, mut wal_bytes) = (0, 0, 0);
    let (mut quarter, mut run_highs) = (Highs::default(), Highs::default());
    let (mut last_rows, mut last_growth) = (0u64, Instant::now());
    for poll in 0u64.. {
        tokio::time::sleep(POLL).await;
        let (rows, in_memory) = stored_rows(operator.store());
        let rss = process::rss();
        max_sampled_rss = max_sampled_rss.max(rss);
        if poll.is_multiple_of(5) {
            wal_bytes = files_under(&wal_dir, |_| true).1;
            peak_wal_bytes = peak_wal_bytes.max(wal_bytes);
        }
        quarter.see(rss, in_memory, wal_bytes);
        run_highs.see(rss, in_memory, wal_bytes);
        for percent in [25u64, 50, 75, 100] {
            let reached = u128::from(rows) * 100 >= u128::from(n) * u128::from(percent);
            if reached && !marks.iter().any(|m: &Mark| m.percent == percent) {
                marks.push(Mark {
                    percent,
                    rows,
                    elapsed: started.elapsed(),
                    rss,
                    quarter,
                });
                quarter = Highs::default();
            }
        }
        if rows >= n {
            break;
        }
        if rows > last_rows {
            (last_rows, last_growth) = (rows, Instant::now());
        } else if last_growth.elapsed() > STALL {
            let streams: Vec<String> = operator
                .sources()
                .iter()
                .map(|s| {
                    let s = s.snapshot();
                    format!(
                        "{} {} events {} ({})",
                        s.table,
                        s.state.name(),
                        s.events,
                        s.last_error.unwrap_or_default()
                    )
                })
                .collect();
            shutdown.cancel();
            sim.stop().await;
            return Err(format!(
                "the store stopped growing at {rows} of {n} rows for {STALL:?}; streams: {}",
                streams.join("; ")
            ));
        }
    }
    let acknowledged = started.elapsed();
    let cpu_acknowledged = cpu.seconds() - cpu_start;

    let store = operator.store().clone();
    shutdown.cancel();
    operator.join().await;
    let durable = started.elapsed();
    let cpu_durable = cpu.seconds() - cpu_start;
    let busy = MachineCpu::now().busy_cores_since(&machine_start, Machine::detect().cores);
    let others_cores = (busy - cpu_durable / durable.as_secs_f64().max(1e-9)).max(0.0);
    max_sampled_rss = max_sampled_rss.max(process::rss());
    let peak_rss = process::peak_rss();

    let dropped = sim.stop().await;

    let mut rows_per_table = Vec::new();
    let (mut parquet_rows, mut parquet_bytes, mut parquet_files) = (0u64, 0u64, 0usize);
    for table in Table::ALL {
        let snapshot = store.table(table).snapshot();
        let rows: u64 = snapshot.files.iter().map(|f| f.rows).sum();
        let in_memory: usize = snapshot.memory.iter().map(|b| b.num_rows()).sum();
        if in_memory > 0 {
            eprintln!("warning: {in_memory} {table} rows still in memory after the final flush");
        }
        parquet_rows += rows;
        parquet_bytes += snapshot.files.iter().map(|f| f.bytes).sum::<u64>();
        parquet_files += snapshot.files.len();
        rows_per_table.push((table, rows));
    }
    if parquet_rows != n {
        eprintln!("warning: Parquet holds {parquet_rows} rows, expected {n}");
    }
    let has_wal = wal_dir.is_dir();
    let (other_files, other_bytes) =
        files_under(data_dir, |p| p.extension().is_none_or(|e| e != "parquet"));

    Ok(Armorlake {
        events: n,
        endpoint: addr.to_string(),
        started_utc,
        acknowledged,
        durable,
        marks,
        max_sampled_rss,
        max_in_memory: run_highs.in_memory,
        peak_rss,
        rss_before,
        cpu_acknowledged,
        cpu_durable,
        others_cores,
        parquet_bytes,
        parquet_files,
        other_bytes,
        other_files,
        has_wal,
        peak_wal_bytes,
        rows_per_table,
        dropped,
    })
}

/// Count and bytes of the files under `dir` (recursively) that `select` picks.
pub fn files_under(dir: &Path, select: impl Fn(&Path) -> bool) -> (usize, u64) {
    let mut stack = vec![dir.to_path_buf()];
    let (mut count, mut bytes) = (0, 0);
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if select(&path) {
                count += 1;
                bytes += meta.len();
            }
        }
    }
    (count, bytes)
}
