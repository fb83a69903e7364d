//! Runs each statement of a session under its `statement_timeout` and cancel requests, and
//! gives errors their SQLSTATE and position, around datafusion-postgres' session service.
//!
//! DataFusion results are streams: `do_query` returns before any row is computed, so the
//! timeout and the cancel token are checked again while the rows stream to the client.
//!
//! Every poll of a statement's futures and row stream enters the query runtime
//! ([`crate::runtime`]), so whatever DataFusion spawns lands there.

use std::fmt::Debug;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::pgwire::api::portal::PortalExecutionState;
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{
    DescribePortalResponse, FieldInfo, Response, SendableRowStream,
};
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::store::{Entry, PortalStore};
use datafusion_postgres::pgwire::api::{ClientInfo, ClientPortalStore, Type};
use datafusion_postgres::pgwire::error::ErrorInfo;
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::data::DataRow;
use datafusion_postgres::pgwire::messages::response::{NoticeResponse, TransactionStatus};
use datafusion_postgres::pgwire::types::format::FormatOptions;
use datafusion_postgres::{DfSessionService, Parser};
use futures::{Sink, SinkExt, Stream};
use tokio::runtime::Handle;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::cancel::Registration;
use super::error;
use super::output;
use super::plans::{self, Plans, Protocol};
use super::rows::api_error;
use crate::QueryEngine;
use crate::metrics::{Observed, Outcome, QueryTimer, new_query_id};
use crate::runtime::InRuntime;
use tracing::Instrument;

/// The client metadata key datafusion-postgres' `SET statement_timeout` writes (and `SHOW
/// statement_timeout` reads): milliseconds, absent when there is no timeout.
pub(crate) const STATEMENT_TIMEOUT_MS: &str = "statement_timeout_ms";

/// Reads startup options a session honours: `statement_timeout`, given directly as a
/// startup parameter or in `options` (`-c statement_timeout=100ms`, as PGOPTIONS sends it).
pub(crate) fn apply_startup_options<C: ClientInfo>(client: &mut C) -> PgWireResult<()> {
    let mut settings: Vec<(String, String)> = Vec::new();
    if let Some(options) = client.metadata().get("options") {
        settings.extend(parse_options(options));
    }
    if let Some(v) = client.metadata().get("statement_timeout") {
        settings.push(("statement_timeout".into(), v.clone()));
    }
    for (name, value) in settings {
        if name == "statement_timeout" {
            let ms =
                parse_duration_ms(&value).ok_or_else(|| error::invalid_parameter(&name, &value))?;
            let metadata = client.metadata_mut();
            if ms == 0 {
                metadata.remove(STATEMENT_TIMEOUT_MS);
            } else {
                metadata.insert(STATEMENT_TIMEOUT_MS.into(), ms.to_string());
            }
        }
    }
    Ok(())
}

/// `-c name=value` and `--name=value` pairs of a startup `options` string (a backslash
/// escapes the next character, as in PostgreSQL).
pub(crate) fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut pairs = Vec::new();
    let mut iter = words.into_iter();
    while let Some(w) = iter.next() {
        let setting = if w == "-c" {
            iter.next()
        } else if let Some(rest) = w.strip_prefix("-c") {
            Some(rest.to_string())
        } else {
            w.strip_prefix("--").map(str::to_string)
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            pairs.push((name.replace('-', "_").to_lowercase(), value.to_string()));
        }
    }
    pairs
}

/// A PostgreSQL time setting in milliseconds: a number with an optional unit (`us`, `ms`,
/// `s`, `min`, `h`, `d`; none means milliseconds).
pub(crate) fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim().trim_matches('\'');
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = (number * factor).round();
    (ms.is_finite() && ms >= 0.0 && ms < u64::MAX as f64).then_some(ms as u64)
}

/// What stops the statement that starts now: the session's cancel token and deadline.
struct Limits {
    token: CancellationToken,
    deadline: Option<Instant>,
    runtime: Handle,
}

