//! The ingest pipeline: consume -> decode -> chunk -> write -> commit.
//!
//! Three loops run together:
//! - the reader consumes and decodes messages and cuts chunks (by rows,
//!   bytes, linger). It hands each chunk to the dispatcher and waits while
//!   all chunk slots are busy, so consumption pauses when Cassandra is slow
//!   or down: that is the backpressure, and memory stays bounded;
//! - the dispatcher writes each chunk in its own task: every CQL batch under
//!   a global cap on requests in flight, retried with backoff and jitter,
//!   and every dead letter sent and acknowledged by Kafka;
//! - the committer checkpoints a chunk's offsets only once it and every
//!   earlier chunk are done ([`CommitSequencer`]), so a checkpoint never
//!   passes an event that is not stored or dead-lettered. Checkpoints go to
//!   Cassandra, conditioned on the epoch of the shard's grant; a refused one
//!   means a newer owner holds the shard, which is reported as
//!   [`ShardEvent::Fenced`].
//!
//! Which shards run is decided outside, through [`Control`]: `Start` after a
//! grant was claimed, `Stop` to release one (it answers once everything read
//! from the shard is checkpointed; see [`crate::shards`]).
//!
//! Shutdown (the token is cancelled): the reader stops consuming and hands
//! over its partial chunk, the dispatcher drains, the committer writes the
//! last checkpoints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::{FuturesUnordered, StreamExt};
use herd_model::{json, Event};
use herd_sink::Writer;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::chunk::{Batch, Chunk, ChunkBuilder, CommitOffset, Limits, SourcePosition};
use crate::commit::CommitSequencer;
use crate::dead_letter::{DeadLetter, Stage};
use crate::metrics as m;
use crate::settings::{IngestSettings, OnWriteFailure};
use crate::live::{self, Bucket, Globals, Live};
use crate::shards::{Book, ShardKey, Stopped};
use crate::source::{KafkaSource, StartAt};

/// What the pipeline is told about shards.
#[derive(Debug)]
pub enum Control {
    /// Read the shard from `at`, checkpointing under `epoch` (already claimed).
    Start { topic: String, partition: i32, epoch: i64, at: StartAt },
    /// Stop reading the shard; `done` answers once what was read is checkpointed.
    Stop { topic: String, partition: i32, done: oneshot::Sender<Stopped> },
}

/// What the pipeline reports about shards on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardEvent {
    /// Cassandra refused a checkpoint: a newer grant holds the shard. The
    /// pipeline no longer checkpoints it; the owner should stop it.
    Fenced { topic: String, partition: i32, epoch: i64, reason: String },
    /// Kafka refused to start reading the shard; it is not running.
    StartFailed { topic: String, partition: i32, epoch: i64, reason: String },
}

/// What the committer hears, in causal order: the reader's shard changes
/// and the dispatcher's finished chunks share one channel, so a shard's
/// start is always seen before its first chunk and its release after its
/// last one.
enum ToCommitter {
    Chunk(u64, Result<Vec<CommitOffset>, String>),
    Start(ShardKey, i64, Option<i64>),
    Release(ShardKey, Option<i64>, oneshot::Sender<Stopped>),
}

/// Sends dead letters; retries until Kafka acknowledges, since a dead letter
/// that is not stored must not let its offset be committed.
pub struct DeadLetterSink {
    pub producer: FutureProducer,
    pub topic: String,
    pub worker: String,
}

