//! Distributed queries across processes: a master, three operators (two of them replicas of
//! one cluster) and a query node give the same answers as `up` holding the same events;
//! time ranges prune operators; replicas fail over; a cluster with no live member fails
//! the query quickly and clearly; the master going away does not stop queries.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::slt;
use crate::support::{
    Proc, Sim, armorlake, eventually, psql, query, query_i64, start_sim, start_up,
};

/// Events of the east simulator (seed 41), served at full speed from 08:00, one per ms.
const EAST_EVENTS: u64 = 6000;
const EAST_START: &str = "2026-11-23T08:00:00Z";
/// Events of the west simulator (seed 42), from 03:00.
const WEST_EVENTS: u64 = 4000;
const WEST_START: &str = "2026-11-23T03:00:00Z";

fn fixed_sim(seed: u64, events: u64, start: &str) -> Sim {
    start_sim(0, seed, &["--count", &events.to_string(), "--start", start])
}

pub(crate) fn start_master(dir: &Path, listen: &str) -> (Proc, String) {
    let mut cmd = armorlake();
    cmd.args(["master", "--listen", listen, "--data-dir"])
        .arg(dir);
    let (proc, line) = Proc::start(cmd, "master is listening on");
    (proc, line.rsplit(' ').next().unwrap().to_string())
}

pub(crate) fn start_operator(
    master: &str,
    name: &str,
    cluster: &str,
    sim: &str,
    dir: &Path,
) -> Proc {
    let mut cmd = armorlake();
    cmd.args(["operator", "--master", master, "--name", name])
        .args(["--cluster", cluster, "--listen", "127.0.0.1:0"])
        .args(["--kubearmor", sim, "--flush-interval", "1s", "--data-dir"])
        .arg(dir);
    Proc::start(cmd, &format!("operator {name} is running")).0
}

pub(crate) fn start_query(master: &str) -> (Proc, u16) {
    start_query_with(master, &[])
}

fn start_query_with(master: &str, args: &[&str]) -> (Proc, u16) {
    let mut cmd = armorlake();
    cmd.args(["query", "--master", master, "--pg-listen", "127.0.0.1:0"])
        .args(["--flight-listen", "127.0.0.1:0"])
        .args(args);
    let (proc, line) = Proc::start(cmd, "query node is ready");
    let port = line
        .split_whitespace()
        .skip_while(|w| *w != "-p")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("port in ready line");
    (proc, port)
}

fn total(port: u16) -> i64 {
    ["alerts", "logs", "messages"]
        .iter()
        .map(|t| query_i64(port, &format!("SELECT count(*) FROM {t}")))
        .sum()
}

fn wait_for_all_events(port: u16, what: &str) {
    let expected = (EAST_EVENTS + WEST_EVENTS) as i64;
    eventually(Duration::from_secs(60), what, || {
        (total(port) == expected).then_some(())
    });
}

