//! Schema `information_schema`, shaped like PostgreSQL's rather than DataFusion's: the
//! same views with the same columns in the same order, PostgreSQL's type names in
//! `columns.data_type` (`timestamp with time zone`, `text`, `ARRAY`) and `udt_name`
//! (`timestamptz`, `_text`), 1-based `ordinal_position`, `BASE TABLE`/`VIEW` in
//! `tables.table_type`, and the constraint views PowerBI reads (empty: armorlake's tables
//! have no keys). Grafana's pickers and PowerBI's navigator read these.
//!
//! DataFusion's own information_schema cannot be reshaped, so the engine turns it off and
//! registers this one in its place. Each view is computed when scanned, from the catalog
//! of the session that scans it, so it always shows the tables as they are.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_postgres::arrow_pg::datatypes::into_pg_type;

/// The schema's name.
pub const INFORMATION_SCHEMA: &str = "information_schema";

/// The views, each with its columns: `true` marks an integer (`cardinal_number`)
/// column, the others are text.
const VIEWS: &[(&str, &[(&str, bool)])] = &[
    (
        "tables",
        &[
            ("table_catalog", false),
            ("table_schema", false),
            ("table_name", false),
            ("table_type", false),
            ("self_referencing_column_name", false),
            ("reference_generation", false),
            ("user_defined_type_catalog", false),
            ("user_defined_type_schema", false),
            ("user_defined_type_name", false),
            ("is_insertable_into", false),
            ("is_typed", false),
            ("commit_action", false),
        ],
    ),
    (
        "columns",
        &[
            ("table_catalog", false),
            ("table_schema", false),
            ("table_name", false),
            ("column_name", false),
            ("ordinal_position", true),
            ("column_default", false),
            ("is_nullable", false),
            ("data_type", false),
            ("character_maximum_length", true),
            ("character_octet_length", true),
            ("numeric_precision", true),
            ("numeric_precision_radix", true),
            ("numeric_scale", true),
            ("datetime_precision", true),
            ("interval_type", false),
            ("interval_precision", true),
            ("character_set_catalog", false),
            ("character_set_schema", false),
            ("character_set_name", false),
            ("collation_catalog", false),
            ("collation_schema", false),
            ("collation_name", false),
            ("domain_catalog", false),
            ("domain_schema", false),
            ("domain_name", false),
            ("udt_catalog", false),
            ("udt_schema", false),
            ("udt_name", false),
            ("scope_catalog", false),
            ("scope_schema", false),
            ("scope_name", false),
            ("maximum_cardinality", true),
            ("dtd_identifier", false),
            ("is_self_referencing", false),
            ("is_identity", false),
            ("identity_generation", false),
            ("identity_start", false),
            ("identity_increment", false),
            ("identity_maximum", false),
            ("identity_minimum", false),
            ("identity_cycle", false),
            ("is_generated", false),
            ("generation_expression", false),
            ("is_updatable", false),
        ],
    ),
    (
        "schemata",
        &[
            ("catalog_name", false),
            ("schema_name", false),
            ("schema_owner", false),
            ("default_character_set_catalog", false),
            ("default_character_set_schema", false),
            ("default_character_set_name", false),
            ("sql_path", false),
        ],
    ),
    (
        "views",
        &[
            ("table_catalog", false),
            ("table_schema", false),
            ("table_name", false),
            ("view_definition", false),
            ("check_option", false),
            ("is_updatable", false),
            ("is_insertable_into", false),
            ("is_trigger_updatable", false),
            ("is_trigger_deletable", false),
            ("is_trigger_insertable_into", false),
        ],
    ),
    (
        "table_constraints",
        &[
            ("constraint_catalog", false),
            ("constraint_schema", false),
            ("constraint_name", false),
            ("table_catalog", false),
            ("table_schema", false),
            ("table_name", false),
            ("constraint_type", false),
            ("is_deferrable", false),
            ("initially_deferred", false),
            ("enforced", false),
            ("nulls_distinct", false),
        ],
    ),
    (
        "key_column_usage",
        &[
            ("constraint_catalog", false),
            ("constraint_schema", false),
            ("constraint_name", false),
            ("table_catalog", false),
            ("table_schema", false),
            ("table_name", false),
            ("column_name", false),
            ("ordinal_position", true),
            ("position_in_unique_constraint", true),
        ],
    ),
    (
        "referential_constraints",
        &[
            ("constraint_catalog", false),
            ("constraint_schema", false),
            ("constraint_name", false),
            ("unique_constraint_catalog", false),
            ("unique_constraint_schema", false),
            ("unique_constraint_name", false),
            ("match_option", false),
            ("update_rule", false),
            ("delete_rule", false),
        ],
    ),
    (
        "character_sets",
        &[
            ("character_set_catalog", false),
            ("character_set_schema", false),
            ("character_set_name", false),
            ("character_repertoire", false),
            ("form_of_use", false),
            ("default_collate_catalog", false),
            ("default_collate_schema", false),
            ("default_collate_name", false),
        ],
    ),
];

