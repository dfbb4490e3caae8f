//! Cutting consumed messages into chunks of work: pure, no I/O.
//!
//! A chunk holds the writes of consecutive messages (herd-sink's layout
//! decides their shape: CQL batches of rows, or blocks), the dead letters of
//! those messages, and for each Kafka partition the offset to checkpoint once
//! the whole chunk is stored. [`ChunkBuilder`] cuts chunks for the `rows`
//! layout by rows, bytes and linger; the `blocks` layout cuts them by offset
//! windows instead ([`crate::window`]).

use std::collections::BTreeMap;
use std::time::Instant;

use herd_model::Decoded;
use herd_sink::rows::{BatchLimits, RowPacker};
use herd_sink::Write;

use crate::dead_letter::{DeadLetter, Stage};
use crate::shards::Shard;
use crate::source::SourcePosition;

/// The offset to commit for a partition: the next message to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOffset {
    pub shard: Shard,
    pub next: i64,
    /// Blocks layout: where the window still open at `next` starts (None:
    /// `next` starts a window). Stored with the checkpoint.
    pub window_start: Option<i64>,
    /// Blocks layout: the shard's de-duplication memory as it was where the
    /// next reader starts (`window_start`, else `next`), encoded.
    pub dedup: Option<std::sync::Arc<[u8]>>,
    /// The oldest Kafka append time (ms) of the messages this offset covers
    /// that no checkpoint covers yet (None: unknown); set where the chunk
    /// is cut.
    pub appended_ms: Option<i64>,
}

/// The writer stage's input: what to store, then what may be checkpointed.
#[derive(Debug)]
pub struct Chunk {
    /// Consecutive from 0: offsets are committed in this order.
    pub id: u64,
    /// Each event of a write is tagged with the index of its message in `sources`.
    pub writes: Vec<Write>,
    /// Where each message of the chunk came from.
    pub sources: Vec<SourcePosition>,
    pub dead_letters: Vec<DeadLetter>,
    pub offsets: Vec<CommitOffset>,
    pub messages: usize,
    pub rows: usize,
    pub bytes: usize,
    /// When Kafka appended the oldest message this chunk writes for the
    /// first time (ms), for the append-to-write histogram.
    pub appended_ms: Option<i64>,
}

pub struct Limits {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub linger: std::time::Duration,
    pub batches: BatchLimits,
}

/// Dead letters for a message's rejects: each carries the rejected bytes
/// (a JSON line) or the whole message.
pub fn rejects_to_letters(
    at: &SourcePosition,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    content_type: Option<&[u8]>,
    decoded: &mut Decoded,
) -> Vec<DeadLetter> {
    decoded
        .rejects
        .drain(..)
        .map(|reject| DeadLetter {
            source: at.clone(),
            key: key.map(<[u8]>::to_vec),
            payload: reject.bytes.unwrap_or_else(|| payload.unwrap_or_default().to_vec()),
            content_type: content_type.map(|c| String::from_utf8_lossy(c).into_owned()),
            stage: Stage::Decode,
            position: reject.position.to_string(),
            reason: reject.reason,
        })
        .collect()
}

pub struct ChunkBuilder {
    limits: Limits,
    next_id: u64,
    packer: RowPacker,
    sources: Vec<SourcePosition>,
    dead_letters: Vec<DeadLetter>,
    /// Per shard, the offset to commit and the oldest Kafka append time read.
    offsets: BTreeMap<Shard, (i64, Option<i64>)>,
    messages: usize,
    rows: usize,
    bytes: usize,
    started: Option<Instant>,
}

impl ChunkBuilder {
    pub fn new(limits: Limits) -> ChunkBuilder {
        ChunkBuilder {
            packer: RowPacker::new(limits.batches),
            limits,
            next_id: 0,
            sources: Vec::new(),
            dead_letters: Vec::new(),
            offsets: BTreeMap::new(),
            messages: 0,
            rows: 0,
            bytes: 0,
            started: None,
        }
    }

