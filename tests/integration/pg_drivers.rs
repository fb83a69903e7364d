//! The drivers BI and database tools use, against `armorlake up`: pgjdbc (DBeaver and other
//! JDBC tools) from a small Java program, tests/java/JdbcClient.java, and psqlODBC (PowerBI,
//! Excel) through pyodbc, tests/python/odbc_client.py. Both are installed by .ci/deps.sh.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use armorlake_common::Table;

use crate::support::{Up, eventually, output_text, query, query_i64, start_up};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// `up` with the simulator, once alerts has rows.
fn up_with_alerts(dir: &std::path::Path) -> Up {
    let up = start_up(dir, &[], &["--simulate", "2000"]);
    eventually(Duration::from_secs(30), "rows in alerts", || {
        (query_i64(up.pg_port, "SELECT count(*) FROM alerts") > 300).then_some(())
    });
    up
}

/// What the drivers are asked about: the namespace with the most alerts, and a time (RFC
/// 3339) one second after the first alert.
fn namespace_and_since(port: u16) -> (String, String) {
    let namespace = query(
        port,
        "SELECT namespace_name FROM alerts GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
    )
    .remove(0);
    let first = query_i64(
        port,
        "SELECT CAST(floor(extract(epoch FROM min(timestamp))) AS bigint) FROM alerts",
    );
    let since = chrono::DateTime::from_timestamp(first + 1, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    (namespace, since)
}

/// The alerts of `namespace` at or after `since`, counted by psql.
fn count_since(port: u16, namespace: &str, since: &str) -> i64 {
    query_i64(
        port,
        &format!(
            "SELECT count(*) FROM alerts WHERE namespace_name = '{namespace}' \
             AND timestamp >= '{since}'"
        ),
    )
}

/// The tab-separated lines a client printed that start with `kind`, without it.
fn lines<'a>(stdout: &'a str, kind: &str) -> Vec<Vec<&'a str>> {
    stdout
        .lines()
        .filter_map(|l| {
            l.split('\t')
                .collect::<Vec<_>>()
                .split_first()
                .map(|(k, rest)| (*k, rest.to_vec()))
        })
        .filter(|(k, _)| *k == kind)
        .map(|(_, rest)| rest)
        .collect()
}

/// The venv's Python (see pg_clients.rs).
fn python() -> PathBuf {
    let path = std::env::var_os("ARMORLAKE_PYTHON")
        .map_or_else(|| repo(".venv/bin/python"), PathBuf::from);
    assert!(
        path.exists(),
        "{} does not exist: run `make deps` (or .ci/deps.sh) to create the Python venv",
        path.display()
    );
    path
}

/// pgjdbc's jar: Debian's, or `ARMORLAKE_PGJDBC`.
fn pgjdbc() -> PathBuf {
    let jar = std::env::var_os("ARMORLAKE_PGJDBC").map_or_else(
        || PathBuf::from("/usr/share/java/postgresql.jar"),
        PathBuf::from,
    );
    assert!(
        jar.exists(),
        "{} does not exist: run `make deps` (installs libpostgresql-jdbc-java)",
        jar.display()
    );
    jar
}