/// The `information_schema` schema, to register in the catalog.
pub fn schema() -> MemorySchemaProvider {
    let schema = MemorySchemaProvider::new();
    for (name, columns) in VIEWS {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(column, int)| {
                let data_type = if *int {
                    DataType::Int32
                } else {
                    DataType::Utf8
                };
                Field::new(*column, data_type, true)
            })
            .collect();
        let view = View {
            name,
            schema: Arc::new(Schema::new(fields)),
        };
        // Registering into a fresh in-memory schema cannot clash.
        let _ = schema.register_table(name.to_string(), Arc::new(view));
    }
    schema
}

/// One cell of a view's row.
enum Cell {
    Text(Option<String>),
    Int(Option<i32>),
}

fn text(s: impl Into<String>) -> Cell {
    Cell::Text(Some(s.into()))
}

const NULL: Cell = Cell::Text(None);
const NO_INT: Cell = Cell::Int(None);

#[derive(Debug)]
struct View {
    name: &'static str,
    schema: SchemaRef,
}

/// A table of the catalog, as the views list it.
struct Listed {
    schema: String,
    name: String,
    kind: TableType,
    columns: SchemaRef,
}

impl View {
    /// The view's rows for the catalog `state` plans in.
    async fn rows(&self, state: &SessionState) -> Result<Vec<Vec<Cell>>> {
        let catalog_name = state.config_options().catalog.default_catalog.clone();
        let database = || text(catalog_name.clone());
        let mut rows = Vec::new();
        match self.name {
            "schemata" => {
                for schema in schema_names(state, &catalog_name) {
                    rows.push(vec![
                        database(),
                        text(schema),
                        text("postgres"),
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                    ]);
                }
            }
            "tables" => {
                for t in tables(state, &catalog_name).await? {
                    let table_type = match t.kind {
                        TableType::Base => "BASE TABLE",
                        TableType::View => "VIEW",
                        TableType::Temporary => "LOCAL TEMPORARY",
                    };
                    rows.push(vec![
                        database(),
                        text(t.schema),
                        text(t.name),
                        text(table_type),
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        // Read-only: nothing can be inserted anywhere.
                        text("NO"),
                        text("NO"),
                        NULL,
                    ]);
                }
            }
            "views" => {
                for t in tables(state, &catalog_name).await? {
                    if t.kind != TableType::View {
                        continue;
                    }
                    rows.push(vec![
                        database(),
                        text(t.schema),
                        text(t.name),
                        NULL,
                        text("NONE"),
                        text("NO"),
                        text("NO"),
                        text("NO"),
                        text("NO"),
                        text("NO"),
                    ]);
                }
            }
            "columns" => {
                for t in tables(state, &catalog_name).await? {
                    for (i, field) in t.columns.fields().iter().enumerate() {
                        rows.push(column_row(&catalog_name, &t, i, field));
                    }
                }
            }
            "character_sets" => rows.push(vec![
                NULL,
                NULL,
                text("UTF8"),
                text("UCS"),
                text("UTF8"),
                database(),
                text("pg_catalog"),
                text("C"),
            ]),
            // The constraint views: no keys, no rows.
            _ => {}
        }
        Ok(rows)
    }
}

