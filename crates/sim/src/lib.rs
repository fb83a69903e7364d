//! armorlake-sim: a KubeArmor-compatible gRPC server (`feeder.LogService`) that emits
//! realistic, deterministic security events.
//!
//! - [`event`] / [`EventSource`]: the event sequence. Event `n` for a seed is a pure function
//!   of `(seed, nodes, n)` apart from the two time fields (`Timestamp`, `UpdatedTime`), which
//!   come from the `at` the caller passes. Each kind (alert, log, message) depends on
//!   `(seed, n)` only; logs outnumber alerts 30 : 1 and messages are 1 in 200.
//! - [`Simulator`]: serves that sequence the way the KubeArmor daemon does (per-subscriber
//!   queue of 1000, silent drops, no replay), paced at `rate` events/s over all streams.
//!
//! Speed: the expensive string work happens once per `(seed, nodes)`; every event is one of a
//! few thousand pre-generated variants with its times, PIDs and exec id filled in. The server
//! goes further: each variant is also pre-encoded as protobuf, and a subscriber's stream writes
//! the per-event fields plus a copy of those bytes straight into tonic's buffer
//! ([`EventSource::encode`]), so serving costs no allocation per event.

mod generate;
mod pool;
mod scenario;
mod server;
mod service;
mod vocab;
mod wire;
mod world;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_server;

use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};

pub use armorlake_proto::feeder::{Alert, Log, Message};
pub use generate::{EventKind, EventSource, SimEvent, kind, updated_time};
pub use server::{QUEUE_CAPACITY, SHUTDOWN_GRACE, Simulator, TICK};
pub use service::FeederServer;

/// Simulator settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Events per second over all streams; 0 = as fast as each subscriber reads.
    pub rate: u64,
    /// Seed of the event sequence (topology, variants and per-event choices).
    pub seed: u64,
    /// Simulated KubeArmor nodes (hosts), at least 1.
    pub nodes: u32,
    /// Stop after this many events in total (the streams stay open).
    pub count: Option<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            rate: 300,
            seed: 1,
            nodes: 4,
            count: None,
        }
    }
}

/// How many [`EventSource`]s [`event`] keeps built.
const CACHED_SOURCES: usize = 8;

/// The shared [`EventSource`] of `(seed, nodes)`, built on first use and cached
/// (the 8 most recent pairs).
pub fn source(seed: u64, nodes: u32) -> Arc<EventSource> {
    static CACHE: OnceLock<Mutex<Vec<Arc<EventSource>>>> = OnceLock::new();
    let nodes = nodes.max(1);
    let cache = CACHE.get_or_init(Mutex::default);
    let mut sources = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = sources
        .iter()
        .find(|s| s.seed() == seed && s.nodes() == nodes)
    {
        return Arc::clone(found);
    }
    let built = Arc::new(EventSource::new(seed, nodes));
    if sources.len() >= CACHED_SOURCES {
        sources.remove(0);
    }
    sources.push(Arc::clone(&built));
    built
}

/// Event number `n` (0, 1, 2, …) of the sequence for `seed` over `nodes` hosts, happening
/// at `at`. Deterministic: the same arguments give the same event; `Timestamp` and
/// `UpdatedTime` are `at` (Unix seconds, and `2023-12-28T17:16:16.571714Z` style).
///
/// The pools behind it are built on the first call for a `(seed, nodes)` pair (a few ms) and
/// cached; for a hot loop, hold an [`EventSource`] (see [`source`]) and call its `event`.
pub fn event(seed: u64, nodes: u32, n: u64, at: DateTime<Utc>) -> SimEvent {
    source(seed, nodes).event(n, at)
}
