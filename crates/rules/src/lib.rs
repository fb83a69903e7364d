//! Alert rules, evaluated on every batch an operator ingests.
//!
//! A rule is `CREATE ALERT RULE name ON table WHERE <predicate> [WINDOW '<interval>' HAVING
//! count(*) > N] [NOTIFY CHANNEL 'chan'] [WEBHOOK 'url']` ([`parse_create_rule`]). A predicate
//! rule fires once per matching event, with the event as its payload. A window rule counts
//! matching events in tumbling windows of event time (aligned on the epoch) and fires once
//! per window whose count exceeds N, when the window has closed: when an event at or after
//! its end arrives, or [`RuleEngine::close_until`] says time has passed it.
//!
//! Delivery (LISTEN/NOTIFY, webhooks) and storage of rules and firings belong to the roles
//! that use this crate.

mod parse;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use armorlake_common::{TIMESTAMP_COLUMN, Table};
use arrow::array::{Array, BooleanArray, TimestampMicrosecondArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{DFSchema, DataFusionError};
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

pub use parse::{is_create_alert_rule, parse_create_rule};

/// A window rule's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Its length.
    pub every: Duration,
    /// It fires when more than this many events match in one window.
    pub more_than: u64,
}

/// A rule as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// Its name.
    pub name: String,
    /// The table it watches (`alerts`, `logs` or `messages`).
    pub table: String,
    /// The SQL predicate over that table's columns.
    pub predicate: String,
    /// Set for a window rule.
    pub window: Option<Window>,
    /// The LISTEN/NOTIFY channel its firings go to.
    pub channel: Option<String>,
    /// The URL its firings are POSTed to.
    pub webhook: Option<String>,
}

/// Why a rule is refused. [`RuleError::sqlstate`] gives the PostgreSQL code.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The statement does not parse.
    #[error("syntax error in alert rule: {0}")]
    Syntax(String),
    /// The table does not exist.
    #[error("relation \"{0}\" does not exist")]
    UnknownTable(String),
    /// The predicate names a column the table does not have.
    #[error("{0}")]
    UnknownColumn(String),
    /// The predicate is not a boolean expression.
    #[error("argument of WHERE must be type boolean, not type {0}")]
    NotBoolean(String),
    /// Anything else the planner refused.
    #[error("{0}")]
    Invalid(String),
}

impl RuleError {
    /// The SQLSTATE a client gets for it.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            RuleError::Syntax(_) => "42601",
            RuleError::UnknownTable(_) => "42P01",
            RuleError::UnknownColumn(_) => "42703",
            RuleError::NotBoolean(_) => "42804",
            RuleError::Invalid(_) => "42000",
        }
    }
}

fn planner_error(e: DataFusionError) -> RuleError {
    let text = e.find_root().to_string();
    match e.find_root() {
        DataFusionError::SchemaError(..) => RuleError::UnknownColumn(text),
        DataFusionError::SQL(..) => RuleError::Syntax(text),
        _ => RuleError::Invalid(text),
    }
}

/// A rule checked against its table and ready to run on batches.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    spec: RuleSpec,
    table: Table,
    predicate: Arc<dyn PhysicalExpr>,
}

impl CompiledRule {
    /// Checks `spec` against its table: the table exists, every column does, and the
    /// predicate is boolean.
    pub fn compile(spec: RuleSpec) -> Result<CompiledRule, RuleError> {
        let table = Table::from_name(&spec.table.to_ascii_lowercase())
            .ok_or_else(|| RuleError::UnknownTable(spec.table.clone()))?;
        let schema = DFSchema::try_from(table.schema().as_ref().clone())
            .map_err(|e| RuleError::Invalid(e.to_string()))?;
        let ctx = SessionContext::new();
        let expr = ctx
            .parse_sql_expr(&spec.predicate, &schema)
            .map_err(planner_error)?;
        let data_type = expr.get_type(&schema).map_err(planner_error)?;
        if data_type != arrow::datatypes::DataType::Boolean {
            return Err(RuleError::NotBoolean(data_type.to_string()));
        }
        let predicate = ctx
            .create_physical_expr(expr, &schema)
            .map_err(planner_error)?;
        Ok(CompiledRule {
            spec,
            table,
            predicate,
        })
    }

    /// The rule as written.
    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }

    /// The table it watches.
    pub fn table(&self) -> Table {
        self.table
    }

    /// The rows of `batch` (a batch of its table) that match.
    pub fn matching(&self, batch: &RecordBatch) -> Result<RecordBatch, DataFusionError> {
        let value = self.predicate.evaluate(batch)?;
        let mask = value.into_array(batch.num_rows())?;
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| DataFusionError::Internal("predicate is not boolean".into()))?;
        Ok(filter_record_batch(batch, mask)?)
    }
}

