//! Who may query: the users the front ends check passwords against.
//!
//! The front ends ask a [`Credentials`] verifier, never a user list directly, so every front
//! end (Flight SQL now, PostgreSQL's SCRAM users later) can share one source of users.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Checks a user's password.
pub trait Credentials: Send + Sync + std::fmt::Debug {
    /// True when at least one user is configured. With none, a front end trusts every
    /// client, which is only allowed on a loopback listener ([`check_listener`]).
    fn has_users(&self) -> bool;

    /// True when `password` is `user`'s password.
    fn verify(&self, user: &str, password: &str) -> bool;
}

/// Users with plain passwords, given on the command line (`--flight-user name:password`);
/// meant for development and tests.
#[derive(Default, Clone)]
pub struct PasswordUsers {
    users: HashMap<String, String>,
}

impl std::fmt::Debug for PasswordUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the passwords.
        f.debug_struct("PasswordUsers")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PasswordUsers {
    /// Users from `name:password` pairs.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut users = HashMap::new();
        for pair in pairs {
            let (name, password) = pair
                .split_once(':')
                .ok_or_else(|| format!("expected NAME:PASSWORD, got {:?}", redact(pair)))?;
            if name.is_empty() {
                return Err("a user needs a name (NAME:PASSWORD)".into());
            }
            users.insert(name.to_string(), password.to_string());
        }
        Ok(PasswordUsers { users })
    }

    /// Shares them as a verifier.
    pub fn into_credentials(self) -> Arc<dyn Credentials> {
        Arc::new(self)
    }
}

/// What a malformed pair can show of itself: its length only, as it may be a password.
fn redact(pair: &str) -> String {
    format!("<{} characters>", pair.chars().count())
}

impl Credentials for PasswordUsers {
    fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    fn verify(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(expected) => constant_time_eq(expected.as_bytes(), password.as_bytes()),
            None => false,
        }
    }
}

/// Compares without stopping at the first difference (the length still shows).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses to serve without users anywhere but on a loopback address: with no users, every
/// client is trusted.
pub fn check_listener(
    what: &str,
    listen: SocketAddr,
    credentials: &dyn Credentials,
) -> Result<(), String> {
    if credentials.has_users() || listen.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "{what} listens on {listen}, which is not a loopback address, but no users are \
             configured: add users or listen on 127.0.0.1"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_password() {
        let users = PasswordUsers::parse(["ana:s3cret", "bo:x:y"]).unwrap();
        assert!(users.verify("ana", "s3cret"));
        assert!(users.verify("bo", "x:y"));
        assert!(!users.verify("ana", "s3cre"));
        assert!(!users.verify("ana", "s3cret!"));
        assert!(!users.verify("nobody", "s3cret"));
    }

    #[test]
    fn malformed_pairs_are_refused_without_echoing_them() {
        let err = PasswordUsers::parse(["justapassword"]).unwrap_err();
        assert!(!err.contains("justapassword"), "{err}");
        assert!(PasswordUsers::parse([":pw"]).is_err());
    }

    #[test]
    fn no_users_only_on_loopback() {
        let none = PasswordUsers::default();
        let some = PasswordUsers::parse(["a:b"]).unwrap();
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:1".parse().unwrap();
        assert!(check_listener("x", lo, &none).is_ok());
        assert!(check_listener("x", any, &none).is_err());
        assert!(check_listener("x", any, &some).is_ok());
    }
}
