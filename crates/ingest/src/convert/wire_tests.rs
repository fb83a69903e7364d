//! The in-place reader against prost: for any bytes, both accept or both refuse, and an
//! accepted message becomes the same row either way.

#![allow(clippy::unwrap_used)]

use armorlake_proto::feeder::{Alert, Log, Message};
use prost::Message as _;

use super::tests::{full_alert, full_log, full_message};
use super::*;

/// The batch of `events`, each appended from the prost struct prost decoded from its bytes,
/// and the batch of the same bytes read in place; `None` for a message prost refuses.
fn both_ways<P, B>(
    events: &[Vec<u8>],
    new: impl Fn() -> B,
    append: impl Fn(&mut B, &P),
    append_wire: impl Fn(&mut B, &[u8]) -> Result<(), WireError>,
    finish: impl Fn(&mut B) -> RecordBatch,
) -> (RecordBatch, RecordBatch)
where
    P: prost::Message + Default + std::fmt::Debug,
{
    let (mut by_prost, mut in_place) = (new(), new());
    for bytes in events {
        let decoded = P::decode(bytes.as_slice());
        let read = append_wire(&mut in_place, bytes);
        assert_eq!(
            decoded.is_ok(),
            read.is_ok(),
            "prost says {decoded:?}, the reader {read:?}, for {bytes:02x?}"
        );
        if let Ok(event) = decoded {
            append(&mut by_prost, &event);
        }
    }
    (finish(&mut by_prost), finish(&mut in_place))
}

fn logs_both_ways(events: &[Vec<u8>]) -> (RecordBatch, RecordBatch) {
    both_ways::<Log, _>(
        events,
        || LogBatchBuilder::new("op", "ep", 8),
        LogBatchBuilder::append,
        LogBatchBuilder::append_wire,
        LogBatchBuilder::finish,
    )
}

fn alerts_both_ways(events: &[Vec<u8>]) -> (RecordBatch, RecordBatch) {
    both_ways::<Alert, _>(
        events,
        || AlertBatchBuilder::new("op", "ep", 8),
        AlertBatchBuilder::append,
        AlertBatchBuilder::append_wire,
        AlertBatchBuilder::finish,
    )
}

fn messages_both_ways(events: &[Vec<u8>]) -> (RecordBatch, RecordBatch) {
    both_ways::<Message, _>(
        events,
        || MessageBatchBuilder::new("op", "ep", 8),
        MessageBatchBuilder::append,
        MessageBatchBuilder::append_wire,
        MessageBatchBuilder::finish,
    )
}

#[test]
fn every_field_reads_as_prost_decodes_it() {
    let empty = Vec::new();
    let (a, b) = logs_both_ways(&[full_log().encode_to_vec(), empty.clone()]);
    assert_eq!(a.num_rows(), 2);
    assert_eq!(a, b);
    let (a, b) = alerts_both_ways(&[full_alert().encode_to_vec(), empty.clone()]);
    assert_eq!(a.num_rows(), 2);
    assert_eq!(a, b);
    let (a, b) = messages_both_ways(&[full_message().encode_to_vec(), empty]);
    assert_eq!(a.num_rows(), 2);
    assert_eq!(a, b);
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn key(field: u32, wire: u8, out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | u32::from(wire)), out);
}

fn text(field: u32, value: &str, out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(value.len() as u64, out);
    out.extend_from_slice(value.as_bytes());
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let mut bytes = full_log().encode_to_vec();
    // A future varint, fixed64, string, fixed32 and a group holding a varint and a string.
    key(99, 0, &mut bytes);
    varint(u64::MAX, &mut bytes);
    key(100, 1, &mut bytes);
    bytes.extend_from_slice(&[7; 8]);
    text(101, "a field from a later KubeArmor", &mut bytes);
    key(102, 5, &mut bytes);
    bytes.extend_from_slice(&[7; 4]);
    key(103, 3, &mut bytes);
    key(1, 0, &mut bytes);
    varint(5, &mut bytes);
    text(2, "inside a group", &mut bytes);
    key(103, 4, &mut bytes);
    let (a, b) = logs_both_ways(&[bytes, full_log().encode_to_vec()]);
    assert_eq!(a, b);
    assert_eq!(
        a.slice(0, 1),
        a.slice(1, 1),
        "the unknown fields changed the row"
    );
}

