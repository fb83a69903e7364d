//! `OperatorScanExec`: the leaf of every distributed plan. It reads one table's rows on the
//! operators of the clusters assigned to each task, resolved against the storage of the
//! process that executes it, so no file paths travel.

use std::fmt;
use std::sync::Arc;

use armorlake_common::Table;
use armorlake_common::schema::with_dictionaries;
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use datafusion_distributed::DistributedTaskContext;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

/// What an operator gives the planner: a plan reading its own rows of a table.
#[async_trait]
pub trait OperatorHandle: Send + Sync + fmt::Debug {
    /// A plan reading this operator's rows of `table`, with the projection, filters (as far
    /// as the storage can use them; they are re-checked above) and limit applied, and the
    /// text columns `dictionaries` (indexes into the table's columns) read as
    /// [`text_dictionary_type`](armorlake_common::schema::text_dictionary_type) instead of `Utf8View`.
    async fn scan(
        &self,
        state: &dyn Session,
        table: Table,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
        dictionaries: &[usize],
    ) -> Result<Arc<dyn ExecutionPlan>>;

    /// A plan giving each distinct value of the text column `column` (an index into the
    /// table's columns) of this operator's rows of `table` at least once, as
    /// [`text_dictionary_type`](armorlake_common::schema::text_dictionary_type) (NULL too
    /// when a row holds it), if the storage can tell them without reading the rows; `None`
    /// when the rows must be read.
    async fn distinct_text(
        &self,
        _state: &dyn Session,
        _table: Table,
        _column: usize,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        Ok(None)
    }
}

/// The operator living in this process, if any: put in the session config of a worker (and
/// of `up`'s query engine) so [`OperatorScanExec`] can read its rows.
#[derive(Debug, Clone)]
pub struct LocalOperator {
    /// The operator's replica group (its own id when it has none).
    pub cluster: String,
    /// Its storage.
    pub handle: Arc<dyn OperatorHandle>,
}

/// One task's share of a scan: the cluster whose rows it reads and the operator chosen to
/// serve them (`None`: the task reads nothing; it pads the stage to a shape the planner keeps
/// distributed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTarget {
    /// The replica group.
    pub cluster: String,
    /// The live member chosen to serve it.
    pub node: String,
    /// Its worker URL (`http://host:port`); empty for the operator in this process.
    pub url: String,
}

/// The scan of one table across the operators, one slot per task.
///
/// It has `partitions` output partitions (at least two), which the local scan's own
/// partitions are dealt over: more than one makes DataFusion merge above the scan, which is
/// where the distributed planner cuts the plan, so the scan always runs on the operators.
/// All partitions of one execution read the same snapshot of the operator's rows.
#[derive(Debug)]
pub struct OperatorScanExec {
    pub(crate) table: Table,
    pub(crate) projection: Option<Vec<usize>>,
    pub(crate) filters: Vec<Expr>,
    pub(crate) limit: Option<usize>,
    /// The text columns (indexes into the table's columns) read as dictionaries, for a
    /// [`CountByTextExec`](crate::count_by_text::CountByTextExec) above.
    pub(crate) dictionaries: Vec<usize>,
    /// Whether only the distinct values of its one column are wanted, each at least once
    /// (set where the scan runs, for a `CountByTextExec` that counts nothing above it; see
    /// [`OperatorHandle::distinct_text`]).
    pub(crate) distinct: bool,
    /// Per task: what it reads (empty: nothing).
    pub(crate) tasks: Vec<Vec<TaskTarget>>,
    pub(crate) partitions: usize,
    /// The query this scan belongs to (a W3C trace id; empty when unknown), logged where
    /// the scan runs.
    pub(crate) query_id: String,
    /// How many rows the tasks' operators reported holding in the scan's time range, when
    /// the planner knew (on the query node; not carried to the operators).
    pub(crate) estimated_rows: Option<u64>,
    properties: Arc<PlanProperties>,
    /// The local scan, built by the first partition executed.
    local_plan: Arc<OnceCell<Arc<dyn ExecutionPlan>>>,
    metrics: ExecutionPlanMetricsSet,
}

