//! Acknowledged rows survive `kill -9`: the write-ahead log is replayed on restart.

use std::time::Duration;

use crate::support::{eventually, query, query_i64, start_sim, start_up};

/// Count and checksum of the rows of `table` strictly older than `before` (a timestamptz
/// literal). A stream's rows become visible in order, so once a query has seen a row at time
/// T, every row before T is visible too and the set below T no longer changes.
fn fingerprint(port: u16, table: &str, before: &str) -> String {
    let rows = query(
        port,
        &format!(
            "SELECT count(*), coalesce(sum(length(host_name) + length(resource) + pid), 0) \
             FROM {table} WHERE timestamp < '{before}'"
        ),
    );
    rows.join("\n")
}

#[test]
fn rows_seen_before_sigkill_are_there_after_restart() {
    let sim = start_sim(3000, 21, &[]);
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let up = start_up(dir.path(), &[&sim.addr], &[]);
        let port = up.pg_port;
        eventually(Duration::from_secs(30), "new rows", || {
            let n = query_i64(port, "SELECT count(*) FROM logs");
            (n > 0).then_some(())
        });
        // Let ingest run for a while, a different time each round, so the kill lands at
        // different points of batching, WAL writes and flushes.
        std::thread::sleep(Duration::from_millis(700 + 900 * round));
        let mut seen = Vec::new();
        for table in ["alerts", "logs"] {
            let max = query(port, &format!("SELECT max(timestamp) FROM {table}"));
            let before = max[0].trim().to_string();
            assert!(!before.is_empty(), "no {table} rows");
            seen.push((table, before.clone(), fingerprint(port, table, &before)));
        }
        drop(up); // SIGKILL

        // Restart without a reachable KubeArmor: only what was stored before the kill.
        let up = start_up(dir.path(), &["127.0.0.1:9"], &[]);
        for (table, before, fp) in &seen {
            assert_eq!(
                &fingerprint(up.pg_port, table, before),
                fp,
                "round {round}: {table} rows before {before} changed across kill -9"
            );
        }
    }
}
