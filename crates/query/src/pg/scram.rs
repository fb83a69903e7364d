//! SCRAM-SHA-256 (RFC 5802, RFC 7677) on the server side, verified against PostgreSQL's
//! stored secret `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
//!
//! pgwire's own SCRAM handler needs the salted password, a password equivalent that
//! PostgreSQL's secret deliberately does not contain, so the exchange is done here with the
//! stored and server keys only: the server never holds anything a client could log in with.

use std::fmt;
use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};

/// Iterations used for secrets made from a development password (PostgreSQL's default).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// The mechanism name armorlake offers.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// A user's SCRAM-SHA-256 verifier, as PostgreSQL stores it in `pg_authid.rolpassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the keys: they are what a brute-force attack needs.
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Why a SCRAM secret or message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The stored secret is not in PostgreSQL's format.
    #[error(
        "not a SCRAM-SHA-256 secret (expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>): {0}"
    )]
    BadSecret(&'static str),
    /// The client sent a malformed or unexpected SCRAM message.
    #[error("malformed SCRAM message: {0}")]
    BadMessage(&'static str),
    /// The proof did not match: wrong password (or unknown user).
    #[error("wrong password")]
    WrongPassword,
    /// The system random number generator failed.
    #[error("no randomness available")]
    Random,
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn decode_key(text: &str) -> Result<[u8; 32], ScramError> {
    let bytes = B64
        .decode(text)
        .map_err(|_| ScramError::BadSecret("a key is not base64"))?;
    bytes
        .try_into()
        .map_err(|_| ScramError::BadSecret("a key is not 32 bytes"))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], ScramError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| ScramError::Random)?;
    Ok(out)
}

