//! One connection's message loop: pgwire's own (`process_socket`), plus notifications.
//!
//! pgwire answers messages but never speaks unasked, while PostgreSQL sends a
//! NotificationResponse to a LISTENing session whenever one arrives, also while the session
//! idles (psycopg's `notifies()`, libpq's `PQconsumeInput` wait for exactly that). So the
//! loop waits for the client's next message *or* a notification of this session, and sends
//! a notification between messages, never inside another response.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use datafusion_postgres::pgwire::api::{
    ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers,
};
use datafusion_postgres::pgwire::messages::response::NotificationResponse;
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::pgwire::tokio::TlsAcceptor;
use datafusion_postgres::pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;

use crate::alerting::Alerts;

/// How long a client has to finish its startup (as pgwire's own loop).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves one client until it leaves.
pub(crate) async fn process<H: PgWireServerHandlers>(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: H,
    alerts: Arc<Alerts>,
) -> io::Result<()> {
    let startup_timeout = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_timeout);
    let socket = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        socket = negotiate_tls(tcp, tls) => socket?,
    };
    // A direct TLS handshake without a TLS configuration: nothing to serve.
    let Some(mut socket) = socket else {
        return Ok(());
    };
    let (session, mut notifications) = alerts.session();
    socket.session_extensions().insert(session);

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let message = tokio::select! {
            _ = &mut startup_timeout, if starting => None,
            message = socket.next() => message,
            Some(note) = notifications.recv(), if !starting => {
                let (pid, _) = socket.pid_and_secret_key();
                socket
                    .send(PgWireBackendMessage::NotificationResponse(NotificationResponse::new(
                        pid,
                        note.channel,
                        note.payload,
                    )))
                    .await?;
                continue;
            }
        };
        let Some(Ok(message)) = message else {
            break;
        };
        // Terminate: the client is leaving; close at once (asyncpg waits for it).
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        if let Err(mut e) = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await
        {
            errors.on_error(&socket, &mut e);
            process_error(&mut socket, e, extended_query).await?;
        }
    }
    Ok(())
}
