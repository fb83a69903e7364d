//! How armorlake's own plan nodes cross the network between a query node and the operators
//! (datafusion-distributed's user codec, registered on both sides).

use std::sync::Arc;

use armorlake_common::Table;
use arrow::datatypes::Schema;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::DefaultLogicalExtensionCodec;
use datafusion_proto::logical_plan::from_proto::parse_exprs;
use datafusion_proto::logical_plan::to_proto::serialize_exprs;
use datafusion_proto::physical_plan::from_proto::parse_physical_expr;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use datafusion_proto::protobuf::LogicalExprNode;
use prost::Message;

use crate::count_by_text::{CountByTextExec, group_schema};
use crate::scan::{OperatorScanExec, TaskTarget};

/// One of armorlake's nodes on the wire.
#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(oneof = "Node", tags = "1, 2, 3")]
    node: Option<Node>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Node {
    #[prost(message, tag = "1")]
    Scan(ScanProto),
    #[prost(message, tag = "2")]
    CountByText(CountByTextProto),
    /// A `CountByTextExec` with a condition on its groups. A tag of its own, so that a
    /// process that does not know the condition fails to decode it rather than count rows
    /// the condition rejects.
    #[prost(message, tag = "3")]
    CountByTextKeeping(CountByTextProto),
}

/// [`CountByTextExec`] on the wire (its input is the node's one child).
#[derive(Clone, PartialEq, Message)]
struct CountByTextProto {
    #[prost(uint32, tag = "1")]
    group: u32,
    #[prost(message, repeated, tag = "2")]
    counts: Vec<CountProto>,
    #[prost(message, optional, tag = "3")]
    schema: Option<datafusion_proto::protobuf::Schema>,
    /// The condition on the groups, over a batch of the group column alone.
    #[prost(message, optional, tag = "4")]
    keep: Option<datafusion_proto::protobuf::PhysicalExprNode>,
}

/// One count: of a column's non-null values, or (no column) of rows.
#[derive(Clone, PartialEq, Message)]
struct CountProto {
    #[prost(uint32, optional, tag = "1")]
    column: Option<u32>,
}

/// [`OperatorScanExec`] on the wire: the table by name, never a file path.
#[derive(Clone, PartialEq, Message)]
struct ScanProto {
    #[prost(string, tag = "1")]
    table: String,
    #[prost(bool, tag = "2")]
    projected: bool,
    #[prost(uint32, repeated, tag = "3")]
    projection: Vec<u32>,
    #[prost(message, repeated, tag = "4")]
    filters: Vec<LogicalExprNode>,
    #[prost(uint64, optional, tag = "5")]
    limit: Option<u64>,
    #[prost(message, repeated, tag = "6")]
    tasks: Vec<TaskProto>,
    #[prost(uint32, tag = "7")]
    partitions: u32,
    /// The query's id (a W3C trace id), for the operators' logs.
    #[prost(string, tag = "8")]
    query_id: String,
    /// The text columns read as dictionaries (for a `CountByTextExec` above). An operator
    /// that does not know the field reads them as views, which that node also takes.
    #[prost(uint32, repeated, tag = "9")]
    dictionaries: Vec<u32>,
}

#[derive(Clone, PartialEq, Message)]
struct TaskProto {
    #[prost(message, repeated, tag = "1")]
    targets: Vec<TargetProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TargetProto {
    #[prost(string, tag = "1")]
    cluster: String,
    #[prost(string, tag = "2")]
    node: String,
    #[prost(string, tag = "3")]
    url: String,
}

/// Encodes and decodes armorlake's plan nodes.
#[derive(Debug, Default, Clone, Copy)]
pub struct ArmorlakeCodec;

fn codec_error(what: &str, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("{what}: {e}"))
}

