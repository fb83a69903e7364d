//! Conditions on text decided once per dictionary value instead of once per row.
//!
//! Text read from Parquet as `Utf8View` costs a 16-byte view built per row from the page's
//! dictionary, and a condition such as `operation = 'File'` then compares every row's view.
//! Read as a dictionary instead, a column chunk is its dictionary page (a few hundred values)
//! and a 4-byte key per row: a condition on that column alone is decided for each value of
//! the dictionary, and each row takes its value's answer by key. The rows the filter keeps
//! are then turned into views, as the plan above expects them.
//!
//! [`over_dictionaries`] does this to a `FilterExec` reading an [`OperatorScanExec`]: every
//! text column the scan gives as views that a condition reads alone (and none together
//! with another column) is read as a dictionary, each such condition is wrapped in a
//! [`PerDictionaryValue`], and a projection above the filter casts the kept columns back.
//! It runs where the scan does (see [`crate::local`]), so the expression never crosses the
//! network.

use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{CastExpr, Column};
use datafusion::physical_expr::utils::{collect_columns, conjunction, split_conjunction};
use datafusion::physical_expr_common::physical_expr::{fmt_sql, is_volatile};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;

use crate::scan::OperatorScanExec;

/// `plan` with each `FilterExec` right over an [`OperatorScanExec`] that `applies` to
/// deciding its conditions on text per dictionary value (see the module's documentation).
pub(crate) fn over_dictionaries(
    plan: Arc<dyn ExecutionPlan>,
    applies: &impl Fn(&OperatorScanExec) -> bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(filter) = node.downcast_ref::<FilterExec>() else {
            return Ok(Transformed::no(node));
        };
        let Some(scan) = crate::local::scan_in(filter.input()) else {
            return Ok(Transformed::no(node));
        };
        if !applies(scan) {
            return Ok(Transformed::no(node));
        }
        Ok(match per_dictionary_value(filter, scan)? {
            Some(plan) => Transformed::yes(plan),
            None => Transformed::no(node),
        })
    })
    .map(|t| t.data)
}

/// `filter` over `scan` with its conditions on text decided per dictionary value, if it has
/// any such condition.
fn per_dictionary_value(
    filter: &FilterExec,
    scan: &OperatorScanExec,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let predicate = filter.predicate();
    if is_volatile(predicate) {
        return Ok(None);
    }
    let conditions = split_conjunction(predicate);
    // Per condition, the one column it reads, if one; a column read together with another
    // stays as views (the other side of a comparison must be of its type).
    let mut shared = HashSet::new();
    let alone: Vec<Option<usize>> = conditions
        .iter()
        .map(|condition| {
            let columns = collect_columns(condition);
            match columns.iter().next() {
                Some(column) if columns.len() == 1 => Some(column.index()),
                _ => {
                    shared.extend(columns.iter().map(Column::index));
                    None
                }
            }
        })
        .collect();
    // Only the columns a condition is decided on: a column chunk whose values outgrew its
    // dictionary page is stored plain, and reading it as a dictionary would hash every row.
    let mut read_as_dictionary: Vec<usize> = alone
        .iter()
        .flatten()
        .copied()
        .filter(|&c| scan.text_column(c).is_some() && !shared.contains(&c))
        .collect();
    read_as_dictionary.sort_unstable();
    read_as_dictionary.dedup();
    if read_as_dictionary.is_empty() {
        return Ok(None);
    }
    let output = scan.schema();

    let mut dictionaries = scan.dictionaries.clone();
    dictionaries.extend(
        read_as_dictionary
            .iter()
            .filter_map(|&c| scan.text_column(c)),
    );
    let scan = scan
        .with_tasks(scan.tasks().to_vec())?
        .with_dictionaries(dictionaries)?;
    let conditions = conditions
        .into_iter()
        .zip(&alone)
        .map(|(condition, column)| match column {
            Some(c) if read_as_dictionary.contains(c) => {
                let name = output.field(*c).name();
                PerDictionaryValue::new(Arc::new(Column::new(name, *c)), Arc::clone(condition))
                    .map(|e| Arc::new(e) as Arc<dyn PhysicalExpr>)
            }
            _ => Ok(Arc::clone(condition)),
        })
        .collect::<Result<Vec<_>>>()?;
    let reading = FilterExecBuilder::from(filter)
        .with_input(crate::local::with_scan(filter.input(), scan))
        .with_predicate(conjunction(conditions))
        .build()?;

    // The rows kept, their text as views again, under the names the filter gave.
    let expected = filter.schema();
    let given = reading.schema();
    if given.fields() == expected.fields() {
        return Ok(Some(Arc::new(reading)));
    }
    let columns = expected
        .fields()
        .iter()
        .zip(given.fields())
        .enumerate()
        .map(|(i, (want, have))| {
            let column = Arc::new(Column::new(want.name(), i)) as Arc<dyn PhysicalExpr>;
            let expr = match want.data_type() == have.data_type() {
                true => column,
                false => Arc::new(CastExpr::new(column, want.data_type().clone(), None)),
            };
            (expr, want.name().clone())
        })
        .collect::<Vec<_>>();
    Ok(Some(Arc::new(ProjectionExec::try_new(
        columns,
        Arc::new(reading),
    )?)))
}

