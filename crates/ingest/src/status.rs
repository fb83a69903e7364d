//! What a puller knows of each stream it reads, for `armorlake.sources`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use armorlake_common::Table;

/// The state of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Not yet subscribed.
    Connecting,
    /// Subscribed and receiving.
    Streaming,
    /// The stream broke; subscribing again.
    Reconnecting,
}

impl StreamState {
    /// The state's name in `armorlake.sources`.
    pub fn name(self) -> &'static str {
        match self {
            StreamState::Connecting => "connecting",
            StreamState::Streaming => "streaming",
            StreamState::Reconnecting => "reconnecting",
        }
    }
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Counters and state of one stream (endpoint × table).
#[derive(Debug)]
pub struct SourceStatus {
    /// The KubeArmor endpoint.
    pub endpoint: String,
    /// The table the stream fills.
    pub table: Table,
    state: Mutex<(StreamState, Option<String>)>,
    events: AtomicU64,
    reconnects: AtomicU64,
    bad_messages: AtomicU64,
    last_event_micros: AtomicI64,
    /// When the stream went down, 0 while it is up.
    down_since_micros: AtomicI64,
    /// Total time without a stream, before the current outage.
    down_micros: AtomicI64,
}

/// A copy of a stream's status at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSnapshot {
    /// The KubeArmor endpoint.
    pub endpoint: String,
    /// The table the stream fills.
    pub table: Table,
    /// Current state.
    pub state: StreamState,
    /// Events received since the operator started.
    pub events: u64,
    /// Times the stream was re-opened.
    pub reconnects: u64,
    /// Arrival time of the last event, microseconds, if any.
    pub last_event_micros: Option<i64>,
    /// Time spent without a stream, microseconds.
    pub disconnected_micros: i64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Messages skipped as oversized or undecodable.
    pub bad_messages: u64,
}

impl SourceStatus {
    /// A stream not yet connected.
    pub fn new(endpoint: &str, table: Table) -> SourceStatus {
        crate::metrics::init(endpoint, table.name());
        SourceStatus {
            endpoint: endpoint.to_string(),
            table,
            state: Mutex::new((StreamState::Connecting, None)),
            events: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            bad_messages: AtomicU64::new(0),
            last_event_micros: AtomicI64::new(0),
            down_since_micros: AtomicI64::new(now_micros()),
            down_micros: AtomicI64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (StreamState, Option<String>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_state(&self, state: StreamState) {
        self.lock().0 = state;
    }

    pub(crate) fn connected(&self) {
        let since = self.down_since_micros.swap(0, Ordering::AcqRel);
        if since > 0 {
            let down = now_micros() - since;
            self.down_micros.fetch_add(down, Ordering::AcqRel);
            crate::metrics::DISCONNECTED
                .with_label_values(&self.labels())
                .inc_by(down.max(0) as f64 / 1e6);
        }
        let mut state = self.lock();
        if state.0 == StreamState::Reconnecting {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
            crate::metrics::RECONNECTS
                .with_label_values(&self.labels())
                .inc();
        }
        state.0 = StreamState::Streaming;
    }

    pub(crate) fn received(&self, events: u64) {
        self.events.fetch_add(events, Ordering::Relaxed);
        crate::metrics::EVENTS
            .with_label_values(&self.labels())
            .inc_by(events);
        self.last_event_micros
            .store(now_micros(), Ordering::Relaxed);
    }

    /// Counts a message skipped as oversized or undecodable.
    pub(crate) fn bad_message(&self) {
        self.bad_messages.fetch_add(1, Ordering::Relaxed);
        crate::metrics::BAD_MESSAGES
            .with_label_values(&self.labels())
            .inc();
    }

    /// Counts a message skipped as undecodable while the stream goes on, and records `error`
    /// as the stream's last error. Only the first of a run of them is logged.
    pub(crate) fn skipped(&self, error: String) {
        let first = self.bad_messages.load(Ordering::Relaxed) == 0;
        self.bad_message();
        let mut state = self.lock();
        if first || state.1.as_deref() != Some(error.as_str()) {
            tracing::warn!(endpoint = %self.endpoint, table = %self.table, %error, "bad KubeArmor message");
        }
        state.1 = Some(error);
    }

    /// The labels of this stream's metrics.
    fn labels(&self) -> [&str; 2] {
        [self.endpoint.as_str(), self.table.name()]
    }

    pub(crate) fn failed(&self, error: String) {
        tracing::warn!(endpoint = %self.endpoint, table = %self.table, %error, "KubeArmor stream down");
        let went_down = self
            .down_since_micros
            .compare_exchange(0, now_micros(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if went_down {
            crate::metrics::GAPS.with_label_values(&self.labels()).inc();
        }
        let mut state = self.lock();
        state.0 = StreamState::Reconnecting;
        state.1 = Some(error);
    }

    /// The status now.
    pub fn snapshot(&self) -> SourceSnapshot {
        let (state, last_error) = self.lock().clone();
        let since = self.down_since_micros.load(Ordering::Acquire);
        let current = if since > 0 { now_micros() - since } else { 0 };
        let last = self.last_event_micros.load(Ordering::Relaxed);
        SourceSnapshot {
            endpoint: self.endpoint.clone(),
            table: self.table,
            state,
            events: self.events.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_event_micros: (last > 0).then_some(last),
            disconnected_micros: self.down_micros.load(Ordering::Acquire) + current,
            last_error,
            bad_messages: self.bad_messages.load(Ordering::Relaxed),
        }
    }
}
