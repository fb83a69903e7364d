//! Rows counted by one text column: the commonest question asked of telemetry (events per
//! namespace, per process, per container; `count(DISTINCT pod_name)`, which DataFusion plans
//! as a grouping by `pod_name` with no aggregate at all).
//!
//! DataFusion's partial aggregate hashes and compares every row's string. Text read from
//! Parquet is a `Utf8View` whose values, when their page is dictionary encoded, all point at
//! that dictionary: rows holding one value share one 16-byte view, and so do any two rows
//! holding the same string of at most 12 bytes, which a view holds inline. [`CountByTextExec`]
//! groups each batch by view (a 16-byte key, hashed and compared as two words) and looks up
//! the text of each distinct view once per batch; a batch of 8192 rows holding a few hundred
//! distinct values does a few hundred string hashes instead of 8192.
//!
//! [`CountByText`] puts it in place of every partial aggregate of that shape, on the query
//! node before the plan is cut, so operators receive it in their fragments (it is in
//! [`ArmorlakeCodec`](crate::codec::ArmorlakeCodec)) and `up` runs it too.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use armorlake_common::schema::text_dictionary_type;
use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int64Array, StringViewArray, StringViewBuilder,
    UInt32Array,
};
use arrow::compute::take;
use arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::config::ConfigOptions;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_expr_common::physical_expr::{fmt_sql, is_volatile};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use foldhash::fast::FixedState;
use futures::StreamExt;
use hashbrown::{HashMap, HashTable};

use crate::cluster::ArmorlakeOptions;
use crate::scan::OperatorScanExec;

/// Groups a partition holds before it sends them on and starts afresh: the final aggregate
/// adds up a group sent twice, and memory stays bounded whatever the column's cardinality.
const EMIT_AT_GROUPS: usize = 1 << 15;

/// Replaces each partial `AggregateExec` that groups by one `Utf8View` column and only counts
/// (rows, or a column's non-null values) with a [`CountByTextExec`] of the same output.
#[derive(Debug, Default)]
pub struct CountByText;

impl PhysicalOptimizerRule for CountByText {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let options = config.extensions.get::<ArmorlakeOptions>();
        if options.is_some_and(|o| !o.enable_count_by_text) {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            match CountByTextExec::replacing(aggregate)? {
                Some(exec) => Ok(Transformed::yes(
                    Arc::new(exec.over_dictionaries()?) as Arc<dyn ExecutionPlan>
                )),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "armorlake_count_by_text"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `plan` with each [`CountByTextExec`] that counts nothing (`count(DISTINCT t)`, `SELECT
/// DISTINCT t`) over a scan of `t` alone, read as a dictionary, fed only the distinct values
/// of `t` the storage tells from its dictionary pages, where `applies` to the scan (see
/// [`crate::local`]). The groups are the same: each value at least once.
pub(crate) fn distinct_from_dictionaries(
    plan: Arc<dyn ExecutionPlan>,
    applies: &impl Fn(&OperatorScanExec) -> bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(count) = node.downcast_ref::<CountByTextExec>() else {
            return Ok(Transformed::no(node));
        };
        let Some(scan) = crate::local::scan_in(&count.input) else {
            return Ok(Transformed::no(node));
        };
        if !count.counts.is_empty() || count.keep.is_some() || !applies(scan) {
            return Ok(Transformed::no(node));
        }
        let Some(scan) = scan.distinct_values()? else {
            return Ok(Transformed::no(node));
        };
        let input = crate::local::with_scan(&count.input, scan);
        let exec = CountByTextExec::try_new(input, count.group, vec![], count.schema())?;
        Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>))
    })
    .map(|t| t.data)
}

