//! The WAL: round trip, torn tails, corruption, full disk, flush and crash points.

use std::fs::{self, OpenOptions};
use std::io::Write;

use super::*;
use crate::Error;

#[test]
fn replays_every_acknowledged_group_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let a1 = batch(Table::Alerts, &[H + 5, H + 1, 2 * H + 3], "a1");
    let l1 = batch(Table::Logs, &[H + 2], "l1");
    let m1 = batch(Table::Messages, &[3 * H, H], "m1");
    let a2 = batch(Table::Alerts, &[H + 9], "a2");
    {
        let store = Store::open(dir.path(), options()).unwrap();
        store
            .append_many(vec![
                (Table::Alerts, a1.clone()),
                (Table::Logs, l1.clone()),
                (Table::Messages, m1.clone()),
            ])
            .unwrap();
        store.append(Table::Alerts, a2.clone()).unwrap();
        // An empty batch is accepted and stores nothing.
        store
            .append(Table::Logs, batch(Table::Logs, &[], "none"))
            .unwrap();
        assert_eq!(contents(&store, Table::Alerts), expected(&[&a1, &a2]));
    } // dropped without a flush: only the WAL has the rows

    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&store, Table::Alerts), expected(&[&a1, &a2]));
    assert_eq!(contents(&store, Table::Logs), expected(&[&l1]));
    assert_eq!(contents(&store, Table::Messages), expected(&[&m1]));
    assert_eq!(store.table(Table::Alerts).rows_in_memory(), 4);
    let rows: u64 = store.partitions().iter().map(|p| p.rows).sum();
    assert_eq!(rows, 4 + 1 + 2);
}

#[test]
fn rejects_a_group_with_a_wrong_batch_and_stores_none_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let err = store.append_many(vec![
        (Table::Alerts, batch(Table::Alerts, &[1], "a")),
        (Table::Alerts, batch(Table::Messages, &[2], "m")),
    ]);
    assert!(matches!(err, Err(Error::SchemaMismatch { .. })));
    assert!(contents(&store, Table::Alerts).is_empty());
    drop(store);
    let store = Store::open(dir.path(), options()).unwrap();
    assert!(contents(&store, Table::Alerts).is_empty());
}

#[test]
fn cuts_a_torn_tail_and_keeps_every_complete_record() {
    let dir = tempfile::tempdir().unwrap();
    let m1 = batch(Table::Messages, &[H + 1, H + 2], "m1");
    let m2 = batch(Table::Messages, &[H + 3], "m2");
    let segment = {
        let store = Store::open(dir.path(), options()).unwrap();
        store.append(Table::Messages, m1.clone()).unwrap();
        store.append(Table::Messages, m2.clone()).unwrap();
        store.wal_path()
    };
    let good = fs::metadata(&segment).unwrap().len();
    // A crash in the middle of a write: a header promising 1000 bytes, then 10 of them.
    let mut f = OpenOptions::new().append(true).open(&segment).unwrap();
    f.write_all(&1000u32.to_le_bytes()).unwrap();
    f.write_all(&[0xab; 4 + 1 + 10]).unwrap();
    drop(f);

    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&store, Table::Messages), expected(&[&m1, &m2]));
    assert_eq!(
        fs::metadata(&segment).unwrap().len(),
        good,
        "torn tail cut off"
    );
    let m3 = batch(Table::Messages, &[H + 4], "m3");
    store.append(Table::Messages, m3.clone()).unwrap();
    drop(store);

    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(
        contents(&store, Table::Messages),
        expected(&[&m1, &m2, &m3])
    );
}

#[test]
fn a_checksum_mismatch_ends_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let m1 = batch(Table::Messages, &[H + 1], "m1");
    let m2 = batch(Table::Messages, &[H + 2], "m2");
    let (segment, after_first) = {
        let store = Store::open(dir.path(), options()).unwrap();
        store.append(Table::Messages, m1.clone()).unwrap();
        let after_first = fs::metadata(store.wal_path()).unwrap().len();
        store.append(Table::Messages, m2.clone()).unwrap();
        (store.wal_path(), after_first)
    };
    // Flip one byte in the last record's payload: a write torn inside the page cache.
    let mut bytes = fs::read(&segment).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0xff;
    fs::write(&segment, &bytes).unwrap();

    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&store, Table::Messages), expected(&[&m1]));
    assert_eq!(fs::metadata(&segment).unwrap().len(), after_first);
}

