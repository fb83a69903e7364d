//! The event tables and their Arrow schemas.
//!
//! Columns are KubeArmor's fields in snake_case (see `proto/kubearmor.proto`). `Timestamp` and
//! `UpdatedTime` together become one `timestamp` column (timestamptz, microseconds, UTC); the
//! nested `Owner` and `ExecEvent` are flattened; `ATags` is a text array, `EventData` JSON text
//! and `Severity` an integer. armorlake adds `operator` (the node storing the row) and
//! `endpoint` (the KubeArmor address the row was pulled from).

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The event time of a row.
pub const TIMESTAMP_COLUMN: &str = "timestamp";
/// The operator node that stores the row.
pub const OPERATOR_COLUMN: &str = "operator";
/// The KubeArmor address (`host:port`) the row was pulled from.
pub const ENDPOINT_COLUMN: &str = "endpoint";

/// The time zone of every `timestamp` column.
pub const TIME_ZONE: &str = "UTC";

/// One of the event tables of schema `public`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `LogService.WatchAlerts`: one row per policy match.
    Alerts,
    /// `LogService.WatchLogs`: one row per container or host system event.
    Logs,
    /// `LogService.WatchMessages`: one row per KubeArmor daemon message.
    Messages,
}

impl Table {
    /// Every event table, in a fixed order.
    pub const ALL: [Table; 3] = [Table::Alerts, Table::Logs, Table::Messages];

    /// The table's position in [`Table::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The SQL name of the table.
    pub fn name(self) -> &'static str {
        match self {
            Table::Alerts => "alerts",
            Table::Logs => "logs",
            Table::Messages => "messages",
        }
    }

    /// The table named `name`, if it is an event table.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The Arrow schema the table is stored in (ingest batches, WAL, Parquet).
    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Alerts => ALERTS.clone(),
            Table::Logs => LOGS.clone(),
            Table::Messages => MESSAGES.clone(),
        }
    }

    /// The Arrow schema queries read the table in: the stored one with every text column
    /// as `Utf8View`. The Parquet reader then points each value into its dictionary page
    /// instead of copying every string, and DataFusion's string kernels, hashing and
    /// grouping take their view paths. Clients still see `text` (pgwire) and `utf8`
    /// (Flight SQL); see docs/architecture.md.
    pub fn query_schema(self) -> SchemaRef {
        static QUERY: LazyLock<[SchemaRef; 3]> =
            LazyLock::new(|| Table::ALL.map(|t| with_views(&t.schema())));
        QUERY[self.index()].clone()
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The data type of every `timestamp` column.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(TIME_ZONE.into()))
}

/// `schema` with its top-level `Utf8` fields as `Utf8View`.
fn with_views(schema: &Schema) -> SchemaRef {
    Arc::new(retyped(schema, &DataType::Utf8, DataType::Utf8View))
}

/// `schema` with its top-level `Utf8View` fields as `Utf8`: what clients that expect the
/// declared types (Flight SQL's `utf8`) are given.
pub fn without_views(schema: &Schema) -> Schema {
    retyped(schema, &DataType::Utf8View, DataType::Utf8)
}

