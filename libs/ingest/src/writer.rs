//! The writer stage: stores chunks. In: [`Chunk`]s from the reader. Out:
//! [`ToCommitter::Chunk`] once a chunk's writes are stored (or dead-lettered)
//! and its dead letters acknowledged by Kafka.
//!
//! Each chunk is written in its own task, up to `max_chunks_in_flight` at
//! once (the reader waits for a free slot: that is the backpressure). Every
//! write goes through one global cap on Cassandra requests in flight, and is
//! retried with backoff and jitter; what still fails after the retry budget
//! is dead-lettered, or stops the pipeline under the `stop` policy.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use herd_config::now_ms;
use herd_model::{json, Event};
use herd_sink::{Store, Write, WriteError};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::chunk::{Chunk, CommitOffset};
use crate::committer::ToCommitter;
use crate::dead_letter::{DeadLetter, DeadLetterSink, Stage};
use crate::live::Globals;
use crate::metrics as m;
use crate::settings::{IngestSettings, OnWriteFailure};
use crate::source::SourcePosition;

/// What the writer's chunk tasks share.
pub struct Writer {
    settings: IngestSettings,
    store: Store,
    dead_letters: DeadLetterSink,
    in_flight: Semaphore,
    /// The permits `in_flight` is meant to have (live configuration).
    in_flight_size: AtomicUsize,
    /// `--on-write-failure stop`, as last configured.
    stop_on_failure: AtomicBool,
    pub(crate) written: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    /// Failed attempts, reported at most once a second.
    failures: Tally,
}

