//! The reader stage: Kafka in, chunks out. In: messages of the running
//! shards, [`Control`] commands and live configuration. Out: [`Chunk`]s to
//! the writer, [`ToCommitter`] shard changes to the committer.
//!
//! It decodes each message and hands it to the layout's [`Cutter`]: the
//! `rows` layout cuts chunks by rows, bytes and linger across shards
//! ([`ChunkBuilder`]), the `blocks` layout by offset windows per shard
//! ([`WindowBuilder`]). Sending a chunk waits while the writer has no free
//! slot, so consumption pauses when Cassandra is slow or down: memory stays
//! bounded. Rate limits and pauses (live configuration) pause the shard in
//! Kafka.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_model::Decoded;
use rdkafka::message::{Headers, Message};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::chunk::{Chunk, ChunkBuilder};
use crate::committer::ToCommitter;
use crate::control::{Control, ShardEvent};
use crate::live::{self, Bucket, Live};
use crate::metrics as m;
use crate::settings::IngestSettings;
use crate::shards::{Shard, Stopped};
use crate::source::{KafkaSource, SourcePosition};
use crate::window::WindowBuilder;
use crate::writer::Writer;

/// How the reader cuts chunks: by the storage layout.
pub enum Cutter {
    Rows(ChunkBuilder),
    Blocks(WindowBuilder),
}

impl Cutter {
    fn start(&mut self, shard: &Shard, memory: herd_sink::dedup::Dedup) {
        if let Cutter::Blocks(w) = self {
            w.start(shard.clone(), memory);
        }
    }

    /// Adds a message; returns the chunks it completed.
    fn add(
        &mut self,
        at: SourcePosition,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        ct: Option<&[u8]>,
        d: Decoded,
    ) -> Option<Chunk> {
        let now = Instant::now();
        match self {
            Cutter::Rows(b) => {
                b.add(at, key, payload, ct, d, now);
                if b.is_full() {
                    b.take()
                } else {
                    None
                }
            }
            Cutter::Blocks(w) => w.add(at, key, payload, ct, d, now),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self {
            Cutter::Rows(b) => b.deadline(),
            Cutter::Blocks(w) => w.deadline(),
        }
    }

    /// What is due at the deadline. `backlog`: how many messages Kafka
    /// holds of a shard beyond an offset read up to.
    fn due(&mut self, backlog: impl Fn(&Shard, i64) -> u64) -> Vec<Chunk> {
        match self {
            Cutter::Rows(b) => b.take().into_iter().collect(),
            Cutter::Blocks(w) => w.flush_due(Instant::now(), backlog),
        }
    }

    /// Everything read from `shard`, so its release does not wait.
    fn stop(&mut self, shard: &Shard) -> Vec<Chunk> {
        match self {
            Cutter::Rows(b) => b.take().into_iter().collect(),
            Cutter::Blocks(w) => w.stop(shard).into_iter().collect(),
        }
    }

    fn stop_all(&mut self) -> Vec<Chunk> {
        match self {
            Cutter::Rows(b) => b.take().into_iter().collect(),
            Cutter::Blocks(w) => w.stop_all(),
        }
    }

    fn configure(&mut self, g: &live::Globals, settings: &IngestSettings) {
        match self {
            Cutter::Rows(b) => b.set_cut(g.batch_max_rows, g.batch_max_bytes, g.linger),
            Cutter::Blocks(w) => {
                w.set_flush_every(settings.block_flush);
                w.set_rollups(g.rollup_resolutions.clone(), g.dedup_horizon);
                w.set_max_wait(g.block_flush_max);
            }
        }
    }
}

/// A running shard, as the reader sees it.
struct RunningShard {
    /// The offset after the last message read (None: none yet).
    last: Option<i64>,
    /// Paused by the configuration.
    paused: bool,
    bucket: Option<Bucket>,
    /// Over its rate limit until then.
    throttled_until: Option<Instant>,
    /// Whether Kafka has it paused now.
    kafka_paused: bool,
}

impl RunningShard {
    fn configure(&mut self, doc: &herd_coord::dynconf::ConfigDoc, shard: &Shard, now: Instant) {
        let e = doc.effective(&shard.topic, shard.partition);
        self.paused = e.paused;
        match e.rate_limit_eps {
            None => {
                self.bucket = None;
                self.throttled_until = None;
            }
            Some(rate) if self.bucket.as_ref().map(Bucket::rate) != Some(rate) => {
                self.bucket = Some(Bucket::new(rate, now))
            }
            Some(_) => {}
        }
    }

