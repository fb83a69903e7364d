//! The subcommands' options: flags (with their `ARMORLAKE_*` environment variables and
//! defaults) and how each role's configuration file is layered over them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use armorlake_node::{
    FlightOptions, FrontEnds, KubeArmorTls, MetaStore, PasswordUsers, PullOptions,
};
use armorlake_query::auth::Credentials;
use armorlake_storage::StoreOptions;

use crate::cluster_args::ClusterArgs;
use crate::config::{
    FlightFile, MasterFile, OperatorFile, PgFile, PullFile, QueryFile, RoleFile, SimFile,
    StoreFile, UpFile,
};
use crate::layer::Layer;
use crate::pg_args::PgArgs;

/// Options every role has. (The log format and the metrics listener are global flags of
/// `Cli`, main.rs, layered with the file's top-level keys before the role starts.)
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// Configuration file (TOML); its values override the environment, flags override it.
    /// See docs/configuration.md and docs/config/.
    #[arg(long, env = "ARMORLAKE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `armorlake up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where events are stored.
    #[arg(long, env = "ARMORLAKE_DATA_DIR", default_value = "armorlake-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub front: FrontArgs,
    /// KubeArmor endpoint to pull from (HOST:PORT); repeat for several. None: the built-in
    /// simulator.
    #[arg(
        long = "kubearmor",
        env = "ARMORLAKE_KUBEARMOR",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub kubearmor: Vec<String>,
    /// Events per second of the built-in simulator.
    #[arg(
        long,
        env = "ARMORLAKE_SIMULATE",
        value_name = "EVENTS_PER_SEC",
        default_value_t = 300
    )]
    pub simulate: u64,
    #[command(flatten)]
    pub pull: PullArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

impl UpArgs {
    /// Layers `--config` over the flags and environment.
    pub fn layered(mut self, layer: &Layer<'_>) -> Result<(Self, crate::config::UpFile), String> {
        let file = RoleFile::<UpFile>::load(self.common.config.as_deref())?;
        let mut role = file.role;
        layer.set(&mut self.data_dir, "data_dir", role.data_dir.take());
        layer.set(&mut self.kubearmor, "kubearmor", role.kubearmor.take());
        layer.set(&mut self.simulate, "simulate", role.simulate.take());
        self.front.layer(
            std::mem::take(&mut role.pg),
            std::mem::take(&mut role.flight),
            role.query_memory_limit.take(),
            layer,
        );
        self.pull.layer(std::mem::take(&mut role.pull), layer);
        self.store.layer(std::mem::take(&mut role.store), layer);
        Ok((self, role))
    }
}

/// The query node's front ends.
#[derive(Debug, clap::Args)]
pub struct FrontArgs {
    /// PostgreSQL wire protocol listener.
    #[arg(long, env = "ARMORLAKE_PG_LISTEN", default_value = "127.0.0.1:5433")]
    pub pg_listen: SocketAddr,
    /// Arrow Flight SQL (gRPC) listener.
    #[arg(
        long,
        env = "ARMORLAKE_FLIGHT_LISTEN",
        default_value = "127.0.0.1:50062"
    )]
    pub flight_listen: SocketAddr,
    /// A Flight SQL user, NAME:PASSWORD; repeat for several. Without any, every Flight SQL
    /// client is trusted, which is allowed only on a loopback --flight-listen.
    #[arg(
        long = "flight-user",
        env = "ARMORLAKE_FLIGHT_USER",
        value_name = "NAME:PASSWORD"
    )]
    pub flight_users: Vec<String>,
    /// Stop every Flight SQL statement that runs longer than this (e.g. `30s`); a client's
    /// own shorter gRPC deadline wins. Default: no limit.
    #[arg(
        long,
        env = "ARMORLAKE_STATEMENT_TIMEOUT",
        value_name = "DURATION",
        value_parser = humantime::parse_duration
    )]
    pub statement_timeout: Option<Duration>,
    /// Most memory one statement may hold on the query node (bytes, or with a unit: 512MiB,
    /// 2GiB); a statement that needs more and cannot spill to disk fails with SQLSTATE 53200.
    /// No limit when absent.
    #[arg(
        long,
        env = "ARMORLAKE_QUERY_MEMORY_LIMIT",
        value_name = "BYTES",
        value_parser = parse_bytes
    )]
    pub query_memory_limit: Option<usize>,
    #[command(flatten)]
    pub pg: PgArgs,
}

