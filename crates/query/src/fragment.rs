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

use armorlake_common::schema::text_dictionary_type;
use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, DictionaryArray, Int32Array, RecordBatchOptions,
    StringBuilder, StringViewArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
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
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{
    EquivalenceProperties, Partitioning, PhysicalExpr, ScalarFunctionExpr,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::analyze::AnalyzeExec;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::Boundedness;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::limit::LocalLimitExec;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    displayable, execute_stream, replace_children_if_necessary,
};
use datafusion::prelude::SessionConfig;
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use foldhash::fast::FixedState;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use hashbrown::HashMap;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};
use url::Url;

use crate::cluster::ArmorlakeOptions;
use crate::codec::ArmorlakeCodec;
use crate::count_by_text::CountByTextExec;
use crate::scan::{LocalOperator, OperatorScanExec, TaskTarget};
use crate::{WorkerChannels, go_on_while};

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
    /// The query node takes text as dictionaries (see [`text_as_dictionaries`]). An
    /// operator that does not know the field sends views, which it takes too.
    #[prost(bool, tag = "3")]
    dictionaries: bool,
    /// The statement the plan runs for, when it is not the one its scans were planned for
    /// (a plan the connection kept and runs again); the operator logs it instead.
    #[prost(string, tag = "4")]
    query_id: String,
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
        match Fragment::new(target, whole, false)? {
            Some(fragment) => Ok(Arc::new(OperatorPlanExec::new(
                vec![fragment],
                false,
                self.channels.clone(),
            ))),
            None => Ok(plan),
        }
    }

    fn name(&self) -> &str {
        "armorlake_run_on_one_operator"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Splits a plan over several remote operator clusters where its partitions meet. Above
/// each scan is a stretch of work done partition by partition (filters, projections, partial
/// aggregates, sorts of each partition, local limits) up to a node that merges partitions
/// (a repartition, a coalesce, a sort-preserving merge, a join or a union). That stretch is
/// sent whole to every cluster the scan reads, and one [`OperatorPlanExec`] with a partition
/// per operator takes its place; the query node merges what comes back. One round trip per
/// operator, and no stage anywhere.
///
/// It applies when every scan's stretch filters, aggregates or limits, so what crosses the
/// network is already reduced, or else reads few rows: at most `armorlake.gather_raw_rows_limit`
/// by the partitions the operators reported, such as the small side of a join whose other
/// side is aggregated. Those rows would cross the network anyway, shuffled between the
/// operators. A plan that moves more raw rows (a join of whole big tables) is left to
/// datafusion-distributed, which also runs the join on the operators. All or nothing: a
/// worker could not run a stage holding an [`OperatorPlanExec`]. (The distributed planner
/// leaves a plan whose leaves are all `OperatorPlanExec`s on the query node; its "children
/// isolator" unions, which would send each input of a union to a worker, are off.)
#[derive(Debug)]
pub struct GatherFromOperators {
    channels: WorkerChannels,
}

impl GatherFromOperators {
    /// The rule, reaching operators through `channels`.
    pub fn new(channels: WorkerChannels) -> GatherFromOperators {
        GatherFromOperators { channels }
    }

    /// `node` with the stretch over each of its scans sent to the operators, or `None` when
    /// one of them cannot be.
    fn gather(
        &self,
        node: &Arc<dyn ExecutionPlan>,
        raw_rows_limit: u64,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        if let Some((scan, reduces)) = stretch_scan(node) {
            let few = crate::cluster::few(scan.estimated_rows, raw_rows_limit);
            return match reduces || few {
                true => self.scatter(node, scan),
                false => Ok(None),
            };
        }
        let children = node.children();
        if children.is_empty() {
            return Ok(Some(Arc::clone(node)));
        }
        let mut gathered = Vec::with_capacity(children.len());
        for child in children {
            match self.gather(child, raw_rows_limit)? {
                Some(child) => gathered.push(child),
                None => return Ok(None),
            }
        }
        replace_children_if_necessary(Arc::clone(node), gathered).map(Some)
    }

    /// The stretch `top` over `scan`, run on each operator the scan reads: one partition per
    /// operator, ordered as the stretch is when it is.
    fn scatter(
        &self,
        top: &Arc<dyn ExecutionPlan>,
        scan: &OperatorScanExec,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let mut fragments = Vec::new();
        for slot in scan.tasks().iter().filter(|slot| !slot.is_empty()) {
            let target = &slot[0];
            if target.url.is_empty() || slot.iter().any(|t| t != target) {
                return Ok(None);
            }
            let shipped = Arc::clone(top)
                .transform_up(|node| match node.downcast_ref::<OperatorScanExec>() {
                    Some(scan) => Ok(Transformed::yes(
                        Arc::new(scan.with_tasks(vec![slot.clone()])?) as Arc<dyn ExecutionPlan>,
                    )),
                    None => Ok(Transformed::no(node)),
                })?
                .data;
            // The same stretch for every operator, so decoding it once tells for all.
            let checked = !fragments.is_empty();
            match Fragment::new(target.clone(), merged(shipped), checked)? {
                Some(fragment) => fragments.push(fragment),
                None => return Ok(None),
            }
        }
        // A limit over rows in no order: the first operators may already give enough.
        let one_after_another = top.fetch().is_some() && top.output_ordering().is_none();
        match fragments.is_empty() {
            // The time range rules out every cluster: the scan reads nothing where it is.
            true => Ok(Some(Arc::clone(top))),
            false => Ok(Some(Arc::new(OperatorPlanExec::new(
                fragments,
                one_after_another,
                self.channels.clone(),
            )))),
        }
    }
}

impl PhysicalOptimizerRule for GatherFromOperators {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if plan.downcast_ref::<AnalyzeExec>().is_some() || !reads_remote_operators(&plan)? {
            return Ok(plan);
        }
        let raw_rows_limit = config
            .extensions
            .get::<ArmorlakeOptions>()
            .map_or(ArmorlakeOptions::default().gather_raw_rows_limit, |o| {
                o.gather_raw_rows_limit
            });
        Ok(self.gather(&plan, raw_rows_limit)?.unwrap_or(plan))
    }

    fn name(&self) -> &str {
        "armorlake_gather_from_operators"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether a scan of `plan` reads another process's operator.
fn reads_remote_operators(plan: &Arc<dyn ExecutionPlan>) -> Result<bool> {
    plan.exists(|node| {
        Ok(node
            .downcast_ref::<OperatorScanExec>()
            .is_some_and(|scan| scan.tasks().iter().flatten().any(|t| !t.url.is_empty())))
    })
}

/// The scan at the bottom of `top`, when `top` and everything down to it work partition by
/// partition, and whether that stretch reduces the scan's rows (filters, aggregates or
/// limits them).
fn stretch_scan(top: &Arc<dyn ExecutionPlan>) -> Option<(&OperatorScanExec, bool)> {
    let mut reduces = false;
    let mut node = top;
    loop {
        if let Some(scan) = node.downcast_ref::<OperatorScanExec>() {
            return Some((scan, reduces || scan.limit.is_some()));
        }
        reduces |= per_partition(node)?;
        let [child] = node.children()[..] else {
            return None;
        };
        node = child;
    }
}

/// Whether `node` does its work within each input partition, never across them, and if so
/// whether it reduces rows.
fn per_partition(node: &Arc<dyn ExecutionPlan>) -> Option<bool> {
    if node.downcast_ref::<FilterExec>().is_some()
        || node.downcast_ref::<LocalLimitExec>().is_some()
    {
        return Some(true);
    }
    if node.downcast_ref::<ProjectionExec>().is_some()
        || node.downcast_ref::<CooperativeExec>().is_some()
    {
        return Some(false);
    }
    if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
        return (*aggregate.mode() == AggregateMode::Partial).then_some(true);
    }
    if node.downcast_ref::<CountByTextExec>().is_some() {
        return Some(true);
    }
    if let Some(sort) = node.downcast_ref::<SortExec>() {
        return sort
            .preserve_partitioning()
            .then_some(sort.fetch().is_some());
    }
    None
}

/// `plan` with its partitions merged into one: in order when they are ordered, and with its
/// limit, if it has one, applied to the merge.
fn merged(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    if plan.output_partitioning().partition_count() <= 1 {
        return plan;
    }
    let fetch = plan.fetch();
    match plan.output_ordering().cloned() {
        Some(ordering) => Arc::new(SortPreservingMergeExec::new(ordering, plan).with_fetch(fetch)),
        None => Arc::new(CoalescePartitionsExec::new(plan).with_fetch(fetch)),
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
/// functions of its own (the PostgreSQL catalog's) that they do not. `checked`: a plan that
/// differs from this one only in its scans' slots already passed.
fn encode_for_operators(plan: &Arc<dyn ExecutionPlan>, checked: bool) -> Option<Bytes> {
    static OPERATOR_FUNCTIONS: LazyLock<Option<Arc<TaskContext>>> =
        LazyLock::new(|| operator_functions().ok());
    let ctx = OPERATOR_FUNCTIONS.as_ref()?;
    if !checked && !calls_only(plan, ctx) {
        tracing::debug!("a plan stays distributed: it calls a function the operators lack");
        return None;
    }
    physical_plan_to_bytes_with_extension_codec(Arc::clone(plan), &ArmorlakeCodec)
        .inspect_err(|e| tracing::debug!(error = %e, "a plan stays distributed: not encodable"))
        .ok()
}

/// Whether every function `plan` calls is one of `ctx`'s, by the name decoding looks it up
/// by: in its physical expressions, and in its scans' filters (logical expressions, which
/// travel as they are). Aggregate and window functions are DataFusion's own on both sides
/// (a test holds the query node to that).
fn calls_only(plan: &Arc<dyn ExecutionPlan>, ctx: &TaskContext) -> bool {
    let known = |name: &str| ctx.scalar_functions().contains_key(name);
    let mut all_known = true;
    let walked = plan.apply(|node| {
        node.apply_expressions(&mut |expr| {
            expr.apply(|e| {
                if let Some(f) = e.downcast_ref::<ScalarFunctionExpr>() {
                    all_known &= known(f.name());
                }
                Ok(go_on_while(all_known))
            })
        })?;
        if let Some(scan) = node.downcast_ref::<OperatorScanExec>() {
            for filter in &scan.filters {
                filter.apply(|e| {
                    if let Expr::ScalarFunction(f) = e {
                        all_known &= known(f.name());
                    }
                    Ok(go_on_while(all_known))
                })?;
            }
        }
        Ok(go_on_while(all_known))
    });
    walked.is_ok() && all_known
}

/// A plan for one operator, ready to send.
#[derive(Debug, Clone)]
struct Fragment {
    target: TaskTarget,
    url: Url,
    plan: Arc<dyn ExecutionPlan>,
    encoded: Bytes,
}

impl Fragment {
    /// `plan` to run on `target`, if the operators can decode it (`checked`: as
    /// [`encode_for_operators`]).
    fn new(
        target: TaskTarget,
        plan: Arc<dyn ExecutionPlan>,
        checked: bool,
    ) -> Result<Option<Fragment>> {
        let Some(encoded) = encode_for_operators(&plan, checked) else {
            return Ok(None);
        };
        let url = Url::parse(&target.url)
            .map_err(|e| DataFusionError::Internal(format!("worker URL {:?}: {e}", target.url)))?;
        Ok(Some(Fragment {
            target,
            url,
            plan,
            encoded,
        }))
    }
}

/// Plans run whole on operators, their rows relayed: partition `i` is fragment `i`'s plan,
/// its partitions merged on its operator. A leaf, so datafusion-distributed keeps it on the
/// query node.
#[derive(Debug)]
pub struct OperatorPlanExec {
    fragments: Vec<Fragment>,
    /// One partition reading the fragments in turn, instead of one partition per fragment.
    one_after_another: bool,
    channels: WorkerChannels,
    properties: Arc<PlanProperties>,
    /// The statement it runs for, when not the one its fragments' scans were planned for.
    query_id: Option<String>,
    metrics: ExecutionPlanMetricsSet,
}

impl OperatorPlanExec {
    /// `fragments` (at least one, all of one schema), run through `channels`: all at once,
    /// a partition each, or `one_after_another` in one partition (when their order does not
    /// matter and a limit above may need only the first).
    fn new(
        fragments: Vec<Fragment>,
        one_after_another: bool,
        channels: WorkerChannels,
    ) -> OperatorPlanExec {
        let plan = &fragments[0].plan;
        // A plan of one partition keeps its order across the wire; several are merged in
        // any order, and so are fragments read one after another.
        let ordered = (fragments.len() == 1 || !one_after_another)
            && fragments
                .iter()
                .all(|f| f.plan.output_partitioning().partition_count() == 1);
        let partitions = match one_after_another {
            true => 1,
            false => fragments.len(),
        };
        let equivalence = match ordered {
            true => plan.equivalence_properties().clone(),
            false => EquivalenceProperties::new(plan.schema()),
        };
        let properties = Arc::new(PlanProperties::new(
            equivalence,
            Partitioning::UnknownPartitioning(partitions),
            plan.pipeline_behavior(),
            Boundedness::Bounded,
        ));
        OperatorPlanExec {
            fragments,
            one_after_another,
            channels,
            properties,
            query_id: None,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The same plan, not yet run, for the statement `query_id` (`None`: the one its
    /// fragments were planned for).
    pub(crate) fn rerun(&self, query_id: Option<String>) -> OperatorPlanExec {
        OperatorPlanExec {
            fragments: self.fragments.clone(),
            one_after_another: self.one_after_another,
            channels: self.channels.clone(),
            properties: Arc::clone(&self.properties),
            query_id,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The operators it runs on, one per fragment.
    pub fn targets(&self) -> impl Iterator<Item = &TaskTarget> {
        self.fragments.iter().map(|f| &f.target)
    }

    /// The rows `fragment` sends, its `DoGet` sent when the stream is first polled.
    fn fetch(
        &self,
        fragment: &Fragment,
        memory_limit: Option<u64>,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let channel = self.channels.channel(&fragment.url)?;
        let ticket = FragmentTicket {
            plan: fragment.encoded.clone(),
            memory_limit,
            dictionaries: true,
            query_id: self.query_id.clone().unwrap_or_default(),
        };
        let ticket = Ticket {
            ticket: ticket.encode_to_vec().into(),
        };
        let node = fragment.target.node.clone();
        let address = fragment.url.authority().to_string();
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
        Ok(batches.boxed())
    }
}

impl DisplayAs for OperatorPlanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let on: Vec<String> = self
            .targets()
            .map(|t| format!("{}@{}", t.cluster, t.node))
            .collect();
        let on = on.join(", ");
        match t {
            DisplayFormatType::TreeRender => write!(f, "runs_on={on}"),
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "OperatorPlanExec: runs on {on}")?;
                if self.one_after_another && self.fragments.len() > 1 {
                    write!(f, ", one after another")?;
                }
                // The plans it ships, each indented as a child would be.
                let verbose = matches!(t, DisplayFormatType::Verbose);
                for fragment in &self.fragments {
                    let inner = displayable(fragment.plan.as_ref()).indent(verbose);
                    for line in inner.to_string().lines() {
                        write!(f, "\n  {line}")?;
                    }
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

    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(self.rerun(self.query_id.clone())))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let memory_limit = match context.memory_pool().memory_limit() {
            MemoryLimit::Finite(bytes) => Some(bytes as u64),
            MemoryLimit::Infinite | MemoryLimit::Unknown => None,
        };
        let fragments = match (self.one_after_another, self.fragments.get(partition)) {
            (true, _) if partition == 0 => &self.fragments[..],
            (false, Some(fragment)) => std::slice::from_ref(fragment),
            _ => {
                return Err(DataFusionError::Internal(format!(
                    "OperatorPlanExec has {} partitions, asked for {partition}",
                    self.properties.partitioning.partition_count()
                )));
            }
        };
        // Each fragment's DoGet is sent when its stream is first polled: one after another,
        // a fragment is only asked for when the ones before it are done.
        let streams = fragments
            .iter()
            .map(|fragment| self.fetch(fragment, memory_limit))
            .collect::<Result<Vec<_>>>()?;
        let schema = self.schema();
        let declared = Arc::clone(&schema);
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let batches = futures::stream::iter(streams).flatten();
        let batches = batches.map(move |batch| {
            let batch = batch?;
            baseline.record_output(batch.num_rows());
            // The declared schema (the wire keeps types, not field metadata; text may come
            // as dictionaries), and the row count, which a batch without columns has only
            // there.
            let columns = batch
                .columns()
                .iter()
                .zip(declared.fields())
                .map(
                    |(column, field)| match column.data_type() == field.data_type() {
                        true => Ok(Arc::clone(column)),
                        false => cast(column, field.data_type()),
                    },
                )
                .collect::<Result<Vec<_>, _>>()?;
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            RecordBatch::try_new_with_options(Arc::clone(&declared), columns, &options)
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
        let plan = match ticket.query_id.as_str() {
            "" => plan,
            id => {
                plan.transform_up(|node| match node.downcast_ref::<OperatorScanExec>() {
                    Some(scan) => Ok(Transformed::yes(
                        Arc::new(scan.rerun(id)) as Arc<dyn ExecutionPlan>
                    )),
                    None => Ok(Transformed::no(node)),
                })
                .map_err(fragment_status)?
                .data
            }
        };
        // What only this operator's storage can do (`local.rs`).
        let plan = crate::local::rewrite(plan, |_| true).map_err(fragment_status)?;
        let ctx = match ticket.memory_limit {
            Some(bytes) => self.limited_to(bytes as usize).map_err(fragment_status)?,
            None => Arc::clone(&self.ctx),
        };
        let dictionaries = ticket.dictionaries;
        let schema = match dictionaries {
            true => wire_schema(&plan.schema()),
            false => plan.schema(),
        };
        let wire = Arc::clone(&schema);
        let batches = execute_stream(plan, ctx)
            .map_err(fragment_status)?
            .and_then(move |batch| {
                std::future::ready(match dictionaries {
                    true => text_as_dictionaries(batch, &wire),
                    false => compact_views(batch),
                })
            })
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

/// How rows of `schema` cross the network when the query node takes dictionaries: text as
/// a dictionary, anything else as it is.
fn wire_schema(schema: &Schema) -> SchemaRef {
    let wire_type = |data_type: &DataType| match data_type {
        DataType::Utf8View => text_dictionary_type(),
        other => other.clone(),
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(wire_type(f.data_type())))
        .collect();
    Arc::new(Schema::new(fields))
}

/// `batch` as `schema` has it: its text columns as dictionaries of the distinct views.
///
/// Text read from a dictionary-encoded Parquet page is a view array whose rows of one value
/// share one view, pointing into the whole page. As views, every row would cross the network
/// with its own copy of its text (after [`compact_views`]); as a dictionary, a value crosses
/// once per batch and a row is a 4-byte key. The query node turns the dictionary back into
/// views, each value's view shared by its rows, as they were on the operator.
fn text_as_dictionaries(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let (_, columns, rows) = batch.into_parts();
    let columns = columns
        .into_iter()
        .map(|c| match c.as_string_view_opt() {
            Some(text) => Arc::new(dictionary_by_view(text)) as ArrayRef,
            None => compact(c),
        })
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

/// `text` as a dictionary with one value per distinct view (two views holding the same
/// text, from different pages, give two equal values, which a dictionary allows).
fn dictionary_by_view(text: &StringViewArray) -> DictionaryArray<Int32Type> {
    let mut ids: HashMap<u128, i32, FixedState> = HashMap::default();
    let mut values = StringBuilder::new();
    let keys: Vec<i32> = text
        .views()
        .iter()
        .enumerate()
        .map(|(row, &view)| {
            if text.is_null(row) {
                return 0;
            }
            *ids.entry(view).or_insert_with(|| {
                values.append_value(text.value(row));
                values.len() as i32 - 1
            })
        })
        .collect();
    let keys = Int32Array::new(keys.into(), text.nulls().cloned());
    DictionaryArray::new(keys, Arc::new(values.finish()))
}

/// `batch` with its view arrays holding only the bytes they point at. Text read from
/// Parquet points into whole pages, which would otherwise all cross the network.
fn compact_views(batch: RecordBatch) -> Result<RecordBatch> {
    let views = |c: &ArrayRef| matches!(c.data_type(), DataType::Utf8View | DataType::BinaryView);
    if !batch.columns().iter().any(views) {
        return Ok(batch);
    }
    let (schema, columns, rows) = batch.into_parts();
    let columns = columns.into_iter().map(compact).collect();
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        schema, columns, &options,
    )?)
}

/// `column`, a view array holding only the bytes it points at.
fn compact(column: ArrayRef) -> ArrayRef {
    match column.data_type() {
        DataType::Utf8View => Arc::new(column.as_string_view().gc()),
        DataType::BinaryView => Arc::new(column.as_binary_view().gc()),
        _ => column,
    }
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
    use datafusion::physical_expr::expressions::lit;
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

    #[tokio::test]
    async fn plans_calling_a_function_the_operators_lack_are_not_shipped() {
        use armorlake_meta::MemoryMeta;
        use arrow::array::{ArrayRef, StringArray};
        use datafusion::execution::FunctionRegistry;
        use datafusion::prelude::{col, lit};

        let meta = Arc::new(MemoryMeta::new());
        let channels = WorkerChannels::new(ClusterSecurity::none());
        let engine = crate::QueryEngine::new(meta, crate::Liveness::new(), None, channels).unwrap();
        let ctx = engine.connection_context().unwrap();
        let operators = operator_functions().unwrap();
        // Aggregate and window functions are not looked at: the operators have them all.
        let state = ctx.state();
        for name in state.aggregate_functions().keys() {
            assert!(operators.aggregate_functions().contains_key(name), "{name}");
        }
        for name in state.window_functions().keys() {
            assert!(operators.window_functions().contains_key(name), "{name}");
        }

        // In a physical expression.
        let a: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        ctx.register_batch("t", RecordBatch::try_from_iter([("a", a)]).unwrap())
            .unwrap();
        for (sql, shipped) in [
            ("SELECT a FROM t WHERE upper(a) = 'X'", true),
            ("SELECT a FROM t WHERE current_setting(a) = 'X'", false),
            ("SELECT upper(current_setting(a)) FROM t", false),
        ] {
            let df = ctx.sql(sql).await.unwrap();
            let plan = df.create_physical_plan().await.unwrap();
            assert_eq!(calls_only(&plan, &operators), shipped, "{sql}");
        }

        // In a scan's filter, a logical expression.
        let setting = ctx.udf("current_setting").unwrap();
        let upper = ctx.udf("upper").unwrap();
        for (filter, shipped) in [
            (upper.call(vec![col("pod_name")]).eq(lit("X")), true),
            (setting.call(vec![col("pod_name")]).eq(lit("X")), false),
        ] {
            let tasks = vec![target("a", true)];
            let scan = OperatorScanExec::new(Table::Logs, None, vec![filter], None, tasks, 2);
            let scan: Arc<dyn ExecutionPlan> = Arc::new(scan.unwrap());
            assert_eq!(calls_only(&scan, &operators), shipped);
        }
    }

    /// Where the rule sends `plan`: the node it runs on whole, and its scans' slots.
    fn run(plan: Arc<dyn ExecutionPlan>) -> Option<(String, Vec<usize>)> {
        let rule = RunOnOneOperator::new(WorkerChannels::new(ClusterSecurity::none()));
        let plan = rule.optimize(plan, &ConfigOptions::default()).unwrap();
        let remote = plan.downcast_ref::<OperatorPlanExec>()?;
        let mut slots = Vec::new();
        remote.fragments[0]
            .plan
            .apply(|node| {
                if let Some(scan) = node.downcast_ref::<OperatorScanExec>() {
                    slots.push(scan.tasks().len());
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .unwrap();
        Some((remote.fragments[0].target.node.clone(), slots))
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

    /// What the gathering rule makes of `plan`: per operator it sends to, the node and the
    /// shipped plan's slots per scan; `None` when it leaves the plan alone.
    fn gather(plan: Arc<dyn ExecutionPlan>) -> Option<Vec<(String, Vec<usize>)>> {
        let rule = GatherFromOperators::new(WorkerChannels::new(ClusterSecurity::none()));
        let before = displayable(plan.as_ref()).indent(true).to_string();
        let after = rule.optimize(plan, &ConfigOptions::default()).unwrap();
        if displayable(after.as_ref()).indent(true).to_string() == before {
            return None;
        }
        let mut sent = Vec::new();
        after
            .apply(|node| {
                for fragment in node
                    .downcast_ref::<OperatorPlanExec>()
                    .map_or(&[][..], |remote| &remote.fragments)
                {
                    let mut slots = Vec::new();
                    fragment.plan.apply(|n| {
                        if let Some(scan) = n.downcast_ref::<OperatorScanExec>() {
                            slots.push(scan.tasks().len());
                        }
                        Ok(TreeNodeRecursion::Continue)
                    })?;
                    sent.push((fragment.target.node.clone(), slots));
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .unwrap();
        Some(sent)
    }

    fn filtered_stretch(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        Arc::new(FilterExec::try_new(lit(true), plan).unwrap())
    }

    fn filtered(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        Arc::new(CoalescePartitionsExec::new(filtered_stretch(plan)))
    }

    fn limited(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        Arc::new(
            CoalescePartitionsExec::new(Arc::new(LocalLimitExec::new(plan, 10)))
                .with_fetch(Some(10)),
        )
    }

    #[test]
    fn a_reducing_stretch_over_several_operators_runs_on_each_of_them() {
        let two = limited(scan(vec![target("a", true), target("b", true)]));
        let sent = vec![("a-1".to_string(), vec![1]), ("b-1".to_string(), vec![1])];
        assert_eq!(gather(two), Some(sent));
        // A filter: the merge on the query node reads one partition per operator.
        let rule = GatherFromOperators::new(WorkerChannels::new(ClusterSecurity::none()));
        let two = filtered(scan(vec![target("a", true), target("b", true)]));
        let plan = rule.optimize(two, &ConfigOptions::default()).unwrap();
        let gathered = plan.children()[0];
        assert_eq!(gathered.name(), "OperatorPlanExec");
        assert_eq!(gathered.output_partitioning().partition_count(), 2);
        // Each input of a union is gathered.
        let union = UnionExec::try_new(vec![
            filtered_stretch(scan(vec![target("a", true), target("b", true)])),
            filtered_stretch(scan(vec![target("a", true), vec![]])),
        ])
        .unwrap();
        let plan = rule.optimize(union, &ConfigOptions::default()).unwrap();
        let inputs: Vec<&str> = plan.children().iter().map(|c| c.name()).collect();
        assert_eq!(inputs, ["OperatorPlanExec", "OperatorPlanExec"]);
        assert_eq!(plan.output_partitioning().partition_count(), 3);
    }

    #[test]
    fn a_limit_over_rows_in_no_order_asks_the_operators_one_after_another() {
        let rule = GatherFromOperators::new(WorkerChannels::new(ClusterSecurity::none()));
        let two = limited(scan(vec![target("a", true), target("b", true)]));
        let plan = rule.optimize(two, &ConfigOptions::default()).unwrap();
        let gathered = plan.children()[0];
        assert_eq!(gathered.output_partitioning().partition_count(), 1);
        let shown = displayable(gathered.as_ref()).one_line().to_string();
        assert!(
            shown.contains("runs on a@a-1, b@b-1, one after another"),
            "{shown}"
        );
    }

    #[test]
    fn raw_rows_local_operators_and_mixed_plans_stay_as_they_are() {
        // Raw rows: datafusion-distributed may run what is above them on the operators.
        let raw = Arc::new(CoalescePartitionsExec::new(scan(vec![
            target("a", true),
            target("b", true),
        ])));
        assert_eq!(gather(raw), None);
        // All or nothing: one raw scan keeps the whole plan with the distributed planner.
        let mixed = UnionExec::try_new(vec![
            limited(scan(vec![target("a", true), target("b", true)])),
            Arc::new(CoalescePartitionsExec::new(scan(vec![
                target("a", true),
                target("b", true),
            ]))),
        ])
        .unwrap();
        assert_eq!(gather(mixed), None);
        // The operator in this process (`up`) reads its own rows.
        assert_eq!(gather(limited(scan(vec![target("b", false)]))), None);
    }

    #[test]
    fn raw_rows_are_gathered_when_the_operators_reported_few() {
        let raw = |rows: Option<u64>| {
            let scan = OperatorScanExec::new(
                Table::Logs,
                None,
                vec![],
                None,
                vec![target("a", true), target("b", true)],
                2,
            )
            .unwrap();
            let scan = match rows {
                Some(rows) => scan.with_estimated_rows(rows),
                None => scan,
            };
            Arc::new(CoalescePartitionsExec::new(Arc::new(scan))) as Arc<dyn ExecutionPlan>
        };
        let sent = vec![("a-1".to_string(), vec![1]), ("b-1".to_string(), vec![1])];
        let limit = ArmorlakeOptions::default().gather_raw_rows_limit;
        assert_eq!(gather(raw(Some(limit))), Some(sent));
        assert_eq!(gather(raw(Some(limit + 1))), None);
        assert_eq!(
            gather(raw(None)),
            None,
            "unknown: left to the distributed planner"
        );
        // The setting moves the limit.
        let rule = GatherFromOperators::new(WorkerChannels::new(ClusterSecurity::none()));
        let mut config = ConfigOptions::default();
        config.extensions.insert(ArmorlakeOptions::default());
        config.set("armorlake.gather_raw_rows_limit", "10").unwrap();
        let plan = rule.optimize(raw(Some(11)), &config).unwrap();
        assert_eq!(plan.children()[0].name(), "OperatorScanExec");
        let plan = rule.optimize(raw(Some(10)), &config).unwrap();
        assert_eq!(plan.children()[0].name(), "OperatorPlanExec");
    }

    #[test]
    fn text_crosses_as_a_dictionary_of_its_views_and_comes_back_the_same() {
        use arrow::array::{StringViewArray, UInt32Array};
        use arrow::compute::take;

        // Rows sharing views, as read from a dictionary page: short (inline) and long
        // values, nulls, and a value repeated under a second view.
        let values = StringViewArray::from(vec![
            Some("v0"),
            Some("a value longer than twelve bytes"),
            Some("v1"),
            Some("a value longer than twelve bytes"),
        ]);
        let picks: UInt32Array = (0..1000u32)
            .map(|i| (i % 7 != 3).then_some(i % 4))
            .collect();
        let text = take(&values, &picks, None).unwrap();
        let n: ArrayRef = Arc::new(Int32Array::from_iter_values(0..1000));
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Utf8View, true),
            Field::new("n", DataType::Int32, false),
        ]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![text, n]).unwrap();
        let wire = wire_schema(&schema);
        let sent = text_as_dictionaries(batch.clone(), &wire).unwrap();
        let dictionary = sent.column(0).as_dictionary::<Int32Type>();
        assert_eq!(dictionary.values().len(), 4, "one value per distinct view");
        assert_eq!(dictionary.null_count(), batch.column(0).null_count());
        assert_eq!(sent.column(1), batch.column(1));
        let back = cast(sent.column(0), &DataType::Utf8View).unwrap();
        assert_eq!(back.as_ref(), batch.column(0).as_ref());
    }

    #[test]
    fn explain_analyze_keeps_its_per_stage_metrics() {
        let one = scan(vec![target("b", true), vec![]]);
        let analyze =
            Arc::new(AnalyzeExec::builder(false, false, one.clone(), one.schema()).build());
        assert_eq!(run(analyze), None);
    }
}
