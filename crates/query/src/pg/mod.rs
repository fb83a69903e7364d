//! The PostgreSQL wire protocol front end: armorlake's own accept loop around pgwire's
//! `process_socket`, with datafusion-postgres' session service and pg_catalog.
//!
//! - `startup.rs`: TLS requirement, connection limit, SCRAM-SHA-256 or loopback trust.
//! - `session.rs`: statement_timeout and cancel requests, errors with positions.
//! - `readonly.rs`: DDL and DML are refused (25006).
//! - `alerts.rs`: CREATE/DROP ALERT RULE, LISTEN/UNLISTEN; `connection.rs`: each
//!   connection's message loop, which also sends the notifications of its LISTENs.
//! - `copy.rs`: `COPY … TO STDOUT` (text and CSV). The rewrites of catalog queries clients
//!   send are in the `armorlake-rewrite` crate.
//! - `settings.rs`: per-session `SET`/`SHOW`/`RESET` and `current_setting()`.
//! - `rows.rs`: the simple protocol's result rows, written in text straight from Arrow.
//! - `output.rs`: column names and timestamp text as PostgreSQL gives them.
//! - `error.rs`: the single mapping of errors to SQLSTATEs.

mod alerts;
mod cancel;
mod connection;
mod copy;
mod discard;
mod error;
mod options;
mod output;
mod plans;
mod readonly;
mod rows;
mod scram;
mod session;
mod settings;
mod startup;

use std::future::Future;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::api::cancel::CancelHandler;
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::{
    ErrorHandler, PgWireServerHandlers, RandomPidSecretKeyGenerator,
};
use datafusion_postgres::pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use error::to_error_info;
pub use options::{DEFAULT_MAX_CONNECTIONS, PgOptions, Tls, Users};
pub use scram::ScramSecret;

use crate::QueryEngine;

/// Turns every error into a PostgreSQL error with the right SQLSTATE before it is sent.
#[derive(Debug)]
struct SqlStateErrors;

impl ErrorHandler for SqlStateErrors {
    fn on_error<C>(&self, _client: &C, error: &mut datafusion_postgres::pgwire::error::PgWireError)
    where
        C: datafusion_postgres::pgwire::api::ClientInfo,
    {
        error::classify(error);
    }
}

/// What all connections share.
struct Shared {
    startup: Arc<startup::Shared>,
    cancel: Arc<cancel::Cancels>,
}

/// One connection's handlers: its session (with settings of its own) and its startup
/// handler (authentication state); the rest is shared.
struct Handlers {
    shared: Arc<Shared>,
    session: Arc<session::Session>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(startup::Startup::new(self.shared.startup.clone()))
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.shared.cancel.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlStateErrors)
    }
}

/// The session service: armorlake's read-only rule, DISCARD and settings first, then
/// datafusion-postgres' own hooks (cursors, the SHOWs armorlake does not answer,
/// transactions), and last the queries of the simple protocol, whose rows `rows.rs` writes
/// and whose plans it offers to `plans`.
fn session_service(ctx: Arc<SessionContext>, plans: Arc<plans::Plans>) -> DfSessionService {
    let hooks: Vec<Arc<dyn QueryHook>> = vec![
        Arc::new(readonly::ReadOnly),
        Arc::new(discard::Discard::new(plans.clone())),
        Arc::new(settings::Settings),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
        Arc::new(rows::TextRows::new(plans)),
    ];
    DfSessionService::new_with_hooks(ctx, hooks)
}

/// A DataFusion session of its own for one connection (see
/// [`QueryEngine::connection_context`]), so what the connection `SET`s stays with it.
fn connection_context(engine: &QueryEngine) -> datafusion::error::Result<Arc<SessionContext>> {
    let ctx = engine.connection_context()?;
    settings::install(&ctx);
    Ok(Arc::new(ctx))
}

/// Registers the functions the PostgreSQL front end adds (`current_setting`) on `ctx`.
pub(crate) fn register_functions(ctx: &SessionContext) {
    settings::register(ctx);
}

/// Serves PostgreSQL clients on `listener` until `shutdown` resolves. Each connection runs
/// in its own task: a broken client never affects the others.
///
/// Fails at once if `options` are not safe for the listener's address (see
/// [`PgOptions::check`]).
pub async fn serve(
    listener: TcpListener,
    engine: &QueryEngine,
    options: PgOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    options
        .check(listener.local_addr()?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let sessions = Arc::new(cancel::Sessions::default());
    let shared = Arc::new(Shared {
        startup: Arc::new(startup::Shared {
            users: options.users,
            tls_required: options.tls_required,
            slots: Arc::new(Semaphore::new(options.max_connections)),
            sessions: sessions.clone(),
            keys: RandomPidSecretKeyGenerator::default(),
            parameters: settings::server_parameters(),
        }),
        cancel: Arc::new(cancel::Cancels(sessions)),
    });
    let tls = options.tls.map(|t| TlsAcceptor::from(t.0));
    let feed = tokio_util::sync::CancellationToken::new();
    let _stop_feed = feed.clone().drop_guard();
    tokio::spawn(engine.alerts().clone().run_feed(feed));
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a PostgreSQL connection failed");
                    continue;
                }
            },
        };
        let ctx = match connection_context(engine) {
            Ok(ctx) => ctx,
            Err(e) => {
                tracing::error!(%peer, error = %e, "no session for a PostgreSQL connection");
                continue;
            }
        };
        let handlers = Handlers {
            shared: shared.clone(),
            session: Arc::new(session::Session::new(
                engine.clone(),
                ctx,
                engine.alerts().clone(),
            )),
        };
        let tls = tls.clone();
        let alerts = engine.alerts().clone();
        tokio::spawn(async move {
            let _open = crate::metrics::ConnectionGuard::open("pg");
            // A failed TLS handshake ends here, with the connection: never plaintext.
            if let Err(e) = connection::process(socket, tls, handlers, alerts).await {
                tracing::debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
            }
        });
    }
}
