//! Live configuration in the pipeline: what the document changes, pure.
//!
//! The command line gives every setting's starting value; a configuration
//! document from ZooKeeper (`herd_coord::dynconf`) overrides it while the
//! worker runs. Worker-wide values ([`Globals`]) apply from the next chunk or
//! write; per-shard values (pause, rate limit) apply to each running shard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_coord::dynconf::keys::{self, DEFAULT_RESOLUTIONS};
use herd_coord::dynconf::ConfigDoc;

use crate::settings::{IngestSettings, OnWriteFailure};

/// The configuration the pipeline runs with: the last valid document.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// 0: no document yet (the command line's settings).
    pub version: u64,
    pub doc: Arc<ConfigDoc>,
}

/// Worker-wide settings after the document's overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Globals {
    pub batch_max_rows: usize,
    pub batch_max_bytes: usize,
    pub linger: Duration,
    pub max_in_flight: usize,
    pub on_write_failure: OnWriteFailure,
    /// None: the command line's --log.
    pub log_level: Option<String>,
    /// Rollup resolutions in seconds (empty: none).
    pub rollup_resolutions: std::sync::Arc<[u32]>,
    pub dedup_horizon: u64,
    /// Blocks layout: the longest an event waits in an open window.
    pub block_flush_max: Duration,
}

/// The document's globals over the command line's settings. The document is
/// validated, so its values are in range.
pub fn globals(settings: &IngestSettings, doc: &ConfigDoc) -> Globals {
    let g = &doc.global;
    Globals {
        batch_max_rows: g.batch_max_rows.map_or(settings.batch_max_rows.get(), |v| v as usize),
        batch_max_bytes: g.batch_max_bytes.map_or(settings.batch_max_bytes.get(), |v| v as usize),
        linger: g.linger_ms.map_or(settings.linger, Duration::from_millis),
        max_in_flight: g.max_in_flight.map_or(settings.max_in_flight.get(), |v| v as usize),
        on_write_failure: g.on_write_failure.unwrap_or(settings.on_write_failure),
        log_level: g.log_level.clone(),
        // The document is validated: its resolutions parse.
        rollup_resolutions: keys::parse_resolutions(
            keys::ROLLUP_RESOLUTIONS.name,
            g.rollup_resolutions.as_deref().unwrap_or(DEFAULT_RESOLUTIONS),
        )
        .unwrap_or_default()
        .into(),
        dedup_horizon: g.dedup_horizon.unwrap_or(keys::DEDUP_HORIZON.default_count()),
        block_flush_max: Duration::from_millis(
            g.block_flush_max_ms.unwrap_or(keys::BLOCK_FLUSH_MAX_MS.default_count()),
        ),
    }
}

/// A token bucket for one shard's rate limit, holding at most one second
/// of tokens. Consuming may overdraw it (a message is never split); the debt
/// is the time the shard must then wait.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate_per_sec: u64, now: Instant) -> Bucket {
        Bucket { rate: rate_per_sec as f64, tokens: rate_per_sec as f64, last: now }
    }

    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// Takes `n` tokens; returns how long to wait before reading more, if
    /// the bucket is now in debt.
    pub fn take(&mut self, n: u64, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.tokens -= n as f64;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> IngestSettings {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            ingest: crate::IngestArgs,
        }
        Cli::try_parse_from(["t", "--batch-max-rows", "7", "--linger-ms", "9"])
            .unwrap()
            .ingest
            .validate()
            .unwrap()
    }

    #[test]
    fn the_document_overrides_the_command_line_key_by_key() {
        let s = settings();
        let none = globals(&s, &ConfigDoc::default());
        assert_eq!(
            (none.batch_max_rows, none.linger, none.on_write_failure),
            (7, Duration::from_millis(9), OnWriteFailure::DeadLetter)
        );
        let doc = ConfigDoc::default()
            .with_edits(&[
                "batch_max_rows=100".into(),
                "on_write_failure=stop".into(),
                "max_in_flight=3".into(),
            ])
            .unwrap();
        let g = globals(&s, &doc);
        assert_eq!(
            (g.batch_max_rows, g.linger, g.max_in_flight, g.on_write_failure),
            (100, Duration::from_millis(9), 3, OnWriteFailure::Stop)
        );
    }

    #[test]
    fn a_bucket_allows_its_rate_on_average_and_a_second_of_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000, t0);
        assert_eq!(b.take(1000, t0), None, "a full second of burst");
        let wait = b.take(500, t0).expect("in debt");
        assert_eq!(wait, Duration::from_millis(500));
        // After waiting out the debt, the bucket is back at zero: 500 more cost 0.5 s.
        let t1 = t0 + wait;
        assert_eq!(b.take(500, t1), Some(Duration::from_millis(500)));
        // Over 10 s of steady demand, about 10 x the rate passes.
        let mut now = t1 + Duration::from_millis(500);
        let mut passed = 0;
        let end = now + Duration::from_secs(10);
        while now < end {
            passed += 100;
            now += b.take(100, now).unwrap_or(Duration::ZERO);
        }
        assert!((9_900..=10_100).contains(&passed), "{passed}");
    }
}
