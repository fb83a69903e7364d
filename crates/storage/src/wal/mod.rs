//! The write-ahead log: a batch counts as received once it is here and fsynced.
//!
//! # Layout
//!
//! `<data_dir>/wal/<segment:020>.wal`, segments numbered from 1 and never reused. A segment
//! starts with the 8-byte header [`MAGIC`] (format version 1) followed by records:
//!
//! ```text
//! [u32 LE payload length][u32 LE crc32 of (table id, payload)][u8 table id][payload]
//! ```
//!
//! Table ids: 1 alerts, 2 logs, 3 messages. The checksum also covers the table id, so a
//! flipped id byte is caught too.
//!
//! # Payload
//!
//! A complete Arrow IPC stream per record: schema message, one record-batch message,
//! end-of-stream marker; buffers 8-byte aligned, not compressed. Measured in release mode
//! (`wal_throughput` in this crate's tests: 4096-row alert batches, ~900 B/event in IPC form,
//! on the 2-core dev VM):
//!
//! - The schema message and end marker are 2.6 KB per record, 0.07 % of a 3.7 MB record, and
//!   cost microseconds; so the self-describing stream is kept over "batch message only,
//!   decoded with `Table::schema()`": a record reads back without outside knowledge, and a
//!   schema change between versions is a clear decode error rather than a misread body.
//! - Encoding shares the batch's buffers (no copy); encode + CRC take 0.2-0.3 ms per batch.
//! - 8-byte alignment instead of IPC's default 64 shrinks a 1-row alert record from 11.3 KB
//!   to 6.8 KB (the ingest path sends small batches when events are few).
//! - `append_many` reached 0.7-1.6 M events/s (640-1440 MB/s, one batch and one fsync per
//!   call) and 1.0-1.8 M events/s with four batches per call; replay 1.6-2.0 M events/s.
//! - LZ4 over the same buffers halved the bytes (1.9x) but cost 2.9 ms of CPU per batch, as
//!   much as the whole uncompressed write + fsync: not a clear win on 2 cores, so off. On a
//!   disk slower than ~250 MB/s it would become one (arrow's `ipc_compression` feature and
//!   `IpcWriteOptions::try_with_compression`; the decoder needs no change).
//!
//! # Writing
//!
//! [`Wal::append`] writes a group of records through one `BufWriter` and makes them durable
//! with one `sync_data`. If anything fails (e.g. ENOSPC), the segment is cut back to the end
//! of the last complete record and that cut is synced before the error is returned, so no
//! partial or unacknowledged record is left behind; the next append writes at the same
//! offset.
//!
//! # Segments and flushes (crash safety)
//!
//! Each batch in memory remembers the segment it was written to. A flush first seals the
//! current segment S ([`Wal::rotate`], under the same lock as appends, so every batch of a
//! segment ≤ S is in memory before the rotation returns), writes each table's memory batches
//! of segments ≤ S to Parquet, and deletes segments ≤ S only after every table succeeded.
//! Each Parquet file records S in its footer (`armorlake.wal_segment`): "every row of this
//! table and hour from segments ≤ S is in Parquet". On open, a replayed row of table T, hour
//! h, segment s is skipped when some file of (T, h) claims a segment ≥ s. Thus:
//!
//! - crash before a Parquet file is renamed into place: no claim, the rows are replayed;
//! - crash after some tables' (or hours') files are durable, before the segments are
//!   deleted: those rows are skipped, the others replayed; nothing is lost or counted twice;
//! - crash after deletion: nothing to replay.
//!
//! A claim stays valid through compaction (the merged file claims the largest segment of the
//! files it merges). New segments are numbered above every existing segment and every claim,
//! so a claim never covers a later segment.

mod record;
mod replay;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub(crate) use record::Record;
pub(crate) use replay::replay;

use crate::error::{Error, Result};
use crate::files::sync_dir;

/// The first bytes of every segment: format version 1.
pub(crate) const MAGIC: &[u8; 8] = b"ALWAL01\n";

/// The WAL directory under the data directory.
pub(crate) const DIR: &str = "wal";

/// Buffer of the writer; records larger than this go to the file directly.
const WRITE_BUFFER: usize = 1 << 20;

/// The file of segment `number`.
pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.wal"))
}

/// The segment number of a segment file's path.
pub(crate) fn segment_number(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Locks the WAL writer. If a thread panicked while holding it, the open segment may end in
/// a partial record: it is cut back before the next write.
pub(crate) fn lock(wal: &Mutex<Wal>) -> MutexGuard<'_, Wal> {
    wal.lock().unwrap_or_else(|poisoned| {
        let mut guard = poisoned.into_inner();
        guard.dirty = true;
        wal.clear_poison();
        guard
    })
}