    /// Changes the cut limits (live configuration); the open chunk is cut by
    /// the new ones from its next message.
    pub fn set_cut(&mut self, max_rows: usize, max_bytes: usize, linger: std::time::Duration) {
        self.limits.max_rows = max_rows;
        self.limits.max_bytes = max_bytes;
        self.limits.linger = linger;
    }

    /// Adds one decoded message. Every reject becomes a dead letter.
    pub fn add(
        &mut self,
        at: SourcePosition,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        content_type: Option<&[u8]>,
        mut decoded: Decoded,
        now: Instant,
    ) {
        self.started.get_or_insert(now);
        self.messages += 1;
        self.bytes += payload.map_or(0, <[u8]>::len);
        self.dead_letters.extend(rejects_to_letters(&at, key, payload, content_type, &mut decoded));
        self.rows += decoded.events.len();
        let source = self.sources.len() as u32;
        for event in decoded.events {
            self.packer.add(event, source);
        }
        let (next, oldest) =
            self.offsets.entry(at.shard.clone()).or_insert((at.offset + 1, at.appended_ms));
        *next = (*next).max(at.offset + 1);
        *oldest = crate::commit::oldest(*oldest, at.appended_ms);
        self.sources.push(at);
    }

    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    pub fn is_full(&self) -> bool {
        self.rows >= self.limits.max_rows || self.bytes >= self.limits.max_bytes
    }

    /// When the open chunk must be cut even if not full.
    pub fn deadline(&self) -> Option<Instant> {
        self.started.map(|s| s + self.limits.linger)
    }

