//! Schema `armorlake`: the cluster itself as tables, read from the master's metadata at
//! query time.

use std::sync::Arc;
use std::time::Duration;

use armorlake_common::Table;
use armorlake_common::schema::{TIME_ZONE, timestamp_type};
use armorlake_meta::{MetaService, Rule};
use armorlake_rules::{RuleSpec, parse_create_rule};
use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
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
    Sources,
    Tables,
    Rules,
    RuleFirings,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Nodes => "nodes",
            Kind::Partitions => "partitions",
            Kind::Sources => "sources",
            Kind::Tables => "tables",
            Kind::Rules => "rules",
            Kind::RuleFirings => "rule_firings",
        }
    }

    fn schema(self) -> SchemaRef {
        let ts = |name: &str| Field::new(name, timestamp_type(), false);
        let text = |name: &str| Field::new(name, DataType::Utf8, false);
        let int8 = |name: &str| Field::new(name, DataType::Int64, false);
        let nullable = |f: Field| f.with_nullable(true);
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
            Kind::Sources => vec![
                text("operator"),
                text("endpoint"),
                text("stream"),
                text("state"),
                int8("events"),
                int8("reconnects"),
                nullable(ts("last_event")),
                Field::new("seconds_disconnected", DataType::Float64, false),
                nullable(text("last_error")),
                int8("bad_messages"),
            ],
            Kind::Tables => vec![
                text("table_name"),
                int8("rows"),
                int8("bytes"),
                nullable(ts("min_time")),
                nullable(ts("max_time")),
            ],
            Kind::Rules => vec![
                text("name"),
                text("table_name"),
                text("predicate"),
                nullable(text("window")),
                nullable(int8("threshold")),
                nullable(text("channel")),
                nullable(text("webhook")),
                ts("created_at"),
                int8("firings"),
                nullable(ts("last_fired")),
                int8("deliveries"),
                int8("failures"),
                int8("dead_letters"),
                text("definition"),
            ],
            Kind::RuleFirings => vec![
                int8("seq"),
                ts("time"),
                text("rule"),
                text("operator"),
                ts("event_time"),
                nullable(text("channel")),
                text("payload"),
            ],
        }))
    }
}

