//! Real PostgreSQL clients against `armorlake up`: psql's meta-commands, read-only
//! errors, statement_timeout and Ctrl-C, and psycopg 3 (libpq) from Python.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{Up, eventually, output_text, psql, psql_command, query_i64, start_up};

/// A statement that runs for minutes unless it is stopped.
const ENDLESS: &str =
    "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b";

/// `up` with the built-in simulator, once alerts and logs have rows.
fn up_with_events(dir: &std::path::Path) -> Up {
    let up = start_up(dir, &[], &["--simulate", "2000"]);
    for table in ["alerts", "logs"] {
        eventually(Duration::from_secs(30), &format!("rows in {table}"), || {
            (query_i64(up.pg_port, &format!("SELECT count(*) FROM {table}")) > 300).then_some(())
        });
    }
    up
}

/// Runs psql and returns (stdout, stderr), failing the test if psql fails.
fn psql_ok(port: u16, args: &[&str]) -> String {
    let out = psql(port, args);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "psql {args:?} failed: {stderr}");
    assert!(!stderr.contains("ERROR"), "psql {args:?}: {stderr}");
    stdout
}

/// The rows of a psql table, as trimmed cells.
fn cells(listing: &str) -> Vec<Vec<String>> {
    listing
        .lines()
        .filter(|l| l.contains('|') && !l.contains("--+--"))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

#[test]
fn psql_meta_commands_describe_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[], &[]);
    let port = up.pg_port;

    let databases = cells(&psql_ok(port, &["-c", "\\l"]));
    assert!(
        databases.iter().any(|r| r[0] == "kubearmor"),
        "\\l: {databases:?}"
    );

    let tables = cells(&psql_ok(port, &["-c", "\\dt"]));
    for table in ["alerts", "logs", "messages"] {
        assert!(
            tables
                .iter()
                .any(|r| r[0] == "public" && r[1] == table && r[2] == "table"),
            "\\dt lacks {table}: {tables:?}"
        );
    }

    let columns = cells(&psql_ok(port, &["-c", "\\d alerts"]));
    let type_of = |name: &str| {
        columns
            .iter()
            .find(|r| r[0] == name)
            .map(|r| r[1].clone())
            .unwrap_or_else(|| panic!("\\d alerts has no column {name}: {columns:?}"))
    };
    assert_eq!(type_of("timestamp"), "timestamp with time zone");
    assert_eq!(type_of("pod_name"), "text");
    assert_eq!(type_of("pid"), "integer");
    assert_eq!(type_of("atags"), "text[]");
    assert_eq!(type_of("endpoint"), "text");

    let schemas = cells(&psql_ok(port, &["-c", "\\dn"]));
    for schema in ["public", "armorlake"] {
        assert!(
            schemas.iter().any(|r| r[0] == schema),
            "\\dn lacks {schema}: {schemas:?}"
        );
    }

    // armorlake has no user-defined functions: an empty list, not an error.
    let functions = psql_ok(port, &["-c", "\\df"]);
    assert!(functions.contains("List of functions"), "{functions}");
    assert!(functions.contains("(0 rows)"), "{functions}");
}

#[test]
fn ddl_and_dml_are_refused_as_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[], &[]);
    let port = up.pg_port;
    let statements = [
        ("CREATE TABLE t (a int)", "CREATE TABLE"),
        ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
        ("INSERT INTO alerts (pid) VALUES (1)", "INSERT"),
        ("UPDATE alerts SET pid = 1", "UPDATE"),
        ("DELETE FROM alerts", "DELETE"),
        ("DROP TABLE alerts", "DROP TABLE"),
        ("ALTER TABLE alerts ADD COLUMN x int", "ALTER TABLE"),
        ("TRUNCATE alerts", "TRUNCATE TABLE"),
        ("COPY alerts FROM STDIN", "COPY FROM"),
    ];
    for (sql, command) in statements {
        let out = psql(port, &["-c", sql]);
        let (_, stderr) = output_text(&out);
        assert!(!out.status.success(), "{sql} succeeded");
        assert!(
            stderr.contains(&format!(
                "25006: cannot execute {command} in a read-only transaction"
            )),
            "{sql}: {stderr}"
        );
    }
    // Nothing changed: the tables are all still there, and nothing new appeared.
    let tables = query_i64(
        port,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    );
    assert_eq!(tables, 3);
}

#[test]
fn syntax_errors_point_at_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[], &[]);
    let out = psql(
        up.pg_port,
        &["-c", "SELECT pod_name FROM alerts WHER pid = 1"],
    );
    let (_, stderr) = output_text(&out);
    assert!(
        stderr.contains("42601: syntax error at or near \"pid\""),
        "{stderr}"
    );
    // psql draws the caret from the position field: under "pid" (column 34).
    let caret = stderr
        .lines()
        .find(|l| l.trim() == "^")
        .unwrap_or_else(|| panic!("no caret: {stderr}"));
    let line = stderr.lines().find(|l| l.starts_with("LINE 1: ")).unwrap();
    assert_eq!(&line[caret.len() - 1..caret.len() + 2], "pid", "{stderr}");
}

