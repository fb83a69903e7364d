//! Operating armorlake: Prometheus metrics after ingest and queries, JSON logs carrying one
//! query id from the query node to the operator, the memory limit per statement (53200).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{
    Proc, armorlake, eventually, http_get, output_text, psql, query, query_i64, start_sim, start_up,
};

/// The samples of a Prometheus text exposition: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of every sample of `name` whose labels contain all of `labels` (`k="v"`).
fn sum(samples: &HashMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
            n == name && labels.iter().all(|l| rest.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

fn scrape(addr: &str) -> HashMap<String, f64> {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    samples(&body)
}

#[test]
fn metrics_show_ingest_storage_queries_and_connections() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(
        dir.path(),
        &[],
        &["--simulate", "2000", "--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = up.metrics.clone().expect("the metrics address");
    assert_eq!(http_get(&metrics, "/health"), (200, "ok\n".to_string()));
    assert_eq!(http_get(&metrics, "/nope").0, 404);

    // Ingest moves the per-stream counters, the WAL and, after a flush, Parquet.
    let ingested = eventually(Duration::from_secs(60), "ingest and a flush", || {
        let m = scrape(&metrics);
        let parquet = sum(&m, "armorlake_parquet_bytes_written_total", &[]);
        let flushes = sum(&m, "armorlake_flush_seconds_count", &[]);
        (parquet > 0.0 && flushes >= 1.0).then_some(m)
    });
    for stream in ["alerts", "logs", "messages"] {
        let label = format!("stream=\"{stream}\"");
        assert!(
            ingested
                .keys()
                .any(|k| k.starts_with("armorlake_events_received_total{") && k.contains(&label)),
            "no events series for {stream}"
        );
        assert!(
            ingested
                .keys()
                .any(|k| k.starts_with("armorlake_stream_gaps_total{") && k.contains(&label))
        );
    }
    assert!(
        sum(
            &ingested,
            "armorlake_events_received_total",
            &["stream=\"logs\""]
        ) > 0.0
    );
    assert!(sum(&ingested, "armorlake_wal_bytes_written_total", &[]) > 0.0);
    assert!(ingested.contains_key("armorlake_compaction_seconds_count"));
    assert!(sum(&ingested, "armorlake_process_resident_memory_bytes", &[]) > 1e6);
    assert_eq!(
        sum(&ingested, "armorlake_build_info", &["role=\"up\""]),
        1.0
    );

    // Queries count by outcome, with their latency and the operators they reached.
    let before = scrape(&metrics);
    let ok = |m: &HashMap<String, f64>| {
        sum(
            m,
            "armorlake_queries_total",
            &["protocol=\"pg\"", "outcome=\"ok\""],
        )
    };
    let failed = |m: &HashMap<String, f64>| {
        sum(
            m,
            "armorlake_queries_total",
            &["protocol=\"pg\"", "outcome=\"error\""],
        )
    };
    assert!(query_i64(up.pg_port, "SELECT count(*) FROM logs") > 0);
    query(
        up.pg_port,
        "SELECT namespace_name, count(*) FROM alerts GROUP BY 1",
    );
    let bad = psql(up.pg_port, &["-c", "SELECT nope FROM logs"]);
    assert!(!bad.status.success());
    let after = scrape(&metrics);
    assert!(ok(&after) >= ok(&before) + 2.0, "ok queries did not move");
    assert!(
        failed(&after) >= failed(&before) + 1.0,
        "failed queries did not move"
    );
    assert!(
        sum(
            &after,
            "armorlake_query_duration_seconds_count",
            &["protocol=\"pg\""]
        ) >= sum(
            &before,
            "armorlake_query_duration_seconds_count",
            &["protocol=\"pg\""]
        ) + 3.0
    );
    assert!(
        sum(&after, "armorlake_query_operators_count", &[])
            >= sum(&before, "armorlake_query_operators_count", &[]) + 2.0
    );
    assert!(sum(&after, "armorlake_query_operators_sum", &[]) >= 2.0);
    for protocol in ["pg", "flight"] {
        assert!(after.contains_key(&format!("armorlake_connections{{protocol=\"{protocol}\"}}")));
    }

    // A statement its connection runs again comes from the plan it kept, and still reads
    // the rows that arrived since.
    let again = "SELECT count(*) FROM logs WHERE operation <> 'none'";
    let out = psql(
        up.pg_port,
        &["-A", "-t", "-c", again, "-c", again, "-c", again],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    let reused = |m: &HashMap<String, f64>| sum(m, "armorlake_query_plans_reused_total", &[]);
    let kept = reused(&scrape(&metrics));
    assert!(kept >= reused(&after) + 2.0);
    // The third run of the three came from the physical plan the second made, while rows
    // went on arriving (they move the rows reported, not the route).
    let physical =
        |m: &HashMap<String, f64>| sum(m, "armorlake_query_physical_plans_reused_total", &[]);
    assert!(physical(&scrape(&metrics)) >= physical(&after) + 1.0);
    // DISCARD PLANS drops them, as PostgreSQL's does.
    let out = psql(
        up.pg_port,
        &["-c", again, "-c", "DISCARD PLANS", "-c", again],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(reused(&scrape(&metrics)), kept);

    // A prepared statement (the extended protocol, as drivers send their queries) keeps its
    // plans too: of three executions, the second and third run the physical plan the first
    // made, and read the rows that arrived since.
    let before = physical(&scrape(&metrics));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let counts: Vec<i64> = runtime.block_on(async {
        let conninfo = format!(
            "host=127.0.0.1 port={} user=armorlake dbname=kubearmor",
            up.pg_port
        );
        let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let statement = client.prepare(again).await.unwrap();
        let mut counts = Vec::new();
        for _ in 0..3 {
            counts.push(client.query_one(&statement, &[]).await.unwrap().get(0));
        }
        counts
    });
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert!(counts[0] > 0, "{counts:?}");
    assert!(physical(&scrape(&metrics)) >= before + 2.0);
}

/// Every line of `path` as JSON (every line must parse).
fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
        })
        .collect()
}

fn field<'a>(line: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    line.get("fields")?.get(name)?.as_str()
}

#[test]
fn json_logs_carry_the_query_id_from_query_node_to_operator() {
    let sim = start_sim(500, 7, &[]);
    let dir = tempfile::tempdir().unwrap();
    let logs = |name: &str| {
        let path = dir.path().join(name);
        (std::fs::File::create(&path).unwrap(), path)
    };
    let json = |cmd: &mut std::process::Command| {
        cmd.args(["--log-format", "json"])
            .env("RUST_LOG", "info,armorlake_query=debug");
    };

    let mut cmd = armorlake();
    cmd.args(["master", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("master"));
    json(&mut cmd);
    let (master_log, _) = logs("master.log");
    let (_master, lines) = Proc::start_with(cmd, "master is listening on", master_log.into());
    let url = format!(
        "http://{}",
        lines.last().unwrap().rsplit(' ').next().unwrap()
    );

    let mut cmd = armorlake();
    cmd.args(["operator", "--master", &url, "--name", "op-json"])
        .args(["--listen", "127.0.0.1:0", "--kubearmor", &sim.addr])
        .arg("--data-dir")
        .arg(dir.path().join("op"));
    json(&mut cmd);
    let (op_log, op_path) = logs("operator.log");
    let (_operator, _) = Proc::start_with(cmd, "operator op-json is running", op_log.into());

    let mut cmd = armorlake();
    cmd.args(["query", "--master", &url, "--pg-listen", "127.0.0.1:0"])
        .args(["--flight-listen", "127.0.0.1:0"]);
    json(&mut cmd);
    let (query_log, query_path) = logs("query.log");
    let (_query, lines) = Proc::start_with(cmd, "query node is ready", query_log.into());
    let port: u16 = lines
        .last()
        .unwrap()
        .split_whitespace()
        .skip_while(|w| *w != "-p")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap();

    let sql = "SELECT count(*) FROM logs WHERE pod_name <> 'marker-7f3a'";
    eventually(Duration::from_secs(60), "rows from the operator", || {
        (query_i64(port, sql) > 0).then_some(())
    });
    // All 500 events in, and reported: a connection sending the statement again runs the
    // physical plan it kept, and its fragments carry each run's own id.
    eventually(Duration::from_secs(60), "every event stored", || {
        (query_i64(port, "SELECT count(*) FROM logs WHERE true") >= 500).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let again = "SELECT count(*) FROM logs WHERE pod_name <> 'marker-7f3b'";
    let out = psql(port, &["-A", "-t", "-c", again, "-c", again, "-c", again]);
    assert!(out.status.success(), "{}", output_text(&out).1);

    // The query node logged the statement with its id …
    let query_lines = json_lines(&query_path);
    // The ids of the statements received whose text holds `marker`, in order.
    let received = |marker: &str| -> Vec<&str> {
        query_lines
            .iter()
            .filter(|l| field(l, "message") == Some("query received"))
            .filter(|l| field(l, "sql").is_some_and(|s| s.contains(marker)))
            .filter_map(|l| field(l, "query_id"))
            .collect()
    };
    let ids = received("marker-7f3a");
    assert!(!ids.is_empty(), "no query line on the query node");
    for id in &ids {
        assert_eq!(id.len(), 32, "{id} is not a W3C trace id");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
    // … and the operator logged the fragment it ran for one of those ids.
    let logged = |ids: &[&str], all: bool| {
        let op_lines = json_lines(&op_path);
        let ran = |id: &&str| {
            op_lines.iter().any(|l| {
                field(l, "message") == Some("running a scan fragment")
                    && field(l, "query_id") == Some(id)
            })
        };
        match all {
            true => ids.iter().all(ran),
            false => ids.iter().any(ran),
        }
    };
    eventually(
        Duration::from_secs(10),
        "the operator's fragment line",
        || logged(&ids, false).then_some(()),
    );
    // The statement sent again: its third run came from the kept physical plan, and the
    // operator logged every run under that run's own id.
    let again = received("marker-7f3b");
    assert_eq!(again.len(), 3, "{again:?}");
    let reran = query_lines.iter().any(|l| {
        field(l, "message") == Some("running the kept physical plan")
            && field(l, "query_id") == Some(again[2])
    });
    assert!(reran, "the third run did not use the kept physical plan");
    eventually(
        Duration::from_secs(10),
        "the operator's fragment lines of every run",
        || logged(&again, true).then_some(()),
    );
    // Every line on every node is JSON with a level and a target.
    for path in [&query_path, &op_path, &dir.path().join("master.log")] {
        for line in json_lines(path) {
            assert!(
                line.get("level").is_some() && line.get("target").is_some(),
                "{line}"
            );
        }
    }
}

#[test]
fn a_statement_over_its_memory_limit_gets_53200_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(
        dir.path(),
        &[],
        &["--simulate", "1000", "--query-memory-limit", "2MiB"],
    );
    // A hash join builds its whole build side in memory and cannot spill.
    let heavy = "SELECT count(*) FROM generate_series(1, 3000000) a \
                 JOIN generate_series(1, 3000000) b ON a.a = b.b";
    let out = psql(up.pg_port, &["-c", heavy]);
    let (_, stderr) = output_text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("53200"), "{stderr}");
    assert!(stderr.contains("memory limit"), "{stderr}");
    // The same server goes on answering, small statements fit.
    assert_eq!(
        query_i64(up.pg_port, "SELECT count(*) FROM generate_series(1, 1000)"),
        1000
    );
    let out = psql(up.pg_port, &["-c", heavy]);
    assert!(output_text(&out).1.contains("53200"));
    assert_eq!(query_i64(up.pg_port, "SELECT 1"), 1);
    // In one session the limit holds per statement: a failed statement gives its memory
    // back, so the next fits and the one after fails alike.
    let small = "SELECT count(*) FROM generate_series(1, 1000)";
    let out = psql(
        up.pg_port,
        &["-c", heavy, "-c", small, "-c", heavy, "-c", small],
    );
    let (stdout, stderr) = output_text(&out);
    assert_eq!(stderr.matches("53200").count(), 2, "{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.trim() == "1000").count(),
        2,
        "{stdout}"
    );
}

#[test]
fn bad_metrics_listener_is_a_clear_error() {
    let out = armorlake()
        .args(["up", "--metrics-listen", "not-an-address"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics-listen"));
}

/// The CI slice of the load suite (`benches/src/bin/load.rs` runs it for minutes): 100
/// sessions with mixed queries for 10 s, no errors, and the server still small after.
#[test]
fn a_hundred_sessions_of_mixed_queries_get_no_errors() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(
        dir.path(),
        &[],
        &["--simulate", "1000", "--max-connections", "110"],
    );
    eventually(Duration::from_secs(30), "alerts", || {
        (query_i64(up.pg_port, "SELECT count(*) FROM alerts") > 0).then_some(())
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(armorlake_benches::load::run(
        &armorlake_benches::load::LoadOptions {
            port: up.pg_port,
            connections: 100,
            duration: Duration::from_secs(10),
            server_pid: Some(up.proc.id()),
        },
    ));
    assert_eq!(report.errors, 0, "{:?}", report.first_errors);
    assert!(report.queries >= 100, "{report:?}");
    let (_, peak, _) = report.rss.expect("the server's memory");
    assert!(peak < 2 << 30, "peak RSS {peak}");
    // And the server answers as before.
    assert!(query_i64(up.pg_port, "SELECT count(*) FROM logs") > 0);
}
