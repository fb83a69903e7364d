//! One WAL record: framing, checksum, and the Arrow IPC payload.
//!
//! ```text
//! [u32 LE payload length][u32 LE crc32 of (table id, payload)][u8 table id][payload]
//! ```
//!
//! The payload is a complete Arrow IPC stream: schema message, one record batch message,
//! end-of-stream marker.

use std::io::{self, Write};

use armorlake_common::Table;
use arrow::buffer::Buffer;
use arrow::error::ArrowError;
use arrow::ipc::MetadataVersion;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::{IpcWriteOptions, StreamEncoder};
use arrow::record_batch::RecordBatch;

/// Bytes before a record's payload.
pub(crate) const HEADER_LEN: usize = 9;

/// Alignment of the IPC buffers in a payload: 8 bytes is all any column type here needs;
/// the default 64 pads each of a batch's ~150 buffers and makes small batches' records
/// several KiB larger.
pub(crate) const IPC_ALIGNMENT: usize = 8;

/// The largest payload a record may carry; a longer length field is a torn or corrupt
/// record.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

/// The byte that names `table` in a record.
pub(crate) fn table_id(table: Table) -> u8 {
    match table {
        Table::Alerts => 1,
        Table::Logs => 2,
        Table::Messages => 3,
    }
}

/// The table a record's id byte names.
pub(crate) fn table_from_id(id: u8) -> Option<Table> {
    match id {
        1 => Some(Table::Alerts),
        2 => Some(Table::Logs),
        3 => Some(Table::Messages),
        _ => None,
    }
}

/// A record ready to be written: its header and the IPC buffers of its payload (uncompressed
/// buffers share the batch's memory, so nothing is copied until the write).
#[derive(Debug)]
pub(crate) struct Record {
    header: [u8; HEADER_LEN],
    payload: Vec<Buffer>,
}

impl Record {
    /// Encodes `batch` of `table` as a record.
    pub(crate) fn encode(table: Table, batch: &RecordBatch) -> Result<Record, ArrowError> {
        let options = IpcWriteOptions::try_new(IPC_ALIGNMENT, false, MetadataVersion::V5)?;
        let mut encoder = StreamEncoder::try_new_with_options(batch.schema_ref(), options)?;
        let mut payload = encoder.encode(batch)?;
        payload.extend(encoder.finish()?);
        let len: usize = payload.iter().map(|b| b.len()).sum();
        if len > MAX_PAYLOAD {
            return Err(ArrowError::InvalidArgumentError(format!(
                "a batch of {len} bytes is too large for one WAL record; split it"
            )));
        }
        let id = table_id(table);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[id]);
        for b in &payload {
            crc.update(b.as_slice());
        }
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&(len as u32).to_le_bytes());
        header[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
        header[8] = id;
        Ok(Record { header, payload })
    }

    /// Bytes the record takes in a segment.
    pub(crate) fn len(&self) -> u64 {
        (HEADER_LEN + self.payload.iter().map(|b| b.len()).sum::<usize>()) as u64
    }

    /// Writes the record.
    pub(crate) fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.header)?;
        for b in &self.payload {
            w.write_all(b.as_slice())?;
        }
        Ok(())
    }
}

/// A record header as read back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    /// Payload bytes.
    pub(crate) len: usize,
    crc: u32,
    id: u8,
}

impl Header {
    /// Parses a header.
    pub(crate) fn parse(bytes: &[u8; HEADER_LEN]) -> Header {
        Header {
            len: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize,
            crc: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            id: bytes[8],
        }
    }

    /// Checks the payload against the header and decodes it: the table and its batch, or why
    /// the record is bad.
    pub(crate) fn decode(&self, payload: Vec<u8>) -> Result<(Table, RecordBatch), String> {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[self.id]);
        crc.update(&payload);
        if crc.finalize() != self.crc {
            return Err("checksum mismatch".to_string());
        }
        let table = table_from_id(self.id).ok_or_else(|| format!("unknown table {}", self.id))?;
        let batch = decode_stream(table, payload).map_err(|e| e.to_string())?;
        Ok((table, batch))
    }
}

/// Decodes an IPC stream holding exactly one batch of `table`.
fn decode_stream(table: Table, payload: Vec<u8>) -> Result<RecordBatch, ArrowError> {
    let mut buffer = Buffer::from_vec(payload);
    let mut decoder = StreamDecoder::new();
    let mut batch = None;
    while !buffer.is_empty() {
        if let Some(b) = decoder.decode(&mut buffer)?
            && batch.replace(b).is_some()
        {
            return Err(ArrowError::IpcError("more than one batch".to_string()));
        }
    }
    decoder.finish()?;
    let batch = batch.ok_or_else(|| ArrowError::IpcError("no batch".to_string()))?;
    let schema = table.schema();
    if batch.schema().fields() != schema.fields() {
        return Err(ArrowError::SchemaError(format!(
            "the batch does not have the schema of table {table}"
        )));
    }
    RecordBatch::try_new(schema, batch.columns().to_vec())
}
