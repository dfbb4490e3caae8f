//! `produce --probe-keyspace`: end-to-end latency as a reader sees it. For a
//! sample of the events, a probe reads the event's series and metric at its
//! exact time through herd's own read path ([`herd_sink::read::PointReader`],
//! either layout: a row of the points table, or the blocks of its bucket
//! whose span holds that time) from the moment the message is sent until
//! the event is there, and records wall-clock time minus event time (the
//! message's due time).
//!
//! Probes poll every 5 ms at first, then at a tenth of the time already
//! waited (at most 1 s): a reading is off by at most 10 % or 5 ms, and a
//! long outage costs tens of lookups per probe, not thousands. At most
//! `MAX_PROBES` wait at once; a sample beyond that is counted as skipped.
//!
//! At most `MAX_READS_IN_FLIGHT` lookups run at once, whatever the number
//! of probes waiting: the measurement must not become the load. A blocks
//! lookup filters the series' blocks of a bucket in Cassandra, and during
//! a backlog (after a Cassandra outage in a soak) up to 2,000 probes polled
//! four times a second each: Cassandra's read stage had 32 reads active
//! and 102 queued, the writes waited behind them, and the workers stored
//! 50,000 events/s instead of catching up (at most 8 lookups at once and
//! polls up to 1 s apart: 133,000; without probes: 222,000, all offered).
//! A lookup that waits for its turn can find its event later than it
//! became visible; `reads` and `read_wait` in the summary say by how much
//! at most. (Letting only the oldest few probes poll cut the lookups
//! further but read freshness up to a minute high for minutes after a
//! backlog, while the queue of probes drained.)

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;
use herd_config::Endpoints;
use herd_sink::read::PointReader;
use herd_telemetry::Exit;
use scylla::client::session::Session;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub const MAX_PROBES: usize = 2000;

/// Lookups in flight at once, over all probes.
pub const MAX_READS_IN_FLIGHT: usize = 4;

/// The row a probe waits for.
pub struct Key {
    pub series: String,
    pub metric: &'static str,
    pub ts: i64,
    pub producer: String,
    pub seq: u64,
}

pub struct Prober {
    session: Session,
    keyspace: String,
    pinned: herd_sink::schema::Pinned,
    /// Prepared again after a failed read: a restarted Cassandra node has
    /// forgotten it, and paged reads of a forgotten statement kept failing
    /// (every probe after a 15 s outage in a soak went unseen).
    reader: tokio::sync::RwLock<(PointReader, Instant)>,
    read_errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// How long a probe waits before counting its event as not visible.
    give_up: Duration,
    permits: Arc<Semaphore>,
    reads_in_flight: Semaphore,
    reads: AtomicU64,
    /// Time lookups waited for their turn, µs.
    read_wait: Mutex<Histogram<u64>>,
    /// Event time to visible, µs.
    visible: Mutex<Histogram<u64>>,
    /// The same since the last [`Prober::recent`]: freshness over time.
    recent: Mutex<Histogram<u64>>,
    unseen: AtomicU64,
    skipped: AtomicU64,
    tasks: Mutex<JoinSet<()>>,
}

pub struct Summary {
    pub visible: Histogram<u64>,
    pub unseen: u64,
    pub skipped: u64,
    /// Reads that failed (Cassandra down or slow), and the last error.
    pub read_errors: u64,
    pub last_error: Option<String>,
    /// Lookups made, and how long they waited for their turn (µs).
    pub reads: u64,
    pub read_wait: Histogram<u64>,
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// The next wait between lookups, after `waited` since the event's time.
fn next_poll(waited: Duration) -> Duration {
    (waited / 10).clamp(Duration::from_millis(5), Duration::from_secs(1))
}

impl Prober {
    /// Connects to Cassandra and reads the keyspace's layout and bucket
    /// width, which the workers fix when they create the schema.
    pub async fn connect(
        endpoints: &Endpoints,
        keyspace: &str,
        give_up: Duration,
    ) -> Result<Prober, Exit> {
        let session = herd_clients::cassandra::session(endpoints)
            .await
            .context("while connecting to Cassandra for --probe-keyspace")?;
        let pinned = herd_sink::schema::pinned(&session, keyspace)
            .await
            .with_context(|| format!("while reading {keyspace}.herd_settings: is --probe-keyspace the workers' --keyspace, and have they started?"))?
            .ok_or_else(|| anyhow::anyhow!("{keyspace}.herd_settings has no layout and bucket width yet: start the workers (they create the schema) before probing"))?;
        let reader = PointReader::prepare(&session, keyspace, pinned)
            .await
            .context("while preparing the probe's reads")?;
        let histogram =
            || Histogram::new_with_bounds(1, 24 * 3_600_000_000, 3).expect("valid bounds");
        Ok(Prober {
            session,
            keyspace: keyspace.to_owned(),
            pinned,
            reader: tokio::sync::RwLock::new((reader, Instant::now())),
            read_errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
            give_up,
            permits: Arc::new(Semaphore::new(MAX_PROBES)),
            reads_in_flight: Semaphore::new(MAX_READS_IN_FLIGHT),
            reads: AtomicU64::new(0),
            read_wait: Mutex::new(histogram()),
            visible: Mutex::new(histogram()),
            recent: Mutex::new(histogram()),
            unseen: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            tasks: Mutex::new(JoinSet::new()),
        })
    }

