//! The machinery shared by the three batch builders: presized Arrow column builders, the
//! `columns!` macro declaring a table's columns in schema order, the provenance columns and the
//! `EventData` JSON writer.

use std::iter::repeat_n;
use std::sync::Arc;

use armorlake_common::Table;
use arrow::array::{
    ArrayBuilder, ArrayRef, Int32Builder, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;

/// Bytes per row reserved for a text column before a batch has shown its real size.
const DEFAULT_TEXT_BYTES: usize = 16;
/// `ATags` entries per row reserved before a batch has shown the real number.
const DEFAULT_TAGS: usize = 2;

/// An Arrow array builder that a table's column set can create, presize and finish.
///
/// Arrow's `finish` leaves a builder with empty, unallocated buffers, so instead of reusing it
/// each finished batch is replaced by a fresh builder sized after the batch it replaces: one
/// allocation per buffer per batch instead of a chain of doublings.
pub(super) trait Column {
    /// An empty builder with room for `rows` rows.
    fn with_rows(rows: usize) -> Self;
    /// An empty builder with room for `rows` rows of the average size of the rows in `self`.
    fn sized_after(&self, rows: usize) -> Self;
    /// The array of every value appended so far; resets the builder.
    fn finish_array(&mut self) -> ArrayRef;
}

/// `total / rows` rounded up, or `default` when there are no rows to learn from.
fn per_row(total: usize, rows: usize, default: usize) -> usize {
    if rows == 0 {
        default
    } else {
        total.div_ceil(rows)
    }
}

impl Column for StringBuilder {
    fn with_rows(rows: usize) -> Self {
        StringBuilder::with_capacity(rows, rows.saturating_mul(DEFAULT_TEXT_BYTES))
    }

    fn sized_after(&self, rows: usize) -> Self {
        let bytes = per_row(self.values_slice().len(), self.len(), DEFAULT_TEXT_BYTES);
        StringBuilder::with_capacity(rows, rows.saturating_mul(bytes))
    }

    fn finish_array(&mut self) -> ArrayRef {
        Arc::new(self.finish())
    }
}

impl Column for Int32Builder {
    fn with_rows(rows: usize) -> Self {
        Int32Builder::with_capacity(rows)
    }

    fn sized_after(&self, rows: usize) -> Self {
        Int32Builder::with_capacity(rows)
    }

    fn finish_array(&mut self) -> ArrayRef {
        Arc::new(self.finish())
    }
}

impl Column for TimestampMicrosecondBuilder {
    fn with_rows(rows: usize) -> Self {
        TimestampMicrosecondBuilder::with_capacity(rows)
            .with_data_type(armorlake_common::schema::timestamp_type())
    }

    fn sized_after(&self, rows: usize) -> Self {
        Self::with_rows(rows)
    }

    fn finish_array(&mut self) -> ArrayRef {
        Arc::new(self.finish())
    }
}

impl Column for ListBuilder<StringBuilder> {
    fn with_rows(rows: usize) -> Self {
        let items = rows.saturating_mul(DEFAULT_TAGS);
        let values = StringBuilder::with_capacity(items, items.saturating_mul(DEFAULT_TEXT_BYTES));
        ListBuilder::with_capacity(values, rows)
    }

    fn sized_after(&self, rows: usize) -> Self {
        let values = self.values_ref();
        let items = rows.saturating_mul(per_row(values.len(), self.len(), DEFAULT_TAGS));
        let bytes = rows.saturating_mul(per_row(
            values.values_slice().len(),
            self.len(),
            DEFAULT_TAGS * DEFAULT_TEXT_BYTES,
        ));
        ListBuilder::with_capacity(StringBuilder::with_capacity(items, bytes), rows)
    }

    fn finish_array(&mut self) -> ArrayRef {
        Arc::new(self.finish())
    }
}

/// Appends `items` as one list row (an empty list when there are none, never NULL).
pub(super) fn append_list(column: &mut ListBuilder<StringBuilder>, items: &[&str]) {
    for item in items {
        column.values().append_value(item);
    }
    column.append(true);
}

/// `Severity` as an integer: the trimmed text parsed as `i32`, `None` when empty or not a number.
pub(super) fn parse_severity(severity: &str) -> Option<i32> {
    severity.trim().parse().ok()
}

/// Declares a struct holding one builder per KubeArmor column of a table, in schema order
/// (field name = column name; `r#type` is `type`), and its `with_rows`, `rows` and `finish`.
/// The first field must be `timestamp`, which is never NULL and so counts the rows.
macro_rules! columns {
    ($(#[$attr:meta])* $name:ident { timestamp: $ts:ty, $($col:ident: $ty:ty,)* }) => {
        $(#[$attr])*
        #[derive(Debug)]
        struct $name {
            timestamp: $ts,
            $($col: $ty,)*
        }

        impl $name {
            /// The column names in declaration order (`r#type` spelled as written).
            #[cfg(test)]
            const NAMES: &'static [&'static str] = &["timestamp", $(stringify!($col),)*];

            /// Empty builders with room for `rows` rows.
            fn with_rows(rows: usize) -> Self {
                use $crate::convert::columns::Column;
                Self {
                    timestamp: Column::with_rows(rows),
                    $($col: Column::with_rows(rows),)*
                }
            }

            /// The number of rows appended since the last `finish`.
            fn rows(&self) -> usize {
                arrow::array::ArrayBuilder::len(&self.timestamp)
            }

            /// The arrays of every column, in schema order; leaves fresh builders presized for
            /// `rows` rows after the average row of the finished batch.
            fn finish(&mut self, rows: usize) -> Vec<arrow::array::ArrayRef> {
                use $crate::convert::columns::Column;
                let next = Self {
                    timestamp: self.timestamp.sized_after(rows),
                    $($col: self.$col.sized_after(rows),)*
                };
                let mut done = std::mem::replace(self, next);
                vec![done.timestamp.finish_array(), $(done.$col.finish_array(),)*]
            }
        }
    };
}
pub(super) use columns;

/// What every batch of a builder shares: the table schema, the `operator` and `endpoint`
/// constants and the number of rows to presize for.
#[derive(Debug)]
pub(super) struct BatchFrame {
    schema: SchemaRef,
    operator: String,
    endpoint: String,
    /// Rows to preallocate for in each batch.
    pub(super) capacity: usize,
}

impl BatchFrame {
    pub(super) fn new(table: Table, operator: &str, endpoint: &str, capacity: usize) -> Self {
        BatchFrame {
            schema: table.schema(),
            operator: operator.to_owned(),
            endpoint: endpoint.to_owned(),
            capacity,
        }
    }

    /// The batch of the KubeArmor `columns` (schema order, `rows` rows each) followed by the
    /// `operator` and `endpoint` columns.
    pub(super) fn assemble(&self, mut columns: Vec<ArrayRef>, rows: usize) -> RecordBatch {
        columns.push(Arc::new(StringArray::from_iter_values(repeat_n(
            self.operator.as_str(),
            rows,
        ))));
        columns.push(Arc::new(StringArray::from_iter_values(repeat_n(
            self.endpoint.as_str(),
            rows,
        ))));
        // A batch handed off by time (a quiet stream) may hold a few rows in buffers sized for
        // `capacity`: give the rest back, or every such batch keeps megabytes alive for as
        // long as its rows wait in memory. Full batches are left alone (nothing to gain).
        if rows < self.capacity / 2 {
            for column in &mut columns {
                <ArrayRef as arrow::array::Array>::shrink_to_fit(column);
            }
        }
        // Every column is built by this module with the schema's type and `rows` values, and
        // the non-nullable `timestamp`, `operator` and `endpoint` are never appended a NULL; the
        // unit tests check both for every table. A failure here is a bug in this module, never a
        // property of the events.
        RecordBatch::try_new(self.schema.clone(), columns)
            .expect("convert: the built columns do not match the table schema")
    }
}

/// `EventData` maps at or below this size are sorted on the stack, larger ones in a `Vec`.
const INLINE_ENTRIES: usize = 16;

/// Writes `EventData` maps as JSON objects with sorted keys, reusing one buffer across events.
#[derive(Debug, Default)]
pub(super) struct EventDataWriter {
    buf: Vec<u8>,
}

impl EventDataWriter {
    /// Appends the map of `entries` (in the order received: a later entry for a key replaces
    /// an earlier one, as in a protobuf map) as a JSON object text with its keys sorted, or
    /// NULL when there are none.
    pub(super) fn append(&mut self, column: &mut StringBuilder, entries: &[(&str, &str)]) {
        match self.encode(entries) {
            Some(json) => column.append_value(json),
            None => column.append_null(),
        }
    }

    /// The map as JSON text in the reused buffer; `None` when it is empty. (Serializing
    /// strings into a `Vec` cannot fail and serde_json writes valid UTF-8, so `None` is
    /// otherwise unreachable; it is handled rather than unwrapped.)
    fn encode(&mut self, entries: &[(&str, &str)]) -> Option<&str> {
        if entries.is_empty() {
            return None;
        }
        let mut inline = [("", ""); INLINE_ENTRIES];
        let mut spilled: Vec<(&str, &str)>;
        let sorted: &mut [(&str, &str)] = if entries.len() <= INLINE_ENTRIES {
            inline[..entries.len()].copy_from_slice(entries);
            &mut inline[..entries.len()]
        } else {
            spilled = entries.to_vec();
            &mut spilled
        };
        // Stable, so of a key's entries the last received stays last.
        sorted.sort_by_key(|&(k, _)| k);

        self.buf.clear();
        self.buf.push(b'{');
        let mut first = true;
        for (i, (k, v)) in sorted.iter().enumerate() {
            if sorted.get(i + 1).is_some_and(|(next, _)| next == k) {
                continue;
            }
            if !first {
                self.buf.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut self.buf, k).ok()?;
            self.buf.push(b':');
            serde_json::to_writer(&mut self.buf, v).ok()?;
        }
        self.buf.push(b'}');
        std::str::from_utf8(&self.buf).ok()
    }
}
