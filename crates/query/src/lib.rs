//! The query node: a DataFusion session whose tables span the cluster, served over the
//! PostgreSQL wire protocol ([`pg`]) and Arrow Flight SQL ([`flight`]).
//!
//! The planner owns the interface to the data: [`OperatorHandle`] is what an operator gives
//! (a plan reading its own rows). Plans are distributed with datafusion-distributed: every
//! table scan becomes an [`OperatorScanExec`] whose tasks run on the operators' workers
//! ([`distribute::worker`]), each reading its own rows; the query node plans, merges and
//! serves.

pub mod auth;
pub mod cluster;
pub mod codec;
pub mod distribute;
pub mod flight;
pub mod functions;
pub mod notices;
pub mod pg;
mod pg_functions;
pub mod scan;
pub mod system;

use std::sync::Arc;

use armorlake_common::{DATABASE, EVENT_SCHEMA, SYSTEM_SCHEMA, Table};
use armorlake_meta::MetaService;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::error::Result;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;

pub use cluster::{ArmorlakeOptions, ClusterTable};
pub use distribute::{Liveness, worker};
pub use scan::{LocalOperator, OperatorHandle, OperatorScanExec};

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
    /// A session over the cluster `meta` describes, reaching the operators that `liveness`
    /// finds alive. `local` is the operator of this process, if any (`up`): its scans run
    /// here, without a network hop.
    pub fn new(
        meta: Arc<dyn MetaService>,
        liveness: Arc<Liveness>,
        local: Option<LocalOperator>,
    ) -> Result<Self> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(DATABASE, EVENT_SCHEMA)
            .with_create_default_catalog_and_schema(true)
            .with_option_extension(ArmorlakeOptions::default());
        let state = distribute::coordinator_state(config, liveness.clone(), local.clone())?;
        let ctx = SessionContext::new_with_state(state);
        let catalog = ctx.catalog(DATABASE).ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("no default catalog".into())
        })?;

        let events = MemorySchemaProvider::new();
        for table in Table::ALL {
            let provider = ClusterTable::new(table, meta.clone(), liveness.clone(), local.as_ref());
            events.register_table(table.name().to_string(), Arc::new(provider))?;
        }
        catalog.register_schema(EVENT_SCHEMA, Arc::new(events))?;
        catalog.register_schema(SYSTEM_SCHEMA, Arc::new(system::schema(meta)))?;

        setup_pg_catalog(&ctx, DATABASE, EmptyContextProvider).map_err(|e| *e)?;
        pg_functions::register(&ctx);
        pg::register_functions(&ctx);
        Ok(QueryEngine { ctx: Arc::new(ctx) })
    }

    /// The DataFusion session every client shares.
    pub fn context(&self) -> &Arc<SessionContext> {
        &self.ctx
    }
}