impl Limits {
    fn start<C: ClientInfo>(client: &C, runtime: &Handle) -> Self {
        let token = client
            .session_extensions()
            .get::<Registration>()
            .map(|r| r.canceller.start_statement())
            .unwrap_or_default();
        let deadline = client
            .metadata()
            .get(STATEMENT_TIMEOUT_MS)
            .and_then(|ms| ms.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(|ms| Instant::now() + std::time::Duration::from_millis(ms));
        Limits {
            token,
            deadline,
            runtime: runtime.clone(),
        }
    }

    /// Runs `work` until it finishes, the statement is cancelled or its time is up.
    async fn run<T>(&self, work: impl Future<Output = PgWireResult<T>>) -> PgWireResult<T> {
        let deadline = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let work = InRuntime {
            runtime: self.runtime.clone(),
            work: Box::pin(work),
        };
        tokio::select! {
            biased;
            _ = self.token.cancelled() => Err(error::canceled_by_user()),
            _ = deadline => Err(error::statement_timeout()),
            result = work => result,
        }
    }

    /// The response, with its rows (if any) checked against the same limits.
    fn guard(&self, response: Response) -> Response {
        match response {
            Response::Query(mut query) => {
                let rows =
                    std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
                query.data_rows = Box::pin(Guarded {
                    rows,
                    timestamps: output::timestamp_columns(&query.row_schema),
                    token: self.token.clone(),
                    cancelled: Box::pin(self.token.clone().cancelled_owned()),
                    deadline: self.deadline,
                    sleep: self.deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
                    runtime: self.runtime.clone(),
                    done: false,
                });
                Response::Query(query)
            }
            other => other,
        }
    }
}

/// Rows that stop with 57014 when the statement is cancelled or times out, with their
/// timestamps printed as PostgreSQL prints them.
struct Guarded {
    rows: SendableRowStream,
    /// The columns holding timestamps in text (see [`output::fix_row`]).
    timestamps: Vec<usize>,
    token: CancellationToken,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    deadline: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    runtime: Handle,
    done: bool,
}

impl Guarded {
    fn stop(&mut self, error: PgWireError) -> Poll<Option<PgWireResult<DataRow>>> {
        self.done = true;
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for Guarded {
    type Item = PgWireResult<DataRow>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        // Cheap checks on every row, so a fast stream cannot outrun a cancel.
        if this.token.is_cancelled() {
            return this.stop(error::canceled_by_user());
        }
        if this.deadline.is_some_and(|d| Instant::now() >= d) {
            return this.stop(error::statement_timeout());
        }
        let polled = {
            let _inside = this.runtime.enter();
            this.rows.as_mut().poll_next(cx)
        };
        match polled {
            Poll::Pending => {
                // Nothing ready: wake up on a cancel or at the deadline.
                if this.cancelled.as_mut().poll(cx).is_ready() {
                    return this.stop(error::canceled_by_user());
                }
                if let Some(sleep) = &mut this.sleep
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    return this.stop(error::statement_timeout());
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(row))) => {
                Poll::Ready(Some(Ok(output::fix_row(row, &this.timestamps))))
            }
            ready => ready,
        }
    }
}

/// Sends what the statement wanted its user to know (see [`crate::notices`]).
async fn send_notices<C>(client: &mut C, notices: Vec<String>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for message in notices {
        let info = ErrorInfo::new("NOTICE".to_string(), "01000".to_string(), message);
        client
            .send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                info,
            )))
            .await?;
    }
    Ok(())
}

/// Splits a simple query into the statements the session service runs, as it does (one
/// for the process: building one tokenizes its whole table of statement rewrites).
static SPLITTER: LazyLock<PostgresCompatibilityParser> =
    LazyLock::new(PostgresCompatibilityParser::new);

/// One connection's datafusion-postgres session service, with statement limits and
/// armorlake's errors.
pub(crate) struct Session {
    inner: Arc<DfSessionService>,
    parser: Arc<Positioned>,
    runtime: Handle,
    alerts: Arc<crate::alerting::Alerts>,
    /// The connection's own DataFusion session (its settings).
    ctx: Arc<SessionContext>,
    /// Whether the startup parameters are in `ctx` yet.
    started: AtomicBool,
    /// The plans of the queries it ran (see `plans.rs`).
    plans: Arc<Plans>,
}

