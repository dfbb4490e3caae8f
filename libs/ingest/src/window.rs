//! Cutting a shard's messages into offset windows for the blocks layout:
//! pure, no I/O.
//!
//! A shard's windows form a chain from where it started reading: a window
//! starts with the first message after the previous window, is keyed by
//! that message's offset, and closes after the message that brings it to
//! [`WindowLimits`] (messages, events, bytes, or a span of event time).
//! All depend only on the messages themselves (never on when they were
//! read), so whoever reads the shard from the same offset (the same worker
//! after a crash, a new owner after a handoff, a paused former owner) cuts
//! the same windows and writes the same blocks under the same keys. Two
//! windows with the same key start with the same message, so one holds the
//! other: if Kafka no longer holds a window's first messages (retention),
//! a re-read starts its window at a later message, under another key, and
//! cannot overwrite the stored block with less.
//!
//! A closed window becomes a chunk whose blocks are whole and whose offset
//! (the window's end) may be checkpointed once they are stored. While a
//! window is open, its blocks are flushed every `flush_every` without a
//! checkpoint, for freshness: a later flush (after twice the previous
//! interval, up to 8 times `flush_every`) writes a superset of each block
//! under the same key, which wins (see herd-sink's blocks). A flush is held
//! back while Kafka already holds [`HOLD_BACKLOG_MESSAGES`] or more of the
//! shard's messages (a backlog): the window
//! will fill and close by itself, and rewriting it meanwhile would only
//! cost the rewrite (measured: a third of the throughput when draining a
//! backlog); but never past the live time bound `max_wait`.
//!
//! Nothing but the limits ends a window. A shard that stops (a handoff, a
//! shutdown), or that received nothing for [`IDLE_FLUSHES`] × `flush_every`,
//! has its open window written and checkpointed up to its last message,
//! together with where the window starts; the window stays open. The next
//! reader of the shard (a successor, or this worker after a restart) reads
//! from the window's start again, so it cuts the same windows as everyone
//! before it: a paused former owner that wakes up and reads on writes the
//! blocks its successor writes, under the same keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_model::Decoded;
use herd_sink::blocks::{BlockPacker, MAX_WINDOW_MESSAGES};
use herd_sink::Write;

use crate::chunk::{rejects_to_letters, Chunk, CommitOffset};
use crate::dead_letter::DeadLetter;
use crate::metrics as m;
use crate::shards::Shard;
use crate::source::SourcePosition;
use herd_sink::dedup::{Dedup, Verdict};

/// When a window closes. Changing these changes where windows end: a
/// replay across the change stores some events in two blocks (readers
/// drop the repeat), so they are constants of the block format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// At most [`MAX_WINDOW_MESSAGES`].
    pub max_messages: u32,
    pub max_events: usize,
    pub max_bytes: usize,
    /// Event time from the window's first event to a message's newest, ms.
    pub max_span_ms: i64,
    /// A busy window closes at this shorter span once it holds
    /// `busy_events`: so it is written whole within about that span of
    /// event time, without rewrites, at rates where rewrites cost most.
    pub busy_span_ms: i64,
    pub busy_events: usize,
    /// While the open windows of a worker together hold fewer events,
    /// re-encoding them is cheap: each is flushed every `flush_every`,
    /// without the doubling.
    pub cheap_events: usize,
}

/// A shard that received nothing for this many flush intervals has its open
/// window written and checkpointed up to its last message (the window stays
/// open). Not one: under a backlog, the consumer serves partitions in
/// turns, and a busy shard can go half a second without a message; at one
/// interval (when this still closed windows) blocks came out small (4.83
/// bytes per point instead of 4.66) and the worker a third slower.
pub const IDLE_FLUSHES: u32 = 4;

/// A flush waits for a backlog only when Kafka holds at least this many
/// messages of the shard beyond what was read: a message or two in flight
/// arrive within milliseconds and are no reason to wait a whole interval.
/// (Measured: freshness p99 at 10,000 events/s did not move, 1.12 s before
/// and 1.14 s after; loadtest/results/realtime.md.)
pub const HOLD_BACKLOG_MESSAGES: u64 = 10;

