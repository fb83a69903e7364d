//! `armorlake`: one binary, one subcommand per role.

mod args;
mod cluster_args;
mod config;
mod layer;
mod pg_args;
mod tail;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use armorlake_node::{
    Listening, MasterProcess, OperatorProcess, QueryProcess, UpConfig, run_master, run_operator,
    run_query, run_up,
};
use armorlake_sim::{SimConfig, Simulator};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::args::{MasterArgs, OperatorArgs, QueryArgs, SimArgs, UpArgs};
use crate::layer::Layer;

/// jemalloc, not glibc's malloc: planning a statement makes many small, short-lived
/// allocations, which it serves faster. Unlike mimalloc, it keeps freed pages for a while
/// (its decay), so ingest does not fault them in again for every batch of events
/// (docs/performance.md, session 17).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// KubeArmor security telemetry kept at the edge, queried as one PostgreSQL database.
#[derive(Debug, Parser)]
#[command(name = "armorlake", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: text, or json (one object per line). RUST_LOG picks what is
    /// logged (default: info).
    #[arg(
        long,
        global = true,
        env = "ARMORLAKE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Serve Prometheus metrics (GET /metrics) and a health check (GET /health) on this
    /// HTTP listener; off when absent.
    #[arg(
        long,
        global = true,
        env = "ARMORLAKE_METRICS_LISTEN",
        value_name = "ADDR"
    )]
    metrics_listen: Option<SocketAddr>,
    /// Check the command line and exit without running anything (for deployment checks).
    #[arg(long, global = true, hide = true)]
    check_args: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (timestamp, level, target, fields, spans).
    Json,
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
    /// Exit 0 when a TCP connection to ADDR succeeds within the timeout, 1 otherwise (a
    /// container health check).
    Probe(ProbeArgs),
    /// Print the rows of a query (over a query node) as new ones arrive, until Ctrl-C.
    Tail(tail::TailArgs),
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// HOST:PORT to connect to.
    addr: String,
    /// How long to wait for the connection.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
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

/// Layers the options every role's file may set at its top level (`log_format`,
/// `metrics_listen`) over the global flags' environment and defaults; a flag still wins.
fn file_options(cli: &mut Cli, layer: &Layer<'_>) -> Result<(), String> {
    let Some(path) = layer.path("config") else {
        return Ok(());
    };
    let common = config::RoleFile::<toml::Table>::load(Some(&path))?.common;
    if let Some(name) = common.log_format
        && !layer.given_as_flag("log_format")
    {
        cli.log_format = <LogFormat as clap::ValueEnum>::from_str(&name, true).map_err(|_| {
            format!(
                "config {}: log_format {name:?}: text or json",
                path.display()
            )
        })?;
    }
    layer.set_opt(
        &mut cli.metrics_listen,
        "metrics_listen",
        common.metrics_listen,
    );
    Ok(())
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

async fn up(args: UpArgs, layer: &Layer<'_>, shutdown: CancellationToken) -> Result<(), String> {
    let (args, file) = args.layered(layer)?;
    let config = UpConfig {
        pull: args.pull.options()?,
        data_dir: args.data_dir,
        front: args.front.front_ends(&file.users)?,
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

async fn master(
    args: MasterArgs,
    layer: &Layer<'_>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let args = args.layered(layer)?;
    let config = MasterProcess {
        listen: args.listen,
        store: args.meta_store()?,
        security: args.security.security()?,
    };
    run_master(config, shutdown, |addr| {
        println!("armorlake master is listening on {addr}");
    })
    .await
    .map_err(|e| e.to_string())
}

async fn operator(
    args: OperatorArgs,
    layer: &Layer<'_>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let args = args.layered(layer)?;
    let name = args.name.unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "operator".into());
        format!("{host}:{}", args.data_dir.display())
    });
    let config = OperatorProcess {
        master: args.master.unwrap_or_default(),
        name: name.clone(),
        cluster: args.cluster,
        listen: args.listen,
        advertise: args.advertise,
        data_dir: args.data_dir,
        kubearmor: args.kubearmor,
        pull: args.pull.options()?,
        store: args.store.options(),
        security: args.security.security()?,
    };
    run_operator(config, shutdown, |addr| {
        println!("armorlake operator {name} is running, serving queries on {addr}");
    })
    .await
    .map_err(|e| e.to_string())
}

async fn query(
    args: QueryArgs,
    layer: &Layer<'_>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let (args, file) = args.layered(layer)?;
    let config = QueryProcess {
        master: args.master.unwrap_or_default(),
        name: args
            .name
            .unwrap_or_else(|| format!("query@{}", args.front.pg_listen)),
        front: args.front.front_ends(&file.users)?,
        security: args.security.security()?,
    };
    run_query(config, shutdown, |addrs| {
        println!("{}", ready_line("armorlake query node", addrs));
    })
    .await
    .map_err(|e| e.to_string())
}

