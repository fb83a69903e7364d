//! The Arrow Flight SQL front end: arrow-flight's [`FlightSqlService`] over the query
//! node's DataFusion session, so a Flight SQL client runs the same distributed queries as a
//! PostgreSQL one and gets the operators' Arrow batches as they come.
//!
//! Supported: statement queries, prepared statements with parameters, the metadata commands
//! (SQL info, catalogs, schemas, tables with their schemas, table types), and a basic-auth
//! handshake returning a bearer token. Read-only: DDL, DML and `SET` are refused.

mod auth;
mod counted;
mod error;
mod limits;
mod metadata;
mod prepared;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use armorlake_common::schema::without_views;
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::common::Column;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Expr, LogicalPlan, cast};
use datafusion::prelude::SessionContext;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::QueryEngine;
use crate::auth::Credentials;
use crate::metrics::{Observed, Outcome, QueryTimer, new_query_id};
use crate::runtime::InRuntime;
use auth::{Auth, Gate, User};
use limits::{Admission, Limits};
use prepared::Statements;
use tracing::Instrument;

/// How the Flight SQL front end is served.
#[derive(Debug, Clone)]
pub struct FlightOptions {
    /// Who may connect. With no users, every client is trusted (loopback listeners only:
    /// see [`crate::auth::check_listener`]).
    pub credentials: Arc<dyn Credentials>,
    /// TLS; `None` serves plain gRPC.
    pub tls: Option<ServerTlsConfig>,
    /// At most this many statements stream at once; more are refused with
    /// `RESOURCE_EXHAUSTED` (SQLSTATE 53300).
    pub max_queries: usize,
    /// Every statement stops after this long (`DEADLINE_EXCEEDED`, SQLSTATE 57014), or at
    /// the caller's own gRPC deadline if that comes first.
    pub statement_timeout: Option<Duration>,
}

impl Default for FlightOptions {
    /// Open (no users: loopback only), plain gRPC, PostgreSQL's default connection limit
    /// as the query limit, no timeout.
    fn default() -> Self {
        FlightOptions {
            credentials: crate::auth::PasswordUsers::default().into_credentials(),
            tls: None,
            max_queries: crate::pg::DEFAULT_MAX_CONNECTIONS,
            statement_timeout: None,
        }
    }
}

/// Serves Flight SQL on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    engine: &QueryEngine,
    options: FlightOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let auth = Arc::new(Auth::new(options.credentials));
    let service = FlightSql {
        engine: engine.clone(),
        auth: auth.clone(),
        statements: Statements::default(),
        limits: Limits::new(
            options.max_queries,
            options.statement_timeout,
            engine.runtime(),
        ),
    };
    let mut server = Server::builder();
    if let Some(tls) = options.tls {
        server = server.tls_config(tls)?;
    }
    server
        .add_service(FlightServiceServer::with_interceptor(service, Gate(auth)))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .map_ok(counted::Counted::new),
            shutdown,
        )
        .await
}

/// The Flight SQL service over a DataFusion session.
struct FlightSql {
    engine: QueryEngine,
    auth: Arc<Auth>,
    statements: Statements,
    limits: Limits,
}

type DoGetStream = <FlightSql as FlightService>::DoGetStream;

/// Flight SQL is read-only: queries, not DDL, DML or `SET` (which would change the session
/// every client shares).
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

fn user<T>(request: &Request<T>) -> &str {
    request
        .extensions()
        .get::<User>()
        .map_or("unknown", |u| u.0.as_str())
}

fn status(e: DataFusionError) -> Status {
    error::status(&e)
}

fn schema_bytes(schema: &Schema) -> Result<prost::bytes::Bytes, Status> {
    let options = arrow::ipc::writer::IpcWriteOptions::default();
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &options)
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

/// A `FlightInfo` whose one endpoint's ticket is `ticket`, to be fetched from this server.
fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// Streams a query's batches as DataFusion produces them, within `admission`'s limits;
/// `timer` ends with the stream.
async fn stream_frame(
    frame: DataFrame,
    mut timer: QueryTimer,
    admission: Admission,
) -> Result<Response<DoGetStream>, Status> {
    let execute = InRuntime {
        runtime: admission.runtime.clone(),
        work: Box::pin(frame.execute_stream()),
    };
    let batches = match execute.await {
        Ok(b) => b,
        Err(e) => {
            timer.finish(Outcome::Error);
            return Err(status(e));
        }
    };
    let schema = batches.schema();
    let batches = Observed::new(batches, timer, |_| Outcome::Error)
        .map_err(|e| FlightError::Tonic(Box::new(status(e))));
    let data = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from);
    Ok(Response::new(Box::pin(Limits::guard(admission, data))))
}

/// Streams one metadata batch.
fn stream_batch(batch: RecordBatch) -> Response<DoGetStream> {
    let data = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::once(async { Ok(batch) }))
        .map_err(Status::from);
    Response::new(Box::pin(data))
}

/// `frame` with its `Utf8View` columns cast to `Utf8`. Queries read text as views
/// (`Table::query_schema`); Flight SQL clients get the types the tables declare.
fn declared_types(frame: DataFrame) -> Result<DataFrame, Status> {
    let schema = frame.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| f.data_type() == &DataType::Utf8View)
    {
        return Ok(frame);
    }
    let columns = schema
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            match field.data_type() {
                DataType::Utf8View => {
                    cast(column, DataType::Utf8).alias_qualified(qualifier.cloned(), field.name())
                }
                _ => column,
            }
        })
        .collect::<Vec<_>>();
    frame.select(columns).map_err(status)
}