/// 250,000 events make blocks of about 250 points for 1,000 series and
/// metrics, and bound what a shard holds to 250,000 points in columns
/// (about 10 MB). A block's fixed cost (its key, pco's headers: about 170
/// bytes on disk) is spread over more points the bigger it is: at 1,000,000
/// events/s offered, 2.57 bytes per point on disk against 3.22 at 100,000
/// events (loadtest/results/e2e.md). That holds because flushes wait during a
/// backlog: when every open window was rewritten at each flush, 250,000
/// did worse than 100,000 (198,000 events/s against 326,000). 500 messages
/// keep JSON shards (one event per message) moving; 32 MiB bounds big
/// messages. 5 s of event time closes windows of slow shards: a window
/// that stayed open for minutes would be rewritten hundreds of times.
///
/// A busy shard's window closes after 1 s of event time once it holds
/// 40,000 events. The live time bound (`block_flush_max_ms`) writes an open
/// window even during a backlog, and each such write re-encodes the window
/// whole: a 5 s window at 40,000 events/s per shard was rewritten about
/// five times (capacity at a 2 s freshness p99 fell below 150,000 events/s
/// for two workers). Closed at 1 s it is written once or twice, and its
/// blocks still hold about 40 points or more per series for 1,000 series.
///
/// While a worker's open windows together hold under 50,000 events, each
/// is rewritten every `--block-flush-ms` without doubling: re-encoding at
/// most 50,000 events twice a second is cheap, and a shard's events wait
/// at most one interval. The sum, not each window, is what costs the
/// worker, and it covers 10,000 events/s per worker however they are
/// partitioned (at 5 s of event time a worker's windows then hold 50,000
/// at most). The first rule was per window, under 10,000 events: at
/// 10,000 events/s over four partitions a window reaches 12,500, so its
/// last second was written after 1 s (`block_flush_max_ms`) instead of
/// 500 ms, and freshness p99 was 1.16 s instead of about 0.7 s
/// (loadtest/results/realtime.md).
pub const WINDOW_LIMITS: WindowLimits = WindowLimits {
    max_messages: 500,
    max_events: 250_000,
    max_bytes: 32 << 20,
    max_span_ms: 5_000,
    busy_span_ms: 1_000,
    busy_events: 40_000,
    cheap_events: 50_000,
};

struct Window {
    start: i64,
    /// The offset after the last message read.
    next: i64,
    messages: u32,
    events: usize,
    bytes: usize,
    /// Event time of the window's first event.
    first_ts: Option<i64>,
    packer: BlockPacker,
    sources: Vec<SourcePosition>,
    /// Not yet handed out in a chunk.
    dead_letters: Vec<DeadLetter>,
    new_messages: usize,
    new_events: usize,
    new_bytes: usize,
    /// When the oldest unflushed message was added.
    dirty_since: Option<Instant>,
    /// When the last message was added.
    last_added: Instant,
    /// Flushes of this window so far (without a checkpoint).
    flushes: u32,
    /// A flush held back during a backlog is looked at again then.
    held_until: Option<Instant>,
    /// Messages before this offset are covered by a checkpoint.
    checkpointed_to: i64,
    /// The shard's de-duplication memory, now and (encoded) at the window's
    /// start: a checkpoint inside the window stores the latter.
    dedup: Dedup,
    start_memory: Arc<[u8]>,
    /// The rollup resolutions (seconds) and de-duplication horizon, as
    /// configured when the window started.
    resolutions: Arc<[u32]>,
    horizon: u64,
}

pub struct WindowBuilder {
    limits: WindowLimits,
    bucket_ms: i64,
    flush_every: Duration,
    /// The longest a message waits unwritten while its shard has no
    /// backlog (live configuration): caps the doubling of the interval.
    max_wait: Duration,
    next_id: u64,
    open: HashMap<Shard, Window>,
    /// Per started shard without an open window: the memory its next window starts with.
    memories: HashMap<Shard, Dedup>,
    resolutions: Arc<[u32]>,
    horizon: u64,
}

impl WindowBuilder {
    pub fn new(limits: WindowLimits, bucket_ms: i64, flush_every: Duration) -> WindowBuilder {
        assert!(
            limits.max_messages <= MAX_WINDOW_MESSAGES,
            "the blocks' write timestamps order at most {MAX_WINDOW_MESSAGES} messages"
        );
        WindowBuilder {
            limits,
            bucket_ms,
            flush_every,
            max_wait: Duration::from_millis(
                herd_coord::dynconf::keys::BLOCK_FLUSH_MAX_MS.default_count(),
            ),
            next_id: 0,
            open: HashMap::new(),
            memories: HashMap::new(),
            resolutions: Arc::new([]),
            horizon: 0,
        }
    }

    /// Sets the rollup resolutions (seconds; empty: no rollups) and the
    /// de-duplication horizon (seqs per producer) of windows started from
    /// now on (live configuration).
    pub fn set_rollups(&mut self, resolutions: Arc<[u32]>, horizon: u64) {
        self.resolutions = resolutions;
        self.horizon = horizon;
    }

    /// Changes how often open windows are flushed (live configuration).
    pub fn set_flush_every(&mut self, every: Duration) {
        self.flush_every = every;
    }

    /// Bounds how long a message waits unwritten in an open window, backlog
    /// or not (live configuration).
    pub fn set_max_wait(&mut self, max_wait: Duration) {
        self.max_wait = max_wait;
    }

    /// The shard starts reading (at a window boundary: a checkpoint, the
    /// start of the window open at one, or Kafka's beginning). Its first
    /// message read starts a window, with `memory`: the de-duplication
    /// memory checkpointed at that offset.
    pub fn start(&mut self, shard: Shard, memory: Dedup) {
        self.open.remove(&shard);
        self.memories.insert(shard, memory);
    }

