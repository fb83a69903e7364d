//! The Flight SQL front end's limits, the counterparts of the PostgreSQL ones: at most
//! `max_queries` statements stream at once (PostgreSQL's `max_connections`, SQLSTATE 53300),
//! and each stops at its deadline (`statement_timeout`, SQLSTATE 57014).
//!
//! A gRPC client states its own deadline in the `grpc-timeout` header (pyarrow's
//! `FlightCallOptions(timeout=…)`, ADBC's `adbc.flight.sql.rpc.timeout_seconds.fetch`). tonic
//! applies it only until the response headers are sent, which for DoGet is before the first
//! batch; [`Limits::guard`] holds it over the whole stream, so a query stops when its
//! caller has stopped waiting.
//!
//! Statements run on the query runtime ([`crate::runtime`]), so a busy query never keeps
//! this server from noticing a deadline or refusing a client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

/// How many statements may stream at once and for how long.
#[derive(Debug)]
pub(crate) struct Limits {
    slots: Arc<Semaphore>,
    max_queries: usize,
    statement_timeout: Option<Duration>,
    runtime: Handle,
}

/// A running statement's slot, deadline and runtime.
#[derive(Debug)]
pub(crate) struct Admission {
    permit: OwnedSemaphorePermit,
    deadline: Option<Instant>,
    pub(crate) runtime: Handle,
}

impl Limits {
    /// Limits for statements that run on `runtime`.
    pub(crate) fn new(
        max_queries: usize,
        statement_timeout: Option<Duration>,
        runtime: Handle,
    ) -> Self {
        Limits {
            slots: Arc::new(Semaphore::new(max_queries)),
            max_queries,
            statement_timeout,
            runtime,
        }
    }

    /// A slot for one statement, with the earlier of the server's `statement_timeout` and
    /// the caller's `grpc-timeout` as its deadline; `RESOURCE_EXHAUSTED` when every slot
    /// is taken.
    pub(crate) fn admit(&self, metadata: &MetadataMap) -> Result<Admission, Status> {
        let permit = self.slots.clone().try_acquire_owned().map_err(|_| {
            with_sqlstate(
                Status::resource_exhausted(format!(
                    "sorry, too many queries already: at most {} run at once on this query \
                     node (--max-connections)",
                    self.max_queries
                )),
                "53300",
            )
        })?;
        let client = metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let timeout = match (self.statement_timeout, client) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Admission {
            permit,
            deadline: timeout.map(|t| Instant::now() + t),
            runtime: self.runtime.clone(),
        })
    }

    /// `stream`, holding `admission`'s slot until it ends and ending it with
    /// `DEADLINE_EXCEEDED` (SQLSTATE 57014) when its deadline passes first. Dropping the
    /// inner stream stops the query.
    pub(crate) fn guard<S, T>(admission: Admission, stream: S) -> Guarded<S>
    where
        S: Stream<Item = Result<T, Status>> + Unpin,
    {
        Guarded {
            inner: Some(stream),
            deadline: admission
                .deadline
                .map(|d| Box::pin(tokio::time::sleep_until(d))),
            runtime: admission.runtime,
            _permit: admission.permit,
        }
    }
}

/// A statement's stream under its limits; see [`Limits::guard`].
pub(crate) struct Guarded<S> {
    inner: Option<S>,
    deadline: Option<Pin<Box<Sleep>>>,
    runtime: Handle,
    _permit: OwnedSemaphorePermit,
}

impl<S, T> Stream for Guarded<S>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.inner.is_none() {
            return Poll::Ready(None);
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            // Drop the query now, not when the client goes away.
            this.inner = None;
            let status = Status::new(
                Code::DeadlineExceeded,
                "canceling statement due to statement timeout",
            );
            return Poll::Ready(Some(Err(with_sqlstate(status, "57014"))));
        }
        let next = match this.inner.as_mut() {
            Some(inner) => {
                let _inside = this.runtime.enter();
                Pin::new(inner).poll_next(cx)
            }
            None => Poll::Ready(None),
        };
        if let Poll::Ready(None) = next {
            this.inner = None;
        }
        next
    }
}

fn with_sqlstate(mut status: Status, sqlstate: &'static str) -> Status {
    status.metadata_mut().insert(
        "x-sqlstate",
        tonic::metadata::MetadataValue::from_static(sqlstate),
    );
    status
}

/// A `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_writes_them() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("150m"), Some(Duration::from_millis(150)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "S", "123456789S", "5x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn slots_are_held_until_the_stream_ends_and_refused_beyond_the_limit() {
        let limits = Limits::new(1, None, Handle::current());
        let first = limits.admit(&MetadataMap::new()).unwrap();
        let refused = limits.admit(&MetadataMap::new()).unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert_eq!(refused.metadata().get("x-sqlstate").unwrap(), "53300");

        let mut stream = Limits::guard(first, futures::stream::iter([Ok::<_, Status>(1)]));
        assert_eq!(stream.next().await.unwrap().unwrap(), 1);
        assert!(
            limits.admit(&MetadataMap::new()).is_err(),
            "held until dropped"
        );
        drop(stream);
        assert!(limits.admit(&MetadataMap::new()).is_ok());
    }

    #[tokio::test]
    async fn the_earlier_deadline_ends_a_stream_that_is_still_running() {
        let limits = Limits::new(4, Some(Duration::from_secs(60)), Handle::current());
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", "100m".parse().unwrap());
        let admission = limits.admit(&metadata).unwrap();
        let endless = futures::stream::pending::<Result<u8, Status>>();
        let mut stream = Limits::guard(admission, endless);
        let error = stream.next().await.unwrap().unwrap_err();
        assert_eq!(error.code(), Code::DeadlineExceeded);
        assert_eq!(error.metadata().get("x-sqlstate").unwrap(), "57014");
        assert!(
            stream.next().await.is_none(),
            "the stream ends after its error"
        );
    }
}
