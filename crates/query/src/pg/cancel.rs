//! Cancel requests: each session registers under its BackendKeyData (pid, secret key); a
//! CancelRequest naming them cancels the statement the session is running, whether it is
//! still planning or already streaming rows.
//!
//! pgwire's own connection handle only interrupts `do_query`, which returns before
//! DataFusion computes anything (results are streams), so armorlake keeps its own
//! registry and checks it while rows stream too (see `session.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion_postgres::pgwire::api::cancel::CancelHandler;
use datafusion_postgres::pgwire::messages::cancel::CancelRequest;
use datafusion_postgres::pgwire::messages::startup::SecretKey;
use tokio_util::sync::CancellationToken;

type Key = (i32, Bytes);

/// Every session's canceller, by BackendKeyData.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_key: Mutex<HashMap<Key, Arc<Canceller>>>,
}

/// Cancels the statement a session is running.
#[derive(Debug, Default)]
pub(crate) struct Canceller {
    current: Mutex<CancellationToken>,
}

impl Canceller {
    /// A fresh token for the statement that starts now; a cancel request fires it.
    pub(crate) fn start_statement(&self) -> CancellationToken {
        let token = CancellationToken::new();
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = token.clone();
        token
    }

    fn cancel(&self) {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancel();
    }
}

/// A session's registration; dropping it (when the connection ends) unregisters it.
#[derive(Debug)]
pub(crate) struct Registration {
    sessions: Arc<Sessions>,
    key: Key,
    pub(crate) canceller: Arc<Canceller>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions
            .by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl Sessions {
    /// Registers a session under its pid and secret key.
    pub(crate) fn register(self: &Arc<Self>, pid: i32, secret: &SecretKey) -> Registration {
        let key = (pid, secret.to_bytes());
        let canceller = Arc::new(Canceller::default());
        self.by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), canceller.clone());
        Registration {
            sessions: self.clone(),
            key,
            canceller,
        }
    }

    /// Cancels the session's running statement; returns whether the key was known.
    pub(crate) fn cancel(&self, pid: i32, secret: &SecretKey) -> bool {
        let found = self
            .by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(pid, secret.to_bytes()))
            .cloned();
        match found {
            Some(c) => {
                c.cancel();
                true
            }
            None => false,
        }
    }
}

/// Answers CancelRequest messages (sent on a connection of their own, never answered).
#[derive(Debug)]
pub(crate) struct Cancels(pub(crate) Arc<Sessions>);

#[async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        if !self.0.cancel(request.pid, &request.secret_key) {
            // Like PostgreSQL: an unknown key is ignored, and only logged.
            tracing::debug!(pid = request.pid, "cancel request for an unknown session");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_fires_the_running_statement_only_with_the_right_key() {
        let sessions = Arc::new(Sessions::default());
        let reg = sessions.register(7, &SecretKey::I32(42));
        let first = reg.canceller.start_statement();
        assert!(!sessions.cancel(7, &SecretKey::I32(41)));
        assert!(!first.is_cancelled());
        assert!(sessions.cancel(7, &SecretKey::I32(42)));
        assert!(first.is_cancelled());
        // The next statement starts uncancelled.
        assert!(!reg.canceller.start_statement().is_cancelled());
        drop(reg);
        assert!(!sessions.cancel(7, &SecretKey::I32(42)));
    }
}
