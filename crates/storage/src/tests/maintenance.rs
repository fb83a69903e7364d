//! Compaction, retention and the background flusher.

use std::fs;

use arrow::array::Array;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::*;
use crate::table::TableStore;
use crate::{CompactionStats, LocalTable};

/// A session with `config` that reads `table` as `messages`.
fn messages_session(table: &Arc<TableStore>, config: SessionConfig) -> SessionContext {
    let ctx = SessionContext::new_with_config(config);
    ctx.register_table("messages", Arc::new(LocalTable::new(table.clone())))
        .unwrap();
    ctx
}

/// The physical plan of `sql` in `ctx`.
async fn planned(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
    ctx.sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

/// Appends each batch to messages and flushes it into its own files.
async fn flushed(store: &Store, batches: &[&RecordBatch]) {
    for b in batches {
        store.append(Table::Messages, (*b).clone()).unwrap();
        store.flush().await.unwrap();
    }
}

fn timestamps(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let ts = b
                .column(0)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            ts.values().to_vec()
        })
        .collect()
}

#[tokio::test]
async fn compaction_merges_an_hours_files_while_a_scan_still_reads_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let m1 = batch(Table::Messages, &[H + 5, H + 1], "m1");
    let m2 = batch(Table::Messages, &[H + 3, 2 * H + 1], "m2");
    let m3 = batch(Table::Messages, &[H + 2, H + 4, H + 3], "m3");
    flushed(&store, &[&m1, &m2, &m3]).await;
    let all = expected(&[&m1, &m2, &m3]);
    let table = store.table(Table::Messages);
    let old: Vec<PathBuf> = table
        .snapshot()
        .files
        .iter()
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(old.len(), 4);

    // A query planned before compaction, executed after the old files left the table.
    let ctx = messages_session(table, SessionConfig::new());
    let plan = planned(&ctx, "select * from messages").await;
    let snapshot = table.snapshot();

    // The current hour (and one within the grace) is left alone.
    let stats = store.compact_at(H + 30 * 60_000_000).unwrap();
    assert_eq!(stats, CompactionStats::default());
    let stats = store.compact_at(2 * H + 5 * 60_000_000).unwrap();
    assert_eq!(stats.merges, 0);

    let stats = store.compact_at(10 * H).unwrap();
    assert_eq!((stats.merges, stats.files_merged, stats.rows), (1, 3, 6));
    let files = table.snapshot().files;
    assert_eq!(files.len(), 2);
    let merged = files.iter().find(|f| f.hour_micros == H).unwrap();
    assert_eq!(
        (merged.rows, merged.min_micros, merged.max_micros),
        (6, H + 1, H + 5)
    );
    let merged_rows = read_parquet(&merged.path);
    assert_eq!(
        timestamps(&merged_rows),
        vec![H + 1, H + 2, H + 3, H + 3, H + 4, H + 5]
    );
    // Equal timestamps keep the order of the files they came from.
    let rendered = render(&merged_rows);
    assert!(rendered[2].contains("m2-") && rendered[3].contains("m3-"));
    assert_eq!(contents(&store, Table::Messages), all);

    // The snapshot and the plan hold the old files.
    assert!(old.iter().all(|p| p.exists()));
    drop(snapshot);
    store.compact_at(10 * H).unwrap();
    assert!(old.iter().all(|p| p.exists()));
    let rows: usize = collect(plan.clone(), ctx.task_ctx())
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 7);
    drop(plan);
    drop(ctx);
    store.compact_at(10 * H).unwrap();
    assert_eq!(table.retired_files(), 0);
    let remaining: Vec<_> = old.iter().filter(|p| p.exists()).collect();
    assert_eq!(remaining.len(), 1, "only hour 2's file is still there");

    drop(store);
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&store, Table::Messages), all);
    assert_eq!(store.table(Table::Messages).snapshot().files.len(), 2);
}