/// A condition on one text column, decided for each value of the column's dictionary when
/// the column is one (else for each row), each row then taking its value's answer.
#[derive(Debug, Eq)]
pub struct PerDictionaryValue {
    /// The column the condition reads (its one child, so that plans moving columns move it).
    column: Arc<dyn PhysicalExpr>,
    /// The condition, over a batch holding the column's values as views (column 0).
    condition: Arc<dyn PhysicalExpr>,
}

impl PerDictionaryValue {
    /// `condition`, which reads `column` and nothing else, decided per value.
    fn new(column: Arc<dyn PhysicalExpr>, condition: Arc<dyn PhysicalExpr>) -> Result<Self> {
        let condition = crate::count_by_text::over_column_zero(condition)?;
        Ok(PerDictionaryValue { column, condition })
    }

    /// The condition's answer for each of `values`.
    fn decide(&self, values: &ArrayRef) -> Result<ArrayRef> {
        let values = match values.data_type() {
            DataType::Utf8View => Arc::clone(values),
            _ => cast(values, &DataType::Utf8View)?,
        };
        let field = Field::new(self.name(), DataType::Utf8View, true);
        let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![values])?;
        self.condition
            .evaluate(&batch)?
            .into_array(batch.num_rows())
    }

    fn name(&self) -> &str {
        self.column
            .downcast_ref::<Column>()
            .map_or("value", Column::name)
    }
}

impl PartialEq for PerDictionaryValue {
    fn eq(&self, other: &Self) -> bool {
        self.column.as_ref() == other.column.as_ref()
            && self.condition.as_ref() == other.condition.as_ref()
    }
}

impl Hash for PerDictionaryValue {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.column.hash(state);
        self.condition.hash(state);
    }
}

impl fmt::Display for PerDictionaryValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per value", fmt_sql(self.condition.as_ref()))
    }
}

impl PhysicalExpr for PerDictionaryValue {
    fn data_type(&self, _input_schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        let field = Field::new(self.name(), DataType::Utf8View, true);
        self.condition
            .nullable(&Schema::new(vec![field]))
            .map(|n| n || self.column.nullable(input_schema).unwrap_or(true))
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let rows = batch.num_rows();
        let column = self.column.evaluate(batch)?.into_array(rows)?;
        let answers = match column.as_dictionary_opt::<Int32Type>() {
            // A dictionary larger than the batch (its last rows in a column chunk) is not
            // worth deciding whole; nor are null keys, on which a condition may be true.
            Some(text) if text.keys().null_count() == 0 && text.values().len() <= rows => {
                let per_value = self.decide(text.values())?;
                take(&per_value, text.keys(), None)?
            }
            _ => self.decide(&column)?,
        };
        if answers.data_type() != &DataType::Boolean {
            return Err(DataFusionError::Internal(format!(
                "{self}: the condition gives {}, not Boolean",
                answers.data_type()
            )));
        }
        Ok(ColumnarValue::Array(answers))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.column]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        match <[_; 1]>::try_from(children) {
            Ok([column]) => Ok(Arc::new(PerDictionaryValue {
                column,
                condition: Arc::clone(&self.condition),
            })),
            Err(children) => Err(DataFusionError::Internal(format!(
                "PerDictionaryValue takes one child, not {}",
                children.len()
            ))),
        }
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.condition.fmt_sql(f)
    }
}

