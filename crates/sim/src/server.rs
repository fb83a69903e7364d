//! The simulator: the clock, and one generator task with one bounded queue per subscriber,
//! as the KubeArmor daemon does. The gRPC glue is in [`crate::service`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::server::TcpIncoming;

use crate::SimConfig;
use crate::generate::{EventKind, EventSource};
use crate::service::{Due, FeederServer};

/// Events queued per subscriber before the generator drops (rate > 0) or waits (rate = 0).
pub const QUEUE_CAPACITY: usize = 1000;
/// How often a paced generator wakes up to emit the events that fell due.
pub const TICK: Duration = Duration::from_millis(10);
/// How long [`Simulator::serve`] waits for connections to close after shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Sequence numbers a full-speed generator scans between cooperative yields.
const CHUNK: u64 = 4096;

struct Inner {
    config: SimConfig,
    source: Arc<EventSource>,
    start: Instant,
    start_utc: DateTime<Utc>,
    /// Set by [`Simulator::starting_at`]: full-speed events get fixed times too.
    fixed_clock: bool,
    stop: watch::Sender<bool>,
    dropped: AtomicU64,
}

impl Inner {
    /// Number of events that have happened by `now` (event `n` happens at start + n/rate).
    fn due(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.start).as_nanos();
        let happened = nanos * u128::from(self.config.rate) / 1_000_000_000 + 1;
        u64::try_from(happened).unwrap_or(u64::MAX)
    }

    /// When event `n` happens (paced mode).
    /// When event `n` happens at full speed: now, or on the fixed clock.
    fn now(&self, n: u64) -> DateTime<Utc> {
        if !self.fixed_clock {
            return Utc::now();
        }
        let millis = TimeDelta::milliseconds(i64::try_from(n).unwrap_or(i64::MAX));
        self.start_utc
            .checked_add_signed(millis)
            .unwrap_or(self.start_utc)
    }

    fn at(&self, n: u64) -> DateTime<Utc> {
        let nanos = u128::from(n) * 1_000_000_000 / u128::from(self.config.rate.max(1));
        let delta = TimeDelta::nanoseconds(i64::try_from(nanos).unwrap_or(i64::MAX));
        self.start_utc
            .checked_add_signed(delta)
            .unwrap_or(self.start_utc)
    }

    fn limit(&self) -> u64 {
        self.config.count.unwrap_or(u64::MAX)
    }
}

/// A KubeArmor-compatible event server. Cheap to clone (shares one state).
///
/// The clock starts at [`Simulator::new`]: with `rate > 0`, event `n` happens at
/// start + n/rate and a subscriber sees the events of its kind from the moment it subscribes
/// (no replay). With `rate == 0` each subscriber starts at `n = 0` and is fed as fast as it reads.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Builds (or takes from [`crate::source`]'s cache) the event pools for `config.seed`
    /// and starts the clock.
    pub fn new(config: SimConfig) -> Self {
        Simulator::with_clock(config, Utc::now(), false)
    }

    /// A simulator whose events have fixed times from `start` on: event `n` happens at
    /// `start + n / rate`, or at full speed (`rate` 0) at `start + n` milliseconds. Every
    /// subscriber of a full-speed simulator then receives the very same events, times
    /// included (for tests and benchmarks that compare stores).
    pub fn starting_at(config: SimConfig, start: DateTime<Utc>) -> Self {
        Simulator::with_clock(config, start, true)
    }

    fn with_clock(config: SimConfig, start: DateTime<Utc>, fixed_clock: bool) -> Self {
        let source = crate::source(config.seed, config.nodes);
        let (stop, _) = watch::channel(false);
        let inner = Inner {
            config,
            source,
            start: Instant::now(),
            start_utc: start,
            fixed_clock,
            stop,
            dropped: AtomicU64::new(0),
        };
        Simulator {
            inner: Arc::new(inner),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// The event source (pools and the `n` → event function) this simulator serves.
    pub fn source(&self) -> &EventSource {
        &self.inner.source
    }

    /// The event source, shared.
    pub(crate) fn shared_source(&self) -> Arc<EventSource> {
        Arc::clone(&self.inner.source)
    }

    /// Events dropped so far because a subscriber's queue was full (paced mode only).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// The tonic service (`feeder.LogService`), to mount in a server of your own.
    pub fn service(&self) -> FeederServer {
        FeederServer::new(self.clone())
    }

    /// Serves on `listener` until `shutdown` resolves. Open streams are then ended with
    /// `UNAVAILABLE` so the graceful shutdown does not wait for them forever.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        let stop = self.inner.stop.clone();
        let shutdown = async move {
            shutdown.await;
            stop.send_replace(true);
        };
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = tonic::transport::Server::builder()
            // KubeArmor's server pings every second.
            .http2_keepalive_interval(Some(Duration::from_secs(1)))
            .add_service(self.service())
            .serve_with_incoming_shutdown(incoming, shutdown);
        // A client that stopped reading could hold the graceful shutdown forever: give up
        // waiting for connections to drain after SHUTDOWN_GRACE.
        let mut stopped = self.inner.stop.subscribe();
        let grace = async move {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            result = server => result,
            () = grace => {
                tracing::debug!("connections still open after the shutdown grace period");
                Ok(())
            }
        }
    }

    /// Starts a generator task for one subscriber of `kind` and returns the response stream.
    pub(crate) fn subscribe(&self, kind: EventKind) -> ReceiverStream<Result<Due, Status>> {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            if inner.config.rate == 0 {
                unpaced(&inner, kind, tx).await;
            } else {
                paced(&inner, kind, tx).await;
            }
        });
        ReceiverStream::new(rx)
    }
}

