//! `ClusterTable`: an event table whose rows live on the operators. Its scan picks the
//! operator clusters whose partitions can hold rows in the query's time range, and for each
//! a live member to serve it.

use std::any::Any;
use std::future::Future;
use std::sync::{Arc, Mutex};

use armorlake_common::Table;
use armorlake_meta::{MetaService, NodeInfo, Partition, Role};
use armorlake_storage::TimeRange;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;

use crate::distribute::{Liveness, worker_url};
use crate::scan::{LocalOperator, OperatorScanExec, TaskTarget};

/// armorlake's session settings (`SET armorlake.…`). Booleans take PostgreSQL's spellings
/// (`on`/`off`, `true`/`false`, `yes`/`no`, `1`/`0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmorlakeOptions {
    /// Answer from the reachable operators when a cluster has no live member, instead of
    /// failing.
    pub allow_partial_results: bool,
    /// Count by one text column with [`CountByTextExec`](crate::count_by_text::CountByTextExec)
    /// (on by default; off leaves it to DataFusion's aggregate, as PostgreSQL's `enable_*`
    /// settings do for its plan nodes).
    pub enable_count_by_text: bool,
    /// Count the rows of a join's side that can meet at most one row of the other before
    /// joining them ([`EagerAggregation`](crate::eager_aggregate::EagerAggregation)).
    pub enable_eager_aggregation: bool,
    /// Run a query the connection ran before from its optimized logical plan, skipping SQL
    /// planning and the logical optimizer (see `pg/plans.rs`).
    pub reuse_plans: bool,
    /// The most rows a scan over several operators may send to the query node as they are
    /// stored (no filter, aggregate or limit on the operators), so that the query node joins
    /// or sorts them itself; a scan estimated at more is left to datafusion-distributed,
    /// which moves the rows between the operators and runs the work there.
    pub gather_raw_rows_limit: u64,
}

impl Default for ArmorlakeOptions {
    fn default() -> ArmorlakeOptions {
        ArmorlakeOptions {
            allow_partial_results: false,
            enable_count_by_text: true,
            enable_eager_aggregation: true,
            reuse_plans: true,
            gather_raw_rows_limit: 1_000_000,
        }
    }
}

const ALLOW_PARTIAL_RESULTS: &str = "allow_partial_results";
const ENABLE_COUNT_BY_TEXT: &str = "enable_count_by_text";
const ENABLE_EAGER_AGGREGATION: &str = "enable_eager_aggregation";
const REUSE_PLANS: &str = "reuse_plans";
const GATHER_RAW_ROWS_LIMIT: &str = "gather_raw_rows_limit";

/// A Boolean in PostgreSQL's spellings.
pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Ok(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Ok(false),
        _ => Err(DataFusionError::Configuration(format!(
            "parameter \"armorlake.{key}\" requires a Boolean value, not {value:?}"
        ))),
    }
}

impl ExtensionOptions for ArmorlakeOptions {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            ALLOW_PARTIAL_RESULTS => self.allow_partial_results = parse_bool(key, value)?,
            ENABLE_COUNT_BY_TEXT => self.enable_count_by_text = parse_bool(key, value)?,
            ENABLE_EAGER_AGGREGATION => self.enable_eager_aggregation = parse_bool(key, value)?,
            REUSE_PLANS => self.reuse_plans = parse_bool(key, value)?,
            GATHER_RAW_ROWS_LIMIT => {
                self.gather_raw_rows_limit = value.trim().parse().map_err(|_| {
                    DataFusionError::Configuration(format!(
                        "invalid value for parameter \"armorlake.{key}\": {value:?} (a number \
                         of rows)"
                    ))
                })?
            }
            _ => {
                return Err(DataFusionError::Configuration(format!(
                    "unrecognized configuration parameter \"armorlake.{key}\""
                )));
            }
        }
        Ok(())
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        vec![
            ConfigEntry {
                key: format!("{}.{ALLOW_PARTIAL_RESULTS}", Self::PREFIX),
                value: Some(self.allow_partial_results.to_string()),
                description: "answer from the reachable operators when a cluster has no live member",
            },
            ConfigEntry {
                key: format!("{}.{ENABLE_COUNT_BY_TEXT}", Self::PREFIX),
                value: Some(self.enable_count_by_text.to_string()),
                description: "count by one text column with armorlake's CountByTextExec",
            },
            ConfigEntry {
                key: format!("{}.{ENABLE_EAGER_AGGREGATION}", Self::PREFIX),
                value: Some(self.enable_eager_aggregation.to_string()),
                description: "count a join's side before joining it to rows unique on the keys",
            },
            ConfigEntry {
                key: format!("{}.{REUSE_PLANS}", Self::PREFIX),
                value: Some(self.reuse_plans.to_string()),
                description: "run a query the connection ran before from its optimized logical plan",
            },
            ConfigEntry {
                key: format!("{}.{GATHER_RAW_ROWS_LIMIT}", Self::PREFIX),
                value: Some(self.gather_raw_rows_limit.to_string()),
                description: "the most stored rows a scan may send unreduced to the query node",
            },
        ]
    }
}