/// A byte count: a number with an optional unit (k, M, G with or without `B`, `iB`; powers
/// of 1024 for `KiB`, `MiB`, `GiB`, of 1000 for `kB`, `MB`, `GB`).
pub(crate) fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count (e.g. 536870912, 512MiB, 2GiB)"))?;
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use KiB, MiB, GiB, kB, MB, GB)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is out of range"))
}

impl FrontArgs {
    fn layer(
        &mut self,
        pg: PgFile,
        flight: FlightFile,
        memory_limit: Option<usize>,
        layer: &Layer<'_>,
    ) {
        layer.set_opt(
            &mut self.query_memory_limit,
            "query_memory_limit",
            memory_limit,
        );
        layer.set(&mut self.pg_listen, "pg_listen", pg.listen);
        layer.set(&mut self.flight_listen, "flight_listen", flight.listen);
        layer.set(&mut self.flight_users, "flight_users", flight.users);
        layer.set_opt(
            &mut self.statement_timeout,
            "statement_timeout",
            flight.statement_timeout,
        );
        layer.set_opt(&mut self.pg.tls_cert, "tls_cert", pg.tls_cert);
        layer.set_opt(&mut self.pg.tls_key, "tls_key", pg.tls_key);
        layer.set(&mut self.pg.tls_required, "tls_required", pg.tls_required);
        layer.set(
            &mut self.pg.max_connections,
            "max_connections",
            pg.max_connections,
        );
    }

    /// The front ends, with the PostgreSQL users of the configuration file.
    pub fn front_ends(self, users: &[crate::config::UserEntry]) -> Result<FrontEnds, String> {
        let users = crate::config::users(users)?;
        let pg = self.pg.options(self.pg_listen, users)?;
        // Flight SQL signs in the PostgreSQL users unless --flight-user names its own, and
        // serves the same certificate.
        let credentials = match self.flight_users.is_empty() {
            true => Arc::new(pg.users.clone()) as Arc<dyn Credentials>,
            false => PasswordUsers::parse(self.flight_users.iter().map(String::as_str))
                .map_err(|e| format!("--flight-user: {e}"))?
                .into_credentials(),
        };
        let tls = self.pg.flight_tls()?;
        Ok(FrontEnds {
            pg,
            pg_listen: self.pg_listen,
            flight_listen: self.flight_listen,
            flight: FlightOptions {
                credentials,
                tls,
                // The PostgreSQL connection limit bounds concurrent Flight SQL statements.
                max_queries: self.pg.max_connections,
                statement_timeout: self.statement_timeout,
            },
            query_memory_limit: self.query_memory_limit,
        })
    }
}

/// How an operator subscribes to KubeArmor.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// WatchAlerts filter sent to KubeArmor: all or policy.
    #[arg(long, env = "ARMORLAKE_ALERT_FILTER", default_value = "all")]
    pub alert_filter: String,
    /// WatchLogs filter sent to KubeArmor: all or system.
    #[arg(long, env = "ARMORLAKE_LOG_FILTER", default_value = "all")]
    pub log_filter: String,
    /// Reach KubeArmor over TLS, trusting the CA in this PEM file.
    #[arg(long, env = "ARMORLAKE_KUBEARMOR_CA", value_name = "FILE")]
    pub kubearmor_ca: Option<PathBuf>,
    /// The name KubeArmor's certificate is checked against (default: the endpoint's host).
    #[arg(long, env = "ARMORLAKE_KUBEARMOR_TLS_DOMAIN", value_name = "NAME")]
    pub kubearmor_tls_domain: Option<String>,
}

impl PullArgs {
    fn layer(&mut self, file: PullFile, layer: &Layer<'_>) {
        layer.set(&mut self.alert_filter, "alert_filter", file.alert_filter);
        layer.set(&mut self.log_filter, "log_filter", file.log_filter);
        layer.set_opt(&mut self.kubearmor_ca, "kubearmor_ca", file.kubearmor_ca);
        layer.set_opt(
            &mut self.kubearmor_tls_domain,
            "kubearmor_tls_domain",
            file.kubearmor_tls_domain,
        );
    }

