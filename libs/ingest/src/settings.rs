use std::num::NonZeroUsize;
use std::time::Duration;

use herd_coord::dynconf::keys;
pub use herd_coord::dynconf::OnWriteFailure;

/// How the ingest pipeline batches, writes, retries and dead-letters, as
/// given on the command line or in the environment. Validate with
/// [`IngestArgs::validate`]. The flags that give a live key its starting
/// value take their defaults and ranges from the table of live keys
/// (`herd_coord::dynconf::keys`).
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// A chunk of work is cut at this many events...
    #[arg(long, env = "HERD_BATCH_MAX_ROWS", default_value_t = keys::BATCH_MAX_ROWS.default_count() as usize)]
    pub batch_max_rows: usize,

    /// ...or at this many bytes of Kafka payload...
    #[arg(long, env = "HERD_BATCH_MAX_BYTES", default_value_t = keys::BATCH_MAX_BYTES.default_count() as usize)]
    pub batch_max_bytes: usize,

    /// ...or this many milliseconds after its first message, whichever comes first.
    #[arg(long, env = "HERD_LINGER_MS", default_value_t = keys::LINGER_MS.default_count())]
    pub linger_ms: u64,

    /// Blocks layout: an offset window still open is first written (without
    /// a checkpoint) this many milliseconds after its oldest unwritten
    /// message, so its events are visible before it closes; each later
    /// write of the same window waits twice as long as the one before (up
    /// to 8 times this), since each rewrites the window's blocks whole; no
    /// write waits while Kafka holds more of the shard (a backlog). A
    /// shard quiet for 4 times this has its window written and checkpointed
    /// up to its last message.
    #[arg(long, env = "HERD_BLOCK_FLUSH_MS", default_value_t = 500)]
    pub block_flush_ms: u64,

    /// Chunks written at the same time; consumption pauses when all are busy.
    #[arg(long, env = "HERD_MAX_CHUNKS_IN_FLIGHT", default_value_t = 4)]
    pub max_chunks_in_flight: usize,

    /// Cassandra write requests in flight at once, across all chunks.
    #[arg(long, env = "HERD_MAX_IN_FLIGHT", default_value_t = keys::MAX_IN_FLIGHT.default_count() as usize)]
    pub max_in_flight: usize,

    /// Rows in one unlogged (single-partition) CQL batch.
    #[arg(long, env = "HERD_CQL_BATCH_MAX_ROWS", default_value_t = 50)]
    pub cql_batch_max_rows: usize,

    /// Approximate bytes in one CQL batch; Cassandra warns above 5 KiB
    /// (batch_size_warn_threshold) and refuses above 50 KiB.
    #[arg(long, env = "HERD_CQL_BATCH_MAX_BYTES", default_value_t = 4 * 1024)]
    pub cql_batch_max_bytes: usize,

    /// First retry delay of a failed write, in milliseconds; doubles per
    /// attempt, with full jitter.
    #[arg(long, env = "HERD_RETRY_INITIAL_MS", default_value_t = 100)]
    pub retry_initial_ms: u64,

    /// Longest retry delay, in milliseconds.
    #[arg(long, env = "HERD_RETRY_MAX_MS", default_value_t = 5_000)]
    pub retry_max_ms: u64,

    /// Attempts of a write that Cassandra refuses (an invalid request)
    /// before --on-write-failure applies.
    #[arg(long, env = "HERD_RETRY_MAX_ATTEMPTS", default_value_t = 3)]
    pub retry_max_attempts: u32,

    /// How long a write is retried while Cassandra is unreachable, timing out
    /// or overloaded, in seconds; 0 retries until it is back (consumption
    /// stays paused meanwhile, nothing is dropped).
    #[arg(long, env = "HERD_RETRY_UNAVAILABLE_SECS", default_value_t = 0)]
    pub retry_unavailable_secs: u64,

    /// What happens to events whose write still fails after the retry
    /// budget.
    #[arg(long, env = "HERD_ON_WRITE_FAILURE", value_enum, default_value_t = keys::ON_WRITE_FAILURE.default_policy())]
    pub on_write_failure: OnWriteFailure,

    /// Kafka topic for events that cannot be decoded or written.
    #[arg(long, env = "HERD_DEAD_LETTER_TOPIC", default_value = "herd-dead-letter")]
    pub dead_letter_topic: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestSettings {
    pub batch_max_rows: NonZeroUsize,
    pub batch_max_bytes: NonZeroUsize,
    pub linger: Duration,
    pub block_flush: Duration,
    pub max_chunks_in_flight: NonZeroUsize,
    pub max_in_flight: NonZeroUsize,
    pub cql_batch_max_rows: NonZeroUsize,
    pub cql_batch_max_bytes: NonZeroUsize,
    pub retry: RetrySettings,
    pub on_write_failure: OnWriteFailure,
    pub dead_letter_topic: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    pub initial: Duration,
    pub max: Duration,
    pub max_attempts: u32,
    /// None: retry transient failures until they stop.
    pub unavailable_budget: Option<Duration>,
}

pub use herd_config::InvalidSetting as SettingsError;

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<T, SettingsError> {
    if value < min || value > max {
        return Err(SettingsError::new(
            field,
            value,
            format!("is out of range; expected {min} to {max}"),
        ));
    }
    Ok(value)
}

fn nonzero(field: &'static str, value: usize, max: usize) -> Result<NonZeroUsize, SettingsError> {
    range(field, value, 1, max).map(|v| NonZeroUsize::new(v).expect("checked >= 1"))
}

