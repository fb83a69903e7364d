//! The query node: a DataFusion session whose tables span the cluster, served over the
//! PostgreSQL wire protocol.
//!
//! The planner owns the interface to the data: [`OperatorHandle`] is what a query node
//! needs of an operator (a plan fragment that scans its rows), [`OperatorResolver`] finds the
//! handle of a registered operator. Operator nodes implement them; the query node only
//! plans, merges and serves.

pub mod cluster;
mod functions;
pub mod pg;
pub mod system;

use std::sync::Arc;

use armorlake_common::{DATABASE, EVENT_SCHEMA, SYSTEM_SCHEMA, Table};
use armorlake_meta::MetaService;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::error::Result;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;

pub use cluster::{ClusterTable, OperatorHandle, OperatorResolver};

/// Errors configuring the query node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Options that cannot work, or are unsafe, together.
    #[error("{0}")]
    Config(String),
    /// A TLS certificate or key could not be loaded.
    #[error("TLS: {path}: {reason}")]
    Tls {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A query node's planning and execution state, shared by all its client sessions.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: Arc<SessionContext>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// A session over the cluster `meta` describes, reaching operators through `resolver`.
    pub fn new(meta: Arc<dyn MetaService>, resolver: Arc<dyn OperatorResolver>) -> Result<Self> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(DATABASE, EVENT_SCHEMA)
            .with_create_default_catalog_and_schema(true);
        let ctx = SessionContext::new_with_config(config);
        let catalog = ctx.catalog(DATABASE).ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("no default catalog".into())
        })?;

        let events = MemorySchemaProvider::new();
        for table in Table::ALL {
            let provider = ClusterTable::new(table, meta.clone(), resolver.clone());
            events.register_table(table.name().to_string(), Arc::new(provider))?;
        }
        catalog.register_schema(EVENT_SCHEMA, Arc::new(events))?;
        catalog.register_schema(SYSTEM_SCHEMA, Arc::new(system::schema(meta)))?;

        setup_pg_catalog(&ctx, DATABASE, EmptyContextProvider).map_err(|e| *e)?;
        functions::register(&ctx);
        Ok(QueryEngine { ctx: Arc::new(ctx) })
    }

    /// The DataFusion session every client shares.
    pub fn context(&self) -> &Arc<SessionContext> {
        &self.ctx
    }
}