#[cfg(test)]
mod tests {
    use armorlake_common::Table;
    use armorlake_common::schema::with_dictionaries;
    use arrow::array::{DictionaryArray, Int32Array, StringArray};
    use arrow::util::pretty::pretty_format_batches;
    use async_trait::async_trait;
    use datafusion::catalog::Session;
    use datafusion::common::DFSchema;
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::logical_expr::Expr;
    use datafusion::physical_plan::coop::CooperativeExec;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext, col, lit};

    use super::*;
    use crate::scan::{LocalOperator, OperatorHandle, TaskTarget};

    /// Distinct values of the text columns: short ones a view holds inline, longer ones,
    /// and more than a small batch has rows.
    fn values(column: &str) -> Vec<String> {
        (0..40)
            .map(|i| match i % 3 {
                0 => format!("{column}{i}"),
                1 => format!("/a {column} value longer than twelve bytes/{i}"),
                _ => ["File", "Process", "Network"][i % 3].to_string() + &i.to_string(),
            })
            .collect()
    }

    /// An operator holding rows of text (every eleventh null; every pair of operation and
    /// resource values met) in batches that share one
    /// dictionary per column, as a Parquet column chunk's pages do; text columns are given
    /// as dictionaries when the scan asks, else as views. The last batch has fewer rows than
    /// the dictionary has values.
    #[derive(Debug)]
    struct Text;

    #[async_trait]
    impl OperatorHandle for Text {
        async fn scan(
            &self,
            _state: &dyn Session,
            table: Table,
            projection: Option<&Vec<usize>>,
            _filters: &[Expr],
            _limit: Option<usize>,
            dictionaries: &[usize],
        ) -> Result<Arc<dyn ExecutionPlan>> {
            let all = with_dictionaries(&table.query_schema(), dictionaries)
                .map_err(|c| DataFusionError::Plan(format!("column {c} is not text")))?;
            let projection = projection.cloned().unwrap_or_default();
            let schema = Arc::new(all.project(&projection)?);
            let batches = [(0, 1000), (1000, 1000), (2000, 5)]
                .into_iter()
                .map(|(start, rows)| {
                    let columns = schema
                        .fields()
                        .iter()
                        .enumerate()
                        .map(|(n, field)| {
                            let key = |i: usize| match n {
                                0 => i % 40,
                                1 => (i / 40) % 40,
                                _ => (i * 7) % 40,
                            };
                            let keys: Int32Array = (start..start + rows)
                                .map(|i| ((i + n) % 11 != 5).then_some(key(i) as i32))
                                .collect();
                            let values = StringArray::from(values(field.name()));
                            let text = DictionaryArray::new(keys, Arc::new(values));
                            match field.data_type() {
                                DataType::Utf8View => cast(&text, &DataType::Utf8View),
                                _ => Ok(Arc::new(text) as ArrayRef),
                            }
                        })
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    Ok(RecordBatch::try_new(Arc::clone(&schema), columns)?)
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(MemorySourceConfig::try_new_exec(&[batches], schema, None)?)
        }
    }

    fn context() -> SessionContext {
        let local = LocalOperator {
            cluster: "east".into(),
            handle: Arc::new(Text),
        };
        SessionContext::new_with_config(SessionConfig::new().with_extension(Arc::new(local)))
    }

    /// A filter by `condition` over a scan of three text columns of the logs, keeping
    /// `projection` of them.
    fn filter(
        ctx: &SessionContext,
        condition: Expr,
        projection: &[usize],
    ) -> Arc<dyn ExecutionPlan> {
        let schema = Table::Logs.query_schema();
        let columns = ["operation", "resource", "pod_name"]
            .map(|name| schema.index_of(name).unwrap())
            .to_vec();
        let target = TaskTarget {
            cluster: "east".into(),
            node: "op1".into(),
            url: String::new(),
        };
        let scan = OperatorScanExec::new(
            Table::Logs,
            Some(columns),
            vec![],
            None,
            vec![vec![target]],
            2,
        )
        .unwrap();
        let scanned = DFSchema::try_from(scan.schema().as_ref().clone()).unwrap();
        let predicate = ctx
            .state()
            .create_physical_expr(condition, &scanned)
            .unwrap();
        let filter = FilterExecBuilder::new(predicate, Arc::new(scan))
            .apply_projection(Some(projection.to_vec()))
            .unwrap()
            .build()
            .unwrap();
        Arc::new(filter)
    }

    /// The rows `plan` gives, one line each, sorted.
    async fn rows(ctx: &SessionContext, plan: Arc<dyn ExecutionPlan>) -> Vec<String> {
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        let text = pretty_format_batches(&batches).unwrap().to_string();
        let mut lines: Vec<String> = text.lines().skip(3).map(str::to_string).collect();
        lines.sort();
        lines
    }

    #[tokio::test]
    async fn conditions_on_one_text_column_decide_per_value_with_the_same_answers() {
        let ctx = context();
        let short = values("operation")[2].clone();
        let long = values("resource")[4].clone();
        let conditions = [
            col("operation").eq(lit(short.clone())),
            col("operation")
                .eq(lit(short.clone()))
                .and(col("resource").eq(lit(long.clone()))),
            col("operation").not_eq(lit(short.clone())),
            col("resource")
                .like(lit("/a %"))
                .or(col("resource").is_null()),
            col("operation").is_null(),
            col("pod_name").in_list(vec![lit("pod_name0"), lit("pod_name3")], false),
            // A condition on two columns keeps them as views; the other is still decided.
            col("operation")
                .not_eq(col("pod_name"))
                .and(col("resource").eq(lit(long.clone()))),
        ];
        for condition in conditions {
            for projection in [vec![0, 1, 2], vec![2, 0], vec![2]] {
                let what = format!("{condition} keeping {projection:?}");
                let plan = filter(&ctx, condition.clone(), &projection);
                let expected = rows(&ctx, Arc::clone(&plan)).await;
                assert!(!expected.is_empty(), "{what}");
                // The scan as DataFusion leaves it in a plan: under a `CooperativeExec`.
                let scan = Arc::clone(plan.children()[0]);
                let reading = plan.downcast_ref::<FilterExec>().unwrap();
                let cooperative = FilterExecBuilder::from(reading)
                    .with_input(Arc::new(CooperativeExec::new(scan)))
                    .build()
                    .unwrap();
                let cooperative = Arc::new(cooperative) as Arc<dyn ExecutionPlan>;
                for plan in [plan, cooperative] {
                    let rewritten = over_dictionaries(Arc::clone(&plan), &|_| true).unwrap();
                    let shown = displayable(rewritten.as_ref()).indent(false).to_string();
                    assert!(shown.contains("per value"), "{what}:\n{shown}");
                    assert!(shown.contains("dictionaries=["), "{what}:\n{shown}");
                    assert_eq!(rewritten.schema(), plan.schema(), "{what}");
                    assert_eq!(rows(&ctx, rewritten).await, expected, "{what}");
                }
            }
        }
    }

    #[tokio::test]
    async fn other_filters_stay_as_they_are() {
        let ctx = context();
        for condition in [
            col("operation").not_eq(col("pod_name")),
            col("operation")
                .eq(lit("File2"))
                .and(datafusion::functions::expr_fn::random().lt(lit(2.0))),
        ] {
            let plan = filter(&ctx, condition.clone(), &[0, 1, 2]);
            let rewritten = over_dictionaries(Arc::clone(&plan), &|_| true).unwrap();
            assert!(Arc::ptr_eq(&plan, &rewritten), "{condition}");
        }
        // Nor where the rule does not apply.
        let plan = filter(&ctx, col("operation").eq(lit("File2")), &[0]);
        let untouched = over_dictionaries(Arc::clone(&plan), &|_| false).unwrap();
        assert!(Arc::ptr_eq(&plan, &untouched));
    }
}
