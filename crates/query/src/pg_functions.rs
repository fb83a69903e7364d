//! PostgreSQL catalog functions that datafusion-pg-catalog does not provide and psql's
//! meta-commands call (`\df` filters with `pg_function_is_visible` and shows
//! `pg_get_function_result` / `pg_get_function_arguments`).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;

/// A function of one OID that returns `value` for every row.
fn constant(name: &str, return_type: DataType, value: fn(usize) -> ArrayRef) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Int64],
        return_type,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = match args.first() {
                Some(ColumnarValue::Array(a)) => a.len(),
                _ => 1,
            };
            Ok(ColumnarValue::Array(value(rows)))
        }),
    )
}

/// Registers the functions on `ctx`.
pub fn register(ctx: &SessionContext) {
    // Every function armorlake has is on the search path.
    ctx.register_udf(constant("pg_function_is_visible", DataType::Boolean, |n| {
        Arc::new(BooleanArray::from(vec![true; n]))
    }));
    // armorlake has no user-defined functions whose signature could be shown.
    for name in ["pg_get_function_result", "pg_get_function_arguments"] {
        ctx.register_udf(constant(name, DataType::Utf8, |n| {
            Arc::new(StringArray::from(vec![None::<&str>; n]))
        }));
    }
}
