//! What the PostgreSQL front end is configured with: users, TLS, limits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use datafusion_postgres::pgwire::tokio::tokio_rustls::rustls;

use super::scram::{ScramError, ScramSecret};
use crate::Error;

/// PostgreSQL's default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;

/// The users allowed to connect, each with a SCRAM-SHA-256 secret. Empty: trust (loopback
/// only).
#[derive(Debug, Clone, Default)]
pub struct Users(HashMap<String, ScramSecret>);

impl Users {
    /// Adds `name` with PostgreSQL's SCRAM secret text (`SCRAM-SHA-256$…`).
    pub fn add_scram_secret(&mut self, name: &str, secret: &str) -> Result<(), Error> {
        let secret = ScramSecret::parse(secret).map_err(|e| user_error(name, e))?;
        self.insert(name, secret)
    }

    /// Adds `name` with a cleartext password (for development; the server keeps only the
    /// SCRAM secret made from it).
    pub fn add_password(&mut self, name: &str, password: &str) -> Result<(), Error> {
        let secret = ScramSecret::from_password(password).map_err(|e| user_error(name, e))?;
        self.insert(name, secret)
    }

    fn insert(&mut self, name: &str, secret: ScramSecret) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::Config("a user has an empty name".into()));
        }
        if self.0.insert(name.to_string(), secret).is_some() {
            return Err(Error::Config(format!("user {name:?} is configured twice")));
        }
        Ok(())
    }

    /// No users: every loopback client is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn secret(&self, name: &str) -> Option<&ScramSecret> {
        self.0.get(name)
    }
}

/// The PostgreSQL users also sign in to Flight SQL, with the same passwords.
impl crate::auth::Credentials for Users {
    fn has_users(&self) -> bool {
        !self.is_empty()
    }

    fn verify(&self, user: &str, password: &str) -> bool {
        self.secret(user).is_some_and(|s| s.verifies(password))
    }
}

fn user_error(name: &str, e: ScramError) -> Error {
    Error::Config(format!("user {name:?}: {e}"))
}

/// The server's TLS certificate and key, loaded and checked.
#[derive(Debug, Clone)]
pub struct Tls(pub(crate) Arc<rustls::ServerConfig>);

impl Tls {
    /// Loads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, Error> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let tls_error = |what: &Path, e: &dyn std::fmt::Display| Error::Tls {
            path: what.display().to_string(),
            reason: e.to_string(),
        };
        let certs = CertificateDer::pem_file_iter(cert)
            .map_err(|e| tls_error(cert, &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error(cert, &e))?;
        if certs.is_empty() {
            return Err(tls_error(cert, &"no certificate in the file"));
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(key, &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(cert, &e))?
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .map_err(|e| tls_error(key, &e))?;
        // Direct TLS negotiation (PostgreSQL 17 clients) requires this ALPN name.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Tls(Arc::new(config)))
    }
}

/// Options of the PostgreSQL front end.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Who may connect; empty means trust, which only a loopback listener allows.
    pub users: Users,
    /// TLS for clients that ask for it (SSLRequest or direct TLS).
    pub tls: Option<Tls>,
    /// Refuse clients that do not use TLS.
    pub tls_required: bool,
    /// At most this many sessions at once; more get SQLSTATE 53300.
    pub max_connections: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            users: Users::default(),
            tls: None,
            tls_required: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl PgOptions {
    /// Checks that these options are safe to serve on `listen`: without users, only a
    /// loopback address is allowed; `tls_required` needs a certificate.
    pub fn check(&self, listen: SocketAddr) -> Result<(), Error> {
        if self.users.is_empty() && !listen.ip().is_loopback() {
            return Err(Error::Config(format!(
                "refusing to serve PostgreSQL on {listen} without authentication: with no \
                 users configured every client is trusted, which is allowed only on a \
                 loopback address. Add [[users]] to the --config file, or listen on \
                 127.0.0.1"
            )));
        }
        if self.tls_required && self.tls.is_none() {
            return Err(Error::Config(
                "--tls-required needs --tls-cert and --tls-key".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(Error::Config("--max-connections must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn trust_is_only_for_loopback() {
        let open = PgOptions::default();
        open.check("127.0.0.1:5433".parse().unwrap()).unwrap();
        open.check("[::1]:5433".parse().unwrap()).unwrap();
        let err = open.check("0.0.0.0:5433".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("without authentication"), "{err}");

        let mut users = Users::default();
        users.add_password("alice", "x").unwrap();
        let closed = PgOptions {
            users,
            ..PgOptions::default()
        };
        closed.check("0.0.0.0:5433".parse().unwrap()).unwrap();
    }

    #[test]
    fn users_are_checked() {
        let mut users = Users::default();
        users.add_password("alice", "x").unwrap();
        assert!(users.add_password("alice", "y").is_err());
        assert!(users.add_password("", "y").is_err());
        let err = users.add_scram_secret("bob", "plain").unwrap_err();
        assert!(err.to_string().contains("bob"), "{err}");
        assert!(!err.to_string().contains("plain"), "{err}");
    }

    #[test]
    fn tls_required_needs_a_certificate() {
        let options = PgOptions {
            tls_required: true,
            ..PgOptions::default()
        };
        assert!(options.check("127.0.0.1:1".parse().unwrap()).is_err());
    }

    #[test]
    fn missing_tls_files_are_reported_with_their_path() {
        let err =
            Tls::from_pem_files(Path::new("/nonexistent/c.pem"), Path::new("/k.pem")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/c.pem"), "{err}");
    }
}
