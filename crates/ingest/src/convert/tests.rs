#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};

use armorlake_common::Table;
use armorlake_proto::feeder::{Alert, ExecEvent, Log, Message, Podowner};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, TimestampMicrosecondType};

use super::*;

/// `2023-12-28T17:16:16.571714Z` in microseconds since the epoch.
const UPDATED_MICROS: i64 = 1_703_783_776_571_714;

/// One cell of a batch, whatever its column type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Cell {
    Null,
    Text(String),
    Int(i32),
    Time(i64),
    List(Vec<String>),
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_owned())
}

fn list(items: &[&str]) -> Cell {
    Cell::List(items.iter().map(|s| (*s).to_owned()).collect())
}

fn cell(batch: &RecordBatch, column: &str, row: usize) -> Cell {
    let array = batch
        .column_by_name(column)
        .unwrap_or_else(|| panic!("no column {column}"));
    if array.is_null(row) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Utf8 => text(array.as_string::<i32>().value(row)),
        DataType::Int32 => Cell::Int(array.as_primitive::<Int32Type>().value(row)),
        DataType::Timestamp(..) => {
            Cell::Time(array.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(row);
            let items = items.as_string::<i32>();
            Cell::List(items.iter().map(|s| s.unwrap().to_owned()).collect())
        }
        other => panic!("unexpected type {other} of column {column}"),
    }
}

/// Row `row` of `batch` as (column name, cell), for every column of the schema in order.
fn row(batch: &RecordBatch, row: usize) -> Vec<(String, Cell)> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), cell(batch, f.name(), row)))
        .collect()
}

/// Compares a whole row against `expected`, after checking that the expected values are pairwise
/// distinct (so a dropped or swapped field cannot go unnoticed).
fn assert_row(batch: &RecordBatch, index: usize, expected: &[(&str, Cell)]) {
    let values: HashSet<&Cell> = expected.iter().map(|(_, c)| c).collect();
    assert_eq!(
        values.len(),
        expected.len(),
        "expected values must be distinct"
    );
    let expected: Vec<(String, Cell)> = expected
        .iter()
        .map(|(n, c)| ((*n).to_owned(), c.clone()))
        .collect();
    let actual = row(batch, index);
    for (a, e) in actual.iter().zip(&expected) {
        assert_eq!(a, e);
    }
    assert_eq!(actual.len(), expected.len(), "every column is checked");
}