#[test]
fn statement_timeout_stops_a_long_statement_with_57014() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[], &[]);
    let port = up.pg_port;

    // SET in the session.
    let started = Instant::now();
    let out = psql(
        port,
        &["-c", "SET statement_timeout = '100ms'", "-c", ENDLESS],
    );
    let (_, stderr) = output_text(&out);
    assert!(
        stderr.contains("57014: canceling statement due to statement timeout"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    // As a startup option (PGOPTIONS), and the session works on afterwards.
    let out = psql_command(port)
        .args([
            "-c",
            "SHOW statement_timeout",
            "-c",
            ENDLESS,
            "-c",
            "SELECT 'after'",
        ])
        .env("PGOPTIONS", "-c statement_timeout=150ms")
        .output()
        .unwrap();
    let (stdout, stderr) = output_text(&out);
    assert!(stdout.contains("150ms"), "{stdout}");
    assert!(stderr.contains("57014"), "{stderr}");
    assert!(stdout.contains("after"), "{stdout}");

    // DISCARD ALL succeeds (Npgsql sends it on every pooled close) and resets the setting to
    // its value at startup, as PostgreSQL does.
    let out = Command::new("psql")
        .args(["-X", "-At", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "armorlake", "-d", "kubearmor"])
        .args(["-c", "SET statement_timeout = '1min'", "-c", "DISCARD ALL"])
        .args(["-c", "SHOW statement_timeout"])
        .env("PGOPTIONS", "-c statement_timeout=150ms")
        .output()
        .unwrap();
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["SET", "DISCARD ALL", "150ms"],
        "{stderr}"
    );
}

#[test]
fn ctrl_c_in_psql_cancels_the_running_query() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[], &[]);
    // psql -e echoes the query just before sending it: that line says the query is on
    // its way, and only then is Ctrl-C (SIGINT) a cancel rather than an exit.
    let mut child = psql_command(up.pg_port)
        .args(["-e", "-c", ENDLESS])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let echoed = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(echoed.contains("generate_series"), "{echoed}");

    // The cancel request may overtake the query on its way to the server, in which case
    // it finds nothing to cancel (as in PostgreSQL): press Ctrl-C again until psql is done.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let kill = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        std::thread::sleep(Duration::from_millis(300));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the query was never cancelled");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("57014: canceling statement due to user request"),
        "{stderr}"
    );
    // The server is fine afterwards.
    assert_eq!(query_i64(up.pg_port, "SELECT 1"), 1);
}

/// The venv's Python, made by `.ci/deps.sh` (`make deps`); `ARMORLAKE_PYTHON` overrides.
pub(crate) fn python() -> PathBuf {
    let path = std::env::var_os("ARMORLAKE_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} does not exist: run `make deps` (or .ci/deps.sh) to create the Python venv",
        path.display()
    );
    path
}

/// Runs `tests/python/psycopg_client.py CHECK --port PORT ARGS…` and fails with its output
/// unless it succeeds.
fn psycopg(check: &str, port: u16, args: &[&str]) {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/psycopg_client.py");
    let out = Command::new(python())
        .arg(script)
        .args([check, "--port", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = output_text(&out);
    assert!(
        out.status.success() && stdout.contains(&format!("ok {check}")),
        "psycopg {check} {args:?} failed:\n{stdout}\n{stderr}"
    );
}

#[test]
fn psycopg_simple_extended_binary_and_server_side_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_with_events(dir.path());
    for check in ["queries", "binary", "cursors"] {
        psycopg(check, up.pg_port, &[]);
    }
}

#[test]
fn psycopg_cancel_and_statement_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[], &[]);
    psycopg("cancel", up.pg_port, &[]);
    psycopg("timeout", up.pg_port, &[]);
}

#[test]
fn psycopg_scram_success_and_failure() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("armorlake.toml");
    std::fs::write(
        &config,
        "[[users]]\nname = \"grafana\"\npassword = \"s3cret\"\n",
    )
    .unwrap();
    let up = start_up(
        &dir.path().join("data"),
        &[],
        &["--config", config.to_str().unwrap()],
    );
    let port = up.pg_port;
    psycopg("auth", port, &["--user", "grafana", "--password", "s3cret"]);
    for (user, password) in [("grafana", "wrong"), ("nobody", "s3cret")] {
        psycopg(
            "auth",
            port,
            &["--user", user, "--password", password, "--expect", "denied"],
        );
    }
}
