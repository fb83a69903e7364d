//! The distinct values of a text column from the files' dictionary pages.

use std::collections::BTreeSet;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use datafusion::physical_plan::collect;
use datafusion::prelude::SessionContext;

use super::*;
use crate::LocalTable;

/// Logs at `ts` whose column `name` holds `value(i)` in row `i`.
fn logs(ts: &[i64], name: &str, value: impl Fn(usize) -> Option<String>) -> RecordBatch {
    let batch = batch(Table::Logs, ts, "r");
    let index = batch.schema().index_of(name).unwrap();
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(StringArray::from_iter((0..ts.len()).map(value)));
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

/// What `distinct_text` gives for column `name` (`None`: the rows must be read), as a set.
async fn distinct(store: &Store, name: &str) -> Option<BTreeSet<Option<String>>> {
    let table = LocalTable::new(store.table(Table::Logs).clone());
    let column = Table::Logs.schema().index_of(name).unwrap();
    let ctx = SessionContext::new();
    let plan = table.distinct_text(&ctx.state(), column).await.unwrap()?;
    let mut values = BTreeSet::new();
    for batch in collect(plan, ctx.task_ctx()).await.unwrap() {
        let text = cast(batch.column(0), &DataType::Utf8).unwrap();
        let text = text.as_string::<i32>();
        values.extend((0..text.len()).map(|i| text.is_valid(i).then(|| text.value(i).to_string())));
    }
    Some(values)
}

#[tokio::test]
async fn distinct_text_is_every_value_held_once_or_more_files_and_memory_alike() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let pods =
        |offset: usize| move |i: usize| (i % 9 != 4).then(|| format!("pod-{}", (i + offset) % 5));
    let ts: Vec<i64> = (0..3000).map(|i| H + i).collect();
    store
        .append(Table::Logs, logs(&ts, "pod_name", pods(0)))
        .unwrap();
    store.flush().await.unwrap();
    let ts: Vec<i64> = (0..3000).map(|i| 2 * H + i).collect();
    store
        .append(Table::Logs, logs(&ts, "pod_name", pods(3)))
        .unwrap();
    store.flush().await.unwrap();
    // And rows not yet flushed.
    store
        .append(
            Table::Logs,
            logs(&[3 * H], "pod_name", |_| Some("pod-new".into())),
        )
        .unwrap();

    let mut expected: BTreeSet<Option<String>> = (0..5).map(|i| Some(format!("pod-{i}"))).collect();
    expected.insert(Some("pod-new".into()));
    expected.insert(None);
    assert_eq!(distinct(&store, "pod_name").await, Some(expected));
}

#[tokio::test]
async fn a_chunk_left_plain_means_reading_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    // More distinct text than a dictionary page takes (1 MiB): the writer falls back to
    // plain pages, which a dictionary page does not describe.
    let ts: Vec<i64> = (0..12_000).map(|i| H + i).collect();
    let long = |i: usize| Some(format!("{i:0>120}"));
    store
        .append(Table::Logs, logs(&ts, "resource", long))
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(distinct(&store, "resource").await, None);
    // A column of the same file that stayed a dictionary is answered.
    let pods = distinct(&store, "pod_name")
        .await
        .expect("from the dictionary pages");
    assert_eq!(pods.len(), 12_000);
}
