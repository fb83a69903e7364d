//! How armorlake's own plan nodes cross the network between a query node and the operators
//! (datafusion-distributed's user codec, registered on both sides).

use std::sync::Arc;

use armorlake_common::Table;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::DefaultLogicalExtensionCodec;
use datafusion_proto::logical_plan::from_proto::parse_exprs;
use datafusion_proto::logical_plan::to_proto::serialize_exprs;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use datafusion_proto::protobuf::LogicalExprNode;
use prost::Message;

use crate::scan::{OperatorScanExec, TaskTarget};

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
        if !inputs.is_empty() {
            return Err(codec_error("decoding OperatorScanExec", "it has no inputs"));
        }
        let proto = ScanProto::decode(buf).map_err(|e| codec_error("decoding a scan", e))?;
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
            .with_query_id(proto.query_id),
        ))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(scan) = node.downcast_ref::<OperatorScanExec>() else {
            return Err(codec_error(
                "encoding",
                format!("unknown node {}", node.name()),
            ));
        };
        let proto = ScanProto {
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
        };
        proto
            .encode(buf)
            .map_err(|e| codec_error("encoding a scan", e))
    }
}
