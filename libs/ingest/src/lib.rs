//! herd's ingest pipeline: Kafka in, Cassandra out, nothing lost, nothing
//! duplicated.
//!
//! Pure parts, unit-tested without servers:
//! - [`settings`]: batching, retry and dead-letter settings, validated;
//! - [`chunk`]: cutting messages into chunks and single-partition batches;
//! - [`commit`]: releasing offsets only behind stored events, in order;
//! - [`shards`]: running shards, their fenced checkpoints and releases;
//! - [`backoff`]: exponential backoff with full jitter;
//! - [`dead_letter`]: what a dead-letter record carries;
//! - [`live`]: what a live configuration change does (overrides, rate limits).
//!
//! I/O at the edge:
//! - [`source`]: the Kafka consumer of the granted partitions;
//! - [`ownership`]: following the coordinator's assignment through ZooKeeper
//!   (register, hold, claim, start, stop, release);
//! - [`pipeline`]: the loops that tie them together (see its docs for the
//!   data flow, backpressure and shutdown).
//!
//! Why nothing is lost or duplicated is explained in `libs/ingest/README.md`.

pub mod backoff;
pub mod chunk;
pub mod commit;
pub mod dead_letter;
pub mod live;
pub mod metrics;
pub mod pipeline;
pub mod ownership;
pub mod settings;
pub mod shards;
pub mod source;

pub use pipeline::{Control, DeadLetterSink, Pipeline, PipelineError, ShardEvent, Summary};
pub use settings::{IngestArgs, IngestSettings};
pub use source::KafkaSource;
