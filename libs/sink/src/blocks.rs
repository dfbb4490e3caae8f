//! The `blocks` layout: the points of one (series, metric) that one shard
//! delivered within one window of its Kafka offsets, in one compressed
//! block ([`crate::block`]) under a deterministic key.
//!
//! - [`BlockPacker`] (pure) groups a window's events into blocks;
//! - [`BlockWriter`] writes a block. Its key is (series, bucket, metric,
//!   topic, partition, window start) and its write timestamp grows with what
//!   the block covers, so a rewrite of a window (a replay after a crash, a
//!   flush of the same window with more messages, a paused former owner
//!   waking up) either writes the same block again or loses to the larger
//!   one. Why nothing can be stored twice is in `libs/sink/README.md`.

use std::collections::HashMap;
use std::sync::Arc;

use herd_model::Event;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use crate::block::{self, Points};
use crate::rollup;
use crate::write::{partition_key, prepare_insert};
use crate::WriteError;
use crate::{SinkError, SinkSettings};

/// Messages a window may cover at most. The write timestamp adds the
/// number of messages covered to the newest event time in µs × 1000, which
/// orders rewrites of a window only while it stays under 1000.
pub const MAX_WINDOW_MESSAGES: u32 = 999;

/// Where a block lives: its Cassandra partition (series, bucket), then
/// metric and the window that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    pub series: String,
    /// Start of the time bucket, ms since epoch.
    pub bucket: i64,
    pub metric: String,
    pub topic: Arc<str>,
    pub partition: i32,
    /// The offset of the window's first message.
    pub window_start: i64,
}

/// One block to write: its key, its points (each with the caller's tag),
/// and how many messages of the window it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub key: BlockKey,
    pub points: Points,
    pub tags: Vec<u32>,
    /// The window's first `messages` messages are in this block (or had no
    /// point of its series and metric). A rewrite with more is a superset.
    pub messages: u32,
    /// Events new since this block was last written (the rest are rewritten).
    pub fresh: u32,
    /// Per point: whether it counts in the rollups (false: a producer's
    /// repeat). Empty: every point counts.
    pub counted: Vec<bool>,
    /// The rollup resolutions (seconds) the block is rolled up at; it
    /// stores the partials of [`rollup::stored`] of them (a coarser one is
    /// merged from a finer one on read). Empty: none (rollups off).
    pub resolutions: Arc<[u32]>,
}

impl Block {
    /// The write timestamp (µs): the newest event time, then the coverage.
    /// A superset of a block has a newest event time at least as late and
    /// more messages, so its timestamp is strictly larger; the same block
    /// written again has the same one (an exact overwrite).
    pub fn write_timestamp(&self) -> i64 {
        let newest = self.points.max_ts().unwrap_or(0);
        newest * 1000 + i64::from(self.messages.min(MAX_WINDOW_MESSAGES))
    }

    /// The block's points as events (for dead letters).
    pub fn events(&self) -> Vec<Event> {
        (0..self.points.len())
            .map(|i| self.points.event(i, &self.key.series, &self.key.metric))
            .collect()
    }
}

/// Groups the events of one shard's window by (series, bucket, metric).
pub struct BlockPacker {
    bucket_ms: i64,
    /// Series, then its (bucket, metric) groups: looking a series up by
    /// `&str` allocates nothing, and a series has few metrics and buckets in
    /// one window, so they are searched in a list.
    groups: HashMap<String, Vec<(i64, String, Group)>>,
}

#[derive(Default)]
struct Group {
    points: Points,
    tags: Vec<u32>,
    counted: Vec<bool>,
    /// Events already handed out in a block.
    written: usize,
}

impl BlockPacker {
    pub fn new(bucket_ms: i64) -> BlockPacker {
        BlockPacker { bucket_ms, groups: HashMap::new() }
    }

    pub fn add(&mut self, event: Event, tag: u32) {
        self.add_counted(event, tag, true)
    }

    /// Adds an event that counts in the rollups or not (a repeat).
    pub fn add_counted(&mut self, event: Event, tag: u32, counted: bool) {
        let (series, bucket) = partition_key(&event, self.bucket_ms);
        let groups = match self.groups.get_mut(series) {
            Some(g) => g,
            None => self.groups.entry(series.to_owned()).or_default(),
        };
        let i = match groups.iter().position(|(b, m, _)| *b == bucket && *m == event.metric) {
            Some(i) => i,
            None => {
                groups.push((bucket, event.metric.clone(), Group::default()));
                groups.len() - 1
            }
        };
        let group = &mut groups[i].2;
        group.points.push(event);
        group.tags.push(tag);
        group.counted.push(counted);
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The window's blocks that gained events since the last call, whole
    /// (the packer keeps its events: a later call returns supersets under
    /// the same keys). A block without new events is not returned again: it
    /// would be the same content.
    pub fn blocks(
        &mut self,
        topic: &Arc<str>,
        partition: i32,
        window_start: i64,
        messages: u32,
        resolutions: &Arc<[u32]>,
    ) -> Vec<Block> {
        let mut out = Vec::new();
        for (series, groups) in self.groups.iter_mut() {
            for (bucket, metric, g) in
                groups.iter_mut().filter(|(_, _, g)| g.points.len() > g.written)
            {
                let fresh = (g.points.len() - g.written) as u32;
                g.written = g.points.len();
                out.push(Block {
                    key: BlockKey {
                        series: series.clone(),
                        bucket: *bucket,
                        metric: metric.clone(),
                        topic: topic.clone(),
                        partition,
                        window_start,
                    },
                    points: g.points.clone(),
                    tags: g.tags.clone(),
                    messages,
                    fresh,
                    counted: if g.counted.iter().all(|c| *c) {
                        Vec::new()
                    } else {
                        g.counted.clone()
                    },
                    resolutions: resolutions.clone(),
                });
            }
        }
        out
    }
}

/// Writes blocks with one prepared statement; cheap to clone.
#[derive(Clone)]
pub struct BlockWriter {
    session: Arc<Session>,
    insert: PreparedStatement,
    settings: Arc<SinkSettings>,
}

impl BlockWriter {
    pub async fn prepare(
        session: Arc<Session>,
        settings: SinkSettings,
    ) -> Result<BlockWriter, SinkError> {
        let insert = prepare_insert(
            &session,
            format!(
                "INSERT INTO {}.blocks (series, bucket, metric, topic, partition, window_start, points, min_ts, max_ts, messages, data, rollups) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?",
                settings.keyspace
            ),
            &settings,
        )
        .await?;
        Ok(BlockWriter { session, insert, settings: Arc::new(settings) })
    }

