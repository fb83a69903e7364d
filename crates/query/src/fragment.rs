//! Whole plans on one operator. When every scan of a query reads the same one operator (the
//! query's time range is held by one cluster), the query node sends the whole optimised plan
//! to that operator in one Arrow Flight `DoGet` and relays the rows that come back.
//!
//! datafusion-distributed would cut the same plan into a stage for the operator and a stage
//! for the query node, and the operator's stage, having one task, would be padded with an
//! empty second task to keep it off the query node: per task a coordinator channel, a session
//! state built on the worker, the plan decoded and a stream per partition, twice over, for
//! what is one scan. Here the operator decodes the plan against a session it built once and
//! runs it to the end, so even the final aggregation or sort happens where the rows are.

use std::fmt;
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, AsArray, RecordBatchOptions};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use bytes::Bytes;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::config::ConfigOptions;
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryLimit};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::analyze::AnalyzeExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::Boundedness;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    displayable, execute_stream,
};
use datafusion::prelude::SessionConfig;
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};
use url::Url;

use crate::WorkerChannels;
use crate::codec::ArmorlakeCodec;
use crate::scan::{LocalOperator, OperatorScanExec, TaskTarget};

/// The largest gRPC message either side accepts: a plan, or a batch of rows.
const MAX_MESSAGE: usize = 64 << 20;

/// What a `DoGet` ticket holds: the plan, and the memory the statement may use
/// (`--query-memory-limit` on the query node), which the operator gives the plan's run.
#[derive(Clone, PartialEq, prost::Message)]
struct FragmentTicket {
    /// The physical plan (datafusion-proto, with [`ArmorlakeCodec`]).
    #[prost(bytes = "bytes", tag = "1")]
    plan: Bytes,
    /// Bytes of memory; absent: no limit.
    #[prost(uint64, optional, tag = "2")]
    memory_limit: Option<u64>,
}

/// Replaces a plan whose scans all read one remote operator with an [`OperatorPlanExec`]
/// that runs it there whole. Plans it cannot ship as they are (another leaf than a scan, a
/// function the operators do not have, `EXPLAIN ANALYZE`, which reports per-stage metrics)
/// are left to datafusion-distributed.
#[derive(Debug)]
pub struct RunOnOneOperator {
    channels: WorkerChannels,
}

impl RunOnOneOperator {
    /// The rule, reaching operators through `channels`.
    pub fn new(channels: WorkerChannels) -> RunOnOneOperator {
        RunOnOneOperator { channels }
    }
}