/// A partial aggregate: per input partition, the distinct values of one text column, each
/// with a count per counted expression. Its output is that of the `AggregateExec` it stands
/// for (the group, then one `Int64` state per count), so the final aggregate is DataFusion's.
#[derive(Debug)]
pub struct CountByTextExec {
    input: Arc<dyn ExecutionPlan>,
    /// The input column grouped by.
    group: usize,
    /// Per count, the input column whose non-null values it counts; `None` counts rows.
    counts: Vec<Option<usize>>,
    /// A condition on the group's value (over a batch of the groups alone: the group is
    /// column 0) that rows must meet: a filter below the aggregate that looks at nothing
    /// else, taken in, so that it is decided once per distinct value of a batch instead of
    /// once per row.
    keep: Option<Arc<dyn PhysicalExpr>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl CountByTextExec {
    /// The node for `input`, grouping by input column `group` and emitting `schema` (the
    /// group, then one count per entry of `counts`).
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        group: usize,
        counts: Vec<Option<usize>>,
        schema: SchemaRef,
    ) -> Result<CountByTextExec> {
        let input_schema = input.schema();
        let columns = input_schema.fields().len();
        let grouped = input_schema.fields().get(group).map(|f| f.data_type());
        let text = grouped == Some(&DataType::Utf8View) || grouped == Some(&text_dictionary_type());
        let fits = text
            && counts.iter().flatten().all(|&c| c < columns)
            && schema.fields().len() == 1 + counts.len()
            && schema.field(0).data_type() == &DataType::Utf8View
            && schema.fields()[1..]
                .iter()
                .all(|f| f.data_type() == &DataType::Int64);
        if !fits {
            return Err(DataFusionError::Internal(format!(
                "CountByTextExec: group {group} and counts {counts:?} over {input_schema} \
                 cannot give {schema}"
            )));
        }
        // Each output partition holds what its input partition held: the partitioning
        // stays; no order is promised.
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            input.output_partitioning().clone(),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(CountByTextExec {
            input,
            group,
            counts,
            keep: None,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The same node, counting only the rows whose group meets `keep` (an expression over
    /// a batch holding the groups alone, as column 0).
    pub fn keeping(mut self, keep: Arc<dyn PhysicalExpr>) -> CountByTextExec {
        self.keep = Some(keep);
        self
    }

    /// The node that does `aggregate`'s work, if `aggregate` is a partial aggregate grouping
    /// by one `Utf8View` column and counting only. A filter below it on the group alone is
    /// taken in.
    fn replacing(aggregate: &AggregateExec) -> Result<Option<CountByTextExec>> {
        let group_by = aggregate.group_expr();
        let shaped = *aggregate.mode() == AggregateMode::Partial
            && !group_by.has_grouping_set()
            && aggregate.limit_options().is_none()
            && aggregate.properties().output_ordering().is_none()
            && aggregate.filter_expr().iter().all(Option::is_none);
        let group = match group_by.expr() {
            [(group, _)] if shaped => group.downcast_ref::<Column>(),
            _ => None,
        };
        let Some(group) = group else {
            return Ok(None);
        };
        if aggregate.input_schema().field(group.index()).data_type() != &DataType::Utf8View {
            return Ok(None);
        }
        let mut counts = Vec::with_capacity(aggregate.aggr_expr().len());
        for expr in aggregate.aggr_expr() {
            let plain = expr.fun().name() == "count"
                && !expr.is_distinct()
                && expr.order_bys().is_empty()
                && expr.state_fields()?.len() == 1;
            let arguments = expr.expressions();
            let [argument] = &arguments[..] else {
                return Ok(None);
            };
            match counted(argument) {
                Some(column) if plain => counts.push(column),
                _ => return Ok(None),
            }
        }
        let input = aggregate.input();
        let (input, keep) = match condition_on_group(input, group.index())? {
            // Below the filter, whose condition the node takes in.
            Some(keep) => (Arc::clone(input.children()[0]), Some(keep)),
            None => (Arc::clone(input), None),
        };
        let exec = CountByTextExec::try_new(input, group.index(), counts, aggregate.schema())?;
        Ok(Some(match keep {
            Some(keep) => exec.keeping(keep),
            None => exec,
        }))
    }

    /// The same node, its input told to read the group as a dictionary when the input is a
    /// scan of the operators' rows reading it as views: the node then counts each batch's
    /// rows by dictionary key and meets each distinct value once per Parquet column chunk.
    fn over_dictionaries(self) -> Result<CountByTextExec> {
        let Some(scan) = self.input.downcast_ref::<OperatorScanExec>() else {
            return Ok(self);
        };
        let Some(column) = scan.text_column(self.group) else {
            return Ok(self);
        };
        let mut dictionaries = scan.dictionaries.clone();
        dictionaries.push(column);
        let scan = scan
            .with_tasks(scan.tasks().to_vec())?
            .with_dictionaries(dictionaries)?;
        let schema = self.schema();
        let exec = CountByTextExec::try_new(Arc::new(scan), self.group, self.counts, schema)?;
        Ok(match self.keep {
            Some(keep) => exec.keeping(keep),
            None => exec,
        })
    }

    /// The input column grouped by.
    pub fn group(&self) -> usize {
        self.group
    }

    /// Per count, the input column whose non-null values it counts (`None`: rows).
    pub fn counts(&self) -> &[Option<usize>] {
        &self.counts
    }

    /// The condition on the group's value that counted rows meet, if any (over a batch of
    /// the groups alone).
    pub fn keep(&self) -> Option<&Arc<dyn PhysicalExpr>> {
        self.keep.as_ref()
    }
}

/// The schema a condition on the groups is evaluated over: the group, `schema`'s first
/// field (of the node's output), alone.
pub(crate) fn group_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(vec![schema.field(0).clone()]))
}

/// When `input` is a filter whose condition looks at input column `group` alone (and
/// calls nothing volatile), that condition rewritten over a batch holding that column
/// alone. Which rows a group's counts cover is then decided by its value: a group the
/// condition rejects is dropped whole.
fn condition_on_group(
    input: &Arc<dyn ExecutionPlan>,
    group: usize,
) -> Result<Option<Arc<dyn PhysicalExpr>>> {
    let Some(filter) = input.downcast_ref::<FilterExec>() else {
        return Ok(None);
    };
    let predicate = filter.predicate();
    let columns = collect_columns(predicate);
    let alone = !columns.is_empty() && columns.iter().all(|c| c.index() == group);
    if !alone || filter.projection().is_some() || filter.fetch().is_some() || is_volatile(predicate)
    {
        return Ok(None);
    }
    over_column_zero(Arc::clone(predicate)).map(Some)
}

/// `expr`, which reads one column, rewritten over a batch holding that column alone (as
/// column 0, under its name).
pub(crate) fn over_column_zero(expr: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
    expr.transform(|e| match e.downcast_ref::<Column>() {
        Some(c) => Ok(Transformed::yes(
            Arc::new(Column::new(c.name(), 0)) as Arc<dyn PhysicalExpr>
        )),
        None => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// What a count's argument counts: `Some(Some(column))` a column's non-null values,
/// `Some(None)` every row (`count(*)` is `count(1)`); `None` anything else.
fn counted(argument: &Arc<dyn PhysicalExpr>) -> Option<Option<usize>> {
    if let Some(column) = argument.downcast_ref::<Column>() {
        return Some(Some(column.index()));
    }
    let literal = argument.downcast_ref::<Literal>()?;
    (!literal.value().is_null()).then_some(None)
}

impl DisplayAs for CountByTextExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let schema = self.schema();
        let counts: Vec<&str> = schema.fields()[1..]
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        match t {
            DisplayFormatType::TreeRender => write!(f, "group={}", schema.field(0).name())?,
            DisplayFormatType::Default | DisplayFormatType::Verbose => write!(
                f,
                "CountByTextExec: group={}, counts=[{}]",
                schema.field(0).name(),
                counts.join(", ")
            )?,
        }
        match &self.keep {
            Some(keep) => write!(f, ", keep={}", fmt_sql(keep.as_ref())),
            None => Ok(()),
        }
    }
}

impl ExecutionPlan for CountByTextExec {
    fn name(&self) -> &str {
        "CountByTextExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        match &self.keep {
            Some(keep) => f(keep),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = &children[..] else {
            return Err(DataFusionError::Internal(format!(
                "CountByTextExec has one input, given {}",
                children.len()
            )));
        };
        let mut exec = CountByTextExec::try_new(
            Arc::clone(input),
            self.group,
            self.counts.clone(),
            self.schema(),
        )?;
        exec.keep = self.keep.clone();
        Ok(Arc::new(exec))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let reservation = MemoryConsumer::new(format!("CountByTextExec[{partition}]"))
            .register(context.memory_pool());
        let counter = Counter::new(
            self.group,
            self.counts.clone(),
            self.keep.clone(),
            self.schema(),
            reservation,
        );
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let state = (input, counter, baseline, false);
        let batches = futures::stream::try_unfold(
            state,
            |(mut input, mut counter, baseline, done)| async move {
                if done {
                    return Ok(None);
                }
                while let Some(batch) = input.next().await {
                    let batch = batch?;
                    let timer = baseline.elapsed_compute().timer();
                    let fits = counter.add(&batch)?;
                    timer.done();
                    // Too many groups, or no memory for more: send them on, as DataFusion's
                    // partial aggregate does under memory pressure (when there are some).
                    let full = !fits || counter.groups() >= EMIT_AT_GROUPS;
                    if full && counter.groups() > 0 {
                        let out = counter.emit()?;
                        baseline.record_output(out.num_rows());
                        return Ok(Some((out, (input, counter, baseline, false))));
                    }
                }
                if counter.groups() == 0 {
                    return Ok(None);
                }
                let out = counter.emit()?;
                baseline.record_output(out.num_rows());
                Ok(Some((out, (input, counter, baseline, true))))
            },
        );
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            batches.boxed(),
        )))
    }
}

