//! Counting before a join that cannot multiply rows (eager aggregation, after Yan and
//! Larson, "Eager Aggregation and Lazy Aggregation", VLDB 1995).
//!
//! Dashboards join events with a per-key summary of other events and count the result:
//!
//! ```sql
//! SELECT a.namespace_name, count(*), sum(l.n)
//! FROM alerts a JOIN (SELECT container_id, count(*) AS n FROM logs GROUP BY container_id) l
//!   ON a.container_id = l.container_id
//! GROUP BY a.namespace_name
//! ```
//!
//! The summary side is unique on the join key (it is grouped by it), so each alert meets
//! at most one summary row, and the alerts of one (namespace, container) all meet the same
//! one. [`EagerAggregation`] therefore counts the alerts by (namespace, container) first,
//! where they are read (on the operators, as a partial aggregate), and joins those counts:
//! `count(*)` becomes the sum of the counts and `sum(l.n)` the sum of `l.n` times the count.
//! The join then sees a row per (namespace, container) instead of one per alert.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::Dependency;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, NullEquality, Result};
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Aggregate, Expr, ExprSchemable, Join, JoinType, LogicalPlan, Projection, cast, lit,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use crate::cluster::ArmorlakeOptions;

/// The name of the rows each pre-counted row stands for.
const ROWS: &str = "__armorlake_rows";

/// Rewrites `Aggregate(Join(E, U))`, where `U` is unique on its join keys, into an aggregate
/// over the join of `E` counted by its grouping and join key columns (see the module).
#[derive(Debug, Default)]
pub struct EagerAggregation;

