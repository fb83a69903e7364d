//! Query results as DataRows in text, written straight from the Arrow columns: what psql,
//! Grafana's simple queries and `COPY … TO STDOUT` read, and the path that streams millions
//! of rows. The extended protocol's queries without parameters come here too ([`respond`]),
//! their rows in text the same way when every column is bound as text.
//!
//! datafusion-postgres encodes a row at a time through pgwire's `DataRowEncoder`, which
//! starts every row in a 128-byte buffer that grows (and is copied) as the row's fields go
//! in, formats every timestamp through chrono's `strftime` after parsing the column's time
//! zone again for each value, and clones the field's format options for each value.
//! Here a batch is written into one buffer sized for all of its rows, split into one
//! DataRow per row without copying, with integers by `itoa` and timestamps by arithmetic,
//! already in PostgreSQL's form (no trailing zeros in the fraction, `+00`).
//!
//! Only the types of armorlake's tables and of most results take this path: text, integers,
//! booleans and timestamps (with no time zone or UTC), in the `ISO` date style. Any other
//! column, date style or value (a year outside 1–9999) sends the batch through arrow-pg's
//! encoder, which gives the same text for everything both can write.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use datafusion::common::ParamValues;
use datafusion::execution::SessionState;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::QueryHook;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::{FieldFormat, QueryResponse, Response};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::data::DataRow;
use datafusion_postgres::pgwire::types::format::FormatOptions;
use futures::StreamExt;

use super::plans::Plans;

/// Runs the queries of the simple protocol with their rows written by [`encode`], keeping
/// their plans in the connection's [`Plans`]. It comes last among the session's hooks:
/// every other statement goes on to datafusion-postgres.
#[derive(Debug)]
pub(crate) struct TextRows {
    plans: Arc<Plans>,
}

impl TextRows {
    /// Keeping the plans it makes in `plans`.
    pub(crate) fn new(plans: Arc<Plans>) -> TextRows {
        TextRows { plans }
    }
}

#[async_trait]
impl QueryHook for TextRows {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if !matches!(statement, Statement::Query(_)) {
            return None;
        }
        let options = FormatOptions::from_client_metadata(client.metadata());
        Some(run(statement, ctx, options, &self.plans).await)
    }

    async fn handle_extended_parse_query(
        &self,
        _: &Statement,
        _: &SessionContext,
        _: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        None
    }

    async fn handle_extended_query(
        &self,
        _: &Statement,
        _: &LogicalPlan,
        _: &ParamValues,
        _: &SessionContext,
        _: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}

/// Whether dates print as `ISO` (the default `ISO, YMD`), the form [`encode`] writes.
fn iso_dates(options: &FormatOptions) -> bool {
    options
        .date_style
        .split(',')
        .next()
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("iso"))
}

pub(crate) fn api_error(e: impl std::error::Error + Send + Sync + 'static) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

/// Plans and runs `statement` as datafusion-postgres would, with its rows in text. The SQL
/// is planned from the statement as parsed, not printed and parsed again; the plan is
/// offered to `plans`.
async fn run(
    statement: &Statement,
    ctx: &SessionContext,
    options: FormatOptions,
    plans: &Plans,
) -> PgWireResult<Response> {
    let state = ctx.state();
    let planned = state
        .statement_to_plan(DfStatement::Statement(Box::new(statement.clone())))
        .await
        .map_err(api_error)?;
    // Read-only here too: `SELECT … INTO` would create a table (see `readonly.rs`).
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&planned)
        .map_err(api_error)?;
    let optimized = state.optimize(&planned).map_err(api_error)?;
    plans.keep(state.config().options(), &planned, &optimized);
    respond(optimized, &state, &Format::UnifiedText, options).await
}

/// Runs `plan`, optimized in `state`, with its columns in `format` (text or binary, as the
/// client asked) and its values as `options` say.
async fn respond(
    plan: LogicalPlan,
    state: &SessionState,
    format: &Format,
    options: FormatOptions,
) -> PgWireResult<Response> {
    let physical = state
        .query_planner()
        .create_physical_plan(&plan, state)
        .await
        .map_err(api_error)?;
    respond_with(&plan, physical, state, format, options)
}