impl OperatorScanExec {
    /// A scan of `table` whose task `i` reads the clusters in `tasks[i]`, with `partitions`
    /// output partitions (raised to two).
    pub fn new(
        table: Table,
        projection: Option<Vec<usize>>,
        filters: Vec<Expr>,
        limit: Option<usize>,
        tasks: Vec<Vec<TaskTarget>>,
        partitions: usize,
    ) -> Result<OperatorScanExec> {
        let partitions = partitions.max(2);
        let schema = table.query_schema();
        let projected: SchemaRef = match &projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema,
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(projected),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(OperatorScanExec {
            table,
            projection,
            filters,
            limit,
            dictionaries: Vec::new(),
            distinct: false,
            tasks,
            partitions,
            query_id: String::new(),
            estimated_rows: None,
            properties,
            local_plan: Arc::new(OnceCell::new()),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The table it reads.
    pub fn table(&self) -> Table {
        self.table
    }

    /// Per task, the clusters it reads and who serves them.
    pub fn tasks(&self) -> &[Vec<TaskTarget>] {
        &self.tasks
    }

    /// The same scan with its slots spread over `task_count` tasks: slot `i` goes to task
    /// `i % task_count`, so scans of the same stage stay aligned slot by slot.
    pub(crate) fn with_task_count(&self, task_count: usize) -> Result<OperatorScanExec> {
        let task_count = task_count.max(1);
        let mut tasks = vec![Vec::new(); task_count];
        for (i, slot) in self.tasks.iter().enumerate() {
            tasks[i % task_count].extend(slot.iter().cloned());
        }
        self.with_tasks(tasks)
    }

    /// The same scan reading `tasks` instead, one slot per task.
    pub(crate) fn with_tasks(&self, tasks: Vec<Vec<TaskTarget>>) -> Result<OperatorScanExec> {
        OperatorScanExec::new(
            self.table,
            self.projection.clone(),
            self.filters.clone(),
            self.limit,
            tasks,
            self.partitions,
        )
        .and_then(|scan| scan.with_dictionaries(self.dictionaries.clone()))
        .map(|scan| OperatorScanExec {
            estimated_rows: self.estimated_rows,
            distinct: self.distinct,
            ..scan.with_query_id(self.query_id.clone())
        })
    }

    /// The same scan reading the text columns `dictionaries` (indexes into the table's
    /// columns) as [`text_dictionary_type`](armorlake_common::schema::text_dictionary_type).
    pub fn with_dictionaries(mut self, dictionaries: Vec<usize>) -> Result<OperatorScanExec> {
        let schema = with_dictionaries(&self.table.query_schema(), &dictionaries).map_err(|c| {
            DataFusionError::Plan(format!("column {c} of {} is not text", self.table))
        })?;
        let projected = match &self.projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema,
        };
        self.properties = Arc::new(
            self.properties
                .as_ref()
                .clone()
                .with_eq_properties(EquivalenceProperties::new(projected)),
        );
        self.dictionaries = dictionaries;
        Ok(self)
    }

    /// The table's index of output column `column`, when that is text read as views (which
    /// could be read as a dictionary instead).
    pub(crate) fn text_column(&self, column: usize) -> Option<usize> {
        let index = match &self.projection {
            Some(p) => *p.get(column)?,
            None => column,
        };
        let views = self.schema().fields().get(column)?.data_type() == &DataType::Utf8View;
        views.then_some(index)
    }

    /// The same scan giving only the distinct values of its one column, each at least
    /// once, when that column is text read as a dictionary and nothing filters or limits
    /// the rows (see [`OperatorHandle::distinct_text`]); else `None`.
    pub(crate) fn distinct_values(&self) -> Result<Option<OperatorScanExec>> {
        let mut scan = self.with_tasks(self.tasks.clone())?;
        scan.distinct = true;
        Ok(scan.distinct_column().is_some().then_some(scan))
    }

    /// The table's index of the column whose distinct values are all the scan gives.
    fn distinct_column(&self) -> Option<usize> {
        match self.projection.as_deref() {
            Some(&[column])
                if self.distinct
                    && self.filters.is_empty()
                    && self.limit.is_none()
                    && self.dictionaries.contains(&column) =>
            {
                Some(column)
            }
            _ => None,
        }
    }

    /// The same scan, tagged with the query it belongs to.
    pub fn with_query_id(mut self, query_id: String) -> OperatorScanExec {
        self.query_id = query_id;
        self
    }

    /// The same scan, estimated to read `rows` rows.
    pub fn with_estimated_rows(mut self, rows: u64) -> OperatorScanExec {
        self.estimated_rows = Some(rows);
        self
    }

    /// The query this scan belongs to (empty when unknown).
    pub fn query_id(&self) -> &str {
        &self.query_id
    }

    /// The same scan, not yet run, for the statement `query_id`: what one run keeps (the
    /// local scan it built, its metrics) starts anew.
    pub(crate) fn rerun(&self, query_id: &str) -> OperatorScanExec {
        OperatorScanExec {
            table: self.table,
            projection: self.projection.clone(),
            filters: self.filters.clone(),
            limit: self.limit,
            dictionaries: self.dictionaries.clone(),
            distinct: self.distinct,
            tasks: self.tasks.clone(),
            partitions: self.partitions,
            query_id: query_id.to_string(),
            estimated_rows: self.estimated_rows,
            properties: Arc::clone(&self.properties),
            local_plan: Arc::new(OnceCell::new()),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for OperatorScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "OperatorScanExec: table={}", self.table.name())?;
        if let Some(p) = &self.projection {
            let schema = self.table.schema();
            let names: Vec<&str> = p.iter().map(|&i| schema.field(i).name().as_str()).collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        if !self.filters.is_empty() {
            let filters: Vec<String> = self.filters.iter().map(|e| e.to_string()).collect();
            write!(f, ", filters=[{}]", filters.join(", "))?;
        }
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        if !self.dictionaries.is_empty() {
            let schema = self.table.schema();
            let names: Vec<&str> = self
                .dictionaries
                .iter()
                .map(|&i| schema.field(i).name().as_str())
                .collect();
            write!(f, ", dictionaries=[{}]", names.join(", "))?;
        }
        if self.distinct_column().is_some() {
            write!(f, ", distinct values")?;
        }
        for (i, task) in self.tasks.iter().enumerate() {
            let served: Vec<String> = task
                .iter()
                .map(|t| match t.node.as_str() {
                    "" => t.cluster.clone(),
                    node if node == t.cluster => node.to_string(),
                    node => format!("{}@{node}", t.cluster),
                })
                .collect();
            match served.is_empty() {
                true => write!(f, ", t{i}:[]")?,
                false => write!(f, ", t{i}:[{}]", served.join(", "))?,
            }
        }
        Ok(())
    }
}

impl ExecutionPlan for OperatorScanExec {
    fn name(&self) -> &str {
        "OperatorScanExec"
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
        Ok(Arc::new(self.rerun(&self.query_id)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition >= self.partitions {
            return Err(DataFusionError::Internal(format!(
                "OperatorScanExec has {} partitions, asked for {partition}",
                self.partitions
            )));
        }
        let task = DistributedTaskContext::from_ctx(&context).task_index;
        let targets = self.tasks.get(task).cloned().unwrap_or_default();
        let schema = self.schema();
        if targets.is_empty() {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::empty(),
            )));
        }
        let local = context.session_config().get_extension::<LocalOperator>();
        let Some(local) = local.filter(|l| targets.iter().all(|t| t.cluster == l.cluster)) else {
            let wanted: Vec<&str> = targets.iter().map(|t| t.cluster.as_str()).collect();
            return Err(DataFusionError::NotImplemented(format!(
                "this node does not hold the rows of {} (operator cluster {}); the query shape \
                 forced the scan onto a node without them",
                self.table.name(),
                wanted.join(", ")
            )));
        };
        if partition == 0 {
            tracing::debug!(
                query_id = %self.query_id,
                table = self.table.name(),
                task,
                cluster = %local.cluster,
                "running a scan fragment"
            );
        }
        let (table, projection, filters, limit, dictionaries) = (
            self.table,
            self.projection.clone(),
            self.filters.clone(),
            self.limit,
            self.dictionaries.clone(),
        );
        let distinct = self.distinct_column();
        let (cell, step) = (self.local_plan.clone(), self.partitions);
        // Rows per serving operator, so EXPLAIN ANALYZE tells who sent what.
        let served_by = targets
            .iter()
            .map(|t| t.node.as_str())
            .collect::<Vec<_>>()
            .join("+");
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let rows =
            MetricBuilder::new(&self.metrics).counter(format!("rows@{served_by}"), partition);
        let stream = futures::stream::once(async move {
            let plan = cell
                .get_or_try_init(|| async {
                    let state = SessionStateBuilder::new()
                        .with_config(context.session_config().clone())
                        .with_runtime_env(context.runtime_env())
                        .build();
                    if let Some(column) = distinct
                        && let Some(plan) =
                            local.handle.distinct_text(&state, table, column).await?
                    {
                        return Ok(plan);
                    }
                    local
                        .handle
                        .scan(
                            &state,
                            table,
                            projection.as_ref(),
                            &filters,
                            limit,
                            &dictionaries,
                        )
                        .await
                })
                .await?
                .clone();
            // This partition's share of the local partitions, read one after the other.
            let local_partitions = plan.output_partitioning().partition_count();
            let streams = (partition..local_partitions)
                .step_by(step)
                .map(|p| plan.execute(p, context.clone()))
                .collect::<Result<Vec<_>>>()?;
            Ok::<_, DataFusionError>(futures::stream::iter(streams).flatten())
        })
        .try_flatten()
        .inspect_ok(move |batch| {
            rows.add(batch.num_rows());
            baseline.record_output(batch.num_rows());
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.boxed(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use arrow::array::{RecordBatch, RecordBatchOptions};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_plan::collect;
    use datafusion::physical_plan::execution_plan::reset_plan_states;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    /// An operator whose scans read as many rows (of no column) as it holds when they start.
    #[derive(Debug, Default)]
    struct Growing {
        rows: AtomicUsize,
    }

    #[async_trait]
    impl OperatorHandle for Growing {
        async fn scan(
            &self,
            _state: &dyn Session,
            table: Table,
            projection: Option<&Vec<usize>>,
            _filters: &[Expr],
            _limit: Option<usize>,
            _dictionaries: &[usize],
        ) -> Result<Arc<dyn ExecutionPlan>> {
            let columns = projection.cloned().unwrap_or_default();
            let schema = Arc::new(table.query_schema().project(&columns)?);
            let rows = self.rows.load(Ordering::SeqCst);
            let options = RecordBatchOptions::new().with_row_count(Some(rows));
            let batch = RecordBatch::try_new_with_options(Arc::clone(&schema), vec![], &options)?;
            Ok(MemorySourceConfig::try_new_exec(
                &[vec![batch]],
                schema,
                None,
            )?)
        }
    }

    #[tokio::test]
    async fn a_scan_run_again_reads_the_rows_held_then() {
        let growing = Arc::new(Growing::default());
        growing.rows.store(3, Ordering::SeqCst);
        let local = LocalOperator {
            cluster: "east".into(),
            handle: growing.clone(),
        };
        let config = SessionConfig::new().with_extension(Arc::new(local));
        let ctx = SessionContext::new_with_config(config).task_ctx();
        let rows = |plan: Arc<dyn ExecutionPlan>| {
            let ctx = Arc::clone(&ctx);
            async move {
                let batches = collect(plan, ctx).await.unwrap();
                batches.iter().map(RecordBatch::num_rows).sum::<usize>()
            }
        };
        let target = TaskTarget {
            cluster: "east".into(),
            node: "op1".into(),
            url: String::new(),
        };
        let scan = OperatorScanExec::new(
            Table::Logs,
            Some(vec![]),
            vec![],
            None,
            vec![vec![target]],
            2,
        )
        .unwrap()
        .with_query_id("first".into());
        let scan: Arc<dyn ExecutionPlan> = Arc::new(scan);
        assert_eq!(rows(Arc::clone(&scan)).await, 3);

        growing.rows.store(5, Ordering::SeqCst);
        // One instance keeps the local scan its first run built (all its partitions read
        // one snapshot) …
        assert_eq!(rows(Arc::clone(&scan)).await, 3);
        // … so a plan run again is rerun, or reset as DataFusion resets plans: a new local
        // scan, the rows held now.
        let rerun = scan
            .downcast_ref::<OperatorScanExec>()
            .unwrap()
            .rerun("second");
        assert_eq!(rerun.query_id(), "second");
        assert_eq!(rows(Arc::new(rerun)).await, 5);
        let reset = reset_plan_states(Arc::clone(&scan)).unwrap();
        assert_eq!(
            reset.downcast_ref::<OperatorScanExec>().unwrap().query_id(),
            "first"
        );
        assert_eq!(rows(reset).await, 5);
    }
}