/// The type a text column is read in by a consumer that only needs to tell its values
/// apart (`CountByTextExec`): keys into the values of a Parquet dictionary page.
pub fn text_dictionary_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// `schema` with its fields `columns` as [`text_dictionary_type`] (`schema` itself when
/// there are none); `Err(c)` when column `c` is missing or not text (`Utf8`, `Utf8View`).
pub fn with_dictionaries(schema: &SchemaRef, columns: &[usize]) -> Result<SchemaRef, usize> {
    if columns.is_empty() {
        return Ok(Arc::clone(schema));
    }
    let text = |c: usize| {
        schema
            .fields()
            .get(c)
            .is_some_and(|f| matches!(f.data_type(), DataType::Utf8 | DataType::Utf8View))
    };
    if let Some(&c) = columns.iter().find(|&&c| !text(c)) {
        return Err(c);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match columns.contains(&i) {
            true => f.as_ref().clone().with_data_type(text_dictionary_type()),
            false => f.as_ref().clone(),
        })
        .collect();
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

/// `schema` with every top-level field of type `from` turned into `to`.
fn retyped(schema: &Schema, from: &DataType, to: DataType) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() == from {
            true => f.as_ref().clone().with_data_type(to.clone()),
            false => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn int4(name: &str) -> Field {
    Field::new(name, DataType::Int32, true)
}

fn text_array(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        true,
    )
}

fn timestamp() -> Field {
    Field::new(TIMESTAMP_COLUMN, timestamp_type(), false)
}

/// `operator` and `endpoint`, the columns armorlake adds to every table.
fn provenance() -> [Field; 2] {
    [
        Field::new(OPERATOR_COLUMN, DataType::Utf8, false),
        Field::new(ENDPOINT_COLUMN, DataType::Utf8, false),
    ]
}

static ALERTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        timestamp(),
        text("cluster_name"),
        text("host_name"),
        text("namespace_name"),
        text("pod_name"),
        text("container_id"),
        text("container_name"),
        int4("host_pid"),
        int4("ppid"),
        int4("pid"),
        int4("uid"),
        text("policy_name"),
        int4("severity"),
        text("tags"),
        text("message"),
        text("type"),
        text("source"),
        text("operation"),
        text("resource"),
        text("data"),
        text("action"),
        text("result"),
        text("container_image"),
        text("parent_process_name"),
        text("process_name"),
        int4("host_ppid"),
        text("enforcer"),
        text("labels"),
        text_array("atags"),
        text("owner_ref"),
        text("owner_name"),
        text("owner_namespace"),
        text("cwd"),
        text("tty"),
        int4("max_alerts_per_sec"),
        int4("dropping_alerts_interval"),
        text("exec_id"),
        text("executable_name"),
        text("kubearmor_version"),
        text("node_id"),
        text("process_hash"),
        text("parent_hash"),
        text("resource_hash"),
        text("hash_algo"),
        text("event_data"),
        text("user_name"),
    ];
    fields.extend(provenance());
    Arc::new(Schema::new(fields))
});

static LOGS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        timestamp(),
        text("cluster_name"),
        text("host_name"),
        text("namespace_name"),
        text("pod_name"),
        text("container_id"),
        text("container_name"),
        int4("host_pid"),
        int4("ppid"),
        int4("pid"),
        int4("uid"),
        text("type"),
        text("source"),
        text("operation"),
        text("resource"),
        text("data"),
        text("result"),
        text("container_image"),
        text("parent_process_name"),
        text("process_name"),
        int4("host_ppid"),
        text("labels"),
        text("owner_ref"),
        text("owner_name"),
        text("owner_namespace"),
        text("cwd"),
        text("tty"),
        text("exec_id"),
        text("executable_name"),
        text("node_id"),
        text("process_hash"),
        text("parent_hash"),
        text("resource_hash"),
        text("hash_algo"),
        text("event_data"),
        text("user_name"),
    ];
    fields.extend(provenance());
    Arc::new(Schema::new(fields))
});

static MESSAGES: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        timestamp(),
        text("cluster_name"),
        text("host_name"),
        text("host_ip"),
        text("type"),
        text("level"),
        text("message"),
    ];
    fields.extend(provenance());
    Arc::new(Schema::new(fields))
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kubearmor_field_has_a_column() {
        // Alert has 44 fields: Timestamp and UpdatedTime share `timestamp` (-1), Owner (+2) and
        // ExecEvent (+1) are flattened; then operator and endpoint (+2).
        assert_eq!(Table::Alerts.schema().fields().len(), 44 - 1 + 2 + 1 + 2);
        // Log has 34 fields, the same adjustments.
        assert_eq!(Table::Logs.schema().fields().len(), 34 - 1 + 2 + 1 + 2);
        // Message has 8 fields.
        assert_eq!(Table::Messages.schema().fields().len(), 8 - 1 + 2);
    }

    #[test]
    fn queries_read_text_as_views() {
        for t in Table::ALL {
            let (stored, query) = (t.schema(), t.query_schema());
            assert_eq!(stored.fields().len(), query.fields().len());
            for (s, q) in stored.fields().iter().zip(query.fields()) {
                assert_eq!(s.name(), q.name());
                assert_eq!(s.is_nullable(), q.is_nullable());
                match s.data_type() {
                    DataType::Utf8 => assert_eq!(q.data_type(), &DataType::Utf8View),
                    other => assert_eq!(q.data_type(), other),
                }
            }
            assert_eq!(&without_views(&query), stored.as_ref());
        }
    }

    #[test]
    fn names_round_trip() {
        for (i, t) in Table::ALL.into_iter().enumerate() {
            assert_eq!(Table::from_name(t.name()), Some(t));
            assert_eq!(t.index(), i);
        }
        assert_eq!(Table::from_name("events"), None);
    }
}
