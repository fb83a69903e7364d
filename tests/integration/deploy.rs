//! What deploys armorlake: the Grafana dashboard's panels run against a live node with their
//! macros expanded as Grafana expands them, and the docker compose file describes the
//! cluster it promises, with command lines armorlake's own parser accepts.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use yaml_rust2::{Yaml, YamlLoader};

use crate::support::{armorlake, eventually, query_i64, start_up};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The arguments of `$__name(…)` at the start of `rest` (after the name), split at top-level
/// commas, and the length of the parenthesised part.
fn macro_args(rest: &str) -> Option<(Vec<String>, usize)> {
    if !rest.starts_with('(') {
        return None;
    }
    let (mut depth, mut args, mut arg, mut quoted) = (0, Vec::new(), String::new(), false);
    for (i, c) in rest.char_indices() {
        match c {
            '\'' => {
                quoted = !quoted;
                arg.push(c);
            }
            '(' if !quoted => {
                depth += 1;
                if depth > 1 {
                    arg.push(c);
                }
            }
            ')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    if !arg.trim().is_empty() {
                        args.push(arg.trim().to_string());
                    }
                    return Some((args, i + 1));
                }
                arg.push(c);
            }
            ',' if depth == 1 && !quoted => args.push(std::mem::take(&mut arg).trim().to_string()),
            c => arg.push(c),
        }
    }
    None
}

/// Seconds of a Grafana interval such as `'1m'`, `5m`, `30s`, `1h`.
fn interval_seconds(text: &str) -> i64 {
    let text = text.trim().trim_matches('\'');
    let (number, unit) = text.split_at(text.len() - 1);
    let n: i64 = number.parse().unwrap_or_else(|_| panic!("interval {text}"));
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => panic!("interval unit in {text}"),
    }
}

/// `sql` with Grafana's PostgreSQL macros expanded for the range `from`..`to`, as the
/// datasource does before it sends the query (see /work/shared/postgres-clients.md).
fn expand(sql: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let rfc = |t: DateTime<Utc>| format!("'{}'", t.format("%Y-%m-%dT%H:%M:%SZ"));
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("$__") {
        out.push_str(&rest[..at]);
        rest = &rest[at + 3..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[name.len()..];
        let (args, used) = macro_args(rest).unwrap_or((Vec::new(), 0));
        rest = &rest[used..];
        let group = |args: &[String]| {
            let secs = interval_seconds(&args[1]);
            format!("floor(extract(epoch from {})/{secs})*{secs}", args[0])
        };
        let expanded = match name.as_str() {
            "timeFilter" => format!("{} BETWEEN {} AND {}", args[0], rfc(from), rfc(to)),
            "timeFrom" => rfc(from),
            "timeTo" => rfc(to),
            "time" => format!("{} AS \"time\"", args[0]),
            "timeGroup" => group(&args),
            "timeGroupAlias" => format!("{} AS \"time\"", group(&args)),
            "unixEpochFilter" => format!(
                "{c} >= {} AND {c} <= {}",
                from.timestamp(),
                to.timestamp(),
                c = args[0]
            ),
            "interval" => "'1m'".to_string(),
            other => panic!("macro $__{other} is not expanded by this test: add it"),
        };
        out.push_str(&expanded);
    }
    out.push_str(rest);
    out
}

#[test]
fn macros_expand_as_grafana_does() {
    let from = "2026-11-22T10:00:00Z".parse().unwrap();
    let to = "2026-11-22T11:00:00Z".parse().unwrap();
    assert_eq!(
        expand("WHERE $__timeFilter(\"timestamp\") AND x", from, to),
        "WHERE \"timestamp\" BETWEEN '2026-11-22T10:00:00Z' AND '2026-11-22T11:00:00Z' AND x"
    );
    assert_eq!(
        expand("SELECT $__timeGroupAlias(ts, '5m'), 1", from, to),
        "SELECT floor(extract(epoch from ts)/300)*300 AS \"time\", 1"
    );
    assert_eq!(
        expand("$__unixEpochFilter(t)", from, to),
        "t >= 1795341600 AND t <= 1795345200"
    );
}

#[test]
fn every_grafana_panel_runs_against_a_live_node() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("docs/grafana/dashboards/armorlake.json")).unwrap(),
    )
    .unwrap();
    let datasource =
        std::fs::read_to_string(repo("docs/grafana/provisioning/datasources/armorlake.yaml"))
            .unwrap();
    let datasource = &YamlLoader::load_from_str(&datasource).unwrap()[0]["datasources"][0];
    assert_eq!(
        datasource["type"].as_str(),
        Some("grafana-postgresql-datasource")
    );
    assert_eq!(
        datasource["jsonData"]["database"].as_str(),
        Some("kubearmor")
    );
    let uid = datasource["uid"].as_str().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[], &["--simulate", "2000"]);
    eventually(Duration::from_secs(60), "blocked alerts and logs", || {
        let blocked = query_i64(
            up.pg_port,
            "SELECT count(*) FROM alerts WHERE action = 'Block'",
        );
        let logs = query_i64(up.pg_port, "SELECT count(*) FROM logs");
        (blocked > 0 && logs > 0).then_some(())
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=armorlake dbname=kubearmor",
                up.pg_port
            ),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        client
    });

    let to = Utc::now() + chrono::Duration::minutes(1);
    let from = to - chrono::Duration::hours(1);
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 4);
    for title in [
        "Alerts per minute by namespace",
        "Top blocked processes",
        "Operations by result",
        "Ingest gaps per source",
    ] {
        assert!(
            panels.iter().any(|p| p["title"] == title),
            "no panel {title:?}"
        );
    }
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"].as_str(), Some(uid), "{title}");
            let sql = expand(target["rawSql"].as_str().unwrap(), from, to);
            assert!(!sql.contains("$__"), "{title}: {sql}");
            // Grafana's driver uses the extended protocol: Parse, Describe, Execute.
            let rows = rt
                .block_on(client.query(sql.as_str(), &[]))
                .unwrap_or_else(|e| panic!("panel {title:?} fails: {e:?}\n{sql}"));
            assert!(!rows.is_empty(), "panel {title:?} has no rows\n{sql}");
            let columns = rows[0].columns();
            if target["format"] == "time_series" {
                let time = columns
                    .iter()
                    .find(|c| c.name() == "time")
                    .unwrap_or_else(|| panic!("{title}: no time column"));
                assert!(
                    matches!(time.type_().name(), "float8" | "int8" | "timestamptz"),
                    "{title}: time is {}",
                    time.type_()
                );
                assert!(
                    columns.iter().any(
                        |c| c.name() != "time" && matches!(c.type_().name(), "int8" | "float8")
                    ),
                    "{title}: no numeric value column"
                );
                // Sorted by time, as Grafana wants.
                let times: Vec<f64> = rows
                    .iter()
                    .map(|r| match r.columns()[0].type_().name() {
                        "float8" => r.get::<_, f64>("time"),
                        _ => r.get::<_, i64>("time") as f64,
                    })
                    .collect();
                assert!(times.windows(2).all(|w| w[0] <= w[1]), "{title}: unsorted");
                assert!(
                    times.iter().all(
                        |t| *t >= (from.timestamp() - 60) as f64 && *t <= to.timestamp() as f64
                    ),
                    "{title}: a time outside the range"
                );
            }
        }
    }
}

