//! armorlake's configuration file (TOML, given with `--config FILE` or `ARMORLAKE_CONFIG`).
//!
//! Options are layered: defaults < `ARMORLAKE_*` environment < this file < flags (see
//! `layer.rs` and docs/configuration.md). Each role reads its own shape of file, one typed
//! struct per role ([`UpFile`], [`MasterFile`], [`OperatorFile`], [`QueryFile`],
//! [`SimFile`]) built from shared sections; every field is optional (absent: the flag,
//! environment or default decides), and unknown keys are errors, so a typo never goes
//! unnoticed.
//!
//! Options every role shares sit at the top level of every file: they are [`CommonFile`]'s
//! fields, named in [`COMMON_KEYS`], and taken out before the role's own struct reads the
//! rest.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use armorlake_query::pg::Users;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// The top-level keys of [`CommonFile`]: options every role has. To add one, add the field
/// to [`CommonFile`], its name here, and its global flag to `Cli` (main.rs), which layers
/// them (`file_options`).
pub const COMMON_KEYS: &[&str] = &["log_format", "metrics_listen"];

/// Options every role reads from the top level of its file (see [`COMMON_KEYS`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonFile {
    /// `--log-format`: `text` or `json`.
    pub log_format: Option<String>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
}

/// A role's whole file: the shared options and the role's own.
#[derive(Debug, Default)]
pub struct RoleFile<T> {
    /// Options every role has.
    pub common: CommonFile,
    /// The role's own options.
    pub role: T,
}

impl<T: DeserializeOwned + Default> RoleFile<T> {
    /// Reads and parses `path`; no path: an empty file.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        let Some(path) = path else {
            return Ok(RoleFile::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading config {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }

    /// Parses the TOML text of a configuration file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut common = toml::Table::new();
        for key in COMMON_KEYS {
            if let Some(value) = table.remove(*key) {
                common.insert((*key).to_string(), value);
            }
        }
        let common = common
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        let role = table
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        Ok(RoleFile { common, role })
    }
}

/// `armorlake up`'s file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpFile {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--kubearmor`, every endpoint.
    pub kubearmor: Option<Vec<String>>,
    /// `--simulate`.
    pub simulate: Option<u64>,
    /// `--query-memory-limit`: bytes, or a string with a unit (`"512MiB"`).
    #[serde(default, deserialize_with = "byte_count")]
    pub query_memory_limit: Option<usize>,
    /// `[pg]`.
    #[serde(default)]
    pub pg: PgFile,
    /// `[flight]`.
    #[serde(default)]
    pub flight: FlightFile,
    /// `[[users]]`.
    #[serde(default)]
    pub users: Vec<UserEntry>,
    /// `[pull]`.
    #[serde(default)]
    pub pull: PullFile,
    /// `[store]`.
    #[serde(default)]
    pub store: StoreFile,
}

/// `armorlake master`'s file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterFile {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--store`: `redb` or `etcd://HOST:PORT[,HOST:PORT…][/PREFIX]`.
    pub store: Option<String>,
    /// `[cluster]`.
    #[serde(default)]
    pub cluster: ClusterFile,
}

/// `armorlake operator`'s file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorFile {
    /// `--master`.
    pub master: Option<String>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--kubearmor`, every endpoint.
    pub kubearmor: Option<Vec<String>>,
    /// `[node]`.
    #[serde(default)]
    pub node: NodeFile,
    /// `[pull]`.
    #[serde(default)]
    pub pull: PullFile,
    /// `[store]`.
    #[serde(default)]
    pub store: StoreFile,
    /// `[cluster]`.
    #[serde(default)]
    pub cluster: ClusterFile,
}

/// `armorlake query`'s file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryFile {
    /// `--master`.
    pub master: Option<String>,
    /// `--name`.
    pub name: Option<String>,
    /// `--query-memory-limit`: bytes, or a string with a unit (`"512MiB"`).
    #[serde(default, deserialize_with = "byte_count")]
    pub query_memory_limit: Option<usize>,
    /// `[pg]`.
    #[serde(default)]
    pub pg: PgFile,
    /// `[flight]`.
    #[serde(default)]
    pub flight: FlightFile,
    /// `[[users]]`.
    #[serde(default)]
    pub users: Vec<UserEntry>,
    /// `[cluster]`.
    #[serde(default)]
    pub cluster: ClusterFile,
}

/// `armorlake kubearmor-sim`'s file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimFile {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--rate`.
    pub rate: Option<u64>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--nodes`.
    pub nodes: Option<u32>,
    /// `--count`.
    pub count: Option<u64>,
    /// `--start`, RFC 3339 (a quoted string).
    pub start: Option<String>,
}

/// `[node]`: who an operator is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// `--name`.
    pub name: Option<String>,
    /// `--cluster`: the replica group.
    pub cluster: Option<String>,
    /// `--advertise`.
    pub advertise: Option<String>,
}

/// `[pg]`: the PostgreSQL front end.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgFile {
    /// `--pg-listen`.
    pub listen: Option<SocketAddr>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--tls-required`.
    pub tls_required: Option<bool>,
    /// `--max-connections`.
    pub max_connections: Option<usize>,
}

/// `[flight]`: the Arrow Flight SQL front end.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlightFile {
    /// `--flight-listen`.
    pub listen: Option<SocketAddr>,
    /// `--flight-user`, every `NAME:PASSWORD`.
    pub users: Option<Vec<String>>,
    /// `--statement-timeout`, e.g. `"30s"`.
    #[serde(default, deserialize_with = "duration")]
    pub statement_timeout: Option<Duration>,
}