/// Runs `physical`, the physical plan of `plan`, as [`respond`] does. Rows all in text with
/// `ISO` dates are written by [`encode`], the others by arrow-pg's encoder.
pub(crate) fn respond_with(
    plan: &LogicalPlan,
    physical: Arc<dyn ExecutionPlan>,
    state: &SessionState,
    format: &Format,
    options: FormatOptions,
) -> PgWireResult<Response> {
    let iso = iso_dates(&options);
    let fields = Arc::new(arrow_schema_to_pg_fields(
        plan.schema().as_arrow(),
        format,
        Some(Arc::new(options)),
    )?);
    let text = iso && fields.iter().all(|f| f.format() == FieldFormat::Text);
    let batches = execute_stream(physical, state.task_ctx()).map_err(api_error)?;
    let row_fields = fields.clone();
    let rows = batches
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send> = match batch {
                Ok(batch) => match text.then(|| encode(&batch)).flatten() {
                    Some(rows) => Box::new(rows.into_iter().map(Ok)),
                    None => encode_recordbatch(row_fields.clone(), batch),
                },
                Err(e) => Box::new(std::iter::once(Err(api_error(e)))),
            };
            futures::stream::iter(rows)
        })
        .flatten();
    Ok(Response::Query(QueryResponse::new(fields, rows)))
}

/// Writes the integer of a row of one column.
type WriteInt<'a> = Box<dyn Fn(usize, &mut BytesMut) + 'a>;

/// One column, as [`encode`] writes it.
enum Column<'a> {
    Utf8(&'a arrow::array::StringArray),
    LargeUtf8(&'a arrow::array::LargeStringArray),
    Utf8View(&'a arrow::array::StringViewArray),
    Bool(&'a arrow::array::BooleanArray),
    Int(WriteInt<'a>),
    /// Microseconds since the epoch, and whether to print the `+00` offset.
    Timestamp(Cow<'a, [i64]>, bool),
}

/// The most bytes a value of `column` takes in text (strings: all of them together).
fn size(column: &Column<'_>, rows: usize) -> usize {
    match column {
        Column::Utf8(a) => a.value_data().len(),
        Column::LargeUtf8(a) => a.value_data().len(),
        Column::Utf8View(a) => (0..rows).map(|i| a.views()[i] as u32 as usize).sum(),
        Column::Bool(_) => rows,
        Column::Int(_) => rows * 20,
        Column::Timestamp(..) => rows * 30,
    }
}

/// The column as [`Column`], if [`encode`] can write it.
fn column(array: &ArrayRef) -> Option<Column<'_>> {
    macro_rules! int {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            Column::Int(Box::new(move |i, out: &mut BytesMut| {
                out.put_slice(itoa::Buffer::new().format(a.value(i)).as_bytes())
            }))
        }};
    }
    Some(match array.data_type() {
        DataType::Utf8 => Column::Utf8(array.as_string::<i32>()),
        DataType::LargeUtf8 => Column::LargeUtf8(array.as_string::<i64>()),
        DataType::Utf8View => Column::Utf8View(array.as_string_view()),
        DataType::Boolean => Column::Bool(array.as_boolean()),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Timestamp(unit, tz) => {
            let offset = match tz.as_deref() {
                None => false,
                Some("UTC" | "+00:00" | "Z" | "Etc/UTC" | "+00") => true,
                Some(_) => return None,
            };
            let values = timestamps(array, *unit)?;
            Column::Timestamp(values, offset)
        }
        _ => return None,
    })
}

/// The first and last instants PostgreSQL prints without a sign or `BC`: years 1 to 9999.
const MIN_MICROS: i64 = -62_135_596_800_000_000;
const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// The values of a timestamp column in microseconds, if all are years 1 to 9999 (nulls are
/// zero here; the array's null mask tells).
fn timestamps(array: &ArrayRef, unit: TimeUnit) -> Option<Cow<'_, [i64]>> {
    use arrow::datatypes::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType,
    };
    let micros: Cow<'_, [i64]> = match unit {
        TimeUnit::Second => (array.as_primitive::<TimestampSecondType>().values().iter())
            .map(|v| v.checked_mul(1_000_000))
            .collect::<Option<Vec<_>>>()?
            .into(),
        TimeUnit::Millisecond => (array.as_primitive::<TimestampMillisecondType>().values())
            .iter()
            .map(|v| v.checked_mul(1_000))
            .collect::<Option<Vec<_>>>()?
            .into(),
        // armorlake's own columns: the values as they are, no copy.
        TimeUnit::Microsecond => {
            Cow::Borrowed(&array.as_primitive::<TimestampMicrosecondType>().values()[..])
        }
        TimeUnit::Nanosecond => (array.as_primitive::<TimestampNanosecondType>().values())
            .iter()
            .map(|v| v.div_euclid(1_000))
            .collect::<Vec<_>>()
            .into(),
    };
    let in_range = micros
        .iter()
        .enumerate()
        .all(|(i, m)| array.is_null(i) || (MIN_MICROS..=MAX_MICROS).contains(m));
    in_range.then_some(micros)
}

