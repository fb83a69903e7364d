//! The optimized logical plans of the queries a connection ran, by statement text. A query
//! the connection sends again, with the same text and under the same settings, skips
//! parsing, SQL planning and the logical optimizer, as a prepared statement would;
//! dashboards and pollers send the same text over and over.
//!
//! The physical plan made from a kept plan is kept beside it with the routes its scans
//! took ([`Route`]): which operator clusters the time range leaves in, which live member
//! serves each, how many rows they reported. A later run checks those routes as planning
//! would (the partition map, a probe of the members) and runs the kept physical plan again,
//! its run state reset, only when they all come out the same; otherwise it plans anew.
//! Plans that datafusion-distributed split into stages are not kept: their stages are
//! assigned to workers when they run.
//!
//! Only plans that can give no other answer later are kept: plans over armorlake's event
//! tables alone (the PostgreSQL catalog, `information_schema` and `armorlake.*` tables take
//! their contents when they are planned), whose functions are all immutable (the optimizer
//! folds `now()` and the other stable functions into constants), with no session variables,
//! from a text that holds one statement.
//!
//! A prepared statement's plan (the extended protocol) is kept apart from the simple
//! protocol's plan of the same text: it was planned when the statement was parsed, under
//! the settings of that moment, and is optimized under those of its Execute. It serves an
//! Execute whose statement was parsed into an equal plan, under equal settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::tree_node::TreeNode;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::analyze::AnalyzeExec;
use datafusion::physical_plan::explain::ExplainExec;
use datafusion_distributed::{
    BroadcastExec, DistributedExec, DistributedLeafExec, NetworkBroadcastExec, NetworkCoalesceExec,
    NetworkShuffleExec,
};

use crate::cluster::{ArmorlakeOptions, ClusterTable, Route};
use crate::fragment::OperatorPlanExec;
use crate::go_on_while;
use crate::metrics::QueryId;
use crate::scan::OperatorScanExec;

/// How many plans a connection keeps; past it, the one used longest ago goes.
const CAPACITY: usize = 32;

/// The longest text whose plan is kept (64 KiB): a key is the whole text.
const LONGEST: usize = 64 << 10;

/// The protocol whose statements a plan serves (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Protocol {
    Simple,
    Extended,
}

/// What a plan is kept under: its protocol and the statement's whole text.
type Key = (Protocol, String);

/// A plan as it was optimized, and the settings it was planned under.
#[derive(Debug)]
struct Entry {
    plan: LogicalPlan,
    /// The plan before the optimizer: a prepared statement's is compared on each use (it
    /// was made at Parse, perhaps under other settings than its Execute's).
    planned: LogicalPlan,
    settings: ConfigOptions,
    physical: Option<Physical>,
    /// When it was last used, in lookups of this cache.
    used: u64,
}

/// A physical plan made from a kept plan, and the routes its scans took.
#[derive(Debug, Clone)]
pub(crate) struct Physical {
    plan: Arc<dyn ExecutionPlan>,
    routes: Vec<Route>,
}

impl Physical {
    /// `plan`, whose scans took `routes`, if it can run again (see the module's
    /// documentation).
    pub(crate) fn new(plan: &Arc<dyn ExecutionPlan>, routes: Vec<Route>) -> Option<Physical> {
        // EXPLAIN [ANALYZE] tells how this run was planned; stages go to workers per run.
        let planned_each_run = plan.exists(|node| {
            Ok(node.is::<AnalyzeExec>()
                || node.is::<ExplainExec>()
                || node.is::<DistributedExec>()
                || node.is::<NetworkShuffleExec>()
                || node.is::<NetworkCoalesceExec>()
                || node.is::<NetworkBroadcastExec>()
                || node.is::<BroadcastExec>()
                || node.is::<DistributedLeafExec>())
        });
        match planned_each_run {
            Ok(false) if !routes.is_empty() => Some(Physical {
                plan: Arc::clone(plan),
                routes,
            }),
            _ => None,
        }
    }

    /// The plan, not yet run, for the statement `query_id`, if its routes still hold. (A
    /// route that cannot be checked, or a node that cannot be reset, means planning anew,
    /// which reports the error if there is one.)
    async fn rerun(&self, query_id: &str) -> Option<Arc<dyn ExecutionPlan>> {
        for route in &self.routes {
            if !route.holds().await {
                return None;
            }
        }
        let plan = Arc::clone(&self.plan).transform_up(|node| {
            if let Some(scan) = node.downcast_ref::<OperatorScanExec>() {
                return Ok(Transformed::yes(Arc::new(scan.rerun(query_id)) as _));
            }
            if let Some(gather) = node.downcast_ref::<OperatorPlanExec>() {
                let query_id = Some(query_id.to_string());
                return Ok(Transformed::yes(Arc::new(gather.rerun(query_id)) as _));
            }
            node.reset_state().map(Transformed::yes)
        });
        let plan = plan.ok()?.data;
        self.routes.iter().for_each(Route::observe);
        crate::metrics::PHYSICAL_PLANS_REUSED.inc();
        Some(plan)
    }
}