    pub fn settings(&self) -> &SinkSettings {
        &self.settings
    }

    /// Encodes and writes one block with its rollup partials (a single-row
    /// insert, so both are stored or neither).
    pub async fn write(&self, b: &Block) -> Result<(), WriteError> {
        let (data, points) = block::encode(&b.points);
        let rollups = (!b.resolutions.is_empty()).then(|| {
            let stored = rollup::stored(&b.resolutions);
            rollup::encode(&b.resolutions, &rollup::partials(&b.points, &b.counted, &stored))
        });
        let min_ts = b.points.min_ts().unwrap_or(0);
        let max_ts = b.points.max_ts().unwrap_or(0);
        let k = &b.key;
        self.session
            .execute_unpaged(
                &self.insert,
                (
                    &k.series,
                    CqlTimestamp(k.bucket),
                    &k.metric,
                    &*k.topic,
                    k.partition,
                    k.window_start,
                    points as i32,
                    CqlTimestamp(min_ts),
                    CqlTimestamp(max_ts),
                    b.messages as i32,
                    data,
                    rollups,
                    b.write_timestamp(),
                    self.settings.ttl_secs,
                ),
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(series: &str, metric: &str, ts: i64, seq: u64) -> Event {
        Event {
            series: series.into(),
            metric: metric.into(),
            ts,
            value: 1.0,
            tags: Default::default(),
            producer: "p".into(),
            seq,
        }
    }

    #[test]
    fn groups_by_series_bucket_and_metric_under_the_window_key() {
        let mut p = BlockPacker::new(1000);
        for (i, e) in [
            event("a", "cpu", 1, 0),
            event("a", "cpu", 2, 1),
            event("a", "mem", 3, 2),
            event("a", "cpu", 1500, 3),
            event("b", "cpu", 4, 4),
        ]
        .into_iter()
        .enumerate()
        {
            p.add(e, i as u32);
        }
        let topic: Arc<str> = "t".into();
        let none: Arc<[u32]> = Arc::new([]);
        let mut blocks = p.blocks(&topic, 3, 700, 5, &none);
        blocks.sort_by(|a, b| a.key.cmp(&b.key));
        let keys: Vec<(&str, i64, &str, usize)> = blocks
            .iter()
            .map(|b| (b.key.series.as_str(), b.key.bucket, b.key.metric.as_str(), b.points.len()))
            .collect();
        assert_eq!(
            keys,
            vec![("a", 0, "cpu", 2), ("a", 0, "mem", 1), ("a", 1000, "cpu", 1), ("b", 0, "cpu", 1)]
        );
        assert!(blocks
            .iter()
            .all(|b| b.key.partition == 3 && b.key.window_start == 700 && b.messages == 5));
        assert_eq!(blocks[0].tags, vec![0, 1]);
        assert!(blocks.iter().all(|b| b.fresh as usize == b.points.len()));
        // The packer keeps its events: the next call is a superset under the
        // same keys, of the blocks that gained events only.
        p.add(event("a", "cpu", 5, 5), 5);
        let again = p.blocks(&topic, 3, 700, 6, &none);
        assert_eq!(again.len(), 1);
        assert_eq!(
            (&again[0].key, again[0].points.len(), again[0].fresh, again[0].messages),
            (&blocks[0].key, 3, 1, 6)
        );
        assert!(p.blocks(&topic, 3, 700, 7, &none).is_empty(), "nothing new");
    }

    #[test]
    fn a_superset_of_a_block_has_a_larger_write_timestamp() {
        let block = |events: Vec<Event>, messages| Block {
            key: BlockKey {
                series: "s".into(),
                bucket: 0,
                metric: "m".into(),
                topic: "t".into(),
                partition: 0,
                window_start: 0,
            },
            tags: vec![0; events.len()],
            fresh: events.len() as u32,
            points: Points::from_events(&events),
            messages,
            counted: Vec::new(),
            resolutions: Arc::new([]),
        };
        let small = block(vec![event("s", "m", 100, 0)], 1);
        // More messages, no newer point (a late event): still larger.
        let late = block(vec![event("s", "m", 100, 0), event("s", "m", 50, 1)], 2);
        // A newer point with fewer messages than the cap allows.
        let newer = block(vec![event("s", "m", 100, 0), event("s", "m", 101, 1)], 2);
        let full =
            block(vec![event("s", "m", 100, 0), event("s", "m", 50, 1)], MAX_WINDOW_MESSAGES);
        assert!(late.write_timestamp() > small.write_timestamp());
        assert!(newer.write_timestamp() > late.write_timestamp());
        assert!(
            full.write_timestamp() > late.write_timestamp()
                && full.write_timestamp() < newer.write_timestamp()
        );
        assert_eq!(
            small.write_timestamp(),
            small.clone().write_timestamp(),
            "the same block, the same timestamp"
        );
    }
}