/// A flag that gives a live key's starting value, checked against the key's range.
fn live_count(
    field: &'static str,
    key: &keys::LiveKey,
    value: usize,
) -> Result<NonZeroUsize, SettingsError> {
    let v = key.check_count(field, value as u64, "expected")?;
    Ok(NonZeroUsize::new(v as usize).expect("the key's range starts at 1"))
}

impl IngestArgs {
    pub fn validate(&self) -> Result<IngestSettings, SettingsError> {
        herd_config::kafka_topic("dead-letter-topic", &self.dead_letter_topic)?;
        let initial = range("retry-initial-ms", self.retry_initial_ms, 1, 60_000)?;
        let max = range("retry-max-ms", self.retry_max_ms, initial, 600_000)?;
        Ok(IngestSettings {
            batch_max_rows: live_count(
                "batch-max-rows",
                &keys::BATCH_MAX_ROWS,
                self.batch_max_rows,
            )?,
            batch_max_bytes: live_count(
                "batch-max-bytes",
                &keys::BATCH_MAX_BYTES,
                self.batch_max_bytes,
            )?,
            linger: Duration::from_millis(keys::LINGER_MS.check_count(
                "linger-ms",
                self.linger_ms,
                "expected",
            )?),
            block_flush: Duration::from_millis(range(
                "block-flush-ms",
                self.block_flush_ms,
                1,
                60_000,
            )?),
            max_chunks_in_flight: nonzero("max-chunks-in-flight", self.max_chunks_in_flight, 64)?,
            max_in_flight: live_count("max-in-flight", &keys::MAX_IN_FLIGHT, self.max_in_flight)?,
            cql_batch_max_rows: nonzero("cql-batch-max-rows", self.cql_batch_max_rows, 1000)?,
            // Cassandra refuses batches above 50 KiB by default.
            cql_batch_max_bytes: nonzero(
                "cql-batch-max-bytes",
                self.cql_batch_max_bytes,
                50 * 1024,
            )?,
            retry: RetrySettings {
                initial: Duration::from_millis(initial),
                max: Duration::from_millis(max),
                max_attempts: range("retry-max-attempts", self.retry_max_attempts, 1, 100)?,
                unavailable_budget: match range(
                    "retry-unavailable-secs",
                    self.retry_unavailable_secs,
                    0,
                    7 * 86_400,
                )? {
                    0 => None,
                    secs => Some(Duration::from_secs(secs)),
                },
            },
            on_write_failure: self.on_write_failure,
            dead_letter_topic: self.dead_letter_topic.clone(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ingest: IngestArgs,
    }

    pub fn args(extra: &[&str]) -> IngestArgs {
        let mut argv = vec!["test"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().ingest
    }

    #[test]
    fn the_flags_of_live_keys_are_the_ones_the_table_names() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        for key in herd_coord::dynconf::LIVE_KEYS {
            // --log belongs to every binary (herd-telemetry), not to ingest.
            let Some(flag) = key.flag.filter(|f| *f != "--log") else { continue };
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == flag.strip_prefix("--"))
                .unwrap_or_else(|| panic!("{}: no flag {flag}", key.name));
            let default: Vec<String> =
                arg.get_default_values().iter().map(|v| v.to_string_lossy().into()).collect();
            assert_eq!(default.len(), 1, "{flag} has one default");
            let expected = match key.default {
                herd_coord::dynconf::keys::Default::Count(n) => n.to_string(),
                herd_coord::dynconf::keys::Default::Policy(p) => p.to_string(),
                other => panic!("{flag}: a default of {other:?}"),
            };
            assert_eq!(default[0], expected, "{flag}");
        }
    }

    #[test]
    fn defaults_validate() {
        let s = args(&[]).validate().unwrap();
        assert_eq!(s.on_write_failure, OnWriteFailure::DeadLetter);
        assert_eq!(s.retry.unavailable_budget, None);
        let s = args(&["--retry-unavailable-secs", "30", "--on-write-failure", "stop"])
            .validate()
            .unwrap();
        assert_eq!(s.retry.unavailable_budget, Some(Duration::from_secs(30)));
        assert_eq!(s.on_write_failure, OnWriteFailure::Stop);
    }

    #[test]
    fn errors_name_the_field_the_value_and_what_is_accepted() {
        for (argv, expected) in [
            (
                &["--batch-max-rows", "0"][..],
                "batch-max-rows: \"0\" is out of range; expected 1 to 1000000",
            ),
            (&["--cql-batch-max-bytes", "60000"], "cql-batch-max-bytes: \"60000\" is out of range"),
            (
                &["--retry-initial-ms", "500", "--retry-max-ms", "100"],
                "retry-max-ms: \"100\" is out of range; expected 500",
            ),
            (
                &["--block-flush-ms", "0"],
                "block-flush-ms: \"0\" is out of range; expected 1 to 60000",
            ),
            (
                &["--dead-letter-topic", "bad topic"],
                "dead-letter-topic: \"bad topic\" is not a valid Kafka topic name",
            ),
        ] {
            let e = args(argv).validate().unwrap_err().to_string();
            assert!(e.starts_with(expected), "wanted {expected:?}, got {e:?}");
        }
        // A policy is an enum: the flag's parser refuses what is not one.
        let e = Cli::try_parse_from(["test", "--on-write-failure", "ignore"])
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("'ignore'")
                && e.contains("--on-write-failure")
                && e.contains("dead-letter, stop"),
            "{e}"
        );
    }
}