/// One connection's plans (see the module's documentation).
#[derive(Debug, Default)]
pub(crate) struct Plans {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    clock: u64,
    /// The text of the statement being planned, when it holds that statement alone.
    planning: Option<String>,
}

impl Plans {
    /// The optimized plan kept for `text` of `protocol` under exactly `settings` (and, when
    /// `planned` is given, made from a plan equal to it), if any, and the physical plan
    /// kept with it.
    pub(crate) fn get(
        &self,
        protocol: Protocol,
        text: &str,
        planned: Option<&LogicalPlan>,
        settings: &ConfigOptions,
    ) -> Option<(LogicalPlan, Option<Physical>)> {
        if !enabled(settings) {
            return None;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.entries.get_mut(&(protocol, text.to_string()))?;
        if !same_settings(&entry.settings, settings)
            || planned.is_some_and(|planned| *planned != entry.planned)
        {
            return None;
        }
        entry.used = now;
        crate::metrics::PLANS_REUSED.inc();
        Some((entry.plan.clone(), entry.physical.clone()))
    }

    /// The physical plan of `plan`, the plan kept for `text` of `protocol`, for this run in
    /// `state`: the one `kept` beside it run again when its routes hold, else one planned
    /// now and kept.
    pub(crate) async fn physical(
        &self,
        protocol: Protocol,
        text: &str,
        plan: &LogicalPlan,
        kept: Option<Physical>,
        state: &SessionState,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let query_id = QueryId::of(state.config());
        if let Some(kept) = kept
            && let Some(physical) = kept.rerun(&query_id).await
        {
            tracing::debug!(query_id = %query_id, "running the kept physical plan");
            return Ok(physical);
        }
        let planning = state.query_planner().create_physical_plan(plan, state);
        let (physical, routes) = crate::cluster::routed(planning).await;
        let physical = physical?;
        if let Some(kept) = Physical::new(&physical, routes) {
            self.keep_physical((protocol, text.to_string()), state.config().options(), kept);
        }
        Ok(physical)
    }

    /// Keeps `physical` beside the plan kept under `key` and `settings`, which it was made
    /// from.
    fn keep_physical(&self, key: Key, settings: &ConfigOptions, physical: Physical) {
        let mut inner = self.lock();
        if let Some(entry) = inner.entries.get_mut(&key)
            && same_settings(&entry.settings, settings)
        {
            entry.physical = Some(physical);
        }
    }

    /// Says that the statement planned next comes from `text`, the whole of it (`None`: from
    /// a text holding more than one statement, whose plans are not kept).
    pub(crate) fn planning(&self, text: Option<&str>) {
        self.lock().planning = text.map(str::to_string);
    }

    /// Keeps `optimized`, the plan of the simple protocol's statement whose text
    /// [`Plans::planning`] gave, as [`Plans::keep_as`] does.
    pub(crate) fn keep(
        &self,
        settings: &ConfigOptions,
        planned: &LogicalPlan,
        optimized: &LogicalPlan,
    ) {
        let text = self.lock().planning.take();
        if let Some(text) = text {
            self.keep_as((Protocol::Simple, text), settings, planned, optimized);
        }
    }

    /// Keeps `optimized` under `key` and `settings`, if `planned` (the same plan before the
    /// optimizer) can give no other answer on a later run and the text is not longer than
    /// [`LONGEST`].
    pub(crate) fn keep_as(
        &self,
        key: Key,
        settings: &ConfigOptions,
        planned: &LogicalPlan,
        optimized: &LogicalPlan,
    ) {
        if key.1.len() > LONGEST || !enabled(settings) || !reusable(planned) {
            return;
        }
        let mut inner = self.lock();
        if inner.entries.len() >= CAPACITY && !inner.entries.contains_key(&key) {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(t, _)| t.clone());
            if let Some(oldest) = oldest {
                inner.entries.remove(&oldest);
            }
        }
        inner.clock += 1;
        let entry = Entry {
            plan: optimized.clone(),
            planned: planned.clone(),
            settings: settings.clone(),
            physical: None,
            used: inner.clock,
        };
        inner.entries.insert(key, entry);
    }