#[test]
fn pgjdbc_metadata_and_prepared_statements() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_with_alerts(dir.path());
    let port = up.pg_port;
    let (namespace, since) = namespace_and_since(port);

    let classes = dir.path().join("classes");
    let jar = pgjdbc();
    let javac = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg("-cp")
        .arg(&jar)
        .arg(repo("tests/java/JdbcClient.java"))
        .output()
        .expect("javac (a JDK; `make deps` installs one)");
    assert!(javac.status.success(), "javac: {:?}", output_text(&javac));

    let before = count_since(port, &namespace, &since);
    let classpath = format!("{}:{}", jar.display(), classes.display());
    let out = Command::new("java")
        .args([
            "-cp",
            &classpath,
            "JdbcClient",
            &port.to_string(),
            &namespace,
            &since,
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = output_text(&out);
    assert!(
        out.status.success() && stdout.lines().last() == Some("ok"),
        "JdbcClient failed:\n{stdout}\n{stderr}"
    );
    let after = count_since(port, &namespace, &since);

    let product = &lines(&stdout, "product")[0];
    assert_eq!(product[0], "PostgreSQL", "{product:?}");

    // getTables: the event tables in public, the system views in armorlake.
    let tables = lines(&stdout, "table");
    for (schema, table, kind) in [
        ("public", "alerts", "TABLE"),
        ("public", "logs", "TABLE"),
        ("public", "messages", "TABLE"),
        ("armorlake", "partitions", "VIEW"),
    ] {
        assert!(
            tables
                .iter()
                .any(|t| t[0] == schema && t[1] == table && t[2] == kind),
            "getTables has no {kind} {schema}.{table}: {tables:?}"
        );
    }

    // getColumns: every column of alerts, in order, with PostgreSQL's types.
    let columns = lines(&stdout, "column");
    let schema = Table::Alerts.schema();
    assert_eq!(columns.len(), schema.fields().len(), "{columns:?}");
    for (i, (c, field)) in columns.iter().zip(schema.fields()).enumerate() {
        assert_eq!(c[1], (i + 1).to_string(), "ordinal of {c:?}");
        assert_eq!(c[2], field.name(), "{c:?}");
    }
    let column = |name: &str| columns.iter().find(|c| c[2] == name).unwrap().clone();
    // (type name, java.sql.Types, nullable)
    assert_eq!(column("timestamp")[3..], ["timestamptz", "93", "NO"]);
    assert_eq!(column("pod_name")[3..], ["text", "12", "YES"]);
    assert_eq!(column("pid")[3..], ["int4", "4", "YES"]);
    assert_eq!(column("atags")[3..], ["_text", "2003", "YES"]);
    assert_eq!(column("endpoint")[3..], ["text", "12", "NO"]);

    // The prepared statement with a text and a timestamptz parameter.
    let count: i64 = lines(&stdout, "count")[0][0].parse().unwrap();
    assert!(
        before <= count && count <= after && count > 0,
        "pgjdbc counted {count}, psql {before}..{after}"
    );
    let first = &lines(&stdout, "first")[0];
    let expected = query(
        port,
        &format!(
            "SELECT CAST(round(extract(epoch FROM timestamp) * 1000000) AS bigint), pod_name \
             FROM alerts WHERE namespace_name = '{namespace}' AND timestamp >= '{since}' \
             ORDER BY timestamp, pod_name LIMIT 1"
        ),
    );
    assert_eq!(first.join("|"), expected[0], "first alert");

    let settings = lines(&stdout, "setting");
    assert!(
        settings
            .iter()
            .any(|s| s[0] == "DateStyle" && s[1].starts_with("ISO"))
    );
    assert!(
        settings
            .iter()
            .any(|s| s[0] == "server_version_num" && s[1].parse::<u32>().unwrap() >= 120000)
    );
}

#[test]
fn psqlodbc_tables_columns_and_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_with_alerts(dir.path());
    let port = up.pg_port;
    let (namespace, since) = namespace_and_since(port);

    let before = count_since(port, &namespace, &since);
    let out = Command::new(python())
        .arg(repo("tests/python/odbc_client.py"))
        .args([
            "--port",
            &port.to_string(),
            "--namespace",
            &namespace,
            "--since",
            &since,
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = output_text(&out);
    assert!(
        out.status.success() && stdout.lines().last() == Some("ok"),
        "odbc_client.py failed:\n{stdout}\n{stderr}"
    );
    let after = count_since(port, &namespace, &since);

    // SQLTables
    let tables = lines(&stdout, "table");
    for table in ["alerts", "logs", "messages"] {
        assert!(
            tables
                .iter()
                .any(|t| t[0] == "public" && t[1] == table && t[2] == "TABLE"),
            "SQLTables has no public.{table}: {tables:?}"
        );
    }

    // SQLColumns
    let columns = lines(&stdout, "column");
    let names: Vec<&str> = columns.iter().map(|c| c[1]).collect();
    let schema = Table::Alerts.schema();
    let expected: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, expected);
    let type_of = |name: &str| columns.iter().find(|c| c[1] == name).unwrap()[2];
    assert_eq!(type_of("timestamp"), "timestamptz");
    assert_eq!(type_of("pod_name"), "text");
    assert_eq!(type_of("pid"), "int4");

    // The query with parameters.
    let count: i64 = lines(&stdout, "count")[0][0].parse().unwrap();
    assert!(
        before <= count && count <= after && count > 0,
        "psqlODBC counted {count}, psql {before}..{after}"
    );
}