    /// Adds one decoded message of a started shard. Returns the chunk of the
    /// window it closed, if it closed one.
    pub fn add(
        &mut self,
        at: SourcePosition,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        content_type: Option<&[u8]>,
        mut decoded: Decoded,
        now: Instant,
    ) -> Option<Chunk> {
        let shard = at.shard.clone();
        let bucket_ms = self.bucket_ms;
        let start = at.offset;
        let (memories, resolutions, horizon) =
            (&mut self.memories, &self.resolutions, self.horizon);
        let w = self.open.entry(shard.clone()).or_insert_with(|| {
            let dedup = memories.remove(&shard).unwrap_or_default();
            let start_memory = dedup.encode().into();
            Window {
                start,
                next: at.offset,
                messages: 0,
                events: 0,
                bytes: 0,
                first_ts: None,
                packer: BlockPacker::new(bucket_ms),
                sources: Vec::new(),
                dead_letters: Vec::new(),
                new_messages: 0,
                new_events: 0,
                new_bytes: 0,
                dirty_since: None,
                last_added: now,
                flushes: 0,
                held_until: None,
                checkpointed_to: start,
                dedup,
                start_memory,
                resolutions: resolutions.clone(),
                horizon,
            }
        });
        let size = payload.map_or(0, <[u8]>::len);
        w.dead_letters.extend(rejects_to_letters(&at, key, payload, content_type, &mut decoded));
        let source = w.sources.len() as u32;
        w.events += decoded.events.len();
        w.new_events += decoded.events.len();
        let newest = decoded.events.iter().map(|e| e.ts).max();
        if w.first_ts.is_none() {
            w.first_ts = decoded.events.first().map(|e| e.ts);
        }
        let span = newest.zip(w.first_ts).map_or(0, |(n, f)| n.saturating_sub(f));
        if w.resolutions.is_empty() {
            for event in decoded.events {
                w.packer.add(event, source);
            }
        } else {
            let (mut repeats, mut unchecked) = (0u64, 0u64);
            for event in decoded.events {
                let counted = match w.dedup.check(&event.producer, event.seq, w.horizon) {
                    Verdict::New => true,
                    Verdict::Repeat => {
                        repeats += 1;
                        false
                    }
                    Verdict::BeyondHorizon => {
                        unchecked += 1;
                        true
                    }
                };
                w.packer.add_counted(event, source, counted);
            }
            if repeats > 0 {
                metrics::counter!(m::ROLLUP_REPEATS).increment(repeats);
            }
            if unchecked > 0 {
                metrics::counter!(m::ROLLUP_BEYOND_HORIZON).increment(unchecked);
            }
        }
        w.messages += 1;
        w.new_messages += 1;
        w.bytes += size;
        w.new_bytes += size;
        w.next = at.offset + 1;
        w.dirty_since.get_or_insert(now);
        w.last_added = now;
        w.sources.push(at);
        let full = w.messages >= self.limits.max_messages
            || w.events >= self.limits.max_events
            || w.bytes >= self.limits.max_bytes
            || span >= self.limits.max_span_ms
            || (span >= self.limits.busy_span_ms && w.events >= self.limits.busy_events);
        full.then(|| self.close(&shard)).flatten()
    }

    /// When the next open window must be flushed or checkpointed.
    pub fn deadline(&self) -> Option<Instant> {
        let cheap = self.cheap();
        self.open.values().filter_map(|w| self.due_at(w, cheap)).min()
    }

    /// Each flush rewrites the window's blocks whole, so the interval
    /// doubles with every flush of the same window (up to 8 intervals), but
    /// never beyond `max_wait`: a window that takes long to fill is
    /// rewritten a few times, not once per interval, and its oldest
    /// unwritten message waits at most `max_wait`, backlog or not. While the
    /// open windows together hold under `cheap_events`, none doubles: their
    /// rewrites cost little. A shard
    /// that fills its windows in under a second (or is quiet) sees its
    /// events within one interval. A window written and checkpointed up to
    /// its last message has nothing due.
    fn due_at(&self, w: &Window, cheap: bool) -> Option<Instant> {
        let doublings = if cheap { 0 } else { w.flushes.min(3) };
        let wait = (self.flush_every * (1 << doublings)).min(self.max_wait.max(self.flush_every));
        match w.dirty_since {
            Some(t) => Some((t + wait).max(w.held_until.unwrap_or(t))),
            None if w.next > w.checkpointed_to => Some(w.last_added + self.idle()),
            None => None,
        }
    }

    /// Whether the open windows together are cheap to re-encode.
    fn cheap(&self) -> bool {
        self.open.values().map(|w| w.events).sum::<usize>() < self.limits.cheap_events
    }

    fn idle(&self) -> Duration {
        self.flush_every * IDLE_FLUSHES
    }