    /// Event time to visible (µs) of the probes that saw their event since
    /// the last call.
    pub fn recent(&self) -> Histogram<u64> {
        let mut recent = self.recent.lock().expect("not poisoned");
        let out = recent.clone();
        recent.reset();
        out
    }

    /// Starts waiting for `key`'s row (just sent).
    pub fn probe(self: &Arc<Self>, key: Key) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.skipped.fetch_add(1, Relaxed);
            return;
        };
        let me = self.clone();
        let mut tasks = self.tasks.lock().expect("not poisoned");
        // Reap finished probes so the set stays small.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let _permit = permit;
            let started = Instant::now();
            loop {
                let queued = Instant::now();
                let turn = me.reads_in_flight.acquire().await.expect("never closed");
                me.read_wait
                    .lock()
                    .expect("not poisoned")
                    .saturating_record(queued.elapsed().as_micros() as u64);
                me.reads.fetch_add(1, Relaxed);
                let reader = me.reader.read().await.0.clone();
                let read =
                    reader.range(&me.session, &key.series, key.metric, key.ts, key.ts + 1).await;
                drop(turn);
                let found = match read {
                    Ok(points) => {
                        points.iter().any(|e| e.seq == key.seq && e.producer == key.producer)
                    }
                    // Cassandra down or slow: the event is not visible yet.
                    Err(e) => {
                        me.read_failed(herd_config::chain(&e)).await;
                        false
                    }
                };
                if found {
                    let latency = (now_us() - key.ts * 1000).max(0) as u64;
                    me.visible.lock().expect("not poisoned").saturating_record(latency);
                    me.recent.lock().expect("not poisoned").saturating_record(latency);
                    return;
                }
                if started.elapsed() > me.give_up {
                    me.unseen.fetch_add(1, Relaxed);
                    return;
                }
                let waited = Duration::from_micros((now_us() - key.ts * 1000).max(0) as u64);
                tokio::time::sleep(next_poll(waited)).await;
            }
        });
    }

    /// Counts a failed read and prepares the reads again, at most once a
    /// second.
    async fn read_failed(&self, error: String) {
        self.read_errors.fetch_add(1, Relaxed);
        *self.last_error.lock().expect("not poisoned") = Some(error);
        let mut reader = self.reader.write().await;
        if reader.1.elapsed() < Duration::from_secs(1) {
            return;
        }
        reader.1 = Instant::now();
        if let Ok(fresh) = PointReader::prepare(&self.session, &self.keyspace, self.pinned).await {
            reader.0 = fresh;
        }
    }

    /// Waits for every probe to see its row or give up.
    pub async fn finish(&self) -> Summary {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().expect("not poisoned"));
        while tasks.join_next().await.is_some() {}
        Summary {
            visible: self.visible.lock().expect("not poisoned").clone(),
            unseen: self.unseen.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            read_errors: self.read_errors.load(Relaxed),
            last_error: self.last_error.lock().expect("not poisoned").clone(),
            reads: self.reads.load(Relaxed),
            read_wait: self.read_wait.lock().expect("not poisoned").clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_fast_first_then_at_a_tenth_of_the_wait() {
        assert_eq!(next_poll(Duration::ZERO), Duration::from_millis(5));
        assert_eq!(next_poll(Duration::from_millis(400)), Duration::from_millis(40));
        assert_eq!(next_poll(Duration::from_secs(5)), Duration::from_millis(500));
        assert_eq!(next_poll(Duration::from_secs(60)), Duration::from_secs(1));
    }
}