impl Session {
    /// Runs one connection's statements, planned in `ctx` (its own session), with their
    /// work on `engine`'s runtime; alerting statements go to `alerts`.
    pub(crate) fn new(
        engine: QueryEngine,
        ctx: Arc<SessionContext>,
        alerts: Arc<crate::alerting::Alerts>,
    ) -> Self {
        let plans = Arc::new(Plans::default());
        let inner = Arc::new(super::session_service(ctx.clone(), plans.clone()));
        let runtime = engine.runtime();
        let parser = Arc::new(Positioned(inner.query_parser()));
        Session {
            inner,
            parser,
            runtime,
            alerts,
            ctx,
            started: AtomicBool::new(false),
            plans,
        }
    }

    /// Takes the settings the client gave at startup, before its first statement.
    fn start<C: ClientInfo>(&self, client: &C) {
        if !self.started.swap(true, Ordering::Relaxed) {
            super::settings::from_startup(&self.ctx, client);
        }
    }

    /// Runs `query` (one text of the simple protocol): from the plan the connection kept
    /// for it if there is one, else through datafusion-postgres, whose [`TextRows`] hook
    /// offers the plan it makes to be kept.
    ///
    /// [`TextRows`]: super::rows::TextRows
    async fn simple<C>(
        &self,
        service: &DfSessionService,
        client: &mut C,
        query: &str,
    ) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let one = plans::one_statement(query);
        // A failed transaction refuses queries (datafusion-postgres' transaction hook).
        if one && client.transaction_status() != TransactionStatus::Error {
            let kept = {
                let state = self.ctx.state_ref();
                let settings = state.read();
                let options = settings.config().options();
                self.plans.get(Protocol::Simple, query, None, options)
            };
            if let Some((plan, physical)) = kept {
                // The statement's own state: its start time, the settings just compared.
                let state = self.ctx.state();
                let physical = self
                    .plans
                    .physical(Protocol::Simple, query, &plan, physical, &state)
                    .await
                    .map_err(api_error)?;
                let options = FormatOptions::from_client_metadata(client.metadata());
                let text = Format::UnifiedText;
                return Ok(vec![super::rows::respond_with(
                    &plan, physical, &state, &text, options,
                )?]);
            }
        }
        self.plans.planning(one.then_some(query));
        let responses = SimpleQueryHandler::do_query(service, client, query).await;
        self.plans.planning(None);
        responses
    }

    /// Runs `portal` (a bound statement of the extended protocol). A query without
    /// parameters runs from the plan its Parse made, optimized once (datafusion-postgres
    /// would optimize it twice: itself, then again inside `DataFrame::execute_stream`), and
    /// is kept with its physical plan as the simple protocol's queries are, so that
    /// executing the statement again plans nothing. Anything else goes to
    /// datafusion-postgres.
    async fn extended<C>(
        &self,
        service: &DfSessionService,
        client: &mut C,
        portal: &Portal<<Self as ExtendedQueryHandler>::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = <Self as ExtendedQueryHandler>::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Refused statements never became portals (`readonly.rs` refuses them on Parse); a
        // failed transaction refuses queries (datafusion-postgres' transaction hook).
        if let (text, Some((Statement::Query(_), planned))) = &portal.statement.statement
            && portal.parameter_len() == 0
            && planned.get_parameter_types().is_ok_and(|p| p.is_empty())
            && client.transaction_status() != TransactionStatus::Error
        {
            let state = self.ctx.state();
            let settings = state.config().options();
            let kept = self
                .plans
                .get(Protocol::Extended, text, Some(planned), settings);
            let (plan, physical) = match kept {
                Some(kept) => kept,
                None => {
                    let optimized = state.optimize(planned).map_err(api_error)?;
                    let key = (Protocol::Extended, text.clone());
                    self.plans.keep_as(key, settings, planned, &optimized);
                    (optimized, None)
                }
            };
            let physical = self
                .plans
                .physical(Protocol::Extended, text, &plan, physical, &state)
                .await
                .map_err(api_error)?;
            let options = FormatOptions::from_client_metadata(client.metadata());
            let format = &portal.result_column_format;
            return super::rows::respond_with(&plan, physical, &state, format, options);
        }
        ExtendedQueryHandler::do_query(service, client, portal, max_rows).await
    }

    /// Starts the statement `query_id`: the connection's session tags what it plans with
    /// the id. Statements run in the connection's own session, one at a time, so SET,
    /// RESET and DISCARD change it for the statements that follow.
    fn begin(&self, query_id: &str) -> &DfSessionService {
        QueryEngine::tag(&self.ctx, query_id);
        &self.inner
    }
}

