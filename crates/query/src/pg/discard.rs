//! `DISCARD ALL` (and `DISCARD PLANS/SEQUENCES/TEMP`): Npgsql sends it whenever a pooled
//! connection is returned (PowerBI fails without it); DataFusion does not know it.
//!
//! It closes the session's cursors and resets its settings (`statement_timeout`), as far as
//! armorlake has session state to reset.

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

use super::session::STATEMENT_TIMEOUT_MS;

/// Answers `DISCARD …` in both protocols.
#[derive(Debug)]
pub(crate) struct Discard;

fn discard(object: &DiscardObject, client: &mut dyn HookClient) -> Response {
    let tag = match object {
        DiscardObject::ALL => {
            client.portal_store().clear_portals();
            client.metadata_mut().remove(STATEMENT_TIMEOUT_MS);
            "DISCARD ALL"
        }
        DiscardObject::PLANS => "DISCARD PLANS",
        DiscardObject::SEQUENCES => "DISCARD SEQUENCES",
        DiscardObject::TEMP => "DISCARD TEMP",
    };
    Response::Execution(Tag::new(tag))
}

#[async_trait]
impl QueryHook for Discard {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match statement {
            Statement::Discard { object_type } => Some(Ok(discard(object_type, client))),
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
        _ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match statement {
            Statement::Discard { object_type } => Some(Ok(discard(object_type, client))),
            _ => None,
        }
    }
}
