//! Flight SQL authentication: a handshake with HTTP basic credentials returns a bearer
//! token, which every later call carries in its `authorization` header.
//!
//! One interceptor checks every call, the handshake included, so no method can forget to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::auth::Credentials;

/// How long a bearer token stays valid.
const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Basic credentials' base64, padded or not (Go's Flight client leaves the padding out).
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The user a call was authenticated as, in the request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct User(pub String);

/// The name of a client when no users are configured.
const ANONYMOUS: &str = "anonymous";

/// Verifies credentials and keeps the bearer tokens it handed out.
#[derive(Debug)]
pub(crate) struct Auth {
    credentials: Arc<dyn Credentials>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl Auth {
    pub(crate) fn new(credentials: Arc<dyn Credentials>) -> Self {
        Auth {
            credentials,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Who the caller is, from its `authorization` header: `Basic` credentials or a `Bearer`
    /// token from the handshake. With no users configured, everyone is let in (the
    /// listener is loopback-only then).
    pub(crate) fn authenticate(&self, metadata: &MetadataMap) -> Result<User, Status> {
        let open = !self.credentials.has_users();
        let header = match metadata.get("authorization") {
            Some(value) => value
                .to_str()
                .map_err(|_| Status::unauthenticated("malformed authorization header"))?,
            None if open => return Ok(User(ANONYMOUS.into())),
            None => {
                return Err(Status::unauthenticated(
                    "authentication required: handshake with a user name and password",
                ));
            }
        };
        if let Some(token) = strip_scheme(header, "Bearer") {
            return match self.token_user(token) {
                Some(user) => Ok(User(user)),
                None if open => Ok(User(ANONYMOUS.into())),
                None => Err(Status::unauthenticated(
                    "invalid or expired token: handshake again",
                )),
            };
        }
        if let Some(encoded) = strip_scheme(header, "Basic") {
            let (user, password) = decode_basic(encoded)?;
            if self.credentials.verify(&user, &password) {
                return Ok(User(user));
            }
            if open {
                return Ok(User(ANONYMOUS.into()));
            }
            tracing::info!(%user, "Flight SQL: bad user name or password");
            return Err(Status::unauthenticated("bad user name or password"));
        }
        if open {
            return Ok(User(ANONYMOUS.into()));
        }
        Err(Status::unauthenticated(
            "unsupported authorization scheme: use Basic or Bearer",
        ))
    }

    /// A new bearer token for `user`.
    pub(crate) fn issue(&self, user: &str) -> String {
        let token: String = rand::random::<[u8; 32]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, (_, expires)| *expires > now);
        tokens.insert(token.clone(), (user.to_string(), now + TOKEN_LIFETIME));
        token
    }

    fn token_user(&self, token: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(token)
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(user, _)| user.clone())
    }
}

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

fn decode_basic(encoded: &str) -> Result<(String, String), Status> {
    let malformed = || Status::unauthenticated("malformed basic credentials");
    let bytes = BASIC.decode(encoded).map_err(|_| malformed())?;
    let text = String::from_utf8(bytes).map_err(|_| malformed())?;
    let (user, password) = text.split_once(':').ok_or_else(malformed)?;
    Ok((user.to_string(), password.to_string()))
}

/// The tonic interceptor in front of the Flight service.
#[derive(Debug, Clone)]
pub(crate) struct Gate(pub Arc<Auth>);

impl Interceptor for Gate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let user = self.0.authenticate(request.metadata())?;
        request.extensions_mut().insert(user);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::PasswordUsers;

    fn with_header(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    fn basic(user: &str, password: &str) -> MetadataMap {
        use base64::engine::general_purpose::STANDARD;
        with_header(&format!(
            "Basic {}",
            STANDARD.encode(format!("{user}:{password}"))
        ))
    }

    #[test]
    fn users_need_the_right_password_or_a_token() {
        let auth = Auth::new(PasswordUsers::parse(["ana:pw"]).unwrap().into_credentials());
        assert_eq!(auth.authenticate(&basic("ana", "pw")).unwrap().0, "ana");
        // Unpadded, as Go's client sends it ("ana:pw" is 6 bytes: padded "YW5hOnB3").
        let unpadded = auth.authenticate(&with_header("Basic YW5hOnB3")).unwrap();
        assert_eq!(unpadded.0, "ana");
        let auth = Auth::new(
            PasswordUsers::parse(["ana:pwd"])
                .unwrap()
                .into_credentials(),
        );
        assert!(auth.authenticate(&with_header("Basic YW5hOnB3ZA")).is_ok());
        assert!(
            auth.authenticate(&with_header("Basic YW5hOnB3ZA=="))
                .is_ok()
        );
        let bad = auth.authenticate(&basic("ana", "nope")).unwrap_err();
        assert_eq!(bad.code(), tonic::Code::Unauthenticated);
        assert!(auth.authenticate(&MetadataMap::new()).is_err());
        assert!(auth.authenticate(&with_header("Bearer forged")).is_err());

        let token = auth.issue("ana");
        let user = auth.authenticate(&with_header(&format!("Bearer {token}")));
        assert_eq!(user.unwrap().0, "ana");
    }

    #[test]
    fn without_users_everyone_is_let_in() {
        let auth = Auth::new(PasswordUsers::default().into_credentials());
        assert!(auth.authenticate(&MetadataMap::new()).is_ok());
        assert!(auth.authenticate(&basic("x", "y")).is_ok());
        assert!(auth.authenticate(&with_header("Bearer whatever")).is_ok());
    }
}
