//! `armorlake`: one binary, one subcommand per role.

mod config;
mod pg_args;
mod tail;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use armorlake_node::{
    FlightOptions, FrontEnds, KubeArmorTls, Listening, OperatorProcess, PasswordUsers, PullOptions,
    QueryProcess, UpConfig, run_master, run_operator, run_query, run_up,
};
use armorlake_sim::{SimConfig, Simulator};
use armorlake_storage::StoreOptions;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use armorlake_query::auth::Credentials;

use crate::pg_args::PgArgs;

/// KubeArmor security telemetry kept at the edge, queried as one PostgreSQL database.
#[derive(Debug, Parser)]
#[command(name = "armorlake", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run master, operator and query roles in one process (with a built-in KubeArmor
    /// simulator unless --kubearmor is given).
    Up(UpArgs),
    /// Hold the cluster's shared metadata (nodes, tables, partition map).
    Master(MasterArgs),
    /// Pull events from KubeArmor endpoints, store them, report to the master, and run the
    /// query fragments query nodes send.
    Operator(OperatorArgs),
    /// Serve PostgreSQL clients over the whole cluster: plan each query, run its fragments on
    /// the operators holding the data, merge the results.
    Query(QueryArgs),
    /// Serve a KubeArmor-compatible gRPC feed (feeder.LogService) of simulated events.
    #[command(name = "kubearmor-sim")]
    KubearmorSim(SimArgs),
    /// Print the rows of a query (over a query node) as new ones arrive, until Ctrl-C.
    Tail(tail::TailArgs),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Where events are stored.
    #[arg(long, env = "ARMORLAKE_DATA_DIR", default_value = "armorlake-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    front: FrontArgs,
    /// KubeArmor endpoint to pull from (HOST:PORT); repeat for several. None: the built-in
    /// simulator.
    #[arg(long = "kubearmor", value_name = "HOST:PORT")]
    kubearmor: Vec<String>,
    /// Events per second of the built-in simulator.
    #[arg(long, value_name = "EVENTS_PER_SEC", default_value_t = 300)]
    simulate: u64,
    #[command(flatten)]
    pull: PullArgs,
    #[command(flatten)]
    store: StoreArgs,
}

/// The query node's front ends.
#[derive(Debug, clap::Args)]
struct FrontArgs {
    /// PostgreSQL wire protocol listener.
    #[arg(long, env = "ARMORLAKE_PG_LISTEN", default_value = "127.0.0.1:5433")]
    pg_listen: SocketAddr,
    /// Arrow Flight SQL (gRPC) listener.
    #[arg(
        long,
        env = "ARMORLAKE_FLIGHT_LISTEN",
        default_value = "127.0.0.1:50062"
    )]
    flight_listen: SocketAddr,
    /// A Flight SQL user, NAME:PASSWORD; repeat for several. Without any, every Flight SQL
    /// client is trusted, which is allowed only on a loopback --flight-listen.
    #[arg(
        long = "flight-user",
        env = "ARMORLAKE_FLIGHT_USER",
        value_name = "NAME:PASSWORD"
    )]
    flight_users: Vec<String>,
    #[command(flatten)]
    pg: PgArgs,
}

impl FrontArgs {
    fn front_ends(self) -> Result<FrontEnds, String> {
        let pg = self.pg.options(self.pg_listen)?;
        // Flight SQL signs in the PostgreSQL users unless --flight-user names its own, and
        // serves the same certificate.
        let credentials = match self.flight_users.is_empty() {
            true => Arc::new(pg.users.clone()) as Arc<dyn Credentials>,
            false => PasswordUsers::parse(self.flight_users.iter().map(String::as_str))
                .map_err(|e| format!("--flight-user: {e}"))?
                .into_credentials(),
        };
        let tls = self.pg.flight_tls()?;
        Ok(FrontEnds {
            pg,
            pg_listen: self.pg_listen,
            flight_listen: self.flight_listen,
            flight: FlightOptions { credentials, tls },
        })
    }
}

/// The line a query node prints once clients can connect.
fn ready_line(what: &str, addrs: Listening) -> String {
    format!(
        "{what} is ready: psql -h {} -p {} -U armorlake kubearmor  (Flight SQL: grpc://{})",
        addrs.pg.ip(),
        addrs.pg.port(),
        addrs.flight
    )
}