    /// Cuts the open chunk; None if it holds no message.
    pub fn take(&mut self) -> Option<Chunk> {
        if self.is_empty() {
            return None;
        }
        let appended_ms = self.sources.iter().filter_map(|s| s.appended_ms).min();
        let offsets = std::mem::take(&mut self.offsets)
            .into_iter()
            .map(|(shard, (next, appended_ms))| CommitOffset {
                appended_ms,
                shard,
                next,
                window_start: None,
                dedup: None,
            })
            .collect();
        let chunk = Chunk {
            id: self.next_id,
            appended_ms,
            writes: self.packer.take().into_iter().map(Write::Rows).collect(),
            sources: std::mem::take(&mut self.sources),
            dead_letters: std::mem::take(&mut self.dead_letters),
            offsets,
            messages: self.messages,
            rows: self.rows,
            bytes: self.bytes,
        };
        self.next_id += 1;
        self.messages = 0;
        self.rows = 0;
        self.bytes = 0;
        self.started = None;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_model::{json, Event, Position, Reject};
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            max_rows: 10,
            max_bytes: 1 << 20,
            linger: Duration::from_millis(50),
            batches: BatchLimits { max_rows: 3, max_bytes: 1 << 20, bucket_ms: 1000 },
        }
    }

    fn event(series: &str, ts: i64, seq: u64) -> Event {
        Event {
            series: series.into(),
            metric: "m".into(),
            ts,
            value: 0.0,
            tags: Default::default(),
            producer: "p".into(),
            seq,
        }
    }

    fn at(partition: i32, offset: i64) -> SourcePosition {
        SourcePosition { shard: Shard::new("t", partition), offset, appended_ms: None }
    }

    fn decoded(events: Vec<Event>) -> Decoded {
        Decoded { events, rejects: vec![] }
    }

    #[test]
    fn a_chunk_holds_one_write_per_partition_batch() {
        let mut b = ChunkBuilder::new(limits());
        // Series a, bucket 0: 5 events (3 + 2 rows per batch); series b: 1.
        let events: Vec<Event> =
            (0..5).map(|i| event("a", i, i as u64)).chain([event("b", 3, 11)]).collect();
        b.add(at(0, 7), None, Some(b"x"), None, decoded(events), Instant::now());
        let chunk = b.take().unwrap();
        let mut sizes: Vec<usize> = chunk.writes.iter().map(|w| w.len()).collect();
        sizes.sort();
        assert_eq!(sizes, vec![1, 2, 3]);
        assert!(chunk
            .writes
            .iter()
            .all(|w| w.tags().iter().all(|&s| chunk.sources[s as usize].offset == 7)));
        assert_eq!(chunk.rows, 6);
        assert_eq!(
            chunk.offsets,
            vec![CommitOffset {
                shard: Shard::new("t", 0),
                next: 8,
                window_start: None,
                dedup: None,
                appended_ms: None,
            }]
        );
    }

    #[test]
    fn cuts_by_rows_bytes_and_linger() {
        let now = Instant::now();
        let mut b = ChunkBuilder::new(limits());
        assert!(b.deadline().is_none() && b.take().is_none());
        b.add(
            at(0, 0),
            None,
            Some(b"xy"),
            None,
            decoded((0..9).map(|i| event("a", i, i as u64)).collect()),
            now,
        );
        assert!(!b.is_full());
        assert_eq!(b.deadline(), Some(now + Duration::from_millis(50)));
        b.add(
            at(0, 1),
            None,
            Some(b"z"),
            None,
            decoded(vec![event("a", 9, 9u64)]),
            now + Duration::from_millis(10),
        );
        assert!(b.is_full(), "10 rows");
        let chunk = b.take().unwrap();
        assert_eq!((chunk.id, chunk.messages, chunk.bytes), (0, 2, 3));
        assert!(b.deadline().is_none(), "a new chunk starts its own linger");

        let mut l = limits();
        l.max_bytes = 4;
        let mut b = ChunkBuilder::new(l);
        b.add(at(0, 0), None, Some(b"12345"), None, decoded(vec![]), now);
        assert!(b.is_full(), "bytes");
        assert_eq!(b.take().unwrap().id, 0);
    }

    #[test]
    fn offsets_per_partition_are_the_next_to_read() {
        let mut b = ChunkBuilder::new(limits());
        let now = Instant::now();
        for (p, o) in [(0, 5), (1, 9), (0, 6), (1, 10), (2, 0)] {
            b.add(at(p, o), None, None, None, decoded(vec![]), now);
        }
        let c = b.take().unwrap();
        let offsets: Vec<(i32, i64)> =
            c.offsets.iter().map(|o| (o.shard.partition, o.next)).collect();
        assert_eq!(offsets, vec![(0, 7), (1, 11), (2, 1)]);
        assert_eq!(b.take().map(|c| c.id), None);
        b.add(at(0, 7), None, None, None, decoded(vec![]), now);
        assert_eq!(b.take().unwrap().id, 1, "ids are consecutive");

        // Each event knows its message.
        b.add(at(0, 8), None, None, None, decoded(vec![event("a", 1, 1)]), now);
        b.add(at(1, 3), None, None, None, decoded(vec![event("a", 2, 2)]), now);
        let c = b.take().unwrap();
        let write = &c.writes[0];
        let offsets: Vec<(i32, i64)> = write
            .tags()
            .iter()
            .map(|&s| (c.sources[s as usize].shard.partition, c.sources[s as usize].offset))
            .collect();
        assert_eq!(offsets, vec![(0, 8), (1, 3)]);
    }

    #[test]
    fn rejects_become_dead_letters_with_their_bytes() {
        let mut b = ChunkBuilder::new(limits());
        let payload = json::encode_lines(&[event("a", 1, 1)]);
        let d = Decoded {
            events: vec![event("a", 1, 1)],
            rejects: vec![
                Reject {
                    position: Position::Line(2),
                    reason: "bad line".into(),
                    bytes: Some(b"{oops".to_vec()),
                },
                Reject { position: Position::Message, reason: "whole".into(), bytes: None },
            ],
        };
        b.add(
            at(3, 42),
            Some(b"k"),
            Some(&payload),
            Some(b"application/x-ndjson"),
            d,
            Instant::now(),
        );
        let c = b.take().unwrap();
        assert_eq!(c.rows, 1);
        assert_eq!(c.dead_letters.len(), 2);
        let line = &c.dead_letters[0];
        assert_eq!((line.source.shard.partition, line.source.offset), (3, 42));
        assert_eq!(line.payload, b"{oops");
        assert_eq!(line.position, "line 2");
        assert_eq!(line.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(c.dead_letters[1].payload, payload, "no cut-out bytes: the whole message");
    }
}
