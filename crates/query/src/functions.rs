//! armorlake's own SQL functions, registered on query nodes and on the operators' workers
//! (a plan fragment that calls one must decode on both).

use std::sync::Arc;

use armorlake_common::schema::timestamp_type;
use arrow::array::{Array, ArrayRef, TimestampMicrosecondArray};
use arrow::datatypes::DataType;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Registers armorlake's functions in `state`.
pub fn register(state: &mut SessionState) -> Result<()> {
    state.register_udf(Arc::new(ScalarUDF::from(Increments::new())))?;
    Ok(())
}

/// A time bucket of `n` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// A fixed length in microseconds.
    Fixed(i64),
    Month,
    Year,
}

impl Unit {
    fn parse(text: &str) -> Option<Unit> {
        const SECOND: i64 = 1_000_000;
        Some(
            match text.trim().to_ascii_lowercase().trim_end_matches('s') {
                "second" => Unit::Fixed(SECOND),
                "minute" => Unit::Fixed(60 * SECOND),
                "hour" => Unit::Fixed(3600 * SECOND),
                "day" => Unit::Fixed(86_400 * SECOND),
                "week" => Unit::Fixed(7 * 86_400 * SECOND),
                "month" => Unit::Month,
                "year" => Unit::Year,
                _ => return None,
            },
        )
    }
}

/// `increments(unit, n, ts)`: the start of the `n`-`unit` bucket holding `ts`, as EdgeLake's
/// helper of the same name. Buckets are aligned on the Unix epoch for fixed units and on
/// the calendar (UTC) for months and years. `unit` is one of second, minute, hour, day,
/// week, month, year (a string).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Increments {
    signature: Signature,
}

impl Increments {
    fn new() -> Increments {
        Increments {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

fn invalid(message: String) -> DataFusionError {
    DataFusionError::Plan(message)
}

impl ScalarUDFImpl for Increments {
    fn name(&self) -> &str {
        "increments"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 3 {
            return Err(invalid(format!(
                "increments(unit, n, timestamp) takes 3 arguments, got {}",
                arg_types.len()
            )));
        }
        Ok(vec![DataType::Utf8, DataType::Int64, timestamp_type()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(timestamp_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [unit, n, ts] = args.args.as_slice() else {
            return Err(invalid(
                "increments(unit, n, timestamp) takes 3 arguments".into(),
            ));
        };
        let unit = match unit {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(u))) => {
                Unit::parse(u).ok_or_else(|| invalid(format!("increments: unknown unit {u:?}")))?
            }
            _ => {
                return Err(invalid(
                    "increments: the unit must be a constant string".into(),
                ));
            }
        };
        let n = match n {
            ColumnarValue::Scalar(ScalarValue::Int64(Some(n))) if *n > 0 => *n,
            _ => return Err(invalid("increments: n must be a positive constant".into())),
        };
        let bucket = |micros: i64| bucket_start(unit, n, micros);
        match ts {
            ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(v, tz)) => {
                Ok(ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(
                    v.and_then(bucket),
                    tz.clone(),
                )))
            }
            ColumnarValue::Array(array) => {
                let ts = array
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .ok_or_else(|| {
                        invalid("increments: the third argument is a timestamp".into())
                    })?;
                let out: TimestampMicrosecondArray =
                    ts.iter().map(|v| v.and_then(bucket)).collect();
                let out: ArrayRef = Arc::new(out.with_timezone_opt(ts.timezone()));
                Ok(ColumnarValue::Array(out))
            }
            _ => Err(invalid(
                "increments: the third argument is a timestamp".into(),
            )),
        }
    }
}

fn bucket_start(unit: Unit, n: i64, micros: i64) -> Option<i64> {
    match unit {
        Unit::Fixed(len) => {
            let width = len.checked_mul(n)?;
            Some(micros.div_euclid(width) * width)
        }
        Unit::Month | Unit::Year => {
            let at: DateTime<Utc> = DateTime::from_timestamp_micros(micros)?;
            let months = i64::from(at.year()) * 12 + i64::from(at.month0());
            let width = if unit == Unit::Year { 12 * n } else { n };
            let start = months.div_euclid(width) * width;
            let (year, month0) = (start.div_euclid(12), start.rem_euclid(12));
            let first = Utc
                .with_ymd_and_hms(i32::try_from(year).ok()?, month0 as u32 + 1, 1, 0, 0, 0)
                .single()?;
            Some(first.timestamp_micros())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn fixed_units_align_on_the_epoch() {
        let at = micros("2026-11-23T10:17:42.5Z");
        let five_min = bucket_start(Unit::parse("minute").unwrap(), 5, at);
        assert_eq!(five_min, Some(micros("2026-11-23T10:15:00Z")));
        let hour = bucket_start(Unit::parse("hours").unwrap(), 1, at);
        assert_eq!(hour, Some(micros("2026-11-23T10:00:00Z")));
        let before_epoch = bucket_start(Unit::parse("day").unwrap(), 1, -1);
        assert_eq!(before_epoch, Some(-86_400_000_000));
    }

    #[test]
    fn months_and_years_follow_the_calendar() {
        let at = micros("2026-11-23T10:17:42Z");
        let quarter = bucket_start(Unit::Month, 3, at);
        assert_eq!(quarter, Some(micros("2026-10-01T00:00:00Z")));
        let year = bucket_start(Unit::Year, 1, at);
        assert_eq!(year, Some(micros("2026-01-01T00:00:00Z")));
        assert_eq!(Unit::parse("fortnight"), None);
    }
}