impl ScramSecret {
    /// Parses PostgreSQL's `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(text: &str) -> Result<Self, ScramError> {
        let rest = text
            .trim()
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(ScramError::BadSecret("it must start with SCRAM-SHA-256$"))?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or(ScramError::BadSecret("missing '$' before the keys"))?;
        let (iterations, salt) = params.split_once(':').ok_or(ScramError::BadSecret(
            "missing ':' between iterations and salt",
        ))?;
        let (stored, server) = keys
            .split_once(':')
            .ok_or(ScramError::BadSecret("missing ':' between the keys"))?;
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|i| *i > 0)
            .ok_or(ScramError::BadSecret("iterations is not a positive number"))?;
        let salt = B64
            .decode(salt)
            .map_err(|_| ScramError::BadSecret("the salt is not base64"))?;
        if salt.is_empty() {
            return Err(ScramError::BadSecret("the salt is empty"));
        }
        Ok(ScramSecret {
            iterations,
            salt,
            stored_key: decode_key(stored)?,
            server_key: decode_key(server)?,
        })
    }

    /// The secret PostgreSQL would store for `password` with this salt and iteration count.
    pub fn from_password_with(password: &str, salt: &[u8], iterations: u32) -> Self {
        // SASLprep as libpq does; a password that cannot be prepared is used as is.
        let prepared = stringprep::saslprep(password)
            .map(|p| p.into_owned())
            .unwrap_or_else(|_| password.to_string());
        let mut salted = [0u8; 32];
        let rounds = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            salt,
            prepared.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        ScramSecret {
            iterations: rounds.get(),
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// Whether `password` is the password this secret was made from (for front ends that
    /// receive a password, such as Flight SQL's basic authentication).
    pub fn verifies(&self, password: &str) -> bool {
        let candidate = ScramSecret::from_password_with(password, &self.salt, self.iterations);
        let same = |a: &[u8; 32], b: &[u8; 32]| {
            a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        };
        same(&candidate.stored_key, &self.stored_key)
            & same(&candidate.server_key, &self.server_key)
    }

    /// A secret for `password` with a fresh random salt (development passwords).
    pub fn from_password(password: &str) -> Result<Self, ScramError> {
        let salt = random_bytes::<16>()?;
        Ok(Self::from_password_with(
            password,
            &salt,
            DEFAULT_ITERATIONS,
        ))
    }

    /// A secret nobody can log in with, shaped like a real one, so an unknown user goes
    /// through the whole exchange and fails like a wrong password (as PostgreSQL does).
    pub fn impossible() -> Result<Self, ScramError> {
        Ok(ScramSecret {
            iterations: DEFAULT_ITERATIONS,
            salt: random_bytes::<16>()?.to_vec(),
            stored_key: random_bytes::<32>()?,
            server_key: random_bytes::<32>()?,
        })
    }

    /// The secret in PostgreSQL's text format.
    pub fn to_postgres(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

/// The server's half of one exchange, between the server-first and client-final messages.
#[derive(Debug)]
pub struct ServerFirst {
    secret: ScramSecret,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ServerFirst {
    /// Answers the client-first message; returns the state to keep and the server-first
    /// message to send.
    pub fn start(client_first: &[u8], secret: ScramSecret) -> Result<(Self, String), ScramError> {
        let text = std::str::from_utf8(client_first)
            .map_err(|_| ScramError::BadMessage("client-first is not UTF-8"))?;
        // gs2-header: channel binding flag, optional authzid, then the bare message.
        let (cbind, rest) = text
            .split_once(',')
            .ok_or(ScramError::BadMessage("client-first has no GS2 header"))?;
        match cbind {
            "n" | "y" => {}
            _ if cbind.starts_with("p=") => {
                return Err(ScramError::BadMessage(
                    "channel binding was requested but SCRAM-SHA-256-PLUS is not offered",
                ));
            }
            _ => return Err(ScramError::BadMessage("bad channel binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::BadMessage("client-first has no bare message"))?;
        if !authzid.is_empty() {
            return Err(ScramError::BadMessage(
                "authorization identities are not supported",
            ));
        }
        let gs2_header = format!("{cbind},{authzid},");
        // The user name in the message is ignored: PostgreSQL (and libpq, which sends
        // `n=`) use the one from the startup message.
        let client_nonce = bare
            .split(',')
            .find_map(|attr| attr.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b','))
            .ok_or(ScramError::BadMessage("client-first has no nonce"))?;
        let nonce = format!("{client_nonce}{}", B64.encode(random_bytes::<18>()?));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&secret.salt),
            secret.iterations
        );
        Ok((
            ServerFirst {
                secret,
                gs2_header,
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
            },
            server_first,
        ))
    }

    /// Checks the client-final message; returns the server-final message on success.
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::BadMessage("client-final is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::BadMessage("client-final has no proof"))?;
        let mut attrs = without_proof.split(',');
        let binding =
            attrs
                .next()
                .and_then(|a| a.strip_prefix("c="))
                .ok_or(ScramError::BadMessage(
                    "client-final has no channel binding",
                ))?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::BadMessage("client-final has no nonce"))?;
        if B64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::BadMessage("channel binding does not match"));
        }
        if nonce != self.nonce {
            return Err(ScramError::BadMessage("nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::BadMessage("proof is not base64"))?;
        if proof.len() != 32 {
            return Err(ScramError::WrongPassword);
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac_sha256(&self.secret.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (k, (p, s)) in client_key
            .iter_mut()
            .zip(proof.iter().zip(client_signature.iter()))
        {
            *k = p ^ s;
        }
        // Constant-time comparison of H(ClientKey) with StoredKey.
        let diff = sha256(&client_key)
            .iter()
            .zip(self.secret.stored_key.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(ScramError::WrongPassword);
        }
        let server_signature = hmac_sha256(&self.secret.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// What a client does: returns (client-final, expected server-final).
    fn client_final(
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, String) {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = attrs[0].strip_prefix("r=").unwrap();
        let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        let iterations: u32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations).unwrap(),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored_key = sha256(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac_sha256(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac_sha256(&salted, b"Server Key");
        let verifier = hmac_sha256(&server_key, auth.as_bytes());
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            format!("v={}", B64.encode(verifier)),
        )
    }

    fn exchange(secret: ScramSecret, password: &str) -> Result<(), ScramError> {
        let bare = "n=,r=rOprNGfwEbeRWgbNEkqO";
        let (state, server_first) = ServerFirst::start(format!("n,,{bare}").as_bytes(), secret)?;
        let (final_msg, expected) = client_final(password, bare, &server_first);
        let server_final = state.finish(final_msg.as_bytes())?;
        assert_eq!(server_final, expected);
        Ok(())
    }

    /// Made by PostgreSQL 15: `SET password_encryption = 'scram-sha-256'; CREATE ROLE u
    /// PASSWORD 'pencil'; SELECT rolpassword FROM pg_authid WHERE rolname = 'u'`.
    const POSTGRES_SECRET: &str = "SCRAM-SHA-256$4096:DUoKuTGQeOkIXHqlkb9etg==$\
        Te5PxVcTfGRbvbBKFYKIsQ2OiibuWQyCbKbWsPE2Q1g=:LP2ucpi8ktp0SJA7KUTgqN1ZLmowAfSgX/5ZsR/rUVI=";

    #[test]
    fn a_postgres_secret_verifies_its_password_and_nothing_else() {
        let secret = ScramSecret::parse(POSTGRES_SECRET).unwrap();
        exchange(secret.clone(), "pencil").unwrap();
        assert_eq!(exchange(secret, "pencil2"), Err(ScramError::WrongPassword));
    }

    #[test]
    fn development_passwords_round_trip_through_the_postgres_format() {
        let secret = ScramSecret::from_password("s3cret é").unwrap();
        let again = ScramSecret::parse(&secret.to_postgres()).unwrap();
        assert_eq!(secret, again);
        exchange(again, "s3cret é").unwrap();
    }

    #[test]
    fn malformed_secrets_and_messages_are_rejected() {
        for bad in [
            "",
            "md5abc",
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA",
            "SCRAM-SHA-256$x:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA",
        ] {
            assert!(ScramSecret::parse(bad).is_err(), "{bad:?} accepted");
        }
        let secret = ScramSecret::from_password("x").unwrap();
        for bad in [
            "",
            "n",
            "n,,n=",
            "p=tls-server-end-point,,n=,r=abc",
            "n,a=u,n=,r=abc",
        ] {
            assert!(
                ServerFirst::start(bad.as_bytes(), secret.clone()).is_err(),
                "{bad:?} accepted"
            );
        }
        let (state, _) = ServerFirst::start(b"n,,n=,r=abc", secret).unwrap();
        assert!(state.finish(b"c=biws,r=wrong,p=AAAA").is_err());
    }

    #[test]
    fn an_impossible_secret_rejects_everything() {
        let secret = ScramSecret::impossible().unwrap();
        assert_eq!(exchange(secret, ""), Err(ScramError::WrongPassword));
    }

    #[test]
    fn debug_output_hides_the_keys() {
        let secret = ScramSecret::from_password("x").unwrap();
        let text = format!("{secret:?}");
        assert!(!text.contains(&B64.encode(secret.stored_key)), "{text}");
    }
}
