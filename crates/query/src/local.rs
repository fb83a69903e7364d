//! Rewrites made where a scan runs: on an operator, of the fragments it decodes, and in
//! `up` ([`WhereScansRun`]). They use what only the operator's storage can do (text read as
//! dictionaries, its Parquet dictionary pages), so nothing they make crosses the network, and
//! a query node's EXPLAIN shows the plan as it sent it.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;

use crate::scan::OperatorScanExec;

/// `plan` rewritten for the scans `applies` to: filters deciding their conditions on text
/// per dictionary value ([`crate::dictionary_filter`]), distinct values read from the
/// dictionary pages ([`crate::count_by_text::distinct_from_dictionaries`]).
pub(crate) fn rewrite(
    plan: Arc<dyn ExecutionPlan>,
    applies: impl Fn(&OperatorScanExec) -> bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    let plan = crate::dictionary_filter::over_dictionaries(plan, &applies)?;
    crate::count_by_text::distinct_from_dictionaries(plan, &applies)
}

/// [`rewrite`] for the scans that read this process's own operator (`up`); on a query node
/// the scans read other processes, which rewrite the fragments they receive.
#[derive(Debug, Default)]
pub struct WhereScansRun;

impl PhysicalOptimizerRule for WhereScansRun {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        rewrite(plan, |scan| {
            scan.tasks()
                .iter()
                .flatten()
                .all(|target| target.url.is_empty())
        })
    }

    fn name(&self) -> &str {
        "armorlake_where_scans_run"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The scan `input` is, or wraps in the `CooperativeExec` DataFusion puts above leaves.
pub(crate) fn scan_in(input: &Arc<dyn ExecutionPlan>) -> Option<&OperatorScanExec> {
    match input.downcast_ref::<CooperativeExec>() {
        Some(cooperative) => cooperative.input().downcast_ref::<OperatorScanExec>(),
        None => input.downcast_ref::<OperatorScanExec>(),
    }
}

/// `input`, the scan [`scan_in`] found in it replaced by `scan`.
pub(crate) fn with_scan(
    input: &Arc<dyn ExecutionPlan>,
    scan: OperatorScanExec,
) -> Arc<dyn ExecutionPlan> {
    let scan = Arc::new(scan) as Arc<dyn ExecutionPlan>;
    match input.downcast_ref::<CooperativeExec>() {
        Some(_) => Arc::new(CooperativeExec::new(scan)),
        None => scan,
    }
}