/// A YAML mapping with its `<<` merge keys applied (compose files use them).
fn merged(node: &Yaml) -> yaml_rust2::yaml::Hash {
    let mut out = yaml_rust2::yaml::Hash::new();
    if let Some(hash) = node.as_hash() {
        if let Some(base) = hash.get(&Yaml::String("<<".into())) {
            out.extend(merged(base));
        }
        for (k, v) in hash {
            if k.as_str() != Some("<<") {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

fn key(name: &str) -> Yaml {
    Yaml::String(name.into())
}

#[test]
fn the_compose_file_describes_a_cluster_armorlake_accepts() {
    let text = std::fs::read_to_string(repo("docker/compose.yaml")).unwrap();
    let doc = &YamlLoader::load_from_str(&text).unwrap()[0];
    let services = doc["services"].as_hash().unwrap();
    let volumes = doc["volumes"].as_hash().unwrap();
    let mut roles = Vec::new();
    let mut clusters = Vec::new();
    for (name, service) in services {
        let name = name.as_str().unwrap();
        let service = merged(service);
        let command: Vec<String> = service
            .get(&key("command"))
            .unwrap_or(&Yaml::BadValue)
            .as_vec()
            .unwrap_or_else(|| panic!("{name}: command is not a list"))
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        // armorlake's own argument parser accepts the command line.
        let out = armorlake()
            .arg("--check-args")
            .args(&command)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {command:?} is refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        roles.push(command[0].clone());
        if command[0] == "operator" {
            let cluster = command
                .iter()
                .find_map(|a| a.strip_prefix("--cluster="))
                .unwrap_or_else(|| panic!("{name}: no --cluster"));
            clusters.push(cluster.to_string());
        }
        // Health checks gate start-up: every service has one, run by the binary itself.
        let check: Vec<&str> = service.get(&key("healthcheck")).unwrap_or(&Yaml::BadValue)["test"]
            .as_vec()
            .unwrap_or_else(|| panic!("{name}: no health check"))
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(&check[..3], ["CMD", "armorlake", "probe"], "{name}");
        if let Some(deps) = service.get(&key("depends_on")).and_then(Yaml::as_hash) {
            for (dep, condition) in deps {
                assert!(services.contains_key(dep), "{name} depends on {dep:?}");
                assert_eq!(
                    condition["condition"].as_str(),
                    Some("service_healthy"),
                    "{name}"
                );
            }
        }
        // Nodes that store keep their data in a named volume.
        if matches!(command[0].as_str(), "master" | "operator") {
            let mounts = service
                .get(&key("volumes"))
                .unwrap_or(&Yaml::BadValue)
                .as_vec()
                .unwrap();
            let data = mounts
                .iter()
                .filter_map(Yaml::as_str)
                .find(|m| m.ends_with(":/var/lib/armorlake"))
                .unwrap_or_else(|| panic!("{name}: no data volume"));
            let volume = data.split(':').next().unwrap();
            assert!(
                volumes.contains_key(&key(volume)),
                "{name}: volume {volume}"
            );
            assert!(command.iter().any(|a| a == "--data-dir=/var/lib/armorlake"));
        }
    }
    roles.sort();
    assert_eq!(
        roles,
        [
            "kubearmor-sim",
            "kubearmor-sim",
            "master",
            "operator",
            "operator",
            "operator",
            "query"
        ]
    );
    clusters.sort();
    assert_eq!(
        clusters,
        ["east", "east", "west"],
        "two replicas of one cluster and one more"
    );

    // And the checker itself refuses what armorlake would refuse.
    let out = armorlake()
        .args([
            "--check-args",
            "operator",
            "--master=http://m:50060",
            "--listen=not-an-address",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an operator with a listen address that is not one passed"
    );
}

#[test]
fn probe_tells_a_listening_port_from_a_closed_one() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    assert!(
        armorlake()
            .args(["probe", &addr])
            .status()
            .unwrap()
            .success()
    );
    drop(listener);
    let out = armorlake()
        .args(["probe", &addr, "--timeout", "1s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&addr));
}
