//! `DISCARD ALL` (and `DISCARD PLANS/SEQUENCES/TEMP`): Npgsql sends it whenever a pooled
//! connection is returned (PowerBI fails without it); DataFusion does not know it.
//!
//! `ALL` closes the session's cursors and resets its settings (`RESET ALL`); `ALL` and
//! `PLANS` drop the plans the connection kept (`plans.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::{DFSchema, ParamValues};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{DiscardObject, Statement};
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::results::{Response, Tag};
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::error::PgWireResult;

use super::plans::Plans;
use super::settings;

/// Answers `DISCARD …` in both protocols, for a connection whose kept plans are `plans`.
#[derive(Debug)]
pub(crate) struct Discard {
    plans: Arc<Plans>,
}

impl Discard {
    /// For the connection whose kept plans are `plans`.
    pub(crate) fn new(plans: Arc<Plans>) -> Discard {
        Discard { plans }
    }

    async fn discard(
        &self,
        object: &DiscardObject,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        let tag = match object {
            DiscardObject::ALL => {
                client.portal_store().clear_portals();
                settings::reset_all(ctx, client).await?;
                self.plans.clear();
                "DISCARD ALL"
            }
            DiscardObject::PLANS => {
                self.plans.clear();
                "DISCARD PLANS"
            }
            DiscardObject::SEQUENCES => "DISCARD SEQUENCES",
            DiscardObject::TEMP => "DISCARD TEMP",
        };
        Ok(Response::Execution(Tag::new(tag)))
    }
}

#[async_trait]
impl QueryHook for Discard {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match statement {
            Statement::Discard { object_type } => {
                Some(self.discard(object_type, ctx, client).await)
            }
            _ => None,
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match statement {
            Statement::Discard { .. } => Some(Ok(LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(DFSchema::empty()),
            }))),
            _ => None,
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match statement {
            Statement::Discard { object_type } => {
                Some(self.discard(object_type, ctx, client).await)
            }
            _ => None,
        }
    }
}
