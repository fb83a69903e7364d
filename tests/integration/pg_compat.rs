//! What real clients send and need back, over tokio-postgres against `armorlake up`:
//! Npgsql 4.0.17's type-loading batch and `DISCARD ALL`, Grafana's table and column
//! pickers and a time-series query with its macros expanded, per-connection settings,
//! PostgreSQL's column names and types and its information_schema, and psql's COPY. The client SQL is in tests/sql/, exactly as the
//! clients send it.

use std::time::{Duration, SystemTime};

use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::support::{Up, eventually, query_i64, start_up};

/// A client SQL file from tests/sql/.
fn client_sql(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/sql")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn connect(port: u16) -> Client {
    let conninfo = format!("host=127.0.0.1 port={port} user=armorlake dbname=kubearmor");
    let (client, connection) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// One result of a simple query: column names and rows of text.
#[derive(Debug, Default)]
struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    fn column(&self, name: &str) -> Vec<Option<&str>> {
        let i = self
            .columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns));
        self.rows.iter().map(|r| r[i].as_deref()).collect()
    }
}

/// Runs `sql` with the simple protocol; one [`Rows`] per statement that returns rows.
async fn simple(client: &Client, sql: &str) -> Vec<Rows> {
    let mut results = Vec::new();
    let mut current: Option<Rows> = None;
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}\nfailed: {e:?}"));
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(columns) => {
                current = Some(Rows {
                    columns: columns.iter().map(|c| c.name().to_string()).collect(),
                    rows: Vec::new(),
                });
            }
            SimpleQueryMessage::Row(row) => {
                let r = current.get_or_insert_with(Rows::default);
                r.rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                );
            }
            SimpleQueryMessage::CommandComplete(_) => results.extend(current.take()),
            _ => {}
        }
    }
    results
}

/// The one value of a one-row, one-column simple query.
async fn value(client: &Client, sql: &str) -> String {
    let results = simple(client, sql).await;
    results[0].rows[0][0].clone().unwrap_or_default()
}

fn up_with_alerts(dir: &std::path::Path) -> Up {
    let up = start_up(dir, &[], &["--simulate", "2000"]);
    eventually(Duration::from_secs(30), "rows in alerts", || {
        (query_i64(up.pg_port, "SELECT count(*) FROM alerts") > 300).then_some(())
    });
    up
}

#[test]
fn npgsql_type_loading_batch_and_discard_all() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = connect(up.pg_port).await;
        // Npgsql sends both statements in one simple query.
        let results = simple(&client, &client_sql("npgsql-4.0.17-types.sql")).await;
        assert_eq!(results.len(), 2, "two result sets: {results:?}");
        let types = &results[0];
        assert_eq!(
            types.columns,
            [
                "nspname",
                "typname",
                "oid",
                "typrelid",
                "typbasetype",
                "type",
                "elemoid",
                "ord"
            ]
        );
        let row = |name: &str| {
            types
                .rows
                .iter()
                .find(|r| r[1].as_deref() == Some(name))
                .unwrap_or_else(|| panic!("Npgsql would not know {name}: {:?}", types.rows))
        };
        for (name, oid) in [
            ("text", "25"),
            ("int4", "23"),
            ("int8", "20"),
            ("float8", "701"),
            ("bool", "16"),
            ("timestamptz", "1184"),
            ("timestamp", "1114"),
            ("varchar", "1043"),
            ("jsonb", "3802"),
        ] {
            let r = row(name);
            assert_eq!(r[0].as_deref(), Some("pg_catalog"), "{name}: {r:?}");
            assert_eq!(r[2].as_deref(), Some(oid), "{name}: {r:?}");
            assert_eq!(r[5].as_deref(), Some("b"), "{name} is a base type: {r:?}");
        }
        // Arrays come after their elements, marked 'a', pointing at them.
        let text_array = row("_text");
        assert_eq!(
            (
                text_array[2].as_deref(),
                text_array[5].as_deref(),
                text_array[6].as_deref()
            ),
            (Some("1009"), Some("a"), Some("25")),
        );
        let ords: Vec<i32> = types
            .column("ord")
            .iter()
            .map(|o| o.unwrap().parse().unwrap())
            .collect();
        assert!(
            ords.windows(2).all(|w| w[0] <= w[1]),
            "ORDER BY ord: {ords:?}"
        );
        // No free-standing composite types.
        assert_eq!(
            results[1].columns,
            ["nspname", "typname", "attname", "atttypid"]
        );

        // Every pooled close: DISCARD ALL, in both protocols, and the session goes on.
        client.batch_execute("DISCARD ALL").await.unwrap();
        client.execute("DISCARD ALL", &[]).await.unwrap();
        assert_eq!(value(&client, "SELECT 1").await, "1");
    });
}

