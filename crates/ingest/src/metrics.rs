//! Prometheus metrics of the KubeArmor pullers, per stream (endpoint × table).

use std::sync::LazyLock;

use prometheus::{CounterVec, IntCounterVec, register_counter_vec, register_int_counter_vec};

const LABELS: &[&str] = &["endpoint", "stream"];

/// Events received and acknowledged by the puller, per endpoint and stream.
pub static EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "armorlake_events_received_total",
        "KubeArmor events received, per endpoint and stream (alerts, logs, messages)",
        LABELS
    )
    .expect("a valid static metric")
});

/// Times a stream went down (a gap in what was received).
pub static GAPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "armorlake_stream_gaps_total",
        "Times a KubeArmor stream broke, opening a gap in what was received",
        LABELS
    )
    .expect("a valid static metric")
});

/// Times a stream was re-opened after breaking.
pub static RECONNECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "armorlake_stream_reconnects_total",
        "Times a KubeArmor stream was subscribed again after breaking",
        LABELS
    )
    .expect("a valid static metric")
});

/// Time spent without a stream, counted when it comes back.
pub static DISCONNECTED: LazyLock<CounterVec> = LazyLock::new(|| {
    register_counter_vec!(
        "armorlake_stream_disconnected_seconds_total",
        "Seconds a KubeArmor stream was down (added when it is up again)",
        LABELS
    )
    .expect("a valid static metric")
});

/// Messages skipped as oversized or undecodable.
pub static BAD_MESSAGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "armorlake_stream_bad_messages_total",
        "KubeArmor messages skipped as oversized or undecodable",
        LABELS
    )
    .expect("a valid static metric")
});

/// Makes every series of `endpoint` × `stream` exist (at 0) from the start, so a scrape
/// shows streams that have received nothing yet.
pub(crate) fn init(endpoint: &str, stream: &str) {
    for family in [&*EVENTS, &*GAPS, &*RECONNECTS, &*BAD_MESSAGES] {
        family.with_label_values(&[endpoint, stream]);
    }
    DISCONNECTED.with_label_values(&[endpoint, stream]);
}
