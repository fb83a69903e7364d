//! `armorlake tail`: prints the rows of a query as new ones arrive, through a query node's
//! PostgreSQL front end, until Ctrl-C.
//!
//! The query must return the event `timestamp` column. Every `--interval` the query runs
//! again, narrowed to rows later than the latest printed:
//! `SELECT t.*, CAST(t."timestamp" AS BIGINT) FROM (<query>) AS t WHERE t."timestamp" >
//! to_timestamp_micros(<latest>) ORDER BY t."timestamp"`. A row arriving later than rows with
//! a newer timestamp (a KubeArmor node whose clock is behind) is not printed.

use std::io::Write;
use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use tokio_util::sync::CancellationToken;

/// The column tail adds to learn each row's time; not printed.
const MICROS: &str = "armorlake_tail_micros";

/// What `armorlake tail` does.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The query: a SELECT over the events that returns their `timestamp` column.
    #[arg(long)]
    query: String,
    /// A PostgreSQL connection string (`postgresql://user@host:port/db` or `host=… port=…`);
    /// overrides --host, --port, --user and --dbname.
    #[arg(long)]
    url: Option<String>,
    /// The query node's host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The query node's PostgreSQL port.
    #[arg(long, default_value_t = 5433)]
    port: u16,
    /// User name.
    #[arg(long, default_value = "armorlake")]
    user: String,
    /// Database.
    #[arg(long, default_value = "kubearmor")]
    dbname: String,
    /// Password (when the query node asks for one).
    #[arg(long, env = "PGPASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// How often to look for new rows.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
}

async fn connect(args: &TailArgs) -> Result<Client, String> {
    let config: tokio_postgres::Config = match &args.url {
        Some(url) => url
            .parse()
            .map_err(|e| format!("invalid connection string: {e}"))?,
        None => {
            let mut c = tokio_postgres::Config::new();
            c.host(&args.host)
                .port(args.port)
                .user(&args.user)
                .dbname(&args.dbname);
            if let Some(p) = &args.password {
                c.password(p);
            }
            c
        }
    };
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| format!("connecting to the query node: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "tail connection ended");
        }
    });
    Ok(client)
}

fn error(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Runs `armorlake tail` until `shutdown`.
pub async fn tail(args: TailArgs, shutdown: CancellationToken) -> Result<(), String> {
    let client = connect(&args).await?;
    let query = args.query.trim().trim_end_matches(';');
    let start = format!("SELECT CAST(max(t.\"timestamp\") AS BIGINT) FROM ({query}) AS t");
    let mut latest = client
        .simple_query(&start)
        .await
        .map_err(error)?
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).and_then(|v| v.parse::<i64>().ok())),
            _ => None,
        })
        .flatten()
        .unwrap_or(0);
    eprintln!("armorlake tail: following {query} (Ctrl-C stops)");
    let mut header = false;
    let mut tick = tokio::time::interval(args.interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let poll = format!(
            "SELECT t.*, CAST(t.\"timestamp\" AS BIGINT) AS {MICROS} FROM ({query}) AS t \
             WHERE t.\"timestamp\" > to_timestamp_micros({latest}) ORDER BY t.\"timestamp\""
        );
        let messages = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = client.simple_query(&poll) => m.map_err(error)?,
        };
        match print_rows(&messages, &mut header, &mut latest) {
            Ok(()) => {}
            // Whoever read our output has gone (`armorlake tail … | head`): done.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(format!("writing rows: {e}")),
        }
    }
}

/// Prints the rows of one poll (the header before the first row ever), and moves `latest`
/// to the newest timestamp printed.
fn print_rows(
    messages: &[SimpleQueryMessage],
    header: &mut bool,
    latest: &mut i64,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for message in messages {
        let SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        let shown = row.len().saturating_sub(1);
        if !*header {
            let names: Vec<&str> = row.columns()[..shown].iter().map(|c| c.name()).collect();
            writeln!(out, "{}", names.join(" | "))?;
            *header = true;
        }
        let values: Vec<&str> = (0..shown).map(|i| row.get(i).unwrap_or("")).collect();
        writeln!(out, "{}", values.join(" | "))?;
        if let Some(micros) = row.get(shown).and_then(|v| v.parse::<i64>().ok()) {
            *latest = (*latest).max(micros);
        }
    }
    out.flush()
}