    /// The pull options, with the KubeArmor CA read.
    pub fn options(self) -> Result<PullOptions, String> {
        if self.kubearmor_tls_domain.is_some() && self.kubearmor_ca.is_none() {
            return Err("--kubearmor-tls-domain needs --kubearmor-ca".into());
        }
        let tls = match &self.kubearmor_ca {
            Some(path) => Some(KubeArmorTls {
                ca_pem: std::fs::read(path)
                    .map_err(|e| format!("reading --kubearmor-ca {}: {e}", path.display()))?,
                domain: self.kubearmor_tls_domain.clone(),
            }),
            None => None,
        };
        Ok(PullOptions {
            alert_filter: self.alert_filter,
            log_filter: self.log_filter,
            tls,
        })
    }
}

/// How an operator stores events.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// How often rows held in memory are written to Parquet.
    #[arg(long, env = "ARMORLAKE_FLUSH_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub flush_interval: Duration,
    /// Flush early once a table has this many rows in memory (default: 1000000).
    #[arg(long, env = "ARMORLAKE_FLUSH_ROWS", value_name = "ROWS")]
    pub flush_rows: Option<usize>,
    /// Flush early once the rows in memory, all tables together, take this many bytes of
    /// Arrow memory (default: 268435456, 256 MiB).
    #[arg(long, env = "ARMORLAKE_FLUSH_BYTES", value_name = "BYTES")]
    pub flush_bytes: Option<usize>,
    /// Drop whole hours older than this (e.g. 14d); keep everything when absent.
    #[arg(long, env = "ARMORLAKE_RETENTION", value_parser = humantime::parse_duration)]
    pub retention: Option<Duration>,
}

impl StoreArgs {
    fn layer(&mut self, file: StoreFile, layer: &Layer<'_>) {
        layer.set(
            &mut self.flush_interval,
            "flush_interval",
            file.flush_interval,
        );
        layer.set_opt(&mut self.flush_rows, "flush_rows", file.flush_rows);
        layer.set_opt(&mut self.flush_bytes, "flush_bytes", file.flush_bytes);
        layer.set_opt(&mut self.retention, "retention", file.retention);
    }

    /// The store options.
    pub fn options(self) -> StoreOptions {
        let defaults = StoreOptions::default();
        StoreOptions {
            flush_interval: self.flush_interval,
            flush_rows: self.flush_rows.unwrap_or(defaults.flush_rows),
            flush_bytes: self.flush_bytes.unwrap_or(defaults.flush_bytes),
            retention: self.retention,
            ..defaults
        }
    }
}

/// `armorlake master`.
#[derive(Debug, clap::Args)]
pub struct MasterArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// gRPC listener of the metadata service.
    #[arg(
        long,
        env = "ARMORLAKE_MASTER_LISTEN",
        default_value = "127.0.0.1:50060"
    )]
    pub listen: SocketAddr,
    /// Where the metadata is kept with the default store (`<data-dir>/meta.redb`).
    #[arg(long, env = "ARMORLAKE_DATA_DIR", default_value = "armorlake-master")]
    pub data_dir: PathBuf,
    /// The metadata store: redb (a file in --data-dir) or
    /// etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (default prefix /armorlake/).
    #[arg(
        long,
        env = "ARMORLAKE_META_STORE",
        value_name = "STORE",
        default_value = "redb"
    )]
    pub store: String,
    #[command(flatten)]
    pub security: ClusterArgs,
}

impl MasterArgs {
    /// Layers `--config` over the flags and environment.
    pub fn layered(mut self, layer: &Layer<'_>) -> Result<Self, String> {
        let file = RoleFile::<MasterFile>::load(self.common.config.as_deref())?;
        let role = file.role;
        layer.set(&mut self.listen, "listen", role.listen);
        layer.set(&mut self.data_dir, "data_dir", role.data_dir);
        layer.set(&mut self.store, "store", role.store);
        self.security.layer(role.cluster, layer);
        Ok(self)
    }

