//! Node-to-node security: every gRPC link between armorlake nodes (operator and query node →
//! master, query node → operator worker) can run over TLS with a cluster CA and client
//! certificates (mTLS), carry a shared bearer token, or both.
//!
//! [`ClusterSecurity`] is configured once, the same on every node. Servers accept
//! connections through [`ClusterSecurity::incoming`] (TLS handshake, client certificate
//! checked against the cluster CA) and check the token with [`ClusterSecurity::token_layer`]
//! (a tonic layer on every service). Clients build their endpoints with
//! [`ClusterSecurity::endpoint`] and send the token through [`TokenChannel`]. A refused peer
//! is logged by the server as a warning naming its address, and the client gets an error
//! saying why.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::codegen::Service;
use tonic::codegen::http::{self, HeaderValue};
use tonic::transport::server::Connected;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::{Error, Result};

/// The gRPC metadata key the token travels in.
const AUTHORIZATION: &str = "authorization";
/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS material of a node: the cluster CA every peer's certificate must chain to, and this
/// node's own certificate and key (used as server and as client certificate).
#[derive(Clone)]
pub struct ClusterTls {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    server: Arc<rustls::ServerConfig>,
    domain: Option<String>,
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTls")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// Checks and keeps PEM texts: the cluster CA certificate(s), this node's certificate
    /// chain and its private key (PKCS#8, PKCS#1 or SEC1). `domain` is the name a client
    /// checks the server's certificate against instead of the host it dials.
    pub fn from_pem(
        ca_pem: Vec<u8>,
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        domain: Option<String>,
    ) -> Result<ClusterTls> {
        let invalid = |what: &str, e: &dyn fmt::Display| Error::Security(format!("{what}: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca_pem) {
            let cert = cert.map_err(|e| invalid("cluster CA", &e))?;
            roots.add(cert).map_err(|e| invalid("cluster CA", &e))?;
        }
        if roots.is_empty() {
            return Err(invalid("cluster CA", &"no certificate in the PEM text"));
        }
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("cluster certificate", &e))?;
        if chain.is_empty() {
            return Err(invalid(
                "cluster certificate",
                &"no certificate in the PEM text",
            ));
        }
        let key =
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| invalid("cluster key", &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| invalid("cluster CA", &e))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("cluster TLS", &e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| invalid("cluster certificate and key", &e))?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        Ok(ClusterTls {
            ca_pem,
            cert_pem,
            key_pem,
            server: Arc::new(server),
            domain,
        })
    }
}

/// How nodes authenticate each other; the default trusts every peer (plain gRPC).
#[derive(Debug, Clone, Default)]
pub struct ClusterSecurity {
    tls: Option<ClusterTls>,
    token: Option<Arc<str>>,
}

impl ClusterSecurity {
    /// No TLS, no token: every peer is trusted.
    pub fn none() -> ClusterSecurity {
        ClusterSecurity::default()
    }

    /// Mutual TLS with `tls` and, if given, a shared bearer token too.
    pub fn new(tls: Option<ClusterTls>, token: Option<String>) -> Result<ClusterSecurity> {
        let token = match token {
            Some(t) if t.is_empty() => {
                return Err(Error::Security("the cluster token is empty".into()));
            }
            Some(t) if HeaderValue::from_str(&format!("Bearer {t}")).is_err() => {
                return Err(Error::Security(
                    "the cluster token must be printable ASCII".into(),
                ));
            }
            t => t.map(Arc::from),
        };
        Ok(ClusterSecurity { tls, token })
    }

    /// Whether links use TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether links carry a token.
    pub fn uses_token(&self) -> bool {
        self.token.is_some()
    }