impl ConfigExtension for ArmorlakeOptions {
    const PREFIX: &'static str = "armorlake";
}

/// An event table spanning every operator of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterTable {
    table: Table,
    meta: Arc<dyn MetaService>,
    liveness: Arc<Liveness>,
    local: Option<String>,
}

impl ClusterTable {
    /// The cluster-wide `table`, as `meta` describes the operators; `local` is the cluster
    /// of the operator in this process, if any.
    pub fn new(
        table: Table,
        meta: Arc<dyn MetaService>,
        liveness: Arc<Liveness>,
        local: Option<&LocalOperator>,
    ) -> ClusterTable {
        ClusterTable {
            table,
            meta,
            liveness,
            local: local.map(|l| l.cluster.clone()),
        }
    }

    /// For every operator cluster, in order: who serves it, or nothing when its
    /// partitions rule out `range`; and how many rows the members chosen reported in
    /// `range` (rows that arrived since their last heartbeat, a second at most, are not
    /// counted), unknown when one of them reported no partition of the table at all.
    async fn slots(
        &self,
        range: TimeRange,
        allow_partial: bool,
    ) -> Result<(Vec<Option<TaskTarget>>, Option<u64>)> {
        let meta_error = |e: armorlake_meta::Error| DataFusionError::External(Box::new(e));
        let nodes = self.meta.nodes().await.map_err(meta_error)?;
        let partitions = self.meta.partitions().await.map_err(meta_error)?;
        // One slot per cluster, their members probed concurrently (a probe is a TCP
        // connect: it waits on the other side, not on this one).
        let clusters = armorlake_meta::clusters(&nodes);
        let slots = clusters.iter().map(|cluster| {
            let members: Vec<&NodeInfo> = nodes
                .iter()
                .filter(|n| n.role == Role::Operator && cluster.members.contains(&n.id))
                .collect();
            let held: Vec<&Partition> = partitions
                .iter()
                .filter(|p| p.table == self.table && cluster.members.contains(&p.operator))
                .collect();
            async move {
                if !may_hold(range, &held) {
                    return Ok(None);
                }
                if self.local.as_deref() == Some(cluster.name.as_str()) {
                    return Ok(Some(TaskTarget {
                        cluster: cluster.name.clone(),
                        node: members.first().map(|n| n.id.clone()).unwrap_or_default(),
                        url: String::new(),
                    }));
                }
                for member in &members {
                    if self.liveness.check(member).await? {
                        return Ok(Some(TaskTarget {
                            cluster: cluster.name.clone(),
                            node: member.id.clone(),
                            url: worker_url(&member.address)?.to_string(),
                        }));
                    }
                }
                if allow_partial {
                    let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
                    crate::notices::notice(format!(
                        "partial results: operator cluster {} is unreachable ({}); its rows \
                         of {} are missing",
                        cluster.name,
                        ids.join(", "),
                        self.table.name()
                    ));
                    return Ok(None);
                }
                let down: Vec<String> = members
                    .iter()
                    .map(|m| format!("{} ({})", m.id, m.address))
                    .collect();
                Err(DataFusionError::Execution(format!(
                    "operator cluster {} is unreachable: no live member among {}",
                    cluster.name,
                    down.join(", ")
                )))
            }
        });
        let slots = futures::future::try_join_all(slots).await?;
        let rows = slots
            .iter()
            .flatten()
            .map(|target| reported_rows(range, &partitions, self.table, &target.node))
            .sum();
        Ok((slots, rows))
    }
}