/// How a failed PostgreSQL statement counts in the metrics.
fn outcome(e: &PgWireError) -> Outcome {
    match e {
        PgWireError::UserError(info) if info.code == "57014" => Outcome::Cancelled,
        _ => Outcome::Error,
    }
}

/// Hands `timer` to the last response with rows, which ends it after its last row; without
/// one the statement is over now.
fn observe(mut responses: Vec<Response>, mut timer: QueryTimer) -> Vec<Response> {
    match responses
        .iter_mut()
        .rev()
        .find(|r| matches!(r, Response::Query(_)))
    {
        Some(Response::Query(query)) => {
            let rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
            query.data_rows = Box::pin(Observed::new(rows, timer, outcome));
        }
        _ => timer.finish(Outcome::Ok),
    }
    responses
}

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Alerting statements (CREATE/DROP ALERT RULE, LISTEN, UNLISTEN) come first: they
        // are not SQL DataFusion knows, and not writes to refuse (see `alerts.rs`).
        if let Some(answer) = super::alerts::answer(&self.alerts, client, query).await {
            return answer;
        }
        let query_id = new_query_id();
        let span = tracing::info_span!("query", query_id = %query_id, protocol = "pg");
        let mut timer = QueryTimer::start("pg", &query_id);
        tracing::debug!(query_id = %query_id, sql = query, "query received");
        self.start(client);
        // COPY … TO STDOUT runs its query here, and writes the rows as COPY data at the end.
        let copy = match super::copy::CopyTo::parse(query) {
            Some(Ok(copy)) => Some(copy),
            Some(Err(e)) => {
                timer.finish(Outcome::Error);
                return Err(e);
            }
            None => None,
        };
        let query = copy.as_ref().map_or(query, |c| c.query.as_str());
        let query = &*armorlake_rewrite::rewrite(query);
        let limits = Limits::start(client, &self.runtime);
        let service = self.begin(&query_id);
        let (responses, notices) = crate::notices::collect(
            limits
                .run(self.simple(service, client, query))
                .instrument(span),
        )
        .await;
        let responses = match responses {
            Ok(r) => r,
            Err(e) => {
                let e = error::for_query(e, query);
                timer.finish(outcome(&e));
                return Err(e);
            }
        };
        send_notices(client, notices).await?;
        // One response per statement: name their columns as PostgreSQL would. Names that
        // are plain lower-case identifiers are a column's or an alias's in both.
        let renaming = responses.iter().any(|r| match r {
            Response::Query(q) => !output::plainly_named(&q.row_schema),
            _ => false,
        });
        let statements = match renaming {
            true => SPLITTER.parse(query).unwrap_or_default(),
            false => Vec::new(),
        };
        let aligned = statements.len() == responses.len();
        let responses = responses
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let r = match (r, statements.get(i).filter(|_| aligned)) {
                    (Response::Query(mut q), Some(statement)) => {
                        q.row_schema = output::renamed(statement, &q.row_schema);
                        Response::Query(q)
                    }
                    (r, _) => r,
                };
                limits.guard(r)
            })
            .collect();
        let responses = observe(responses, timer);
        Ok(match copy {
            Some(copy) => responses
                .into_iter()
                .map(|r| copy.clone().respond(r))
                .collect(),
            None => responses,
        })
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = Positioned;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    /// A cursor's columns: datafusion-postgres plans FETCH (and knows DECLAREd cursors)
    /// without a schema, so Describe would announce no columns and then send rows, which
    /// drivers cannot read (psycopg's server-side cursors crash on it).
    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        target: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let cursor = match &target.statement.statement.1 {
            // A DECLAREd cursor, described by its own name.
            None => cursor_fields(target).await,
            Some((Statement::Fetch { name, .. }, _)) => {
                match client.portal_store().get_portal(&name.value) {
                    Some(Entry::Value(portal)) => cursor_fields(&portal).await,
                    _ => None,
                }
            }
            Some(_) => None,
        };
        match cursor {
            Some(fields) => Ok(DescribePortalResponse::new(fields)),
            None => Ok(DescribePortalResponse::new(self.parser.get_result_schema(
                &target.statement.statement,
                Some(&target.result_column_format),
            )?)),
        }
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.start(client);
        let sql = &portal.statement.statement.0;
        let query_id = new_query_id();
        let span = tracing::info_span!("query", query_id = %query_id, protocol = "pg");
        let mut timer = QueryTimer::start("pg", &query_id);
        tracing::debug!(query_id = %query_id, sql = %sql, "query received");
        let limits = Limits::start(client, &self.runtime);
        let service = self.begin(&query_id);
        let (response, notices) = crate::notices::collect(
            limits
                .run(self.extended(service, client, portal, max_rows))
                .instrument(span),
        )
        .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                let e = error::for_query(e, sql);
                timer.finish(outcome(&e));
                return Err(e);
            }
        };
        send_notices(client, notices).await?;
        let response = match (response, &portal.statement.statement.1) {
            (Response::Query(mut q), Some((statement, _))) => {
                q.row_schema = output::renamed(statement, &q.row_schema);
                Response::Query(q)
            }
            (r, _) => r,
        };
        let mut responses = observe(vec![limits.guard(response)], timer);
        responses
            .pop()
            .ok_or_else(|| PgWireError::ApiError("no response".into()))
    }
}