    /// Handles every window due by `now`. One that received nothing for
    /// `IDLE_FLUSHES` × `flush_every` is written and checkpointed up to its
    /// last message, and stays open: the checkpoint records where it
    /// starts. One whose oldest unwritten message is `flush_every` old (or
    /// more, see [`WindowBuilder::deadline`]) is flushed (written, no
    /// checkpoint), unless `backlog(shard, next offset)` says Kafka holds
    /// [`HOLD_BACKLOG_MESSAGES`] or more messages of the shard beyond it: then the flush is held back for one `flush_every`,
    /// as the window may soon close by itself, but never past `max_wait`
    /// after its oldest unwritten message (the live `block_flush_max_ms`):
    /// a point waits at most that long to be written at any rate.
    pub fn flush_due(&mut self, now: Instant, backlog: impl Fn(&Shard, i64) -> u64) -> Vec<Chunk> {
        let cheap = self.cheap();
        let due: Vec<(Shard, bool)> = self
            .open
            .iter()
            .filter(|(_, w)| self.due_at(w, cheap).is_some_and(|t| t <= now))
            .map(|(k, w)| (k.clone(), w.last_added + self.idle() <= now))
            .collect();
        let mut out = Vec::new();
        for (k, idle) in due {
            if idle {
                out.extend(self.cut(&k, End::Checkpoint));
                continue;
            }
            let w = self.open.get_mut(&k).expect("listed above");
            // The time bound holds even in a backlog: past it, flush anyway.
            let bound = w.dirty_since.map(|t| t + self.max_wait.max(self.flush_every));
            if bound.is_some_and(|b| now < b) && backlog(&k, w.next) >= HOLD_BACKLOG_MESSAGES {
                w.held_until = Some((now + self.flush_every).min(bound.expect("checked")));
                continue;
            }
            out.extend(self.cut(&k, End::Open));
        }
        out
    }

    /// The shard stops: its open window is written and checkpointed up to
    /// its last message, with where it starts; the next reader of the shard
    /// reads from that start again and so cuts the same windows.
    pub fn stop(&mut self, shard: &Shard) -> Option<Chunk> {
        let chunk = self.cut(shard, End::Checkpoint);
        self.open.remove(shard);
        self.memories.remove(shard);
        chunk
    }

    /// Shutdown: every open window, written and checkpointed.
    pub fn stop_all(&mut self) -> Vec<Chunk> {
        let shards: Vec<Shard> = self.open.keys().cloned().collect();
        shards.iter().filter_map(|k| self.stop(k)).collect()
    }

    /// Closes the shard's window: the next one starts after it.
    fn close(&mut self, shard: &Shard) -> Option<Chunk> {
        let chunk = self.cut(shard, End::Close);
        if let Some(w) = self.open.remove(shard) {
            self.memories.insert(shard.clone(), w.dedup);
        }
        chunk
    }

    /// A chunk of the window's blocks that gained events and its new dead
    /// letters; with `end`, what may be checkpointed. None: nothing to do.
    fn cut(&mut self, shard: &Shard, end: End) -> Option<Chunk> {
        let w = self.open.get_mut(shard)?;
        // The oldest message a checkpoint now would cover for the first time.
        let appended_ms = w
            .sources
            .iter()
            .filter(|s| s.offset >= w.checkpointed_to)
            .filter_map(|s| s.appended_ms)
            .min();
        let offset = |window_start, dedup| {
            vec![CommitOffset {
                shard: shard.clone(),
                next: w.next,
                window_start,
                dedup: Some(dedup),
                appended_ms,
            }]
        };
        let offsets = match end {
            End::Open if w.new_messages == 0 => return None,
            End::Open => Vec::new(),
            End::Checkpoint if w.new_messages == 0 && w.next <= w.checkpointed_to => return None,
            End::Checkpoint => offset(Some(w.start), w.start_memory.clone()),
            End::Close => offset(None, w.dedup.encode().into()),
        };
        if !offsets.is_empty() {
            w.checkpointed_to = w.next;
        }
        let writes: Vec<Write> = w
            .packer
            .blocks(&shard.topic, shard.partition, w.start, w.messages, &w.resolutions)
            .into_iter()
            .map(|b| Write::Block(Box::new(b)))
            .collect();
        // The messages new in this cut are the last ones read.
        let new_since = w.sources.len() - w.new_messages;
        let appended_ms = w.sources[new_since..].iter().filter_map(|s| s.appended_ms).min();
        let chunk = Chunk {
            id: self.next_id,
            appended_ms,
            writes,
            sources: w.sources.clone(),
            dead_letters: std::mem::take(&mut w.dead_letters),
            offsets,
            messages: w.new_messages,
            rows: w.new_events,
            bytes: w.new_bytes,
        };
        self.next_id += 1;
        w.new_messages = 0;
        w.new_events = 0;
        w.new_bytes = 0;
        w.dirty_since = None;
        w.held_until = None;
        w.flushes += 1;
        Some(chunk)
    }
}