    /// Where the metadata goes.
    pub fn meta_store(&self) -> Result<MetaStore, String> {
        parse_meta_store(&self.store, &self.data_dir)
    }
}

/// Reads `--store`.
pub fn parse_meta_store(store: &str, data_dir: &std::path::Path) -> Result<MetaStore, String> {
    if store == "redb" {
        return Ok(MetaStore::Dir(data_dir.to_path_buf()));
    }
    let Some(rest) = store.strip_prefix("etcd://") else {
        return Err(format!(
            "--store {store:?}: expected redb or etcd://HOST:PORT[,HOST:PORT...][/PREFIX]"
        ));
    };
    let (hosts, prefix) = match rest.split_once('/') {
        Some((hosts, prefix)) => (hosts, format!("/{prefix}")),
        None => (rest, "/armorlake/".to_string()),
    };
    let endpoints: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    if endpoints.is_empty() {
        return Err(format!("--store {store:?}: no etcd endpoint"));
    }
    let prefix = match prefix.ends_with('/') {
        true => prefix,
        false => format!("{prefix}/"),
    };
    Ok(MetaStore::Etcd { endpoints, prefix })
}

/// `armorlake operator`.
#[derive(Debug, clap::Args)]
pub struct OperatorArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The master, e.g. http://127.0.0.1:50060.
    #[arg(long, env = "ARMORLAKE_MASTER")]
    pub master: Option<String>,
    /// The node's name (default: the host name and data directory).
    #[arg(long, env = "ARMORLAKE_NAME")]
    pub name: Option<String>,
    /// Replica group: operators with the same cluster pull the same endpoints.
    #[arg(long, env = "ARMORLAKE_CLUSTER", default_value = "")]
    pub cluster: String,
    /// Where query fragments are served (gRPC).
    #[arg(long, env = "ARMORLAKE_LISTEN", default_value = "127.0.0.1:50061")]
    pub listen: SocketAddr,
    /// The address query nodes reach this operator at (default: the bound --listen address).
    #[arg(long, env = "ARMORLAKE_ADVERTISE", default_value = "")]
    pub advertise: String,
    /// Where events are stored.
    #[arg(long, env = "ARMORLAKE_DATA_DIR", default_value = "armorlake-data")]
    pub data_dir: PathBuf,
    /// KubeArmor endpoint to pull from (HOST:PORT); repeat for several (at least one).
    #[arg(
        long = "kubearmor",
        env = "ARMORLAKE_KUBEARMOR",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub kubearmor: Vec<String>,
    #[command(flatten)]
    pub pull: PullArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub security: ClusterArgs,
}

impl OperatorArgs {
    /// Layers `--config` over the flags and environment, and checks what is required.
    pub fn layered(mut self, layer: &Layer<'_>) -> Result<Self, String> {
        let file = RoleFile::<OperatorFile>::load(self.common.config.as_deref())?;
        let role = file.role;
        layer.set_opt(&mut self.master, "master", role.master);
        layer.set_opt(&mut self.name, "name", role.node.name);
        layer.set(&mut self.cluster, "cluster", role.node.cluster);
        layer.set(&mut self.listen, "listen", role.listen);
        layer.set(&mut self.advertise, "advertise", role.node.advertise);
        layer.set(&mut self.data_dir, "data_dir", role.data_dir);
        layer.set(&mut self.kubearmor, "kubearmor", role.kubearmor);
        self.pull.layer(role.pull, layer);
        self.store.layer(role.store, layer);
        self.security.layer(role.cluster, layer);
        if self.master.is_none() {
            return Err(missing("--master", "ARMORLAKE_MASTER", "master"));
        }
        if self.kubearmor.is_empty() {
            return Err(missing("--kubearmor", "ARMORLAKE_KUBEARMOR", "kubearmor"));
        }
        Ok(self)
    }
}

fn missing(flag: &str, env: &str, key: &str) -> String {
    format!("give {flag} (or {env}, or `{key}` in the --config file)")
}

