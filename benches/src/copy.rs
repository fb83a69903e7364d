//! armorlake's rows in PostgreSQL: the `CREATE TABLE` of a table (same columns, PostgreSQL
//! types) and record batches as `COPY ... FROM STDIN` text format.
//!
//! Types: `Utf8` → `text`, `Int32` → `integer`, `Timestamp(µs, tz)` → `timestamptz`,
//! `List<Utf8>` → `text[]`; a non-nullable field is `NOT NULL`.

use std::io::{self, Write};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, Schema, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Utc};

/// An identifier, double-quoted (`timestamp`, `type` and `source` are keywords).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The PostgreSQL type of an armorlake column type.
pub fn pg_type(data_type: &DataType) -> io::Result<&'static str> {
    match data_type {
        DataType::Utf8 => Ok("text"),
        DataType::Int32 => Ok("integer"),
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => Ok("timestamptz"),
        DataType::Timestamp(TimeUnit::Microsecond, None) => Ok("timestamp"),
        DataType::List(item) if item.data_type() == &DataType::Utf8 => Ok("text[]"),
        other => Err(io::Error::other(format!(
            "no PostgreSQL type for Arrow {other}"
        ))),
    }
}

/// `CREATE TABLE name (...)` with the columns of `schema`.
pub fn create_table(name: &str, schema: &Schema) -> io::Result<String> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let not_null = if field.is_nullable() { "" } else { " NOT NULL" };
        columns.push(format!(
            "{} {}{not_null}",
            quote_ident(field.name()),
            pg_type(field.data_type())?
        ));
    }
    Ok(format!(
        "CREATE TABLE {} ({})",
        quote_ident(name),
        columns.join(", ")
    ))
}

/// Appends `s` with COPY text escaping (backslash, tab, newline, carriage return; NUL,
/// which PostgreSQL text cannot hold, is dropped).
fn push_text(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            0 => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends one `text[]` element to an array literal: double-quoted, `"` and `\` escaped.
fn push_array_element(literal: &mut String, element: &str) {
    literal.push('"');
    for c in element.chars() {
        if c == '"' || c == '\\' {
            literal.push('\\');
        }
        literal.push(c);
    }
    literal.push('"');
}

/// Writes every row of `batch` as COPY text format (tab-separated, `\N` for NULL, one line
/// per row) to `out`.
pub fn write_copy_text(batch: &RecordBatch, out: &mut impl Write) -> io::Result<()> {
    let rows = batch.num_rows();
    let columns = batch.columns();
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let mut literal = String::new();
    for row in 0..rows {
        line.clear();
        for (c, column) in columns.iter().enumerate() {
            if c > 0 {
                line.push(b'\t');
            }
            if column.is_null(row) {
                line.extend_from_slice(b"\\N");
                continue;
            }
            match column.data_type() {
                DataType::Utf8 => push_text(&mut line, column.as_string::<i32>().value(row)),
                DataType::Int32 => {
                    let v = column.as_primitive::<Int32Type>().value(row);
                    write!(line, "{v}")?;
                }
                DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                    let v = column.as_primitive::<TimestampMicrosecondType>().value(row);
                    let t = DateTime::<Utc>::from_timestamp_micros(v).ok_or_else(|| {
                        io::Error::other(format!("timestamp {v} µs out of range"))
                    })?;
                    let zone = if tz.is_some() { "+00" } else { "" };
                    write!(line, "{}{zone}", t.format("%Y-%m-%d %H:%M:%S%.6f"))?;
                }
                DataType::List(_) => {
                    let list = column.as_list::<i32>().value(row);
                    let items = list.as_string::<i32>();
                    literal.clear();
                    literal.push('{');
                    for i in 0..items.len() {
                        if i > 0 {
                            literal.push(',');
                        }
                        if items.is_null(i) {
                            literal.push_str("NULL");
                        } else {
                            push_array_element(&mut literal, items.value(i));
                        }
                    }
                    literal.push('}');
                    push_text(&mut line, &literal);
                }
                other => {
                    return Err(io::Error::other(format!(
                        "cannot write Arrow {other} as COPY text"
                    )));
                }
            }
        }
        line.push(b'\n');
        out.write_all(&line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Int32Array, ListBuilder, StringArray, StringBuilder, TimestampMicrosecondArray,
    };
    use arrow::datatypes::Field;

    #[test]
    fn writes_copy_text_with_escapes_nulls_and_arrays() {
        let mut tags = ListBuilder::new(StringBuilder::new());
        tags.values().append_value("a\"b");
        tags.values().append_value("c\\d");
        tags.append(true);
        tags.append(true); // an empty list
        let ts =
            TimestampMicrosecondArray::from(vec![1_700_000_000_123_456, 0]).with_timezone("UTC");
        let columns: Vec<ArrayRef> = vec![
            Arc::new(ts),
            Arc::new(StringArray::from(vec![Some("x\ty\nz\\"), None])),
            Arc::new(Int32Array::from(vec![Some(-7), None])),
            Arc::new(tags.finish()),
        ];
        let batch =
            RecordBatch::try_from_iter(["timestamp", "s", "i", "tags"].into_iter().zip(columns))
                .expect("batch");
        let mut out = Vec::new();
        write_copy_text(&batch, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "2023-11-14 22:13:20.123456+00\tx\\ty\\nz\\\\\t-7\t{\"a\\\\\"b\",\"c\\\\\\\\d\"}\n\
             1970-01-01 00:00:00.000000+00\t\\N\t\\N\t{}\n"
        );
    }

    #[test]
    fn creates_tables_with_postgres_types() {
        let sql = create_table("logs", &armorlake_common::Table::Logs.schema()).expect("sql");
        assert!(sql.starts_with("CREATE TABLE \"logs\" (\"timestamp\" timestamptz NOT NULL, "));
        assert!(sql.contains("\"host_pid\" integer, "));
        assert!(sql.ends_with("\"operator\" text NOT NULL, \"endpoint\" text NOT NULL)"));
        let alerts =
            create_table("alerts", &armorlake_common::Table::Alerts.schema()).expect("sql");
        assert!(alerts.contains("\"atags\" text[]"));
        let schema = Schema::new(vec![Field::new("f", DataType::Float64, true)]);
        assert!(create_table("t", &schema).is_err());
    }
}
