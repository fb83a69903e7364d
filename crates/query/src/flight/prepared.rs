//! Prepared statements: planned once, with parameters bound by `DoPut` and substituted on
//! every execution. JDBC and ADBC clients run every query this way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ParamValues;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::LogicalPlan;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// A statement unused this long is forgotten (clients that never close theirs).
const IDLE_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// One prepared statement.
#[derive(Debug, Clone)]
struct Prepared {
    /// The plan, placeholders unbound.
    plan: LogicalPlan,
    /// The parameter values bound last, one per placeholder.
    params: Option<Vec<ScalarValue>>,
    last_used: Instant,
}

/// The prepared statements of a Flight SQL server, by handle.
#[derive(Debug, Default)]
pub(crate) struct Statements {
    by_handle: Mutex<HashMap<Vec<u8>, Prepared>>,
}

fn unknown() -> DataFusionError {
    DataFusionError::Plan("unknown or closed prepared statement".into())
}

impl Statements {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Prepared>> {
        self.by_handle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `plan`; returns its handle.
    pub(crate) fn insert(&self, plan: LogicalPlan) -> Vec<u8> {
        let handle = rand::random::<[u8; 16]>().to_vec();
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, p| now.duration_since(p.last_used) < IDLE_LIFETIME);
        map.insert(
            handle.clone(),
            Prepared {
                plan,
                params: None,
                last_used: now,
            },
        );
        handle
    }

    pub(crate) fn close(&self, handle: &[u8]) {
        self.lock().remove(handle);
    }

    /// Binds the parameter values in `batches`: one row, one column per placeholder.
    pub(crate) fn bind(&self, handle: &[u8], batches: &[RecordBatch]) -> Result<()> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let params = match batches.iter().find(|b| b.num_rows() > 0) {
            None => Vec::new(),
            Some(_) if rows > 1 => {
                return Err(DataFusionError::Plan(format!(
                    "a query takes one row of parameters, got {rows}"
                )));
            }
            Some(batch) => batch
                .columns()
                .iter()
                .map(|column| ScalarValue::try_from_array(column, 0))
                .collect::<Result<_>>()?,
        };
        let mut map = self.lock();
        let prepared = map.get_mut(handle).ok_or_else(unknown)?;
        prepared.params = Some(params);
        prepared.last_used = Instant::now();
        Ok(())
    }

    /// The plan to run: the prepared one with the bound parameters in place.
    pub(crate) fn plan(&self, handle: &[u8]) -> Result<LogicalPlan> {
        let (plan, params) = {
            let mut map = self.lock();
            let prepared = map.get_mut(handle).ok_or_else(unknown)?;
            prepared.last_used = Instant::now();
            (prepared.plan.clone(), prepared.params.clone())
        };
        bind(plan, params.unwrap_or_default())
    }
}

/// Substitutes `values` for the plan's placeholders `$1`, `$2`, …, each cast to the type the
/// planner inferred for it.
fn bind(plan: LogicalPlan, values: Vec<ScalarValue>) -> Result<LogicalPlan> {
    let types = parameter_types(&plan)?;
    if types.is_empty() {
        return Ok(plan);
    }
    if values.len() != types.len() {
        return Err(DataFusionError::Plan(format!(
            "the statement has {} parameters, {} were bound",
            types.len(),
            values.len()
        )));
    }
    let values = values
        .into_iter()
        .zip(&types)
        .map(|(value, expected)| match expected {
            Some(t) if value.data_type() != *t && !value.is_null() => value.cast_to(t),
            _ => Ok(value),
        })
        .map(|v| v.map(Into::into))
        .collect::<Result<Vec<_>>>()?;
    plan.with_param_values(ParamValues::List(values))
}

/// The plan's positional parameters in order, with the types the planner inferred.
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let mut found: Vec<(usize, Option<DataType>)> = plan
        .get_parameter_types()?
        .into_iter()
        .map(|(id, t)| {
            id.strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .map(|n| (n, t))
                .ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "parameter {id}: use positional parameters, ? or $1, $2, …"
                    ))
                })
        })
        .collect::<Result<_>>()?;
    found.sort_by_key(|(n, _)| *n);
    // $1..$n must all be there, even when the query skips one.
    let count = found.last().map_or(0, |(n, _)| *n);
    let mut types = vec![None; count];
    for (n, t) in found {
        if let Some(slot) = types.get_mut(n - 1) {
            *slot = t;
        }
    }
    Ok(types)
}

/// The Arrow schema of a plan's parameters, for `CreatePreparedStatement` (`$1`, `$2`, …;
/// Null where the planner could not infer a type).
pub(crate) fn parameter_schema(plan: &LogicalPlan) -> Result<Schema> {
    let fields: Vec<Field> = parameter_types(plan)?
        .into_iter()
        .enumerate()
        .map(|(i, t)| Field::new(format!("${}", i + 1), t.unwrap_or(DataType::Null), true))
        .collect();
    Ok(Schema::new(fields))
}

/// Rewrites JDBC/ODBC-style `?` placeholders to DataFusion's `$1`, `$2`, … (`?3` becomes
/// `$3`). Question marks inside strings, identifiers and comments stay as they are.
pub(crate) fn number_question_marks(sql: &str) -> String {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        // The planner reports the error.
        return sql.to_string();
    };
    // Byte offset of every (line, column) the tokenizer reports (both 1-based, in chars).
    let mut offsets = HashMap::new();
    let (mut line, mut column) = (1u64, 1u64);
    for (offset, ch) in sql.char_indices() {
        offsets.insert((line, column), offset);
        if ch == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut copied = 0;
    let mut next = 1;
    for t in &tokens {
        let Token::Placeholder(p) = &t.token else {
            continue;
        };
        let Some(digits) = p.strip_prefix('?') else {
            continue;
        };
        let Some(&start) = offsets.get(&(t.span.start.line, t.span.start.column)) else {
            continue;
        };
        let number = match digits {
            "" => {
                let n = next;
                next += 1;
                n.to_string()
            }
            d => d.to_string(),
        };
        out.push_str(&sql[copied..start]);
        out.push('$');
        out.push_str(&number);
        copied = start + p.len();
    }
    out.push_str(&sql[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_become_numbered_outside_strings() {
        assert_eq!(
            number_question_marks("SELECT a FROM t WHERE b = ? AND c = '?' AND d > ?"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND d > $2"
        );
        assert_eq!(
            number_question_marks("SELECT 'é'\n, \"x?\" -- ?\nWHERE x = ?2"),
            "SELECT 'é'\n, \"x?\" -- ?\nWHERE x = $2"
        );
        assert_eq!(number_question_marks("SELECT $1"), "SELECT $1");
    }
}