/// The row of `columns` for `t`'s column `i`.
fn column_row(catalog: &str, t: &Listed, i: usize, field: &Field) -> Vec<Cell> {
    let ty = PgType::of(field.data_type());
    let position = i32::try_from(i + 1).unwrap_or(i32::MAX);
    vec![
        text(catalog),
        text(t.schema.clone()),
        text(t.name.clone()),
        text(field.name().clone()),
        Cell::Int(Some(position)),
        NULL,
        text(if field.is_nullable() { "YES" } else { "NO" }),
        text(ty.data_type),
        NO_INT,
        Cell::Int(ty.octet_length),
        Cell::Int(ty.precision),
        Cell::Int(ty.radix),
        Cell::Int(ty.scale),
        Cell::Int(ty.datetime_precision),
        NULL,
        NO_INT,
        NULL,
        NULL,
        NULL,
        NULL,
        NULL,
        NULL,
        NULL,
        NULL,
        NULL,
        text(catalog),
        text("pg_catalog"),
        text(ty.udt_name),
        NULL,
        NULL,
        NULL,
        NO_INT,
        text(position.to_string()),
        text("NO"),
        text("NO"),
        NULL,
        NULL,
        NULL,
        NULL,
        NULL,
        text("NO"),
        text("NEVER"),
        NULL,
        text("NO"),
    ]
}

/// What `columns` says of a column's type, as PostgreSQL says it of the type the column
/// has on the wire.
struct PgType {
    data_type: String,
    udt_name: String,
    octet_length: Option<i32>,
    precision: Option<i32>,
    radix: Option<i32>,
    scale: Option<i32>,
    datetime_precision: Option<i32>,
}

impl PgType {
    fn of(data_type: &DataType) -> PgType {
        let udt_name = into_pg_type(data_type)
            .map(|t| t.name().to_string())
            .unwrap_or_else(|_| "text".to_string());
        let binary = |bits| (Some(bits), Some(2), Some(0));
        let (precision, radix, scale) = match (udt_name.as_str(), data_type) {
            ("int2", _) => binary(16),
            ("int4", _) => binary(32),
            ("int8", _) => binary(64),
            ("float4", _) => (Some(24), Some(2), None),
            ("float8", _) => (Some(53), Some(2), None),
            ("numeric", DataType::Decimal128(p, s) | DataType::Decimal256(p, s)) => {
                (Some(i32::from(*p)), Some(10), Some(i32::from(*s)))
            }
            _ => (None, None, None),
        };
        let datetime_precision = match udt_name.as_str() {
            "date" => Some(0),
            "time" | "timetz" | "timestamp" | "timestamptz" | "interval" => Some(6),
            _ => None,
        };
        // PostgreSQL's limit on one value, for the types without a length.
        let octet_length =
            matches!(udt_name.as_str(), "text" | "varchar" | "bpchar").then_some(1_073_741_824);
        let data_type = match udt_name.as_str() {
            "bool" => "boolean",
            "int2" => "smallint",
            "int4" => "integer",
            "int8" => "bigint",
            "float4" => "real",
            "float8" => "double precision",
            "varchar" => "character varying",
            "bpchar" => "character",
            "time" => "time without time zone",
            "timetz" => "time with time zone",
            "timestamp" => "timestamp without time zone",
            "timestamptz" => "timestamp with time zone",
            name if name.starts_with('_') => "ARRAY",
            name @ ("numeric" | "text" | "bytea" | "date" | "interval" | "json" | "jsonb"
            | "uuid" | "char" | "name" | "oid") => name,
            _ => "USER-DEFINED",
        }
        .to_string();
        PgType {
            data_type,
            udt_name,
            octet_length,
            precision,
            radix,
            scale,
            datetime_precision,
        }
    }
}

/// The schemas of `catalog`, sorted.
fn schema_names(state: &SessionState, catalog: &str) -> Vec<String> {
    let mut names = state
        .catalog_list()
        .catalog(catalog)
        .map(|c| c.schema_names())
        .unwrap_or_default();
    names.sort();
    names
}

/// Every table of `catalog`, by schema and name.
async fn tables(state: &SessionState, catalog_name: &str) -> Result<Vec<Listed>> {
    let Some(catalog) = state.catalog_list().catalog(catalog_name) else {
        return Ok(Vec::new());
    };
    let mut listed = Vec::new();
    for schema_name in schema_names(state, catalog_name) {
        let Some(schema) = catalog.schema(&schema_name) else {
            continue;
        };
        let mut names = schema.table_names();
        names.sort();
        for name in names {
            if let Some(table) = schema.table(&name).await? {
                listed.push(Listed {
                    schema: schema_name.clone(),
                    name,
                    kind: table.table_type(),
                    columns: table.schema(),
                });
            }
        }
    }
    Ok(listed)
}