/// How an operator subscribes to KubeArmor.
#[derive(Debug, clap::Args)]
struct PullArgs {
    /// WatchAlerts filter sent to KubeArmor: all or policy.
    #[arg(long, default_value = "all")]
    alert_filter: String,
    /// WatchLogs filter sent to KubeArmor: all or system.
    #[arg(long, default_value = "all")]
    log_filter: String,
    /// Reach KubeArmor over TLS, trusting the CA in this PEM file.
    #[arg(long, value_name = "FILE")]
    kubearmor_ca: Option<PathBuf>,
    /// The name KubeArmor's certificate is checked against (default: the endpoint's host).
    #[arg(long, value_name = "NAME", requires = "kubearmor_ca")]
    kubearmor_tls_domain: Option<String>,
}

impl PullArgs {
    fn options(self) -> Result<PullOptions, String> {
        let tls = match &self.kubearmor_ca {
            Some(path) => Some(KubeArmorTls {
                ca_pem: std::fs::read(path)
                    .map_err(|e| format!("reading --kubearmor-ca {}: {e}", path.display()))?,
                domain: self.kubearmor_tls_domain.clone(),
            }),
            None => None,
        };
        Ok(PullOptions {
            alert_filter: self.alert_filter,
            log_filter: self.log_filter,
            tls,
        })
    }
}

/// How an operator stores events.
#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// How often rows held in memory are written to Parquet.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    flush_interval: Duration,
    /// Flush early once a table has this many rows in memory (default: 1000000).
    #[arg(long, value_name = "ROWS")]
    flush_rows: Option<usize>,
    /// Flush early once the rows in memory, all tables together, take this many bytes of
    /// Arrow memory (default: 268435456, 256 MiB).
    #[arg(long, value_name = "BYTES")]
    flush_bytes: Option<usize>,
    /// Drop whole hours older than this (e.g. 14d); keep everything when absent.
    #[arg(long, value_parser = humantime::parse_duration)]
    retention: Option<Duration>,
}

#[derive(Debug, clap::Args)]
struct MasterArgs {
    /// gRPC listener of the metadata service.
    #[arg(
        long,
        env = "ARMORLAKE_MASTER_LISTEN",
        default_value = "127.0.0.1:50060"
    )]
    listen: SocketAddr,
    /// Where the metadata is kept.
    #[arg(long, env = "ARMORLAKE_DATA_DIR", default_value = "armorlake-master")]
    data_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct OperatorArgs {
    /// The master, e.g. http://127.0.0.1:50060.
    #[arg(long, env = "ARMORLAKE_MASTER")]
    master: String,
    /// The node's name (default: the host name and data directory).
    #[arg(long)]
    name: Option<String>,
    /// Replica group: operators with the same cluster pull the same endpoints.
    #[arg(long, default_value = "")]
    cluster: String,
    /// Where query fragments are served (gRPC).
    #[arg(long, env = "ARMORLAKE_LISTEN", default_value = "127.0.0.1:50061")]
    listen: SocketAddr,
    /// The address query nodes reach this operator at (default: the bound --listen address).
    #[arg(long, default_value = "")]
    advertise: String,
    /// Where events are stored.
    #[arg(long, env = "ARMORLAKE_DATA_DIR", default_value = "armorlake-data")]
    data_dir: PathBuf,
    /// KubeArmor endpoint to pull from (HOST:PORT); repeat for several.
    #[arg(long = "kubearmor", value_name = "HOST:PORT", required = true)]
    kubearmor: Vec<String>,
    #[command(flatten)]
    pull: PullArgs,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, clap::Args)]
struct QueryArgs {
    /// The master, e.g. http://127.0.0.1:50060.
    #[arg(long, env = "ARMORLAKE_MASTER")]
    master: String,
    /// The node's name (default: query@ and the PostgreSQL listener).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    front: FrontArgs,
}