/// Slots of [`Counter::recent`]: a power of two, a few times more than the distinct values
/// a batch of a low-cardinality column holds.
const RECENT_SLOTS: usize = 1 << 10;

/// A slot of [`Counter::recent`]: a view, its group id, and the batch it was seen in (its
/// number; 0 is none).
type Recent = (u128, u32, u32);

/// The slot of [`Counter::recent`] for `view`: its two words folded, then a Fibonacci hash.
fn recent_slot(view: u128) -> usize {
    let folded = (view as u64) ^ ((view >> 64) as u64);
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - RECENT_SLOTS.trailing_zeros())) as usize
}

/// The groups of one partition and their counts.
struct Counter {
    group: usize,
    counts: Vec<Option<usize>>,
    /// Which rows are counted, by their group's value (see [`CountByTextExec::keep`]).
    keep: Option<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    /// Every group's text, end to end: group `g` is `text[ends[g - 1]..ends[g]]`.
    text: String,
    ends: Vec<usize>,
    /// Group ids, found by their text.
    ids: HashTable<u32>,
    hasher: FixedState,
    /// The id of the group of nulls, once there is one.
    null: Option<u32>,
    /// Per count, per group (a group gets its zeros when it is made).
    totals: Vec<Vec<i64>>,
    /// The current batch's views last seen in each slot, with their group ids (under a
    /// condition: their index among the batch's distinct values): most rows find their
    /// group here, at the cost of a multiply and a comparison.
    recent: Box<[Recent]>,
    /// The current batch's number, for `recent`.
    batch: u32,
    /// The current batch's group ids (or distinct values) by view, where a row not in
    /// `recent` looks, and per row.
    by_view: HashMap<u128, u32, FixedState>,
    rows: Vec<u32>,
    /// The dictionary the last batch of a group read as a dictionary had, and its values'
    /// groups; the next batch of the same column chunk has the same.
    dictionary: Option<KnownDictionary>,
    /// Rows per distinct value of the current batch (scratch space).
    per_value: Vec<i64>,
    reservation: MemoryReservation,
}

/// A group read as a dictionary: the dictionary's values (held, so that no other can be
/// allocated where they lie and be taken for them) and per value, then for the null key,
/// its group, [`NO_GROUP`] or [`UNSEEN`].
struct KnownDictionary {
    values: ArrayRef,
    groups: Vec<u32>,
}

/// No group: the condition rejects the value.
const NO_GROUP: u32 = u32::MAX;

/// A dictionary value not yet met in a batch's rows.
const UNSEEN: u32 = u32::MAX - 1;

impl Counter {
    fn new(
        group: usize,
        counts: Vec<Option<usize>>,
        keep: Option<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
        reservation: MemoryReservation,
    ) -> Counter {
        let totals = vec![Vec::new(); counts.len()];
        Counter {
            group,
            counts,
            keep,
            schema,
            text: String::new(),
            ends: Vec::new(),
            ids: HashTable::new(),
            hasher: FixedState::default(),
            null: None,
            totals,
            recent: vec![(0, 0, 0); RECENT_SLOTS].into_boxed_slice(),
            batch: 0,
            by_view: HashMap::default(),
            rows: Vec::new(),
            dictionary: None,
            per_value: Vec::new(),
            reservation,
        }
    }