async fn simulate(
    args: SimArgs,
    layer: &Layer<'_>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let args = args.layered(layer)?;
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

/// Exits 0 when `args.addr` accepts a TCP connection in time.
async fn probe(args: ProbeArgs) -> Result<(), String> {
    match tokio::time::timeout(args.timeout, tokio::net::TcpStream::connect(&args.addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{}: {e}", args.addr)),
        Err(_) => Err(format!(
            "{}: no connection within {:?}",
            args.addr, args.timeout
        )),
    }
}

/// Logs to stderr, as text or JSON; RUST_LOG filters (default: info).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// The role a command runs, for `armorlake_build_info`.
fn role(command: &Command) -> &'static str {
    match command {
        Command::Up(_) => "up",
        Command::Master(_) => "master",
        Command::Operator(_) => "operator",
        Command::Query(_) => "query",
        Command::KubearmorSim(_) => "kubearmor-sim",
        Command::Probe(_) => "probe",
        Command::Tail(_) => "tail",
    }
}

/// Starts the metrics endpoint when `--metrics-listen` is given and says where it is.
async fn start_metrics(
    listen: Option<SocketAddr>,
    role: &str,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let Some(listen) = listen else {
        return Ok(());
    };
    let addr = armorlake_node::metrics::start(listen, role, shutdown.clone())
        .await
        .map_err(|e| e.to_string())?;
    println!("armorlake {role} serves metrics on http://{addr}/metrics");
    Ok(())
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The subcommand's own matches tell which options came from flags.
    let layer = match matches.subcommand() {
        Some((_, sub)) => Layer::new(sub),
        None => Layer::new(&matches),
    };
    if cli.check_args {
        println!(
            "armorlake: the command line is valid ({})",
            role(&cli.command)
        );
        return ExitCode::SUCCESS;
    }
    // The file's log format and metrics listener (a check of the command line above reads
    // no files: the paths it names may exist only where it will run).
    let mut cli = cli;
    if let Err(e) = file_options(&mut cli, &layer) {
        eprintln!("armorlake: {e}");
        return ExitCode::FAILURE;
    }
    init_logs(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("armorlake: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        if let Command::Probe(args) = cli.command {
            return probe(args).await;
        }
        cancel_on_signal(shutdown.clone());
        start_metrics(cli.metrics_listen, role(&cli.command), &shutdown).await?;
        match cli.command {
            Command::Up(args) => up(args, &layer, shutdown).await,
            Command::Master(args) => master(args, &layer, shutdown).await,
            Command::Operator(args) => operator(args, &layer, shutdown).await,
            Command::Query(args) => query(args, &layer, shutdown).await,
            Command::KubearmorSim(args) => simulate(args, &layer, shutdown).await,
            Command::Probe(args) => probe(args).await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::parse_bytes;

    #[test]
    fn byte_counts_with_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 fortnights").is_err());
    }

    #[test]
    fn log_format_and_metrics_flags_come_anywhere() {
        let cli = Cli::try_parse_from([
            "armorlake",
            "up",
            "--log-format",
            "json",
            "--metrics-listen",
            "127.0.0.1:9187",
            "--query-memory-limit",
            "1GiB",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.log_format, LogFormat::Json);
        assert_eq!(
            cli.metrics_listen,
            Some("127.0.0.1:9187".parse().unwrap_or_else(|e| panic!("{e}")))
        );
        assert!(Cli::try_parse_from(["armorlake", "--log-format", "xml", "up"]).is_err());
    }

    #[test]
    fn log_format_and_metrics_listener_come_from_the_file_unless_flagged() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("up.toml");
        std::fs::write(
            &file,
            "log_format = \"json\"\nmetrics_listen = \"127.0.0.1:9300\"\n\
             query_memory_limit = \"64MiB\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let parse = |extra: &[&str]| {
            let mut argv = vec!["armorlake", "up", "--config", file.to_str().unwrap_or("")];
            argv.extend_from_slice(extra);
            let matches = Cli::command()
                .try_get_matches_from(argv)
                .unwrap_or_else(|e| panic!("{e}"));
            let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| panic!("{e}"));
            let sub = matches.subcommand().map(|(_, s)| s.clone());
            let layer = Layer::new(sub.as_ref().unwrap_or(&matches));
            file_options(&mut cli, &layer).unwrap_or_else(|e| panic!("{e}"));
            cli
        };
        let from_file = parse(&[]);
        assert_eq!(from_file.log_format, LogFormat::Json);
        assert_eq!(from_file.metrics_listen.map(|a| a.port()), Some(9300));
        let flagged = parse(&["--log-format", "text", "--metrics-listen", "127.0.0.1:9400"]);
        assert_eq!(flagged.log_format, LogFormat::Text);
        assert_eq!(flagged.metrics_listen.map(|a| a.port()), Some(9400));
        let Command::Up(args) = from_file.command else {
            panic!("not up");
        };
        let matches = Cli::command()
            .try_get_matches_from(["armorlake", "up", "--config", file.to_str().unwrap_or("")])
            .unwrap_or_else(|e| panic!("{e}"));
        let sub = matches.subcommand().map(|(_, s)| s.clone());
        let layer = Layer::new(sub.as_ref().unwrap_or(&matches));
        let (args, _) = args.layered(&layer).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.front.query_memory_limit, Some(64 << 20));
    }
}