    /// Pauses or resumes the partition in Kafka to match what is wanted.
    fn sync_kafka(&mut self, source: &KafkaSource, shard: &Shard) {
        let want = self.paused || self.throttled_until.is_some();
        if want == self.kafka_paused {
            return;
        }
        let result = if want { source.pause(shard) } else { source.resume(shard) };
        match result {
            Ok(()) => self.kafka_paused = want,
            Err(e) => {
                tracing::warn!(topic = %shard.topic, partition = shard.partition, error = &e as &dyn std::error::Error, "cannot {} the shard in Kafka", if want { "pause" } else { "resume" })
            }
        }
    }
}

pub struct Reader<'a> {
    pub settings: &'a IngestSettings,
    pub source: &'a KafkaSource,
    pub cutter: Cutter,
    /// Takes the worker-wide values of each configuration.
    pub writer: Arc<Writer>,
    pub control: mpsc::Receiver<Control>,
    pub events: mpsc::UnboundedSender<ShardEvent>,
    pub live: watch::Receiver<Live>,
    pub messages: &'a AtomicU64,
}

impl Reader<'_> {
    /// Reads until `shutdown` (then hands over what was read) or `failed`.
    /// Returning drops `chunks` and `committer`, which lets the later stages finish.
    pub async fn run(
        self,
        chunks: mpsc::Sender<Chunk>,
        committer: mpsc::UnboundedSender<ToCommitter>,
        shutdown: CancellationToken,
        failed: CancellationToken,
    ) {
        let Reader {
            settings,
            source,
            mut cutter,
            writer,
            mut control,
            events,
            mut live,
            messages,
        } = self;
        let mut running: HashMap<Shard, RunningShard> = Default::default();
        let mut current = live.borrow_and_update().clone();
        let apply_globals = |cutter: &mut Cutter, current: &Live| {
            let g = live::globals(settings, &current.doc);
            cutter.configure(&g, settings);
            writer.apply(&g);
            metrics::gauge!(m::CONFIG_VERSION).set(current.version as f64);
        };
        apply_globals(&mut cutter, &current);
        let mut topic: Option<Arc<str>> = None;
        let mut control_open = true;
        let mut live_open = true;
        macro_rules! send_all {
            ($chunks:expr) => {
                for chunk in $chunks {
                    if chunks.send(chunk).await.is_err() {
                        return;
                    }
                }
            };
        }
        loop {
            let deadline = cutter.deadline();
            let throttle_ends = running.values().filter_map(|r| r.throttled_until).min();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = failed.cancelled() => return,
                changed = live.changed(), if live_open => {
                    if changed.is_err() {
                        live_open = false;
                        continue;
                    }
                    current = live.borrow_and_update().clone();
                    apply_globals(&mut cutter, &current);
                    let now = Instant::now();
                    for (shard, r) in running.iter_mut() {
                        r.configure(&current.doc, shard, now);
                        r.sync_kafka(source, shard);
                    }
                    tracing::info!(version = current.version, "applied configuration");
                }
                _ = sleep_until(throttle_ends) => {
                    let now = Instant::now();
                    for (shard, r) in running.iter_mut() {
                        if r.throttled_until.is_some_and(|t| t <= now) {
                            r.throttled_until = None;
                            r.sync_kafka(source, shard);
                        }
                    }
                }
                command = control.recv(), if control_open => match command {
                    None => control_open = false,
                    Some(Control::Start { shard: key, epoch, at, memory }) => {
                        let (topic, partition) = (&key.topic, key.partition);
                        if running.contains_key(&key) {
                            tracing::warn!(%topic, partition, "shard already running; start ignored");
                            continue;
                        }
                        if let Err(e) = source.start(&key, at) {
                            tracing::error!(%topic, partition, error = &e as &dyn std::error::Error, "cannot start reading the shard");
                            let _ = events.send(ShardEvent::StartFailed { shard: key, epoch, reason: format!("Kafka refused the assignment: {e}") });
                            continue;
                        }
                        let (from, checkpoint) = (at.read_from(), at.checkpoint());
                        let mut shard = RunningShard { last: None, paused: false, bucket: None, throttled_until: None, kafka_paused: false };
                        shard.configure(&current.doc, &key, Instant::now());
                        shard.sync_kafka(source, &key);
                        tracing::info!(%topic, partition, epoch, from = ?from, checkpoint = ?checkpoint, paused = shard.paused, "shard started");
                        cutter.start(&key, memory);
                        running.insert(key.clone(), shard);
                        let _ = committer.send(ToCommitter::Start(key, epoch, checkpoint));
                    }
                    Some(Control::Stop { shard: key, done }) => {
                        let (topic, partition) = (&key.topic, key.partition);
                        let Some(RunningShard { last: until, kafka_paused, .. }) = running.remove(&key) else {
                            let _ = done.send(Stopped::NotRunning);
                            continue;
                        };
                        // Leave no pause behind for a later owner of this partition in this consumer.
                        if kafka_paused {
                            let _ = source.resume(&key);
                        }
                        if let Err(e) = source.stop(&key) {
                            tracing::warn!(%topic, partition, error = &e as &dyn std::error::Error, "Kafka refused to unassign the shard; its messages are dropped from now on");
                        }
                        // Hand over what was read, so the release does not wait for the linger.
                        send_all!(cutter.stop(&key).into_iter());
                        tracing::info!(%topic, partition, until = ?until, "shard stopping: checkpointing what was read");
                        let _ = committer.send(ToCommitter::Release(key, until, done));
                    }
                },
                _ = sleep_until(deadline) => {
                    // A shard Kafka still sends (not paused, not throttled):
                    // the messages between what was read and its end.
                    let backlog = |shard: &Shard, next: i64| {
                        match running.get(shard).is_some_and(|r| !r.kafka_paused) {
                            true => source.known_end(shard).map_or(0, |end| (end - next).max(0) as u64),
                            false => 0,
                        }
                    };
                    send_all!(cutter.due(backlog))
                }
                received = source.recv() => match received {
                    Ok(msg) => {
                        // One shared name per topic, not an allocation per message.
                        if topic.as_deref() != Some(msg.topic()) {
                            topic = Some(msg.topic().into());
                        }
                        let topic = topic.clone().expect("set above");
                        // A message of a shard stopped meanwhile (prefetched): not ours to handle.
                        let at_shard = Shard::new(topic.clone(), msg.partition());
                        let Some(shard) = running.get_mut(&at_shard) else {
                            metrics::counter!(m::MESSAGES_SKIPPED).increment(1);
                            continue;
                        };
                        shard.last = Some(msg.offset() + 1);
                        let content_type = msg.headers().and_then(|h| {
                            h.iter().find(|h| h.key.eq_ignore_ascii_case(herd_model::CONTENT_TYPE_HEADER)).and_then(|h| h.value)
                        });
                        let decoded = herd_model::decode(msg.payload(), content_type);
                        if let Some(bucket) = &mut shard.bucket {
                            let now = Instant::now();
                            let n = (decoded.events.len() + decoded.rejects.len()).max(1) as u64;
                            if let Some(wait) = bucket.take(n, now) {
                                shard.throttled_until = Some(now + wait);
                                shard.sync_kafka(source, &at_shard);
                            }
                        }
                        messages.fetch_add(1, Ordering::Relaxed);
                        let at = SourcePosition {
                            shard: at_shard,
                            offset: msg.offset(),
                            appended_ms: msg.timestamp().to_millis(),
                        };
                        send_all!(cutter.add(at, msg.key(), msg.payload(), content_type, decoded).into_iter());
                    }
                    Err(e) => {
                        tracing::warn!(error = &e as &dyn std::error::Error, "Kafka consumer error; retrying in 500 ms");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
        // Shutdown: hand over what was consumed, so it is stored and checkpointed.
        send_all!(cutter.stop_all());
        tracing::info!("stopped consuming; draining chunks in flight");
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
