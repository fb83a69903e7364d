use std::time::Duration;

use armorlake_ingest::convert::LogBatchBuilder;
use chrono::{DateTime, TimeDelta, Utc};

use super::*;

/// `n` simulated log events, one per millisecond from `start`.
fn logs(n: u64, start: &str) -> RecordBatch {
    let source = armorlake_sim::source(7, 4);
    let start: DateTime<Utc> = start.parse().unwrap();
    let mut builder = LogBatchBuilder::new("op", "sim", n as usize);
    let mut i = 0;
    while builder.len() < n as usize {
        if let Some(log) = source.log(i, start + TimeDelta::milliseconds(builder.len() as i64)) {
            builder.append(&log);
        }
        i += 1;
    }
    builder.finish()
}

fn rule(sql: &str) -> Result<CompiledRule, RuleError> {
    CompiledRule::compile(parse_create_rule(sql)?)
}

#[test]
fn parses_every_clause() {
    let spec = parse_create_rule(
        "CREATE ALERT RULE burst ON logs WHERE result <> 'Passed' AND (operation = 'File' OR \
         operation = 'Network') WINDOW '1 minute' HAVING count(*) > 20 NOTIFY CHANNEL 'sec' \
         WEBHOOK 'http://127.0.0.1:9/hook';",
    )
    .unwrap();
    assert_eq!(spec.name, "burst");
    assert_eq!(spec.table, "logs");
    assert!(
        spec.predicate.starts_with("result <> 'Passed' AND ("),
        "{}",
        spec.predicate
    );
    assert_eq!(
        spec.window,
        Some(Window {
            every: Duration::from_secs(60),
            more_than: 20
        })
    );
    assert_eq!(spec.channel.as_deref(), Some("sec"));
    assert_eq!(spec.webhook.as_deref(), Some("http://127.0.0.1:9/hook"));
    assert!(is_create_alert_rule(
        "create  alert rule x on alerts where true"
    ));
    assert!(!is_create_alert_rule("SELECT 1"));
}

#[test]
fn bad_rules_get_their_sqlstate() {
    let code = |sql: &str| rule(sql).unwrap_err().sqlstate();
    assert_eq!(
        code("CREATE ALERT RULE r ON logs WHERE no_such_column = 1"),
        "42703"
    );
    assert_eq!(code("CREATE ALERT RULE r ON logs WHERE pid + 1"), "42804");
    assert_eq!(code("CREATE ALERT RULE r ON nope WHERE true"), "42P01");
    assert_eq!(code("CREATE ALERT RULE r ON logs"), "42601");
    assert_eq!(
        code("CREATE ALERT RULE r ON logs WHERE true WINDOW 'soon' HAVING count(*) > 1"),
        "42601"
    );
}

#[test]
fn predicate_rules_fire_once_per_matching_event() {
    let batch = logs(500, "2026-11-23T08:00:00Z");
    let denied =
        rule("CREATE ALERT RULE denied ON logs WHERE result = 'Permission denied'").unwrap();
    let expected = denied.matching(&batch).unwrap().num_rows();
    assert!(
        expected > 0 && expected < 500,
        "some but not all match: {expected}"
    );
    let mut engine = RuleEngine::new(vec![denied]);
    let fired = engine.evaluate(Table::Logs, &batch).unwrap();
    assert_eq!(fired.len(), expected);
    assert!(
        fired
            .iter()
            .all(|f| f.payload["result"] == "Permission denied")
    );
    // Another table's batch: its rules do not run.
    let alerts = RecordBatch::new_empty(Table::Alerts.schema());
    assert!(engine.evaluate(Table::Alerts, &alerts).unwrap().is_empty());
}

#[test]
fn window_rules_fire_once_per_window_above_the_threshold() {
    // 3,000 events over 3 s; every event matches; 1 s windows of 1,000 events.
    let batch = logs(3000, "2026-11-23T08:00:00Z");
    let all =
        rule("CREATE ALERT RULE all_ ON logs WHERE pid >= 0 WINDOW '1s' HAVING count(*) > 999")
            .unwrap();
    let matching = all.matching(&batch).unwrap().num_rows();
    assert_eq!(matching, 3000, "pid is never negative");
    let mut engine = RuleEngine::new(vec![all]);
    let fired = engine.evaluate(Table::Logs, &batch).unwrap();
    // The third window is still open: its end has not been seen.
    assert_eq!(fired.len(), 2, "{fired:?}");
    assert_eq!(fired[0].payload["count"], 1000);
    assert_eq!(fired[0].payload["window_start"], "2026-11-23T08:00:00Z");
    let later: i64 = "2026-11-23T08:00:03Z"
        .parse::<DateTime<Utc>>()
        .unwrap()
        .timestamp_micros();
    let closed = engine.close_until(later);
    assert_eq!(closed.len(), 1);
    assert!(engine.close_until(later).is_empty(), "a window fires once");

    // A higher threshold: nothing fires.
    let quiet =
        rule("CREATE ALERT RULE q ON logs WHERE pid >= 0 WINDOW '1 second' HAVING count(*) > 1000")
            .unwrap();
    let mut engine = RuleEngine::new(vec![quiet]);
    assert!(engine.evaluate(Table::Logs, &batch).unwrap().is_empty());
    assert!(engine.close_until(later).is_empty());
}
