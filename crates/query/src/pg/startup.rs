//! The startup phase of one connection: TLS requirement, connection limit, startup
//! options, authentication (SCRAM-SHA-256, or trust on loopback when no users are
//! configured), then BackendKeyData registered for cancel requests.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion_postgres::pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use datafusion_postgres::pgwire::api::{
    ClientInfo, METADATA_USER, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::{Sink, SinkExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::cancel::Sessions;
use super::options::Users;
use super::scram::{MECHANISM, ScramError, ScramSecret, ServerFirst};
use super::{error, session};

/// What every connection's startup shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) users: Users,
    pub(crate) tls_required: bool,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) keys: RandomPidSecretKeyGenerator,
    pub(crate) parameters: DefaultServerParameterProvider,
}

/// A connection's place under `--max-connections`, held for the connection's lifetime.
#[derive(Debug)]
struct Slot(#[expect(dead_code, reason = "held for its Drop")] OwnedSemaphorePermit);

#[derive(Debug)]
enum Auth {
    /// Waiting for the Startup message.
    Start,
    /// AuthenticationSASL sent, waiting for the client-first message.
    SaslOffered,
    /// Server-first sent, waiting for the client-final message.
    ServerFirstSent(Box<ServerFirst>),
    /// Authenticated, or failed: nothing more is accepted.
    Done,
}

/// One connection's startup handler (pgwire asks for it once per connection).
#[derive(Debug)]
pub(crate) struct Startup {
    shared: Arc<Shared>,
    state: Mutex<Auth>,
}

impl Startup {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Startup {
            shared,
            state: Mutex::new(Auth::Start),
        }
    }

    fn set(&self, state: Auth) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    fn take(&self) -> Auth {
        std::mem::replace(
            &mut *self.state.lock().unwrap_or_else(PoisonError::into_inner),
            Auth::Done,
        )
    }

    /// The session is authenticated: BackendKeyData, registration for cancel requests,
    /// ParameterStatus and ReadyForQuery.
    async fn finish<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, secret) = self.shared.keys.generate(client);
        let registration = self.shared.sessions.register(pid, &secret);
        client.set_pid_and_secret_key(pid, secret);
        client.session_extensions().insert(registration);
        finish_authentication(client, &self.shared.parameters).await
    }

    async fn on_startup_message<C>(
        &self,
        client: &mut C,
        startup: &datafusion_postgres::pgwire::messages::startup::Startup,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.shared.tls_required && !client.is_secure() {
            return Err(error::tls_required());
        }
        protocol_negotiation(client, startup).await?;
        save_startup_parameters_to_metadata(client, startup);
        let permit = self
            .shared
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| error::too_many_connections())?;
        client.session_extensions().insert(Slot(permit));
        session::apply_startup_options(client)?;

        if self.shared.users.is_empty() {
            self.set(Auth::Done);
            return self.finish(client).await;
        }
        client.set_state(PgWireConnectionState::AuthenticationInProgress);
        self.set(Auth::SaslOffered);
        client
            .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                vec![MECHANISM.to_string()],
            )))
            .await?;
        Ok(())
    }

    async fn on_password<C>(&self, client: &mut C, msg: PasswordMessageFamily) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        match self.take() {
            Auth::SaslOffered => {
                let initial = msg.into_sasl_initial_response()?;
                if initial.auth_method != MECHANISM {
                    return Err(error::authentication_protocol(format!(
                        "SASL mechanism {:?} is not offered; use {MECHANISM}",
                        initial.auth_method
                    )));
                }
                let data = initial.data.unwrap_or_default();
                let secret = match self.shared.users.secret(&user) {
                    Some(s) => s.clone(),
                    None => ScramSecret::impossible().map_err(|e| scram_error(e, &user))?,
                };
                let (state, server_first) =
                    ServerFirst::start(&data, secret).map_err(|e| scram_error(e, &user))?;
                self.set(Auth::ServerFirstSent(Box::new(state)));
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::SASLContinue(Bytes::from(server_first)),
                    ))
                    .await?;
                Ok(())
            }
            Auth::ServerFirstSent(state) => {
                let response = msg.into_sasl_response()?;
                let server_final = state
                    .finish(&response.data)
                    .map_err(|e| scram_error(e, &user))?;
                tracing::debug!(%user, "SCRAM authentication succeeded");
                client
                    .feed(PgWireBackendMessage::Authentication(
                        Authentication::SASLFinal(Bytes::from(server_final)),
                    ))
                    .await?;
                self.finish(client).await
            }
            Auth::Start | Auth::Done => Err(error::authentication_protocol(
                "unexpected password message".into(),
            )),
        }
    }
}

fn scram_error(e: ScramError, user: &str) -> PgWireError {
    match e {
        ScramError::WrongPassword => {
            tracing::info!(%user, "password authentication failed");
            error::password_failed(user)
        }
        other => error::authentication_protocol(other.to_string()),
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if !matches!(self.take(), Auth::Start) {
                    return Err(error::authentication_protocol(
                        "unexpected second startup message".into(),
                    ));
                }
                self.on_startup_message(client, startup).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => {
                self.on_password(client, msg).await
            }
            _ => Err(error::authentication_protocol(
                "unexpected message during authentication".into(),
            )),
        }
    }
}