#[tokio::test]
async fn an_hour_still_filling_merges_each_size_tier_once_it_has_enough_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let table = store.table(Table::Messages).clone();
    let now = H + 30 * 60_000_000;
    let big_ts: Vec<i64> = (0..9000).map(|i| H + 1_000 + i).collect();
    let big = batch(Table::Messages, &big_ts, "big");
    let small: Vec<RecordBatch> = (0..8)
        .map(|i| batch(Table::Messages, &[H + 10 + i], &format!("s{i}")))
        .collect();
    flushed(&store, &[&big]).await;
    flushed(&store, &small[..7].iter().collect::<Vec<_>>()).await;
    assert_eq!(store.compact_at(now).unwrap(), CompactionStats::default());
    assert_eq!(table.snapshot().files.len(), 8);

    // The eighth small file fills tier 0: those eight are merged, the bigger file stays.
    flushed(&store, &[&small[7]]).await;
    let stats = store.compact_at(now).unwrap();
    assert_eq!((stats.merges, stats.files_merged, stats.rows), (1, 8, 8));
    let mut rows: Vec<u64> = table.snapshot().files.iter().map(|f| f.rows).collect();
    rows.sort();
    assert_eq!(rows, vec![8, 9000]);
    let mut all: Vec<&RecordBatch> = small.iter().collect();
    all.push(&big);
    assert_eq!(contents(&store, Table::Messages), expected(&all));
    assert_eq!(
        parquet_files(dir.path()).len(),
        2,
        "the merged files are deleted"
    );

    // After a restart the same two files; once the hour is complete, one.
    drop(table);
    drop(store);
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(store.table(Table::Messages).snapshot().files.len(), 2);
    let stats = store.compact_at(10 * H).unwrap();
    assert_eq!((stats.merges, stats.files_merged), (1, 2));
    assert_eq!(contents(&store, Table::Messages), expected(&all));
}

#[test]
fn size_tiers_grow_by_the_merge_factor() {
    use crate::table::tier;
    assert_eq!(tier(0), 0);
    assert_eq!(tier(8191), 0);
    assert_eq!(tier(8192), 1);
    assert_eq!(tier(65_535), 1);
    assert_eq!(tier(65_536), 2);
    // A 10 s flush at 2,000 events/s and eight of them sit one tier apart.
    assert_eq!(tier(20_000) + 1, tier(8 * 20_000));
}

#[tokio::test]
async fn compaction_merges_large_interleaved_files_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    const ROWS: i64 = 20_000;
    let mut batches = Vec::new();
    for k in 0..3 {
        // File k holds H + 3i + k, appended in reverse order (the flush sorts).
        let ts: Vec<i64> = (0..ROWS).rev().map(|i| H + 3 * i + k).collect();
        batches.push(batch(Table::Messages, &ts, &format!("f{k}")));
    }
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    flushed(&store, &refs).await;
    let stats = store.compact_at(10 * H).unwrap();
    assert_eq!((stats.files_merged, stats.rows), (3, 3 * ROWS as u64));
    let files = store.table(Table::Messages).snapshot().files;
    assert_eq!(files.len(), 1);
    let ts = timestamps(&read_parquet(&files[0].path));
    assert_eq!(ts, (0..3 * ROWS).map(|i| H + i).collect::<Vec<_>>());
    assert_eq!(contents(&store, Table::Messages), expected(&refs));
}

#[tokio::test]
async fn a_crash_in_the_middle_of_compaction_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m1 = batch(Table::Messages, &[H + 1, H + 2], "m1");
    let m2 = batch(Table::Messages, &[H + 3], "m2");
    let all = expected(&[&m1, &m2]);
    let old = {
        let store = Store::open(dir.path(), options()).unwrap();
        flushed(&store, &[&m1, &m2]).await;
        let held = store.table(Table::Messages).snapshot();
        store.compact_at(10 * H).unwrap();
        let old: Vec<PathBuf> = held.files.iter().map(|f| f.path.clone()).collect();
        // A crash now: merged file renamed into place, old files not yet deleted.
        assert!(old.iter().all(|p| p.exists()));
        old
    };
    // And a merge that never reached its rename.
    let hour = old[0].parent().unwrap();
    fs::write(hour.join("0000000000000000-0000.parquet.tmp"), b"half").unwrap();

    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&store, Table::Messages), all);
    assert!(old.iter().all(|p| !p.exists()));
    assert_eq!(parquet_files(dir.path()).len(), 1);
    assert_eq!(fs::read_dir(hour).unwrap().count(), 1);
}

