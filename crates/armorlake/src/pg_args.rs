//! Flags of the PostgreSQL front end, shared by every subcommand that serves it.

use std::net::SocketAddr;
use std::path::PathBuf;

use armorlake_query::pg::{DEFAULT_MAX_CONNECTIONS, PgOptions, Tls, Users};

use crate::config::ConfigFile;

/// PostgreSQL authentication, TLS and limits.
#[derive(Debug, clap::Args)]
pub struct PgArgs {
    /// Configuration file (TOML) with the PostgreSQL users, `[[users]]` entries of `name`
    /// and `scram_sha_256` (or `password`, for development). With no users every client
    /// is trusted, which only a loopback listener allows.
    #[arg(long, env = "ARMORLAKE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// TLS certificate chain (PEM) for PostgreSQL clients.
    #[arg(
        long,
        env = "ARMORLAKE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "ARMORLAKE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Refuse PostgreSQL clients that do not use TLS.
    #[arg(long, env = "ARMORLAKE_TLS_REQUIRED", requires = "tls_cert")]
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

    /// Loads the users and TLS files, and checks the result is safe to serve on `listen`.
    pub fn options(&self, listen: SocketAddr) -> Result<PgOptions, String> {
        let users = match &self.config {
            Some(path) => ConfigFile::load(path)?.users()?,
            None => Users::default(),
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Some(Tls::from_pem_files(cert, key).map_err(|e| e.to_string())?)
            }
            _ => None,
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
