//! Flight SQL's metadata commands, answered from the DataFusion catalog itself: catalogs,
//! schemas, tables (with their Arrow schemas), table types and server information.

use std::sync::LazyLock;

use armorlake_common::schema::without_views;
use arrow::array::RecordBatch;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetTableTypes, CommandGetTables, SqlInfo,
    SqlSupportedCaseSensitivity, SqlSupportedTransaction,
};
use datafusion::datasource::TableType;
use datafusion::prelude::SessionContext;
use tonic::Status;

use super::error;

type Result<T> = std::result::Result<T, Status>;

/// Schemas that exist for PostgreSQL clients' catalog queries only; Flight SQL clients get
/// the same information from the metadata commands.
const HIDDEN_SCHEMAS: &[&str] = &["pg_catalog"];

/// Every table type a DataFusion catalog can hold, as Flight SQL names them.
const TABLE_TYPES: [TableType; 3] = [TableType::Base, TableType::View, TableType::Temporary];

fn type_name(table_type: TableType) -> &'static str {
    match table_type {
        TableType::Base => "TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    }
}

fn visible(schema: &str) -> bool {
    !HIDDEN_SCHEMAS.contains(&schema)
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

pub(crate) fn catalogs(ctx: &SessionContext, query: CommandGetCatalogs) -> Result<RecordBatch> {
    let mut builder = query.into_builder();
    for name in sorted(ctx.catalog_names()) {
        builder.append(name);
    }
    builder.build().map_err(Status::from)
}

pub(crate) fn schemas(ctx: &SessionContext, query: CommandGetDbSchemas) -> Result<RecordBatch> {
    let mut builder = query.into_builder();
    for catalog_name in sorted(ctx.catalog_names()) {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        for schema in sorted(catalog.schema_names()) {
            if visible(&schema) {
                builder.append(&catalog_name, schema);
            }
        }
    }
    builder.build().map_err(Status::from)
}

pub(crate) async fn tables(ctx: &SessionContext, query: CommandGetTables) -> Result<RecordBatch> {
    let mut builder = query.into_builder();
    for catalog_name in sorted(ctx.catalog_names()) {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in sorted(catalog.schema_names()) {
            let Some(schema) = catalog
                .schema(&schema_name)
                .filter(|_| visible(&schema_name))
            else {
                continue;
            };
            for table_name in sorted(schema.table_names()) {
                let Some(table) = schema
                    .table(&table_name)
                    .await
                    .map_err(|e| error::status(&e))?
                else {
                    continue;
                };
                builder
                    .append(
                        &catalog_name,
                        &schema_name,
                        &table_name,
                        type_name(table.table_type()),
                        &without_views(&table.schema()),
                    )
                    .map_err(Status::from)?;
            }
        }
    }
    builder.build().map_err(Status::from)
}

pub(crate) fn table_types(query: CommandGetTableTypes) -> Result<RecordBatch> {
    let mut builder = query.into_builder();
    for table_type in TABLE_TYPES {
        builder.append(type_name(table_type));
    }
    builder.build().map_err(Status::from)
}

/// What `GetSqlInfo` reports.
pub(crate) static SQL_INFO: LazyLock<Option<SqlInfoData>> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "armorlake");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    // The Arrow columnar format version (Schema.fbs MetadataVersion V5).
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5.0");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    match b.build() {
        Ok(data) => Some(data),
        Err(e) => {
            tracing::error!(error = %e, "building Flight SQL server information failed");
            None
        }
    }
});