/// `batch`'s rows as DataRows in text, or `None` if a column is not one [`column`] knows.
pub(crate) fn encode(batch: &RecordBatch) -> Option<Vec<DataRow>> {
    let rows = batch.num_rows();
    let columns: Vec<Column<'_>> = batch.columns().iter().map(column).collect::<Option<_>>()?;
    let arrays = batch.columns();
    let capacity = columns.iter().map(|c| size(c, rows)).sum::<usize>() + rows * 4 * arrays.len();
    let mut buf = BytesMut::with_capacity(capacity);
    let mut out = Vec::with_capacity(rows);
    let field_count = i16::try_from(arrays.len()).ok()?;
    for row in 0..rows {
        for (column, array) in columns.iter().zip(arrays) {
            if array.is_null(row) {
                buf.put_i32(-1);
                continue;
            }
            let start = buf.len();
            buf.put_i32(0);
            match column {
                Column::Utf8(a) => buf.put_slice(a.value(row).as_bytes()),
                Column::LargeUtf8(a) => buf.put_slice(a.value(row).as_bytes()),
                Column::Utf8View(a) => buf.put_slice(a.value(row).as_bytes()),
                Column::Bool(a) => buf.put_u8(if a.value(row) { b't' } else { b'f' }),
                Column::Int(write) => write(row, &mut buf),
                Column::Timestamp(micros, offset) => {
                    write_timestamp(&mut buf, micros[row], *offset);
                }
            }
            let len = (buf.len() - start - 4) as i32;
            buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        }
        out.push(DataRow::new(buf.split(), field_count));
    }
    Some(out)
}

