//! The query node: a DataFusion session whose tables span the cluster, served over the
//! PostgreSQL wire protocol ([`pg`]) and Arrow Flight SQL ([`flight`]).
//!
//! The planner owns the interface to the data: [`OperatorHandle`] is what an operator gives
//! (a plan reading its own rows). Plans are distributed with datafusion-distributed: every
//! table scan becomes an [`OperatorScanExec`] whose tasks run on the operators' workers
//! ([`distribute::worker`]), each reading its own rows; the query node plans, merges and
//! serves.

pub mod alerting;
pub mod auth;
pub mod channels;
pub mod cluster;
pub mod codec;
pub mod count_by_text;
pub mod dictionary_filter;
pub mod distribute;
pub mod eager_aggregate;
pub mod flight;
pub mod fragment;
pub mod functions;
pub mod info_schema;
pub mod local;
pub mod metrics;
pub mod notices;
pub mod pg;
mod pg_functions;
mod runtime;
pub mod scan;
pub mod system;

use std::sync::Arc;

use armorlake_common::{DATABASE, EVENT_SCHEMA, SYSTEM_SCHEMA, Table};
use armorlake_meta::MetaService;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::GreedyMemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use runtime::QueryRuntime;

pub use channels::WorkerChannels;
pub use cluster::{ArmorlakeOptions, ClusterTable};
pub use distribute::{Liveness, worker};
pub use scan::{LocalOperator, OperatorHandle, OperatorScanExec};

/// What a walk over a plan or an expression does next: go on while `go_on`, else stop.
pub(crate) fn go_on_while(go_on: bool) -> TreeNodeRecursion {
    match go_on {
        true => TreeNodeRecursion::Continue,
        false => TreeNodeRecursion::Stop,
    }
}

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
    runtime: Arc<QueryRuntime>,
    memory_limit: Option<usize>,
    alerts: Arc<alerting::Alerts>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// A session over the cluster `meta` describes, reaching the operators that `liveness`
    /// finds alive. `local` is the operator of this process, if any (`up`): its scans run
    /// here, without a network hop. `channels` reach the other operators' workers.
    pub fn new(
        meta: Arc<dyn MetaService>,
        liveness: Arc<Liveness>,
        local: Option<LocalOperator>,
        channels: WorkerChannels,
    ) -> Result<Self> {
        let config = SessionConfig::new()
            // armorlake's own, PostgreSQL-shaped information_schema (see `info_schema`).
            .with_information_schema(false)
            .with_default_catalog_and_schema(DATABASE, EVENT_SCHEMA)
            .with_create_default_catalog_and_schema(true)
            .with_option_extension(ArmorlakeOptions::default());
        let state =
            distribute::coordinator_state(config, liveness.clone(), local.clone(), channels)?;
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
        catalog.register_schema(SYSTEM_SCHEMA, Arc::new(system::schema(meta.clone())))?;
        catalog.register_schema(
            info_schema::INFORMATION_SCHEMA,
            Arc::new(info_schema::schema()),
        )?;

        setup_pg_catalog(&ctx, DATABASE, EmptyContextProvider).map_err(|e| *e)?;
        pg_functions::register(&ctx);
        pg::register_functions(&ctx);
        metrics::init();
        let runtime = QueryRuntime::new().map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(QueryEngine {
            ctx: Arc::new(ctx),
            runtime: Arc::new(runtime),
            memory_limit: None,
            alerts: alerting::Alerts::new(meta),
        })
    }

    /// Limits the memory each statement may hold on this node to `bytes` (its own
    /// DataFusion memory pool); a statement that needs more, and cannot spill, fails with
    /// SQLSTATE 53200. `None`: no limit.
    pub fn with_memory_limit(mut self, bytes: Option<usize>) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// The memory limit per statement, if any.
    pub fn memory_limit(&self) -> Option<usize> {
        self.memory_limit
    }

    /// Alert rules and LISTEN/NOTIFY delivery.
    pub fn alerts(&self) -> &Arc<alerting::Alerts> {
        &self.alerts
    }

    /// The session one statement runs in: `base` (the engine's session) as it is now,
    /// settings included, tagged with `query_id` (see [`QueryEngine::tag`]) and with a
    /// memory pool of its own when a limit is set.
    pub fn statement_context(
        &self,
        base: &SessionContext,
        query_id: &str,
    ) -> Result<Arc<SessionContext>> {
        let ctx = SessionContext::new_with_state(self.limited(base.state())?);
        Self::tag(&ctx, query_id);
        Ok(Arc::new(ctx))
    }

    /// A session of its own for one client connection: the engine's catalog, functions and
    /// options, and, when a limit is set, a memory pool of its own. The connection's
    /// statements run one at a time in it, so the limit holds per statement (a cursor left
    /// open keeps its share until it is closed).
    pub fn connection_context(&self) -> Result<SessionContext> {
        Ok(SessionContext::new_with_state(
            self.limited(self.ctx.state())?,
        ))
    }

    /// Tags the statements `ctx` plans from now on with `query_id`, which their scans carry
    /// to the operators.
    pub fn tag(ctx: &SessionContext, query_id: &str) {
        ctx.state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(metrics::QueryId(query_id.to_string())));
    }

    /// `state` with a memory pool of its own under the limit, if one is set.
    fn limited(&self, state: SessionState) -> Result<SessionState> {
        let Some(limit) = self.memory_limit else {
            return Ok(state);
        };
        let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(limit)))
            .build_arc()?;
        Ok(SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(runtime)
            .build())
    }

    /// The DataFusion session every client shares.
    pub fn context(&self) -> &Arc<SessionContext> {
        &self.ctx
    }

    /// The runtime both front ends run statements on ([`runtime`]).
    pub(crate) fn runtime(&self) -> tokio::runtime::Handle {
        self.runtime.handle()
    }
}
