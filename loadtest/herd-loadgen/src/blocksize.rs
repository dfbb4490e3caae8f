//! `herd-loadgen blocksize`: how well block codecs compress herd's events,
//! without a server. The events of the generator (its value shape, series
//! and tags) are grouped per (series, metric) into blocks of a given number
//! of points, as the blocks layout stores them, and encoded:
//!
//! - `pco`: herd's block format (libs/sink/src/block.rs): pco columns for
//!   time, value and seq, dictionaries for producer and tags;
//! - `arrow-zstd`: the same columns (time, value, seq, producer, tags as
//!   dictionary-encoded strings) as one Arrow IPC record batch, zstd-compressed
//!   per buffer (Arrow's own IPC compression).
//!
//! It reports bytes per point of the block payload (no Cassandra row or key
//! overhead: see `loadtest/bench/blocks` for bytes on disk) and encode and
//! decode time per million points.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, DictionaryArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::datatypes::Int32Type;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::ipc::CompressionType;
use herd_model::Event;
use serde::Serialize;

use crate::gen::Generator;

#[derive(Debug, Serialize)]
pub struct CodecResult {
    pub codec: &'static str,
    pub points: u64,
    pub blocks: u64,
    pub bytes: u64,
    pub bytes_per_point: f64,
    pub encode_ms_per_million: f64,
    pub decode_ms_per_million: f64,
}

/// Blocks of `points_per_block` points per (series, metric), from `events` events of `g`.
pub fn blocks(g: &Generator, events: u64, points_per_block: usize) -> Vec<Vec<Event>> {
    let mut open: BTreeMap<(String, String), Vec<Event>> = BTreeMap::new();
    let mut out = Vec::new();
    for e in g.events(0..events, None) {
        let key = (e.series.clone(), e.metric.clone());
        let block = open.entry(key).or_default();
        block.push(e);
        if block.len() >= points_per_block {
            out.push(std::mem::take(block));
        }
    }
    out.extend(open.into_values().filter(|b| !b.is_empty()));
    out
}

/// Times `encode` and `decode` over `blocks` (each already in the codec's
/// input form, so that only the codec is timed); `len` counts a block's points.
fn measure<T>(
    codec: &'static str,
    blocks: &[T],
    len: impl Fn(&T) -> usize,
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8], &T) -> usize,
) -> CodecResult {
    let points: u64 = blocks.iter().map(|b| len(b) as u64).sum();
    let t = Instant::now();
    let encoded: Vec<Vec<u8>> = blocks.iter().map(encode).collect();
    let encode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let decoded: usize = encoded.iter().zip(blocks).map(|(bytes, b)| decode(bytes, b)).sum();
    let decode_s = t.elapsed().as_secs_f64();
    assert_eq!(decoded as u64, points, "{codec}: every point decodes");
    let bytes: u64 = encoded.iter().map(|b| b.len() as u64).sum();
    CodecResult {
        codec,
        points,
        blocks: blocks.len() as u64,
        bytes,
        bytes_per_point: bytes as f64 / points as f64,
        encode_ms_per_million: encode_s * 1e3 * 1e6 / points as f64,
        decode_ms_per_million: decode_s * 1e3 * 1e6 / points as f64,
    }
}

pub fn pco(blocks: &[Vec<Event>]) -> CodecResult {
    // Workers hold a window's points in columns already (herd_sink::block::Points).
    let columns: Vec<(&Event, herd_sink::block::Points)> =
        blocks.iter().map(|b| (&b[0], herd_sink::block::Points::from_events(b))).collect();
    measure(
        "pco",
        &columns,
        |(_, p)| p.len(),
        |(_, p)| herd_sink::block::encode(p).0,
        |bytes, (first, _)| {
            herd_sink::block::decode(&first.series, &first.metric, bytes)
                .expect("herd's own block decodes")
                .len()
        },
    )
}

pub fn arrow_zstd(blocks: &[Vec<Event>]) -> CodecResult {
    measure(
        "arrow-zstd",
        blocks,
        |b| b.len(),
        |b| {
            let tags: Vec<String> = b
                .iter()
                .map(|e| {
                    e.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
                })
                .collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(b.iter().map(|e| e.ts))),
                Arc::new(Float64Array::from_iter_values(b.iter().map(|e| e.value))),
                Arc::new(UInt64Array::from_iter_values(b.iter().map(|e| e.seq))),
                Arc::new(
                    b.iter().map(|e| e.producer.as_str()).collect::<DictionaryArray<Int32Type>>(),
                ),
                Arc::new(tags.iter().map(String::as_str).collect::<DictionaryArray<Int32Type>>()),
            ];
            let names = ["ts", "value", "seq", "producer", "tags"];
            let batch = RecordBatch::try_from_iter(names.into_iter().zip(columns))
                .expect("columns of equal length");
            let options = IpcWriteOptions::default()
                .try_with_compression(Some(CompressionType::ZSTD))
                .expect("zstd is built in");
            let mut out = Vec::new();
            let mut w = StreamWriter::try_new_with_options(&mut out, &batch.schema(), options)
                .expect("writing to memory");
            w.write(&batch).expect("writing to memory");
            w.finish().expect("writing to memory");
            drop(w);
            out
        },
        |bytes, _| {
            let reader = StreamReader::try_new(bytes, None).expect("our own stream");
            reader
                .map(|b| {
                    let b = b.expect("our own batch");
                    let values =
                        b.column(1).as_any().downcast_ref::<Float64Array>().expect("value column");
                    let _ = b
                        .column(4)
                        .as_any()
                        .downcast_ref::<DictionaryArray<Int32Type>>()
                        .expect("tags")
                        .downcast_dict::<StringArray>();
                    values.len()
                })
                .sum()
        },
    )
}