/// `rows` as one batch of `schema`.
fn batch(schema: &SchemaRef, rows: &[Vec<Cell>]) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(c, field)| -> ArrayRef {
            if field.data_type() == &DataType::Int32 {
                let mut b = Int32Builder::with_capacity(rows.len());
                for row in rows {
                    b.append_option(match row.get(c) {
                        Some(Cell::Int(v)) => *v,
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            } else {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
                for row in rows {
                    b.append_option(match row.get(c) {
                        Some(Cell::Text(v)) => v.as_deref(),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[async_trait]
impl TableProvider for View {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let state = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| {
                DataFusionError::Internal("information_schema needs a SessionState".into())
            })?;
        let rows = self.rows(state).await?;
        let batch = batch(&self.schema, &rows)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::TimeUnit;

    #[test]
    fn types_are_named_as_postgres_names_them() {
        let ts = PgType::of(&DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        ));
        assert_eq!(
            (ts.data_type.as_str(), ts.udt_name.as_str()),
            ("timestamp with time zone", "timestamptz")
        );
        assert_eq!(ts.datetime_precision, Some(6));
        let int8 = PgType::of(&DataType::Int64);
        assert_eq!(
            (int8.data_type.as_str(), int8.udt_name.as_str()),
            ("bigint", "int8")
        );
        assert_eq!(
            (int8.precision, int8.radix, int8.scale),
            (Some(64), Some(2), Some(0))
        );
        let text = PgType::of(&DataType::Utf8);
        assert_eq!(
            (text.data_type.as_str(), text.udt_name.as_str()),
            ("text", "text")
        );
        let tags = PgType::of(&DataType::List(Arc::new(Field::new(
            "item",
            DataType::Utf8,
            true,
        ))));
        assert_eq!(
            (tags.data_type.as_str(), tags.udt_name.as_str()),
            ("ARRAY", "_text")
        );
        let decimal = PgType::of(&DataType::Decimal128(12, 3));
        assert_eq!((decimal.precision, decimal.scale), (Some(12), Some(3)));
    }

    #[tokio::test]
    async fn every_view_answers_with_its_columns() {
        let ctx = datafusion::prelude::SessionContext::new();
        let catalog = ctx.catalog("datafusion").unwrap();
        catalog
            .register_schema(INFORMATION_SCHEMA, Arc::new(schema()))
            .unwrap();
        for (name, columns) in VIEWS {
            let batches = ctx
                .sql(&format!("SELECT * FROM information_schema.{name}"))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let names: Vec<_> = batches[0]
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let expected: Vec<_> = columns.iter().map(|(c, _)| c.to_string()).collect();
            assert_eq!(names, expected, "{name}");
        }
        let rows = ctx
            .sql(
                "SELECT t.table_type, c.ordinal_position, c.data_type, c.udt_name \
                 FROM information_schema.columns c JOIN information_schema.tables t \
                 ON c.table_schema = t.table_schema AND c.table_name = t.table_name \
                 WHERE c.table_name = 'columns' AND c.column_name = 'ordinal_position'",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&rows)
            .unwrap()
            .to_string();
        assert!(
            text.contains("| VIEW       | 5                | integer   | int4     |"),
            "{text}"
        );
    }

    #[test]
    fn every_view_has_its_columns_once() {
        for (name, columns) in VIEWS {
            let mut names: Vec<_> = columns.iter().map(|(c, _)| c).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), columns.len(), "{name}");
        }
        let columns = VIEWS.iter().find(|(n, _)| *n == "columns").unwrap().1;
        let t = Listed {
            schema: "public".into(),
            name: "t".into(),
            kind: TableType::Base,
            columns: Arc::new(Schema::empty()),
        };
        let row = column_row("db", &t, 0, &Field::new("c", DataType::Int32, false));
        assert_eq!(row.len(), columns.len());
        for ((name, int), cell) in columns.iter().zip(&row) {
            assert_eq!(*int, matches!(cell, Cell::Int(_)), "{name}");
        }
    }
}