/// `micros` since the epoch as PostgreSQL prints a timestamp in the ISO style:
/// `2026-11-23 03:00:01.5`, and `+00` after it for a timestamptz in UTC.
fn write_timestamp(buf: &mut BytesMut, micros: i64, offset: bool) {
    const DAY: i64 = 86_400_000_000;
    let days = micros.div_euclid(DAY);
    let of_day = micros.rem_euclid(DAY);
    let (year, month, day) = civil_from_days(days);
    let secs = of_day / 1_000_000;
    let fraction = of_day % 1_000_000;
    let two = |buf: &mut BytesMut, n: i64| {
        buf.put_u8(b'0' + (n / 10) as u8);
        buf.put_u8(b'0' + (n % 10) as u8);
    };
    two(buf, year / 100);
    two(buf, year % 100);
    buf.put_u8(b'-');
    two(buf, month);
    buf.put_u8(b'-');
    two(buf, day);
    buf.put_u8(b' ');
    two(buf, secs / 3600);
    buf.put_u8(b':');
    two(buf, secs / 60 % 60);
    buf.put_u8(b':');
    two(buf, secs % 60);
    if fraction != 0 {
        let mut digits = [0u8; 6];
        let mut f = fraction;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (f % 10) as u8;
            f /= 10;
        }
        let keep = 6 - digits.iter().rev().take_while(|d| **d == b'0').count();
        buf.put_u8(b'.');
        buf.put_slice(&digits[..keep]);
    }
    if offset {
        buf.put_slice(b"+00");
    }
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BooleanArray, Int32Array, Int64Array, StringArray, StringViewArray,
        TimestampMicrosecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt64Array,
    };
    use arrow::datatypes::{Field, Schema};

    /// A row's fields as text (`None` for NULL).
    type Texts = Vec<Option<String>>;

    fn batch(columns: Vec<ArrayRef>) -> RecordBatch {
        let schema = Schema::new(
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    /// Every row as arrow-pg writes it (with the trailing zeros of the fraction trimmed,
    /// as armorlake's output does) and as [`encode`] does: they must agree.
    fn both(batch: &RecordBatch) -> (Vec<Texts>, Vec<Texts>) {
        let fields = Arc::new(
            arrow_schema_to_pg_fields(
                &batch.schema(),
                &Format::UnifiedText,
                Some(Arc::new(FormatOptions::default())),
            )
            .unwrap(),
        );
        let timestamps = super::super::output::timestamp_columns(&fields);
        let theirs = encode_recordbatch(fields, batch.clone())
            .map(|r| fields_of(super::super::output::fix_row(r.unwrap(), &timestamps)))
            .collect();
        let ours = encode(batch).unwrap().iter().map(fields_of).collect();
        (theirs, ours)
    }

    fn fields_of(row: impl std::borrow::Borrow<DataRow>) -> Texts {
        super::super::output::texts(row.borrow())
    }

    #[test]
    fn rows_are_written_as_arrow_pg_writes_them() {
        let micros = vec![
            Some(0),
            Some(1_795_341_601_500_000),
            None,
            Some(-1_000_001),
            Some(951_782_400_123_456),
            Some(MIN_MICROS),
            Some(MAX_MICROS),
        ];
        let n = micros.len();
        let b = batch(vec![
            Arc::new(TimestampMicrosecondArray::from(micros.clone()).with_timezone("UTC")),
            Arc::new(TimestampMicrosecondArray::from(micros.clone())),
            Arc::new(StringArray::from(
                (0..n)
                    .map(|i| (i != 2).then(|| format!("s{i}\tü")))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringViewArray::from(
                (0..n)
                    .map(|i| Some(format!("a much longer view string {i}")))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int32Array::from(
                (0..n as i32)
                    .map(|i| Some(i32::MIN + i))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                (0..n as i64)
                    .map(|i| Some(i64::MAX - i))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from(
                (0..n as u64).map(Some).collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                (0..n).map(|i| Some(i % 2 == 0)).collect::<Vec<_>>(),
            )),
            Arc::new(
                TimestampNanosecondArray::from(
                    (0..n as i64)
                        .map(|i| Some((i - 3) * 1_234_567_891_234))
                        .collect::<Vec<_>>(),
                )
                .with_timezone("+00:00"),
            ),
        ]);
        let (theirs, ours) = both(&b);
        assert_eq!(ours, theirs);
        assert_eq!(ours[1][0].as_deref(), Some("2026-11-22 10:00:01.5+00"));
        assert_eq!(ours[1][1].as_deref(), Some("2026-11-22 10:00:01.5"));
        assert_eq!(ours[3][0].as_deref(), Some("1969-12-31 23:59:58.999999+00"));
        assert_eq!(ours[2][2], None);
    }

    #[test]
    fn what_it_cannot_write_goes_to_arrow_pg() {
        let float = batch(vec![Arc::new(arrow::array::Float64Array::from(vec![1.5]))]);
        assert!(encode(&float).is_none());
        let berlin = batch(vec![Arc::new(
            TimestampMicrosecondArray::from(vec![0]).with_timezone("Europe/Berlin"),
        )]);
        assert!(encode(&berlin).is_none());
        let far = batch(vec![Arc::new(TimestampSecondArray::from(vec![
            300_000_000_000,
        ]))]);
        assert!(encode(&far).is_none());
        let year_10000 = batch(vec![Arc::new(TimestampMicrosecondArray::from(vec![
            MAX_MICROS + 1,
        ]))]);
        assert!(encode(&year_10000).is_none());
    }

    #[test]
    fn dates_follow_the_calendar() {
        for (days, date) in [
            (0, (1970, 1, 1)),
            (-1, (1969, 12, 31)),
            (11_016, (2000, 2, 29)),
            (20_415, (2025, 11, 23)),
            (-719_162, (1, 1, 1)),
            (2_932_896, (9999, 12, 31)),
        ] {
            assert_eq!(civil_from_days(days), date, "{days}");
        }
    }
}
