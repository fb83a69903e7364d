//! Alerting: rules created over psql, evaluated on the operator as events arrive from a
//! KubeArmor the test controls, delivered to psycopg LISTENers, webhooks and
//! `armorlake tail`, and recorded in `armorlake.rule_firings`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use armorlake_proto::feeder::log_service_server::LogService;
use armorlake_proto::feeder::{Alert, Log, Message, NonceMessage, ReplyMessage, RequestMessage};
use futures::Stream;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use crate::distributed;
use crate::pg_clients::python;
use crate::support::{armorlake, eventually, psql, query, query_i64, start_up};

type Events<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A KubeArmor that sends the alerts the test pushes; logs and messages stay idle.
struct Pushed {
    alerts: broadcast::Sender<Alert>,
}

#[tonic::async_trait]
impl LogService for Pushed {
    async fn health_check(
        &self,
        request: Request<NonceMessage>,
    ) -> Result<Response<ReplyMessage>, Status> {
        Ok(Response::new(ReplyMessage {
            retval: request.into_inner().nonce,
        }))
    }

    type WatchMessagesStream = Events<Message>;
    async fn watch_messages(
        &self,
        _: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchMessagesStream>, Status> {
        Ok(Response::new(Box::pin(futures::stream::pending())))
    }

    type WatchAlertsStream = Events<Alert>;
    async fn watch_alerts(
        &self,
        _: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let rx = self.alerts.subscribe();
        Ok(Response::new(Box::pin(futures::stream::unfold(
            rx,
            |mut rx| async move {
                loop {
                    match rx.recv().await {
                        Ok(alert) => return Some((Ok(alert), rx)),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        ))))
    }

    type WatchLogsStream = Events<Log>;
    async fn watch_logs(
        &self,
        _: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchLogsStream>, Status> {
        Ok(Response::new(Box::pin(futures::stream::pending())))
    }
}

/// The test's KubeArmor: its address, and where to push alerts.
struct KubeArmor {
    addr: String,
    alerts: broadcast::Sender<Alert>,
}

impl KubeArmor {
    fn start() -> KubeArmor {
        let (alerts, _) = broadcast::channel(1024);
        let service = Pushed {
            alerts: alerts.clone(),
        };
        KubeArmor {
            addr: crate::ingest::serve_kubearmor(service),
            alerts,
        }
    }

    /// Sends `alert` to every subscriber (the operator), once one has subscribed.
    fn push(&self, alert: Alert) {
        eventually(Duration::from_secs(30), "the operator to subscribe", || {
            (self.alerts.receiver_count() > 0).then_some(())
        });
        self.alerts.send(alert).unwrap();
    }
}

/// An alert of `pod` in `namespace` with `action`, at `micros` since the epoch.
fn alert(namespace: &str, pod: &str, action: &str, micros: i64) -> Alert {
    let seconds = micros.div_euclid(1_000_000);
    let time = chrono::DateTime::from_timestamp_micros(micros).unwrap();
    Alert {
        timestamp: seconds,
        updated_time: time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        cluster_name: "test".into(),
        host_name: "node-1".into(),
        namespace_name: namespace.into(),
        pod_name: pod.into(),
        operation: "Process".into(),
        resource: "/bin/sh".into(),
        action: action.into(),
        result: "Permission denied".into(),
        ..Alert::default()
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn now_seconds() -> f64 {
    now_micros() as f64 / 1e6
}

/// Runs `sql` with psql; returns (success, stderr).
fn run(port: u16, sql: &str) -> (bool, String) {
    let out = psql(port, &["-v", "ON_ERROR_STOP=1", "-c", sql]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn create(port: u16, sql: &str) {
    let (ok, err) = run(port, sql);
    assert!(ok, "{sql}: {err}");
}

/// Waits until `rule` has fired `n` times (per `armorlake.rule_firings`).
fn firings(port: u16, rule: &str, n: i64) {
    let sql = format!("SELECT count(*) FROM armorlake.rule_firings WHERE rule = '{rule}'");
    eventually(
        Duration::from_secs(30),
        &format!("{n} firings of {rule}"),
        || (query_i64(port, &sql) >= n).then_some(()),
    );
}

/// A psycopg process LISTENing on a channel; its lines arrive on `lines`.
struct Listener {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Listener {
    fn start(port: u16, channel: &str, seconds: u32) -> Listener {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/listen.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(["--port", &port.to_string(), "--channel", channel])
            .args(["--seconds", &seconds.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let first = lines.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(first, "listening");
        Listener { child, lines }
    }

    /// Every notification received until the process ends.
    fn notifications(self) -> Vec<serde_json::Value> {
        let mut got = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(30)) {
            got.push(serde_json::from_str(&line).unwrap());
        }
        got
    }
}

#[test]
fn a_listener_is_notified_of_matching_events_only_within_two_seconds() {
    let kubearmor = KubeArmor::start();
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[&kubearmor.addr], &[]);
    let port = up.pg_port;
    create(
        port,
        "CREATE ALERT RULE prod_block ON alerts WHERE action = 'Block' AND namespace_name = 'prod' \
         NOTIFY CHANNEL 'sec'",
    );
    // The rule is running once a first matching event fires it.
    kubearmor.push(alert("prod", "probe", "Block", now_micros()));
    firings(port, "prod_block", 1);

    let listener = Listener::start(port, "sec", 6);
    kubearmor.push(alert("prod", "quiet", "Audit", now_micros()));
    kubearmor.push(alert("staging", "elsewhere", "Block", now_micros()));
    let sent = now_seconds();
    kubearmor.push(alert("prod", "target", "Block", now_micros()));
    let got = listener.notifications();

    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["channel"], "sec");
    let payload: serde_json::Value =
        serde_json::from_str(got[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["rule"], "prod_block");
    assert_eq!(payload["operator"], "operator");
    assert_eq!(payload["payload"]["pod_name"], "target");
    assert_eq!(payload["payload"]["action"], "Block");
    let delay = got[0]["received"].as_f64().unwrap() - sent;
    assert!(delay < 2.0, "notified {delay:.3} s after the event");

    assert_eq!(
        query(
            port,
            "SELECT operator, channel, payload::text LIKE '%\"pod_name\":\"target\"%' \
             FROM armorlake.rule_firings WHERE rule = 'prod_block' ORDER BY seq"
        ),
        ["operator|sec|f", "operator|sec|t"]
    );
    assert_eq!(
        query_i64(
            port,
            "SELECT firings FROM armorlake.rules WHERE name = 'prod_block'"
        ),
        2
    );
}

#[test]
fn a_window_rule_fires_once_per_window_above_its_threshold() {
    let kubearmor = KubeArmor::start();
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[&kubearmor.addr], &[]);
    let port = up.pg_port;
    create(
        port,
        "CREATE ALERT RULE burst ON alerts WHERE action = 'Block' \
         WINDOW '2 seconds' HAVING count(*) > 3 NOTIFY CHANNEL 'bursts'",
    );
    // Three windows of event time, long past: 5, 2 and 4 matching events (and
    // non-matching ones that do not count).
    let t0: i64 = 1_795_341_600_000_000;
    let window = |start: i64, n: i64| {
        for i in 0..n {
            kubearmor.push(alert("prod", "p", "Block", t0 + start + i * 1000));
            kubearmor.push(alert("prod", "p", "Audit", t0 + start + i * 1000));
        }
    };
    window(0, 5);
    window(2_000_000, 2);
    window(4_000_000, 4);
    firings(port, "burst", 2);
    // The windows are closed (long past): nothing more may fire.
    std::thread::sleep(Duration::from_secs(2));
    let rows = query(
        port,
        "SELECT payload FROM armorlake.rule_firings WHERE rule = 'burst' ORDER BY event_time",
    );
    let windows: Vec<(String, u64)> = rows
        .iter()
        .map(|p| {
            let p: serde_json::Value = serde_json::from_str(p).unwrap();
            (
                p["window_start"].as_str().unwrap().to_string(),
                p["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(windows.len(), 2, "{rows:?}");
    assert_eq!(windows[0].0, "2026-11-22T10:00:00Z", "{rows:?}");
    assert_eq!(windows[1].0, "2026-11-22T10:00:04Z", "{rows:?}");
    assert!(windows.iter().all(|(_, count)| *count > 3), "{rows:?}");
}

/// One window rule over two operators (two clusters, each pulling its own KubeArmor): the
/// master sums each window's counts over the operators and fires once when the sum is
/// above the threshold, even when no operator alone is.
#[test]
fn a_window_rule_sums_its_windows_across_operators() {
    let (east, west) = (KubeArmor::start(), KubeArmor::start());
    let dir = tempfile::tempdir().unwrap();
    let (_master, addr) = distributed::start_master(&dir.path().join("master"), "127.0.0.1:0");
    let master = format!("http://{addr}");
    let ops = [("east-1", "east", &east), ("west-1", "west", &west)];
    let _operators: Vec<_> = ops
        .iter()
        .map(|(name, cluster, kubearmor)| {
            let dir = dir.path().join(name);
            distributed::start_operator(&master, name, cluster, &kubearmor.addr, &dir)
        })
        .collect();
    let (_query, port) = distributed::start_query(&master);
    create(
        port,
        "CREATE ALERT RULE spread ON alerts WHERE action = 'Block' \
         WINDOW '2 seconds' HAVING count(*) > 3",
    );
    // A predicate rule created after it: once it fires on an operator, that operator
    // runs both rules.
    create(
        port,
        "CREATE ALERT RULE probe ON alerts WHERE namespace_name = 'probe'",
    );
    for (name, _, kubearmor) in ops {
        let sql = format!(
            "SELECT count(*) FROM armorlake.rule_firings WHERE rule = 'probe' AND operator = '{name}'"
        );
        eventually(Duration::from_secs(30), &format!("rules on {name}"), || {
            kubearmor.push(alert("probe", "probe", "Audit", now_micros()));
            std::thread::sleep(Duration::from_millis(300));
            (query_i64(port, &sql) > 0).then_some(())
        });
    }

    // Three windows of event time, long past: 2 + 2 (above 3 only summed), 2 + 1 (not
    // above 3), 4 + 0.
    let t0: i64 = 1_795_341_600_000_000;
    let push = |kubearmor: &KubeArmor, start: i64, n: i64| {
        for i in 0..n {
            kubearmor.push(alert("prod", "p", "Block", t0 + start + i * 1000));
        }
    };
    push(&east, 0, 2);
    push(&west, 0, 2);
    push(&east, 2_000_000, 2);
    push(&west, 2_000_000, 1);
    push(&east, 4_000_000, 4);
    firings(port, "spread", 2);
    // Every window has closed on both operators (long past): nothing more may fire.
    std::thread::sleep(Duration::from_secs(3));
    let rows = query(
        port,
        "SELECT operator, payload FROM armorlake.rule_firings WHERE rule = 'spread' \
         ORDER BY event_time",
    );
    let windows: Vec<(String, String, u64)> = rows
        .iter()
        .map(|row| {
            let (operator, payload) = row.split_once('|').unwrap();
            let p: serde_json::Value = serde_json::from_str(payload).unwrap();
            (
                operator.to_string(),
                p["window_start"].as_str().unwrap().to_string(),
                p["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        windows,
        [
            (
                "east-1,west-1".to_string(),
                "2026-11-22T10:00:00Z".to_string(),
                4
            ),
            ("east-1".to_string(), "2026-11-22T10:00:04Z".to_string(), 4),
        ],
        "{rows:?}"
    );
}

/// An HTTP server on 127.0.0.1 that answers 200 to every request and hands over the
/// bodies of the POSTs it gets.
fn webhook_receiver() -> (u16, mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            if request_line.starts_with("POST /hook ") {
                let _ = tx.send(String::from_utf8(body).unwrap());
            }
        }
    });
    (port, rx)
}

#[test]
fn webhooks_are_posted_and_retried_into_dead_letters_when_down() {
    let kubearmor = KubeArmor::start();
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[&kubearmor.addr], &[]);
    let port = up.pg_port;
    let (hook_port, posts) = webhook_receiver();
    // A port nothing listens on.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_port = down.local_addr().unwrap().port();
    drop(down);
    create(
        port,
        &format!(
            "CREATE ALERT RULE hooked ON alerts WHERE pod_name = 'hooked' \
             WEBHOOK 'http://127.0.0.1:{hook_port}/hook'"
        ),
    );
    create(
        port,
        &format!(
            "CREATE ALERT RULE unreachable ON alerts WHERE pod_name = 'unreachable' \
             WEBHOOK 'http://127.0.0.1:{down_port}/hook'"
        ),
    );
    kubearmor.push(alert("prod", "hooked", "Block", now_micros()));
    let body = posts.recv_timeout(Duration::from_secs(30)).unwrap();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["rule"], "hooked");
    assert_eq!(body["payload"]["pod_name"], "hooked");

    kubearmor.push(alert("prod", "unreachable", "Block", now_micros()));
    let counters = eventually(Duration::from_secs(30), "a dead letter", || {
        let rows = query(
            port,
            "SELECT name, firings, deliveries, failures, dead_letters FROM armorlake.rules \
             ORDER BY name",
        );
        rows[1].ends_with("|1").then_some(rows)
    });
    assert_eq!(counters, ["hooked|1|1|0|0", "unreachable|1|0|5|1"]);
    assert!(posts.try_recv().is_err(), "one POST per firing");
}

#[test]
fn bad_rules_are_refused_with_their_sqlstate_and_nothing_is_stored() {
    let kubearmor = KubeArmor::start();
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[&kubearmor.addr], &[]);
    let port = up.pg_port;
    for (sql, code) in [
        (
            "CREATE ALERT RULE r ON alerts WHERE no_such_column = 'x'",
            "42703",
        ),
        ("CREATE ALERT RULE r ON alerts WHERE pod_name", "42804"),
        ("CREATE ALERT RULE r ON nowhere WHERE true", "42P01"),
        (
            "CREATE ALERT RULE r ON alerts WHERE action = 'Block' WINDOW 'soon'",
            "42601",
        ),
        ("DROP ALERT RULE never_made", "42704"),
    ] {
        let (ok, err) = run(port, sql);
        assert!(!ok, "{sql} succeeded");
        assert!(err.contains(code), "{sql}: expected {code}, got {err}");
    }
    assert_eq!(query_i64(port, "SELECT count(*) FROM armorlake.rules"), 0);
    create(port, "CREATE ALERT RULE r ON alerts WHERE action = 'Block'");
    let (ok, err) = run(port, "CREATE ALERT RULE r ON alerts WHERE true");
    assert!(!ok && err.contains("42710"), "{err}");
    assert_eq!(
        query(port, "SELECT name, predicate FROM armorlake.rules"),
        ["r|action = 'Block'"]
    );
    create(port, "DROP ALERT RULE r");
    create(port, "DROP ALERT RULE IF EXISTS r");
    assert_eq!(query_i64(port, "SELECT count(*) FROM armorlake.rules"), 0);
}

#[test]
fn tail_prints_new_matching_rows_and_exits_cleanly_on_ctrl_c() {
    let kubearmor = KubeArmor::start();
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[&kubearmor.addr], &[]);
    let port = up.pg_port;
    kubearmor.push(alert("prod", "before", "Block", now_micros()));
    eventually(Duration::from_secs(30), "the first alert", || {
        (query_i64(port, "SELECT count(*) FROM alerts") > 0).then_some(())
    });
    let mut tail = armorlake()
        .args(["tail", "--port", &port.to_string(), "--interval", "200ms"])
        .args([
            "--query",
            "SELECT timestamp, pod_name, action FROM alerts WHERE action = 'Block'",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stdout = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut stderr = BufReader::new(tail.stderr.take().unwrap());
    let mut ready = String::new();
    stderr.read_line(&mut ready).unwrap();
    assert!(ready.contains("following"), "{ready}");

    kubearmor.push(alert("prod", "after-audit", "Audit", now_micros()));
    kubearmor.push(alert("prod", "after", "Block", now_micros()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut printed = Vec::new();
    while !printed.iter().any(|l: &String| l.contains("| after |")) {
        let left = deadline.saturating_duration_since(Instant::now());
        printed.push(lines.recv_timeout(left).expect("tail printed the new row"));
    }
    assert_eq!(printed[0], "timestamp | pod_name | action");
    assert!(
        !printed
            .iter()
            .any(|l| l.contains("before") || l.contains("audit")),
        "{printed:?}"
    );

    let pid = tail.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tail.wait().unwrap();
    assert!(status.success(), "tail ended with {status}");
}
