//! Throughput of the WAL. Run in release mode:
//! `cargo test --release -p armorlake-storage wal_throughput -- --ignored --nocapture`.

use std::time::Instant;

use arrow::ipc::MetadataVersion;
use arrow::ipc::writer::{IpcWriteOptions, StreamEncoder};

use super::*;
use crate::wal::Record;

/// Realistic alerts: ~600 bytes of text per event, values varying per row.
fn alerts(rows: usize, seed: usize) -> RecordBatch {
    let schema = Table::Alerts.schema();
    let base = 1_700_000_000_000_000i64 + (seed * rows) as i64 * 1000;
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(c, field)| -> ArrayRef {
            let vary = |i: usize| (i * 7919 + seed * 104_729 + c * 31) % 1_000_003;
            match field.data_type() {
                DataType::Timestamp(..) => Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        (0..rows).map(|i| base + i as i64 * 1000),
                    )
                    .with_timezone("UTC"),
                ),
                DataType::Int32 => Arc::new(Int32Array::from_iter_values(
                    (0..rows).map(|i| (vary(i) % 65_536) as i32),
                )),
                DataType::List(_) => {
                    let mut b = ListBuilder::new(StringBuilder::new());
                    for i in 0..rows {
                        b.values().append_value("NIST_800-53_AC-3");
                        b.values()
                            .append_value(format!("MITRE-T{}", vary(i) % 2000));
                        b.append(true);
                    }
                    Arc::new(b.finish())
                }
                _ => Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("{}-{:07}", field.name(), vary(i))),
                )),
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}

#[test]
#[ignore = "a measurement; run in release mode with --ignored --nocapture"]
fn wal_throughput() {
    const ROWS: usize = 4096;
    const BATCHES: usize = 96;
    let batches: Vec<RecordBatch> = (0..BATCHES).map(|i| alerts(ROWS, i)).collect();
    let events = (ROWS * BATCHES) as f64;

    let schema_and_eos: usize = StreamEncoder::try_new(&Table::Alerts.schema())
        .unwrap()
        .finish()
        .unwrap()
        .iter()
        .map(|b| b.len())
        .sum();
    let t = Instant::now();
    let records: Vec<Record> = batches
        .iter()
        .map(|b| Record::encode(Table::Alerts, b).unwrap())
        .collect();
    let encode = t.elapsed();
    let bytes: u64 = records.iter().map(Record::len).sum();
    println!(
        "record: {:.0} B/event, {} B of schema + end marker per record ({:.2} %); \
         encode + crc {:.1} µs/batch ({:.0} MB/s)",
        bytes as f64 / events,
        schema_and_eos,
        100.0 * (schema_and_eos * BATCHES) as f64 / bytes as f64,
        encode.as_secs_f64() * 1e6 / BATCHES as f64,
        bytes as f64 / encode.as_secs_f64() / 1e6,
    );
    drop(records);
    for rows in [1, 16, ROWS] {
        let b = alerts(rows, 7);
        let sizes: Vec<String> = [64, 8]
            .iter()
            .map(|&align| {
                let options = IpcWriteOptions::try_new(align, false, MetadataVersion::V5).unwrap();
                let mut enc = StreamEncoder::try_new_with_options(b.schema_ref(), options).unwrap();
                let mut len: usize = enc.encode(&b).unwrap().iter().map(|x| x.len()).sum();
                len += enc.finish().unwrap().iter().map(|x| x.len()).sum::<usize>();
                format!("{len} B at alignment {align}")
            })
            .collect();
        println!("a {rows}-row alert batch: {}", sizes.join(", "));
    }

    for group in [1usize, 4] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), options()).unwrap();
        let t = Instant::now();
        for chunk in batches.chunks(group) {
            let g = chunk.iter().map(|b| (Table::Alerts, b.clone())).collect();
            store.append_many(g).unwrap();
        }
        let took = t.elapsed().as_secs_f64();
        println!(
            "append_many, {group} batch(es) of {ROWS} alerts per call (one fsync each): \
             {:.0} events/s, {:.0} MB/s, {:.2} ms/call",
            events / took,
            bytes as f64 / took / 1e6,
            took * 1e3 / (BATCHES / group) as f64,
        );
        drop(store);
        let t = Instant::now();
        let store = Store::open(dir.path(), options()).unwrap();
        let took = t.elapsed().as_secs_f64();
        assert_eq!(store.table(Table::Alerts).rows_in_memory(), ROWS * BATCHES);
        println!(
            "replay: {:.0} events/s, {:.0} MB/s",
            events / took,
            bytes as f64 / took / 1e6
        );
    }
}