impl Writer {
    pub fn new(settings: IngestSettings, store: Store, dead_letters: DeadLetterSink) -> Writer {
        Writer {
            in_flight: Semaphore::new(settings.max_in_flight.get()),
            in_flight_size: settings.max_in_flight.get().into(),
            stop_on_failure: (settings.on_write_failure == OnWriteFailure::Stop).into(),
            settings,
            store,
            dead_letters,
            written: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            failures: Tally::new(1000),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Applies the worker-wide values of a new configuration.
    pub fn apply(self: &Arc<Self>, g: &Globals) {
        self.stop_on_failure.store(g.on_write_failure == OnWriteFailure::Stop, Ordering::Relaxed);
        let old = self.in_flight_size.swap(g.max_in_flight, Ordering::Relaxed);
        if g.max_in_flight > old {
            self.in_flight.add_permits(g.max_in_flight - old);
        } else if g.max_in_flight < old {
            // Take the surplus out of circulation as requests in flight finish.
            let writer = self.clone();
            let surplus = (old - g.max_in_flight) as u32;
            tokio::spawn(async move {
                if let Ok(p) = writer.in_flight.acquire_many(surplus).await {
                    p.forget();
                }
            });
        }
    }

    /// Writes chunks until the reader closes `chunks`, then waits for the
    /// ones in flight. Returns early (aborting chunks in flight) once
    /// `failed` is cancelled.
    pub async fn run(
        self: Arc<Self>,
        mut chunks: mpsc::Receiver<Chunk>,
        slots: Arc<Semaphore>,
        done: mpsc::UnboundedSender<ToCommitter>,
        failed: CancellationToken,
    ) {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let chunk = tokio::select! {
                chunk = chunks.recv() => match chunk { Some(c) => c, None => break },
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
            let writer = self.clone();
            let done = done.clone();
            tasks.spawn(async move {
                let id = chunk.id;
                let result = writer.write_chunk(chunk).await;
                metrics::gauge!(m::CHUNKS_IN_FLIGHT).decrement(1.0);
                drop(slot);
                let _ = done.send(ToCommitter::Chunk(id, result));
            });
            // Reap finished tasks as we go, so the set stays small.
            while tasks.try_join_next().is_some() {}
        }
        // Shutdown: let every chunk in flight finish before the committer's last commit.
        while tasks.join_next().await.is_some() {}
    }

    /// Writes a chunk and sends its dead letters. Ok: its offsets may be
    /// committed. Err: a write failed under the stop policy.
    async fn write_chunk(&self, chunk: Chunk) -> Result<Vec<CommitOffset>, WriteFailed> {
        let retry = &self.settings.retry;
        let decode_letters = async {
            for letter in &chunk.dead_letters {
                self.dead_letters.send(letter, retry).await;
            }
        };
        let writes = async {
            // Every write of the chunk waits for its permit at once, so that
            // an earlier chunk's writes go before a later one's (first in,
            // first out: each chunk is done as soon as it can be). Making
            // them as permits came free instead shared the permits among
            // the chunks in flight, and each took as long as all of them:
            // freshness p99 at 221,600 events/s went from about 1.3 s to
            // 2.5-3.0 s.
            let mut pending: FuturesUnordered<_> =
                chunk.writes.iter().map(|w| self.write_one(w)).collect();
            let mut write_letters = Vec::new();
            let mut failure = None;
            while let Some(result) = pending.next().await {
                match result {
                    Ok(fresh) => {
                        self.written.fetch_add(fresh as u64, Ordering::Relaxed);
                        metrics::counter!(m::EVENTS_WRITTEN).increment(fresh as u64);
                    }
                    Err((write, failed)) => match self.stop_on_failure.load(Ordering::Relaxed) {
                        true => failure = Some(failed),
                        false => {
                            let reason = herd_config::chain(&failed);
                            tracing::warn!(events = write.len(), error = &failed as &dyn std::error::Error, "write failed after the retry budget; sending the events to the dead-letter topic");
                            write_letters.extend(write.events().iter().zip(write.tags()).map(
                                |(e, &s)| write_letter(e, &chunk.sources[s as usize], &reason),
                            ));
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
            self.dead_letters.send(letter, retry).await;
        }
        let letters = (chunk.dead_letters.len() + write_letters.len()) as u64;
        self.dead_lettered.fetch_add(letters, Ordering::Relaxed);
        metrics::histogram!(m::CHUNK_ROWS).record(chunk.rows as f64);
        metrics::histogram!(m::CHUNK_BYTES).record(chunk.bytes as f64);
        let now = now_ms();
        if let Some(oldest) = chunk.writes.iter().filter_map(Write::min_ts).min() {
            metrics::histogram!(m::END_TO_END_LATENCY)
                .record((now - oldest).max(0) as f64 / 1000.0);
        }
        if let Some(appended) = chunk.appended_ms.filter(|_| chunk.messages > 0) {
            metrics::histogram!(m::APPEND_TO_WRITE).record((now - appended).max(0) as f64 / 1000.0);
        }
        Ok(chunk.offsets)
    }

    /// Writes one unit with retries. Ok: the events stored for the first
    /// time. Err: the write and why it failed after the retry budget.
    async fn write_one<'a>(&self, write: &'a Write) -> Result<usize, (&'a Write, WriteFailed)> {
        let retry = &self.settings.retry;
        let started = Instant::now();
        let mut attempt: u32 = 0;
        let mut refusals: u32 = 0;
        loop {
            let result = {
                let _permit = self.in_flight.acquire().await.expect("semaphore never closed");
                let t = Instant::now();
                // Boxed: the driver's request state is the bulk of a write's
                // future, and a chunk of a closed window waits with a
                // thousand writes or more; only those holding a permit need it.
                let r = Box::pin(self.store.write(write)).await;
                metrics::histogram!(m::WRITE_LATENCY).record(t.elapsed().as_secs_f64());
                r
            };
            let error = match result {
                Ok(()) => return Ok(write.fresh()),
                Err(e) => e,
            };
            if error.is_transient() {
                metrics::counter!(m::WRITE_RETRIES, "kind" => "transient").increment(1);
                if let Some(budget) = retry.unavailable_budget {
                    if started.elapsed() >= budget {
                        let budget_secs = budget.as_secs();
                        return Err((
                            write,
                            WriteFailed::Unavailable { budget_secs, last: error.into() },
                        ));
                    }
                }
            } else {
                metrics::counter!(m::WRITE_RETRIES, "kind" => "permanent").increment(1);
                refusals += 1;
                if refusals >= retry.max_attempts {
                    return Err((
                        write,
                        WriteFailed::Refused { attempts: refusals, last: error.into() },
                    ));
                }
            }
            let wait = backoff::delay(attempt, retry.initial, retry.max, rand::random());
            self.warn_failed(write, attempt, wait, &error);
            tokio::time::sleep(wait).await;
            attempt = attempt.saturating_add(1);
        }
    }
}

impl Writer {
    /// Logs a failed attempt, at most once a second per worker with the
    /// number of failures since the last line: an outage fails every write
    /// in flight at once (thousands of lines a second when each had one),
    /// and the operator needs to know it goes on and why, not each write.
    fn warn_failed(&self, write: &Write, attempt: u32, wait: Duration, error: &WriteError) {
        let Some(failures) = self.failures.add(now_ms()) else { return };
        tracing::warn!(
            failures, series = %write.series(), events = write.len(), attempt, transient = error.is_transient(), error = error as &dyn std::error::Error,
            "Cassandra writes failing ({failures} failed attempts since the last such line); this one is retried in {} ms (consumption pauses while writes are pending)",
            wait.as_millis()
        );
    }
}

/// Counts occurrences and says when to report them: at most once per
/// `every_ms`, with the count since the last report.
struct Tally {
    every_ms: i64,
    unreported: AtomicU64,
    last_ms: AtomicI64,
}

impl Tally {
    fn new(every_ms: i64) -> Tally {
        Tally { every_ms, unreported: AtomicU64::new(0), last_ms: AtomicI64::new(i64::MIN) }
    }

    /// Counts one at `now_ms`. Some(n): report now, n since the last report
    /// (this one included).
    fn add(&self, now_ms: i64) -> Option<u64> {
        self.unreported.fetch_add(1, Ordering::Relaxed);
        let last = self.last_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < self.every_ms {
            return None;
        }
        // One caller reports; the others count toward the next report.
        self.last_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).ok()?;
        Some(self.unreported.swap(0, Ordering::Relaxed))
    }
}

/// A dead letter for an event Cassandra would not take: the event itself as
/// JSON, with the position of the message it came from.
/// A write that still failed after the retry budget.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WriteFailed {
    #[error("Cassandra unavailable for {budget_secs} s (--retry-unavailable-secs)")]
    Unavailable {
        budget_secs: u64,
        #[source]
        last: Arc<WriteError>,
    },
    #[error("refused {attempts} times (--retry-max-attempts)")]
    Refused {
        attempts: u32,
        #[source]
        last: Arc<WriteError>,
    },
}

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

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn a_tally_reports_the_first_then_at_most_once_per_interval_with_the_count() {
        let t = Tally::new(1000);
        assert_eq!(t.add(5_000), Some(1), "the first is reported at once");
        assert_eq!(t.add(5_001), None);
        assert_eq!(t.add(5_999), None);
        assert_eq!(t.add(6_000), Some(3), "the two held back, and this one");
        assert_eq!(t.add(9_000), Some(1));
    }
}