/// Queries that exercise every distributed path: partial aggregates, count distinct, top-k,
/// time buckets, filters, LIMIT, a join, a point lookup and a union. Each orders its rows
/// fully.
const QUERIES: &[&str] = &[
    "SELECT count(*) FROM logs",
    "SELECT namespace_name, count(*) AS n FROM logs GROUP BY namespace_name ORDER BY namespace_name",
    "SELECT process_name, count(*) AS n FROM alerts GROUP BY process_name ORDER BY n DESC, process_name LIMIT 10",
    "SELECT increments('minute', 1, \"timestamp\") AS bucket, count(*) FROM logs GROUP BY 1 ORDER BY 1",
    "SELECT date_trunc('second', \"timestamp\") AS s, count(*), min(pid), max(pid) FROM logs \
     WHERE \"timestamp\" >= '2026-11-23T08:00:00Z' AND \"timestamp\" < '2026-11-23T08:00:03Z' GROUP BY 1 ORDER BY 1",
    "SELECT count(DISTINCT pod_name), count(DISTINCT host_name) FROM logs",
    "SELECT operation, result, count(*) FROM logs WHERE result <> 'Passed' GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT min(severity), max(severity), sum(severity), round(avg(severity), 6) FROM alerts",
    "SELECT \"timestamp\", host_name, operation, resource FROM logs ORDER BY \"timestamp\" DESC, host_name, resource LIMIT 7",
    "SELECT a.namespace_name, count(*) FROM alerts a JOIN logs l ON a.container_id = l.container_id \
     AND a.pod_name = l.pod_name GROUP BY 1 ORDER BY 1",
    // Alerts counted by namespace and container before the join (eager aggregation).
    "SELECT a.namespace_name, count(*) AS alerts, sum(l.n) AS logs FROM alerts a JOIN \
     (SELECT container_id, count(*) AS n FROM logs WHERE container_id <> '' GROUP BY container_id) l \
     ON a.container_id = l.container_id GROUP BY 1 ORDER BY 1",
    "SELECT host_name, operation, resource FROM logs WHERE \"timestamp\" = '2026-11-23T03:00:01.500Z' ORDER BY 1, 2, 3",
    "SELECT type, count(*) FROM messages GROUP BY type ORDER BY type",
    // Counted by text on the operators, the condition decided once per group.
    "SELECT pod_name, count(*) FROM logs WHERE pod_name <> '' AND pod_name NOT LIKE 'kube%' \
     GROUP BY 1 ORDER BY 1",
    "SELECT count(*) FROM (SELECT host_name FROM logs WHERE operation = 'File' UNION ALL \
     SELECT host_name FROM alerts WHERE operation = 'File') u",
];

fn answers(port: u16) -> Vec<Vec<String>> {
    QUERIES.iter().map(|q| query(port, q)).collect()
}