#[derive(Debug, clap::Args)]
struct SimArgs {
    /// gRPC listener.
    #[arg(long, default_value = "127.0.0.1:32767")]
    listen: SocketAddr,
    /// Events per second over all streams; 0 = as fast as the clients read.
    #[arg(long, value_name = "EVENTS_PER_SEC", default_value_t = 300)]
    rate: u64,
    /// Seed of the deterministic event sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated KubeArmor nodes (hosts).
    #[arg(long, default_value_t = 4)]
    nodes: u32,
    /// Stop after this many events in total (the streams stay open).
    #[arg(long)]
    count: Option<u64>,
    /// Give events fixed times from TIME on (RFC 3339): event n happens at TIME + n/rate, or
    /// at full speed at TIME + n ms, so every subscriber receives identical events.
    #[arg(long, value_name = "TIME")]
    start: Option<chrono::DateTime<chrono::Utc>>,
}

/// Cancels `token` on Ctrl-C or SIGTERM.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        token.cancel();
    });
}

impl StoreArgs {
    fn options(self) -> StoreOptions {
        let defaults = StoreOptions::default();
        StoreOptions {
            flush_interval: self.flush_interval,
            flush_rows: self.flush_rows.unwrap_or(defaults.flush_rows),
            flush_bytes: self.flush_bytes.unwrap_or(defaults.flush_bytes),
            retention: self.retention,
            ..defaults
        }
    }
}

async fn up(args: UpArgs, shutdown: CancellationToken) -> Result<(), String> {
    let config = UpConfig {
        pull: args.pull.options()?,
        data_dir: args.data_dir,
        front: args.front.front_ends()?,
        kubearmor: args.kubearmor,
        simulate: args.simulate,
        store: args.store.options(),
    };
    run_up(config, shutdown, |addrs| {
        println!("{}", ready_line("armorlake", addrs));
    })
    .await
    .map_err(|e| e.to_string())
}

async fn master(args: MasterArgs, shutdown: CancellationToken) -> Result<(), String> {
    run_master(args.listen, args.data_dir, shutdown, |addr| {
        println!("armorlake master is listening on {addr}");
    })
    .await
    .map_err(|e| e.to_string())
}

async fn operator(args: OperatorArgs, shutdown: CancellationToken) -> Result<(), String> {
    let name = args.name.unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "operator".into());
        format!("{host}:{}", args.data_dir.display())
    });
    let config = OperatorProcess {
        master: args.master,
        name: name.clone(),
        cluster: args.cluster,
        listen: args.listen,
        advertise: args.advertise,
        data_dir: args.data_dir,
        kubearmor: args.kubearmor,
        pull: args.pull.options()?,
        store: args.store.options(),
    };
    run_operator(config, shutdown, |addr| {
        println!("armorlake operator {name} is running, serving queries on {addr}");
    })
    .await
    .map_err(|e| e.to_string())
}

async fn query(args: QueryArgs, shutdown: CancellationToken) -> Result<(), String> {
    let config = QueryProcess {
        master: args.master,
        name: args
            .name
            .unwrap_or_else(|| format!("query@{}", args.front.pg_listen)),
        front: args.front.front_ends()?,
    };
    run_query(config, shutdown, |addrs| {
        println!("{}", ready_line("armorlake query node", addrs));
    })
    .await
    .map_err(|e| e.to_string())
}

async fn simulate(args: SimArgs, shutdown: CancellationToken) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let config = SimConfig {
        rate: args.rate,
        seed: args.seed,
        nodes: args.nodes.max(1),
        count: args.count,
    };
    let sim = match args.start {
        Some(start) => Simulator::starting_at(config, start),
        None => Simulator::new(config),
    };
    println!("kubearmor-sim is listening on {addr}");
    sim.serve(listener, shutdown.cancelled_owned())
        .await
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("armorlake: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        cancel_on_signal(shutdown.clone());
        match cli.command {
            Command::Up(args) => up(args, shutdown).await,
            Command::Master(args) => master(args, shutdown).await,
            Command::Operator(args) => operator(args, shutdown).await,
            Command::Query(args) => query(args, shutdown).await,
            Command::KubearmorSim(args) => simulate(args, shutdown).await,
            Command::Tail(args) => tail::tail(args, shutdown).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("armorlake: {e}");
            ExitCode::FAILURE
        }
    }
}
