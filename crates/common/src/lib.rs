//! What every armorlake crate agrees on: the tables a client sees, their Arrow schemas, and
//! the names of the columns armorlake adds to KubeArmor's own fields.

pub mod schema;

pub use schema::{ENDPOINT_COLUMN, OPERATOR_COLUMN, TIMESTAMP_COLUMN, Table};

/// The database a PostgreSQL client connects to.
pub const DATABASE: &str = "kubearmor";
/// The schema holding the event tables.
pub const EVENT_SCHEMA: &str = "public";
/// The schema exposing the cluster itself (`nodes`, `sources`, `partitions`).
pub const SYSTEM_SCHEMA: &str = "armorlake";