/// What EXPLAIN says about the scans: the `OperatorScanExec` lines.
fn scans(port: u16, sql: &str) -> String {
    query(port, &format!("EXPLAIN {sql}"))
        .into_iter()
        .filter(|l| l.contains("OperatorScanExec"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_cluster_answers_like_one_node_prunes_and_fails_over() {
    let east = fixed_sim(41, EAST_EVENTS, EAST_START);
    let west = fixed_sim(42, WEST_EVENTS, WEST_START);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reference =
        slt::Reference::load(&[(41, EAST_EVENTS, EAST_START), (42, WEST_EVENTS, WEST_START)]);

    // The reference: one process holding every event.
    let up_dir = tempfile::tempdir().unwrap();
    let up = start_up(up_dir.path(), &[&east.addr, &west.addr], &[]);

    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (master, master_addr) = start_master(dirs[0].path(), "127.0.0.1:0");
    let url = format!("http://{master_addr}");
    let mut east1 = Some(start_operator(
        &url,
        "east-1",
        "east",
        &east.addr,
        dirs[1].path(),
    ));
    let mut east2 = Some(start_operator(
        &url,
        "east-2",
        "east",
        &east.addr,
        dirs[2].path(),
    ));
    let mut west1 = Some(start_operator(
        &url,
        "west-1",
        "west",
        &west.addr,
        dirs[3].path(),
    ));
    let (_query, port) = start_query(&url);

    wait_for_all_events(up.pg_port, "up to hold every event");
    wait_for_all_events(port, "the cluster to hold every event");
    let expected = answers(up.pg_port);
    assert!(
        expected.iter().all(|rows| !rows.is_empty()),
        "every reference query returns rows: {expected:?}"
    );
    let got = answers(port);
    for ((sql, want), got) in QUERIES.iter().zip(&expected).zip(&got) {
        assert_eq!(got, want, "cluster and up differ on {sql}");
    }

    // The sqllogictest files: up, the cluster and PostgreSQL agree with the checked-in
    // answers.
    for name in ["standard.slt", "armorlake.slt"] {
        slt::complete_if_asked(&rt, name, &slt::armorlake(up.pg_port));
        slt::run(&rt, name, &slt::armorlake(up.pg_port));
        slt::run(&rt, name, &slt::armorlake(port));
    }
    slt::run(&rt, "standard.slt", &reference.conninfo());

    // Pruning: an hour only the west cluster holds contacts only its operator.
    let west_hour = "SELECT count(*) FROM logs WHERE \"timestamp\" >= '2026-11-23T03:00:00Z' \
                     AND \"timestamp\" < '2026-11-23T04:00:00Z'";
    let plan = query(port, &format!("EXPLAIN {west_hour}")).join("\n");
    assert!(!plan.contains("east"), "east is not contacted: {plan}");
    assert!(
        plan.contains("OperatorPlanExec: runs on west@west-1"),
        "the whole plan runs on the one operator holding the hour: {plan}"
    );
    let plan = scans(port, west_hour);
    assert!(
        plan.contains("t0:[west@west-1]") && !plan.contains("t1:"),
        "one task, on west-1: {plan}"
    );
    // Over both clusters, the count runs on one member of each, and the query node adds up.
    let both = query(port, "EXPLAIN SELECT count(*) FROM logs").join("\n");
    assert!(
        both.contains("OperatorPlanExec: runs on east@east-")
            && both.contains(", west@west-1")
            && both.contains("t0:[east@east-")
            && both.contains("t0:[west@west-1]")
            && !both.contains("NetworkCoalesceExec"),
        "one fragment per cluster: {both}"
    );
    // Counting by one text column is armorlake's own partial aggregate, run on the operators.
    let by_text = "EXPLAIN SELECT namespace_name, count(*) FROM logs GROUP BY 1";
    let by_text = query(port, by_text).join("\n");
    let on_operators = by_text
        .split_once("OperatorPlanExec: runs on")
        .map_or("", |(_, below)| below);
    assert!(
        on_operators.contains("CountByTextExec: group=namespace_name")
            && !by_text.contains("mode=Partial"),
        "the partial counts run as CountByTextExec on the operators: {by_text}"
    );
    // ... over the keys of the Parquet pages' dictionaries.
    assert!(
        on_operators.contains("OperatorScanExec: table=logs, projection=[namespace_name], dictionaries=[namespace_name]"),
        "the scan below reads the group as a dictionary: {by_text}"
    );
    // Where the scan runs (here `up`'s own plan), a distinct count reads the Parquet
    // dictionary pages alone, and a condition on a text column is decided per dictionary
    // value (the slt answers above check both against PostgreSQL).
    let plan = |sql: &str| query(up.pg_port, &format!("EXPLAIN {sql}")).join("\n");
    let distinct = plan("SELECT count(DISTINCT pod_name) FROM logs");
    assert!(
        distinct.contains("dictionaries=[pod_name], distinct values"),
        "{distinct}"
    );
    let filtered = plan("SELECT pid, pod_name FROM logs WHERE operation = 'File'");
    assert!(
        filtered.contains("per value") && filtered.contains("dictionaries=[operation]"),
        "{filtered}"
    );
    let kept = QUERIES
        .iter()
        .find(|q| q.contains("pod_name <> ''"))
        .unwrap();
    let kept = query(port, &format!("EXPLAIN {kept}")).join("\n");
    assert!(
        kept.contains("CountByTextExec: group=pod_name")
            && kept.contains("keep=pod_name != ")
            && kept.contains("dictionaries=[pod_name]")
            && !kept.contains("FilterExec"),
        "the condition on the group is the CountByTextExec's: {kept}"
    );
    let summary = QUERIES.iter().find(|q| q.contains("sum(l.n)")).unwrap();
    let summary = query(port, &format!("EXPLAIN {summary}")).join("\n");
    assert!(
        summary.contains("__armorlake_rows"),
        "the alerts are counted before the join: {summary}"
    );
    // A LIMIT over rows in no order asks the operators one after another, until it has
    // enough: here more rows than either cluster holds, so both are read.
    let limit = "SELECT count(*) FROM (SELECT pid FROM logs LIMIT 9000) t";
    let plan = query(port, &format!("EXPLAIN {limit}")).join("\n");
    assert!(plan.contains(", one after another"), "{plan}");
    assert_eq!(query(port, limit), ["9000"], "{limit}");
    assert!(
        query_i64(
            port,
            "SELECT count(*) FROM logs WHERE \"timestamp\" < '2026-11-23T04:00:00Z'"
        ) < 9000
    );
    assert!(
        query_i64(
            port,
            "SELECT count(*) FROM logs WHERE \"timestamp\" >= '2026-11-23T04:00:00Z'"
        ) < 9000
    );
    // A join of raw rows: the operators reported few, so they are gathered and joined on
    // the query node (the answers above); over the limit, the join is left to
    // datafusion-distributed, one task per cluster, and gives the same answer.
    let join = QUERIES.iter().find(|q| q.contains(" JOIN ")).unwrap();
    let plan = query(port, &format!("EXPLAIN {join}")).join("\n");
    assert!(
        plan.contains("OperatorPlanExec: runs on east@east-") && plan.contains("west@west-1"),
        "gathered: {plan}"
    );
    let distributed = "SET armorlake.gather_raw_rows_limit = 0";
    let plan = query(port, &format!("{distributed}; EXPLAIN {join}")).join("\n");
    assert!(
        !plan.contains("OperatorPlanExec")
            && plan.contains("t0:[east@east-")
            && plan.contains("t1:[west@west-1]"),
        "tasks: {plan}"
    );
    // psql prints the SET's tag first.
    let got = query(port, &format!("{distributed}; {join}"));
    assert_eq!(got[1..], query(up.pg_port, join), "distributed join");
    assert_eq!(
        query(port, west_hour),
        query(up.pg_port, west_hour),
        "pruned answer"
    );

    // A statement's memory limit holds on the operator that runs it whole: a hash join's
    // build side cannot spill.
    let (limited, limited_port) = start_query_with(&url, &["--query-memory-limit", "64KiB"]);
    let west = |alias: &str| {
        format!(
            "{alias}.\"timestamp\" >= '2026-11-23T03:00:00Z' AND {alias}.\"timestamp\" < '2026-11-23T04:00:00Z'"
        )
    };
    let join = format!(
        "SELECT count(*), max(length(a.resource) + length(b.data)) FROM logs a JOIN logs b \
         ON a.namespace_name = b.namespace_name WHERE {} AND {}",
        west("a"),
        west("b")
    );
    let plan = query(port, &format!("EXPLAIN {join}")).join("\n");
    assert!(
        plan.contains("OperatorPlanExec: runs on west@west-1"),
        "{plan}"
    );
    let out = psql(limited_port, &["-c", &join]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the join must fail");
    assert!(
        stderr.contains("53200") && stderr.contains("west-1"),
        "53200 from the operator: {stderr}"
    );
    assert_eq!(
        query(limited_port, west_hour),
        query(up.pg_port, west_hour),
        "the limited query node goes on serving"
    );
    drop(limited);

    // Failover: with one east replica gone the answers stay the same.
    drop(east1.take());
    assert_eq!(answers(port), expected, "answers after losing east-1");
    let plan = scans(port, "SELECT count(*) FROM logs");
    assert!(plan.contains("east@east-2"), "east-2 serves east: {plan}");

    // The master going away does not stop queries.
    drop(master);
    assert_eq!(answers(port), expected, "answers without the master");

    // No live member left in east: a clear error, quickly, naming the nodes.
    drop(east2.take());
    let started = Instant::now();
    let out = psql(port, &["-c", "SELECT count(*) FROM logs"]);
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the query must fail");
    assert!(stderr.contains("08006"), "SQLSTATE 08006: {stderr}");
    assert!(
        stderr.contains("east-1") && stderr.contains("east-2"),
        "names the nodes: {stderr}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "failed within 5 s: {elapsed:?}"
    );

    // Unless partial results are allowed: then the reachable part answers.
    let west_only = query_i64(
        up.pg_port,
        "SELECT count(*) FROM logs WHERE \"timestamp\" < '2026-11-23T04:00:00Z'",
    );
    let rows = query(
        port,
        "SET armorlake.allow_partial_results = on; SELECT count(*) FROM logs",
    );
    assert_eq!(
        rows.last().map(String::as_str),
        Some(west_only.to_string().as_str())
    );
    // ... and says what is missing.
    let out = psql(
        port,
        &[
            "-c",
            "SET armorlake.allow_partial_results = on",
            "-c",
            "SELECT count(*) FROM alerts",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("NOTICE") && stderr.contains("east") && stderr.contains("alerts"),
        "a NOTICE names the missing cluster: {stderr}"
    );
    drop(west1.take());
}
