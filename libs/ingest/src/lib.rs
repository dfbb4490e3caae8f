//! herd's ingest pipeline: Kafka in, Cassandra out, nothing lost, nothing
//! duplicated.
//!
//! The data plane is three stages with typed messages between them (see
//! [`pipeline`] for the picture): [`reader`] -> [`writer`] -> [`committer`].
//!
//! Pure parts, unit-tested without servers:
//! - [`settings`]: batching, retry and dead-letter settings, validated;
//! - [`chunk`]: cutting messages into chunks of herd-sink writes (rows layout);
//! - [`window`]: cutting a shard's messages into deterministic offset
//!   windows (blocks layout);
//! - [`commit`]: releasing offsets only behind stored events, in order;
//! - [`shards`]: running shards, their fenced checkpoints and releases;
//! - [`backoff`]: exponential backoff with full jitter;
//! - [`dead_letter`]: what a dead-letter record carries, and its sink;
//! - [`control`]: the protocol between ownership (control plane) and the
//!   pipeline (data plane);
//! - [`live`]: what a live configuration change does (overrides, rate limits).
//!
//! I/O at the edge:
//! - [`source`]: the Kafka consumer of the granted partitions;
//! - [`ownership`]: following the coordinator's assignment through ZooKeeper
//!   (register, hold, claim, start, stop, release);
//! - [`reader`], [`writer`], [`committer`]: the stages;
//! - [`pipeline`]: their wiring (data flow, backpressure and shutdown).
//!
//! Why nothing is lost or duplicated is explained in `libs/ingest/README.md`.

pub mod backoff;
pub mod chunk;
pub mod commit;
pub mod committer;
pub mod control;
pub mod dead_letter;
pub mod live;
pub mod metrics;
pub mod ownership;
pub mod pipeline;
pub mod reader;
pub mod settings;
pub mod shards;
pub mod source;
pub mod window;
pub mod writer;

pub use control::{Control, ShardEvent};
pub use dead_letter::DeadLetterSink;
pub use pipeline::{Pipeline, PipelineError, Summary};
pub use settings::{IngestArgs, IngestSettings};
pub use source::KafkaSource;