#[test]
fn corruption_in_an_earlier_segment_keeps_what_precedes_it_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let m1 = batch(Table::Messages, &[H + 1], "m1");
    let m2 = batch(Table::Messages, &[H + 2], "m2");
    let m3 = batch(Table::Messages, &[H + 3], "m3");
    let first = {
        let store = Store::open(dir.path(), options()).unwrap();
        store.append(Table::Messages, m1.clone()).unwrap();
        store.append(Table::Messages, m2.clone()).unwrap();
        store.wal_path()
    };
    {
        // The next run appends to a new segment.
        let store = Store::open(dir.path(), options()).unwrap();
        assert_ne!(store.wal_path(), first);
        store.append(Table::Messages, m3.clone()).unwrap();
    }
    let mut bytes = fs::read(&first).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0xff;
    fs::write(&first, &bytes).unwrap();

    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&store, Table::Messages), expected(&[&m1, &m3]));
}

#[test]
fn a_segment_without_its_header_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let m1 = batch(Table::Messages, &[H + 1], "m1");
    {
        let store = Store::open(dir.path(), options()).unwrap();
        store.append(Table::Messages, m1.clone()).unwrap();
    }
    // A crash right after creating the next segment, before its header was written.
    let torn = dir.path().join("wal").join(format!("{:020}.wal", 999));
    fs::write(&torn, b"ALW").unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&store, Table::Messages), expected(&[&m1]));
    assert!(!torn.exists());
}

#[test]
fn a_full_disk_fails_the_append_and_leaves_the_wal_clean() {
    let dir = tempfile::tempdir().unwrap();
    let a1 = batch(Table::Alerts, &[H + 1, H + 2], "a1");
    let a2 = batch(Table::Alerts, &[H + 3], "a2");
    let l2 = batch(Table::Logs, &[H + 3], "l2");
    let a3 = batch(Table::Alerts, &[H + 4], "a3");
    let store = Store::open(dir.path(), options()).unwrap();
    store.append(Table::Alerts, a1.clone()).unwrap();
    let clean = fs::metadata(store.wal_path()).unwrap().len();

    for budget in [0, 5, 100, 3000] {
        store.wal_fail_after(Some(budget));
        let group = vec![(Table::Alerts, a2.clone()), (Table::Logs, l2.clone())];
        let err = store.append_many(group);
        assert!(
            matches!(&err, Err(Error::Wal { source, .. }) if source.kind() == std::io::ErrorKind::StorageFull),
            "{err:?}"
        );
        assert_eq!(fs::metadata(store.wal_path()).unwrap().len(), clean);
        assert_eq!(contents(&store, Table::Alerts), expected(&[&a1]));
        assert!(contents(&store, Table::Logs).is_empty());
    }

    // Space is back: the same group goes through.
    store.wal_fail_after(None);
    store
        .append_many(vec![(Table::Alerts, a2.clone()), (Table::Logs, l2.clone())])
        .unwrap();
    store.append(Table::Alerts, a3.clone()).unwrap();
    drop(store);

    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&store, Table::Alerts), expected(&[&a1, &a2, &a3]));
    assert_eq!(contents(&store, Table::Logs), expected(&[&l2]));
}

#[tokio::test]
async fn a_flush_deletes_the_segments_and_rows_count_once_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let a1 = batch(Table::Alerts, &[H + 1, 2 * H + 1], "a1");
    let m1 = batch(Table::Messages, &[H + 2], "m1");
    let a2 = batch(Table::Alerts, &[H + 3], "a2");
    {
        let store = Store::open(dir.path(), options()).unwrap();
        store
            .append_many(vec![
                (Table::Alerts, a1.clone()),
                (Table::Messages, m1.clone()),
            ])
            .unwrap();
        store.flush().await.unwrap();
        // Only the new, empty segment is left.
        assert_eq!(segments(dir.path()), vec![store.wal_path()]);
        assert_eq!(store.table(Table::Alerts).rows_in_memory(), 0);
        store.append(Table::Alerts, a2.clone()).unwrap();
    }
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&store, Table::Alerts), expected(&[&a1, &a2]));
    assert_eq!(contents(&store, Table::Messages), expected(&[&m1]));
    assert_eq!(store.table(Table::Alerts).rows_in_memory(), 1);
    // A flush with nothing new keeps the open segment instead of making a new one.
    store.flush().await.unwrap();
    let after = segments(dir.path());
    store.flush().await.unwrap();
    assert_eq!(segments(dir.path()), after);
    assert_eq!(after.len(), 1);
}

