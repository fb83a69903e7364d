//! Reading the WAL back when the store opens.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read};
use std::path::Path;

use armorlake_common::Table;
use arrow::record_batch::RecordBatch;

use super::record::{HEADER_LEN, Header, MAX_PAYLOAD};
use super::{MAGIC, segment_number, segment_path};
use crate::error::{Error, Result};

/// What the WAL held.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    /// Every complete record, oldest first, with the segment it was in.
    pub(crate) records: Vec<(u64, Table, RecordBatch)>,
    /// The segment files on disk after replay.
    pub(crate) segments: BTreeSet<u64>,
}

/// Reads every segment under `dir` (created if missing), oldest first.
///
/// A record whose length runs past the end of its file, whose checksum does not match or that
/// does not decode ends what is read of that segment. In the last segment that is the torn tail
/// of a write cut short by a crash: the file is truncated to the end of the last good record.
/// In an earlier segment it is corruption: it is logged, the records before it are kept, and
/// replay goes on with the next segment. Replay never fails because of a segment's contents;
/// only listing the directory can fail.
pub(crate) fn replay(dir: &Path) -> Result<Replayed> {
    fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io(format!("listing {}", dir.display())))? {
        let entry = entry.map_err(Error::io(format!("listing {}", dir.display())))?;
        if let Some(n) = segment_number(&entry.path()) {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    let mut out = Replayed::default();
    for (i, &number) in numbers.iter().enumerate() {
        let last = i + 1 == numbers.len();
        if replay_segment(dir, number, last, &mut out.records) {
            out.segments.insert(number);
        }
    }
    Ok(out)
}

/// Why reading a segment stopped early, and where.
struct Stop {
    at: u64,
    why: String,
}

/// Reads one segment into `records`. Returns whether the file is still there.
fn replay_segment(
    dir: &Path,
    number: u64,
    last: bool,
    records: &mut Vec<(u64, Table, RecordBatch)>,
) -> bool {
    let path = segment_path(dir, number);
    let before = records.len();
    let (size, stop) = match read_segment(&path, number, records) {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(segment = number, error = %e, "cannot read WAL segment; skipping it");
            return true;
        }
    };
    let read = records.len() - before;
    let Some(stop) = stop else {
        tracing::debug!(segment = number, records = read, "replayed WAL segment");
        return true;
    };
    let cut = size - stop.at;
    if !last {
        tracing::error!(
            segment = number,
            records = read,
            offset = stop.at,
            bytes_lost = cut,
            reason = %stop.why,
            "corrupt record in a sealed WAL segment; keeping the records before it"
        );
        return true;
    }
    tracing::warn!(
        segment = number,
        records = read,
        bytes_cut = cut,
        reason = %stop.why,
        "torn tail in the last WAL segment (a write cut short); truncating it"
    );
    if stop.at < MAGIC.len() as u64 {
        // Not even the segment header made it: the segment was being created.
        if let Err(e) = fs::remove_file(&path) {
            tracing::error!(segment = number, error = %e, "cannot remove a torn WAL segment");
            return true;
        }
        return false;
    }
    let truncated = OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(stop.at).and_then(|()| f.sync_all()));
    if let Err(e) = truncated {
        tracing::error!(segment = number, error = %e, "cannot truncate the torn WAL tail");
    }
    true
}

/// Reads records until the end of the file or the first bad one. Returns the file's size and,
/// if it stopped early, where and why.
fn read_segment(
    path: &Path,
    number: u64,
    records: &mut Vec<(u64, Table, RecordBatch)>,
) -> std::io::Result<(u64, Option<Stop>)> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let stop = |at: u64, why: &str| {
        Some(Stop {
            at,
            why: why.to_string(),
        })
    };
    let mut magic = [0u8; 8];
    if size < MAGIC.len() as u64 || reader.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Ok((size, stop(0, "no segment header")));
    }
    let mut pos = MAGIC.len() as u64;
    while pos < size {
        if size - pos < HEADER_LEN as u64 {
            return Ok((size, stop(pos, "partial record header")));
        }
        let mut head = [0u8; HEADER_LEN];
        reader.read_exact(&mut head)?;
        let header = Header::parse(&head);
        if header.len > MAX_PAYLOAD || header.len as u64 > size - pos - HEADER_LEN as u64 {
            return Ok((
                size,
                stop(pos, "record length runs past the end of the file"),
            ));
        }
        let mut payload = vec![0u8; header.len];
        reader.read_exact(&mut payload)?;
        match header.decode(payload) {
            Ok((table, batch)) => records.push((number, table, batch)),
            Err(why) => return Ok((size, stop(pos, &why))),
        }
        pos += (HEADER_LEN + header.len) as u64;
    }
    Ok((size, None))
}