    /// A client endpoint for `address` (`host:port` or a URL): `https` with the cluster CA
    /// and this node's certificate when TLS is on.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint> {
        let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{rest}");
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| Error::Security(format!("address {address:?}: {e}")))?;
        let Some(tls) = &self.tls else {
            return Ok(endpoint);
        };
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&tls.ca_pem))
            .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
        if let Some(domain) = &tls.domain {
            config = config.domain_name(domain.clone());
        }
        endpoint
            .tls_config(config)
            .map_err(|e| Error::Security(format!("cluster TLS for {url}: {e}")))
    }

    /// Wraps a client channel so every request carries the token (if any).
    pub fn channel<S>(&self, inner: S) -> TokenChannel<S> {
        let header = self.token.as_ref().and_then(|t| {
            let mut value = HeaderValue::from_str(&format!("Bearer {t}")).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        TokenChannel { inner, header }
    }

    /// The accepted connections of `listener`: plain TCP, or TLS streams whose client
    /// presented a certificate of the cluster CA. Refused handshakes are logged (a warning
    /// naming the peer) and dropped; the stream goes on.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> impl Stream<Item = std::io::Result<Connection>> + Send + 'static {
        let acceptor = self
            .tls
            .as_ref()
            .map(|tls| TlsAcceptor::from(tls.server.clone()));
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    _ = sender.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::debug!(error = %e, "accepting a node connection failed");
                            continue;
                        }
                    },
                };
                // Small gRPC writes must not wait for delayed ACKs (Nagle).
                let _ = tcp.set_nodelay(true);
                match &acceptor {
                    None => {
                        if sender.send(Ok(Connection::Plain(tcp))).await.is_err() {
                            return;
                        }
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        let sender = sender.clone();
                        tokio::spawn(async move {
                            match handshake(acceptor, tcp).await {
                                Ok(tls) => {
                                    let _ = sender.send(Ok(Connection::Tls(Box::new(tls)))).await;
                                }
                                // Closed before saying anything: a liveness probe (a
                                // TCP connect), not a peer to warn about.
                                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                                    tracing::debug!(%peer, "closed before the TLS handshake");
                                }
                                Err(e) => tracing::warn!(
                                    %peer,
                                    "refused a node connection: TLS handshake failed: {e} \
                                     (is it configured with a certificate of the cluster CA?)"
                                ),
                            }
                        });
                    }
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(receiver)
    }

    /// The server layer that checks the token of every request (passes everything when no
    /// token is configured).
    pub fn token_layer(&self) -> TokenLayer {
        tonic::service::InterceptorLayer::new(TokenCheck {
            expected: self.token.clone(),
        })
    }
}

/// The server layer [`ClusterSecurity::token_layer`] returns.
pub type TokenLayer = tonic::service::InterceptorLayer<TokenCheck>;

async fn handshake(acceptor: TlsAcceptor, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no handshake within 10 s",
        )),
    }
}

/// An accepted node connection, plain or TLS.
#[derive(Debug)]
pub enum Connection {
    /// Plain TCP (no cluster TLS configured).
    Plain(TcpStream),
    /// TLS with a verified client certificate.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connected for Connection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            Connection::Plain(tcp) => tcp.connect_info(),
            Connection::Tls(tls) => tls.get_ref().0.connect_info(),
        }
    }
}

impl tokio::io::AsyncRead for Connection {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Connection::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Connection {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Connection::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Connection::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Connection::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            Connection::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Plain(s) => s.is_write_vectored(),
            Connection::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The server-side token check (a tonic interceptor).
#[derive(Clone)]
pub struct TokenCheck {
    expected: Option<Arc<str>>,
}

impl fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCheck")
            .field("enabled", &self.expected.is_some())
            .finish()
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> std::result::Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let peer = request.remote_addr().map_or_else(
            || "an unknown peer".to_string(),
            |a: SocketAddr| a.to_string(),
        );
        match given {
            Some(token) if same(token.as_bytes(), expected.as_bytes()) => Ok(request),
            Some(_) => {
                tracing::warn!(%peer, "refused a node request: wrong cluster token");
                Err(Status::unauthenticated(
                    "refused by the cluster: wrong cluster token",
                ))
            }
            None => {
                tracing::warn!(%peer, "refused a node request: no cluster token");
                Err(Status::unauthenticated(
                    "refused by the cluster: this node sent no cluster token (set --cluster-token)",
                ))
            }
        }
    }
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A client channel that adds the cluster token to every request.
#[derive(Debug, Clone)]
pub struct TokenChannel<S> {
    inner: S,
    header: Option<HeaderValue>,
}

impl<S, B> Service<http::Request<B>> for TokenChannel<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(header) = &self.header {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, header.clone());
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }

    #[test]
    fn bad_tokens_and_pem_are_refused() {
        assert!(ClusterSecurity::new(None, Some(String::new())).is_err());
        assert!(ClusterSecurity::new(None, Some("a\nb".into())).is_err());
        let err = ClusterTls::from_pem(b"junk".to_vec(), vec![], vec![], None).unwrap_err();
        assert!(err.to_string().contains("cluster CA"), "{err}");
    }
}