impl PhysicalOptimizerRule for RunOnOneOperator {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if plan.downcast_ref::<AnalyzeExec>().is_some() {
            return Ok(plan);
        }
        let Some(target) = sole_remote_target(&plan)? else {
            return Ok(plan);
        };
        // One task there: every scan keeps only the slot it reads (no padding).
        let whole = Arc::clone(&plan)
            .transform_up(|node| {
                let Some(scan) = node.downcast_ref::<OperatorScanExec>() else {
                    return Ok(Transformed::no(node));
                };
                let reads: Vec<TaskTarget> = scan.tasks().iter().flatten().cloned().collect();
                let scan = scan.with_tasks(vec![reads])?;
                Ok(Transformed::yes(Arc::new(scan) as Arc<dyn ExecutionPlan>))
            })?
            .data;
        let Some(encoded) = encode_for_operators(&whole) else {
            return Ok(plan);
        };
        let url = Url::parse(&target.url)
            .map_err(|e| DataFusionError::Internal(format!("worker URL {:?}: {e}", target.url)))?;
        Ok(Arc::new(OperatorPlanExec::new(
            target,
            url,
            whole,
            encoded,
            self.channels.clone(),
        )))
    }

    fn name(&self) -> &str {
        "armorlake_run_on_one_operator"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The one remote operator every scan of `plan` reads, if there is exactly one and every
/// leaf of the plan is a scan (or reads nothing).
fn sole_remote_target(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<TaskTarget>> {
    let mut sole: Option<TaskTarget> = None;
    let mut shippable = true;
    plan.apply(|node| {
        if !node.children().is_empty() || node.downcast_ref::<EmptyExec>().is_some() {
            return Ok(TreeNodeRecursion::Continue);
        }
        let Some(scan) = node.downcast_ref::<OperatorScanExec>() else {
            shippable = false;
            return Ok(TreeNodeRecursion::Stop);
        };
        for target in scan.tasks().iter().flatten() {
            let same = match &sole {
                None => !target.url.is_empty(),
                Some(sole) => sole == target,
            };
            if !same {
                shippable = false;
                return Ok(TreeNodeRecursion::Stop);
            }
            sole.get_or_insert_with(|| target.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(sole.filter(|_| shippable))
}

/// What an operator's fragment service decodes plans with: DataFusion's functions and
/// armorlake's, as on the operators' workers.
fn operator_functions() -> Result<Arc<TaskContext>> {
    let mut state = SessionStateBuilder::new().with_default_features().build();
    crate::functions::register(&mut state)?;
    Ok(state.task_ctx())
}

/// `plan` encoded for an operator, if the operators can decode it: a query node has
/// functions of its own (the PostgreSQL catalog's) that they do not.
fn encode_for_operators(plan: &Arc<dyn ExecutionPlan>) -> Option<Bytes> {
    static OPERATOR_FUNCTIONS: LazyLock<Option<Arc<TaskContext>>> =
        LazyLock::new(|| operator_functions().ok());
    let ctx = OPERATOR_FUNCTIONS.as_ref()?;
    let encoded = physical_plan_to_bytes_with_extension_codec(Arc::clone(plan), &ArmorlakeCodec);
    let encoded = encoded
        .inspect_err(|e| tracing::debug!(error = %e, "a plan stays distributed: not encodable"))
        .ok()?;
    match physical_plan_from_bytes_with_extension_codec(&encoded, ctx, &ArmorlakeCodec) {
        Ok(_) => Some(encoded),
        Err(e) => {
            tracing::debug!(error = %e, "a plan stays distributed: operators cannot decode it");
            None
        }
    }
}

/// A whole plan run on one operator, its rows relayed. Its one partition is the plan's
/// partitions merged there.
#[derive(Debug)]
pub struct OperatorPlanExec {
    target: TaskTarget,
    url: Url,
    plan: Arc<dyn ExecutionPlan>,
    encoded: Bytes,
    channels: WorkerChannels,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl OperatorPlanExec {
    fn new(
        target: TaskTarget,
        url: Url,
        plan: Arc<dyn ExecutionPlan>,
        encoded: Bytes,
        channels: WorkerChannels,
    ) -> OperatorPlanExec {
        // One partition keeps its order across the wire; several are merged in any order.
        let equivalence = match plan.output_partitioning().partition_count() {
            1 => plan.equivalence_properties().clone(),
            _ => EquivalenceProperties::new(plan.schema()),
        };
        let properties = Arc::new(PlanProperties::new(
            equivalence,
            Partitioning::UnknownPartitioning(1),
            plan.pipeline_behavior(),
            Boundedness::Bounded,
        ));
        OperatorPlanExec {
            target,
            url,
            plan,
            encoded,
            channels,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The operator it runs on.
    pub fn target(&self) -> &TaskTarget {
        &self.target
    }
}

impl DisplayAs for OperatorPlanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let on = format!("{}@{}", self.target.cluster, self.target.node);
        match t {
            DisplayFormatType::TreeRender => write!(f, "runs_on={on}"),
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "OperatorPlanExec: runs on {on}")?;
                // The plan it ships, indented as its child would be.
                let verbose = matches!(t, DisplayFormatType::Verbose);
                let inner = displayable(self.plan.as_ref()).indent(verbose).to_string();
                for line in inner.lines() {
                    write!(f, "\n  {line}")?;
                }
                Ok(())
            }
        }
    }
}

impl ExecutionPlan for OperatorPlanExec {
    fn name(&self) -> &str {
        "OperatorPlanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "OperatorPlanExec has one partition, asked for {partition}"
            )));
        }
        let channel = self.channels.channel(&self.url)?;
        let memory_limit = match context.memory_pool().memory_limit() {
            MemoryLimit::Finite(bytes) => Some(bytes as u64),
            MemoryLimit::Infinite | MemoryLimit::Unknown => None,
        };
        let ticket = FragmentTicket {
            plan: self.encoded.clone(),
            memory_limit,
        };
        let ticket = Ticket {
            ticket: ticket.encode_to_vec().into(),
        };
        let node = self.target.node.clone();
        let address = self.url.authority().to_string();
        let schema = self.schema();
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let batches = futures::stream::once(async move {
            let mut client =
                FlightServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
            let response = client
                .do_get(ticket)
                .await
                .map_err(|status| operator_error(&node, &address, status))?;
            let data = response.into_inner().map_err(FlightError::from);
            let batches =
                FlightRecordBatchStream::new_from_flight_data(data).map_err(move |e| match e {
                    FlightError::Tonic(status) => operator_error(&node, &address, *status),
                    other => DataFusionError::External(Box::new(other)),
                });
            Ok::<_, DataFusionError>(batches)
        })
        .try_flatten();
        let declared = self.schema();
        let batches = batches.map(move |batch| {
            let batch = batch?;
            baseline.record_output(batch.num_rows());
            // The declared schema (the wire keeps types, not field metadata).
            RecordBatch::try_new(Arc::clone(&declared), batch.columns().to_vec())
                .map_err(DataFusionError::from)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            batches.boxed(),
        )))
    }
}