#[tokio::test]
async fn retention_drops_whole_old_hours_only() {
    let dir = tempfile::tempdir().unwrap();
    let keep_all = Store::open(dir.path(), options()).unwrap();
    assert_eq!(keep_all.apply_retention(100 * H).unwrap(), 0);
    drop(keep_all);

    let options = StoreOptions {
        retention: Some(Duration::from_secs(2 * 3600)),
        ..options()
    };
    let store = Store::open(dir.path(), options.clone()).unwrap();
    let m1 = batch(Table::Messages, &[H + 1, H + 2], "m1");
    let m2 = batch(Table::Messages, &[2 * H + 1], "m2");
    let m3 = batch(Table::Messages, &[3 * H + 1], "m3");
    flushed(&store, &[&m1, &m2, &m3]).await;
    let hour1 = store.table(Table::Messages).snapshot().files[0]
        .path
        .clone();
    // Still in memory: one batch across hours 1 and 3, one all in hour 1.
    let m4 = batch(Table::Messages, &[H + 3, 3 * H + 2], "m4");
    let m5 = batch(Table::Messages, &[H + 4], "m5");
    store
        .append_many(vec![
            (Table::Messages, m4.clone()),
            (Table::Messages, m5.clone()),
        ])
        .unwrap();

    // Now 04:30: the cutoff is 02:30, so hour 1 (ended 02:00) goes, hour 2 (ends 03:00) stays.
    assert_eq!(store.apply_retention(4 * H + H / 2).unwrap(), 2 + 1 + 1);
    let left = expected(&[&m2, &m3, &m4.slice(1, 1)]);
    assert_eq!(contents(&store, Table::Messages), left);
    assert!(!hour1.exists());
    assert!(
        !hour1.parent().unwrap().exists(),
        "empty hour directory removed"
    );
    let hours: Vec<i64> = store.partitions().iter().map(|p| p.hour_micros).collect();
    assert_eq!(hours, vec![2 * H, 3 * H]);
    assert_eq!(store.apply_retention(4 * H + H / 2).unwrap(), 0);

    // A restart before the next flush: the rows dropped from memory come back from the WAL
    // (no file claims hour 1 any more), and the next pass drops them again.
    drop(store);
    let store = Store::open(dir.path(), options.clone()).unwrap();
    assert_eq!(store.apply_retention(4 * H + H / 2).unwrap(), 2);
    assert_eq!(contents(&store, Table::Messages), left);
    store.flush().await.unwrap();
    drop(store);
    let store = Store::open(dir.path(), options).unwrap();
    assert_eq!(store.apply_retention(4 * H + H / 2).unwrap(), 0);
    assert_eq!(contents(&store, Table::Messages), left);
}

#[tokio::test]
async fn the_flusher_flushes_and_compacts_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        flush_interval: Duration::from_millis(20),
        maintenance_interval: Duration::from_millis(20),
        compaction_grace: Duration::ZERO,
        ..options()
    };
    let store = Store::open(dir.path(), options).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let flusher = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .run_flusher(async move {
                    let _ = stopped.await;
                })
                .await
        })
    };
    let m1 = batch(Table::Messages, &[H + 1], "m1");
    let m2 = batch(Table::Messages, &[H + 2], "m2");
    let m3 = batch(Table::Messages, &[H + 3], "m3");
    let table = store.table(Table::Messages).clone();
    for b in [&m1, &m2] {
        store.append(Table::Messages, b.clone()).unwrap();
        wait_for(|| table.rows_in_memory() == 0).await;
    }
    // Two flushes made two files of hour 1; maintenance merges them into one.
    wait_for(|| table.snapshot().files.len() == 1 && parquet_files(dir.path()).len() == 1).await;
    store.append(Table::Messages, m3.clone()).unwrap();
    stop.send(()).unwrap();
    flusher.await.unwrap();
    assert_eq!(table.rows_in_memory(), 0, "flushed on shutdown");
    assert_eq!(
        contents(&store, Table::Messages),
        expected(&[&m1, &m2, &m3])
    );
}

