//! armorlake's configuration file (TOML, given with `--config FILE`).
//!
//! Today it holds the PostgreSQL users. It is meant to grow into the layered configuration
//! (defaults < `ARMORLAKE_*` environment < this file < flags): each section is a typed
//! struct with defaults, and unknown keys are errors so a typo never goes unnoticed.

use std::fmt;
use std::path::Path;

use armorlake_query::pg::Users;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Who may connect over the PostgreSQL protocol (`[[users]]`).
    #[serde(default)]
    pub users: Vec<UserEntry>,
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

impl ConfigFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading config {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }

    /// Parses the TOML text of a configuration file.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The PostgreSQL users, with their secrets checked.
    pub fn users(&self) -> Result<Users, String> {
        let mut users = Users::default();
        for user in &self.users {
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/armorlake.example.toml");
        let config = ConfigFile::load(&path).unwrap();
        let users = config.users().unwrap();
        assert!(!users.is_empty());
    }

    #[test]
    fn each_user_needs_exactly_one_secret() {
        let both = "[[users]]\nname = \"a\"\npassword = \"x\"\nscram_sha_256 = \"y\"\n";
        let none = "[[users]]\nname = \"a\"\n";
        for text in [both, none] {
            let err = ConfigFile::parse(text).unwrap().users().unwrap_err();
            assert!(err.contains("exactly one"), "{err}");
        }
    }

    #[test]
    fn typos_are_errors_and_secrets_stay_out_of_messages() {
        let err =
            ConfigFile::parse("[[users]]\nname = \"a\"\npasword = \"hunter2\"\n").unwrap_err();
        assert!(err.contains("pasword"), "{err}");
        let bad = "[[users]]\nname = \"a\"\nscram_sha_256 = \"hunter2\"\n";
        let err = ConfigFile::parse(bad).unwrap().users().unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(ConfigFile::parse("").unwrap().users().unwrap().is_empty());
    }
}