/// The writer of the WAL: the open segment, and the sealed segments still on disk.
#[derive(Debug)]
pub(crate) struct Wal {
    dir: PathBuf,
    number: u64,
    file: File,
    /// End of the last complete record of the open segment.
    len: u64,
    /// A failed write left bytes past `len` that could not be cut off yet.
    dirty: bool,
    /// Sealed segments still on disk.
    sealed: BTreeSet<u64>,
    /// Test hook: bytes that may still be written before writes fail as if the disk were full.
    fail_after: Option<u64>,
}

impl Wal {
    /// Starts segment `number` in `dir`, next to the sealed segments `sealed`.
    pub(crate) fn create(dir: &Path, number: u64, sealed: BTreeSet<u64>) -> Result<Wal> {
        let file = new_segment(dir, number)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            number,
            file,
            len: MAGIC.len() as u64,
            dirty: false,
            sealed,
            fail_after: None,
        })
    }

    /// Writes `records` and fsyncs them once. Returns the segment they are in. On error
    /// nothing of them remains in the segment.
    pub(crate) fn append(&mut self, records: &[Record]) -> Result<u64> {
        let segment = self.number;
        let wal_err = |source| Error::Wal { segment, source };
        if self.dirty {
            self.cut_back().map_err(wal_err)?;
        }
        let total: u64 = records.iter().map(Record::len).sum();
        let result = {
            let sink = Sink {
                file: &self.file,
                budget: self.fail_after.as_mut(),
            };
            let mut w = BufWriter::with_capacity(WRITE_BUFFER, sink);
            let written = records
                .iter()
                .try_for_each(|r| r.write_to(&mut w))
                .and_then(|()| w.flush());
            // On error the unwritten rest is dropped here, never flushed later.
            let (sink, _unwritten) = w.into_parts();
            written.and_then(|()| sink.file.sync_data())
        };
        match result {
            Ok(()) => {
                self.len += total;
                crate::metrics::WAL_BYTES.inc_by(total);
                Ok(segment)
            }
            Err(source) => {
                self.dirty = true;
                if let Err(e) = self.cut_back() {
                    tracing::error!(segment, error = %e, "cannot cut the WAL back after a failed write; will retry");
                }
                Err(wal_err(source))
            }
        }
    }

    /// Cuts the open segment back to its last complete record, durably.
    fn cut_back(&mut self) -> io::Result<()> {
        self.file.set_len(self.len)?;
        self.file.sync_data()?;
        self.file.seek(SeekFrom::Start(self.len))?;
        self.dirty = false;
        Ok(())
    }

    /// Seals the open segment and starts the next one. Returns the last sealed segment: every
    /// record appended before this call is in a segment at or below it. An empty open segment
    /// is kept open.
    pub(crate) fn rotate(&mut self) -> Result<u64> {
        if self.dirty && self.cut_back().is_ok() {
            tracing::debug!(segment = self.number, "cut the WAL back before rotating");
        }
        if self.len == MAGIC.len() as u64 && !self.dirty {
            return Ok(self.number - 1);
        }
        let next = self.number + 1;
        let file = new_segment(&self.dir, next)?;
        self.sealed.insert(self.number);
        self.number = next;
        self.file = file;
        self.len = MAGIC.len() as u64;
        self.dirty = false;
        Ok(next - 1)
    }

    /// Deletes the sealed segments at or below `through`. A segment that cannot be deleted
    /// is logged and tried again next time (replay would skip its rows anyway).
    pub(crate) fn remove_through(&mut self, through: u64) {
        let doomed: Vec<u64> = self.sealed.range(..=through).copied().collect();
        for number in doomed {
            match fs::remove_file(segment_path(&self.dir, number)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(segment = number, error = %e, "cannot delete a flushed WAL segment");
                    continue;
                }
            }
            self.sealed.remove(&number);
        }
    }

    /// Test hook: writes fail with "storage full" once `bytes` more bytes were written.
    #[cfg(test)]
    pub(crate) fn fail_after(&mut self, bytes: Option<u64>) {
        self.fail_after = bytes;
    }

    /// The open segment's path.
    #[cfg(test)]
    pub(crate) fn current_path(&self) -> PathBuf {
        segment_path(&self.dir, self.number)
    }
}

/// Creates segment `number` with its header, durably (file and directory entry).
fn new_segment(dir: &Path, number: u64) -> Result<File> {
    let path = segment_path(dir, number);
    let context = format!("creating WAL segment {}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(Error::io(context.clone()))?;
    file.write_all(MAGIC)
        .and_then(|()| file.sync_all())
        .map_err(Error::io(context))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Where the writer's bytes go: the segment file, with the test hook's budget.
struct Sink<'a> {
    file: &'a File,
    budget: Option<&'a mut u64>,
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let buf = match self.budget.as_deref_mut() {
            None => buf,
            Some(0) => return Err(io::ErrorKind::StorageFull.into()),
            Some(left) => {
                let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                &buf[..n]
            }
        };
        let mut file: &File = self.file;
        file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
