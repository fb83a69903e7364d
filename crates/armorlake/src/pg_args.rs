//! Flags of the PostgreSQL front end, shared by every subcommand that serves it.

use std::net::SocketAddr;
use std::path::PathBuf;

use armorlake_query::pg::{DEFAULT_MAX_CONNECTIONS, PgOptions, Tls, Users};

/// PostgreSQL authentication, TLS and limits.
#[derive(Debug, clap::Args)]
pub struct PgArgs {
    /// TLS certificate chain (PEM) for PostgreSQL clients.
    #[arg(long, env = "ARMORLAKE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "ARMORLAKE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Refuse PostgreSQL clients that do not use TLS.
    #[arg(long, env = "ARMORLAKE_TLS_REQUIRED")]
    pub tls_required: bool,
    /// Most PostgreSQL sessions at once; more are refused with SQLSTATE 53300.
    #[arg(long, env = "ARMORLAKE_MAX_CONNECTIONS", value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
}

impl PgArgs {
    /// The same certificate for Flight SQL (gRPC over TLS), if one is configured.
    pub fn flight_tls(&self) -> Result<Option<tonic::transport::ServerTlsConfig>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
        };
        let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
        Ok(Some(
            tonic::transport::ServerTlsConfig::new().identity(identity),
        ))
    }

    /// Loads the TLS files, and checks the result (with `users`) is safe to serve on
    /// `listen`.
    pub fn options(&self, listen: SocketAddr, users: Users) -> Result<PgOptions, String> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Some(Tls::from_pem_files(cert, key).map_err(|e| e.to_string())?)
            }
            (None, None) if self.tls_required => {
                return Err("--tls-required needs --tls-cert and --tls-key".into());
            }
            (None, None) => None,
            _ => return Err("give both --tls-cert and --tls-key".into()),
        };
        let options = PgOptions {
            users,
            tls,
            tls_required: self.tls_required,
            max_connections: self.max_connections,
        };
        options.check(listen).map_err(|e| e.to_string())?;
        Ok(options)
    }
}
