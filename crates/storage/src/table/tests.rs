//! Tests of one table on its own.

use super::*;
use arrow::array::{ArrayRef, StringArray};
use std::sync::Arc;

/// A messages batch with the given timestamps (microseconds).
fn messages(ts: &[i64]) -> RecordBatch {
    let schema = Table::Messages.schema();
    let n = ts.len();
    let mut columns: Vec<ArrayRef> = vec![Arc::new(
        TimestampMicrosecondArray::from(ts.to_vec()).with_timezone("UTC"),
    )];
    for _ in 1..schema.fields().len() {
        columns.push(Arc::new(StringArray::from(vec!["x"; n])));
    }
    RecordBatch::try_new(schema, columns).expect("valid batch")
}

#[tokio::test]
async fn flush_writes_one_sorted_file_per_hour_and_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = files::HOUR_MICROS;
    let store = TableStore::open(dir.path(), Table::Messages).expect("open");
    store
        .append(messages(&[h + 5, 2 * h + 1, h + 2]))
        .expect("append");
    store.append(messages(&[h + 3])).expect("append");
    assert_eq!(store.rows_in_memory(), 4);
    store.flush().await.expect("flush");
    assert_eq!(store.rows_in_memory(), 0);

    let snap = store.snapshot();
    assert!(snap.memory.is_empty());
    assert_eq!(snap.files.len(), 2);
    assert_eq!((snap.files[0].rows, snap.files[1].rows), (3, 1));
    assert_eq!(
        (snap.files[0].min_micros, snap.files[0].max_micros),
        (h + 2, h + 5)
    );
    assert!(
        snap.files[0]
            .path
            .to_string_lossy()
            .contains("/messages/1970-01-01/01/")
    );

    let parts = store.partitions();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].rows, 3);

    // A reopened store finds the same files.
    let reopened = TableStore::open(dir.path(), Table::Messages).expect("reopen");
    let mut again = reopened.snapshot().files;
    let mut before = snap.files;
    again.sort_by(|a, b| a.path.cmp(&b.path));
    before.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(again, before);
}

#[test]
fn rejects_a_batch_of_another_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = TableStore::open(dir.path(), Table::Alerts).expect("open");
    assert!(matches!(
        store.append(messages(&[1])),
        Err(Error::SchemaMismatch { .. })
    ));
}
