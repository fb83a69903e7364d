//! The query node's front ends, PostgreSQL and Arrow Flight SQL, bound and served together
//! over one query engine.

use std::net::SocketAddr;

use armorlake_query::QueryEngine;
use armorlake_query::flight::FlightOptions;
use armorlake_query::pg::PgOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// Where the front ends listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// The PostgreSQL wire protocol.
    pub pg: SocketAddr,
    /// Arrow Flight SQL (gRPC).
    pub flight: SocketAddr,
}

/// The front ends' configuration.
#[derive(Debug, Clone)]
pub struct FrontEnds {
    /// The PostgreSQL listener.
    pub pg_listen: SocketAddr,
    /// PostgreSQL's users, TLS and limits.
    pub pg: PgOptions,
    /// The Flight SQL listener.
    pub flight_listen: SocketAddr,
    /// Flight SQL's users and TLS.
    pub flight: FlightOptions,
    /// Most bytes of memory one statement may hold on the query node; `None`: no limit.
    pub query_memory_limit: Option<usize>,
}

/// The bound listeners, ready to serve.
#[derive(Debug)]
pub(crate) struct Bound {
    pg: TcpListener,
    pg_options: PgOptions,
    flight: TcpListener,
    flight_options: FlightOptions,
    /// Their addresses.
    pub addrs: Listening,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

impl FrontEnds {
    /// Binds both listeners, refusing an unauthenticated Flight SQL listener that is not on
    /// loopback.
    pub(crate) async fn bind(self) -> Result<Bound> {
        armorlake_query::auth::check_listener(
            "Flight SQL",
            self.flight_listen,
            self.flight.credentials.as_ref(),
        )
        .map_err(Error::Config)?;
        let pg = TcpListener::bind(self.pg_listen).await.map_err(io(format!(
            "binding PostgreSQL listener {}",
            self.pg_listen
        )))?;
        let flight = TcpListener::bind(self.flight_listen)
            .await
            .map_err(io(format!(
                "binding Flight SQL listener {}",
                self.flight_listen
            )))?;
        let addrs = Listening {
            pg: pg
                .local_addr()
                .map_err(io("reading the PostgreSQL address".into()))?,
            flight: flight
                .local_addr()
                .map_err(io("reading the Flight SQL address".into()))?,
        };
        Ok(Bound {
            pg,
            pg_options: self.pg,
            flight,
            flight_options: self.flight,
            addrs,
        })
    }
}

impl Bound {
    /// Serves both until `shutdown`. When one fails, `shutdown` is cancelled so the node
    /// stops rather than half-serving.
    pub(crate) async fn serve(
        self,
        engine: &QueryEngine,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let pg = async {
            let result = armorlake_query::pg::serve(
                self.pg,
                engine,
                self.pg_options,
                shutdown.clone().cancelled_owned(),
            )
            .await;
            if result.is_err() {
                shutdown.cancel();
            }
            result.map_err(io("serving PostgreSQL".into()))
        };
        let flight = async {
            let result = armorlake_query::flight::serve(
                self.flight,
                engine,
                self.flight_options,
                shutdown.clone().cancelled_owned(),
            )
            .await;
            if result.is_err() {
                shutdown.cancel();
            }
            result.map_err(|e| Error::Io {
                context: "serving Flight SQL".into(),
                source: std::io::Error::other(e),
            })
        };
        let (pg, flight) = tokio::join!(pg, flight);
        pg.and(flight)
    }
}