/// `armorlake query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The master, e.g. http://127.0.0.1:50060.
    #[arg(long, env = "ARMORLAKE_MASTER")]
    pub master: Option<String>,
    /// The node's name (default: query@ and the PostgreSQL listener).
    #[arg(long, env = "ARMORLAKE_NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub front: FrontArgs,
    #[command(flatten)]
    pub security: ClusterArgs,
}

impl QueryArgs {
    /// Layers `--config` over the flags and environment, and checks what is required.
    pub fn layered(mut self, layer: &Layer<'_>) -> Result<(Self, QueryFile), String> {
        let file = RoleFile::<QueryFile>::load(self.common.config.as_deref())?;
        let mut role = file.role;
        layer.set_opt(&mut self.master, "master", role.master.take());
        layer.set_opt(&mut self.name, "name", role.name.take());
        self.front.layer(
            std::mem::take(&mut role.pg),
            std::mem::take(&mut role.flight),
            role.query_memory_limit.take(),
            layer,
        );
        self.security
            .layer(std::mem::take(&mut role.cluster), layer);
        if self.master.is_none() {
            return Err(missing("--master", "ARMORLAKE_MASTER", "master"));
        }
        Ok((self, role))
    }
}

/// `armorlake kubearmor-sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// gRPC listener.
    #[arg(long, env = "ARMORLAKE_SIM_LISTEN", default_value = "127.0.0.1:32767")]
    pub listen: SocketAddr,
    /// Events per second over all streams; 0 = as fast as the clients read.
    #[arg(
        long,
        env = "ARMORLAKE_SIM_RATE",
        value_name = "EVENTS_PER_SEC",
        default_value_t = 300
    )]
    pub rate: u64,
    /// Seed of the deterministic event sequence.
    #[arg(long, env = "ARMORLAKE_SIM_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Simulated KubeArmor nodes (hosts).
    #[arg(long, env = "ARMORLAKE_SIM_NODES", default_value_t = 4)]
    pub nodes: u32,
    /// Stop after this many events in total (the streams stay open).
    #[arg(long, env = "ARMORLAKE_SIM_COUNT")]
    pub count: Option<u64>,
    /// Give events fixed times from TIME on (RFC 3339): event n happens at TIME + n/rate, or
    /// at full speed at TIME + n ms, so every subscriber receives identical events.
    #[arg(long, env = "ARMORLAKE_SIM_START", value_name = "TIME")]
    pub start: Option<chrono::DateTime<chrono::Utc>>,
}

impl SimArgs {
    /// Layers `--config` over the flags and environment.
    pub fn layered(mut self, layer: &Layer<'_>) -> Result<Self, String> {
        let file = RoleFile::<SimFile>::load(self.common.config.as_deref())?;
        let role = file.role;
        layer.set(&mut self.listen, "listen", role.listen);
        layer.set(&mut self.rate, "rate", role.rate);
        layer.set(&mut self.seed, "seed", role.seed);
        layer.set(&mut self.nodes, "nodes", role.nodes);
        layer.set_opt(&mut self.count, "count", role.count);
        let start = match role.start {
            Some(text) => Some(
                chrono::DateTime::parse_from_rfc3339(&text)
                    .map_err(|e| format!("config: start {text:?}: {e}"))?
                    .to_utc(),
            ),
            None => None,
        };
        layer.set_opt(&mut self.start, "start", start);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::Path;

    use super::*;

    #[test]
    fn meta_stores_parse_with_their_prefix() {
        let dir = Path::new("d");
        assert_eq!(
            parse_meta_store("redb", dir).unwrap(),
            MetaStore::Dir(dir.into())
        );
        assert_eq!(
            parse_meta_store("etcd://a:2379,b:2379", dir).unwrap(),
            MetaStore::Etcd {
                endpoints: vec!["a:2379".into(), "b:2379".into()],
                prefix: "/armorlake/".into(),
            }
        );
        let MetaStore::Etcd { prefix, .. } = parse_meta_store("etcd://a:1/x/y", dir).unwrap()
        else {
            panic!("etcd expected");
        };
        assert_eq!(prefix, "/x/y/");
        assert!(parse_meta_store("etcd://", dir).is_err());
        assert!(parse_meta_store("postgres://a", dir).is_err());
    }
}