fn event_data() -> HashMap<String, String> {
    [
        ("Syscall", "SYS_OPENAT"),
        ("Fd", "-100"),
        ("Flags", "O_RDONLY"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

const EVENT_DATA_JSON: &str = r#"{"Fd":"-100","Flags":"O_RDONLY","Syscall":"SYS_OPENAT"}"#;

pub(super) fn full_alert() -> Alert {
    Alert {
        timestamp: 1_600_000_000,
        updated_time: "2023-12-28T17:16:16.571714Z".into(),
        cluster_name: "a03-cluster".into(),
        host_name: "a04-host".into(),
        namespace_name: "a05-namespace".into(),
        pod_name: "a06-pod".into(),
        container_id: "a07-container-id".into(),
        container_name: "a08-container".into(),
        host_pid: 109,
        ppid: 110,
        pid: 111,
        uid: 112,
        policy_name: "a13-policy".into(),
        severity: " 5 ".into(),
        tags: "MITRE,T1083".into(),
        message: "a16-message".into(),
        r#type: "MatchedPolicy".into(),
        source: "a18-source".into(),
        operation: "File".into(),
        resource: "a20-resource".into(),
        data: "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY".into(),
        action: "Block".into(),
        result: "Permission denied".into(),
        container_image: "a24-image".into(),
        parent_process_name: "a25-parent".into(),
        process_name: "a26-process".into(),
        host_ppid: 127,
        enforcer: "BPFLSM".into(),
        labels: "app=a29".into(),
        a_tags: vec!["MITRE".into(), "T1083".into()],
        owner: Some(Podowner {
            r#ref: "Deployment".into(),
            name: "a31-owner".into(),
            namespace: "a31-owner-ns".into(),
        }),
        cwd: "/a32/".into(),
        tty: "pts/33".into(),
        max_alerts_per_sec: 134,
        dropping_alerts_interval: 135,
        exec_event: Some(ExecEvent {
            exec_id: "a36-exec-id".into(),
            executable_name: "a36-executable".into(),
        }),
        kube_armor_version: "v1.7.37".into(),
        node_id: "a38-node".into(),
        process_hash: "a39-process-hash".into(),
        parent_hash: "a40-parent-hash".into(),
        resource_hash: "a41-resource-hash".into(),
        hash_algo: "sha256".into(),
        event_data: event_data(),
        user_name: "a44-user".into(),
    }
}

pub(super) fn full_log() -> Log {
    Log {
        timestamp: 1_600_000_000,
        updated_time: "2023-12-28T17:16:16.571714Z".into(),
        cluster_name: "l03-cluster".into(),
        host_name: "l04-host".into(),
        namespace_name: "l05-namespace".into(),
        pod_name: "l06-pod".into(),
        container_id: "l07-container-id".into(),
        container_name: "l08-container".into(),
        host_pid: 209,
        ppid: 210,
        pid: 211,
        uid: 212,
        r#type: "ContainerLog".into(),
        source: "l14-source".into(),
        operation: "File".into(),
        resource: "l16-resource".into(),
        data: "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY".into(),
        result: "Passed".into(),
        container_image: "l19-image".into(),
        parent_process_name: "l20-parent".into(),
        process_name: "l21-process".into(),
        host_ppid: 222,
        labels: "app=l23".into(),
        owner: Some(Podowner {
            r#ref: "StatefulSet".into(),
            name: "l24-owner".into(),
            namespace: "l24-owner-ns".into(),
        }),
        cwd: "/l25/".into(),
        tty: "pts/26".into(),
        exec_event: Some(ExecEvent {
            exec_id: "l27-exec-id".into(),
            executable_name: "l27-executable".into(),
        }),
        node_id: "l28-node".into(),
        process_hash: "l29-process-hash".into(),
        parent_hash: "l30-parent-hash".into(),
        resource_hash: "l31-resource-hash".into(),
        hash_algo: "sha256".into(),
        event_data: event_data(),
        user_name: "l34-user".into(),
    }
}

pub(super) fn full_message() -> Message {
    Message {
        timestamp: 1_600_000_000,
        updated_time: "2023-12-28T17:16:16.571714Z".into(),
        cluster_name: "m03-cluster".into(),
        host_name: "m04-host".into(),
        host_ip: "10.0.0.5".into(),
        r#type: "m06-type".into(),
        level: "INFO".into(),
        message: "m08-message".into(),
    }
}

#[test]
fn alert_maps_every_field_to_its_column() {
    let mut b = AlertBatchBuilder::new("op-1", "10.0.0.1:32767", 8);
    b.append(&full_alert());
    let batch = b.finish();
    assert_eq!(batch.num_rows(), 1);
    assert_row(
        &batch,
        0,
        &[
            ("timestamp", Cell::Time(UPDATED_MICROS)),
            ("cluster_name", text("a03-cluster")),
            ("host_name", text("a04-host")),
            ("namespace_name", text("a05-namespace")),
            ("pod_name", text("a06-pod")),
            ("container_id", text("a07-container-id")),
            ("container_name", text("a08-container")),
            ("host_pid", Cell::Int(109)),
            ("ppid", Cell::Int(110)),
            ("pid", Cell::Int(111)),
            ("uid", Cell::Int(112)),
            ("policy_name", text("a13-policy")),
            ("severity", Cell::Int(5)),
            ("tags", text("MITRE,T1083")),
            ("message", text("a16-message")),
            ("type", text("MatchedPolicy")),
            ("source", text("a18-source")),
            ("operation", text("File")),
            ("resource", text("a20-resource")),
            ("data", text("syscall=SYS_OPENAT fd=-100 flags=O_RDONLY")),
            ("action", text("Block")),
            ("result", text("Permission denied")),
            ("container_image", text("a24-image")),
            ("parent_process_name", text("a25-parent")),
            ("process_name", text("a26-process")),
            ("host_ppid", Cell::Int(127)),
            ("enforcer", text("BPFLSM")),
            ("labels", text("app=a29")),
            ("atags", list(&["MITRE", "T1083"])),
            ("owner_ref", text("Deployment")),
            ("owner_name", text("a31-owner")),
            ("owner_namespace", text("a31-owner-ns")),
            ("cwd", text("/a32/")),
            ("tty", text("pts/33")),
            ("max_alerts_per_sec", Cell::Int(134)),
            ("dropping_alerts_interval", Cell::Int(135)),
            ("exec_id", text("a36-exec-id")),
            ("executable_name", text("a36-executable")),
            ("kubearmor_version", text("v1.7.37")),
            ("node_id", text("a38-node")),
            ("process_hash", text("a39-process-hash")),
            ("parent_hash", text("a40-parent-hash")),
            ("resource_hash", text("a41-resource-hash")),
            ("hash_algo", text("sha256")),
            ("event_data", text(EVENT_DATA_JSON)),
            ("user_name", text("a44-user")),
            ("operator", text("op-1")),
            ("endpoint", text("10.0.0.1:32767")),
        ],
    );
}

#[test]
fn log_maps_every_field_to_its_column() {
    let mut b = LogBatchBuilder::new("op-2", "10.0.0.2:32767", 8);
    b.append(&full_log());
    let batch = b.finish();
    assert_eq!(batch.num_rows(), 1);
    assert_row(
        &batch,
        0,
        &[
            ("timestamp", Cell::Time(UPDATED_MICROS)),
            ("cluster_name", text("l03-cluster")),
            ("host_name", text("l04-host")),
            ("namespace_name", text("l05-namespace")),
            ("pod_name", text("l06-pod")),
            ("container_id", text("l07-container-id")),
            ("container_name", text("l08-container")),
            ("host_pid", Cell::Int(209)),
            ("ppid", Cell::Int(210)),
            ("pid", Cell::Int(211)),
            ("uid", Cell::Int(212)),
            ("type", text("ContainerLog")),
            ("source", text("l14-source")),
            ("operation", text("File")),
            ("resource", text("l16-resource")),
            ("data", text("syscall=SYS_OPENAT fd=-100 flags=O_RDONLY")),
            ("result", text("Passed")),
            ("container_image", text("l19-image")),
            ("parent_process_name", text("l20-parent")),
            ("process_name", text("l21-process")),
            ("host_ppid", Cell::Int(222)),
            ("labels", text("app=l23")),
            ("owner_ref", text("StatefulSet")),
            ("owner_name", text("l24-owner")),
            ("owner_namespace", text("l24-owner-ns")),
            ("cwd", text("/l25/")),
            ("tty", text("pts/26")),
            ("exec_id", text("l27-exec-id")),
            ("executable_name", text("l27-executable")),
            ("node_id", text("l28-node")),
            ("process_hash", text("l29-process-hash")),
            ("parent_hash", text("l30-parent-hash")),
            ("resource_hash", text("l31-resource-hash")),
            ("hash_algo", text("sha256")),
            ("event_data", text(EVENT_DATA_JSON)),
            ("user_name", text("l34-user")),
            ("operator", text("op-2")),
            ("endpoint", text("10.0.0.2:32767")),
        ],
    );
}

#[test]
fn message_maps_every_field_to_its_column() {
    let mut b = MessageBatchBuilder::new("op-3", "10.0.0.3:32767", 8);
    b.append(&full_message());
    let batch = b.finish();
    assert_eq!(batch.num_rows(), 1);
    assert_row(
        &batch,
        0,
        &[
            ("timestamp", Cell::Time(UPDATED_MICROS)),
            ("cluster_name", text("m03-cluster")),
            ("host_name", text("m04-host")),
            ("host_ip", text("10.0.0.5")),
            ("type", text("m06-type")),
            ("level", text("INFO")),
            ("message", text("m08-message")),
            ("operator", text("op-3")),
            ("endpoint", text("10.0.0.3:32767")),
        ],
    );
}

#[test]
fn alert_null_rules() {
    let mut b = AlertBatchBuilder::new("op", "ep", 4);
    let bare = Alert {
        timestamp: 1_700_000_000,
        severity: "high".into(),
        ..Default::default()
    };
    b.append(&bare);
    b.append(&Alert {
        severity: String::new(),
        ..bare.clone()
    });
    b.append(&Alert {
        severity: "-3".into(),
        ..bare.clone()
    });
    let batch = b.finish();
    for column in [
        "owner_ref",
        "owner_name",
        "owner_namespace",
        "exec_id",
        "executable_name",
        "event_data",
    ] {
        assert_eq!(cell(&batch, column, 0), Cell::Null, "{column}");
    }
    assert_eq!(cell(&batch, "severity", 0), Cell::Null, "high");
    assert_eq!(cell(&batch, "severity", 1), Cell::Null, "empty");
    assert_eq!(cell(&batch, "severity", 2), Cell::Int(-3));
    assert_eq!(cell(&batch, "atags", 0), Cell::List(vec![]));
    assert_eq!(
        cell(&batch, "timestamp", 0),
        Cell::Time(1_700_000_000_000_000)
    );
    // Empty proto strings stay empty strings, zero integers stay zero.
    for column in [
        "cluster_name",
        "policy_name",
        "tags",
        "user_name",
        "hash_algo",
    ] {
        assert_eq!(cell(&batch, column, 0), text(""), "{column}");
    }
    for column in ["host_pid", "pid", "max_alerts_per_sec"] {
        assert_eq!(cell(&batch, column, 0), Cell::Int(0), "{column}");
    }
}

#[test]
fn log_null_rules() {
    let mut b = LogBatchBuilder::new("op", "ep", 4);
    b.append(&Log {
        timestamp: 1_700_000_000,
        ..Default::default()
    });
    // An Owner or ExecEvent that is present but empty gives empty strings, not NULL.
    b.append(&Log {
        owner: Some(Podowner::default()),
        exec_event: Some(ExecEvent::default()),
        ..Default::default()
    });
    let batch = b.finish();
    for column in [
        "owner_ref",
        "owner_name",
        "owner_namespace",
        "exec_id",
        "executable_name",
        "event_data",
    ] {
        assert_eq!(cell(&batch, column, 0), Cell::Null, "{column}");
    }
    for column in [
        "owner_ref",
        "owner_name",
        "owner_namespace",
        "exec_id",
        "executable_name",
    ] {
        assert_eq!(cell(&batch, column, 1), text(""), "{column}");
    }
    assert_eq!(cell(&batch, "event_data", 1), Cell::Null);
    assert_eq!(cell(&batch, "namespace_name", 0), text(""));
    assert_eq!(
        cell(&batch, "timestamp", 0),
        Cell::Time(1_700_000_000_000_000)
    );
}

#[test]
fn event_time_prefers_updated_time() {
    assert_eq!(
        event_time_micros(1_600_000_000, "2023-12-28T17:16:16.571714Z"),
        UPDATED_MICROS
    );
    // An explicit offset is converted to UTC.
    assert_eq!(
        event_time_micros(0, "2023-12-28T19:16:16.571714+02:00"),
        UPDATED_MICROS
    );
    // Fewer fractional digits, or none.
    assert_eq!(
        event_time_micros(0, "2023-12-28T17:16:16Z"),
        UPDATED_MICROS - 571_714
    );
}

#[test]
fn event_time_falls_back_to_timestamp() {
    assert_eq!(event_time_micros(1_703_783_776, ""), 1_703_783_776_000_000);
    for malformed in [
        "yesterday",
        "2023-12-28",
        "2023-13-28T17:16:16.571714Z",
        "2023-12-28 17:16:16.571714",
        " 2023-12-28T17:16:16.571714Z",
    ] {
        assert_eq!(
            event_time_micros(1_703_783_776, malformed),
            1_703_783_776_000_000,
            "{malformed}"
        );
    }
    assert_eq!(event_time_micros(i64::MAX, ""), i64::MAX);
    assert_eq!(event_time_micros(i64::MIN, "x"), i64::MIN);
}

#[test]
fn parse_severity_rules() {
    assert_eq!(columns::parse_severity("1"), Some(1));
    assert_eq!(columns::parse_severity(" 10\n"), Some(10));
    assert_eq!(columns::parse_severity(""), None);
    assert_eq!(columns::parse_severity("  "), None);
    assert_eq!(columns::parse_severity("high"), None);
    assert_eq!(columns::parse_severity("1.5"), None);
    assert_eq!(columns::parse_severity("99999999999"), None);
}

#[test]
fn event_data_is_sorted_escaped_json() {
    let mut b = LogBatchBuilder::new("op", "ep", 4);
    let tricky: HashMap<String, String> = [
        ("b\"quote", "line\nbreak"),
        ("a\\slash", "tab\there \u{1}"),
        ("é", "ünïcödé ✓"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    b.append(&Log {
        event_data: tricky.clone(),
        ..Default::default()
    });
    // More entries than fit the inline sort buffer.
    let big: HashMap<String, String> = (0..40)
        .map(|i| (format!("K{:02}", 39 - i), i.to_string()))
        .collect();
    b.append(&Log {
        event_data: big.clone(),
        ..Default::default()
    });
    let batch = b.finish();

    let Cell::Text(json) = cell(&batch, "event_data", 0) else {
        panic!("event_data is NULL")
    };
    assert_eq!(
        json,
        r#"{"a\\slash":"tab\there \u0001","b\"quote":"line\nbreak","é":"ünïcödé ✓"}"#
    );
    let parsed: HashMap<String, String> = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, tricky);

    let Cell::Text(json) = cell(&batch, "event_data", 1) else {
        panic!("event_data is NULL")
    };
    let keys: Vec<String> = serde_json::from_str::<serde_json::Value>(&json)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let expected: Vec<String> = (0..40).map(|i| format!("K{i:02}")).collect();
    assert_eq!(keys, expected);
    assert!(json.starts_with(r#"{"K00":"39","K01":"38","#), "{json}");
    let parsed: HashMap<String, String> = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, big);
}

fn log_with(pid: i32, ns: &str, tags_owner: bool) -> Log {
    Log {
        timestamp: 1_700_000_000 + i64::from(pid),
        pid,
        namespace_name: ns.to_owned(),
        owner: tags_owner.then(|| Podowner {
            r#ref: "Deployment".into(),
            name: format!("owner-{pid}"),
            namespace: ns.to_owned(),
        }),
        ..Default::default()
    }
}

#[test]
fn several_logs_per_batch_and_finish_resets() {
    let mut b = LogBatchBuilder::new("op-a", "ep-a:32767", 2);
    assert!(b.is_empty());
    for (i, pid) in [10, 20, 30].into_iter().enumerate() {
        b.append(&log_with(pid, &format!("ns-{pid}"), i != 1));
    }
    assert_eq!(b.len(), 3);
    assert!(!b.is_empty());

    let batch = b.finish();
    assert!(b.is_empty());
    assert_eq!(b.len(), 0);
    assert_eq!(batch.num_rows(), 3);
    for (row, pid) in [10, 20, 30].into_iter().enumerate() {
        assert_eq!(cell(&batch, "pid", row), Cell::Int(pid));
        assert_eq!(
            cell(&batch, "namespace_name", row),
            text(&format!("ns-{pid}"))
        );
        assert_eq!(
            cell(&batch, "timestamp", row),
            Cell::Time((1_700_000_000 + i64::from(pid)) * 1_000_000)
        );
        assert_eq!(cell(&batch, "operator", row), text("op-a"));
        assert_eq!(cell(&batch, "endpoint", row), text("ep-a:32767"));
    }
    assert_eq!(cell(&batch, "owner_name", 0), text("owner-10"));
    assert_eq!(cell(&batch, "owner_name", 1), Cell::Null);
    assert_eq!(cell(&batch, "owner_name", 2), text("owner-30"));

    // The next batch holds only what was appended after `finish`.
    b.append(&log_with(40, "ns-40", true));
    let batch = b.finish();
    assert_eq!(batch.num_rows(), 1);
    assert_eq!(cell(&batch, "pid", 0), Cell::Int(40));
    assert_eq!(cell(&batch, "owner_name", 0), text("owner-40"));
    assert_eq!(batch.schema(), Table::Logs.schema());

    // An empty batch is still a batch of the table.
    let batch = b.finish();
    assert_eq!(batch.num_rows(), 0);
    assert_eq!(batch.schema(), Table::Logs.schema());
}

#[test]
fn several_alerts_per_batch_and_finish_resets() {
    let mut b = AlertBatchBuilder::new("op-b", "ep-b", 0);
    let mut second = full_alert();
    second.a_tags = vec![];
    second.pid = 2;
    second.event_data.clear();
    let mut third = full_alert();
    third.a_tags = vec!["x".into(), "y".into(), "z".into()];
    third.pid = 3;
    b.append(&full_alert());
    b.append(&second);
    b.append(&third);
    assert_eq!(b.len(), 3);
    let batch = b.finish();
    assert!(b.is_empty());
    assert_eq!(batch.num_rows(), 3);
    assert_eq!(cell(&batch, "atags", 0), list(&["MITRE", "T1083"]));
    assert_eq!(cell(&batch, "atags", 1), list(&[]));
    assert_eq!(cell(&batch, "atags", 2), list(&["x", "y", "z"]));
    assert_eq!(cell(&batch, "event_data", 1), Cell::Null);
    assert_eq!(cell(&batch, "event_data", 2), text(EVENT_DATA_JSON));
    assert_eq!(cell(&batch, "pid", 1), Cell::Int(2));
    assert_eq!(cell(&batch, "pid", 2), Cell::Int(3));
    for row in 0..3 {
        assert_eq!(cell(&batch, "operator", row), text("op-b"));
        assert_eq!(cell(&batch, "endpoint", row), text("ep-b"));
    }

    b.append(&third);
    let batch = b.finish();
    assert_eq!(batch.num_rows(), 1);
    assert_eq!(cell(&batch, "atags", 0), list(&["x", "y", "z"]));
    assert_eq!(cell(&batch, "pid", 0), Cell::Int(3));
}

#[test]
fn several_messages_per_batch_and_finish_resets() {
    let mut b = MessageBatchBuilder::new("op-c", "ep-c", 1);
    for level in ["INFO", "DEBUG", "WARN"] {
        b.append(&Message {
            level: level.into(),
            ..full_message()
        });
    }
    assert_eq!(b.len(), 3);
    let batch = b.finish();
    assert!(b.is_empty());
    assert_eq!(batch.num_rows(), 3);
    assert_eq!(cell(&batch, "level", 2), text("WARN"));
    assert_eq!(cell(&batch, "endpoint", 2), text("ep-c"));
    b.append(&Message::default());
    let batch = b.finish();
    assert_eq!(batch.num_rows(), 1);
    assert_eq!(cell(&batch, "level", 0), text(""));
    assert_eq!(cell(&batch, "timestamp", 0), Cell::Time(0));
}

#[test]
fn batch_schemas_are_the_table_schemas() {
    let mut alerts = AlertBatchBuilder::new("op", "ep", 16);
    let mut logs = LogBatchBuilder::new("op", "ep", 16);
    let mut messages = MessageBatchBuilder::new("op", "ep", 16);
    assert_eq!(alerts.finish().schema(), Table::Alerts.schema());
    assert_eq!(logs.finish().schema(), Table::Logs.schema());
    assert_eq!(messages.finish().schema(), Table::Messages.schema());
    alerts.append(&full_alert());
    logs.append(&full_log());
    messages.append(&full_message());
    assert_eq!(alerts.finish().schema(), Table::Alerts.schema());
    assert_eq!(logs.finish().schema(), Table::Logs.schema());
    assert_eq!(messages.finish().schema(), Table::Messages.schema());
}

#[test]
fn column_structs_follow_schema_order() {
    for (table, names) in [
        (Table::Alerts, AlertColumns::NAMES),
        (Table::Logs, LogColumns::NAMES),
        (Table::Messages, MessageColumns::NAMES),
    ] {
        let mut expected: Vec<&str> = names.iter().map(|n| n.trim_start_matches("r#")).collect();
        expected.extend(["operator", "endpoint"]);
        let schema = table.schema();
        let actual: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(actual, expected, "{table}");
    }
}

#[test]
fn builders_survive_many_batches() {
    // Presizing after the previous batch must not lose or corrupt rows across batches.
    let mut b = AlertBatchBuilder::new("op", "ep", 3);
    for round in 0..5 {
        for i in 0..(round * 2 + 1) {
            let mut a = full_alert();
            a.pid = i;
            a.resource = "r".repeat(i as usize * 10);
            b.append(&a);
        }
        let batch = b.finish();
        assert_eq!(batch.num_rows(), (round * 2 + 1) as usize);
        for i in 0..batch.num_rows() {
            assert_eq!(cell(&batch, "pid", i), Cell::Int(i as i32));
            assert_eq!(cell(&batch, "resource", i), text(&"r".repeat(i * 10)));
        }
    }
}

#[test]
fn a_few_rows_do_not_keep_a_full_batch_of_memory() {
    // Sized for 4,096 rows, as the pullers do; a quiet stream hands off after a few.
    let mut alerts = AlertBatchBuilder::new("op", "ep", 4096);
    for _ in 0..3 {
        alerts.append(&full_alert());
    }
    let small = alerts.finish();
    assert_eq!(small.num_rows(), 3);
    let bytes = small.get_array_memory_size();
    assert!(bytes < 256 * 1024, "3 alerts hold {bytes} bytes");
    for _ in 0..4096 {
        alerts.append(&full_alert());
    }
    let full = alerts.finish();
    assert_eq!(full.num_rows(), 4096);
    // Per row, the small batch costs no more than a few times the full one.
    let per_row = |b: &RecordBatch| b.get_array_memory_size() / b.num_rows();
    assert!(
        per_row(&small) < 8 * per_row(&full) + 4096,
        "{} vs {}",
        per_row(&small),
        per_row(&full)
    );
}