/// From the first alert's second to one past the last's, as the RFC 3339 literals Grafana
/// sends.
async fn alert_range(client: &Client) -> (String, String) {
    let r = &simple(
        client,
        "SELECT CAST(floor(extract(epoch FROM min(timestamp))) AS bigint), \
                CAST(floor(extract(epoch FROM max(timestamp))) AS bigint) + 1 \
         FROM alerts",
    )
    .await[0];
    let rfc3339 = |cell: &Option<String>| {
        let secs: i64 = cell.as_deref().unwrap().parse().unwrap();
        chrono::DateTime::from_timestamp(secs, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    (rfc3339(&r.rows[0][0]), rfc3339(&r.rows[0][1]))
}

#[test]
fn grafana_column_picker_and_time_series() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_with_alerts(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = connect(up.pg_port).await;

        // Table picker: the tables on the search path (public) first and unqualified,
        // then the others with their schema; no catalog schemas. Both protocols.
        let tables_sql = client_sql("grafana-table-picker.sql");
        let tables = &simple(&client, &tables_sql).await[0];
        assert_eq!(tables.columns, ["table"]);
        let names: Vec<&str> = tables.column("table").into_iter().flatten().collect();
        assert_eq!(names[..3], ["alerts", "logs", "messages"], "{names:?}");
        assert!(names.contains(&"armorlake.rule_firings"), "{names:?}");
        assert!(
            names[3..].iter().all(|n| n.starts_with("armorlake.")),
            "{names:?}"
        );
        let extended: Vec<String> = client
            .query(tables_sql.as_str(), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(extended, names);

        // Column picker for alerts: PostgreSQL's type names.
        let columns_sql = client_sql("grafana-column-picker.sql").replace("TABLE", "alerts");
        let columns = &simple(&client, &columns_sql).await[0];
        assert_eq!(columns.columns, ["column", "type"]);
        let type_of = |name: &str| {
            let i = columns
                .column("column")
                .iter()
                .position(|c| *c == Some(name));
            i.and_then(|i| columns.column("type")[i])
        };
        assert_eq!(type_of("timestamp"), Some("timestamp with time zone"));
        assert_eq!(type_of("pod_name"), Some("text"));
        assert_eq!(type_of("severity"), Some("integer"));
        assert_eq!(type_of("atags"), Some("ARRAY"));
        // Every column of alerts, by its name.
        let mut names: Vec<&str> = columns.column("column").into_iter().flatten().collect();
        names.sort_unstable();
        let schema = armorlake_common::Table::Alerts.schema();
        let mut expected: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert_eq!(
            client.query(columns_sql.as_str(), &[]).await.unwrap().len(),
            columns.rows.len()
        );

        // A time series: $__timeGroupAlias(timestamp,'5m') and $__timeFilter(timestamp),
        // expanded as Grafana expands them.
        let (from, to) = alert_range(&client).await;
        let series = format!(
            "SELECT floor(extract(epoch from \"timestamp\")/300)*300 AS \"time\", \
                    count(*) AS \"alerts\" \
             FROM alerts \
             WHERE \"timestamp\" BETWEEN '{from}' AND '{to}' \
             GROUP BY 1 ORDER BY 1"
        );
        let total: i64 = value(
            &client,
            &format!(
                "SELECT count(*) FROM alerts WHERE \"timestamp\" >= '{from}' \
                 AND \"timestamp\" <= '{to}'"
            ),
        )
        .await
        .parse()
        .unwrap();
        let statement = client.prepare(&series).await.unwrap();
        let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
        assert_eq!(names, ["time", "alerts"]);
        assert!(
            [Type::FLOAT8, Type::NUMERIC, Type::INT8].contains(statement.columns()[0].type_()),
            "time as epoch numbers: {:?}",
            statement.columns()[0].type_()
        );
        assert_eq!(statement.columns()[1].type_(), &Type::INT8);
        let rows = client.query(&statement, &[]).await.unwrap();
        assert!(!rows.is_empty());
        let counted: i64 = rows.iter().map(|r| r.get::<_, i64>(1)).sum();
        // Rows only arrive, so the series counts at least what was counted before.
        assert!(counted >= total, "{counted} < {total}");
        let simple_rows = &simple(&client, &series).await[0];
        assert_eq!(simple_rows.columns, ["time", "alerts"]);
        for r in &simple_rows.rows {
            let t: f64 = r[0].as_deref().unwrap().parse().unwrap();
            assert_eq!(t % 300.0, 0.0, "buckets of 5 minutes: {r:?}");
        }

        // $__time(timestamp) with $__timeFilter: a timestamptz column named time.
        let raw = format!(
            "SELECT \"timestamp\" AS \"time\", pid AS \"value\" FROM alerts \
             WHERE \"timestamp\" BETWEEN '{from}' AND '{to}' ORDER BY 1 LIMIT 10"
        );
        let statement = client.prepare(&raw).await.unwrap();
        assert_eq!(statement.columns()[0].name(), "time");
        assert_eq!(statement.columns()[0].type_(), &Type::TIMESTAMPTZ);
        let rows = client.query(&statement, &[]).await.unwrap();
        let times: Vec<SystemTime> = rows.iter().map(|r| r.get(0)).collect();
        assert!(!times.is_empty() && times.windows(2).all(|w| w[0] <= w[1]));
    });
}

#[test]
fn a_statement_run_again_reads_new_rows_under_the_sessions_settings() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_with_alerts(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = connect(up.pg_port).await;
        let count = |sql: &'static str| {
            let a = &a;
            async move { value(a, sql).await.parse::<i64>().unwrap() }
        };
        // The second run on the connection comes from the plan the first kept: the rows
        // that arrive in between are read all the same. A function that is not immutable
        // is not folded into a kept plan: `now()` moves on with the rows.
        let sql = "SELECT count(*) FROM alerts WHERE severity IS NOT NULL";
        let future = "SELECT count(*) FROM alerts WHERE \"timestamp\" > now()";
        let first = count(sql).await;
        assert_eq!(count(future).await, 0);
        let then = value(&a, "SELECT now()").await;
        let since = format!("SELECT count(*) FROM alerts WHERE \"timestamp\" > '{then}'");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while count(sql).await <= first || value(&a, &since).await == "0" {
            assert!(
                std::time::Instant::now() < deadline,
                "no new rows after {then}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(count(future).await, 0);

        // What a kept plan folded in follows the session's settings.
        let sql = "SELECT count(*) FROM alerts WHERE 0.1 + 0.2 = 0.3";
        assert_eq!(count(sql).await, 0, "binary floating point");
        assert_eq!(count(sql).await, 0, "binary floating point");
        a.batch_execute("SET datafusion.sql_parser.parse_float_as_decimal = on")
            .await
            .unwrap();
        assert!(count(sql).await > 0, "decimals");
        assert_eq!(value(&a, "SHOW armorlake.reuse_plans").await, "true");
        a.batch_execute("SET armorlake.reuse_plans = off")
            .await
            .unwrap();
        assert_eq!(value(&a, "SHOW armorlake.reuse_plans").await, "false");
        assert!(count("SELECT count(*) FROM alerts WHERE severity IS NOT NULL").await > first);
    });
}