#[test]
fn a_table_is_due_for_flush_by_rows_or_by_the_bytes_of_all_tables() {
    let dir = tempfile::tempdir().unwrap();
    let probe = batch(Table::Logs, &[H + 1], "p");
    let one = probe.get_array_memory_size();
    let options = StoreOptions {
        flush_rows: 3,
        // Two one-row batches of different tables together reach it, one does not.
        flush_bytes: one + 1,
        ..options()
    };
    let store = Store::open(dir.path(), options).unwrap();
    assert!(store.due_for_flush().is_empty());
    store.append(Table::Logs, probe).unwrap();
    assert_eq!(store.bytes_in_memory(), one);
    assert!(store.due_for_flush().is_empty());
    store
        .append(Table::Messages, batch(Table::Messages, &[H + 2], "m"))
        .unwrap();
    assert!(store.bytes_in_memory() > one);
    assert_eq!(store.due_for_flush(), vec![Table::Logs, Table::Messages]);
}

#[test]
fn a_table_is_due_for_flush_by_rows_under_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        flush_rows: 3,
        flush_bytes: usize::MAX,
        ..options()
    };
    let store = Store::open(dir.path(), options).unwrap();
    store
        .append(Table::Alerts, batch(Table::Alerts, &[H, H + 1], "a"))
        .unwrap();
    assert!(store.due_for_flush().is_empty());
    store
        .append(Table::Alerts, batch(Table::Alerts, &[H + 2], "b"))
        .unwrap();
    assert_eq!(store.due_for_flush(), vec![Table::Alerts]);
}

#[tokio::test]
async fn the_flusher_flushes_when_memory_reaches_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        flush_interval: Duration::from_secs(3600),
        maintenance_interval: Duration::from_secs(3600),
        flush_rows: usize::MAX,
        flush_bytes: 1,
        ..options()
    };
    let store = Store::open(dir.path(), options).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let flusher = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .run_flusher(async move {
                    let _ = stopped.await;
                })
                .await
        })
    };
    // Let the flusher's first (interval) flush pass with nothing to do.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = batch(Table::Messages, &[H + 1], "m");
    store.append(Table::Messages, m.clone()).unwrap();
    let table = store.table(Table::Messages).clone();
    wait_for(|| table.rows_in_memory() == 0).await;
    assert_eq!(store.bytes_in_memory(), 0);
    assert_eq!(table.snapshot().files.len(), 1);
    stop.send(()).unwrap();
    flusher.await.unwrap();
    assert_eq!(contents(&store, Table::Messages), expected(&[&m]));
}

/// Polls `done` for up to 20 s.
async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out");
}

