//! `ClusterTable`: an event table whose rows live on the operators.

use std::fmt;
use std::sync::Arc;

use armorlake_common::Table;
use armorlake_meta::{MetaService, NodeInfo, Role};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;

/// What a query node needs of an operator: a plan fragment scanning its rows of a table.
#[async_trait]
pub trait OperatorHandle: Send + Sync + fmt::Debug {
    /// The operator's node id.
    fn id(&self) -> &str;

    /// A plan reading the operator's rows of `table`, with the projection and filters
    /// applied as far as the operator can (filters are re-checked above it).
    async fn scan(
        &self,
        state: &dyn Session,
        table: Table,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>>;
}

/// Finds the handle of a registered operator.
pub trait OperatorResolver: Send + Sync + fmt::Debug {
    /// The handle for `node`, or `None` when it cannot be reached.
    fn resolve(&self, node: &NodeInfo) -> Option<Arc<dyn OperatorHandle>>;
}

/// An event table spanning every operator of the cluster.
#[derive(Debug)]
pub struct ClusterTable {
    table: Table,
    meta: Arc<dyn MetaService>,
    resolver: Arc<dyn OperatorResolver>,
}

impl ClusterTable {
    /// The cluster-wide table `table`.
    pub fn new(
        table: Table,
        meta: Arc<dyn MetaService>,
        resolver: Arc<dyn OperatorResolver>,
    ) -> ClusterTable {
        ClusterTable {
            table,
            meta,
            resolver,
        }
    }
}

#[async_trait]
impl TableProvider for ClusterTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
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
        let nodes = self
            .meta
            .nodes()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut fragments = Vec::new();
        for node in nodes.iter().filter(|n| n.role == Role::Operator) {
            let handle = self.resolver.resolve(node).ok_or_else(|| {
                DataFusionError::Execution(format!("operator {} is unreachable", node.id))
            })?;
            fragments.push(
                handle
                    .scan(state, self.table, projection, filters, limit)
                    .await?,
            );
        }
        if fragments.is_empty() {
            let schema = self.schema();
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(fragments)
    }
}