    /// Drops every kept plan (`DISCARD PLANS`, `DISCARD ALL`).
    pub(crate) fn clear(&self) {
        self.lock().entries.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether `text` holds one statement at most: it has no `;` but a trailing one. (A `;`
/// inside a literal or a comment makes it look like more, and its plan is then not kept.)
pub(crate) fn one_statement(text: &str) -> bool {
    !text.trim_end().trim_end_matches(';').contains(';')
}

/// Whether the session reuses plans (`armorlake.reuse_plans`).
fn enabled(settings: &ConfigOptions) -> bool {
    settings
        .extensions
        .get::<ArmorlakeOptions>()
        .is_none_or(|o| o.reuse_plans)
}

/// Whether every setting planning may read is the same in `a` and `b`: DataFusion's own,
/// field by field, and each extension's (armorlake's, the PostgreSQL session's) by its
/// entries. (A DataFusion upgrade that adds a namespace adds it here.)
fn same_settings(a: &ConfigOptions, b: &ConfigOptions) -> bool {
    a.catalog == b.catalog
        && a.execution == b.execution
        && a.optimizer == b.optimizer
        && a.sql_parser == b.sql_parser
        && a.explain == b.explain
        && a.format == b.format
        && a.spark == b.spark
        && extension_settings(a) == extension_settings(b)
}

/// The settings of `options`' extensions, by key.
fn extension_settings(options: &ConfigOptions) -> Vec<(String, Option<String>)> {
    options
        .extensions
        .iter()
        .flat_map(|(_, extension)| extension.entries())
        .map(|entry| (entry.key, entry.value))
        .collect()
}

/// Whether `plan` (as planned, before the optimizer) reads only event tables, and would be
/// optimized the same way on any later run under the same settings.
fn reusable(plan: &LogicalPlan) -> bool {
    let mut scans = 0;
    let mut reusable = true;
    let walked = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            match source_as_provider(&scan.source) {
                Ok(provider) if provider.is::<ClusterTable>() => scans += 1,
                _ => reusable = false,
            }
        }
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                reusable &= match e {
                    Expr::ScalarFunction(f) => {
                        f.func.signature().volatility == Volatility::Immutable
                    }
                    Expr::ScalarVariable(..) | Expr::Placeholder(_) => false,
                    _ => true,
                };
                Ok(go_on_while(reusable))
            })
        })?;
        Ok(go_on_while(reusable))
    });
    walked.is_ok() && reusable && scans > 0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use armorlake_meta::{ClusterSecurity, MemoryMeta};
    use datafusion::prelude::SessionContext;
    use datafusion::sql::parser::Statement as DfStatement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;
    use crate::{Liveness, QueryEngine, WorkerChannels};

    /// A session over an empty cluster: the event tables, the PostgreSQL catalog, the
    /// system schema.
    fn session() -> SessionContext {
        let meta = Arc::new(MemoryMeta::new());
        let channels = WorkerChannels::new(ClusterSecurity::none());
        let engine = QueryEngine::new(meta, Liveness::new(), None, channels).unwrap();
        engine.connection_context().unwrap()
    }

    /// `sql` (its first statement) parsed, planned and optimized in `ctx`, and offered to
    /// `plans` as its text's.
    async fn plan(ctx: &SessionContext, plans: &Plans, sql: &str) -> LogicalPlan {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        let state = ctx.state();
        let planned = state
            .statement_to_plan(DfStatement::Statement(Box::new(statement)))
            .await
            .unwrap();
        let optimized = state.optimize(&planned).unwrap();
        plans.planning(one_statement(sql).then_some(sql));
        plans.keep(state.config().options(), &planned, &optimized);
        optimized
    }

    fn set(ctx: &SessionContext, key: &str, value: &str) {
        let state = ctx.state_ref();
        let mut state = state.write();
        state.config_mut().options_mut().set(key, value).unwrap();
    }

    #[tokio::test]
    async fn only_plans_over_event_tables_with_immutable_functions_are_kept() {
        let ctx = session();
        for (sql, kept) in [
            ("SELECT count(*) FROM logs WHERE namespace_name = 'x'", true),
            (
                "SELECT a.pod_name FROM alerts a JOIN logs l USING (container_id)",
                true,
            ),
            ("SELECT upper(pod_name) FROM logs LIMIT 3", true),
            ("SELECT now(), pod_name FROM logs", false),
            (
                "SELECT count(*) FROM logs WHERE \"timestamp\" > now() - INTERVAL '1 hour'",
                false,
            ),
            (
                "SELECT count(*) FROM logs WHERE pod_name IN \
                 (SELECT pod_name FROM alerts WHERE \"timestamp\" < now())",
                false,
            ),
            ("SELECT random() FROM logs", false),
            ("SELECT relname FROM pg_catalog.pg_class", false),
            ("SELECT count(*) FROM armorlake.nodes", false),
            ("SELECT count(*) FROM logs, armorlake.nodes", false),
            ("SELECT 1", false),
        ] {
            let plans = Plans::default();
            plan(&ctx, &plans, sql).await;
            let settings = ctx.state().config().options().clone();
            assert_eq!(
                plans.get(Protocol::Simple, sql, None, &settings).is_some(),
                kept,
                "{sql}"
            );
        }
    }

    #[tokio::test]
    async fn a_kept_plan_serves_its_statement_under_the_same_settings_only() {
        let ctx = session();
        let plans = Plans::default();
        let sql = "SELECT pod_name FROM logs WHERE \"timestamp\" = '2026-12-05 01:00:00'";
        let optimized = plan(&ctx, &plans, sql).await;
        let settings = || ctx.state().config().options().clone();
        let (kept, physical) = plans
            .get(Protocol::Simple, sql, None, &settings())
            .expect("kept");
        assert_eq!(kept, optimized);
        assert!(physical.is_none(), "no physical plan kept yet");
        assert!(
            plans
                .get(
                    Protocol::Simple,
                    "SELECT pod_name FROM logs",
                    None,
                    &settings()
                )
                .is_none()
        );

        // Only a text holding one statement is a key.
        let two = "SELECT pod_name FROM logs; SELECT pod_name FROM alerts";
        plan(&ctx, &plans, two).await;
        assert!(
            plans
                .get(Protocol::Simple, two, None, &settings())
                .is_none()
        );
        // And not a longer one than LONGEST.
        let long = format!("SELECT pod_name FROM logs -- {}", "x".repeat(LONGEST));
        plan(&ctx, &plans, &long).await;
        assert!(
            plans
                .get(Protocol::Simple, &long, None, &settings())
                .is_none()
        );

        // The literal's time zone is the session's: another zone, another plan.
        let before = settings();
        set(&ctx, "datafusion.execution.time_zone", "+02:00");
        assert!(
            plans
                .get(Protocol::Simple, sql, None, &settings())
                .is_none()
        );
        assert!(plans.get(Protocol::Simple, sql, None, &before).is_some());

        set(&ctx, "armorlake.reuse_plans", "off");
        assert!(
            plans
                .get(Protocol::Simple, sql, None, &settings())
                .is_none()
        );

        // A prepared statement of the same text has a plan of its own, which serves a
        // statement parsed into an equal plan only.
        let prepared = |planned| plans.get(Protocol::Extended, sql, Some(planned), &before);
        assert!(prepared(&optimized).is_none());
        let key = (Protocol::Extended, sql.to_string());
        plans.keep_as(key, &before, &optimized, &optimized);
        assert!(prepared(&optimized).is_some());
        let other = plan(&ctx, &Plans::default(), "SELECT host_name FROM logs").await;
        assert!(prepared(&other).is_none());
        // Parsed again, the statement's plan is equal: a client that parses it before every
        // execution (an unnamed statement) is served too.
        let again = plan(&session(), &Plans::default(), sql).await;
        assert!(prepared(&again).is_some());

        plans.clear();
        assert!(plans.get(Protocol::Simple, sql, None, &before).is_none());
        assert!(prepared(&optimized).is_none());
    }

    #[test]
    fn one_statement_is_told_by_semicolons() {
        assert!(one_statement("SELECT 1"));
        assert!(one_statement("SELECT 1;  \n"));
        assert!(!one_statement("SELECT 1; SELECT 2"));
        assert!(!one_statement("SELECT ';'"));
    }

    #[tokio::test]
    async fn the_plan_used_longest_ago_goes_first() {
        let ctx = session();
        let plans = Plans::default();
        let settings = ctx.state().config().options().clone();
        let texts: Vec<String> = (0..=CAPACITY)
            .map(|i| format!("SELECT pod_name FROM logs LIMIT {}", i + 1))
            .collect();
        for (i, sql) in texts.iter().enumerate() {
            if i == CAPACITY {
                // The first is used again, so the second is the oldest when one must go.
                assert!(
                    plans
                        .get(Protocol::Simple, &texts[0], None, &settings)
                        .is_some()
                );
            }
            plan(&ctx, &plans, sql).await;
        }
        let kept: Vec<bool> = texts
            .iter()
            .map(|sql| plans.get(Protocol::Simple, sql, None, &settings).is_some())
            .collect();
        assert!(kept[0]);
        assert!(!kept[1]);
        assert!(kept[2..].iter().all(|k| *k));
    }
}