/// An error the operator sent, or one reaching it: the query node's errors say which
/// operator, and an unreachable one maps to a connection failure.
fn operator_error(node: &str, address: &str, status: Status) -> DataFusionError {
    match status.code() {
        tonic::Code::Unavailable => DataFusionError::Execution(format!(
            "operator {node} ({address}) is unreachable: {}",
            status.message()
        )),
        tonic::Code::ResourceExhausted => {
            DataFusionError::ResourcesExhausted(format!("operator {node}: {}", status.message()))
        }
        _ => DataFusionError::Execution(format!("operator {node}: {}", status.message())),
    }
}

/// The service an operator runs whole plans with (Arrow Flight `DoGet`, the ticket an
/// encoded plan), beside datafusion-distributed's worker service.
#[derive(Debug, Clone)]
pub struct FragmentService {
    ctx: Arc<TaskContext>,
}

impl FragmentService {
    /// The service reading `local`'s rows. The session is built once: plans only need its
    /// functions to decode and its operator to scan.
    pub fn new(local: LocalOperator) -> Result<FragmentService> {
        let config = SessionConfig::new().with_extension(Arc::new(local));
        let mut state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .build();
        crate::functions::register(&mut state)?;
        Ok(FragmentService {
            ctx: state.task_ctx(),
        })
    }

    /// The session's context with a memory pool of `bytes` of its own.
    fn limited_to(&self, bytes: usize) -> Result<Arc<TaskContext>> {
        let base = &self.ctx;
        let runtime = RuntimeEnvBuilder::from_runtime_env(&base.runtime_env())
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(bytes)))
            .build_arc()?;
        Ok(Arc::new(TaskContext::new(
            base.task_id(),
            base.session_id(),
            base.session_config().clone(),
            base.scalar_functions().clone(),
            base.higher_order_functions().clone(),
            base.aggregate_functions().clone(),
            base.window_functions().clone(),
            runtime,
        )))
    }

    /// As a gRPC service.
    pub fn into_server(self) -> FlightServiceServer<FragmentService> {
        FlightServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn run(&self, ticket: &[u8]) -> Result<BoxStream<'static, Result<FlightData, Status>>, Status> {
        let not_a_plan = |e: &dyn fmt::Display| {
            Status::invalid_argument(format!("not a plan this operator runs: {e}"))
        };
        let ticket = FragmentTicket::decode(ticket).map_err(|e| not_a_plan(&e))?;
        let plan =
            physical_plan_from_bytes_with_extension_codec(&ticket.plan, &self.ctx, &ArmorlakeCodec)
                .map_err(|e| not_a_plan(&e))?;
        let ctx = match ticket.memory_limit {
            Some(bytes) => self.limited_to(bytes as usize).map_err(fragment_status)?,
            None => Arc::clone(&self.ctx),
        };
        let schema = plan.schema();
        let batches = execute_stream(plan, ctx)
            .map_err(fragment_status)?
            .and_then(|batch| std::future::ready(compact_views(batch)))
            .map_err(|e| FlightError::ExternalError(Box::new(e)));
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_dictionary_handling(DictionaryHandling::Resend)
            .build(batches)
            .map_err(|e| match e {
                FlightError::ExternalError(e) => match e.downcast::<DataFusionError>() {
                    Ok(e) => fragment_status(*e),
                    Err(e) => Status::internal(e.to_string()),
                },
                other => Status::from(other),
            });
        Ok(data.boxed())
    }
}

/// `batch` with its view arrays holding only the bytes they point at. Text read from
/// Parquet points into whole pages, which would otherwise all cross the network.
fn compact_views(batch: RecordBatch) -> Result<RecordBatch> {
    let views = |c: &ArrayRef| matches!(c.data_type(), DataType::Utf8View | DataType::BinaryView);
    if !batch.columns().iter().any(views) {
        return Ok(batch);
    }
    let (schema, columns, rows) = batch.into_parts();
    let columns = columns
        .into_iter()
        .map(|c| match c.data_type() {
            DataType::Utf8View => Arc::new(c.as_string_view().gc()) as ArrayRef,
            DataType::BinaryView => Arc::new(c.as_binary_view().gc()) as ArrayRef,
            _ => c,
        })
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        schema, columns, &options,
    )?)
}