#[async_trait]
impl TableProvider for ClusterTable {
    fn schema(&self) -> SchemaRef {
        self.table.query_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let options = state.config_options().extensions.get::<ArmorlakeOptions>();
        let allow_partial = options.is_some_and(|o| o.allow_partial_results);
        let range = TimeRange::of(filters);
        let (slots, estimated_rows) = self.slots(range, allow_partial).await?;
        let _ = ROUTES.try_with(|routes| {
            let raw_rows_limit = options
                .map_or(ArmorlakeOptions::default().gather_raw_rows_limit, |o| {
                    o.gather_raw_rows_limit
                });
            let route = Route {
                table: self.clone(),
                range,
                allow_partial,
                slots: slots.clone(),
                raw_rows_limit,
                few: few(estimated_rows, raw_rows_limit),
            };
            routes.lock().unwrap_or_else(|p| p.into_inner()).push(route);
        });
        observe_operators(&slots);
        let query_id = crate::metrics::QueryId::of(state.config());
        if slots.iter().all(Option::is_none) {
            let schema = self.schema();
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let tasks = slots.into_iter().map(|s| s.into_iter().collect()).collect();
        let tasks = crate::distribute::pad_lone_remote_slot(tasks);
        let scan = OperatorScanExec::new(
            self.table,
            projection.cloned(),
            filters.to_vec(),
            limit,
            tasks,
            state.config().target_partitions(),
        )?
        .with_query_id(query_id);
        Ok(Arc::new(match estimated_rows {
            Some(rows) => scan.with_estimated_rows(rows),
            None => scan,
        }))
    }
}

tokio::task_local! {
    /// The routes the scans planned in this task took, when someone records them.
    static ROUTES: Arc<Mutex<Vec<Route>>>;
}

/// How a table scan of a statement was routed: which member serves each operator cluster
/// for its time range, and whether the rows the planner expected were few enough to gather
/// raw (`armorlake.gather_raw_rows_limit`, the one use planning makes of them). A physical
/// plan holds its routes in its scans, so it may run again only while they would come out
/// the same.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    table: ClusterTable,
    range: TimeRange,
    allow_partial: bool,
    slots: Vec<Option<TaskTarget>>,
    raw_rows_limit: u64,
    few: bool,
}

/// Whether `estimated_rows` are known and at most `limit`, as `GatherFromOperators` asks.
pub(crate) fn few(estimated_rows: Option<u64>, limit: u64) -> bool {
    estimated_rows.is_some_and(|rows| rows <= limit)
}

impl Route {
    /// Whether a scan of the table planned now would be routed alike: the same clusters
    /// (the partition map), the same live members (probed as planning probes them), on the
    /// same side of the raw-rows limit (rows arriving between runs move only the
    /// estimate). Never for partial results, whose notices planning sends.
    pub(crate) async fn holds(&self) -> bool {
        if self.allow_partial {
            return false;
        }
        match self.table.slots(self.range, false).await {
            Ok((slots, rows)) => slots == self.slots && few(rows, self.raw_rows_limit) == self.few,
            Err(_) => false,
        }
    }

    /// Counts the run of a scan routed so, as planning it would have.
    pub(crate) fn observe(&self) {
        observe_operators(&self.slots);
    }
}

/// Counts the operators a scan with `slots` reads from (`armorlake_query_operators`).
fn observe_operators(slots: &[Option<TaskTarget>]) {
    let reached = slots
        .iter()
        .flatten()
        .filter(|t| !t.node.is_empty())
        .count();
    crate::metrics::QUERY_OPERATORS.observe(reached as f64);
}

