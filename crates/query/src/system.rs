//! Schema `armorlake`: the cluster itself as tables, read from the master's metadata at
//! query time.

use std::sync::Arc;

use armorlake_common::schema::timestamp_type;
use armorlake_meta::MetaService;
use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// The system tables.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Nodes,
    Partitions,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Nodes => "nodes",
            Kind::Partitions => "partitions",
        }
    }

    fn schema(self) -> SchemaRef {
        let ts = |name: &str| Field::new(name, timestamp_type(), false);
        let text = |name: &str| Field::new(name, DataType::Utf8, false);
        let int8 = |name: &str| Field::new(name, DataType::Int64, false);
        Arc::new(Schema::new(match self {
            Kind::Nodes => vec![
                text("id"),
                text("role"),
                text("address"),
                text("version"),
                ts("registered_at"),
                ts("last_heartbeat"),
            ],
            Kind::Partitions => vec![
                text("table_name"),
                ts("hour"),
                text("operator"),
                int8("rows"),
                int8("bytes"),
                ts("min_time"),
                ts("max_time"),
            ],
        }))
    }
}

/// The `armorlake` schema over `meta`.
pub fn schema(meta: Arc<dyn MetaService>) -> MemorySchemaProvider {
    let schema = MemorySchemaProvider::new();
    for kind in [Kind::Nodes, Kind::Partitions] {
        let table = SystemTable {
            kind,
            meta: meta.clone(),
        };
        // Registering into a fresh in-memory schema cannot clash.
        let _ = schema.register_table(kind.name().to_string(), Arc::new(table));
    }
    schema
}

#[derive(Debug)]
struct SystemTable {
    kind: Kind,
    meta: Arc<dyn MetaService>,
}

fn ts_array(values: Vec<i64>) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from(values).with_timezone(armorlake_common::schema::TIME_ZONE),
    )
}

fn text_array(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

impl SystemTable {
    async fn batch(&self) -> Result<RecordBatch> {
        let external = |e: armorlake_meta::Error| DataFusionError::External(Box::new(e));
        let columns: Vec<ArrayRef> = match self.kind {
            Kind::Nodes => {
                let nodes = self.meta.nodes().await.map_err(external)?;
                vec![
                    text_array(nodes.iter().map(|n| n.id.clone()).collect()),
                    text_array(nodes.iter().map(|n| n.role.name().to_string()).collect()),
                    text_array(nodes.iter().map(|n| n.address.clone()).collect()),
                    text_array(nodes.iter().map(|n| n.version.clone()).collect()),
                    ts_array(nodes.iter().map(|n| n.registered_micros).collect()),
                    ts_array(nodes.iter().map(|n| n.heartbeat_micros).collect()),
                ]
            }
            Kind::Partitions => {
                let parts = self.meta.partitions().await.map_err(external)?;
                let int8 = |f: fn(&armorlake_meta::Partition) -> u64| -> ArrayRef {
                    Arc::new(Int64Array::from_iter_values(
                        parts
                            .iter()
                            .map(|p| i64::try_from(f(p)).unwrap_or(i64::MAX)),
                    ))
                };
                vec![
                    text_array(parts.iter().map(|p| p.table.name().to_string()).collect()),
                    ts_array(parts.iter().map(|p| p.hour_micros).collect()),
                    text_array(parts.iter().map(|p| p.operator.clone()).collect()),
                    int8(|p| p.rows),
                    int8(|p| p.bytes),
                    ts_array(parts.iter().map(|p| p.min_micros).collect()),
                    ts_array(parts.iter().map(|p| p.max_micros).collect()),
                ]
            }
        };
        Ok(RecordBatch::try_new(self.kind.schema(), columns)?)
    }
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        self.kind.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = self.batch().await?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema(),
            projection.cloned(),
        )?)
    }
}