/// A fragment's error as a gRPC status: running out of memory stays recognisable.
fn fragment_status(e: DataFusionError) -> Status {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

type Unsupported<T> = BoxStream<'static, Result<T, Status>>;

fn unsupported<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "an operator's fragment service runs plans (DoGet) only, not {what}"
    )))
}

#[tonic::async_trait]
impl FlightService for FragmentService {
    type HandshakeStream = Unsupported<HandshakeResponse>;
    type ListFlightsStream = Unsupported<FlightInfo>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = Unsupported<PutResult>;
    type DoExchangeStream = Unsupported<FlightData>;
    type DoActionStream = Unsupported<arrow_flight::Result>;
    type ListActionsStream = Unsupported<ActionType>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket = request.into_inner().ticket;
        match self.run(&ticket) {
            Ok(stream) => Ok(Response::new(stream)),
            Err(status) => {
                tracing::warn!(error = %status.message(), "a plan fragment could not run");
                Err(status)
            }
        }
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unsupported("Handshake")
    }

    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unsupported("ListFlights")
    }

    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unsupported("GetFlightInfo")
    }

    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unsupported("PollFlightInfo")
    }

    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unsupported("GetSchema")
    }

    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        unsupported("DoPut")
    }

    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unsupported("DoExchange")
    }

    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        unsupported("DoAction")
    }

    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        unsupported("ListActions")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use armorlake_common::Table;
    use armorlake_meta::ClusterSecurity;
    use datafusion::physical_plan::union::UnionExec;

    fn target(cluster: &str, remote: bool) -> Vec<TaskTarget> {
        vec![TaskTarget {
            cluster: cluster.into(),
            node: format!("{cluster}-1"),
            url: match remote {
                true => format!("http://127.0.0.1:7000/{cluster}"),
                false => String::new(),
            },
        }]
    }

    fn scan(tasks: Vec<Vec<TaskTarget>>) -> Arc<dyn ExecutionPlan> {
        Arc::new(OperatorScanExec::new(Table::Logs, None, vec![], None, tasks, 2).unwrap())
    }

    /// Where the rule sends `plan`: the node it runs on whole, and its scans' slots.
    fn run(plan: Arc<dyn ExecutionPlan>) -> Option<(String, Vec<usize>)> {
        let rule = RunOnOneOperator::new(WorkerChannels::new(ClusterSecurity::none()));
        let plan = rule.optimize(plan, &ConfigOptions::default()).unwrap();
        let remote = plan.downcast_ref::<OperatorPlanExec>()?;
        let mut slots = Vec::new();
        remote
            .plan
            .apply(|node| {
                if let Some(scan) = node.downcast_ref::<OperatorScanExec>() {
                    slots.push(scan.tasks().len());
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .unwrap();
        Some((remote.target().node.clone(), slots))
    }

    #[test]
    fn a_plan_reading_one_remote_operator_runs_there_whole_without_padding() {
        let one = scan(vec![target("b", true), vec![]]);
        assert_eq!(run(one), Some(("b-1".into(), vec![1])));
        let both = UnionExec::try_new(vec![
            scan(vec![target("b", true), vec![]]),
            scan(vec![vec![], target("b", true)]),
        ])
        .unwrap();
        assert_eq!(run(both), Some(("b-1".into(), vec![1, 1])));
    }

    #[test]
    fn plans_over_two_operators_or_this_process_stay_with_the_distributed_planner() {
        let two = scan(vec![target("a", true), target("b", true)]);
        assert_eq!(run(two), None);
        let union = UnionExec::try_new(vec![
            scan(vec![target("a", true), vec![]]),
            scan(vec![vec![], target("b", true)]),
        ])
        .unwrap();
        assert_eq!(run(union), None);
        assert_eq!(run(scan(vec![target("b", false)])), None);
    }

    #[test]
    fn explain_analyze_keeps_its_per_stage_metrics() {
        let one = scan(vec![target("b", true), vec![]]);
        let analyze =
            Arc::new(AnalyzeExec::builder(false, false, one.clone(), one.schema()).build());
        assert_eq!(run(analyze), None);
    }
}