#[test]
fn settings_belong_to_their_session() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = connect(up.pg_port).await;
        let b = connect(up.pg_port).await;
        a.batch_execute(
            "SET statement_timeout = '2s'; \
             SET armorlake.allow_partial_results = on; \
             SET DateStyle = 'SQL, DMY'; \
             SET search_path TO armorlake, public; \
             SET application_name = 'dashboard'",
        )
        .await
        .unwrap();

        for (sql, in_a, in_b) in [
            ("SHOW statement_timeout", "2s", "0"),
            ("SHOW armorlake.allow_partial_results", "true", "false"),
            ("SHOW DateStyle", "SQL, DMY", "ISO, MDY"),
            ("SHOW search_path", "armorlake, public", "\"$user\", public"),
            (
                "SELECT current_setting('application_name')",
                "dashboard",
                "",
            ),
            (
                "SELECT current_setting('search_path')",
                "armorlake, public",
                "\"$user\", public",
            ),
            ("SELECT current_setting('statement_timeout')", "2s", "0"),
        ] {
            assert_eq!(value(&a, sql).await, in_a, "{sql} where it was set");
            assert_eq!(value(&b, sql).await, in_b, "{sql} in the other session");
        }
        // The column of SHOW is the setting's name, as in PostgreSQL.
        assert_eq!(simple(&b, "SHOW datestyle").await[0].columns, ["DateStyle"]);
        // The timeout a session set stops its own statements only.
        let e = a
            .simple_query(
                "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b",
            )
            .await
            .unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e:?}");
        assert_eq!(
            value(&b, "SELECT count(*) FROM generate_series(1, 1000)").await,
            "1000"
        );

        // RESET one, then all; DISCARD ALL resets too.
        a.batch_execute("RESET DateStyle").await.unwrap();
        assert_eq!(value(&a, "SHOW DateStyle").await, "ISO, MDY");
        a.batch_execute("RESET ALL").await.unwrap();
        assert_eq!(value(&a, "SHOW statement_timeout").await, "0");
        assert_eq!(
            value(&a, "SHOW armorlake.allow_partial_results").await,
            "false"
        );
        a.batch_execute("SET statement_timeout = 100; DISCARD ALL")
            .await
            .unwrap();
        assert_eq!(value(&a, "SHOW statement_timeout").await, "0");

        // Bad names and values: PostgreSQL's errors, and the session goes on.
        for (sql, code) in [
            ("SHOW no_such_setting", "42704"),
            ("SELECT current_setting('no_such_setting')", "42704"),
            ("SET statement_timeout = 'soon'", "22023"),
            ("SET DateStyle = 'klingon'", "22023"),
            ("SET TimeZone = 'Mars/Olympus'", "22023"),
            ("SET server_version = '99'", "55P02"),
            ("SET armorlake.allow_partial_results = maybe", "22023"),
        ] {
            let e = a.simple_query(sql).await.unwrap_err();
            assert_eq!(e.code().map(|c| c.code()), Some(code), "{sql}: {e:?}");
        }
        assert_eq!(
            value(
                &a,
                "SELECT current_setting('no_such_setting', true) IS NULL"
            )
            .await,
            "t"
        );
        assert_eq!(value(&a, "SELECT 1").await, "1");
    });
}

