//! The bounds a query's filters put on `timestamp`, used to skip whatever cannot hold a
//! matching row: memory batches and Parquet files here, whole operators on a query node.

use armorlake_common::schema::{TIMESTAMP_COLUMN, timestamp_type};
use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

/// Inclusive bounds on `timestamp`, in microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// The earliest timestamp a matching row can have.
    pub low: i64,
    /// The latest timestamp a matching row can have.
    pub high: i64,
}

impl TimeRange {
    /// No bound.
    pub const ALL: TimeRange = TimeRange {
        low: i64::MIN,
        high: i64::MAX,
    };

    /// The range `filters` (a conjunction) allow. Only comparisons of `timestamp` itself
    /// (or a cast of it that keeps every microsecond) with a constant narrow it; any other
    /// filter leaves it as it is, so the range never excludes a matching row.
    pub fn of(filters: &[Expr]) -> TimeRange {
        filters.iter().fold(TimeRange::ALL, |r, f| r.narrow(f))
    }

    /// Whether rows between `min` and `max` (inclusive) may match.
    pub fn overlaps(self, min: i64, max: i64) -> bool {
        min <= self.high && max >= self.low
    }

    fn narrow(self, filter: &Expr) -> TimeRange {
        match filter {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
                Operator::And => self.narrow(left).narrow(right),
                _ => match (
                    is_timestamp(left),
                    micros(right),
                    is_timestamp(right),
                    micros(left),
                ) {
                    (true, Some(v), _, _) => self.bound(*op, v),
                    (_, _, true, Some(v)) => match op.swap() {
                        Some(op) => self.bound(op, v),
                        None => self,
                    },
                    _ => self,
                },
            },
            Expr::Between(b) if !b.negated && is_timestamp(&b.expr) => {
                match (micros(&b.low), micros(&b.high)) {
                    (Some(low), Some(high)) => {
                        self.bound(Operator::GtEq, low).bound(Operator::LtEq, high)
                    }
                    _ => self,
                }
            }
            _ => self,
        }
    }

    fn bound(self, op: Operator, v: i64) -> TimeRange {
        let mut r = self;
        match op {
            Operator::Eq => {
                r.low = r.low.max(v);
                r.high = r.high.min(v);
            }
            Operator::Gt => r.low = r.low.max(v.saturating_add(1)),
            Operator::GtEq => r.low = r.low.max(v),
            Operator::Lt => r.high = r.high.min(v.saturating_sub(1)),
            Operator::LtEq => r.high = r.high.min(v),
            _ => {}
        }
        r
    }
}

/// `timestamp`, or a cast of it to a timestamp type at least as precise (any time zone):
/// comparing such a cast with a constant compares the same instant. A cast to a date, to
/// seconds or to text does not, and must not narrow the range.
fn is_timestamp(e: &Expr) -> bool {
    match e {
        Expr::Column(c) => c.name == TIMESTAMP_COLUMN,
        Expr::Cast(c) => {
            matches!(
                c.field.data_type(),
                DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _)
            ) && is_timestamp(&c.expr)
        }
        _ => false,
    }
}

/// A constant as microseconds since the epoch, when it is (or casts to) an instant.
fn micros(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else {
        return None;
    };
    match v.cast_to(&timestamp_type()).ok()? {
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{cast, col, lit};

    fn ts(micros: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(micros),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn comparisons_of_timestamp_narrow_the_range() {
        let r = TimeRange::of(&[col("timestamp").gt_eq(ts(10)), col("timestamp").lt(ts(20))]);
        assert_eq!(r, TimeRange { low: 10, high: 19 });
        let r = TimeRange::of(&[col("timestamp").between(ts(5), ts(7))]);
        assert_eq!(r, TimeRange { low: 5, high: 7 });
        let r = TimeRange::of(&[ts(30).gt(col("timestamp")).and(col("severity").eq(lit(3)))]);
        assert_eq!(
            r,
            TimeRange {
                low: i64::MIN,
                high: 29
            }
        );
        assert_eq!(TimeRange::of(&[col("severity").gt(lit(1))]), TimeRange::ALL);
        assert!(r.overlaps(29, 40) && !r.overlaps(30, 40));
    }

    #[test]
    fn lossy_casts_do_not_narrow_the_range() {
        let day = 86_400_000_000;
        let to_date =
            cast(col("timestamp"), DataType::Date32).eq(lit(ScalarValue::Date32(Some(1))));
        assert_eq!(TimeRange::of(&[to_date]), TimeRange::ALL);
        let to_seconds = cast(
            col("timestamp"),
            DataType::Timestamp(TimeUnit::Second, None),
        )
        .eq(ts(day));
        assert_eq!(TimeRange::of(&[to_seconds]), TimeRange::ALL);
        let to_nanos = cast(
            col("timestamp"),
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        )
        .eq(ts(day));
        assert_eq!(
            TimeRange::of(&[to_nanos]),
            TimeRange {
                low: day,
                high: day
            }
        );
    }
}
