//! Prometheus metrics of the query node: queries by protocol and outcome, their latency,
//! operators reached per table scan, plans reused, open client connections. Also the query
//! id every statement gets, which its log lines and the operators' fragments carry.

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::Stream;
use prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, exponential_buckets,
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge_vec,
};

/// Statements run, by protocol (`pg`, `flight`) and outcome (`ok`, `error`, `cancelled`).
pub static QUERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "armorlake_queries_total",
        "Statements run, by protocol (pg, flight) and outcome (ok, error, cancelled)",
        &["protocol", "outcome"]
    )
    .expect("a valid static metric")
});

/// Statement latency, from receipt to the last row sent.
pub static QUERY_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "armorlake_query_duration_seconds",
        "Time from a statement's receipt to its last row, by protocol",
        &["protocol"],
        exponential_buckets(0.0005, 2.5, 14).expect("valid buckets")
    )
    .expect("a valid static metric")
});

/// Operators a table scan runs on.
pub static QUERY_OPERATORS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "armorlake_query_operators",
        "Operators (one live member per cluster) a table scan of a query reads from",
        vec![0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0, 100.0]
    )
    .expect("a valid static metric")
});

/// Statements run from a plan their connection kept (see `pg/plans.rs`).
pub static PLANS_REUSED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "armorlake_query_plans_reused_total",
        "Statements run from the optimized logical plan their connection kept from an earlier run"
    )
    .expect("a valid static metric")
});

/// Statements run from a physical plan their connection kept (see `pg/plans.rs`).
pub static PHYSICAL_PLANS_REUSED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "armorlake_query_physical_plans_reused_total",
        "Statements run again from the physical plan their connection kept, its scans routed as before"
    )
    .expect("a valid static metric")
});

/// Open client connections, by protocol.
pub static CONNECTIONS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "armorlake_connections",
        "Open client connections, by protocol (pg, flight)",
        &["protocol"]
    )
    .expect("a valid static metric")
});

/// Makes the query node's series exist from the start.
pub fn init() {
    for protocol in ["pg", "flight"] {
        for outcome in [Outcome::Ok, Outcome::Error, Outcome::Cancelled] {
            QUERIES.with_label_values(&[protocol, outcome.name()]);
        }
        QUERY_SECONDS.with_label_values(&[protocol]);
        CONNECTIONS.with_label_values(&[protocol]);
    }
    LazyLock::force(&QUERY_OPERATORS);
    LazyLock::force(&PLANS_REUSED);
    LazyLock::force(&PHYSICAL_PLANS_REUSED);
}

/// A new query id: a random W3C trace id (32 lowercase hex digits).
pub fn new_query_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The query id of a statement, held in its session config for the scans it plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryId(pub String);

impl QueryId {
    /// The id of the statement `config` is for (empty when untagged).
    pub fn of(config: &datafusion::prelude::SessionConfig) -> String {
        config
            .get_extension::<QueryId>()
            .map(|id| id.0.clone())
            .unwrap_or_default()
    }
}

/// How a statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All its rows were sent.
    Ok,
    /// It failed.
    Error,
    /// It was cancelled, timed out or the client went away.
    Cancelled,
}

impl Outcome {
    /// The `outcome` label.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// One statement being timed: counted once, when it ends (or as cancelled when dropped
/// before).
#[derive(Debug)]
pub struct QueryTimer {
    protocol: &'static str,
    query_id: String,
    started: Instant,
    done: bool,
}

impl QueryTimer {
    /// Starts timing a statement of `protocol`.
    pub fn start(protocol: &'static str, query_id: &str) -> QueryTimer {
        QueryTimer {
            protocol,
            query_id: query_id.to_string(),
            started: Instant::now(),
            done: false,
        }
    }

    /// Records the end of the statement.
    pub fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let seconds = self.started.elapsed().as_secs_f64();
        QUERIES
            .with_label_values(&[self.protocol, outcome.name()])
            .inc();
        QUERY_SECONDS
            .with_label_values(&[self.protocol])
            .observe(seconds);
        tracing::debug!(
            query_id = %self.query_id,
            protocol = self.protocol,
            outcome = outcome.name(),
            seconds,
            "query finished"
        );
    }
}

impl Drop for QueryTimer {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled);
    }
}

/// A statement's result stream that ends its [`QueryTimer`]: `ok` after the last item, the
/// outcome `classify` gives on the first error.
pub struct Observed<S, E> {
    inner: S,
    timer: QueryTimer,
    classify: fn(&E) -> Outcome,
}

impl<S, E> Observed<S, E> {
    /// Wraps `inner`.
    pub fn new(inner: S, timer: QueryTimer, classify: fn(&E) -> Outcome) -> Self {
        Observed {
            inner,
            timer,
            classify,
        }
    }
}

impl<S, T, E> Stream for Observed<S, E>
where
    S: Stream<Item = Result<T, E>> + Unpin,
{
    type Item = Result<T, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        match &polled {
            Poll::Ready(None) => this.timer.finish(Outcome::Ok),
            Poll::Ready(Some(Err(e))) => this.timer.finish((this.classify)(e)),
            _ => {}
        }
        polled
    }
}

/// Counts an open connection of `protocol` until dropped.
#[derive(Debug)]
pub struct ConnectionGuard(&'static str);

impl ConnectionGuard {
    /// Counts one more open connection.
    pub fn open(protocol: &'static str) -> ConnectionGuard {
        CONNECTIONS.with_label_values(&[protocol]).inc();
        ConnectionGuard(protocol)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        CONNECTIONS.with_label_values(&[self.0]).dec();
    }
}