#[test]
fn repeated_fields_follow_protobuf_rules() {
    let mut bytes = full_alert().encode_to_vec();
    // Scalars: the last value wins (PID 11, Severity 14, ClusterName 3).
    key(11, 0, &mut bytes);
    varint(42, &mut bytes);
    text(14, "9", &mut bytes);
    text(3, "the-last-cluster", &mut bytes);
    // Int32 sent sign-extended to 10 bytes.
    key(9, 0, &mut bytes);
    varint(-7_i64 as u64, &mut bytes);
    // ATags (30) accumulate; Owner (31) merges: only its Name changes.
    text(30, "one-more-tag", &mut bytes);
    let mut owner = Vec::new();
    text(2, "merged-name", &mut owner);
    key(31, 2, &mut bytes);
    varint(owner.len() as u64, &mut bytes);
    bytes.extend_from_slice(&owner);
    // EventData (43): a second entry for a key replaces the first; an entry with no value.
    for (k, v) in [("Syscall", Some("SYS_EXECVE")), ("NoValue", None)] {
        let mut entry = Vec::new();
        text(1, k, &mut entry);
        if let Some(v) = v {
            text(2, v, &mut entry);
        }
        key(43, 2, &mut bytes);
        varint(entry.len() as u64, &mut bytes);
        bytes.extend_from_slice(&entry);
    }
    let (a, b) = alerts_both_ways(std::slice::from_ref(&bytes));
    assert_eq!(a, b);

    let view = AlertView::decode(&bytes).unwrap();
    assert_eq!((view.pid, view.host_pid), (42, -7));
    assert_eq!(
        (view.severity, view.cluster_name),
        ("9", "the-last-cluster")
    );
    assert_eq!(view.a_tags.last(), Some(&"one-more-tag"));
    let owner = view.owner.unwrap();
    assert_eq!((owner.r#ref, owner.name), ("Deployment", "merged-name"));
}

#[test]
fn invalid_messages_are_refused_and_append_nothing() {
    let full = full_log().encode_to_vec();
    let mut wrong_type = full.clone();
    key(5, 0, &mut wrong_type); // NamespaceName as a varint
    varint(1, &mut wrong_type);
    let mut not_utf8 = full.clone();
    key(5, 2, &mut not_utf8);
    varint(2, &mut not_utf8);
    not_utf8.extend_from_slice(&[0xc3, 0x28]);
    let mut long_varint = full.clone();
    key(11, 0, &mut long_varint);
    long_varint.extend_from_slice(&[0xff; 10]);
    let cases = [
        ("truncated", full[..full.len() - 3].to_vec()),
        ("wrong wire type", wrong_type),
        ("not UTF-8", not_utf8),
        ("varint over 64 bits", long_varint),
        ("field 0", vec![0x00, 0x01]),
        ("wire type 7", vec![0x0f]),
        ("lone end group", vec![0x0c]),
        ("garbage", vec![0xff, 0xff, 0xff]),
    ];
    let mut b = LogBatchBuilder::new("op", "ep", 8);
    for (what, bytes) in &cases {
        assert!(
            Log::decode(bytes.as_slice()).is_err(),
            "prost accepts {what}"
        );
        assert!(b.append_wire(bytes).is_err(), "the reader accepts {what}");
        assert_eq!(b.len(), 0, "{what} appended a row");
    }
    b.append_wire(&full).unwrap();
    assert_eq!(b.len(), 1);
}

/// xorshift64*: a fixed, dependency-free sequence for the mutations below.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `bytes` with a few random edits: bytes flipped, cut, inserted or duplicated.
fn mutate(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if at < out.len() => out[at] = rng.next() as u8,
            1 => out.truncate(at),
            2 => out.insert(at, rng.next() as u8),
            _ => {
                let end = (at + rng.below(16)).min(out.len());
                let copy = out[at..end].to_vec();
                out.extend_from_slice(&copy);
            }
        }
    }
    out
}

#[test]
fn mutated_messages_read_as_prost_decodes_them() {
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let seeds = [
        full_log().encode_to_vec(),
        full_alert().encode_to_vec(),
        full_message().encode_to_vec(),
    ];
    for round in 0..3000 {
        let bytes = mutate(&seeds[round % 3], &mut rng);
        let events = [bytes];
        let (a, b) = match round % 3 {
            0 => logs_both_ways(&events),
            1 => alerts_both_ways(&events),
            _ => messages_both_ways(&events),
        };
        assert_eq!(a, b, "round {round}: {:02x?}", events[0]);
    }
}
