//! The first slice: KubeArmor simulator → operator → query node → psql.

use std::time::Duration;

use crate::support::{eventually, psql, query, query_i64, start_sim, start_up};

const TABLES: [&str; 3] = ["alerts", "logs", "messages"];

#[test]
fn events_from_a_simulator_process_reach_psql() {
    // A rate high enough that every table, messages included (~1 in 200), gets rows fast.
    let sim = start_sim(2000, 7, &[]);
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[&sim.addr], &[]);
    let port = up.pg_port;

    // Rows arrive in all three tables.
    for table in TABLES {
        eventually(Duration::from_secs(30), &format!("rows in {table}"), || {
            (query_i64(port, &format!("SELECT count(*) FROM {table}")) > 0).then_some(())
        });
    }

    // Counts grow.
    let before = query_i64(port, "SELECT count(*) FROM logs");
    eventually(Duration::from_secs(30), "logs to grow", || {
        (query_i64(port, "SELECT count(*) FROM logs") > before).then_some(())
    });

    // Logs outnumber alerts.
    let alerts = query_i64(port, "SELECT count(*) FROM alerts");
    let logs = query_i64(port, "SELECT count(*) FROM logs");
    assert!(logs > 5 * alerts, "logs {logs} vs alerts {alerts}");

    // Every row names the operator that stores it and the endpoint it came from.
    let rows = query(
        port,
        "SELECT DISTINCT operator, endpoint FROM alerts ORDER BY 1, 2",
    );
    assert_eq!(rows, vec![format!("operator|{}", sim.addr)]);

    // GROUP BY, ORDER BY, LIMIT, filters.
    let groups = query(
        port,
        "SELECT namespace_name, count(*) FROM alerts GROUP BY 1 ORDER BY 2 DESC",
    );
    assert!(!groups.is_empty());
    let total: i64 = groups
        .iter()
        .map(|r| r.rsplit('|').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert!(
        total >= alerts,
        "groups sum {total} < earlier count {alerts}"
    );
    let counts: Vec<i64> = groups
        .iter()
        .map(|r| r.rsplit('|').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "{counts:?} not sorted"
    );

    let top = query(
        port,
        "SELECT process_name FROM logs WHERE operation = 'File' ORDER BY timestamp DESC LIMIT 5",
    );
    assert_eq!(top.len(), 5);
    let filtered = query_i64(
        port,
        "SELECT count(*) FROM logs WHERE operation = 'File' AND timestamp > now() - interval '1 hour'",
    );
    assert!(filtered > 0);
    let other = query_i64(
        port,
        "SELECT count(*) FROM logs WHERE operation = 'NoSuchOperation'",
    );
    assert_eq!(other, 0);

    // psql's \dt lists the three tables.
    let out = psql(port, &["-c", "\\dt"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    for table in TABLES {
        assert!(
            listing
                .lines()
                .any(|l| l.split('|').nth(1).map(str::trim) == Some(table)),
            "\\dt does not list {table}:\n{listing}"
        );
    }

    // A wrong table name is SQLSTATE 42P01, and the server keeps serving.
    let out = psql(port, &["-c", "SELECT * FROM alert"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("42P01"), "expected 42P01, got: {err}");
    assert!(err.contains("relation \"alert\" does not exist"), "{err}");
    assert!(query_i64(port, "SELECT count(*) FROM alerts") > 0);
}

#[test]
fn up_starts_its_own_simulator_and_keeps_rows_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[], &["--simulate", "1000"]);
    let port = up.pg_port;
    eventually(
        Duration::from_secs(30),
        "alerts from the built-in simulator",
        || (query_i64(port, "SELECT count(*) FROM alerts") > 0).then_some(()),
    );
    // Wait for a flush to Parquet, then restart: flushed rows are still there.
    let flushed = eventually(Duration::from_secs(30), "a flush to Parquet", || {
        let n = query_i64(
            port,
            "SELECT coalesce(sum(rows), 0) FROM armorlake.partitions WHERE table_name = 'logs'",
        );
        let files = walk_parquet(dir.path());
        (files > 0 && n > 0).then_some(files)
    });
    assert!(flushed > 0);
    drop(up);
    let files_before = walk_parquet(dir.path());
    let up = start_up(dir.path(), &["127.0.0.1:9"], &[]);
    // Nothing listens on the discard port: no new rows, only the ones on disk.
    let after = query_i64(up.pg_port, "SELECT count(*) FROM logs");
    assert!(after > 0, "rows in Parquet were not found after restart");
    assert_eq!(walk_parquet(dir.path()), files_before);
}

/// Counts Parquet files under `dir`.
fn walk_parquet(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                n += 1;
            }
        }
    }
    n
}