/// How far a cut goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A flush: the window stays open, nothing is checkpointed.
    Open,
    /// The window stays open (or its shard stops); its end is checkpointed
    /// with its start.
    Checkpoint,
    /// The window is full: its end is checkpointed as a window boundary.
    Close,
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_model::{Event, Position, Reject};

    const LIMITS: WindowLimits = WindowLimits {
        max_messages: 3,
        max_events: 100,
        max_bytes: 1000,
        max_span_ms: 1000,
        busy_span_ms: 1000,
        busy_events: 100,
        cheap_events: 0,
    };

    fn shard() -> Shard {
        Shard::new("t", 0)
    }

    fn no_backlog(_: &Shard, _: i64) -> u64 {
        0
    }

    fn at(offset: i64) -> SourcePosition {
        SourcePosition { shard: shard(), offset, appended_ms: None }
    }

    fn msg(seq: u64, n: u64) -> Decoded {
        let events = (seq..seq + n)
            .map(|s| Event {
                series: format!("s{}", s % 2),
                metric: "m".into(),
                ts: s as i64,
                value: 0.0,
                tags: Default::default(),
                producer: "p".into(),
                seq: s,
            })
            .collect();
        Decoded { events, rejects: vec![] }
    }

    fn keys(c: &Chunk) -> Vec<(String, i64, u32, usize)> {
        let mut k: Vec<_> = c
            .writes
            .iter()
            .map(|w| match w {
                Write::Block(b) => {
                    (b.key.series.clone(), b.key.window_start, b.messages, b.points.len())
                }
                Write::Rows(_) => panic!("a row batch from the window builder"),
            })
            .collect();
        k.sort();
        k
    }

    /// The checkpoints of a chunk: (next offset, open window's start).
    fn positions(c: &Chunk) -> Vec<(i64, Option<i64>)> {
        c.offsets.iter().map(|o| (o.next, o.window_start)).collect()
    }

    /// Feeds offsets `from..to` (one message of two events each) and returns
    /// the chunks of the windows that closed.
    fn feed(b: &mut WindowBuilder, from: i64, to: i64) -> Vec<Chunk> {
        (from..to)
            .filter_map(|o| {
                b.add(at(o), None, Some(b"xy"), None, msg(o as u64 * 2, 2), Instant::now())
            })
            .collect()
    }

    #[test]
    fn windows_chain_from_the_checkpoint_and_close_by_messages() {
        let mut b = WindowBuilder::new(LIMITS, 1000, Duration::from_secs(1));
        b.start(shard(), Dedup::default());
        let closed = feed(&mut b, 10, 17);
        assert_eq!(closed.len(), 2, "10-12 and 13-15; 16 is open");
        assert_eq!(keys(&closed[0]), vec![("s0".into(), 10, 3, 3), ("s1".into(), 10, 3, 3)]);
        assert_eq!(positions(&closed[0]), vec![(13, None)]);
        assert_eq!(keys(&closed[1])[0].1, 13);
        assert_eq!((closed[1].id, closed[1].messages, closed[1].rows), (1, 3, 6));

        // A replay from the same checkpoint cuts the same windows, with the same blocks.
        let mut again = WindowBuilder::new(LIMITS, 1000, Duration::from_secs(1));
        again.start(shard(), Dedup::default());
        let replayed = feed(&mut again, 10, 17);
        let sorted = |chunks: &[Chunk]| -> Vec<Vec<Write>> {
            chunks
                .iter()
                .map(|c| {
                    let mut w = c.writes.clone();
                    w.sort_by_key(|w| match w {
                        Write::Block(b) => b.key.clone(),
                        Write::Rows(_) => unreachable!(),
                    });
                    w
                })
                .collect()
        };
        assert_eq!(sorted(&replayed), sorted(&closed));

        // The first message read keys its window, wherever reading started:
        // Kafka's beginning, or a start whose first messages Kafka deleted
        // since (retention). Such a re-read cannot overwrite the block of
        // the window that started at 10 with less.
        let mut fresh = WindowBuilder::new(LIMITS, 1000, Duration::from_secs(1));
        fresh.start(shard(), Dedup::default());
        assert_eq!(keys(&feed(&mut fresh, 12, 15)[0])[0].1, 12);
    }

    #[test]
    fn closes_by_events_bytes_and_event_time() {
        let mut b = WindowBuilder::new(
            WindowLimits { max_events: 5, max_messages: 100, ..LIMITS },
            1000,
            Duration::from_secs(1),
        );
        b.start(shard(), Dedup::default());
        let closed = feed(&mut b, 0, 4);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].offsets[0].next, 3, "6 events after 3 messages");
        let mut b = WindowBuilder::new(
            WindowLimits { max_messages: 100, max_bytes: 4, ..LIMITS },
            1000,
            Duration::from_secs(1),
        );
        b.start(shard(), Dedup::default());
        assert_eq!(feed(&mut b, 0, 3)[0].offsets[0].next, 2, "4 bytes after 2 messages");
        // Event time: messages 2 ms apart in ts (2 events each), a span of 5 ms closes.
        let mut b = WindowBuilder::new(
            WindowLimits { max_messages: 100, max_span_ms: 5, ..LIMITS },
            1000,
            Duration::from_secs(1),
        );
        b.start(shard(), Dedup::default());
        assert_eq!(feed(&mut b, 0, 5)[0].offsets[0].next, 3, "ts 0 to 5 after 3 messages");
        // A busy window closes at the shorter span, once it holds enough events.
        for (busy_events, next) in [(6, 3), (8, 4)] {
            let limits = WindowLimits { max_messages: 100, busy_span_ms: 4, busy_events, ..LIMITS };
            let mut b = WindowBuilder::new(limits, 1000, Duration::from_secs(1));
            b.start(shard(), Dedup::default());
            assert_eq!(feed(&mut b, 0, 6)[0].offsets[0].next, next, "{busy_events} events");
        }
    }

    #[test]
    fn flushes_open_windows_as_supersets_and_checkpoints_idle_ones_inside() {
        let t0 = Instant::now();
        let mut b = WindowBuilder::new(
            WindowLimits { max_messages: 10, ..LIMITS },
            1000,
            Duration::from_millis(100),
        );
        b.start(shard(), Dedup::default());
        assert_eq!(b.deadline(), None);
        let ms = |n| t0 + Duration::from_millis(n);
        b.add(at(0), None, Some(b"x"), None, msg(0, 2), t0);
        assert_eq!(b.deadline(), Some(ms(100)));
        // Another message at 60 ms: the flush is due by the oldest one.
        b.add(
            at(1),
            None,
            Some(b"x"),
            None,
            Decoded { events: msg(2, 1).events, rejects: vec![] },
            ms(60),
        );
        assert!(b.flush_due(ms(99), no_backlog).is_empty());
        let first = b.flush_due(ms(100), no_backlog);
        assert_eq!(first.len(), 1);
        assert!(
            first[0].offsets.is_empty(),
            "an open window that still receives is not checkpointed"
        );
        assert_eq!(keys(&first[0]), vec![("s0".into(), 0, 2, 2), ("s1".into(), 0, 2, 1)]);
        assert_eq!(
            b.deadline(),
            Some(ms(460)),
            "next: checkpointing it if nothing comes for 4 intervals"
        );

        // One more event of s0 only: its block again, whole, with the new
        // coverage, after twice the interval (the window's second flush).
        b.add(
            at(2),
            None,
            Some(b"x"),
            None,
            Decoded { events: msg(4, 1).events, rejects: vec![] },
            ms(150),
        );
        assert_eq!(b.deadline(), Some(ms(350)));
        assert!(b.flush_due(ms(349), no_backlog).is_empty());
        let second = b.flush_due(ms(350), no_backlog);
        assert_eq!(keys(&second[0]), vec![("s0".into(), 0, 3, 3)]);
        assert_eq!(
            (second[0].rows, second[0].writes[0].fresh()),
            (1, 1),
            "only the new event counts as written"
        );
        assert!(second[0].offsets.is_empty(), "quiet for 200 ms only: not checkpointed");
        assert_eq!(b.deadline(), Some(ms(550)));
        let idle = b.flush_due(ms(550), no_backlog);
        assert_eq!(idle[0].writes.len(), 0, "nothing new to write");
        assert_eq!(
            positions(&idle[0]),
            vec![(3, Some(0))],
            "quiet for 400 ms: checkpointed up to its last message, inside the window that starts at 0"
        );
        assert_eq!(b.deadline(), None, "nothing due until the next message");
        assert!(b.flush_due(ms(5000), no_backlog).is_empty());

        // The window stays open: the next messages extend it, and it closes
        // by its limits only, where any reader from offset 0 closes it.
        let mut closed = None;
        for o in 3..10 {
            assert!(closed.is_none());
            closed = b.add(at(o), None, Some(b"x"), None, msg(10 + o as u64, 1), ms(6000));
        }
        let closed = closed.expect("10 messages");
        assert_eq!(positions(&closed), vec![(10, None)]);
        assert!(keys(&closed).iter().all(|k| k.1 == 0 && k.2 == 10), "{:?}", keys(&closed));
    }

    #[test]
    fn the_doubling_interval_stops_at_the_longest_wait() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut b = WindowBuilder::new(
            WindowLimits { max_messages: 100, ..LIMITS },
            1000,
            Duration::from_millis(100),
        );
        b.set_max_wait(Duration::from_millis(250));
        b.start(shard(), Dedup::default());
        // A message right after each flush: waits of 100, 200, then 250 (not 400, 800).
        let mut now = 0;
        for (i, wait) in [100, 200, 250, 250].into_iter().enumerate() {
            b.add(at(i as i64), None, Some(b"x"), None, msg(i as u64 * 2, 2), ms(now));
            assert_eq!(b.deadline(), Some(ms(now + wait)), "flush {i}");
            now += wait;
            assert_eq!(b.flush_due(ms(now), no_backlog).len(), 1);
        }
        // A window under `cheap_events` is flushed at the base interval throughout.
        let mut b = WindowBuilder::new(
            WindowLimits { max_messages: 100, cheap_events: 100, ..LIMITS },
            1000,
            Duration::from_millis(100),
        );
        b.set_max_wait(Duration::from_millis(250));
        b.start(shard(), Dedup::default());
        let mut now = 0;
        for i in 0..4 {
            b.add(at(i), None, Some(b"x"), None, msg(i as u64 * 2, 2), ms(now));
            assert_eq!(b.deadline(), Some(ms(now + 100)), "flush {i}");
            now += 100;
            assert_eq!(b.flush_due(ms(now), no_backlog).len(), 1);
        }
        // The same window once another shard's open window brings the sum
        // to `cheap_events`: it doubles again.
        let other = SourcePosition { shard: Shard::new("t", 1), offset: 0, appended_ms: None };
        b.start(other.shard.clone(), Dedup::default());
        b.add(other, None, Some(b"x"), None, msg(100, 92), ms(now));
        assert_eq!(b.flush_due(ms(now + 100), no_backlog).len(), 1, "the new window's first flush");
        now += 100;
        b.add(at(4), None, Some(b"x"), None, msg(8, 2), ms(now));
        assert_eq!(b.deadline(), Some(ms(now + 250)), "10 + 92 events: not cheap");
    }

    #[test]
    fn a_backlog_holds_flushes_back_but_not_idle_checkpoints() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut b = WindowBuilder::new(
            WindowLimits { max_messages: 10, ..LIMITS },
            1000,
            Duration::from_millis(100),
        );
        b.start(shard(), Dedup::default());
        b.add(at(0), None, Some(b"x"), None, msg(0, 2), t0);
        let asked = std::cell::Cell::new(None);
        let backlog = |k: &Shard, next: i64| {
            asked.set(Some((k.clone(), next)));
            HOLD_BACKLOG_MESSAGES
        };
        assert!(b.flush_due(ms(100), backlog).is_empty(), "Kafka holds more: no flush");
        assert_eq!(asked.take(), Some((shard(), 1)), "asked about the offset after the window");
        assert_eq!(b.deadline(), Some(ms(200)), "looked at again one interval later");
        b.add(at(1), None, Some(b"x"), None, msg(2, 2), ms(150));
        assert!(b.flush_due(ms(200), backlog).is_empty());
        // A message or two in flight are not a backlog to wait for.
        let flushed = b.flush_due(ms(300), |_: &Shard, _| HOLD_BACKLOG_MESSAGES - 1);
        assert_eq!(flushed.len(), 1, "the backlog is gone: flushed");
        assert!(flushed[0].offsets.is_empty());
        assert_eq!(flushed[0].rows, 4, "one write for both messages");
        // A backlog that lasts holds a flush back only up to the time bound.
        b.set_max_wait(Duration::from_millis(250));
        b.add(at(2), None, Some(b"x"), None, msg(4, 2), ms(300));
        assert!(b.flush_due(ms(400), backlog).is_empty());
        assert_eq!(b.deadline(), Some(ms(500)));
        assert!(b.flush_due(ms(500), backlog).is_empty());
        assert_eq!(b.deadline(), Some(ms(550)), "held at most until 250 ms after its oldest");
        let bounded = b.flush_due(ms(550), backlog);
        assert_eq!(bounded.len(), 1, "flushed at the time bound, backlog or not");
        assert!(bounded[0].offsets.is_empty(), "written, not checkpointed: the window stays open");
        // An idle window is checkpointed even while Kafka reports more (a
        // shard paused or throttled in Kafka).
        let idle = b.flush_due(ms(1200), backlog);
        assert_eq!((idle[0].offsets[0].next, idle[0].offsets[0].window_start), (3, Some(0)));
    }

    #[test]
    fn a_stop_checkpoints_inside_the_open_window_and_the_next_reader_cuts_the_same_windows() {
        let mut b = WindowBuilder::new(LIMITS, 1000, Duration::from_secs(1));
        b.start(shard(), Dedup::default());
        let first = feed(&mut b, 0, 5);
        let stopped = b.stop(&shard()).expect("offsets 3-4 were open");
        assert_eq!((stopped.offsets[0].next, stopped.offsets[0].window_start), (5, Some(3)));
        assert_eq!(keys(&stopped)[0].1, 3);
        assert!(b.stop(&shard()).is_none(), "nothing left");
        // The next owner reads from the window's start (StartAt::InWindow)
        // and cuts the windows an uninterrupted reader cuts.
        b.start(shard(), Dedup::default());
        let after = feed(&mut b, 3, 9);
        let mut whole = WindowBuilder::new(LIMITS, 1000, Duration::from_secs(1));
        whole.start(shard(), Dedup::default());
        let uninterrupted = feed(&mut whole, 0, 9);
        let windows = |chunks: &[Chunk]| {
            chunks.iter().map(|c| (keys(c)[0].1, c.offsets[0].next)).collect::<Vec<_>>()
        };
        assert_eq!(windows(&uninterrupted), vec![(0, 3), (3, 6), (6, 9)]);
        assert_eq!([windows(&first), windows(&after)].concat(), windows(&uninterrupted));
    }

    #[test]
    fn dead_letters_go_out_once() {
        let mut b = WindowBuilder::new(LIMITS, 1000, Duration::from_millis(1));
        b.start(shard(), Dedup::default());
        let bad = Decoded {
            events: vec![],
            rejects: vec![Reject {
                position: Position::Message,
                reason: "bad".into(),
                bytes: None,
            }],
        };
        let t0 = Instant::now();
        b.add(at(0), None, Some(b"??"), None, bad, t0);
        b.add(at(1), None, Some(b"x"), None, msg(0, 1), t0 + Duration::from_millis(1));
        let flushed = b.flush_due(t0 + Duration::from_millis(1), no_backlog);
        assert_eq!((flushed[0].dead_letters.len(), flushed[0].writes.len()), (1, 1));
        assert!(flushed[0].offsets.is_empty());
        let closed =
            b.add(at(2), None, None, None, msg(1, 1), t0 + Duration::from_millis(1)).unwrap();
        assert!(closed.dead_letters.is_empty(), "sent with the flush already");
        assert_eq!(closed.offsets[0].next, 3);
    }

    /// (series, counted flags) of every block of a chunk, sorted.
    fn counted(c: &Chunk) -> Vec<(String, Vec<bool>)> {
        let mut out: Vec<_> = c
            .writes
            .iter()
            .map(|w| match w {
                Write::Block(b) => {
                    let flags = if b.counted.is_empty() {
                        vec![true; b.points.len()]
                    } else {
                        b.counted.clone()
                    };
                    (b.key.series.clone(), flags)
                }
                Write::Rows(_) => panic!("rows from the window builder"),
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn repeats_are_not_counted_and_the_checkpointed_memory_replays_the_same() {
        let rollups = |b: &mut WindowBuilder| b.set_rollups(Arc::new([60]), 1000);
        let mut b = WindowBuilder::new(LIMITS, 1000, Duration::from_secs(1));
        rollups(&mut b);
        b.start(shard(), Dedup::default());
        // Offsets 10-12 (seqs 20-25) close a window; 13 repeats seqs 20-21.
        let closed = feed(&mut b, 10, 13);
        assert!(counted(&closed[0]).iter().all(|(_, f)| f.iter().all(|c| *c)));
        let repeat = b.add(at(13), None, Some(b"xy"), None, msg(20, 2), Instant::now());
        assert!(repeat.is_none());
        let stopped = b.stop(&shard()).expect("the open window is checkpointed");
        assert_eq!(positions(&stopped), vec![(14, Some(13))]);
        assert_eq!(counted(&stopped), vec![("s0".into(), vec![false]), ("s1".into(), vec![false])]);
        // The checkpoint holds the memory at the open window's start: a new
        // reader from offset 13 marks the repeat exactly so.
        let memory = stopped.offsets[0].dedup.clone().expect("a memory");
        let mut next = WindowBuilder::new(LIMITS, 1000, Duration::from_secs(1));
        rollups(&mut next);
        next.start(shard(), Dedup::decode(&memory).unwrap());
        next.add(at(13), None, Some(b"xy"), None, msg(20, 2), Instant::now());
        let again = next.stop(&shard()).unwrap();
        assert_eq!(counted(&again), counted(&stopped));
        // The closed window's checkpoint holds the memory at its end.
        let end = Dedup::decode(closed[0].offsets[0].dedup.as_deref().unwrap()).unwrap();
        let mut fresh_reader = end.clone();
        assert_eq!(fresh_reader.check("p", 21, 1000), Verdict::Repeat);
        assert_eq!(fresh_reader.check("p", 26, 1000), Verdict::New);
        // Rollups off: nothing is marked.
        let mut off = WindowBuilder::new(LIMITS, 1000, Duration::from_secs(1));
        off.start(shard(), end);
        off.add(at(13), None, Some(b"xy"), None, msg(20, 2), Instant::now());
        let c = off.stop(&shard()).unwrap();
        assert!(counted(&c).iter().all(|(_, f)| f.iter().all(|c| *c)));
        assert!(c.writes.iter().all(|w| matches!(w, Write::Block(b) if b.resolutions.is_empty())));
    }
}