#[test]
fn results_look_like_postgres_results() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = connect(up.pg_port).await;
        let names = &simple(
            &client,
            "SELECT 1, count(*), now(), '7'::int, 1 AS one FROM generate_series(1, 3)",
        )
        .await[0]
            .columns;
        assert_eq!(names, &["?column?", "count", "now", "int4", "one"]);

        for sql in ["SELECT now()", "SELECT current_timestamp"] {
            let statement = client.prepare(sql).await.unwrap();
            assert_eq!(statement.columns()[0].type_(), &Type::TIMESTAMPTZ, "{sql}");
        }
        assert_eq!(
            client.prepare("SELECT 1").await.unwrap().columns()[0].name(),
            "?column?"
        );

        // Fractional seconds only when there are some, no trailing zeros, a +00 offset.
        for (literal, text) in [
            ("2026-11-23T03:00:01.500Z", "2026-11-23 03:00:01.5+00"),
            ("2026-11-23T03:00:01Z", "2026-11-23 03:00:01+00"),
            (
                "2026-11-23T03:00:01.123456Z",
                "2026-11-23 03:00:01.123456+00",
            ),
        ] {
            let sql = format!("SELECT CAST('{literal}' AS timestamptz)");
            assert_eq!(value(&client, &sql).await, text, "{sql}");
        }

        // A `*` keeps its columns' names and the items around it get PostgreSQL's.
        let star = &simple(&client, "SELECT 1, *, 2 AS two FROM (SELECT 3 AS a) t").await[0];
        assert_eq!(star.columns, ["?column?", "a", "two"]);

        // information_schema as PostgreSQL has it.
        let columns = &simple(
            &client,
            "SELECT column_name, ordinal_position, data_type, udt_name, is_nullable, \
                    numeric_precision, datetime_precision \
             FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = 'alerts' \
             ORDER BY ordinal_position",
        )
        .await[0];
        let schema = armorlake_common::Table::Alerts.schema();
        assert_eq!(columns.rows.len(), schema.fields().len());
        let row = |name: &str| {
            columns
                .rows
                .iter()
                .find(|r| r[0].as_deref() == Some(name))
                .unwrap_or_else(|| panic!("no column {name}"))
                .iter()
                .map(|v| v.as_deref())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            row("timestamp"),
            [
                Some("timestamp"),
                Some("1"),
                Some("timestamp with time zone"),
                Some("timestamptz"),
                Some("NO"),
                None,
                Some("6")
            ]
        );
        assert_eq!(
            row("severity")[2..6],
            [Some("integer"), Some("int4"), Some("YES"), Some("32")]
        );
        assert_eq!(row("atags")[2..4], [Some("ARRAY"), Some("_text")]);
        let types = &simple(
            &client,
            "SELECT table_schema, table_name, table_type FROM information_schema.tables \
             WHERE table_name IN ('alerts', 'nodes', 'pg_class') ORDER BY 1, 2",
        )
        .await[0];
        let types: Vec<Vec<Option<&str>>> = types
            .rows
            .iter()
            .map(|r| r.iter().map(|v| v.as_deref()).collect())
            .collect();
        assert!(
            types.contains(&vec![Some("public"), Some("alerts"), Some("BASE TABLE")]),
            "{types:?}"
        );
        assert!(
            types.contains(&vec![Some("armorlake"), Some("nodes"), Some("VIEW")]),
            "{types:?}"
        );
        // PowerBI's constraint views exist, empty: armorlake's tables have no keys.
        for view in [
            "table_constraints",
            "key_column_usage",
            "referential_constraints",
        ] {
            let sql = format!("SELECT count(*) FROM information_schema.{view}");
            assert_eq!(value(&client, &sql).await, "0", "{sql}");
        }
        let schemata = &simple(
            &client,
            "SELECT schema_name FROM information_schema.schemata ORDER BY 1",
        )
        .await[0];
        let schemata: Vec<_> = schemata
            .column("schema_name")
            .into_iter()
            .flatten()
            .collect();
        for schema in ["armorlake", "information_schema", "pg_catalog", "public"] {
            assert!(schemata.contains(&schema), "{schemata:?}");
        }
    });
}