/// Plans with `planning`, returning its output and the routes its table scans took.
pub(crate) async fn routed<T>(planning: impl Future<Output = T>) -> (T, Vec<Route>) {
    let routes = Arc::new(Mutex::new(Vec::new()));
    let output = ROUTES.scope(Arc::clone(&routes), planning).await;
    let taken = std::mem::take(&mut *routes.lock().unwrap_or_else(|p| p.into_inner()));
    (output, taken)
}

/// The rows of `table` that `operator` reported in partitions overlapping `range`; `None`
/// when it reported no partition of the table (it may not have reported yet).
fn reported_rows(
    range: TimeRange,
    partitions: &[Partition],
    table: Table,
    operator: &str,
) -> Option<u64> {
    let mut reported = partitions
        .iter()
        .filter(|p| p.table == table && p.operator == operator)
        .peekable();
    reported.peek()?;
    Some(
        reported
            .filter(|p| range.overlaps(p.min_micros, p.max_micros))
            .map(|p| p.rows)
            .sum(),
    )
}

/// Whether a cluster whose reported partitions are `held` may have rows in `range`. Rows
/// that arrived after its last report are newer than anything reported, so a range reaching
/// past its newest reported row is never ruled out.
fn may_hold(range: TimeRange, held: &[&Partition]) -> bool {
    if range == TimeRange::ALL || held.is_empty() {
        return true;
    }
    let newest = held.iter().map(|p| p.max_micros).max().unwrap_or(i64::MIN);
    range.high > newest
        || held
            .iter()
            .any(|p| range.overlaps(p.min_micros, p.max_micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(min: i64, max: i64) -> Partition {
        Partition {
            table: Table::Alerts,
            hour_micros: min,
            operator: "a".into(),
            rows: 1,
            bytes: 1,
            min_micros: min,
            max_micros: max,
        }
    }

    #[test]
    fn settings_take_postgres_booleans() {
        let mut o = ArmorlakeOptions::default();
        o.set("allow_partial_results", "on").unwrap();
        assert!(o.allow_partial_results);
        o.set("allow_partial_results", "OFF").unwrap();
        assert!(!o.allow_partial_results);
        assert!(o.set("allow_partial_results", "maybe").is_err());
        assert!(o.enable_count_by_text);
        o.set("enable_count_by_text", "off").unwrap();
        assert!(!o.enable_count_by_text);
        assert!(o.set("no_such_setting", "on").is_err());
    }

    #[test]
    fn a_cluster_is_skipped_only_when_its_reports_rule_the_range_out() {
        let old = partition(0, 99);
        let newer = partition(200, 299);
        let held = [&old, &newer];
        let between = TimeRange {
            low: 100,
            high: 199,
        };
        assert!(!may_hold(between, &held));
        assert!(may_hold(TimeRange { low: 50, high: 60 }, &held));
        // Past the newest report: rows may have arrived since.
        assert!(may_hold(
            TimeRange {
                low: 250,
                high: 400
            },
            &held
        ));
        assert!(may_hold(
            TimeRange {
                low: 300,
                high: 400
            },
            &held
        ));
        assert!(may_hold(between, &[]));
    }

    #[test]
    fn the_rows_a_scan_reads_are_estimated_from_the_reports() {
        let partitions = [partition(0, 99), partition(200, 299), partition(300, 399)];
        let range = TimeRange {
            low: 250,
            high: 1000,
        };
        let rows = |operator, table| reported_rows(range, &partitions, table, operator);
        assert_eq!(rows("a", Table::Alerts), Some(2));
        assert_eq!(
            reported_rows(TimeRange::ALL, &partitions, Table::Alerts, "a"),
            Some(3)
        );
        // Nothing reported: unknown, not none.
        assert_eq!(rows("b", Table::Alerts), None);
        assert_eq!(rows("a", Table::Logs), None);
        let settings = ArmorlakeOptions::default();
        assert_eq!(settings.gather_raw_rows_limit, 1_000_000);
        let mut o = settings;
        o.set("gather_raw_rows_limit", " 20 ").unwrap();
        assert_eq!(o.gather_raw_rows_limit, 20);
        assert!(o.set("gather_raw_rows_limit", "many").is_err());
    }
}
