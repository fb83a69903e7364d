//! Compaction's file swap, retention, and deleting files no snapshot uses any more.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Retired, TableStore};
use crate::files::{self, FileMeta};

/// Files of one size tier that an hour still filling gathers before they are merged.
///
/// A flush every 10 s gives an hour 360 files, and every query without a narrow time filter
/// opens all of them. Merging each tier once it holds this many files keeps an hour at a
/// few files per tier (tiers grow by the same factor) and rewrites each row about once per
/// tier it climbs: log8 of the hour's rows over a flush's, 2–3 times, before the final merge
/// of the complete hour.
pub(crate) const LIVE_MERGE_FILES: usize = 8;

/// The size tier of a file of `rows` rows: 0 below 8 Ki rows, then one more for every
/// factor of [`LIVE_MERGE_FILES`].
pub(crate) fn tier(rows: u64) -> u32 {
    let mut tier = 0;
    let mut rows = rows / 1024;
    while rows >= LIVE_MERGE_FILES as u64 {
        rows /= LIVE_MERGE_FILES as u64;
        tier += 1;
    }
    tier
}

impl TableStore {
    /// What to merge, per hour, with the files in the order they were written: every hour
    /// before `before` (complete, past its grace; an exclusive bound on hour starts) that has
    /// more than one file, all of them into one; and in the hours still filling, each size
    /// tier that has gathered [`LIVE_MERGE_FILES`] files (see [`tier`]).
    pub(crate) fn compaction_candidates(&self, before: i64) -> Vec<(i64, Vec<Arc<FileMeta>>)> {
        let state = self.read();
        let mut hours: BTreeMap<i64, Vec<Arc<FileMeta>>> = BTreeMap::new();
        for f in &state.files {
            hours.entry(f.hour_micros).or_default().push(f.clone());
        }
        let mut candidates = Vec::new();
        for (hour, mut files) in hours {
            files.sort_by(|a, b| a.path.cmp(&b.path));
            if hour < before {
                if files.len() > 1 {
                    candidates.push((hour, files));
                }
                continue;
            }
            let mut tiers: BTreeMap<u32, Vec<Arc<FileMeta>>> = BTreeMap::new();
            for f in files {
                tiers.entry(tier(f.rows)).or_default().push(f);
            }
            candidates.extend(
                tiers
                    .into_values()
                    .filter(|group| group.len() >= LIVE_MERGE_FILES)
                    .map(|group| (hour, group)),
            );
        }
        candidates
    }

    /// Replaces `old` by `merged` in the file list; the old files are retired. Returns false
    /// (and changes nothing) if one of `old` is no longer in the list.
    pub(crate) fn swap_compacted(&self, old: &[Arc<FileMeta>], merged: FileMeta) -> bool {
        let mut state = self.write();
        let present = old
            .iter()
            .all(|o| state.files.iter().any(|f| Arc::ptr_eq(f, o)));
        if !present {
            return false;
        }
        state
            .files
            .retain(|f| !old.iter().any(|o| Arc::ptr_eq(f, o)));
        state.files.push(Arc::new(merged));
        let since = Instant::now();
        state.retired.extend(old.iter().map(|file| Retired {
            file: file.clone(),
            since,
        }));
        true
    }

    /// Drops every row before `before` (an hour start): files of those hours are retired,
    /// memory rows removed. Returns the rows dropped.
    pub(crate) fn drop_before(&self, before: i64) -> u64 {
        let mut state = self.write();
        state.dropped_before = state.dropped_before.max(before);
        let mut dropped = 0u64;
        let since = Instant::now();
        let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut state.files)
            .into_iter()
            .partition(|f| f.hour_micros < before);
        state.files = keep;
        for file in old {
            dropped += file.rows;
            state.retired.push(Retired { file, since });
        }
        let mut memory = Vec::with_capacity(state.memory.len());
        for mut m in std::mem::take(&mut state.memory) {
            if m.min_micros >= before {
                memory.push(m);
                continue;
            }
            let rows = m.batch.num_rows() as u64;
            if m.max_micros < before {
                dropped += rows;
                continue;
            }
            let kept = match super::filter_from(&m.batch, before) {
                Ok(kept) => kept,
                Err(e) => {
                    tracing::error!(error = %e, "cannot filter a batch for retention; keeping it");
                    memory.push(m);
                    continue;
                }
            };
            dropped += rows - kept.num_rows() as u64;
            if let Some((min, max)) = files::time_range(&kept) {
                (m.batch, m.min_micros, m.max_micros) = (kept, min, max);
                memory.push(m);
            }
        }
        state.memory = memory;
        state.recount();
        dropped
    }

    /// Deletes retired files that no snapshot holds and that were retired at least `grace`
    /// ago, and the hour and day directories left empty. Returns how many were deleted.
    pub(crate) fn purge_retired(&self, grace: Duration) -> usize {
        let doomed: Vec<Arc<FileMeta>> = {
            let mut state = self.write();
            let (doomed, kept) = std::mem::take(&mut state.retired)
                .into_iter()
                .partition(|r| Arc::strong_count(&r.file) == 1 && r.since.elapsed() >= grace);
            state.retired = kept;
            doomed.into_iter().map(|r: Retired| r.file).collect()
        };
        let mut deleted = 0;
        for file in doomed {
            match fs::remove_file(&file.path) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %file.path.display(), error = %e, "cannot delete a retired Parquet file");
                    continue;
                }
            }
            // Best effort: only empty directories go, and a later write recreates them.
            if let Some(hour) = file.path.parent()
                && fs::remove_dir(hour).is_ok()
                && let Some(day) = hour.parent()
            {
                let _ = fs::remove_dir(day);
            }
        }
        deleted
    }

    /// Files retired but still on disk.
    #[cfg(test)]
    pub(crate) fn retired_files(&self) -> usize {
        self.read().retired.len()
    }
}