/// The columns of an open cursor's rows.
async fn cursor_fields<S>(portal: &Portal<S>) -> Option<Vec<FieldInfo>> {
    match &*portal.state.lock().await {
        PortalExecutionState::Suspended(response) => Some(response.row_schema.to_vec()),
        _ => None,
    }
}

/// datafusion-postgres' parser, with armorlake's errors (and their positions) on Parse.
pub(crate) struct Positioned(Arc<Parser>);

#[async_trait]
impl QueryParser for Positioned {
    type Statement = <Parser as QueryParser>::Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let sql = &*armorlake_rewrite::rewrite(sql);
        self.0
            .parse_sql(client, sql, types)
            .await
            .map_err(|e| error::for_query(e, sql))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.0.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let fields = self.0.get_result_schema(stmt, column_format)?;
        Ok(match &stmt.1 {
            Some((statement, _)) => output::column_names(statement)
                .and_then(|names| output::rename(&fields, &names))
                .unwrap_or(fields),
            None => fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_postgres_units() {
        assert_eq!(parse_duration_ms("100"), Some(100));
        assert_eq!(parse_duration_ms("100ms"), Some(100));
        assert_eq!(parse_duration_ms("'2s'"), Some(2000));
        assert_eq!(parse_duration_ms("1.5 min"), Some(90_000));
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("soon"), None);
        assert_eq!(parse_duration_ms("5 fortnights"), None);
    }

    #[test]
    fn startup_options_as_pgoptions_sends_them() {
        assert_eq!(
            parse_options("-c statement_timeout=100ms --search-path=a\\ b -cwork_mem=4MB"),
            vec![
                ("statement_timeout".into(), "100ms".into()),
                ("search_path".into(), "a b".into()),
                ("work_mem".into(), "4MB".into()),
            ]
        );
        assert!(parse_options("").is_empty());
    }
}
