//! The deterministic event sequence: [`EventSource`] holds the per-seed pools and turns an event
//! number `n` into an event in a few hundred nanoseconds.

use armorlake_proto::feeder::{Alert, Log, Message};
use chrono::{DateTime, Datelike, Timelike, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use prost::bytes::BufMut;

use crate::pool;
use crate::wire::{self, WirePool};
use crate::world::World;

/// What event `n` of the sequence is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A policy match (`WatchAlerts`).
    Alert,
    /// A system event (`WatchLogs`).
    Log,
    /// A daemon message (`WatchMessages`).
    Message,
}

/// One event of the sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum SimEvent {
    /// Served by `WatchAlerts`.
    Alert(Alert),
    /// Served by `WatchLogs`.
    Log(Log),
    /// Served by `WatchMessages`.
    Message(Message),
}

impl SimEvent {
    /// The kind of this event.
    pub fn kind(&self) -> EventKind {
        match self {
            SimEvent::Alert(_) => EventKind::Alert,
            SimEvent::Log(_) => EventKind::Log,
            SimEvent::Message(_) => EventKind::Message,
        }
    }
}

/// SplitMix64's finaliser: a cheap, well-mixed 64-bit hash.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The per-event hash of `(seed, n)`.
fn event_hash(seed: u64, n: u64) -> u64 {
    splitmix64(splitmix64(seed) ^ n.wrapping_mul(0xd6e8_feb8_6659_fd93))
}

/// Out of `KIND_SCALE` events, `MESSAGES_PER_SCALE` are messages and `ALERTS_PER_SCALE` alerts:
/// messages 0.5 %, alerts 3.2 %, logs 96.3 % (logs : alerts = 30 : 1).
const KIND_SCALE: u64 = 6200;
const MESSAGES_PER_SCALE: u64 = 31;
const ALERTS_PER_SCALE: u64 = 199;

/// The kind of event `n` for `seed` (independent of the node count).
pub fn kind(seed: u64, n: u64) -> EventKind {
    kind_of_hash(event_hash(seed, n))
}

fn kind_of_hash(h: u64) -> EventKind {
    match h % KIND_SCALE {
        r if r < MESSAGES_PER_SCALE => EventKind::Message,
        r if r < MESSAGES_PER_SCALE + ALERTS_PER_SCALE => EventKind::Alert,
        _ => EventKind::Log,
    }
}

/// A pool index: half the draws uniform, half skewed towards the front, so some variants are
/// much more frequent than others, as in real traffic.
fn variant(h: u64, len: usize) -> usize {
    let u = h >> 32;
    let f = if h & 1 == 0 { u } else { (u * u) >> 32 };
    ((f * len as u64) >> 32) as usize
}

/// The pool index of an event with hash `h`, and the hash its per-event fields come from.
fn draw(h: u64, len: usize) -> (usize, u64) {
    let h2 = splitmix64(h);
    (variant(h2, len), splitmix64(h2))
}

/// Per-event process ids: (PID, PPID, HostPID, HostPPID). Host events have PID = HostPID.
pub(crate) fn pids(h: u64, host: bool) -> (i32, i32, i32, i32) {
    let host_pid = 1000 + ((h >> 20) % 4_000_000) as i32;
    let host_ppid = (host_pid - 1 - ((h >> 50) % 900) as i32).max(1);
    if host {
        return (host_pid, host_ppid, host_pid, host_ppid);
    }
    let pid = if h & 0xf == 0 {
        1
    } else {
        2 + ((h >> 4) % 3000) as i32
    };
    let ppid = if pid == 1 {
        0
    } else {
        1 + ((h >> 36) % (pid as u64 - 1).max(1)) as i32
    };
    (pid, ppid, host_pid, host_ppid)
}

/// `ExecEvent.ExecID` for an event.
pub(crate) fn exec_id(h: u64) -> String {
    exec_id_number(h).to_string()
}

/// The number behind [`exec_id`].
pub(crate) fn exec_id_number(h: u64) -> u64 {
    h & 0x3fff_ffff_ffff
}

/// Writes `at` as KubeArmor's `UpdatedTime` into `out`; false (and `out` untouched) when the
/// year has more or fewer than four digits.
pub(crate) fn updated_time_into(at: &DateTime<Utc>, out: &mut [u8; 27]) -> bool {
    let year = at.year();
    if !(0..=9999).contains(&year) {
        return false;
    }
    let micros = (at.nanosecond() % 1_000_000_000) / 1000;
    let mut pos = 0;
    let mut push = |value: u32, width: u32, sep: u8| {
        let mut div = 10u32.pow(width - 1);
        while div > 0 {
            out[pos] = b'0' + ((value / div) % 10) as u8;
            pos += 1;
            div /= 10;
        }
        out[pos] = sep;
        pos += 1;
    };
    push(year as u32, 4, b'-');
    push(at.month(), 2, b'-');
    push(at.day(), 2, b'T');
    push(at.hour(), 2, b':');
    push(at.minute(), 2, b':');
    push(at.second(), 2, b'.');
    push(micros, 6, b'Z');
    true
}