    fn groups(&self) -> usize {
        self.ends.len()
    }

    /// Counts `batch`'s rows into their groups; false when the memory pool cannot hold them
    /// (they should be emitted).
    fn add(&mut self, batch: &RecordBatch) -> Result<bool> {
        if let Some(keys) = batch.column(self.group).as_dictionary_opt::<Int32Type>() {
            return self.add_dictionary(batch, keys);
        }
        let column = batch
            .column(self.group)
            .as_string_view_opt()
            .ok_or_else(|| {
                DataFusionError::Internal("CountByTextExec: the group is not Utf8View".into())
            })?;
        if self.keep.is_some() {
            return self.add_kept(batch, column);
        }
        let views = column.views();
        let nulls = column.logical_nulls();
        let batch_number = self.next_batch();
        // `count(*)` alone (the common case) is added up as the rows are grouped; other
        // counts look at each row's group afterwards; `count(DISTINCT t)` only needs the
        // groups.
        let rows_only = matches!(self.counts[..], [None]);
        let counting = !self.counts.is_empty() && !rows_only;
        for (row, &view) in views.iter().enumerate() {
            let id = if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                self.null_group()
            } else {
                self.find(view, batch_number, |c| c.text_group(column.value(row)))
            };
            if rows_only {
                self.totals[0][id as usize] += 1;
            } else if counting {
                self.rows.push(id);
            }
        }
        if counting {
            for (count, totals) in self.counts.iter().zip(&mut self.totals) {
                match count.and_then(|c| batch.column(c).logical_nulls()) {
                    None => self.rows.iter().for_each(|&g| totals[g as usize] += 1),
                    Some(valid) => {
                        for (&g, valid) in self.rows.iter().zip(valid.iter()) {
                            totals[g as usize] += i64::from(valid);
                        }
                    }
                }
            }
        }
        Ok(self.reservation.try_resize(self.memory()).is_ok())
    }

    /// What `view` stands for in the current batch (numbered `batch_number`): its group id,
    /// or under a condition its index among the batch's distinct values; `new` gives it
    /// when the batch has not shown the view before.
    #[inline]
    fn find(
        &mut self,
        view: u128,
        batch_number: u32,
        new: impl FnOnce(&mut Counter) -> u32,
    ) -> u32 {
        let slot = recent_slot(view);
        if let (seen, id, number) = self.recent[slot]
            && seen == view
            && number == batch_number
        {
            return id;
        }
        let id = match self.by_view.get(&view) {
            Some(&id) => id,
            None => {
                let id = new(self);
                self.by_view.insert(view, id);
                id
            }
        };
        self.recent[slot] = (view, id, batch_number);
        id
    }

    /// Starts on a new batch: its number, for [`Counter::recent`].
    fn next_batch(&mut self) -> u32 {
        // A view that does not hold its text inline points into this batch's buffers: what
        // the last batch learned about views does not hold for this one. A slot counts only
        // for the batch that filled it, so a batch of a few rows costs no clearing.
        self.batch = match self.batch.checked_add(1) {
            Some(batch) => batch,
            None => {
                self.recent.fill((0, 0, 0));
                1
            }
        };
        self.by_view.clear();
        self.rows.clear();
        self.batch
    }

    /// [`Counter::add`] under a condition on the group's value. Each row first finds its
    /// view among the batch's distinct views (as `add` finds its group); the condition is
    /// then evaluated once over those distinct values. Rows are counted per distinct value,
    /// and the counts of the values it keeps are added to groups made for those values
    /// alone. A rejected value costs its rows a view lookup and never makes a group,
    /// however many distinct values the column has.
    fn add_kept(&mut self, batch: &RecordBatch, column: &StringViewArray) -> Result<bool> {
        let nulls = column.logical_nulls();
        let batch_number = self.next_batch();
        // The first row of each distinct value, each row's value among them and, for
        // `count(*)` alone, the rows of each value, counted as they are found.
        let rows_only = matches!(self.counts[..], [None]);
        let counting = !self.counts.is_empty() && !rows_only;
        let mut firsts: Vec<u32> = Vec::new();
        let mut per_value: Vec<i64> = Vec::new();
        let mut null_value = None;
        for (row, &view) in column.views().iter().enumerate() {
            let mut first = || {
                firsts.push(row as u32);
                per_value.push(0);
                firsts.len() as u32 - 1
            };
            let value = if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                *null_value.get_or_insert_with(first)
            } else {
                self.find(view, batch_number, |_| first())
            };
            if rows_only {
                per_value[value as usize] += 1;
            } else if counting {
                self.rows.push(value);
            }
        }
        let distinct = take(column, &UInt32Array::from(firsts), None)?;
        let groups = self.groups_for(distinct.as_string_view())?;
        self.add_per_value(batch, &mut per_value, &groups);
        Ok(self.reservation.try_resize(self.memory()).is_ok())
    }

    /// [`Counter::add`] for a group read as a dictionary
    /// ([`text_dictionary_type`]): rows are counted per key, and each key's group is found
    /// (and the condition, if any, decided) once per dictionary, not per batch: the batches
    /// read from one Parquet column chunk share its dictionary page.
    fn add_dictionary(
        &mut self,
        batch: &RecordBatch,
        column: &DictionaryArray<Int32Type>,
    ) -> Result<bool> {
        self.next_batch();
        let values = column.values();
        let text = values.as_string_opt::<i32>().ok_or_else(|| {
            DataFusionError::Internal("CountByTextExec: the group's dictionary is not Utf8".into())
        })?;
        // Keys index the values; one more stands for the rows whose key is null.
        let null_key = values.len();
        let mut known = match self.dictionary.take() {
            Some(known) if known.values.to_data().ptr_eq(&values.to_data()) => known,
            _ => KnownDictionary {
                values: Arc::clone(values),
                groups: vec![UNSEEN; null_key + 1],
            },
        };
        let mut per_value = std::mem::take(&mut self.per_value);
        per_value.clear();
        per_value.resize(null_key + 1, 0);
        let keys = column.keys();
        match keys.nulls() {
            None => keys
                .values()
                .iter()
                .for_each(|&k| per_value[k as usize] += 1),
            Some(valid) => {
                for (&k, valid) in keys.values().iter().zip(valid.iter()) {
                    per_value[if valid { k as usize } else { null_key }] += 1;
                }
            }
        }
        if !self.counts.is_empty() && !matches!(self.counts[..], [None]) {
            let key = |k: Option<i32>| k.map_or(null_key, |k| k as usize) as u32;
            self.rows.extend(keys.iter().map(key));
        }
        // Groups for the values first met in this dictionary.
        let fresh: Vec<usize> = (0..=null_key)
            .filter(|&v| per_value[v] > 0 && known.groups[v] == UNSEEN)
            .collect();
        if !fresh.is_empty() {
            let distinct: StringViewArray = fresh
                .iter()
                .map(|&v| (v < null_key && text.is_valid(v)).then(|| text.value(v)))
                .collect();
            for (&v, group) in fresh.iter().zip(self.groups_for(&distinct)?) {
                known.groups[v] = group;
            }
        }
        self.add_per_value(batch, &mut per_value, &known.groups);
        self.dictionary = Some(known);
        self.per_value = per_value;
        Ok(self.reservation.try_resize(self.memory()).is_ok())
    }

    /// The groups of `distinct` values, made if new: [`NO_GROUP`] for a value the condition
    /// (if any) rejects.
    fn groups_for(&mut self, distinct: &StringViewArray) -> Result<Vec<u32>> {
        let kept = match &self.keep {
            Some(keep) => {
                let values = RecordBatch::try_new(
                    group_schema(&self.schema),
                    vec![Arc::new(distinct.clone()) as ArrayRef],
                )?;
                let kept = keep.evaluate(&values)?.into_array(values.num_rows())?;
                let kept = kept.as_boolean_opt().cloned().ok_or_else(|| {
                    DataFusionError::Internal(
                        "CountByTextExec: its condition is not a Boolean".into(),
                    )
                })?;
                Some(kept)
            }
            None => None,
        };
        Ok((0..distinct.len())
            .map(|i| {
                let rejected = kept
                    .as_ref()
                    .is_some_and(|k| !(k.is_valid(i) && k.value(i)));
                match (rejected, distinct.is_null(i)) {
                    (true, _) => NO_GROUP,
                    (false, true) => self.null_group(),
                    (false, false) => self.text_group(distinct.value(i)),
                }
            })
            .collect())
    }

    /// Adds a batch's counts to the groups, its rows sorted into distinct values: for
    /// `count(*)` alone `per_value` holds each value's rows, otherwise `self.rows` holds
    /// each row's value (and `per_value` is scratch); `groups` is each value's group (one
    /// from [`NO_GROUP`] up: none, its rows are not counted).
    fn add_per_value(&mut self, batch: &RecordBatch, per_value: &mut Vec<i64>, groups: &[u32]) {
        let rows_only = matches!(self.counts[..], [None]);
        for (c, count) in self.counts.iter().enumerate() {
            if !rows_only {
                per_value.clear();
                per_value.resize(groups.len(), 0);
                match count.and_then(|c| batch.column(c).logical_nulls()) {
                    None => self.rows.iter().for_each(|&v| per_value[v as usize] += 1),
                    Some(valid) => {
                        for (&v, valid) in self.rows.iter().zip(valid.iter()) {
                            per_value[v as usize] += i64::from(valid);
                        }
                    }
                }
            }
            for (&g, &n) in groups.iter().zip(per_value.iter()) {
                if g < UNSEEN {
                    self.totals[c][g as usize] += n;
                }
            }
        }
    }

    /// The id of `value`'s group, made if new.
    fn text_group(&mut self, value: &str) -> u32 {
        let Counter {
            text,
            ends,
            ids,
            hasher,
            totals,
            ..
        } = self;
        let of = |g: u32| {
            let g = g as usize;
            let start = if g == 0 { 0 } else { ends[g - 1] };
            &text[start..ends[g]]
        };
        let hash = hasher.hash_one(value);
        if let Some(&id) = ids.find(hash, |&g| of(g) == value) {
            return id;
        }
        let id = ends.len() as u32;
        ids.insert_unique(hash, id, |&g| hasher.hash_one(of(g)));
        text.push_str(value);
        ends.push(text.len());
        totals.iter_mut().for_each(|t| t.push(0));
        id
    }

    /// The id of the group of nulls, made if new.
    fn null_group(&mut self) -> u32 {
        if let Some(id) = self.null {
            return id;
        }
        let id = self.ends.len() as u32;
        self.ends.push(self.text.len());
        self.totals.iter_mut().for_each(|t| t.push(0));
        self.null = Some(id);
        id
    }

    /// Bytes held across batches.
    fn memory(&self) -> usize {
        self.text.capacity()
            + self.ends.capacity() * size_of::<usize>()
            + self.ids.capacity() * (size_of::<u32>() + 1)
            + self.totals.iter().map(|t| t.capacity() * 8).sum::<usize>()
            + self.recent.len() * size_of::<Recent>()
            + self.by_view.capacity() * (size_of::<(u128, u32)>() + 1)
            + self.rows.capacity() * size_of::<u32>()
            + self
                .dictionary
                .as_ref()
                .map_or(0, |d| d.groups.capacity() * size_of::<u32>())
            + self.per_value.capacity() * size_of::<i64>()
    }

    /// The groups so far and their counts, as the aggregate's output; the counter is empty
    /// after.
    fn emit(&mut self) -> Result<RecordBatch> {
        let mut keys = StringViewBuilder::with_capacity(self.ends.len());
        let mut start = 0;
        for (g, &end) in self.ends.iter().enumerate() {
            match self.null == Some(g as u32) {
                true => keys.append_null(),
                false => keys.append_value(&self.text[start..end]),
            }
            start = end;
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(keys.finish())];
        for totals in &mut self.totals {
            columns.push(Arc::new(Int64Array::from(std::mem::take(totals))));
        }
        // The groups' memory goes back; what stays is one batch's scratch space, held
        // whether the pool has room or not.
        self.text = String::new();
        self.ends = Vec::new();
        self.ids = HashTable::new();
        self.null = None;
        // Its values' groups are gone.
        self.dictionary = None;
        self.reservation.resize(self.memory());
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use arrow::array::{StringViewArray, UInt32Array};
    use arrow::compute::take;
    use arrow::datatypes::{Field, Int64Type, Schema};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext};
    use datafusion_proto::bytes::{
        physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
    };

    use crate::codec::ArmorlakeCodec;

    /// `n` rows in `partitions` partitions: a text column `t` of `distinct` values (short
    /// ones held in their views, long ones in a buffer; every seventh row null), taken from
    /// one array of those values so that rows share views as rows read from a dictionary
    /// page do, and a column `c` that is null every fifth row.
    fn table(n: usize, distinct: usize, partitions: usize) -> MemTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Utf8View, true),
            Field::new("c", DataType::Utf8View, true),
        ]));
        let values: StringViewArray = (0..distinct)
            .map(|i| match i % 2 {
                0 => Some(format!("v{i}")),
                _ => Some(format!("a value longer than twelve bytes {i}")),
            })
            .collect();
        let per_partition = n / partitions;
        let batches = (0..partitions)
            .map(|p| {
                (0..per_partition)
                    .step_by(1000)
                    .map(|start| {
                        let rows = start..(start + 1000).min(per_partition);
                        let picks: UInt32Array = rows
                            .clone()
                            .map(|i| (i % 7 != 3).then_some(((i * 31 + p) % distinct) as u32))
                            .collect();
                        let t = take(&values, &picks, None).unwrap();
                        let c: StringViewArray =
                            rows.map(|i| (i % 5 != 0).then_some("x")).collect();
                        RecordBatch::try_new(Arc::clone(&schema), vec![t, Arc::new(c)]).unwrap()
                    })
                    .collect()
            })
            .collect();
        MemTable::try_new(schema, batches).unwrap()
    }

    fn context(with_rule: bool) -> SessionContext {
        let config = SessionConfig::new().with_option_extension(ArmorlakeOptions::default());
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if with_rule {
            builder = builder.with_physical_optimizer_rule(Arc::new(CountByText));
        }
        SessionContext::new_with_state(builder.build())
    }

    /// The answer to `sql` with the rule and without, and the plan with it.
    async fn both(sql: &str, n: usize, distinct: usize) -> (String, String, String) {
        let mut answers = Vec::new();
        let mut plan = String::new();
        for with_rule in [true, false] {
            let ctx = context(with_rule);
            ctx.register_table("e", Arc::new(table(n, distinct, 3)))
                .unwrap();
            let frame = ctx.sql(sql).await.unwrap();
            let physical = frame.create_physical_plan().await.unwrap();
            if with_rule {
                plan = displayable(physical.as_ref()).indent(false).to_string();
            }
            let batches = collect(physical, ctx.task_ctx()).await.unwrap();
            answers.push(pretty_format_batches(&batches).unwrap().to_string());
        }
        let without = answers.pop().unwrap();
        (answers.pop().unwrap(), without, plan)
    }

    #[tokio::test]
    async fn counts_by_text_match_datafusions_aggregate() {
        let queries = [
            "SELECT t, count(*) AS n, count(c) AS m, count(t) AS k FROM e GROUP BY t ORDER BY t",
            "SELECT count(DISTINCT t) AS d FROM e",
            "SELECT t, count(*) FROM e WHERE c IS NULL GROUP BY t ORDER BY 2 DESC, t LIMIT 5",
            // Conditions on the group alone are taken in (below).
            "SELECT t, count(*) AS n, count(c) AS m FROM e WHERE t <> 'v0' GROUP BY t ORDER BY t",
            "SELECT count(DISTINCT t) AS d FROM e WHERE t LIKE 'a%' OR t IS NULL",
        ];
        for sql in queries {
            // Few groups, and more than a partition holds before it emits.
            for distinct in [40, 3 * EMIT_AT_GROUPS] {
                let (with, without, plan) = both(sql, 300_000, distinct).await;
                assert!(plan.contains("CountByTextExec"), "{sql}:\n{plan}");
                // What is left to DataFusion's partial aggregates groups by nothing.
                let grouped = plan
                    .lines()
                    .filter(|l| l.contains("mode=Partial"))
                    .any(|l| !l.contains("gby=[]"));
                assert!(!grouped, "{sql}:\n{plan}");
                let on_group = sql.contains("WHERE t ");
                assert_eq!(plan.contains("keep="), on_group, "{sql}:\n{plan}");
                assert!(!on_group || !plan.contains("FilterExec"), "{sql}:\n{plan}");
                assert_eq!(with, without, "{sql} over {distinct} values");
            }
        }
    }

    #[tokio::test]
    async fn conditions_on_more_than_the_group_stay_filters() {
        let queries = [
            "SELECT t, count(*) FROM e WHERE t <> c GROUP BY t ORDER BY t",
            "SELECT t, count(*) FROM e WHERE t <> 'v0' AND random() < 2 GROUP BY t ORDER BY t",
        ];
        for sql in queries {
            let (with, without, plan) = both(sql, 30_000, 40).await;
            assert!(
                plan.contains("CountByTextExec")
                    && plan.contains("FilterExec")
                    && !plan.contains("keep="),
                "{sql}:\n{plan}"
            );
            assert_eq!(with, without, "{sql}");
        }
    }

    #[tokio::test]
    async fn other_aggregates_stay_with_datafusion() {
        let queries = [
            "SELECT t, count(*), min(c) FROM e GROUP BY t",
            "SELECT t, c, count(*) FROM e GROUP BY t, c",
            "SELECT t, avg(length(c)) FROM e GROUP BY t",
            "SELECT t, count(*) FILTER (WHERE c = 'x') FROM e GROUP BY t",
            "SELECT upper(t), count(*) FROM e GROUP BY upper(t)",
        ];
        for sql in queries {
            let (_, _, plan) = both(sql, 3000, 10).await;
            assert!(!plan.contains("CountByTextExec"), "{sql}:\n{plan}");
        }
    }

    /// Per group, its count summed over `batches` (a group may come in several).
    fn summed(batches: &[RecordBatch]) -> BTreeMap<Option<String>, i64> {
        let mut sums = BTreeMap::new();
        for batch in batches {
            let keys = batch.column(0).as_string_view();
            let counts = batch.column(1).as_primitive::<Int64Type>();
            for (key, count) in keys.iter().zip(counts.values()) {
                *sums.entry(key.map(str::to_string)).or_insert(0) += count;
            }
        }
        sums
    }

    #[tokio::test]
    async fn a_full_memory_pool_makes_it_send_groups_early() {
        let ctx = context(false);
        ctx.register_table("e", Arc::new(table(30_000, 5_000, 1)))
            .unwrap();
        let rows = ctx.sql("SELECT t FROM e").await.unwrap();
        let rows = rows.create_physical_plan().await.unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Utf8View, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let exec = CountByTextExec::try_new(rows, 0, vec![None], schema).unwrap();
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(128 * 1024, 1.0)
            .build_arc()
            .unwrap();
        let task = Arc::new(TaskContext::default().with_runtime(runtime));
        let batches = collect(Arc::new(exec), task).await.unwrap();
        assert!(batches.len() > 2, "{} batches", batches.len());
        let expected = ctx
            .sql("SELECT t, count(*) FROM e GROUP BY t")
            .await
            .unwrap();
        let expected = expected.collect().await.unwrap();
        assert_eq!(summed(&batches), summed(&expected));
    }

    /// Batches of `n` rows whose `t` is read as a dictionary, as from Parquet: runs of
    /// batches share one dictionary (a column chunk's page, which holds values no row of a
    /// batch uses, and a null), then the next takes over; keys are null every seventh row.
    /// `c` is null every fifth row. With them, the same rows with `t` as views.
    fn dictionary_batches(n: usize, distinct: usize) -> (Vec<RecordBatch>, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", text_dictionary_type(), true),
            Field::new("c", DataType::Utf8View, true),
        ]));
        let view_schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Utf8View, true),
            Field::new("c", DataType::Utf8View, true),
        ]));
        let (mut batches, mut views) = (Vec::new(), Vec::new());
        let mut dictionary: ArrayRef =
            Arc::new(arrow::array::StringArray::from(Vec::<&str>::new()));
        for (b, start) in (0..n).step_by(1000).enumerate() {
            if b % 4 == 0 {
                // A chunk's page: its values, one unused, and a null.
                let chunk = b / 4;
                let mut values: Vec<Option<String>> = (0..distinct)
                    .map(|i| match (i + chunk) % 2 {
                        0 => Some(format!("v{}", (i + chunk) % distinct)),
                        _ => Some(format!(
                            "a value longer than twelve bytes {}",
                            (i + chunk) % distinct
                        )),
                    })
                    .collect();
                values.push(Some("never used".into()));
                values.push(None);
                dictionary = Arc::new(arrow::array::StringArray::from(values));
            }
            let rows = start..(start + 1000).min(n);
            let keys: arrow::array::Int32Array = rows
                .clone()
                .map(|i| match i % 7 {
                    3 => None,
                    5 => Some(distinct as i32 + 1),
                    _ => Some(((i * 31) % distinct) as i32),
                })
                .collect();
            let t = DictionaryArray::<Int32Type>::try_new(keys, Arc::clone(&dictionary)).unwrap();
            let c: StringViewArray = rows.map(|i| (i % 5 != 0).then_some("x")).collect();
            // By hand: arrow's cast gives a key pointing at a null value as "".
            let values = dictionary.as_string::<i32>();
            let as_views: StringViewArray = t
                .keys()
                .iter()
                .map(|k| {
                    k.and_then(|k| {
                        values
                            .is_valid(k as usize)
                            .then(|| values.value(k as usize))
                    })
                })
                .collect();
            let as_views: ArrayRef = Arc::new(as_views);
            let c: ArrayRef = Arc::new(c);
            batches.push(
                RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(t), Arc::clone(&c)])
                    .unwrap(),
            );
            views.push(RecordBatch::try_new(Arc::clone(&view_schema), vec![as_views, c]).unwrap());
        }
        (batches, views)
    }

    /// Per group, its counts summed over `batches` (a group may come in several).
    fn all_summed(batches: &[RecordBatch]) -> BTreeMap<Option<String>, Vec<i64>> {
        let mut sums = BTreeMap::new();
        for batch in batches {
            let keys = arrow::compute::cast(batch.column(0), &DataType::Utf8).unwrap();
            for (row, key) in keys.as_string::<i32>().iter().enumerate() {
                let entry = sums
                    .entry(key.map(str::to_string))
                    .or_insert_with(|| vec![0; batch.num_columns() - 1]);
                for (total, column) in entry.iter_mut().zip(&batch.columns()[1..]) {
                    *total += column.as_primitive::<Int64Type>().value(row);
                }
            }
        }
        sums
    }

    #[tokio::test]
    async fn a_group_read_as_a_dictionary_counts_as_views_do() {
        use datafusion::datasource::memory::MemorySourceConfig;
        use datafusion::logical_expr::Operator;
        use datafusion::physical_expr::expressions::{BinaryExpr, lit};

        // Counts, the SQL giving the same, and whether rows must meet `t <> 'v0'`.
        let cases = [
            (vec![None], "count(*)", false),
            (
                vec![None, Some(1), Some(0)],
                "count(*), count(c), count(t)",
                false,
            ),
            (vec![], "", false),
            (vec![None], "count(*)", true),
            (vec![Some(1)], "count(c)", true),
        ];
        for distinct in [40, 3 * EMIT_AT_GROUPS] {
            let (batches, views) = dictionary_batches(200_000, distinct);
            let ctx = context(false);
            let table = MemTable::try_new(views[0].schema(), vec![views]).unwrap();
            ctx.register_table("e", Arc::new(table)).unwrap();
            for (counts, sql_counts, on_group) in &cases {
                let input = MemorySourceConfig::try_new_exec(
                    std::slice::from_ref(&batches),
                    batches[0].schema(),
                    None,
                )
                .unwrap();
                let mut all = vec![Field::new("t", DataType::Utf8View, true)];
                all.extend(
                    (0..counts.len()).map(|i| Field::new(format!("n{i}"), DataType::Int64, false)),
                );
                let schema = Arc::new(Schema::new(all));
                let mut exec =
                    CountByTextExec::try_new(input, 0, counts.clone(), Arc::clone(&schema))
                        .unwrap();
                if *on_group {
                    let t = Arc::new(Column::new("t", 0));
                    let condition = BinaryExpr::new(
                        t,
                        Operator::NotEq,
                        lit(datafusion::common::ScalarValue::Utf8View(Some("v0".into()))),
                    );
                    exec = exec.keeping(Arc::new(condition));
                }
                // Little memory: groups are sent early, and met again afterwards.
                let runtime = RuntimeEnvBuilder::new()
                    .with_memory_limit(1 << 20, 1.0)
                    .build_arc()
                    .unwrap();
                let task = Arc::new(TaskContext::default().with_runtime(runtime));
                let got = collect(Arc::new(exec), task).await.unwrap();
                let select = match sql_counts.is_empty() {
                    true => "t".to_string(),
                    false => format!("t, {sql_counts}"),
                };
                let condition = if *on_group { "WHERE t <> 'v0'" } else { "" };
                let sql = format!("SELECT {select} FROM e {condition} GROUP BY t");
                let expected = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                assert_eq!(
                    all_summed(&got),
                    all_summed(&expected),
                    "{sql} over {distinct} values"
                );
            }
        }
    }

    #[tokio::test]
    async fn the_setting_turns_it_off() {
        let ctx = context(true);
        ctx.register_table("e", Arc::new(table(3000, 10, 1)))
            .unwrap();
        let sql = "SELECT t, count(*) FROM e GROUP BY t";
        let plan = |ctx: SessionContext| async move {
            let physical = ctx.sql(sql).await.unwrap().create_physical_plan().await;
            displayable(physical.unwrap().as_ref())
                .indent(false)
                .to_string()
        };
        assert!(plan(ctx.clone()).await.contains("CountByTextExec"));
        ctx.sql("SET armorlake.enable_count_by_text = off")
            .await
            .unwrap();
        let off = plan(ctx.clone()).await;
        assert!(
            !off.contains("CountByTextExec") && off.contains("mode=Partial"),
            "{off}"
        );
    }

    #[tokio::test]
    async fn the_node_crosses_the_wire_intact() {
        let ctx = context(true);
        ctx.register_table("e", Arc::new(table(3000, 10, 3)))
            .unwrap();
        let sql = "SELECT t, count(*) AS n, count(c) AS m FROM e WHERE t <> 'v2' GROUP BY t \
                   ORDER BY t";
        let plan = ctx.sql(sql).await.unwrap();
        let plan = plan.create_physical_plan().await.unwrap();
        let mut node = None;
        plan.apply(|n| {
            if n.downcast_ref::<CountByTextExec>().is_some() {
                node = Some(Arc::clone(n));
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        let node = node.expect("a CountByTextExec");
        // Its input (a memory table) is DataFusion's to encode; it stands in for a scan.
        let bytes = physical_plan_to_bytes_with_extension_codec(Arc::clone(&node), &ArmorlakeCodec)
            .unwrap();
        let back =
            physical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &ArmorlakeCodec)
                .unwrap();
        let back = back.downcast_ref::<CountByTextExec>().expect("decoded");
        assert_eq!(back.schema(), node.schema());
        assert!(back.keep().is_some());
        assert_eq!(
            displayable(back).indent(true).to_string(),
            displayable(node.as_ref()).indent(true).to_string()
        );
    }
}