impl DeadLetterSink {
    async fn send(&self, letter: &DeadLetter, retry: &crate::settings::RetrySettings) {
        let headers = letter.headers(&self.worker);
        let mut attempt = 0;
        loop {
            let mut kafka_headers = rdkafka::message::OwnedHeaders::new_with_capacity(headers.len());
            for (k, v) in &headers {
                kafka_headers = kafka_headers.insert(rdkafka::message::Header { key: k, value: Some(v.as_str()) });
            }
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
                .payload(&letter.payload)
                .headers(kafka_headers);
            if let Some(key) = &letter.key {
                record = record.key(key);
            }
            match self.producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => {
                    metrics::counter!(m::EVENTS_DEAD_LETTERED, "stage" => letter.stage.as_str()).increment(1);
                    return;
                }
                Err((e, _)) => {
                    let wait = backoff::delay(attempt, retry.initial, retry.max, rand::random());
                    tracing::warn!(
                        topic = %self.topic, error = %e, source_topic = %letter.source.topic,
                        partition = letter.source.partition, offset = letter.source.offset,
                        "sending a dead letter failed; retrying in {} ms (its offset is not committed meanwhile)",
                        wait.as_millis()
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// Totals of one run, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub messages: u64,
    pub events_written: u64,
    pub dead_letters: u64,
    pub chunks_committed: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error("a write failed after the retry budget and --on-write-failure is stop: {0}; offsets after the last stored chunk were not committed, so those messages are read again on restart")]
    WriteFailed(String),
}

/// What chunk tasks share.
struct Shared {
    settings: IngestSettings,
    writer: Writer,
    dead_letters: DeadLetterSink,
    in_flight: Semaphore,
    /// The permits `in_flight` is meant to have (live configuration).
    in_flight_size: std::sync::atomic::AtomicUsize,
    /// `--on-write-failure stop`, as last configured.
    stop_on_failure: std::sync::atomic::AtomicBool,
    written: AtomicU64,
    dead_lettered: AtomicU64,
}

impl Shared {
    /// Applies the worker-wide values of a new configuration.
    fn apply(self: &Arc<Self>, g: &Globals) {
        self.stop_on_failure.store(g.on_write_failure == OnWriteFailure::Stop, Ordering::Relaxed);
        let old = self.in_flight_size.swap(g.max_in_flight, Ordering::Relaxed);
        if g.max_in_flight > old {
            self.in_flight.add_permits(g.max_in_flight - old);
        } else if g.max_in_flight < old {
            // Take the surplus out of circulation as requests in flight finish.
            let shared = self.clone();
            let surplus = (old - g.max_in_flight) as u32;
            tokio::spawn(async move {
                if let Ok(p) = shared.in_flight.acquire_many(surplus).await {
                    p.forget();
                }
            });
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
    fn configure(&mut self, doc: &herd_coord::dynconf::ConfigDoc, topic: &str, partition: i32, now: Instant) {
        let e = doc.effective(topic, partition);
        self.paused = e.paused;
        match e.rate_limit_eps {
            None => {
                self.bucket = None;
                self.throttled_until = None;
            }
            Some(rate) if self.bucket.as_ref().map(Bucket::rate) != Some(rate) => self.bucket = Some(Bucket::new(rate, now)),
            Some(_) => {}
        }
    }

    /// Pauses or resumes the partition in Kafka to match what is wanted.
    fn sync_kafka(&mut self, source: &KafkaSource, topic: &str, partition: i32) {
        let want = self.paused || self.throttled_until.is_some();
        if want == self.kafka_paused {
            return;
        }
        let result = if want { source.pause(topic, partition) } else { source.resume(topic, partition) };
        match result {
            Ok(()) => self.kafka_paused = want,
            Err(e) => tracing::warn!(%topic, partition, error = %e, "cannot {} the shard in Kafka", if want { "pause" } else { "resume" }),
        }
    }
}

pub struct Pipeline {
    pub settings: IngestSettings,
    pub source: KafkaSource,
    pub writer: Writer,
    pub dead_letters: DeadLetterSink,
    /// Checkpoints: the session and prepared statements of herd-sink's fencing.
    pub session: Arc<scylla::client::session::Session>,
    pub fencing: herd_sink::fencing::Fencing,
    pub control: mpsc::Receiver<Control>,
    pub events: mpsc::UnboundedSender<ShardEvent>,
    /// The live configuration; see [`crate::live`].
    pub live: tokio::sync::watch::Receiver<Live>,
}

impl Pipeline {
    /// Runs until `shutdown` is cancelled (then drains and returns Ok) or a
    /// write fails under the `stop` policy.
    pub async fn run(self, shutdown: CancellationToken) -> Result<Summary, PipelineError> {
        let Pipeline {
            settings,
            source,
            writer,
            dead_letters,
            session,
            fencing,
            mut control,
            events,
            mut live,
        } = self;
        m::describe();
        let limits = Limits {
            max_rows: settings.batch_max_rows.get(),
            max_bytes: settings.batch_max_bytes.get(),
            linger: settings.linger,
            cql_batch_max_rows: settings.cql_batch_max_rows.get(),
            cql_batch_max_bytes: settings.cql_batch_max_bytes.get(),
            bucket_ms: writer.settings().bucket_ms,
        };
        let slots = Arc::new(Semaphore::new(settings.max_chunks_in_flight.get()));
        let shared = Arc::new(Shared {
            in_flight: Semaphore::new(settings.max_in_flight.get()),
            in_flight_size: settings.max_in_flight.get().into(),
            stop_on_failure: (settings.on_write_failure == OnWriteFailure::Stop).into(),
            settings,
            writer,
            dead_letters,
            written: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
        });
        // Stops the reader when a chunk fails under the stop policy.
        let failed = CancellationToken::new();
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<Chunk>(1);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<ToCommitter>();
        let messages = AtomicU64::new(0);

        let book_tx = done_tx.clone();
        let reader = async {
            // Owned by this block, so that every way out of it (including the
            // early returns) closes the channels and lets the others finish.
            let chunk_tx = chunk_tx;
            let book_tx = book_tx;
            let mut builder = ChunkBuilder::new(limits);
            let mut running: std::collections::HashMap<ShardKey, RunningShard> = Default::default();
            let mut current = live.borrow_and_update().clone();
            let apply_globals = |builder: &mut ChunkBuilder, current: &Live| {
                let g = live::globals(&shared.settings, &current.doc);
                builder.set_cut(g.batch_max_rows, g.batch_max_bytes, g.linger);
                shared.apply(&g);
                metrics::gauge!(m::CONFIG_VERSION).set(current.version as f64);
            };
            apply_globals(&mut builder, &current);
            let mut topic: Option<Arc<str>> = None;
            let mut control_open = true;
            let mut live_open = true;
            loop {
                let deadline = builder.deadline();
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
                        apply_globals(&mut builder, &current);
                        let now = Instant::now();
                        for ((topic, partition), r) in running.iter_mut() {
                            r.configure(&current.doc, topic, *partition, now);
                            r.sync_kafka(&source, topic, *partition);
                        }
                        tracing::info!(version = current.version, "applied configuration");
                    }
                    _ = sleep_until(throttle_ends) => {
                        let now = Instant::now();
                        for ((topic, partition), r) in running.iter_mut() {
                            if r.throttled_until.is_some_and(|t| t <= now) {
                                r.throttled_until = None;
                                r.sync_kafka(&source, topic, *partition);
                            }
                        }
                    }
                    command = control.recv(), if control_open => match command {
                        None => control_open = false,
                        Some(Control::Start { topic, partition, epoch, at }) => {
                            let key: ShardKey = (topic.as_str().into(), partition);
                            if running.contains_key(&key) {
                                tracing::warn!(%topic, partition, "shard already running; start ignored");
                                continue;
                            }
                            if let Err(e) = source.start(&topic, partition, at) {
                                tracing::error!(%topic, partition, error = %e, "cannot start reading the shard");
                                let _ = events.send(ShardEvent::StartFailed { topic, partition, epoch, reason: format!("Kafka refused the assignment: {e}") });
                                continue;
                            }
                            let from = match at { StartAt::Offset(o) => Some(o), StartAt::Beginning => None };
                            let mut shard = RunningShard { last: None, paused: false, bucket: None, throttled_until: None, kafka_paused: false };
                            shard.configure(&current.doc, &topic, partition, Instant::now());
                            shard.sync_kafka(&source, &topic, partition);
                            tracing::info!(%topic, partition, epoch, from = ?from, paused = shard.paused, "shard started");
                            running.insert(key.clone(), shard);
                            let _ = book_tx.send(ToCommitter::Start(key, epoch, from));
                        }
                        Some(Control::Stop { topic, partition, done }) => {
                            let key: ShardKey = (topic.as_str().into(), partition);
                            let Some(RunningShard { last: until, kafka_paused, .. }) = running.remove(&key) else {
                                let _ = done.send(Stopped::NotRunning);
                                continue;
                            };
                            // Leave no pause behind for a later owner of this partition in this consumer.
                            if kafka_paused {
                                let _ = source.resume(&topic, partition);
                            }
                            if let Err(e) = source.stop(&topic, partition) {
                                tracing::warn!(%topic, partition, error = %e, "Kafka refused to unassign the shard; its messages are dropped from now on");
                            }
                            // Hand over what was read, so the release does not wait for the linger.
                            if let Some(chunk) = builder.take() {
                                if chunk_tx.send(chunk).await.is_err() { return; }
                            }
                            tracing::info!(%topic, partition, until = ?until, "shard stopping: checkpointing what was read");
                            let _ = book_tx.send(ToCommitter::Release(key, until, done));
                        }
                    },
                    _ = sleep_until(deadline) => {
                        if let Some(chunk) = builder.take() {
                            if chunk_tx.send(chunk).await.is_err() { return; }
                        }
                    }
                    received = source.recv() => match received {
                        Ok(msg) => {
                            // One shared name per topic, not an allocation per message.
                            if topic.as_deref() != Some(msg.topic()) {
                                topic = Some(msg.topic().into());
                            }
                            let topic = topic.clone().expect("set above");
                            // A message of a shard stopped meanwhile (prefetched): not ours to handle.
                            let Some(shard) = running.get_mut(&(topic.clone(), msg.partition())) else {
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
                                    shard.sync_kafka(&source, &topic, msg.partition());
                                }
                            }
                            messages.fetch_add(1, Ordering::Relaxed);
                            let at = SourcePosition { topic, partition: msg.partition(), offset: msg.offset() };
                            builder.add(at, msg.key(), msg.payload(), content_type, decoded, Instant::now());
                            if builder.is_full() {
                                let chunk = builder.take().expect("a full chunk is not empty");
                                if chunk_tx.send(chunk).await.is_err() { return; }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Kafka consumer error; retrying in 500 ms");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
            // Shutdown: hand over what was consumed, so it is stored and checkpointed.
            if let Some(chunk) = builder.take() {
                let _ = chunk_tx.send(chunk).await;
            }
            tracing::info!("stopped consuming; draining chunks in flight");
            drop(chunk_tx);
        };

        let dispatcher = async {
            let done_tx = done_tx;
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                let chunk = tokio::select! {
                    chunk = chunk_rx.recv() => match chunk { Some(c) => c, None => break },
                    // Dropping the JoinSet below aborts the chunks still running.
                    _ = failed.cancelled() => return,
                };
                let slot = tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("semaphore never closed"),
                    _ = failed.cancelled() => return,
                };
                metrics::gauge!(m::CHUNKS_IN_FLIGHT).increment(1.0);
                metrics::counter!(m::MESSAGES_CONSUMED).increment(chunk.messages as u64);
                metrics::counter!(m::EVENTS_CONSUMED).increment(chunk.rows as u64);
                let shared = shared.clone();
                let done_tx = done_tx.clone();
                tasks.spawn(async move {
                    let id = chunk.id;
                    let result = write_chunk(&shared, chunk).await;
                    metrics::gauge!(m::CHUNKS_IN_FLIGHT).decrement(1.0);
                    drop(slot);
                    let _ = done_tx.send(ToCommitter::Chunk(id, result));
                });
                // Reap finished tasks as we go, so the set stays small.
                while tasks.try_join_next().is_some() {}
            }
            // Shutdown: let every chunk in flight finish before the committer's last commit.
            while tasks.join_next().await.is_some() {}
        };

        let committer = async {
            let mut sequencer = CommitSequencer::default();
            let mut book: Book<oneshot::Sender<Stopped>> = Book::default();
            let mut chunks = 0;
            let mut retry_after_failure = false;
            loop {
                // Wait for news; after a failed checkpoint, retry within 500 ms anyway.
                let first = if retry_after_failure {
                    match tokio::time::timeout(Duration::from_millis(500), done_rx.recv()).await {
                        Ok(m) => m.map(Some),
                        Err(_) => Some(None),
                    }
                } else {
                    done_rx.recv().await.map(Some)
                };
                let Some(first) = first else { break };
                // Take everything already queued, so that checkpoints coalesce.
                let mut batch: Vec<ToCommitter> = first.into_iter().collect();
                while let Ok(m) = done_rx.try_recv() {
                    batch.push(m);
                }
                for m in batch {
                    match m {
                        ToCommitter::Chunk(id, Ok(offsets)) => {
                            book.ready(&sequencer.complete(id, offsets));
                            chunks += 1;
                        }
                        ToCommitter::Chunk(_, Err(reason)) => {
                            failed.cancel();
                            return Err(PipelineError::WriteFailed(reason));
                        }
                        ToCommitter::Start(key, epoch, from) => book.start(key, epoch, from),
                        ToCommitter::Release(key, until, done) => book.release(key, until, done),
                    }
                }
                retry_after_failure = !checkpoint(&session, &fencing, &mut book, &events).await;
                for (_, done, stopped) in book.take_done() {
                    let _ = done.send(stopped);
                }
            }
            // Everything is drained: write the last checkpoints (the binary bounds how long).
            let mut attempt = 0;
            while !checkpoint(&session, &fencing, &mut book, &events).await {
                tokio::time::sleep(backoff::delay(attempt, Duration::from_millis(100), Duration::from_secs(2), rand::random())).await;
                attempt += 1;
            }
            for (_, done, stopped) in book.take_done() {
                let _ = done.send(stopped);
            }
            Ok(chunks)
        };

        let ((), (), result) = tokio::join!(reader, dispatcher, committer);
        let chunks_committed = result?;
        Ok(Summary {
            messages: messages.load(Ordering::Relaxed),
            events_written: shared.written.load(Ordering::Relaxed),
            dead_letters: shared.dead_lettered.load(Ordering::Relaxed),
            chunks_committed,
        })
    }
}

/// Writes every pending checkpoint, concurrently. Returns false if some
/// could not be written (Cassandra unavailable): they stay pending.
async fn checkpoint(
    session: &scylla::client::session::Session,
    fencing: &herd_sink::fencing::Fencing,
    book: &mut Book<oneshot::Sender<Stopped>>,
    events: &mpsc::UnboundedSender<ShardEvent>,
) -> bool {
    use herd_sink::fencing::FenceError;
    let pending = book.to_commit();
    if pending.is_empty() {
        return true;
    }
    let results = futures::future::join_all(pending.iter().map(|((topic, partition), epoch, next)| {
        fencing.commit(session, topic, *partition, *epoch, *next)
    }))
    .await;
    let mut all = true;
    for ((key, epoch, next), result) in pending.into_iter().zip(results) {
        match result {
            Ok(()) => {
                metrics::counter!(m::CHECKPOINTS).increment(1);
                book.committed(&key, epoch, next);
            }
            Err(e @ FenceError::Fenced { .. }) => {
                metrics::counter!(m::CHECKPOINTS_FENCED).increment(1);
                if book.fenced(&key, epoch) {
                    tracing::warn!(topic = %key.0, partition = key.1, epoch, error = %e, "checkpoint refused: a newer owner holds the shard; it is no longer checkpointed here");
                    let _ = events.send(ShardEvent::Fenced { topic: key.0.to_string(), partition: key.1, epoch, reason: e.to_string() });
                }
            }
            Err(e) => {
                all = false;
                tracing::warn!(topic = %key.0, partition = key.1, error = %e, "checkpoint failed; retrying (the shard's offsets stay behind meanwhile)");
            }
        }
    }
    all
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Writes a chunk and sends its dead letters. Ok: its offsets may be
/// committed. Err: a write failed under the stop policy.
async fn write_chunk(shared: &Shared, chunk: Chunk) -> Result<Vec<CommitOffset>, String> {
    let retry = &shared.settings.retry;
    let decode_letters = async {
        for letter in &chunk.dead_letters {
            shared.dead_letters.send(letter, retry).await;
        }
    };
    let writes = async {
        let mut pending: FuturesUnordered<_> = chunk.batches.iter().map(|batch| write_batch(shared, batch)).collect();
        let mut write_letters = Vec::new();
        let mut failure = None;
        while let Some(result) = pending.next().await {
            match result {
                Ok(n) => {
                    shared.written.fetch_add(n as u64, Ordering::Relaxed);
                    metrics::counter!(m::EVENTS_WRITTEN).increment(n as u64);
                }
                Err((batch, reason)) => match shared.stop_on_failure.load(Ordering::Relaxed) {
                    true => failure = Some(reason),
                    false => {
                        tracing::warn!(events = batch.events.len(), %reason, "write failed after the retry budget; sending the events to the dead-letter topic");
                        write_letters.extend(
                            batch.events.iter().zip(&batch.sources).map(|(e, &s)| write_letter(e, &chunk.sources[s as usize], &reason)),
                        );
                    }
                },
            }
        }
        (write_letters, failure)
    };
    let ((), (write_letters, failure)) = tokio::join!(decode_letters, writes);
    if let Some(reason) = failure {
        return Err(reason);
    }
    for letter in &write_letters {
        shared.dead_letters.send(letter, retry).await;
    }
    let letters = (chunk.dead_letters.len() + write_letters.len()) as u64;
    shared.dead_lettered.fetch_add(letters, Ordering::Relaxed);
    metrics::histogram!(m::CHUNK_ROWS).record(chunk.rows as f64);
    metrics::histogram!(m::CHUNK_BYTES).record(chunk.bytes as f64);
    if let Some(oldest) = chunk.batches.iter().flat_map(|b| &b.events).map(|e| e.ts).min() {
        metrics::histogram!(m::END_TO_END_LATENCY).record((now_ms() - oldest).max(0) as f64 / 1000.0);
    }
    Ok(chunk.offsets)
}

/// A dead letter for an event Cassandra would not take: the event itself as
/// JSON, with the position of the message it came from.
fn write_letter(event: &Event, source: &SourcePosition, reason: &str) -> DeadLetter {
    DeadLetter {
        source: source.clone(),
        key: None,
        payload: json::encode(event),
        content_type: Some(herd_model::Format::Json.content_type().to_owned()),
        stage: Stage::Write,
        position: "event".into(),
        reason: reason.to_owned(),
    }
}

/// Writes one single-partition batch with retries. Ok: rows written.
/// Err: the batch and why it failed after the retry budget.
async fn write_batch<'a>(shared: &Shared, batch: &'a Batch) -> Result<usize, (&'a Batch, String)> {
    let retry = &shared.settings.retry;
    let refs: Vec<&Event> = batch.events.iter().collect();
    let started = Instant::now();
    let mut attempt: u32 = 0;
    let mut refusals: u32 = 0;
    loop {
        let result = {
            let _permit = shared.in_flight.acquire().await.expect("semaphore never closed");
            let t = Instant::now();
            let r = shared.writer.write_partition(&refs).await;
            metrics::histogram!(m::WRITE_LATENCY).record(t.elapsed().as_secs_f64());
            r
        };
        let error = match result {
            Ok(()) => return Ok(batch.events.len()),
            Err(e) => e,
        };
        if error.transient {
            metrics::counter!(m::WRITE_RETRIES, "kind" => "transient").increment(1);
            if let Some(budget) = retry.unavailable_budget {
                if started.elapsed() >= budget {
                    return Err((batch, format!("Cassandra unavailable for {} s: {}", budget.as_secs(), error.message)));
                }
            }
        } else {
            metrics::counter!(m::WRITE_RETRIES, "kind" => "permanent").increment(1);
            refusals += 1;
            if refusals >= retry.max_attempts {
                return Err((batch, format!("refused {refusals} times: {}", error.message)));
            }
        }
        let wait = backoff::delay(attempt, retry.initial, retry.max, rand::random());
        // One line per write at the first failure and every tenth after, so an
        // outage does not flood the log with one line per retry.
        if attempt % 10 == 0 {
            tracing::warn!(
                series = %batch.events[0].series, rows = batch.events.len(), attempt, transient = error.transient, error = %error.message,
                "Cassandra write failed; retrying in {} ms (consumption pauses while writes are pending)",
                wait.as_millis()
            );
        }
        tokio::time::sleep(wait).await;
        attempt = attempt.saturating_add(1);
    }
}