impl FlightSql {
    /// Plans `sql` as a statement query.
    async fn statement(&self, sql: &str) -> Result<DataFrame, Status> {
        let frame = self
            .engine
            .context()
            .sql_with_options(sql, read_only())
            .await
            .map_err(status)?;
        declared_types(frame)
    }

    /// The prepared statement `handle` with its bound parameters, ready to run in `ctx`.
    async fn prepared(&self, ctx: &SessionContext, handle: &[u8]) -> Result<DataFrame, Status> {
        let plan = self.statements.plan(handle).map_err(status)?;
        declared_types(ctx.execute_logical_plan(plan).await.map_err(status)?)
    }

    /// Runs one statement within `admission`'s limits: `plan` makes its DataFrame in a
    /// session of its own (tagged with a new query id, under the memory limit), whose rows
    /// are then streamed and timed.
    async fn run<'a, F, Fut>(
        &'a self,
        what: &str,
        admission: Admission,
        plan: F,
    ) -> Result<Response<DoGetStream>, Status>
    where
        F: FnOnce(Arc<SessionContext>) -> Fut,
        Fut: Future<Output = Result<DataFrame, Status>> + 'a,
    {
        let query_id = new_query_id();
        let span = tracing::info_span!("query", query_id = %query_id, protocol = "flight");
        let mut timer = QueryTimer::start("flight", &query_id);
        tracing::debug!(query_id = %query_id, sql = what, "query received");
        let planned = async {
            let ctx = self
                .engine
                .statement_context(self.engine.context(), &query_id)
                .map_err(status)?;
            plan(ctx).await
        }
        .instrument(span)
        .await;
        match planned {
            Ok(frame) => stream_frame(frame, timer, admission).await,
            Err(e) => {
                timer.finish(Outcome::Error);
                Err(e)
            }
        }
    }

    /// Plans `sql` without running anything, placeholders left in.
    async fn prepare(&self, sql: &str) -> Result<LogicalPlan, Status> {
        let sql = prepared::number_question_marks(sql);
        let plan = self
            .engine
            .context()
            .state()
            .create_logical_plan(&sql)
            .await
            .map_err(status)?;
        read_only().verify_plan(&plan).map_err(status)?;
        Ok(plan)
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// The interceptor has checked the credentials already; answer with a bearer token.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let user = user(&request).to_string();
        let token = self.auth.issue(&user);
        tracing::debug!(%user, "Flight SQL handshake");
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("token is not a valid header"))?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.into_bytes().into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        tracing::debug!(user = user(&request), sql = %query.query, "Flight SQL query");
        let frame = self.statement(&query.query).await?;
        let schema = frame.schema().as_arrow().clone();
        // The ticket carries the SQL: DoGet plans it again, so no state waits for it.
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        flight_info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let admission = self.limits.admit(request.metadata())?;
        let sql = std::str::from_utf8(&ticket.statement_handle)
            .map_err(|_| error::invalid("the statement ticket is not UTF-8 SQL"))?;
        self.run(sql, admission, |ctx| async move {
            declared_types(
                ctx.sql_with_options(sql, read_only())
                    .await
                    .map_err(status)?,
            )
        })
        .await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        tracing::debug!(user = user(&request), sql = %query.query, "Flight SQL prepare");
        let plan = self.prepare(&query.query).await?;
        let dataset_schema = schema_bytes(&without_views(plan.schema().as_arrow()))?;
        let parameters = prepared::parameter_schema(&plan).map_err(status)?;
        let parameter_schema = schema_bytes(&parameters)?;
        let handle = self.statements.insert(plan);
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let data = request.into_inner().map_err(FlightError::from);
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(data)
            .try_collect()
            .await
            .map_err(|e| error::invalid(format!("reading the parameters: {e}")))?;
        self.statements
            .bind(&query.prepared_statement_handle, &batches)
            .map_err(status)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let frame = self
            .prepared(self.engine.context(), &query.prepared_statement_handle)
            .await?;
        let schema = frame.schema().as_arrow().clone();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let admission = self.limits.admit(request.metadata())?;
        let handle = &query.prepared_statement_handle;
        self.run("(prepared statement)", admission, |ctx| async move {
            self.prepared(&ctx, handle).await
        })
        .await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        self.statements.close(&query.prepared_statement_handle);
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = sql_info()?;
        let schema = query.clone().into_builder(info).schema();
        let ticket = query.as_any().encode_to_vec();
        flight_info(&schema, ticket, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = query
            .into_builder(sql_info()?)
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(stream_batch(batch))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = metadata::catalogs(self.engine.context(), query)?;
        Ok(stream_batch(batch))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = metadata::schemas(self.engine.context(), query)?;
        Ok(stream_batch(batch))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = metadata::tables(self.engine.context(), query).await?;
        Ok(stream_batch(batch))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = metadata::table_types(query)?;
        Ok(stream_batch(batch))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

fn sql_info() -> Result<&'static arrow_flight::sql::metadata::SqlInfoData, Status> {
    metadata::SQL_INFO
        .as_ref()
        .ok_or_else(|| Status::internal("server information is unavailable"))
}