#[tokio::test]
async fn a_crash_between_parquet_and_segment_deletion_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a1 = batch(Table::Alerts, &[H + 1, 2 * H + 1], "a1");
    let l1 = batch(Table::Logs, &[H + 2], "l1");
    let a2 = batch(Table::Alerts, &[H + 3], "a2");
    let saved = dir.path().join("saved.wal");
    {
        let store = Store::open(dir.path(), options()).unwrap();
        store
            .append_many(vec![(Table::Alerts, a1.clone()), (Table::Logs, l1.clone())])
            .unwrap();
        fs::copy(store.wal_path(), &saved).unwrap();
        let segment = store.wal_path();
        store.flush().await.unwrap();
        // The segment's deletion "did not happen".
        fs::copy(&saved, &segment).unwrap();
        store.append(Table::Alerts, a2.clone()).unwrap();
    }
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&store, Table::Alerts), expected(&[&a1, &a2]));
    assert_eq!(contents(&store, Table::Logs), expected(&[&l1]));
    assert_eq!(store.table(Table::Alerts).rows_in_memory(), 1);
}

#[tokio::test]
async fn a_crash_after_only_some_tables_were_flushed_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a1 = batch(Table::Alerts, &[H + 1, 2 * H + 1], "a1");
    let l1 = batch(Table::Logs, &[H + 2], "l1");
    let a2 = batch(Table::Alerts, &[H + 3], "a2");
    {
        let store = Store::open(dir.path(), options()).unwrap();
        store
            .append_many(vec![(Table::Alerts, a1.clone()), (Table::Logs, l1.clone())])
            .unwrap();
        // A flush that wrote the alerts and crashed before the logs and the deletion.
        store.table(Table::Alerts).flush().await.unwrap();
        store.append(Table::Alerts, a2.clone()).unwrap();
        assert_eq!(contents(&store, Table::Alerts), expected(&[&a1, &a2]));
    }
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&store, Table::Alerts), expected(&[&a1, &a2]));
    assert_eq!(contents(&store, Table::Logs), expected(&[&l1]));
    assert_eq!(store.table(Table::Alerts).rows_in_memory(), 1);
    assert_eq!(store.table(Table::Logs).rows_in_memory(), 1);

    store.flush().await.unwrap();
    assert_eq!(segments(dir.path()).len(), 1);
    drop(store);
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&store, Table::Alerts), expected(&[&a1, &a2]));
    assert_eq!(contents(&store, Table::Logs), expected(&[&l1]));
    assert_eq!(store.table(Table::Alerts).rows_in_memory(), 0);
}

#[tokio::test]
async fn a_flush_that_wrote_only_some_hours_keeps_the_rest_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m1 = batch(Table::Messages, &[H + 1, 2 * H + 1, 3 * H + 1], "m1");
    let m2 = batch(Table::Messages, &[2 * H + 2], "m2");
    let store = Store::open(dir.path(), options()).unwrap();
    store.append(Table::Messages, m1.clone()).unwrap();
    store.append(Table::Messages, m2.clone()).unwrap();
    // Hour 2's directory cannot be created: a file is in the way.
    let day = dir.path().join("messages").join("1970-01-01");
    fs::create_dir_all(&day).unwrap();
    fs::write(day.join("02"), b"in the way").unwrap();

    assert!(store.flush().await.is_err());
    assert_eq!(contents(&store, Table::Messages), expected(&[&m1, &m2]));
    assert_eq!(store.table(Table::Messages).rows_in_memory(), 3);
    drop(store); // a crash now: hour 1 is in Parquet, everything in the WAL

    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&store, Table::Messages), expected(&[&m1, &m2]));
    assert_eq!(store.table(Table::Messages).rows_in_memory(), 3);
    fs::remove_file(day.join("02")).unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.table(Table::Messages).rows_in_memory(), 0);
    assert_eq!(contents(&store, Table::Messages), expected(&[&m1, &m2]));
    drop(store);
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&store, Table::Messages), expected(&[&m1, &m2]));
}
