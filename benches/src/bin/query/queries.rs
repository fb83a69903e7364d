//! The eight queries, and comparing their answers across systems.
//!
//! The SQL is the same text for every system (armorlake, PostgreSQL 15, DuckDB): standard
//! SQL plus `date_trunc`, which all three have. Answers are compared after normalising each
//! value (integers, decimals to 6 places, timestamps to microseconds since the epoch), so
//! that `2026-11-21 01:00:00+00` (PostgreSQL) and `2026-11-21T01:00:00+00:00` agree.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeDelta, Utc};

use crate::data::Dataset;

/// A query's rows, every value as text (`None`: NULL).
pub type Answer = Vec<Vec<Option<String>>>;

/// How answers are compared across systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Row by row (the query orders them completely).
    Rows,
    /// Only the number of rows (`LIMIT` without `ORDER BY` picks any rows).
    RowCount,
}

/// One benchmark query.
#[derive(Debug, Clone)]
pub struct Query {
    /// Short name for the tables.
    pub name: &'static str,
    pub sql: String,
    pub compare: Compare,
}

/// A time as an SQL literal (RFC 3339, UTC).
fn literal(t: DateTime<Utc>) -> String {
    format!("'{}'", t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// The benchmark's queries over `data`.
pub fn queries(data: &Dataset) -> Vec<Query> {
    let hour = data.first_hour();
    let next_hour = hour + TimeDelta::hours(1);
    let point = data.point_lookup();
    let q = |name, sql: String, compare| Query { name, sql, compare };
    vec![
        q(
            "count by namespace",
            "SELECT namespace_name, count(*) AS n FROM logs GROUP BY namespace_name \
             ORDER BY namespace_name"
                .into(),
            Compare::Rows,
        ),
        q(
            "top-10 processes by alerts",
            "SELECT process_name, count(*) AS n FROM alerts GROUP BY process_name \
             ORDER BY n DESC, process_name LIMIT 10"
                .into(),
            Compare::Rows,
        ),
        q(
            "per-minute buckets, 1 hour",
            format!(
                "SELECT date_trunc('minute', \"timestamp\") AS minute, count(*) AS n FROM logs \
                 WHERE \"timestamp\" >= {} AND \"timestamp\" < {} GROUP BY 1 ORDER BY 1",
                literal(hour),
                literal(next_hour)
            ),
            Compare::Rows,
        ),
        q(
            "count distinct pods",
            "SELECT count(DISTINCT pod_name) AS pods FROM logs".into(),
            Compare::Rows,
        ),
        q(
            "selective filter",
            "SELECT \"timestamp\", host_name, pod_name, process_name, resource FROM logs \
             WHERE operation = 'File' AND resource = '/etc/shadow' \
             ORDER BY \"timestamp\", host_name, pod_name"
                .into(),
            Compare::Rows,
        ),
        q(
            "LIMIT scan",
            "SELECT \"timestamp\", host_name, pod_name, operation, resource FROM logs LIMIT 1000"
                .into(),
            Compare::RowCount,
        ),
        q(
            "join alerts × logs",
            "SELECT a.namespace_name, count(*) AS alerts, sum(l.n) AS logs \
             FROM alerts a JOIN (SELECT container_id, count(*) AS n FROM logs \
             WHERE container_id <> '' GROUP BY container_id) l \
             ON a.container_id = l.container_id GROUP BY a.namespace_name \
             ORDER BY a.namespace_name"
                .into(),
            Compare::Rows,
        ),
        q(
            "point lookup, 1 hour",
            format!(
                "SELECT \"timestamp\", host_name, pod_name, process_name, operation, resource \
                 FROM logs WHERE \"timestamp\" = {}",
                literal(point)
            ),
            Compare::Rows,
        ),
    ]
}

/// A value in a form every system agrees on.
fn normalise(value: &Option<String>) -> String {
    let Some(v) = value else {
        return "NULL".into();
    };
    if let Ok(i) = v.parse::<i64>() {
        return i.to_string();
    }
    if let Ok(f) = v.parse::<f64>() {
        return format!("{f:.6}");
    }
    if v.len() >= 19 && v.as_bytes().get(4) == Some(&b'-') {
        let spaced = v.replacen('T', " ", 1);
        if let Ok(t) = DateTime::parse_from_str(&spaced, "%Y-%m-%d %H:%M:%S%.f%#z") {
            return format!("t{}", t.timestamp_micros());
        }
        if let Ok(t) = NaiveDateTime::parse_from_str(&spaced, "%Y-%m-%d %H:%M:%S%.f") {
            return format!("t{}", t.and_utc().timestamp_micros());
        }
    }
    v.clone()
}

/// `None` when `a` and `b` agree under `compare`, else what differs.
pub fn differs(compare: Compare, a: &Answer, b: &Answer) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} rows against {}", a.len(), b.len()));
    }
    if compare == Compare::RowCount {
        return None;
    }
    for (i, (ra, rb)) in a.iter().zip(b).enumerate() {
        let na: Vec<String> = ra.iter().map(normalise).collect();
        let nb: Vec<String> = rb.iter().map(normalise).collect();
        if na != nb {
            return Some(format!("row {}: {ra:?} against {rb:?}", i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_timestamps_and_numbers() {
        let t = |s: &str| normalise(&Some(s.to_string()));
        assert_eq!(t("2026-11-21 01:00:00+00"), t("2026-11-21T01:00:00+00:00"));
        assert_eq!(
            t("2026-11-21 01:00:00.5+00"),
            t("2026-11-21 01:00:00.500000")
        );
        assert_eq!(t("42"), "42");
        assert_eq!(t("1.50"), t("1.5"));
        assert_eq!(normalise(&None), "NULL");
    }
}