impl OptimizerRule for EagerAggregation {
    fn name(&self) -> &str {
        "armorlake_eager_aggregation"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let options = config.options();
        let off = options
            .extensions
            .get::<ArmorlakeOptions>()
            .is_some_and(|o| !o.enable_eager_aggregation);
        let LogicalPlan::Aggregate(aggregate) = &plan else {
            return Ok(Transformed::no(plan));
        };
        if off {
            return Ok(Transformed::no(plan));
        }
        match eager(aggregate)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// What an aggregate of the original becomes over the pre-counted rows.
enum Becomes {
    /// `count(*)`: the sum of the counts (0 when there are none).
    Rows,
    /// `sum(u)` of an integer expression of the unique side: the sum of `u` times the count.
    Sum(Expr),
    /// `min`/`max` of an expression of the unique side: unchanged.
    Same(Expr),
}

/// `aggregate` rewritten, if it has the shape.
fn eager(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    // Through a projection (the optimizer puts one there to narrow the join's output and to
    // compute common subexpressions once): its expressions are put in place of its columns.
    let (join, group_by, aggr_expr) = match aggregate.input.as_ref() {
        LogicalPlan::Join(join) => (
            join,
            aggregate.group_expr.clone(),
            aggregate.aggr_expr.clone(),
        ),
        LogicalPlan::Projection(projection) => {
            let LogicalPlan::Join(join) = projection.input.as_ref() else {
                return Ok(None);
            };
            let defined: HashMap<Column, Expr> = projection
                .schema
                .columns()
                .into_iter()
                .zip(projection.expr.iter().map(|e| e.clone().unalias()))
                .collect();
            let inline = |exprs: &[Expr]| -> Result<Vec<Expr>> {
                exprs
                    .iter()
                    .map(|e| {
                        e.clone()
                            .transform(|e| match &e {
                                Expr::Column(c) => match defined.get(c) {
                                    Some(d) => Ok(Transformed::yes(d.clone())),
                                    None => Ok(Transformed::no(e)),
                                },
                                _ => Ok(Transformed::no(e)),
                            })
                            .map(|t| t.data)
                    })
                    .collect()
            };
            (
                join,
                inline(&aggregate.group_expr)?,
                inline(&aggregate.aggr_expr)?,
            )
        }
        _ => return Ok(None),
    };
    if join.join_type != JoinType::Inner || join.filter.is_some() || join.on.is_empty() {
        return Ok(None);
    }
    let column = |e: &Expr| match e {
        Expr::Column(c) => Some(c.clone()),
        _ => None,
    };
    let left_keys: Option<Vec<Column>> = join.on.iter().map(|(l, _)| column(l)).collect();
    let right_keys: Option<Vec<Column>> = join.on.iter().map(|(_, r)| column(r)).collect();
    let (Some(left_keys), Some(right_keys)) = (left_keys, right_keys) else {
        return Ok(None);
    };
    // Keys compared with `IS NOT DISTINCT FROM` meet a unique side's NULLs too, so a key
    // that allows several NULLs (a `UNIQUE` constraint) does not do there.
    let nulls_meet = join.null_equality == NullEquality::NullEqualsNull;
    let left_unique = unique_on(join.left.schema(), &left_keys, nulls_meet);
    let right_unique = unique_on(join.right.schema(), &right_keys, nulls_meet);
    // The side to count first (`E`) and the unique one (`U`); both unique: nothing to gain.
    let (expanding_left, e_keys) = match (left_unique, right_unique) {
        (false, true) => (true, left_keys),
        (true, false) => (false, right_keys),
        _ => return Ok(None),
    };
    let (e, u) = match expanding_left {
        true => (&join.left, &join.right),
        false => (&join.right, &join.left),
    };
    let e_columns = |expr: &Expr| match expr {
        Expr::Column(c) => e.schema().has_column(c),
        _ => false,
    };
    if !group_by.iter().all(e_columns) {
        return Ok(None);
    }
    // An expression of the unique side's columns alone: the same for every row of `E`
    // that meets a given row of `U`.
    let of_u = |expr: &Expr| {
        let columns = expr.column_refs();
        !columns.is_empty()
            && columns.iter().all(|c| u.schema().has_column(c))
            && !expr.is_volatile()
    };
    let mut becomes = Vec::with_capacity(aggr_expr.len());
    for expr in &aggr_expr {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = expr else {
            return Ok(None);
        };
        let plain = !params.distinct && params.filter.is_none() && params.order_by.is_empty();
        if !plain {
            return Ok(None);
        }
        let argument = match &params.args[..] {
            [argument] => argument,
            _ => return Ok(None),
        };
        let counts_rows = matches!(argument, Expr::Literal(value, _) if !value.is_null());
        becomes.push(match func.name() {
            "count" if counts_rows => Becomes::Rows,
            "sum" if of_u(argument) => {
                let integer = matches!(
                    argument.get_type(u.schema())?,
                    DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64
                );
                if !integer {
                    return Ok(None);
                }
                Becomes::Sum(argument.clone())
            }
            "min" | "max" if of_u(argument) => Becomes::Same(expr.clone()),
            _ => return Ok(None),
        });
    }

    // E counted by its grouping columns and join keys.
    let mut e_group: Vec<Expr> = group_by.clone();
    for key in e_keys {
        let key = Expr::Column(key);
        if !e_group.contains(&key) {
            e_group.push(key);
        }
    }
    let counted = LogicalPlan::Aggregate(Aggregate::try_new(
        Arc::clone(e),
        e_group,
        vec![count(lit(1i64)).alias(ROWS)],
    )?);
    let (left, right) = match expanding_left {
        true => (Arc::new(counted), Arc::clone(&join.right)),
        false => (Arc::clone(&join.left), Arc::new(counted)),
    };
    let joined = LogicalPlan::Join(Join::try_new(
        left,
        right,
        join.on.clone(),
        None,
        JoinType::Inner,
        join.join_constraint,
        join.null_equality,
        join.null_aware,
    )?);
    let rows = Expr::Column(Column::from_name(ROWS));
    let aggregates: Vec<Expr> = becomes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let name = format!("__armorlake_{i}");
            match b {
                Becomes::Rows => sum(rows.clone()).alias(name),
                Becomes::Sum(u) => sum(cast(u.clone(), DataType::Int64) * rows.clone()).alias(name),
                Becomes::Same(expr) => expr.clone().alias(name),
            }
        })
        .collect();
    let regrouped = LogicalPlan::Aggregate(Aggregate::try_new(
        Arc::new(joined),
        group_by.clone(),
        aggregates,
    )?);
    // The original aggregate's columns, by their names.
    let original = aggregate.schema.as_ref();
    let groups = group_by.len();
    let mut columns: Vec<Expr> = Vec::with_capacity(original.fields().len());
    for (i, (qualifier, field)) in original.iter().enumerate() {
        let value = match i.checked_sub(groups) {
            None => Expr::Column(Column::from(regrouped.schema().qualified_field(i))),
            Some(a) => {
                let computed = Expr::Column(Column::from_name(format!("__armorlake_{a}")));
                match becomes[a] {
                    Becomes::Rows => coalesce(vec![computed, lit(0i64)]),
                    _ => computed,
                }
            }
        };
        let value = match &value {
            Expr::Column(c) if c.relation.as_ref() == qualifier && c.name == *field.name() => value,
            _ => value.alias_qualified(qualifier.cloned(), field.name()),
        };
        columns.push(value);
    }
    let projection = Projection::try_new(columns, Arc::new(regrouped))?;
    // Only when the types come out as before (an integer sum's type is `Int64` already).
    let same = projection
        .schema
        .iter()
        .zip(original.iter())
        .all(|((_, new), (_, old))| new.data_type() == old.data_type());
    if !same {
        return Ok(None);
    }
    Ok(Some(LogicalPlan::Projection(projection)))
}