impl PhysicalExtensionCodec for ArmorlakeCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let proto = NodeProto::decode(buf).map_err(|e| codec_error("decoding a node", e))?;
        match proto.node {
            Some(Node::Scan(scan)) if inputs.is_empty() => decode_scan(scan, ctx),
            Some(Node::CountByText(count) | Node::CountByTextKeeping(count)) => {
                let [input] = inputs else {
                    return Err(codec_error("decoding CountByTextExec", "it has one input"));
                };
                let schema = count
                    .schema
                    .as_ref()
                    .ok_or_else(|| codec_error("decoding CountByTextExec", "no schema"))?;
                let schema = Schema::try_from(schema)
                    .map_err(|e| codec_error("decoding CountByTextExec's schema", e))?;
                let counts = count
                    .counts
                    .iter()
                    .map(|c| c.column.map(|c| c as usize))
                    .collect();
                let groups = group_schema(&schema);
                let keep = count
                    .keep
                    .as_ref()
                    .map(|keep| parse_physical_expr(keep, ctx, &groups, self))
                    .transpose()?;
                let exec = CountByTextExec::try_new(
                    Arc::clone(input),
                    count.group as usize,
                    counts,
                    Arc::new(schema),
                )?;
                Ok(Arc::new(match keep {
                    Some(keep) => exec.keeping(keep),
                    None => exec,
                }))
            }
            Some(Node::Scan(_)) => {
                Err(codec_error("decoding OperatorScanExec", "it has no inputs"))
            }
            None => Err(codec_error("decoding a node", "none given")),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let node = if let Some(scan) = node.downcast_ref::<OperatorScanExec>() {
            Node::Scan(encode_scan(scan)?)
        } else if let Some(count) = node.downcast_ref::<CountByTextExec>() {
            let schema = datafusion_proto::protobuf::Schema::try_from(count.schema().as_ref())
                .map_err(|e| codec_error("encoding CountByTextExec's schema", e))?;
            let keep = count
                .keep()
                .map(|keep| proto_converter.physical_expr_to_proto(keep, self))
                .transpose()?;
            let proto = CountByTextProto {
                group: count.group() as u32,
                counts: count
                    .counts()
                    .iter()
                    .map(|c| CountProto {
                        column: c.map(|c| c as u32),
                    })
                    .collect(),
                schema: Some(schema),
                keep,
            };
            match proto.keep {
                Some(_) => Node::CountByTextKeeping(proto),
                None => Node::CountByText(proto),
            }
        } else {
            return Err(codec_error(
                "encoding",
                format!("unknown node {}", node.name()),
            ));
        };
        NodeProto { node: Some(node) }
            .encode(buf)
            .map_err(|e| codec_error("encoding a node", e))
    }
}

/// The scan `proto` describes.
fn decode_scan(proto: ScanProto, ctx: &TaskContext) -> Result<Arc<dyn ExecutionPlan>> {
    let table = Table::from_name(&proto.table)
        .ok_or_else(|| codec_error("decoding a scan", format!("no table {}", proto.table)))?;
    let projection = proto
        .projected
        .then(|| proto.projection.iter().map(|&i| i as usize).collect());
    let filters = parse_exprs(&proto.filters, ctx, &DefaultLogicalExtensionCodec {})
        .map_err(|e| codec_error("decoding a scan's filters", e))?;
    let tasks = proto
        .tasks
        .into_iter()
        .map(|t| {
            t.targets
                .into_iter()
                .map(|t| TaskTarget {
                    cluster: t.cluster,
                    node: t.node,
                    url: t.url,
                })
                .collect()
        })
        .collect();
    let limit = proto.limit.map(|l| l as usize);
    Ok(Arc::new(
        OperatorScanExec::new(
            table,
            projection,
            filters,
            limit,
            tasks,
            proto.partitions as usize,
        )?
        .with_dictionaries(proto.dictionaries.iter().map(|&c| c as usize).collect())?
        .with_query_id(proto.query_id),
    ))
}

/// `scan` as its message.
fn encode_scan(scan: &OperatorScanExec) -> Result<ScanProto> {
    Ok(ScanProto {
        table: scan.table.name().to_string(),
        projected: scan.projection.is_some(),
        projection: scan
            .projection
            .iter()
            .flatten()
            .map(|&i| i as u32)
            .collect(),
        filters: serialize_exprs(&scan.filters, &DefaultLogicalExtensionCodec {})
            .map_err(|e| codec_error("encoding a scan's filters", e))?,
        limit: scan.limit.map(|l| l as u64),
        tasks: scan
            .tasks
            .iter()
            .map(|task| TaskProto {
                targets: task
                    .iter()
                    .map(|t| TargetProto {
                        cluster: t.cluster.clone(),
                        node: t.node.clone(),
                        url: t.url.clone(),
                    })
                    .collect(),
            })
            .collect(),
        partitions: scan.partitions as u32,
        query_id: scan.query_id.clone(),
        dictionaries: scan.dictionaries.iter().map(|&c| c as u32).collect(),
    })
}