/// One firing of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// The rule's name.
    pub rule: String,
    /// Event time: the event's, or the window's start.
    pub at_micros: i64,
    /// The event (column → value) or the window (`window_start`, `window_end`, `count`).
    pub payload: serde_json::Value,
}

/// The open windows of one window rule: window start → matching events.
type Windows = BTreeMap<i64, u64>;

/// The rules of one operator, with their window state.
#[derive(Debug, Default)]
pub struct RuleEngine {
    rules: Vec<(CompiledRule, Windows)>,
}

impl RuleEngine {
    /// An engine running `rules`.
    pub fn new(rules: Vec<CompiledRule>) -> RuleEngine {
        RuleEngine {
            rules: rules.into_iter().map(|r| (r, Windows::new())).collect(),
        }
    }

    /// How many rules it runs.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether it runs none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Runs every rule of `table` on `batch`; returns what fired.
    pub fn evaluate(
        &mut self,
        table: Table,
        batch: &RecordBatch,
    ) -> Result<Vec<Firing>, DataFusionError> {
        let mut fired = Vec::new();
        for (rule, windows) in self.rules.iter_mut().filter(|(r, _)| r.table == table) {
            let matching = rule.matching(batch)?;
            let times = timestamps(&matching)?;
            match rule.spec.window {
                None => {
                    for row in 0..matching.num_rows() {
                        fired.push(Firing {
                            rule: rule.spec.name.clone(),
                            at_micros: times.value(row),
                            payload: row_json(&matching, row)?,
                        });
                    }
                }
                Some(window) => {
                    let width = micros(window.every);
                    for t in times.iter().flatten() {
                        *windows.entry(t.div_euclid(width) * width).or_default() += 1;
                    }
                    // Events of a later window close the earlier ones.
                    let newest = timestamps(batch)?.iter().flatten().max();
                    if let Some(newest) = newest {
                        fired.extend(close(&rule.spec, window, windows, newest));
                    }
                }
            }
        }
        Ok(fired)
    }

    /// Closes every window that ends at or before `now_micros` (time passing without
    /// events); returns what fired.
    pub fn close_until(&mut self, now_micros: i64) -> Vec<Firing> {
        let mut fired = Vec::new();
        for (rule, windows) in &mut self.rules {
            if let Some(window) = rule.spec.window {
                fired.extend(close(&rule.spec, window, windows, now_micros));
            }
        }
        fired
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX).max(1)
}

/// Closes the windows of `spec` that end at or before `now`.
fn close(spec: &RuleSpec, window: Window, windows: &mut Windows, now: i64) -> Vec<Firing> {
    let width = micros(window.every);
    let mut fired = Vec::new();
    while let Some((&start, &count)) = windows.first_key_value() {
        if start.saturating_add(width) > now {
            break;
        }
        windows.remove(&start);
        if count > window.more_than {
            fired.push(Firing {
                rule: spec.name.clone(),
                at_micros: start,
                payload: serde_json::json!({
                    "rule": spec.name,
                    "window_start": format_micros(start),
                    "window_end": format_micros(start + width),
                    "count": count,
                }),
            });
        }
    }
    fired
}

fn format_micros(micros: i64) -> String {
    let array = TimestampMicrosecondArray::from(vec![micros]).with_timezone("UTC");
    ArrayFormatter::try_new(&array, &FormatOptions::default())
        .map(|f| f.value(0).to_string())
        .unwrap_or_else(|_| micros.to_string())
}

fn timestamps(batch: &RecordBatch) -> Result<TimestampMicrosecondArray, DataFusionError> {
    let column = batch
        .column_by_name(TIMESTAMP_COLUMN)
        .ok_or_else(|| DataFusionError::Internal("batch without a timestamp".into()))?;
    column
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal("timestamp is not in microseconds".into()))
}

/// Row `row` of `batch` as a JSON object of its non-null columns, values as text.
fn row_json(batch: &RecordBatch, row: usize) -> Result<serde_json::Value, DataFusionError> {
    let options = FormatOptions::default();
    let mut object = serde_json::Map::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if column.is_null(row) {
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
        object.insert(
            field.name().clone(),
            serde_json::Value::String(formatter.value(row).to_string()),
        );
    }
    Ok(serde_json::Value::Object(object))
}

#[cfg(test)]
mod tests;