/// The `armorlake` schema over `meta`.
pub fn schema(meta: Arc<dyn MetaService>) -> MemorySchemaProvider {
    let schema = MemorySchemaProvider::new();
    for kind in [
        Kind::Nodes,
        Kind::Partitions,
        Kind::Sources,
        Kind::Tables,
        Kind::Rules,
        Kind::RuleFirings,
    ] {
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

fn ts_array(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone(TIME_ZONE))
}

fn int8_array(values: impl IntoIterator<Item = u64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(
        values
            .into_iter()
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
    ))
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
                    ts_array(nodes.iter().map(|n| Some(n.registered_micros)).collect()),
                    ts_array(nodes.iter().map(|n| Some(n.heartbeat_micros)).collect()),
                ]
            }
            Kind::Partitions => {
                let parts = self.meta.partitions().await.map_err(external)?;
                vec![
                    text_array(parts.iter().map(|p| p.table.name().to_string()).collect()),
                    ts_array(parts.iter().map(|p| Some(p.hour_micros)).collect()),
                    text_array(parts.iter().map(|p| p.operator.clone()).collect()),
                    int8_array(parts.iter().map(|p| p.rows)),
                    int8_array(parts.iter().map(|p| p.bytes)),
                    ts_array(parts.iter().map(|p| Some(p.min_micros)).collect()),
                    ts_array(parts.iter().map(|p| Some(p.max_micros)).collect()),
                ]
            }
            Kind::Sources => {
                let sources = self.meta.sources().await.map_err(external)?;
                vec![
                    text_array(sources.iter().map(|s| s.operator.clone()).collect()),
                    text_array(sources.iter().map(|s| s.endpoint.clone()).collect()),
                    text_array(sources.iter().map(|s| s.table.name().to_string()).collect()),
                    text_array(sources.iter().map(|s| s.state.clone()).collect()),
                    int8_array(sources.iter().map(|s| s.events)),
                    int8_array(sources.iter().map(|s| s.reconnects)),
                    ts_array(sources.iter().map(|s| s.last_event_micros).collect()),
                    Arc::new(Float64Array::from_iter_values(
                        sources.iter().map(|s| s.disconnected_micros as f64 / 1e6),
                    )),
                    Arc::new(StringArray::from_iter(
                        sources.iter().map(|s| s.last_error.as_deref()),
                    )),
                    int8_array(sources.iter().map(|s| s.bad_messages)),
                ]
            }
            Kind::Tables => {
                let parts = self.meta.partitions().await.map_err(external)?;
                let mut totals = [(0u64, 0u64, None::<i64>, None::<i64>); Table::ALL.len()];
                for p in &parts {
                    let t = &mut totals[p.table.index()];
                    t.0 += p.rows;
                    t.1 += p.bytes;
                    t.2 = Some(t.2.map_or(p.min_micros, |m| m.min(p.min_micros)));
                    t.3 = Some(t.3.map_or(p.max_micros, |m| m.max(p.max_micros)));
                }
                vec![
                    text_array(Table::ALL.iter().map(|t| t.name().to_string()).collect()),
                    int8_array(totals.iter().map(|t| t.0)),
                    int8_array(totals.iter().map(|t| t.1)),
                    ts_array(totals.iter().map(|t| t.2).collect()),
                    ts_array(totals.iter().map(|t| t.3).collect()),
                ]
            }
            Kind::Rules => rule_columns(self.meta.rules().await.map_err(external)?),
            Kind::RuleFirings => {
                let firings = self
                    .meta
                    .wait_firings(0, Duration::ZERO)
                    .await
                    .map_err(external)?
                    .firings;
                vec![
                    int8_array(firings.iter().map(|f| f.seq)),
                    ts_array(firings.iter().map(|f| Some(f.fired_micros)).collect()),
                    text_array(firings.iter().map(|f| f.rule.clone()).collect()),
                    text_array(firings.iter().map(|f| f.operator.clone()).collect()),
                    ts_array(firings.iter().map(|f| Some(f.at_micros)).collect()),
                    Arc::new(StringArray::from_iter(
                        firings.iter().map(|f| f.channel.as_deref()),
                    )),
                    text_array(firings.iter().map(|f| f.payload.clone()).collect()),
                ]
            }
        };
        Ok(RecordBatch::try_new(self.kind.schema(), columns)?)
    }
}

/// `armorlake.rules`: each rule's clauses (parsed from its statement) and counters.
fn rule_columns(rules: Vec<Rule>) -> Vec<ArrayRef> {
    let specs: Vec<Option<RuleSpec>> = rules
        .iter()
        .map(|r| parse_create_rule(&r.sql).ok())
        .collect();
    let spec_text = |f: &dyn Fn(&RuleSpec) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter(
            specs.iter().map(|s| s.as_ref().and_then(f)),
        ))
    };
    vec![
        text_array(rules.iter().map(|r| r.name.clone()).collect()),
        text_array(
            specs
                .iter()
                .map(|s| s.as_ref().map(|s| s.table.clone()).unwrap_or_default())
                .collect(),
        ),
        text_array(
            specs
                .iter()
                .map(|s| s.as_ref().map(|s| s.predicate.clone()).unwrap_or_default())
                .collect(),
        ),
        spec_text(&|s| {
            s.window
                .map(|w| humantime::format_duration(w.every).to_string())
        }),
        Arc::new(Int64Array::from_iter(specs.iter().map(|s| {
            s.as_ref()
                .and_then(|s| s.window)
                .map(|w| i64::try_from(w.more_than).unwrap_or(i64::MAX))
        }))),
        spec_text(&|s| s.channel.clone()),
        spec_text(&|s| s.webhook.clone()),
        ts_array(rules.iter().map(|r| Some(r.created_micros)).collect()),
        int8_array(rules.iter().map(|r| r.stats.firings)),
        ts_array(rules.iter().map(|r| r.stats.last_fired_micros).collect()),
        int8_array(rules.iter().map(|r| r.stats.deliveries)),
        int8_array(rules.iter().map(|r| r.stats.failures)),
        int8_array(rules.iter().map(|r| r.stats.dead_letters)),
        text_array(rules.iter().map(|r| r.sql.clone()).collect()),
    ]
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
