//! Flushing writes each hour sorted by timestamp: as it is when the rows arrived in order,
//! reordered otherwise, with the same rows and statistics either way.

use super::*;
use crate::TableStore;
use crate::hours::by_hour;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;

/// The timestamps of a batch.
fn ts_of(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap()
        .values()
        .to_vec()
}

/// What a flush of `batches` must write: per hour, every row as text, sorted by timestamp,
/// rows with equal timestamps in the order they arrived.
fn sorted_by_hour(batches: &[RecordBatch]) -> Vec<(i64, Vec<String>)> {
    let mut rows: Vec<(i64, String)> = Vec::new();
    for b in batches {
        rows.extend(ts_of(b).into_iter().zip(render(std::slice::from_ref(b))));
    }
    rows.sort_by_key(|(t, _)| *t); // stable
    let mut hours: Vec<(i64, Vec<String>)> = Vec::new();
    for (t, row) in rows {
        let hour = t.div_euclid(H) * H;
        match hours.last_mut() {
            Some((h, rows)) if *h == hour => rows.push(row),
            _ => hours.push((hour, vec![row])),
        }
    }
    hours
}

/// One file a flush wrote: its hour, its rows in file order, its metadata, and its row
/// groups.
type Written = (i64, Vec<String>, Arc<crate::FileMeta>, Vec<(i64, i64, i64)>);

/// Appends `batches` to a table of their own, flushes, and returns the files, earliest hour
/// first.
async fn flush(batches: &[RecordBatch]) -> Vec<Written> {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::open(dir.path(), Table::Messages).unwrap();
    for b in batches {
        store.append(b.clone()).unwrap();
    }
    store.flush().await.unwrap();
    let mut files = store.snapshot().files;
    files.sort_by_key(|f| f.hour_micros);
    let out = files
        .into_iter()
        .map(|f| {
            let groups = row_groups(&f.path);
            (f.hour_micros, render(&read_parquet(&f.path)), f, groups)
        })
        .collect();
    // The files were read; the directory may go.
    drop(dir);
    out
}

fn check_flush(written: &[Written], batches: &[RecordBatch]) {
    let want = sorted_by_hour(batches);
    let got: Vec<(i64, Vec<String>)> = written
        .iter()
        .map(|(h, rows, ..)| (*h, rows.clone()))
        .collect();
    assert_eq!(got, want);
    for (hour, rows, meta, _) in written {
        let ts: Vec<i64> = batches
            .iter()
            .flat_map(ts_of)
            .filter(|t| t.div_euclid(H) * H == *hour)
            .collect();
        assert_eq!(meta.rows, rows.len() as u64);
        assert_eq!(meta.min_micros, *ts.iter().min().unwrap());
        assert_eq!(meta.max_micros, *ts.iter().max().unwrap());
    }
}

fn messages(ts: &[i64], tag: &str) -> RecordBatch {
    batch(Table::Messages, ts, tag)
}

#[tokio::test]
async fn batches_in_time_order_are_written_as_they_are_across_an_hour_boundary() {
    let batches = vec![
        messages(&[H + 1, H + 2], "a"),
        messages(&[H + 2, H + 5], "b"),
        messages(&[H + 7, 2 * H, 2 * H + 3], "c"),
        messages(&[2 * H + 3, 2 * H + 9], "d"),
    ];
    let hours = by_hour(&batches).unwrap();
    assert_eq!(hours.len(), 2);
    assert!(hours.iter().all(|h| h.in_order()), "no reordering needed");
    // The parts are slices of the batches, not copies.
    let first = &hours[0].parts()[0];
    assert_eq!(
        first.column(0).to_data().buffers()[0].as_ptr(),
        batches[0].column(0).to_data().buffers()[0].as_ptr()
    );
    assert_eq!(hours[0].parts().len(), 3);
    assert_eq!(hours[1].parts().len(), 2);
    assert_eq!(
        (hours[1].min_micros, hours[1].max_micros),
        (2 * H, 2 * H + 9)
    );
    check_flush(&flush(&batches).await, &batches);
}

#[tokio::test]
async fn rows_out_of_order_are_sorted_with_ties_in_arrival_order() {
    // Unsorted within a batch, overlapping across batches, equal timestamps in several
    // batches, and rows of two hours mixed in one batch.
    let batches = vec![
        messages(&[H + 5, H + 1, 2 * H + 2, H + 5], "a"),
        messages(&[H + 3, H + 5, H + 5], "b"),
        messages(&[2 * H + 1, H + 9], "c"),
        messages(&[H + 1], "d"),
    ];
    let hours = by_hour(&batches).unwrap();
    assert_eq!(hours.len(), 2);
    assert!(!hours[0].in_order(), "hour 1 needs reordering");
    assert!(!hours[1].in_order(), "hour 2 has 2H+2 before 2H+1");
    check_flush(&flush(&batches).await, &batches);
}

#[tokio::test]
async fn an_hour_in_order_next_to_one_out_of_order_is_still_written_as_it_is() {
    let batches = vec![
        messages(&[H + 4, 2 * H + 1], "a"),
        messages(&[H + 2, 2 * H + 1, 2 * H + 2], "b"),
    ];
    let hours = by_hour(&batches).unwrap();
    assert_eq!(
        hours.iter().map(|h| h.in_order()).collect::<Vec<_>>(),
        vec![false, true]
    );
    check_flush(&flush(&batches).await, &batches);
}

/// Row groups of a file: rows, and the min and max timestamp from its statistics.
fn row_groups(path: &std::path::Path) -> Vec<(i64, i64, i64)> {
    let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .row_groups()
        .iter()
        .map(|rg| match rg.column(0).statistics() {
            Some(Statistics::Int64(s)) => {
                (rg.num_rows(), *s.min_opt().unwrap(), *s.max_opt().unwrap())
            }
            other => panic!("no timestamp statistics: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn large_hours_keep_full_row_groups_with_statistics_either_way() {
    const N: i64 = 40_000;
    // In order: 80,000 rows in 20 batches of 4,000.
    let in_order: Vec<RecordBatch> = (0..20)
        .map(|b| {
            messages(
                &(b * 4000..(b + 1) * 4000)
                    .map(|i| H + i)
                    .collect::<Vec<_>>(),
                "o",
            )
        })
        .collect();
    // Out of order: two batches interleaving even and odd timestamps.
    let interleaved = vec![
        messages(&(0..N).map(|i| H + 2 * i).collect::<Vec<_>>(), "e"),
        messages(&(0..N).map(|i| H + 2 * i + 1).collect::<Vec<_>>(), "d"),
    ];
    assert!(by_hour(&in_order).unwrap()[0].in_order());
    assert!(!by_hour(&interleaved).unwrap()[0].in_order());
    for batches in [in_order, interleaved] {
        let written = flush(&batches).await;
        check_flush(&written, &batches);
        let groups = &written[0].3;
        assert_eq!(groups.len(), 2, "64 Ki rows per row group");
        assert_eq!(groups[0].0, 64 * 1024);
        assert_eq!(groups[0].0 + groups[1].0, 2 * N);
        assert_eq!(groups[0].1, H);
        assert!(groups[0].2 < groups[1].1, "row groups do not overlap");
        assert_eq!(groups[1].2, H + 2 * N - 1);
    }
}