/// `[pull]`: how an operator subscribes to KubeArmor.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullFile {
    /// `--alert-filter`.
    pub alert_filter: Option<String>,
    /// `--log-filter`.
    pub log_filter: Option<String>,
    /// `--kubearmor-ca`.
    pub kubearmor_ca: Option<PathBuf>,
    /// `--kubearmor-tls-domain`.
    pub kubearmor_tls_domain: Option<String>,
}

/// `[store]`: how an operator stores events.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// `--flush-interval`, e.g. `"10s"`.
    #[serde(default, deserialize_with = "duration")]
    pub flush_interval: Option<Duration>,
    /// `--flush-rows`.
    pub flush_rows: Option<usize>,
    /// `--flush-bytes`.
    pub flush_bytes: Option<usize>,
    /// `--retention`, e.g. `"14d"`.
    #[serde(default, deserialize_with = "duration")]
    pub retention: Option<Duration>,
}

/// `[cluster]`: node-to-node security, the same on every node.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// `--cluster-ca`.
    pub ca: Option<PathBuf>,
    /// `--cluster-cert`.
    pub cert: Option<PathBuf>,
    /// `--cluster-key`.
    pub key: Option<PathBuf>,
    /// `--cluster-tls-domain`.
    pub tls_domain: Option<String>,
    /// `--cluster-token`.
    pub token: Option<String>,
}

impl fmt::Debug for ClusterFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterFile")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("tls_domain", &self.tls_domain)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A duration written as humantime text (`"10s"`, `"14d"`).
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
}

/// A byte count: a number of bytes, or a string with a unit (`"512MiB"`, as the flag).
fn byte_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Count {
        Bytes(usize),
        Text(String),
    }
    match Count::deserialize(d)? {
        Count::Bytes(0) => Err(serde::de::Error::custom("0 is out of range")),
        Count::Bytes(n) => Ok(Some(n)),
        Count::Text(text) => crate::args::parse_bytes(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// One `[[users]]` entry: a name and either PostgreSQL's SCRAM secret or, for
/// development, a cleartext password.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// The PostgreSQL user name.
    pub name: String,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as PostgreSQL stores it.
    pub scram_sha_256: Option<String>,
    /// A cleartext password (development only).
    pub password: Option<String>,
}

impl fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserEntry")
            .field("name", &self.name)
            .field("scram_sha_256", &self.scram_sha_256.as_ref().map(|_| "…"))
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish()
    }
}

/// The PostgreSQL users of `entries`, with their secrets checked.
pub fn users(entries: &[UserEntry]) -> Result<Users, String> {
    let mut users = Users::default();
    for user in entries {
        let added = match (&user.scram_sha_256, &user.password) {
            (Some(secret), None) => users.add_scram_secret(&user.name, secret),
            (None, Some(password)) => users.add_password(&user.name, password),
            _ => {
                return Err(format!(
                    "user {:?}: give exactly one of scram_sha_256 and password",
                    user.name
                ));
            }
        };
        added.map_err(|e| e.to_string())?;
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn example(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/config")
            .join(name)
    }

    #[test]
    fn every_example_config_loads() {
        let up = RoleFile::<UpFile>::load(Some(&example("up.toml"))).unwrap();
        assert!(!users(&up.role.users).unwrap().is_empty());
        assert!(up.role.store.flush_interval.is_some());
        let master = RoleFile::<MasterFile>::load(Some(&example("master.toml"))).unwrap();
        assert!(master.role.listen.is_some());
        let operator = RoleFile::<OperatorFile>::load(Some(&example("operator.toml"))).unwrap();
        assert!(operator.role.kubearmor.is_some_and(|k| !k.is_empty()));
        assert!(operator.role.cluster.ca.is_some());
        let query = RoleFile::<QueryFile>::load(Some(&example("query.toml"))).unwrap();
        assert!(!users(&query.role.users).unwrap().is_empty());
        let sim = RoleFile::<SimFile>::load(Some(&example("kubearmor-sim.toml"))).unwrap();
        assert!(sim.role.rate.is_some());
    }

    #[test]
    fn each_user_needs_exactly_one_secret() {
        let both = "[[users]]\nname = \"a\"\npassword = \"x\"\nscram_sha_256 = \"y\"\n";
        let none = "[[users]]\nname = \"a\"\n";
        for text in [both, none] {
            let file = RoleFile::<UpFile>::parse(text).unwrap();
            let err = users(&file.role.users).unwrap_err();
            assert!(err.contains("exactly one"), "{err}");
        }
    }

    #[test]
    fn typos_are_errors_and_secrets_stay_out_of_messages() {
        let err = RoleFile::<UpFile>::parse("[[users]]\nname = \"a\"\npasword = \"hunter2\"\n")
            .unwrap_err();
        assert!(err.contains("pasword"), "{err}");
        let bad = "[[users]]\nname = \"a\"\nscram_sha_256 = \"hunter2\"\n";
        let file = RoleFile::<UpFile>::parse(bad).unwrap();
        let err = users(&file.role.users).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        let err = RoleFile::<MasterFile>::parse("[pg]\nlisten = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(err.contains("pg"), "{err}");
        let err =
            RoleFile::<OperatorFile>::parse("[store]\nflush_interval = \"soon\"\n").unwrap_err();
        assert!(err.contains("soon"), "{err}");
    }
}