#[tokio::test]
async fn a_scan_reads_only_the_files_and_batches_its_time_filter_can_match() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let hour1 = batch(Table::Messages, &[H + 1, H + 2], "h1");
    let hour2 = batch(Table::Messages, &[2 * H + 1, 2 * H + 2], "h2");
    flushed(&store, &[&hour1, &hour2]).await;
    let mem3 = batch(Table::Messages, &[3 * H + 1], "m3");
    let mem4 = batch(Table::Messages, &[4 * H + 1], "m4");
    store.append(Table::Messages, mem3).unwrap();
    store.append(Table::Messages, mem4).unwrap();
    let table = store.table(Table::Messages);
    assert_eq!(table.snapshot().files.len(), 2);

    let ctx = messages_session(table, SessionConfig::new());
    // Microseconds as a timestamp literal, compared with `timestamp`.
    let at = |micros: i64| format!("to_timestamp_micros({micros})");
    let run = |sql: String| {
        let ctx = ctx.clone();
        async move {
            let df = ctx.sql(&sql).await.unwrap();
            let plan = df.clone().create_physical_plan().await.unwrap();
            let text = datafusion::physical_plan::displayable(plan.as_ref())
                .indent(true)
                .to_string();
            let rows: usize = df
                .collect()
                .await
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum();
            (
                text.matches(".parquet").count(),
                text.contains("DataSourceExec: partitions=1, partition_sizes"),
                rows,
            )
        }
    };
    // One file, no memory batch.
    let (files, memory, rows) = run(format!(
        "select * from messages where \"timestamp\" >= {} and \"timestamp\" < {}",
        at(2 * H),
        at(3 * H)
    ))
    .await;
    assert_eq!((files, memory, rows), (1, false, 2));
    // One memory batch, no file.
    let (files, memory, rows) = run(format!(
        "select * from messages where \"timestamp\" = {}",
        at(4 * H + 1)
    ))
    .await;
    assert_eq!((files, memory, rows), (0, true, 1));
    // A filter that is not on the timestamp itself reads everything.
    let (files, memory, rows) = run(format!(
        "select * from messages where date_trunc('hour', \"timestamp\") = {}",
        at(H)
    ))
    .await;
    assert_eq!((files, memory, rows), (2, true, 2));
    // Nothing in range: nothing read.
    let (files, memory, rows) = run(format!(
        "select * from messages where \"timestamp\" > {}",
        at(5 * H)
    ))
    .await;
    assert_eq!((files, memory, rows), (0, false, 0));
}

