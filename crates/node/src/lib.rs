//! armorlake's node roles and `up`, which runs them all in one process.
//!
//! Roles meet only through interfaces: operators report to the master through
//! [`armorlake_meta::MetaService`]; query plans reach an operator's rows through
//! [`armorlake_query::OperatorHandle`], in the operator's own process (its worker) or in
//! `up`'s. `up` wires in-process implementations; the separate `master`, `operator` and
//! `query` processes wire gRPC ones.

pub mod front;
pub mod metrics;
pub mod operator;
pub mod roles;
pub mod rules;
pub mod up;
pub mod webhook;

pub use armorlake_ingest::KubeArmorTls;
pub use armorlake_meta::{ClusterSecurity, ClusterTls};
pub use armorlake_query::auth::{Credentials, PasswordUsers};
pub use armorlake_query::flight::FlightOptions;
pub use front::{FrontEnds, Listening};
pub use operator::{Operator, OperatorConfig, PullOptions};
pub use roles::{
    MasterProcess, MetaStore, OperatorProcess, QueryProcess, run_master, run_operator, run_query,
};
pub use up::{UpConfig, run_up};

/// The armorlake version every node reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Errors starting or running a node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be opened.
    #[error("storage: {0}")]
    Storage(#[from] armorlake_storage::Error),
    /// The master refused or could not be reached.
    #[error("metadata: {0}")]
    Meta(#[from] armorlake_meta::Error),
    /// Setting up the query engine failed.
    #[error("query engine: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// A listener could not be bound or served.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The configuration is refused.
    #[error("{0}")]
    Config(String),
    /// The built-in KubeArmor simulator failed.
    #[error("simulator: {0}")]
    Simulator(String),
}

/// The result of node operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