/// psql's `\copy … to stdout` and `COPY … TO STDOUT`, in text and CSV; COPY to a file on
/// the server is refused.
#[test]
fn copy_to_stdout_with_psql() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_with_alerts(dir.path());
    let run = |args: &[&str]| {
        let out = crate::support::psql(up.pg_port, args);
        assert!(
            out.status.success(),
            "psql {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run(&[
        "-c",
        "COPY (SELECT i, 'a\tb' || i AS s, NULL AS n FROM generate_series(1, 3) AS t(i)) \
         TO STDOUT",
    ]);
    assert_eq!(text, "1\ta\\tb1\t\\N\n2\ta\\tb2\t\\N\n3\ta\\tb3\t\\N\n");
    let csv = run(&[
        "-c",
        "COPY (SELECT i AS \"n\", 'x,' || i AS s FROM generate_series(1, 2) AS t(i)) \
         TO STDOUT WITH (FORMAT csv, HEADER true)",
    ]);
    assert_eq!(csv, "n,s\n1,\"x,1\"\n2,\"x,2\"\n");

    // A table's rows, with psql's \copy, are the rows a query gives.
    // Up to a second already stored, so both see the same rows.
    let cutoff = crate::support::query(
        up.pg_port,
        "SELECT CAST(floor(extract(epoch FROM max(\"timestamp\"))) AS bigint) FROM alerts",
    )
    .remove(0);
    let filter = format!(
        "WHERE \"timestamp\" < to_timestamp({cutoff}) ORDER BY \"timestamp\", pod_name, severity"
    );
    let copied = run(&[
        "-c",
        &format!(
            "\\copy (SELECT \"timestamp\", pod_name, severity FROM alerts {filter}) to stdout"
        ),
    ]);
    let queried = run(&[
        "-A",
        "-t",
        "-F",
        "\t",
        "-P",
        "null=\\N",
        "-c",
        &format!("SELECT \"timestamp\", pod_name, severity FROM alerts {filter}"),
    ]);
    let queried: Vec<&str> = queried.lines().collect();
    let copied: Vec<&str> = copied.lines().collect();
    assert!(copied.len() > 100, "{} rows", copied.len());
    assert_eq!(copied, queried);

    // COPY to a file would write on the server: refused, nothing written.
    let target = dir.path().join("stolen.csv");
    let out = crate::support::psql(
        up.pg_port,
        &["-c", &format!("COPY alerts TO '{}'", target.display())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("42501"),
        "{stderr}"
    );
    assert!(!target.exists());
    let out = crate::support::psql(up.pg_port, &["-c", "COPY alerts TO STDOUT (FORMAT binary)"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0A000"));
    // The session goes on.
    assert_eq!(crate::support::query(up.pg_port, "SELECT 1"), ["1"]);
}
