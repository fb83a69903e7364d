//! Unit tests of the event sequence (the server's end-to-end tests are in `tests_server.rs`).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};

use crate::*;

/// A fixed event time, 2023-12-28T17:16:16.571714Z.
pub(crate) fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2023, 12, 28, 17, 16, 16).unwrap()
        + chrono::TimeDelta::microseconds(571_714)
}

fn kinds(seed: u64, count: u64) -> HashMap<EventKind, u64> {
    let mut m = HashMap::new();
    for n in 0..count {
        *m.entry(kind(seed, n)).or_default() += 1;
    }
    m
}

/// Every field of an alert is set (non-empty, non-zero), nested messages included.
fn alert_complete(a: &Alert) -> bool {
    let owner = a
        .owner
        .as_ref()
        .is_some_and(|o| !o.r#ref.is_empty() && !o.name.is_empty() && !o.namespace.is_empty());
    let exec = a
        .exec_event
        .as_ref()
        .is_some_and(|e| !e.exec_id.is_empty() && !e.executable_name.is_empty());
    let strings = [
        &a.updated_time,
        &a.cluster_name,
        &a.host_name,
        &a.namespace_name,
        &a.pod_name,
        &a.container_id,
        &a.container_name,
        &a.policy_name,
        &a.severity,
        &a.tags,
        &a.message,
        &a.r#type,
        &a.source,
        &a.operation,
        &a.resource,
        &a.data,
        &a.action,
        &a.result,
        &a.container_image,
        &a.parent_process_name,
        &a.process_name,
        &a.enforcer,
        &a.labels,
        &a.cwd,
        &a.tty,
        &a.kube_armor_version,
        &a.node_id,
        &a.process_hash,
        &a.parent_hash,
        &a.resource_hash,
        &a.hash_algo,
        &a.user_name,
    ];
    let ints = [
        a.host_pid,
        a.ppid,
        a.pid,
        a.host_ppid,
        a.max_alerts_per_sec,
        a.dropping_alerts_interval,
    ];
    // UID 0 (root) is a real value; it is the one integer allowed to be zero.
    owner
        && exec
        && a.timestamp > 0
        && !a.a_tags.is_empty()
        && !a.event_data.is_empty()
        && strings.iter().all(|s| !s.is_empty())
        && ints.iter().all(|&i| i != 0)
}

/// Every field of a log is set.
fn log_complete(l: &Log) -> bool {
    let owner = l
        .owner
        .as_ref()
        .is_some_and(|o| !o.r#ref.is_empty() && !o.name.is_empty() && !o.namespace.is_empty());
    let exec = l
        .exec_event
        .as_ref()
        .is_some_and(|e| !e.exec_id.is_empty() && !e.executable_name.is_empty());
    let strings = [
        &l.updated_time,
        &l.cluster_name,
        &l.host_name,
        &l.namespace_name,
        &l.pod_name,
        &l.container_id,
        &l.container_name,
        &l.r#type,
        &l.source,
        &l.operation,
        &l.resource,
        &l.data,
        &l.result,
        &l.container_image,
        &l.parent_process_name,
        &l.process_name,
        &l.labels,
        &l.cwd,
        &l.tty,
        &l.node_id,
        &l.process_hash,
        &l.parent_hash,
        &l.resource_hash,
        &l.hash_algo,
        &l.user_name,
    ];
    let ints = [l.host_pid, l.ppid, l.pid, l.host_ppid];
    owner
        && exec
        && l.timestamp > 0
        && !l.event_data.is_empty()
        && strings.iter().all(|s| !s.is_empty())
        && ints.iter().all(|&i| i != 0)
}

#[test]
fn deterministic_per_seed() {
    for n in 0..2000 {
        assert_eq!(event(1, 4, n, at()), event(1, 4, n, at()));
    }
    let a = EventSource::new(9, 3);
    let b = EventSource::new(9, 3);
    assert_eq!(a.log_variants(), b.log_variants());
    assert_eq!(a.alert_variants(), b.alert_variants());
    assert_eq!(a.message_variants(), b.message_variants());
    let same = (0..2000)
        .filter(|&n| event(1, 4, n, at()) == event(2, 4, n, at()))
        .count();
    assert!(same < 20, "{same} of 2000 events equal across seeds");
}

/// The pre-encoded path decodes to exactly what `event()` builds.
#[test]
fn wire_encoding_matches_event() {
    use prost::Message as _;
    for (seed, nodes) in [(1, 4), (77, 1), (3, 9)] {
        let src = EventSource::new(seed, nodes);
        let mut buf = Vec::new();
        for n in 0..30_000 {
            let t = at() + chrono::TimeDelta::microseconds(n as i64 * 37);
            buf.clear();
            let kind = src.encode(n, t, &mut buf);
            let event = src.event(n, t);
            assert_eq!(kind, event.kind());
            let decoded = match kind {
                EventKind::Log => SimEvent::Log(Log::decode(buf.as_slice()).unwrap()),
                EventKind::Alert => SimEvent::Alert(Alert::decode(buf.as_slice()).unwrap()),
                EventKind::Message => SimEvent::Message(Message::decode(buf.as_slice()).unwrap()),
            };
            assert_eq!(decoded, event, "seed {seed} n {n}");
            let prost_len = match &event {
                SimEvent::Log(l) => l.encoded_len(),
                SimEvent::Alert(a) => a.encoded_len(),
                SimEvent::Message(m) => m.encoded_len(),
            };
            assert_eq!(buf.len(), prost_len, "same size as prost's encoding");
        }
    }
}

#[test]
fn kind_ratio() {
    let m = kinds(1, 100_000);
    let (logs, alerts, messages) = (
        m[&EventKind::Log],
        m[&EventKind::Alert],
        m[&EventKind::Message],
    );
    let ratio = logs as f64 / alerts as f64;
    assert!((26.0..35.0).contains(&ratio), "logs:alerts = {ratio}");
    assert!(
        (300..800).contains(&messages),
        "{messages} messages in 100k"
    );
    assert_eq!(kinds(1, 1000), kinds(1, 1000));
}

#[test]
fn complete_events_exist() {
    let src = source(1, 4);
    let (mut full_alerts, mut full_logs, mut throttles) = (0, 0, 0);
    for n in 0..100_000 {
        match src.event(n, at()) {
            SimEvent::Alert(a) => {
                full_alerts += usize::from(alert_complete(&a));
                if a.r#type == "SystemEvent" {
                    assert_eq!(
                        (
                            a.operation.as_str(),
                            a.max_alerts_per_sec,
                            a.dropping_alerts_interval
                        ),
                        ("AlertThreshold", 10, 30)
                    );
                    throttles += 1;
                }
            }
            SimEvent::Log(l) => full_logs += usize::from(log_complete(&l)),
            SimEvent::Message(m) => {
                assert!(["INFO", "DEBUG", "WARN", "ERROR"].contains(&m.level.as_str()));
                assert!(
                    !m.host_ip.is_empty() && !m.message.is_empty() && !m.cluster_name.is_empty()
                );
            }
        }
    }
    assert!(
        full_alerts > 0 && full_logs > 0,
        "alerts {full_alerts}, logs {full_logs}"
    );
    assert!(
        throttles > 0 && throttles < 400,
        "{throttles} throttling alerts"
    );
}

#[test]
fn field_shapes() {
    let src = EventSource::new(3, 6);
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut host_logs = 0;
    for n in 0..20_000 {
        match src.event(n, at()) {
            SimEvent::Log(l) => {
                assert_eq!(l.event_data, crate::scenario::event_data(&l.data));
                assert!(hex64(&l.node_id));
                if l.r#type == "HostLog" {
                    host_logs += 1;
                    assert!(
                        l.namespace_name.is_empty()
                            && l.pod_name.is_empty()
                            && l.container_id.is_empty()
                    );
                    assert_eq!((l.pid, l.ppid), (l.host_pid, l.host_ppid));
                } else {
                    assert_eq!(l.r#type, "ContainerLog");
                    assert!(hex64(&l.container_id) && l.container_image.contains("@sha256:"));
                    assert!(l.labels.starts_with("app=") && l.owner.is_some());
                }
                assert!(l.ppid < l.pid || l.r#type == "HostLog");
                if l.operation == "Process" {
                    assert!(l.exec_event.is_some());
                }
            }
            SimEvent::Alert(a) => {
                assert_eq!(a.a_tags, a.tags.split(',').collect::<Vec<_>>());
                assert!((1..=10).contains(&a.severity.parse::<u32>().unwrap()));
                assert_eq!(a.kube_armor_version, "v1.7.4");
                assert!(["Allow", "Audit", "Block", "Audit (Block)"].contains(&a.action.as_str()));
            }
            SimEvent::Message(_) => {}
        }
    }
    assert!(host_logs > 500, "{host_logs} host logs");
    let clusters: std::collections::HashSet<_> = src
        .log_variants()
        .iter()
        .map(|l| l.cluster_name.clone())
        .collect();
    assert!((2..=3).contains(&clusters.len()));
}

#[test]
fn updated_time_format() {
    assert_eq!(updated_time(&at()), "2023-12-28T17:16:16.571714Z");
    let t = Utc.with_ymd_and_hms(2024, 2, 9, 3, 4, 5).unwrap();
    assert_eq!(updated_time(&t), "2024-02-09T03:04:05.000000Z");
    let t = t + chrono::TimeDelta::nanoseconds(999_999_999);
    assert_eq!(updated_time(&t), "2024-02-09T03:04:05.999999Z");
    for secs in [0_i64, 1_700_000_000, 1_234_567_891] {
        let t = Utc.timestamp_opt(secs, 123_456_789).unwrap();
        assert_eq!(
            updated_time(&t),
            t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
        );
    }
    match event(5, 2, 7, at()) {
        SimEvent::Alert(a) => assert_eq!(
            (a.timestamp, a.updated_time.as_str()),
            (1_703_783_776, "2023-12-28T17:16:16.571714Z")
        ),
        SimEvent::Log(l) => assert_eq!(
            (l.timestamp, l.updated_time.as_str()),
            (1_703_783_776, "2023-12-28T17:16:16.571714Z")
        ),
        SimEvent::Message(m) => assert_eq!(
            (m.timestamp, m.updated_time.as_str()),
            (1_703_783_776, "2023-12-28T17:16:16.571714Z")
        ),
    }
}

/// `cargo test -p armorlake-sim --release -- --ignored --nocapture throughput`
#[test]
#[ignore = "measurement, run in release mode"]
fn throughput() {
    use prost::Message as _;
    let src = EventSource::new(1, 4);
    let total = 2_000_000u64;
    let start = std::time::Instant::now();
    let mut bytes = 0usize;
    for n in 0..total {
        match src.event(n, Utc::now()) {
            SimEvent::Alert(a) => bytes += a.timestamp as usize & 1,
            SimEvent::Log(l) => bytes += l.pid as usize & 1,
            SimEvent::Message(m) => bytes += m.timestamp as usize & 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("event(): {:.0} events/s ({bytes})", total as f64 / secs);
    let now = Utc::now();
    let mut buf = Vec::with_capacity(2048);
    let start = std::time::Instant::now();
    for n in 0..total {
        buf.clear();
        src.encode(n, now, &mut buf);
    }
    println!(
        "encode(): {:.0} events/s ({bytes})",
        total as f64 / start.elapsed().as_secs_f64()
    );
    let (mut log_bytes, mut logs, mut alert_bytes, mut alerts) = (0, 0, 0, 0);
    for n in 0..100_000 {
        match src.event(n, Utc::now()) {
            SimEvent::Alert(a) => {
                (alert_bytes, alerts) = (alert_bytes + a.encoded_len(), alerts + 1)
            }
            SimEvent::Log(l) => (log_bytes, logs) = (log_bytes + l.encoded_len(), logs + 1),
            SimEvent::Message(_) => {}
        }
    }
    println!(
        "mean encoded size: log {} B, alert {} B",
        log_bytes / logs,
        alert_bytes / alerts
    );
    for n in 0..5 {
        println!("{:?}", src.event(n, Utc::now()));
    }
}