/// `at` as KubeArmor's `UpdatedTime`: UTC, exactly six fractional digits, `Z`
/// (`2023-12-28T17:16:16.571714Z`).
pub fn updated_time(at: &DateTime<Utc>) -> String {
    let mut out = [0u8; 27];
    if updated_time_into(at, &mut out) {
        out.iter().map(|&b| char::from(b)).collect()
    } else {
        at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

fn compact<T: Clone>(items: &[T]) -> Vec<T> {
    items.to_vec()
}

/// The pools of one `(seed, nodes)` and the function from event number to event.
///
/// Building one takes a few milliseconds (a ChaCha8 generator seeded with `seed` draws the
/// topology and a few thousand variants per kind); [`EventSource::event`] is then cheap, and
/// [`EventSource::encode`] (what the server sends) cheaper still: it copies pre-encoded
/// protobuf bytes and writes only the per-event fields.
/// Everything except the time fields is a pure function of `(seed, nodes, n)`.
#[derive(Debug)]
pub struct EventSource {
    seed: u64,
    nodes: u32,
    logs: Vec<Log>,
    alerts: Vec<Alert>,
    messages: Vec<Message>,
    wire_logs: WirePool,
    wire_alerts: WirePool,
    wire_messages: WirePool,
}

impl EventSource {
    /// Builds the pools for `seed` over `nodes` hosts (0 is treated as 1).
    pub fn new(seed: u64, nodes: u32) -> Self {
        let nodes = nodes.max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let world = World::new(&mut rng, nodes);
        let logs = pool::logs(&mut rng, seed, &world);
        let alerts = pool::alerts(&mut rng, seed, &world);
        let messages = pool::messages(&mut rng, &world);
        // Re-clone so each variant's strings sit together in memory (building interleaves them
        // with temporaries): per-event clones then touch a few adjacent cache lines.
        let (logs, alerts, messages) = (compact(&logs), compact(&alerts), compact(&messages));
        EventSource {
            seed,
            nodes,
            wire_logs: WirePool::from_logs(&logs),
            wire_alerts: WirePool::from_alerts(&alerts),
            wire_messages: WirePool::from_messages(&messages),
            logs,
            alerts,
            messages,
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The number of simulated nodes.
    pub fn nodes(&self) -> u32 {
        self.nodes
    }

    /// The kind of event `n`.
    pub fn kind(&self, n: u64) -> EventKind {
        kind(self.seed, n)
    }

    /// Event `n`, happening at `at`.
    pub fn event(&self, n: u64, at: DateTime<Utc>) -> SimEvent {
        let h = event_hash(self.seed, n);
        match kind_of_hash(h) {
            EventKind::Alert => SimEvent::Alert(self.make_alert(h, at)),
            EventKind::Log => SimEvent::Log(self.make_log(h, at)),
            EventKind::Message => SimEvent::Message(self.make_message(h, at)),
        }
    }

    /// Event `n` if it is a log.
    pub fn log(&self, n: u64, at: DateTime<Utc>) -> Option<Log> {
        let h = event_hash(self.seed, n);
        (kind_of_hash(h) == EventKind::Log).then(|| self.make_log(h, at))
    }

    /// Event `n` if it is an alert.
    pub fn alert(&self, n: u64, at: DateTime<Utc>) -> Option<Alert> {
        let h = event_hash(self.seed, n);
        (kind_of_hash(h) == EventKind::Alert).then(|| self.make_alert(h, at))
    }

    /// Event `n` if it is a message.
    pub fn message(&self, n: u64, at: DateTime<Utc>) -> Option<Message> {
        let h = event_hash(self.seed, n);
        (kind_of_hash(h) == EventKind::Message).then(|| self.make_message(h, at))
    }

    /// Appends event `n` to `buf` as protobuf: exactly the bytes prost would produce for
    /// [`EventSource::event`]'s `Log`, `Alert` or `Message` (fields in another order, which
    /// protobuf allows). Returns the kind. No allocation.
    pub fn encode(&self, n: u64, at: DateTime<Utc>, buf: &mut impl BufMut) -> EventKind {
        let h = event_hash(self.seed, n);
        let kind = kind_of_hash(h);
        let (pool, fields) = match kind {
            EventKind::Log => (&self.wire_logs, Some(&wire::LOG_FIELDS)),
            EventKind::Alert => (&self.wire_alerts, Some(&wire::ALERT_FIELDS)),
            EventKind::Message => (&self.wire_messages, None),
        };
        let (index, h3) = draw(h, pool.len());
        pool.encode(index, fields, h3, &at, buf);
        kind
    }

    /// The pre-generated log variants (every log of the sequence is one of these, re-timed).
    pub fn log_variants(&self) -> &[Log] {
        &self.logs
    }

    /// The pre-generated alert variants.
    pub fn alert_variants(&self) -> &[Alert] {
        &self.alerts
    }

    /// The pre-generated message variants.
    pub fn message_variants(&self) -> &[Message] {
        &self.messages
    }

    fn make_log(&self, h: u64, at: DateTime<Utc>) -> Log {
        let (index, h3) = draw(h, self.logs.len());
        let mut log = self.logs[index].clone();
        log.timestamp = at.timestamp();
        log.updated_time = updated_time(&at);
        (log.pid, log.ppid, log.host_pid, log.host_ppid) = pids(h3, log.container_id.is_empty());
        if let Some(e) = &mut log.exec_event {
            e.exec_id = exec_id(h3);
        }
        log
    }

    fn make_alert(&self, h: u64, at: DateTime<Utc>) -> Alert {
        let (index, h3) = draw(h, self.alerts.len());
        let mut alert = self.alerts[index].clone();
        alert.timestamp = at.timestamp();
        alert.updated_time = updated_time(&at);
        (alert.pid, alert.ppid, alert.host_pid, alert.host_ppid) =
            pids(h3, alert.container_id.is_empty());
        if let Some(e) = &mut alert.exec_event {
            e.exec_id = exec_id(h3);
        }
        alert
    }

    fn make_message(&self, h: u64, at: DateTime<Utc>) -> Message {
        let (index, _) = draw(h, self.messages.len());
        let mut message = self.messages[index].clone();
        message.timestamp = at.timestamp();
        message.updated_time = updated_time(&at);
        message
    }
}
