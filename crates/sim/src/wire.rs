//! Pre-encoded protobuf: each pool variant is encoded once without its per-event fields; an
//! event is then the per-event fields (Timestamp, UpdatedTime, PIDs, ExecEvent) written by
//! hand followed by a copy of the variant's bytes. Protobuf decoders accept fields in any
//! order, so the result decodes to exactly the message [`crate::EventSource::event`] builds.

use armorlake_proto::feeder::{Alert, Log, Message};
use chrono::{DateTime, Utc};
use prost::Message as _;
use prost::bytes::BufMut;

use crate::generate::{exec_id_number, pids, updated_time, updated_time_into};

const VARINT: u32 = 0;
const LENGTH_DELIMITED: u32 = 2;

/// Field numbers of the per-event fields of a message type (they differ between Log and Alert).
#[derive(Debug)]
pub struct Fields {
    host_pid: u32,
    ppid: u32,
    pid: u32,
    host_ppid: u32,
    exec_event: u32,
}

/// `Log`: HostPID 9, PPID 10, PID 11, HostPPID 22, ExecEvent 27.
pub const LOG_FIELDS: Fields = Fields {
    host_pid: 9,
    ppid: 10,
    pid: 11,
    host_ppid: 22,
    exec_event: 27,
};
/// `Alert`: HostPID 9, PPID 10, PID 11, HostPPID 27, ExecEvent 36.
pub const ALERT_FIELDS: Fields = Fields {
    host_pid: 9,
    ppid: 10,
    pid: 11,
    host_ppid: 27,
    exec_event: 36,
};

fn put_varint(buf: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_key(buf: &mut impl BufMut, field: u32, wire_type: u32) {
    put_varint(buf, u64::from((field << 3) | wire_type));
}

/// An int32/int64 field; proto3 omits zero. Negative values are sign-extended, as prost does.
fn put_int(buf: &mut impl BufMut, field: u32, value: i64) {
    if value != 0 {
        put_key(buf, field, VARINT);
        put_varint(buf, value as u64);
    }
}

/// A string field; proto3 omits empty strings.
fn put_str(buf: &mut impl BufMut, field: u32, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_key(buf, field, LENGTH_DELIMITED);
        put_varint(buf, bytes.len() as u64);
        buf.put_slice(bytes);
    }
}

/// Encoded length of a string field (0 when empty), for single-byte keys.
fn str_field_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        1 + varint_len(len as u64) + len
    }
}

/// Decimal digits of `value`, right-aligned in `out`; returns the used tail.
fn decimal(mut value: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut pos = out.len();
    loop {
        pos -= 1;
        out[pos] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &out[pos..];
        }
    }
}

#[derive(Debug)]
struct Variant {
    start: usize,
    end: usize,
    /// `ExecEvent.ExecutableName` when the variant has an ExecEvent.
    exec_name: Option<Box<str>>,
    /// Host event (PID = HostPID).
    host: bool,
}

/// One kind's variants, encoded into one contiguous buffer.
#[derive(Debug, Default)]
pub struct WirePool {
    bytes: Vec<u8>,
    variants: Vec<Variant>,
}

impl WirePool {
    fn push(&mut self, encoded: &[u8], exec_name: Option<String>, host: bool) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(encoded);
        let exec_name = exec_name.map(String::into_boxed_str);
        self.variants.push(Variant {
            start,
            end: self.bytes.len(),
            exec_name,
            host,
        });
    }

    /// Pre-encodes log variants (their per-event fields are still unset in the pool).
    pub fn from_logs(logs: &[Log]) -> Self {
        let mut pool = WirePool::default();
        for log in logs {
            let mut log = log.clone();
            let exec_name = log.exec_event.take().map(|e| e.executable_name);
            (
                log.timestamp,
                log.pid,
                log.ppid,
                log.host_pid,
                log.host_ppid,
            ) = (0, 0, 0, 0, 0);
            log.updated_time.clear();
            pool.push(&log.encode_to_vec(), exec_name, log.container_id.is_empty());
        }
        pool
    }

    /// Pre-encodes alert variants.
    pub fn from_alerts(alerts: &[Alert]) -> Self {
        let mut pool = WirePool::default();
        for alert in alerts {
            let mut alert = alert.clone();
            let exec_name = alert.exec_event.take().map(|e| e.executable_name);
            (
                alert.timestamp,
                alert.pid,
                alert.ppid,
                alert.host_pid,
                alert.host_ppid,
            ) = (0, 0, 0, 0, 0);
            alert.updated_time.clear();
            pool.push(
                &alert.encode_to_vec(),
                exec_name,
                alert.container_id.is_empty(),
            );
        }
        pool
    }

    /// Pre-encodes message variants.
    pub fn from_messages(messages: &[Message]) -> Self {
        let mut pool = WirePool::default();
        for message in messages {
            let mut message = message.clone();
            message.timestamp = 0;
            message.updated_time.clear();
            pool.push(&message.encode_to_vec(), None, false);
        }
        pool
    }

    /// Number of variants.
    pub fn len(&self) -> usize {
        self.variants.len()
    }

    /// Writes variant `index` with its per-event fields: the times from `at`, and (for logs
    /// and alerts, `fields`) the PIDs and ExecID derived from `h`, as `EventSource` does.
    pub fn encode(
        &self,
        index: usize,
        fields: Option<&Fields>,
        h: u64,
        at: &DateTime<Utc>,
        buf: &mut impl BufMut,
    ) {
        let variant = &self.variants[index];
        put_int(buf, 1, at.timestamp());
        let mut text = [0u8; 27];
        if updated_time_into(at, &mut text) {
            put_str(buf, 2, &text);
        } else {
            put_str(buf, 2, updated_time(at).as_bytes());
        }
        if let Some(f) = fields {
            let (pid, ppid, host_pid, host_ppid) = pids(h, variant.host);
            put_int(buf, f.host_pid, host_pid.into());
            put_int(buf, f.ppid, ppid.into());
            put_int(buf, f.pid, pid.into());
            put_int(buf, f.host_ppid, host_ppid.into());
            if let Some(name) = &variant.exec_name {
                // ExecEvent { ExecID = 1; ExecutableName = 2; }
                let mut digits = [0u8; 20];
                let id = decimal(exec_id_number(h), &mut digits);
                put_key(buf, f.exec_event, LENGTH_DELIMITED);
                put_varint(
                    buf,
                    (str_field_len(id.len()) + str_field_len(name.len())) as u64,
                );
                put_str(buf, 1, id);
                put_str(buf, 2, name.as_bytes());
            }
        }
        buf.put_slice(&self.bytes[variant.start..variant.end]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            put_varint(&mut ours, v);
            assert_eq!(ours.len(), varint_len(v));
            assert_eq!(ours.len(), prost::encoding::encoded_len_varint(v));
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(v, &mut theirs);
            assert_eq!(ours, theirs);
        }
        let mut d = [0u8; 20];
        assert_eq!(decimal(0, &mut d), b"0");
        assert_eq!(decimal(1_234_567_890_123, &mut d), b"1234567890123");
    }
}