/// Ends a subscriber's stream because the server is shutting down.
fn shutting_down<T>(tx: &mpsc::Sender<Result<T, Status>>) {
    let _ = tx.try_send(Err(Status::unavailable("simulator shutting down")));
}

/// After the last event (`count` reached): keep the stream open until the client leaves or
/// the server shuts down.
async fn idle<T>(tx: &mpsc::Sender<Result<T, Status>>, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tx.closed() => {}
        _ = stop.wait_for(|s| *s) => shutting_down(tx),
    }
}

/// Rate > 0: every [`TICK`], emit the events of `kind` that fell due; drop on a full queue.
async fn paced(inner: &Inner, kind: EventKind, tx: mpsc::Sender<Result<Due, Status>>) {
    let mut stop = inner.stop.subscribe();
    let limit = inner.limit();
    let mut next = inner.due(Instant::now());
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        if next >= limit {
            return idle(&tx, &mut stop).await;
        }
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tx.closed() => return,
            _ = stop.wait_for(|s| *s) => return shutting_down(&tx),
        }
        let end = inner.due(Instant::now()).min(limit);
        let mut dropped = 0u64;
        for n in next..end {
            if inner.source.kind(n) != kind {
                continue;
            }
            match tx.try_reserve() {
                Ok(permit) => permit.send(Ok(Due { n, at: inner.at(n) })),
                Err(mpsc::error::TrySendError::Full(())) => dropped += 1,
                Err(mpsc::error::TrySendError::Closed(())) => return,
            }
        }
        next = next.max(end);
        if dropped > 0 {
            inner.dropped.fetch_add(dropped, Ordering::Relaxed);
            tracing::debug!(?kind, dropped, "subscriber queue full, events dropped");
        }
    }
}

/// Rate = 0: from `n = 0`, as fast as the subscriber reads (waits on a full queue).
async fn unpaced(inner: &Inner, kind: EventKind, tx: mpsc::Sender<Result<Due, Status>>) {
    let mut stop = inner.stop.subscribe();
    let limit = inner.limit();
    let mut n = 0u64;
    loop {
        if n >= limit {
            return idle(&tx, &mut stop).await;
        }
        if *stop.borrow() {
            return shutting_down(&tx);
        }
        let end = n.saturating_add(CHUNK).min(limit);
        for i in n..end {
            if inner.source.kind(i) != kind {
                continue;
            }
            match tx.try_send(Ok(Due {
                n: i,
                at: inner.now(i),
            })) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    tokio::select! {
                        sent = tx.send(event) => {
                            if sent.is_err() {
                                return;
                            }
                        }
                        _ = stop.wait_for(|s| *s) => return shutting_down(&tx),
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        n = end;
        tokio::task::yield_now().await;
    }
}