/// Whether rows of `schema` are unique on `keys` (some of its columns): a dependence of
/// mode `Single` (a group by, a primary key) whose determinant lies among them; with
/// `nulls_meet`, one whose determinant cannot be NULL in several rows either.
fn unique_on(schema: &DFSchema, keys: &[Column], nulls_meet: bool) -> bool {
    let Some(indices) = keys
        .iter()
        .map(|k| schema.maybe_index_of_column(k))
        .collect::<Option<Vec<usize>>>()
    else {
        return false;
    };
    schema.functional_dependencies().iter().any(|d| {
        d.mode == Dependency::Single
            && !(nulls_meet && d.nullable)
            && d.source_indices.iter().all(|s| indices.contains(s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, RecordBatch, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// Events `a` (group `g`, key `k`, value `v`) and `b` (key `k`), with null and empty
    /// keys, keys only one side has, and several batches.
    fn context(with_rule: bool) -> SessionContext {
        let config = SessionConfig::new().with_option_extension(ArmorlakeOptions::default());
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if with_rule {
            builder = builder.with_optimizer_rule(Arc::new(EagerAggregation));
        }
        let ctx = SessionContext::new_with_state(builder.build());
        let a = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Utf8, true),
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int32, true),
        ]));
        let b = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true)]));
        let key = |i: usize| match i % 11 {
            0 => None,
            1 => Some(String::new()),
            n => Some(format!("k{}", (i * 7 + n) % 40)),
        };
        let a_batches: Vec<RecordBatch> = (0..4)
            .map(|p| {
                let rows = (p * 2500)..((p + 1) * 2500);
                let g: StringArray = rows.clone().map(|i| Some(format!("g{}", i % 5))).collect();
                let k: StringArray = rows.clone().map(key).collect();
                let v: Int32Array = rows.map(|i| (i % 3 != 0).then_some(i as i32)).collect();
                RecordBatch::try_new(Arc::clone(&a), vec![Arc::new(g), Arc::new(k), Arc::new(v)])
                    .unwrap()
            })
            .collect();
        let b_batches: Vec<RecordBatch> = (0..3)
            .map(|p| {
                let k: StringArray = ((p * 3000)..((p + 1) * 3000))
                    .map(|i| key(i * 3 + 2).map(|k| format!("{k}{}", i % 2)))
                    .map(|k| k.map(|k| k[..k.len() - 1].to_string()))
                    .collect();
                RecordBatch::try_new(Arc::clone(&b), vec![Arc::new(k)]).unwrap()
            })
            .collect();
        let a = MemTable::try_new(a, vec![a_batches]).unwrap();
        let b = MemTable::try_new(b, vec![b_batches]).unwrap();
        ctx.register_table("a", Arc::new(a)).unwrap();
        ctx.register_table("b", Arc::new(b)).unwrap();
        ctx
    }

    const SUMMARY: &str = "(SELECT k, count(*) AS n, CAST(count(*) AS INT) AS m FROM b \
                           WHERE k <> '' GROUP BY k) l";

    /// The answer to `sql` with the rule and without, and the optimized plan with it.
    async fn both(sql: &str) -> (String, String, String) {
        let mut answers = Vec::new();
        let mut plan = String::new();
        for with_rule in [true, false] {
            let ctx = context(with_rule);
            let frame = ctx.sql(sql).await.unwrap();
            if with_rule {
                plan = frame
                    .clone()
                    .into_optimized_plan()
                    .unwrap()
                    .display_indent()
                    .to_string();
            }
            let batches = frame.collect().await.unwrap();
            answers.push(pretty_format_batches(&batches).unwrap().to_string());
        }
        let without = answers.pop().unwrap();
        (answers.pop().unwrap(), without, plan)
    }

    #[tokio::test]
    async fn joins_to_rows_unique_on_the_key_are_counted_first() {
        let queries = [
            format!(
                "SELECT a.g, count(*) AS alerts, sum(l.n) AS logs FROM a JOIN {SUMMARY} \
                 ON a.k = l.k GROUP BY a.g ORDER BY a.g"
            ),
            // The unique side on the left; an Int32 sum, one of an expression; min and max.
            format!(
                "SELECT a.g, sum(l.m), sum(l.n * 2 - l.m), min(l.n), max(l.m), count(1) \
                 FROM {SUMMARY} JOIN a ON l.k = a.k GROUP BY a.g ORDER BY a.g"
            ),
            // No grouping, and no rows: count(*) is 0, the sum NULL.
            format!("SELECT count(*), sum(l.n) FROM a JOIN {SUMMARY} ON a.k = l.k"),
            format!(
                "SELECT count(*), sum(l.n) FROM a JOIN {SUMMARY} ON a.k = l.k \
                 WHERE a.g = 'none'"
            ),
            // Grouped by the key itself.
            format!(
                "SELECT a.k, a.g, count(*) FROM a JOIN {SUMMARY} ON a.k = l.k \
                 GROUP BY a.k, a.g ORDER BY 1, 2"
            ),
        ];
        for sql in &queries {
            let (with, without, plan) = both(sql).await;
            assert!(plan.contains(ROWS), "{sql}:\n{plan}");
            assert_eq!(with, without, "{sql}");
        }
        // NULL keys that meet (`IS NOT DISTINCT FROM`): the same answer, counted first or not.
        let nulls = "SELECT a.g, count(*), sum(l.n) FROM a JOIN (SELECT k, count(*) AS n FROM b \
                     GROUP BY k) l ON a.k IS NOT DISTINCT FROM l.k GROUP BY a.g ORDER BY a.g";
        let (with, without, _) = both(nulls).await;
        assert_eq!(with, without, "{nulls}");
        let (empty, _, _) = both(&queries[3]).await;
        assert!(empty.contains("| 0 "), "{empty}");
    }

    #[tokio::test]
    async fn other_joins_and_aggregates_are_left_alone() {
        let queries = [
            // Neither side unique on the key.
            "SELECT a.g, count(*) FROM a JOIN b ON a.k = b.k GROUP BY a.g ORDER BY 1".to_string(),
            // A sum over the side that would be counted, a distinct count, an average.
            format!(
                "SELECT a.g, sum(a.v) FROM a JOIN {SUMMARY} ON a.k = l.k GROUP BY a.g ORDER BY 1"
            ),
            format!(
                "SELECT a.g, count(DISTINCT l.n) FROM a JOIN {SUMMARY} ON a.k = l.k \
                 GROUP BY a.g ORDER BY 1"
            ),
            format!(
                "SELECT a.g, avg(l.n) FROM a JOIN {SUMMARY} ON a.k = l.k GROUP BY a.g ORDER BY 1"
            ),
            // An outer join; a grouping by the unique side's columns.
            format!(
                "SELECT a.g, count(*) FROM a LEFT JOIN {SUMMARY} ON a.k = l.k GROUP BY a.g \
                 ORDER BY 1"
            ),
            format!(
                "SELECT l.n, count(*) FROM a JOIN {SUMMARY} ON a.k = l.k GROUP BY l.n ORDER BY 1"
            ),
            // A condition beside the keys; a sum of a volatile expression.
            format!(
                "SELECT a.g, count(*) FROM a JOIN {SUMMARY} ON a.k = l.k AND a.v > l.n \
                 GROUP BY a.g ORDER BY 1"
            ),
            format!(
                "SELECT a.g, sum(l.n + CAST(random() * 0 AS BIGINT)) FROM a JOIN {SUMMARY} \
                 ON a.k = l.k GROUP BY a.g ORDER BY 1"
            ),
        ];
        for sql in &queries {
            let (with, without, plan) = both(sql).await;
            assert!(!plan.contains(ROWS), "{sql}:\n{plan}");
            assert_eq!(with, without, "{sql}");
        }
    }

    #[tokio::test]
    async fn the_setting_turns_it_off() {
        let ctx = context(true);
        let sql = format!("SELECT a.g, count(*) FROM a JOIN {SUMMARY} ON a.k = l.k GROUP BY a.g");
        let plan = |ctx: SessionContext, sql: String| async move {
            let frame = ctx.sql(&sql).await.unwrap();
            frame
                .into_optimized_plan()
                .unwrap()
                .display_indent()
                .to_string()
        };
        assert!(plan(ctx.clone(), sql.clone()).await.contains(ROWS));
        ctx.sql("SET armorlake.enable_eager_aggregation = off")
            .await
            .unwrap();
        assert!(!plan(ctx, sql).await.contains(ROWS));
    }
}