#[tokio::test]
async fn a_scan_keeps_each_files_page_index_in_the_tables_cache() {
    use datafusion::object_store::path::Path as StorePath;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let m1 = batch(Table::Messages, &[H + 1, H + 2, H + 3], "m1");
    flushed(&store, &[&m1]).await;
    let table = store.table(Table::Messages);
    let file = table.snapshot().files[0].path.clone();
    let key = StorePath::from(file.to_string_lossy().as_ref());
    assert!(table.metadata_cache().get(&key).is_none());

    let ctx = messages_session(table, SessionConfig::new());
    // A filter the page index cannot use: the opener alone would cache the footer only.
    let rows = ctx
        .sql("select count(*) from messages where message = 'nothing'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);

    let entry = table.metadata_cache().get(&key).expect("cached");
    let info = entry.file_metadata.extra_info();
    assert_eq!(info.get("page_index").map(String::as_str), Some("true"));
}

#[tokio::test]
async fn a_scan_reads_parquet_with_the_sessions_options() {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::datasource::physical_plan::ParquetSource;
    use datafusion::datasource::source::DataSourceExec;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let m1 = batch(Table::Messages, &[H + 1, H + 2], "m1");
    flushed(&store, &[&m1]).await;
    let table = store.table(Table::Messages);
    for pushdown in [false, true] {
        let mut config = SessionConfig::new();
        config.options_mut().execution.parquet.pushdown_filters = pushdown;
        let ctx = messages_session(table, config);
        let plan = planned(&ctx, "select * from messages where message = 'm1'").await;
        let mut read = Vec::new();
        plan.apply(|node| {
            let parquet = node
                .downcast_ref::<DataSourceExec>()
                .and_then(|d| d.downcast_to_file_source::<ParquetSource>());
            if let Some((_, parquet)) = parquet {
                read.push(parquet.table_parquet_options().global.pushdown_filters);
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        assert_eq!(read, [pushdown]);
    }
}

#[tokio::test]
async fn timestamps_are_delta_encoded_without_a_dictionary() {
    use parquet::basic::Encoding;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let m1 = batch(Table::Messages, &[H + 1, H + 2, H + 3], "m1");
    flushed(&store, &[&m1]).await;
    let file = store.table(Table::Messages).snapshot().files[0]
        .path
        .clone();
    let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    let row_group = reader.metadata().row_group(0);
    let timestamp = row_group.column(0);
    assert_eq!(timestamp.column_path().string(), "timestamp");
    assert_eq!(
        timestamp.dictionary_page_offset(),
        None,
        "no dictionary page"
    );
    let encodings: Vec<Encoding> = timestamp.encodings().collect();
    assert!(
        encodings.contains(&Encoding::DELTA_BINARY_PACKED),
        "{encodings:?}"
    );
    // The other columns keep their dictionaries.
    let message = (0..row_group.num_columns())
        .map(|i| row_group.column(i))
        .find(|c| c.column_path().string() == "message")
        .unwrap();
    assert!(message.dictionary_page_offset().is_some());
}

#[tokio::test]
async fn text_columns_can_be_read_as_dictionaries_from_files_and_memory() {
    use arrow::array::AsArray;
    use arrow::compute::cast;
    use arrow::datatypes::{DataType, TimestampMicrosecondType};
    use datafusion::catalog::TableProvider;
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{col, lit};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let m1 = batch(Table::Messages, &[H + 1, H + 2], "m1");
    let m2 = batch(Table::Messages, &[H + 3], "m2");
    flushed(&store, &[&m1, &m2]).await;
    store
        .append(
            Table::Messages,
            batch(Table::Messages, &[H + 4, H + 5], "m3"),
        )
        .unwrap();
    let table = store.table(Table::Messages);
    let message = Table::Messages.schema().index_of("message").unwrap();
    let projection = vec![0, message];
    // Every row's time and message, as text, sorted.
    let rows = |batches: Vec<RecordBatch>| {
        let mut rows: Vec<(i64, String)> = Vec::new();
        for b in &batches {
            let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
            let text = cast(b.column(1), &DataType::Utf8).unwrap();
            for i in 0..b.num_rows() {
                rows.push((ts.value(i), text.as_string::<i32>().value(i).to_string()));
            }
        }
        rows.sort();
        rows
    };
    // A filter on the column read as a dictionary (left out of the Parquet reader's
    // pruning) and one on another column (kept), with and without the reader's row filters.
    let on_message = col("message").not_eq(lit("m2-message-0"));
    let since = ScalarValue::TimestampMicrosecond(Some(H), Some("UTC".into()));
    let on_time = col("timestamp").gt_eq(lit(since));
    for pushdown in [false, true] {
        let mut config = SessionConfig::new();
        config.options_mut().execution.parquet.pushdown_filters = pushdown;
        let ctx = messages_session(table, config);
        let state = ctx.state();
        for filters in [vec![], vec![on_message.clone()], vec![on_time.clone()]] {
            let local = LocalTable::new(table.clone());
            let views = local
                .scan(&state, Some(&projection), &filters, None)
                .await
                .unwrap();
            let views = rows(collect(views, ctx.task_ctx()).await.unwrap());
            let plan = local
                .scan_with_dictionaries(&state, Some(&projection), &filters, None, &[message])
                .await
                .unwrap();
            assert_eq!(
                plan.schema().field(1).data_type(),
                &armorlake_common::schema::text_dictionary_type()
            );
            let batches = collect(plan, ctx.task_ctx()).await.unwrap();
            for b in &batches {
                assert!(matches!(b.column(1).data_type(), DataType::Dictionary(..)));
            }
            let dictionaries = rows(batches);
            // The filter on the dictionary column prunes nothing; the scan reading views
            // may leave out the rows it rejects, as the filter above would.
            assert_eq!(
                dictionaries.len(),
                5,
                "filters {filters:?}, pushdown {pushdown}"
            );
            let passed = |rows: Vec<(i64, String)>| -> Vec<(i64, String)> {
                rows.into_iter()
                    .filter(|(_, m)| filters != [on_message.clone()] || m != "m2-message-0")
                    .collect()
            };
            assert_eq!(
                passed(dictionaries),
                passed(views),
                "filters {filters:?}, pushdown {pushdown}"
            );
        }
    }
    // Only text columns.
    let ctx = messages_session(table, SessionConfig::new());
    let err = LocalTable::new(table.clone())
        .scan_with_dictionaries(&ctx.state(), None, &[], None, &[0])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not text"), "{err}");
}
