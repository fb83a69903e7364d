//! The PostgreSQL wire protocol front end (pgwire, with datafusion-postgres' session
//! service and pg_catalog).

mod error;

use std::future::Future;
use std::sync::Arc;

use datafusion_postgres::DfSessionService;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::{ConnectionManager, ErrorHandler, PgWireServerHandlers};
use datafusion_postgres::pgwire::tokio::process_socket;
use tokio::net::TcpListener;

pub use error::to_error_info;

use crate::QueryEngine;

/// Trusts every connection: only loopback listeners are allowed without users (the
/// caller checks).
#[derive(Debug)]
struct TrustStartup {
    connections: Arc<ConnectionManager>,
}

impl NoopStartupHandler for TrustStartup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }
}

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

struct Handlers {
    session: Arc<DfSessionService>,
    startup: Arc<TrustStartup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlStateErrors)
    }
}

/// Serves PostgreSQL clients on `listener` until `shutdown` resolves. Each connection runs
/// in its own task: a broken client never affects the others.
pub async fn serve(
    listener: TcpListener,
    engine: &QueryEngine,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Arc::new(ConnectionManager::new());
    let handlers = Arc::new(Handlers {
        session: Arc::new(DfSessionService::new(engine.context().clone())),
        startup: Arc::new(TrustStartup {
            connections: connections.clone(),
        }),
        cancel: Arc::new(DefaultCancelHandler::new(connections)),
    });
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
        let handlers = handlers.clone();
        tokio::spawn(async move {
            if let Err(e) = process_socket(socket, None, handlers).await {
                tracing::debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
            }
        });
    }
}
